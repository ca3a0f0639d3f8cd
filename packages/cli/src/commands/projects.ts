import { UsageError } from '../args.ts';
import type { Command } from '../command.ts';
import { formatAgo, shortId, table } from '../format.ts';

export const projectsCommand: Command = {
  name: 'projects',
  summary: 'list projects, or create one',
  usage: 'projects [create <name> [--description TEXT]]',
  options: [{ name: 'description', type: 'string', value: 'TEXT', description: 'with `create`: what the project is for' }],
  args: [
    { name: 'action', optional: true },
    { name: 'name', optional: true },
  ],
  async run(ctx) {
    const [action, name] = ctx.args;
    if (action !== undefined && action !== 'create') throw new UsageError(`projects: unknown action ${JSON.stringify(action)}; use \`projects\` to list or \`projects create <name>\``);
    if (action === 'create') {
      if (!name) throw new UsageError('projects create needs a <name>');
      const client = await ctx.client({ create: true });
      // No event id: then the name is checked first, and a name taken is said as such (a project's id follows from its name, so a retry never makes two).
      const input = { name, description: ctx.options.string('description') };
      const { projectId } = await client.call('create project', () => client.api.projects.create.mutate(input));
      if (ctx.json) return ctx.term.json({ id: projectId, name });
      ctx.term.line(`created project ${name} (${projectId})`);
      return;
    }
    const client = await ctx.client();
    const projects = await Promise.all((await client.projects()).map(async (p) => ({ ...p, runs: (await client.runs({ project: p.id, limit: 1 })).total })));
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
