import type { Queryable } from '@pedigree/db';
import { logTotals, pointsIn, readEventBatches, scanProgress, type BatchLimits, type ScanProgress } from './batches.ts';
import { APPEND_LOCK, readEvents, type EventStore } from './store.ts';
import { BrokenChainError, ChainCheck, verifyChunks, type BrokenEvent } from './verify.ts';

export interface RebuildOptions extends BatchLimits {
  /**
   * Rebuild even from a broken hash chain: the broken events are counted and
   * the first few named in the result, and projected as stored. Without it a
   * broken chain throws BrokenChainError and nothing changes.
   */
  force?: boolean;
  /**
   * `false`: rebuild without checking the chains and chunks first (say,
   * right after `verify` has): the events are taken as stored, and the
   * rebuild costs only its statements, several times less on a large log.
   * Default true.
   */
  check?: boolean;
  onProgress?: (done: number, total: number) => void;
  /** After each batch is projected. */
  onBatch?: (progress: ScanProgress) => void;
}

export interface RebuildResult {
  events: number;
  ms: number;
  /** Metric points in the events replayed. */
  points?: number;
  /** Streams checked (not counted when `check` is false). */
  streams?: number;
  /** Whether the chains and chunks were checked (see RebuildOptions.check). */
  checked: boolean;
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
 * Rebuilds every projection from the events, checking every stream's hash
 * chain and every metric chunk against its event first (the checks of
 * verifyChain). In two phases, so writers wait only as long as they must:
 *
 * 1. Without any lock, the settled log (SETTLED) is read in batches bounded
 *    by bytes and checked, however long it takes; appends go on meanwhile.
 * 2. One transaction takes the lock positions are handed out under (new
 *    appends wait when they reach it) and, from its TRUNCATE, the read
 *    models' tables (their readers wait; none sees a half-built model),
 *    checks the events appended since phase 1 began, and rebuilds: each
 *    projection with `rebuild` in set-based statements over the whole log,
 *    any other by applying the events batch by batch. `lockedMs` in the
 *    result is how long this phase held them.
 *
 * A broken chain or chunk (without `force`) or any error rolls phase 2 back:
 * the old read models stay as they were. With `check: false` nothing is
 * checked: phase 1 is skipped, and phase 2 only rebuilds.
 */
export async function rebuildProjections(store: EventStore, opts: RebuildOptions = {}): Promise<RebuildResult> {
  const t0 = performance.now();
  const setBased = store.projections.every((p) => p.rebuild);
  const check = opts.check ?? true;
  /** Whether the log is read event by event: to check it, or to apply it to a projection that has no set-based rebuild. */
  const readsLog = check || !setBased;
  const totals = readsLog ? await logTotals(store.db) : { events: 0, storedBytes: 0 };
  const chains = new ChainCheck();
  const broken: BrokenEvent[] = [];
  let brokenEvents = 0;
  let done = 0;
  let points = 0;
  let storedBytes = 0;
  let batches = 0;
  let largestBatchBytes = 0;
  let lockedMs = 0;
  let checkedUpTo = 0;

  const found = (wrong: BrokenEvent | null) => {
    if (!wrong) return;
    if (!opts.force) throw new BrokenChainError(wrong);
    if (brokenEvents++ < BROKEN_NAMED) broken.push(wrong);
  };
  /** Checks the log after `checkedUpTo` (and, unless `setBased`, applies it). */
  const pass = async (q: Queryable, settled: boolean) => {
    const after = checkedUpTo;
    for await (const batch of readEventBatches(q, { ...opts, afterPosition: after, settled })) {
      batches++;
      largestBatchBytes = Math.max(largestBatchBytes, batch.bytes || 0);
      const jsonBefore = chains.jsonBytes;
      for (const row of batch.rows) {
        if (check) found(chains.check(row));
        points += pointsIn(row);
      }
      if (!setBased) {
        const events = await readEvents(q, batch.rows);
        for (const p of store.projections) await p.apply(q, events);
      }
      checkedUpTo = batch.rows[batch.rows.length - 1]!.position;
      done += batch.rows.length;
      storedBytes += batch.storedBytes;
      opts.onProgress?.(done, Math.max(totals.events, done));
      opts.onBatch?.(scanProgress(totals, { events: done, points, storedBytes }, batch, chains.jsonBytes - jsonBefore, t0));
    }
    // The metric chunks are part of their events: checked against them (digests, summaries) like the chains.
    if (check) found(await verifyChunks(q, { afterPosition: after, upToPosition: checkedUpTo }));
  };

  // Phase 1 (set-based projections only: the others are applied as the log is read, under the lock).
  if (setBased && check) await pass(store.db, true);
  await store.db.transaction(async (tx) => {
    await tx.query('SELECT pg_advisory_xact_lock($1)', [APPEND_LOCK]); // no new appends until we commit
    const locked = performance.now();
    try {
      const tables = store.projections.flatMap((p) => p.tables);
      if (tables.length) await tx.query(`TRUNCATE ${tables.map((t) => `"${t}"`).join(', ')}`);
      // Appends that reserved positions before the lock have committed or wait on the TRUNCATE: the rest of the log is final.
      if (readsLog) await pass(tx, false);
      else {
        // Nothing to read event by event: the log's size, for the result and the progress callbacks.
        const [row] = await tx.query<{ events: number; points: number }>(
          'SELECT (SELECT count(*) FROM events)::int8 AS events, (SELECT coalesce(sum(n), 0) FROM metric_chunks)::int8 AS points',
        );
        done = row!.events;
        points = row!.points;
        opts.onProgress?.(0, done);
      }
      for (const p of store.projections) await p.rebuild?.(tx);
      if (!readsLog) opts.onProgress?.(done, done);
    } finally {
      lockedMs = performance.now() - locked;
    }
  });
  return {
    events: done,
    ms: performance.now() - t0,
    points,
    ...(check ? { streams: chains.streams } : {}),
    checked: check,
    batches,
    largestBatchBytes,
    lockedMs,
    ...(opts.force ? { brokenEvents, broken } : {}),
  };
}
