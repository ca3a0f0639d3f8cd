import { MAX_KEY } from '@pedigree/ledger';
import { z } from 'zod';
import { RunRef, Step } from '../inputs.ts';
import { procedure, router } from '../trpc.ts';

const Series = z.object({ runId: RunRef, key: z.string().min(1).max(MAX_KEY), fromStep: Step.optional(), toStep: Step.optional() });

export const metricsRouter = router({
  keys: procedure.input(z.object({ runId: RunRef })).query(async ({ ctx, input }) => ctx.pedigree.lineage.metricKeys((await ctx.access.run(input.runId)).id)),

  /** Raw points, in step order (at most `limit`, default 10,000). */
  points: procedure.input(Series.extend({ limit: z.number().int().min(1).max(1_000_000).optional() })).query(async ({ ctx, input }) => {
    const run = await ctx.access.run(input.runId);
    return ctx.pedigree.lineage.metricPoints(run.id, input.key, { fromStep: input.fromStep, toStep: input.toStep, limit: input.limit ?? 10_000 });
  }),

  /** Min/max/last per step bucket: what a chart of a long series draws. */
  buckets: procedure.input(Series.extend({ buckets: z.number().int().min(1).max(10_000) })).query(async ({ ctx, input }) => {
    const run = await ctx.access.run(input.runId);
    return ctx.pedigree.lineage.metricBuckets(run.id, input.key, { buckets: input.buckets, fromStep: input.fromStep, toStep: input.toStep });
  }),

  /**
   * The same buckets and `position`, the run's last event they include: a live
   * view folds in the points of `runs.watch` updates after it (and only those).
   */
  chart: procedure.input(Series.extend({ buckets: z.number().int().min(1).max(10_000) })).query(async ({ ctx, input }) => {
    const run = await ctx.access.run(input.runId);
    return ctx.pedigree.lineage.metricChart(run.id, input.key, { buckets: input.buckets, fromStep: input.fromStep, toStep: input.toStep });
  }),
});
