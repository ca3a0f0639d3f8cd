import type { Command } from '../command.ts';
import { formatAgo, shortId, table } from '../format.ts';

export const projectsCommand: Command = {
  name: 'projects',
  summary: 'list projects',
  usage: 'projects',
  async run(ctx) {
    const pd = await ctx.openStore();
    const projects = await Promise.all(
      (await pd.lineage.projects()).map(async (p) => ({ ...p, runs: (await pd.lineage.runs({ projectId: p.id, limit: 1 })).total })),
    );
    if (ctx.json) return ctx.term.json(projects);
    if (projects.length === 0) return ctx.term.line('No projects yet. Record a sample with `pedigree sample`.');
    const { paint } = ctx.term;
    const lines = table(
      projects,
      [
        { header: 'ID', cell: (p) => shortId(p.id), paint: (t) => paint.yellow(t) },
        { header: 'NAME', cell: (p) => p.name, shrink: true, paint: (t) => paint.bold(t) },
        { header: 'RUNS', cell: (p) => String(p.runs), align: 'right' },
        { header: 'CREATED', cell: (p) => formatAgo(p.createdAt), paint: (t) => paint.dim(t) },
        { header: 'DESCRIPTION', cell: (p) => p.description ?? '', shrink: true },
      ],
      { width: ctx.term.width, paint },
    );
    for (const line of lines) ctx.term.line(line);
  },
};
