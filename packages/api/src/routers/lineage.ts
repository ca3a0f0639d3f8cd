import { z } from 'zod';
import { ProjectRef, RunRef } from '../inputs.ts';
import { exportOpenLineage, type OpenLineageRunEvent } from '../openlineage/export.ts';
import { procedure, router } from '../trpc.ts';

export const lineageRouter = router({
  /** What exactly differs between two runs' lineages: common ancestor, first divergence, stage by stage. */
  diff: procedure.input(z.object({ a: RunRef, b: RunRef, showAll: z.boolean().optional() })).query(async ({ ctx, input }) => {
    const [a, b] = [await ctx.access.run(input.a), await ctx.access.run(input.b)];
    return ctx.pedigree.lineage.diff(a.id, b.id, { showAll: input.showAll });
  }),

  /**
   * One project's lineage as OpenLineage RunEvents, in time order: what
   * `pedigree export --openlineage` writes, a project at a time (GET
   * /api/v1/lineage/export serves the same as NDJSON).
   */
  openLineage: procedure.input(z.object({ project: ProjectRef })).query(async ({ ctx, input }) => {
    const { id } = await ctx.access.project(input.project);
    const events: OpenLineageRunEvent[] = [];
    for await (const event of exportOpenLineage(ctx.pedigree, { projects: [id] })) events.push(event);
    return events;
  }),
});
