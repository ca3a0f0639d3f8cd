import type { Queryable } from '@pedigree/db';
import { EVENT_COLUMNS, SETTLED, type EventRow } from './store.ts';

/**
 * Reading the whole log in global order, in batches bounded by bytes as well
 * as by count: a MetricsLogged event holds up to 50,000 points (~5 MB of
 * JSON), so a batch of a few thousand events could be gigabytes. Shared by
 * `replay` (rebuildProjections) and `verify` (verifyChain).
 */

/** Most events in one batch. */
export const DEFAULT_BATCH_EVENTS = 5000;
/**
 * Most bytes in one batch, as the events' data and metadata take
 * uncompressed (jsonb; their JSON text is ~0.8× that). A process holds
 * a few times a batch at once (the text, the parsed values, their canonical
 * form for the hash, the projection's column arrays).
 */
export const DEFAULT_BATCH_BYTES = 16 * 1024 * 1024;

export interface BatchLimits {
  /** Most events per batch (default 5,000). */
  batch?: number;
  /**
   * Most bytes per batch (default 16 MiB), estimated as described at
   * DEFAULT_BATCH_BYTES before the events are read. One event larger than
   * this is a batch of its own. `Infinity` batches by count only (the reader
   * before issue 13, kept as the benchmark's baseline).
   */
  maxBatchBytes?: number;
}

export interface EventBatch {
  rows: EventRow[];
  /** The batch's size estimated before it was read (what `maxBatchBytes` bounds); NaN when batching by count only. */
  bytes: number;
  /** Its size as stored (compressed where the store compresses): the unit progress is reckoned in. */
  storedBytes: number;
}

/**
 * A value's size uncompressed, known without reading it whole: an
 * uncompressed value's stored size is that already; a compressed one is
 * decompressed (`#> '{}'`, the value itself, ~2 GB/s), never printed.
 */
const rawSize = (column: string) => `CASE WHEN pg_column_compression(${column}) IS NULL THEN pg_column_size(${column}) ELSE pg_column_size(${column} #> '{}') END`;
const STORED_SIZE = 'pg_column_size(data) + pg_column_size(metadata)';
const QUALIFIED_COLUMNS = EVENT_COLUMNS.split(', ')
  .map((c) => `e.${c}`)
  .join(', ');

/**
 * One statement per batch, so the batch's bound and its rows come from one
 * snapshot. `listed`: the next `batch` events' stored sizes (no value is read).
 * `reachable`: a value is at least as large uncompressed as stored, so rows
 * past the budget on stored sizes alone cannot fit and are never
 * decompressed. `sized`: running sums of the sizes uncompressed. `cut`: the
 * last position within the budget (the first row always: an event larger
 * than the budget is a batch of its own). Then the rows, by position range.
 */
function batchQuery(streamFilter: boolean, settled: boolean): string {
  const stream = (alias: string) => (streamFilter ? ` AND ${alias}stream_id = $4` : '');
  // Settled rows form a prefix of the log, so the rows up to the last one listed (one snapshot) are settled too.
  return `
    WITH listed AS (
      SELECT position, data, metadata, ${STORED_SIZE} AS stored
      FROM events WHERE position > $1${stream('')}${settled ? ` AND ${SETTLED}` : ''} ORDER BY position LIMIT $2
    ), reachable AS (
      SELECT position, data, metadata, stored, sum(stored) OVER w AS floor, row_number() OVER w AS n
      FROM listed WINDOW w AS (ORDER BY position)
    ), sized AS (
      SELECT position, stored, n, sum(${rawSize('data')} + ${rawSize('metadata')}) OVER (ORDER BY position) AS running
      FROM reachable WHERE floor <= $3 OR n = 1
    ), cut AS (
      SELECT max(position) AS upto, max(running)::int8 AS bytes, sum(stored)::int8 AS stored FROM sized WHERE running <= $3 OR n = 1
    )
    SELECT ${QUALIFIED_COLUMNS}, (SELECT bytes FROM cut) AS batch_bytes, (SELECT stored FROM cut) AS batch_stored
    FROM events e WHERE e.position > $1 AND e.position <= (SELECT upto FROM cut)${stream('e.')}
    ORDER BY e.position`;
}

function countQuery(streamFilter: boolean, settled: boolean): string {
  return `SELECT ${EVENT_COLUMNS}, ${STORED_SIZE} AS stored FROM events WHERE position > $1${streamFilter ? ' AND stream_id = $3' : ''}${settled ? ` AND ${SETTLED}` : ''} ORDER BY position LIMIT $2`;
}

/**
 * The events after `afterPosition` (of one stream, or all) in global order,
 * batch by batch, by keyset on position. Holds two batches at most (the one
 * the caller has, and the next, read ahead); nothing is kept between them.
 */
export async function* readEventBatches(
  q: Queryable,
  opts: BatchLimits & {
    afterPosition?: number;
    streamId?: string;
    /** Only settled events (see SETTLED): a prefix of the log that nothing committing later can join below. */
    settled?: boolean;
  } = {},
): AsyncGenerator<EventBatch> {
  const maxEvents = opts.batch ?? DEFAULT_BATCH_EVENTS;
  const maxBytes = opts.maxBatchBytes ?? DEFAULT_BATCH_BYTES;
  if (!(Number.isInteger(maxEvents) && maxEvents > 0)) throw new RangeError(`batch must be a positive integer, got ${maxEvents}`);
  if (!(maxBytes > 0)) throw new RangeError(`maxBatchBytes must be positive, got ${maxBytes}`);
  const byCount = maxBytes === Infinity;
  const filter = opts.streamId !== undefined;
  const text = byCount ? countQuery(filter, opts.settled ?? false) : batchQuery(filter, opts.settled ?? false);
  const fetchAfter = (after: number) => {
    const params: unknown[] = byCount ? [after, maxEvents] : [after, maxEvents, Math.floor(maxBytes)];
    if (filter) params.push(opts.streamId);
    return q.query<EventRow & { batch_bytes?: number; batch_stored?: number; stored?: number }>(text, params);
  };
  let next = fetchAfter(opts.afterPosition ?? 0);
  for (;;) {
    const rows = await next;
    if (rows.length === 0) return;
    if (!byCount) {
      // The next batch is read (by the server, and parsed here between awaits) while the caller
      // uses this one: at most two batches are held, and the database's share of the work overlaps ours.
      next = fetchAfter(rows[rows.length - 1]!.position);
      next.catch(() => {}); // awaited on the next turn, or dropped if the caller stops first
    }
    const first = rows[0]!;
    const storedBytes = byCount ? rows.reduce((s, r) => s + (r.stored ?? 0), 0) : (first.batch_stored ?? 0);
    yield { rows, bytes: byCount ? NaN : (first.batch_bytes ?? 0), storedBytes };
    if (byCount) next = fetchAfter(rows[rows.length - 1]!.position);
  }
}

/** What a pass over the log will read: its events, and their bytes as stored. */
export async function logTotals(q: Queryable, opts: { streamId?: string; afterPosition?: number } = {}): Promise<{ events: number; storedBytes: number }> {
  const [row] = await q.query<{ events: number; stored: number }>(
    `SELECT count(*)::int8 AS events, coalesce(sum(${STORED_SIZE}), 0)::int8 AS stored FROM events WHERE position > $1${opts.streamId !== undefined ? ' AND stream_id = $2' : ''}`,
    opts.streamId !== undefined ? [opts.afterPosition ?? 0, opts.streamId] : [opts.afterPosition ?? 0],
  );
  return { events: row?.events ?? 0, storedBytes: row?.stored ?? 0 };
}

/** Points in a MetricsLogged event as stored (0 for any other event, or a malformed one). */
export function pointsIn(row: Pick<EventRow, 'type' | 'data'>): number {
  if (row.type !== 'MetricsLogged') return 0;
  const data = row.data as { points?: unknown; chunks?: unknown } | null;
  if (Array.isArray(data?.points)) return data.points.length; // v1: inline
  if (!Array.isArray(data?.chunks)) return 0;
  return data.chunks.reduce((s: number, c: { n?: unknown }) => s + (typeof c?.n === 'number' ? c.n : 0), 0); // v2: the manifest's counts
}

/** Progress of one pass over the log, reported after each batch. */
export interface ScanProgress {
  /** Events read so far, and in the pass (counted before it began). */
  events: number;
  totalEvents: number;
  /** Metric points in the MetricsLogged events read so far. */
  points: number;
  /** Bytes read so far as stored, and in the pass: what an ETA is reckoned in (events vary in size by 10^5). */
  storedBytes: number;
  totalStoredBytes: number;
  /** The batch just read: its events, its estimated size (bounded by `maxBatchBytes`), and its data's canonical JSON as hashed. */
  batch: { events: number; bytes: number; jsonBytes: number };
  elapsedMs: number;
}

/**
 * The progress to report after a batch: what was read so far (`done`), out
 * of the totals counted before the pass began (the pass may read more, as
 * the log grows), and the batch itself.
 */
export function scanProgress(
  totals: { events: number; storedBytes: number },
  done: { events: number; points: number; storedBytes: number },
  batch: EventBatch,
  jsonBytes: number,
  started: number,
): ScanProgress {
  return {
    ...done,
    totalEvents: Math.max(totals.events, done.events),
    totalStoredBytes: Math.max(totals.storedBytes, done.storedBytes),
    batch: { events: batch.rows.length, bytes: batch.bytes, jsonBytes },
    elapsedMs: performance.now() - started,
  };
}
