import { logTotals, pointsIn, readEventBatches, type BatchLimits, type ScanProgress } from './batches.ts';
import { APPEND_LOCK, rowToEvent, type EventStore } from './store.ts';
import { BrokenChainError, ChainCheck, type BrokenEvent } from './verify.ts';

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
 * every stream's hash chain as it reads (the same check as verifyChain).
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
        const events = batch.rows.map(rowToEvent);
        for (const p of store.projections) await p.apply(tx, events);
        done += events.length;
        storedBytes += batch.storedBytes;
        opts.onProgress?.(done, Math.max(totals.events, done));
        opts.onBatch?.({
          events: done,
          totalEvents: Math.max(totals.events, done),
          points,
          storedBytes,
          totalStoredBytes: Math.max(totals.storedBytes, storedBytes),
          batch: { events: events.length, bytes: batch.bytes, jsonBytes: chains.jsonBytes - jsonBefore },
          elapsedMs: performance.now() - t0,
        });
      }
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
