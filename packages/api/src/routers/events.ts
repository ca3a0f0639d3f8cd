import { clampDepth, MAX_STREAM_VERSION } from '@pedigree/ledger';
import { z } from 'zod';
import { RunRef } from '../inputs.ts';
import { procedure, router } from '../trpc.ts';

/** Longest stream id taken: a bound only (ids are `<type>-<uuid>`, under 50 characters). */
const MAX_STREAM_ID = 100;

export const eventsRouter = router({
  /** The audit log of one stream (a run's by default), oldest first, with each event's hash chain link. */
  stream: procedure
    .input(
      z.union([
        z.object({ runId: RunRef, fromVersion: z.number().int().min(1).max(MAX_STREAM_VERSION).optional(), limit: z.number().int().min(1).max(10_000).optional() }),
        z.object({ streamId: z.string().min(1).max(MAX_STREAM_ID), fromVersion: z.number().int().min(1).max(MAX_STREAM_VERSION).optional(), limit: z.number().int().min(1).max(10_000).optional() }),
      ]),
    )
    .query(async ({ ctx, input }) => {
      const streamId = 'runId' in input ? `run-${(await ctx.access.run(input.runId)).id}` : (await ctx.access.stream(input.streamId)).streamId;
      const events = await ctx.pedigree.store.readStream(streamId, { fromVersion: input.fromVersion, limit: input.limit ?? 1000 });
      // What the store already holds is served whatever its depth: deeper values come back marked, not as a 500.
      return { streamId, events: events.map((e) => ({ ...e, data: clampDepth(e.data), metadata: clampDepth(e.metadata) })) };
    }),
});
