import { open, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Pedigree as Client } from '@pedigree/client';
import { UsageError } from '../args.ts';
import type { Command } from '../command.ts';

/** Lines are written to a file in chunks of about this size. */
const CHUNK = 64 * 1024;

export const exportCommand: Command = {
  name: 'export',
  summary: 'write the lineage out as OpenLineage RunEvents (NDJSON)',
  usage: 'export --openlineage [--project NAME] [--out FILE]',
  description:
    "Writes every run of a project (or of every project) as OpenLineage 2-0-2 RunEvents, one JSON object per line: each run's START and its COMPLETE, FAIL or ABORT (RUNNING for a run still going), its inputs and outputs as datasets with their digests as versions, the parent run of forks, and hyperparameters, data-mix weights and filters and eval scores as Pedigree's own facets (docs/openlineage.md). A server serves the same at GET /api/v1/lineage/export.",
  options: [
    { name: 'openlineage', type: 'boolean', description: 'OpenLineage RunEvents (the one format so far)' },
    { name: 'project', type: 'string', value: 'NAME', description: 'only this project (a name or id; default: every project)' },
    { name: 'out', type: 'string', value: 'FILE', description: 'write to FILE (replaced whole once complete) instead of stdout' },
  ],
  async run(ctx) {
    if (!ctx.options.flag('openlineage')) throw new UsageError('export needs a format: --openlineage (see `pedigree export --help`)');
    const projectRef = ctx.options.string('project');
    if (projectRef !== undefined && !projectRef.trim()) throw new UsageError('--project needs a name');
    const out = ctx.options.string('out');
    if (out !== undefined && !out) throw new UsageError('--out needs a file name');
    const client = await ctx.client();
    const projects =
      projectRef === undefined
        ? (await client.projects()).filter((p) => p.lifecycle === 'active').map((p) => p.id)
        : [(await client.call('get project', () => client.api.projects.get.query({ project: projectRef }))).id];
    const events = openLineageEvents(client, projects);
    if (out === undefined) {
      for await (const event of events) ctx.term.line(JSON.stringify(event));
      return;
    }
    // Into a file beside the target, renamed over it once whole: a failed export leaves no half file.
    const target = path.resolve(out);
    const partial = `${target}.${process.pid}.partial`;
    const file = await open(partial, 'w');
    let count = 0;
    try {
      let chunk = '';
      for await (const event of events) {
        chunk += `${JSON.stringify(event)}\n`;
        count++;
        if (chunk.length >= CHUNK) {
          await file.write(chunk);
          chunk = '';
        }
      }
      await file.write(chunk);
      await file.close();
      await rename(partial, target);
    } catch (err) {
      await file.close().catch(() => {});
      await rm(partial, { force: true });
      throw err;
    }
    if (ctx.json) return ctx.term.json({ file: target, events: count });
    ctx.term.line(`wrote ${count} OpenLineage events to ${target}`);
  },
};

/** The events of these projects, a project at a time (in creation order), each project's in time order. */
async function* openLineageEvents(client: Client, projectIds: readonly string[]) {
  for (const project of projectIds) yield* await client.call('export', () => client.api.lineage.openLineage.query({ project }));
}
