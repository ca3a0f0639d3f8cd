import type { Queryable } from '@pedigree/db';
import { logTotals, pointsIn, readEventBatches, type BatchLimits, type ScanProgress } from './batches.ts';
import { APPEND_LOCK, readEvents, type EventStore } from './store.ts';
import { BrokenChainError, ChainCheck, verifyChunks, type BrokenEvent } from './verify.ts';

export interface RebuildOptions extends BatchLimits {
  /**
   * Rebuild even from a broken hash chain: the broken events are counted and
   * the first few named in the result, and projected as stored. Without it a
   * broken chain throws BrokenChainError and nothing changes.
   */
  force?: boolean;
  onProgress?: (done: number, total: number) => void;
  /** After each batch is projected. */
  onBatch?: (progress: ScanProgress) => void;
}

export interface RebuildResult {
  events: number;
  ms: number;
  /** Metric points in the events replayed. */
  points?: number;
  streams?: number;
  /** Batches read, and the largest one's estimated size (see BatchLimits). */
  batches?: number;
  largestBatchBytes?: number;
  /** With `force`: how many events failed the chain check, and the first of them. */
  brokenEvents?: number;
  broken?: BrokenEvent[];
  /** How long the rebuild held the append lock and the read models' tables (ms). */
  lockedMs?: number;
}

/** Broken events named in a forced rebuild's result; the rest are only counted. */
const BROKEN_NAMED = 10;

/**
 * Rebuilds every projection from the events, in one transaction, checking
 * every stream's hash chain as it reads and then the metric chunks against
 * their events (the same checks as verifyChain). Event types a projection
 * rebuilds in bulk (metric batches, from their chunks' summaries) are not
 * applied one by one.
 *
 * The transaction holds, until it commits, the append lock (writers wait)
 * and, from its TRUNCATE, an ACCESS EXCLUSIVE lock on every projection's
 * tables (readers of them wait too; none ever sees a half-built model). A
 * broken chain (without `force`) or any error rolls it back: the old read
 * models stay as they were. The log is read in batches bounded by bytes, so
 * memory does not grow with the store.
 */
export async function rebuildProjections(store: EventStore, opts: RebuildOptions = {}): Promise<RebuildResult> {
  const t0 = performance.now();
  const totals = await logTotals(store.db);
  const chains = new ChainCheck();
  const broken: BrokenEvent[] = [];
  let brokenEvents = 0;
  let done = 0;
  let points = 0;
  let storedBytes = 0;
  let batches = 0;
  let largestBatchBytes = 0;
  let lockedMs = 0;
  await store.db.transaction(async (tx) => {
    await tx.query('SELECT pg_advisory_xact_lock($1)', [APPEND_LOCK]); // no appends while we rebuild
    const locked = performance.now();
    try {
      const tables = store.projections.flatMap((p) => p.tables);
      if (tables.length) await tx.query(`TRUNCATE ${tables.map((t) => `"${t}"`).join(', ')}`);
      const pipeline = pipelined(tx);
      const bulkForAll = new Set<string>(store.projections.every((p) => p.bulk) ? store.projections[0]!.bulk!.types.filter((t) => store.projections.every((p) => p.bulk!.types.includes(t))) : []);
      for await (const batch of readEventBatches(tx, opts)) {
        batches++;
        largestBatchBytes = Math.max(largestBatchBytes, batch.bytes || 0);
        const jsonBefore = chains.jsonBytes;
        for (const row of batch.rows) {
          const wrong = chains.check(row);
          if (wrong) {
            if (!opts.force) throw new BrokenChainError(wrong);
            if (brokenEvents++ < BROKEN_NAMED) broken.push(wrong);
          }
          points += pointsIn(row);
        }
        // Rows every projection rebuilds in bulk are not even read as events (their chunks stay unread).
        const events = await readEvents(tx, batch.rows.filter((r) => !bulkForAll.has(r.type)));
        for (const p of store.projections) {
          const mine = p.bulk ? events.filter((e) => !p.bulk!.types.includes(e.type)) : events;
          if (p.writeOnly) await pipeline.run((q) => p.apply(q, mine));
          else await p.apply(tx, mine);
        }
        done += batch.rows.length;
        storedBytes += batch.storedBytes;
        opts.onProgress?.(done, Math.max(totals.events, done));
        opts.onBatch?.({
          events: done,
          totalEvents: Math.max(totals.events, done),
          points,
          storedBytes,
          totalStoredBytes: Math.max(totals.storedBytes, storedBytes),
          batch: { events: batch.rows.length, bytes: batch.bytes, jsonBytes: chains.jsonBytes - jsonBefore },
          elapsedMs: performance.now() - t0,
        });
      }
      await pipeline.flush();
      // The metric chunks are part of their events: checked against them (digests, summaries) like the chains.
      const chunk = await verifyChunks(tx);
      if (chunk) {
        if (!opts.force) throw new BrokenChainError(chunk);
        if (brokenEvents++ < BROKEN_NAMED) broken.push(chunk);
      }
      for (const p of store.projections) await p.bulk?.rebuild(tx);
    } finally {
      lockedMs = performance.now() - locked;
    }
  });
  return {
    events: done,
    ms: performance.now() - t0,
    points,
    streams: chains.streams,
    batches,
    largestBatchBytes,
    lockedMs,
    ...(opts.force ? { brokenEvents, broken } : {}),
  };
}

/**
 * A write-only projection's statements sent without waiting for each answer
 * (postgres.js pipelines them on the transaction's connection, in order; on
 * PGlite they simply run in order). Errors surface at the latest at `flush`,
 * which the rebuild awaits before anything reads; any error rolls it back.
 */
function pipelined(tx: Queryable) {
  let pending: Promise<unknown>[] = [];
  let failed: unknown;
  const q: Queryable = {
    query<T>(text: string, params?: readonly unknown[]): Promise<T[]> {
      if (failed) return Promise.reject(failed);
      const p = tx.query(text, params);
      p.catch((err: unknown) => (failed ??= err));
      pending.push(p);
      return Promise.resolve([]);
    },
  };
  const flush = async () => {
    const all = pending;
    pending = [];
    await Promise.all(all);
    if (failed) throw failed;
  };
  return {
    /** Runs `fn` over the pipelined handle; flushes once many statements are in flight. */
    async run(fn: (q: Queryable) => Promise<void>) {
      await fn(q);
      if (pending.length >= 20_000) await flush();
    },
    flush,
  };
}
