import { z } from 'zod';
import { RunRef } from '../inputs.ts';
import { procedure, router } from '../trpc.ts';

export const lineageRouter = router({
  /** What exactly differs between two runs' lineages: common ancestor, first divergence, stage by stage. */
  diff: procedure.input(z.object({ a: RunRef, b: RunRef, showAll: z.boolean().optional() })).query(async ({ ctx, input }) => {
    const [a, b] = [await ctx.access.run(input.a), await ctx.access.run(input.b)];
    return ctx.pedigree.lineage.diff(a.id, b.id, { showAll: input.showAll });
  }),
});
