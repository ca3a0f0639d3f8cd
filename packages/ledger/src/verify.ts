import type { Queryable } from '@pedigree/db';
import { logTotals, pointsIn, readEventBatches, scanProgress, type BatchLimits, type ScanProgress } from './batches.ts';
import { canonicalJson, GENESIS_HASH } from './canonical.ts';
import { byteaAsBase64, bytesOf, type ChunkSummaryRow, decodeFloats, decodeSteps, digestOf, encodeBlocks, jsonChunkDigest, POINT_BYTES, strideOf, summarize } from './chunks.ts';
import { metricNumber, type MetricValueJson, type StoredEvent } from './events.ts';
import { eventHash, type EventRow } from './store.ts';

export interface BrokenEvent {
  position: number;
  streamId: string;
  streamVersion: number;
  eventId: string;
  type: string;
  reason: string;
}

export interface VerifyResult {
  ok: boolean;
  checked: number;
  streams: number;
  /** The first event (in global order) whose hash, link or version is wrong. */
  firstBroken?: BrokenEvent;
  /** Metric points in the events checked. */
  points?: number;
  /** Batches read, and the largest one's estimated size (see BatchLimits). */
  batches?: number;
  largestBatchBytes?: number;
}

export interface VerifyOptions extends BatchLimits {
  streamId?: string;
  onProgress?: (checked: number) => void;
  /** After each batch; the totals are counted first when this is given. */
  onBatch?: (progress: ScanProgress) => void;
}

/** A replay refused because a chain is broken: `firstBroken` names the event. */
export class BrokenChainError extends Error {
  constructor(readonly firstBroken: BrokenEvent) {
    super(
      `the hash chain is broken at position ${firstBroken.position}: ${firstBroken.type} #${firstBroken.streamVersion} of ${firstBroken.streamId} (event id ${firstBroken.eventId}): ${firstBroken.reason}`,
    );
    this.name = 'BrokenChainError';
  }
}

/**
 * Checks every stream's hash chain in one pass over the log in global order:
 * each event's prev_hash must be the previous event's hash, versions must
 * count 1, 2, 3…, and the hash must match the event's canonical content.
 * Holds one head per stream (its version and hash), nothing per event.
 */
export class ChainCheck {
  private readonly heads = new Map<string, { version: number; hash: string }>();
  /** Canonical JSON bytes of the data hashed so far. */
  jsonBytes = 0;

  get streams(): number {
    return this.heads.size;
  }

  /**
   * What is wrong with the next event, or null. The stream's head moves on
   * to it either way, so one altered event is reported once, not with every
   * event after it.
   */
  check(row: EventRow): BrokenEvent | null {
    const head = this.heads.get(row.stream_id);
    this.heads.set(row.stream_id, { version: row.stream_version, hash: row.hash });
    const reason = this.reasonBroken(row, head ?? { version: 0, hash: GENESIS_HASH });
    return reason === null
      ? null
      : { position: row.position, streamId: row.stream_id, streamVersion: row.stream_version, eventId: row.event_id, type: row.type, reason };
  }

  private reasonBroken(row: EventRow, head: { version: number; hash: string }): string | null {
    if (row.stream_version !== head.version + 1) return `version ${row.stream_version} follows ${head.version}`;
    if (row.prev_hash !== head.hash) return 'prev_hash does not match the previous event’s hash';
    let dataJson: string;
    try {
      dataJson = canonicalJsonOfParsed(row.data);
      this.jsonBytes += dataJson.length;
      if (eventHash(row.prev_hash, rowToEventRaw(row), dataJson) === row.hash) return null;
    } catch (err) {
      // A value no writer could have stored (e.g. nested past the stack): altered.
      return `content cannot be hashed (${(err as Error).message}): altered after it was written`;
    }
    return 'content does not match its hash (altered after it was written)';
  }
}

/**
 * Walks every stream's hash chain in global order (see ChainCheck), reading
 * the log in batches bounded by bytes (see BatchLimits). Takes no lock: events
 * appended meanwhile are checked when the walk reaches them.
 */
export async function verifyChain(db: Queryable, opts: VerifyOptions = {}): Promise<VerifyResult> {
  const started = performance.now();
  const chains = new ChainCheck();
  const totals = opts.onBatch ? await logTotals(db, { streamId: opts.streamId }) : { events: 0, storedBytes: 0 };
  let checked = 0;
  let points = 0;
  let storedBytes = 0;
  let batches = 0;
  let largestBatchBytes = 0;
  const summary = () => ({ checked, streams: chains.streams, points, batches, largestBatchBytes });
  for await (const batch of readEventBatches(db, opts)) {
    batches++;
    largestBatchBytes = Math.max(largestBatchBytes, batch.bytes || 0);
    const jsonBefore = chains.jsonBytes;
    for (const row of batch.rows) {
      const broken = chains.check(row);
      if (broken) return { ok: false, ...summary(), firstBroken: broken };
      checked++;
      points += pointsIn(row);
    }
    storedBytes += batch.storedBytes;
    opts.onProgress?.(checked);
    opts.onBatch?.(scanProgress(totals, { events: checked, points, storedBytes }, batch, chains.jsonBytes - jsonBefore, started));
  }
  const brokenChunk = await verifyChunks(db, opts);
  if (brokenChunk) return { ok: false, ...summary(), firstBroken: brokenChunk };
  return { ok: true, ...summary() };
}

/** Most points read per query while checking chunks. */
const CHUNK_BATCH_POINTS = 250_000;
/**
 * Most chunks read per query while checking chunks: small batches of
 * small chunks (a training loop's 2 points a key) cost a round trip and a
 * plan over every partition per 1,000, which was a third of replay's time.
 */
const CHUNK_BATCH_ROWS = 10_000;

const CHUNK_COLUMNS = ['steps', 'vals', 'times', 'blocks'] as const;
type ChunkColumn = (typeof CHUNK_COLUMNS)[number];

interface CheckedChunk extends ChunkSummaryRow {
  key: string;
  steps: Uint8Array;
  vals: Uint8Array;
  times: Uint8Array;
  blocks: Uint8Array;
  digest: string | null;
  stride: number | null;
  stream_id: string | null;
  stream_version: number | null;
  event_id: string | null;
  type: string | null;
  schema_version: number | null;
  entry: { key?: unknown; n?: unknown; digest?: unknown } | null;
}

/**
 * The metric chunks against their events, in (position, idx) order, a
 * bounded number of points at a time: every chunk's digest is recomputed
 * from its columns and must be the one its event names (an event written
 * before v2 holds its points inline: the chunk must hold exactly those), its
 * summary must be its points', and every MetricsLogged event must have
 * exactly the chunks it names. The first chunk found wrong is reported as
 * its event.
 */
export async function verifyChunks(db: Queryable, opts: { streamId?: string; afterPosition?: number; upToPosition?: number } = {}): Promise<BrokenEvent | null> {
  if (opts.streamId !== undefined && !opts.streamId.startsWith('run-')) return null;
  const lo = Math.trunc(opts.afterPosition ?? 0);
  const hi = opts.upToPosition === undefined ? null : Math.trunc(opts.upToPosition);
  const inRange = (alias: string) => ` AND ${alias}.position > ${lo}${hi === null ? '' : ` AND ${alias}.position <= ${hi}`}`;
  const missing = await db.query<{ position: number; stream_id: string; stream_version: number; event_id: string; type: string; chunks: number; named: number }>(
    `SELECT e.position, e.stream_id, e.stream_version, e.event_id, e.type, k.chunks, n.named
     FROM events e
     CROSS JOIN LATERAL (SELECT count(*)::int AS chunks FROM metric_chunks c WHERE c.project_id = e.project_id AND c.position = e.position) k
     CROSS JOIN LATERAL (SELECT CASE WHEN e.schema_version >= 2 THEN jsonb_array_length(e.data->'chunks')
                                     ELSE (SELECT count(DISTINCT p->>'key')::int FROM jsonb_array_elements(e.data->'points') p) END AS named) n
     WHERE e.type = 'MetricsLogged' AND k.chunks <> n.named${inRange('e')}${opts.streamId !== undefined ? ' AND e.stream_id = $1' : ''}
     ORDER BY e.position LIMIT 1`,
    opts.streamId !== undefined ? [opts.streamId] : [],
  );
  let broken: BrokenEvent | null = missing[0]
    ? { ...eventOf(missing[0]), reason: `names ${missing[0].named} metric chunks, ${missing[0].chunks} are stored (deleted or added behind the store's back)` }
    : null;
  type InlinePoint = { key: string; step: number; value: MetricValueJson; time: number };
  let after = { position: lo, idx: -1 };
  const inline: { position: number; points: InlinePoint[] } = { position: -1, points: [] };
  const byRun = opts.streamId !== undefined ? ` AND c.run_id = '${opts.streamId.slice(4).replace(/[^0-9a-f-]/gi, '')}'::uuid` : '';
  for (;;) {
    const heads = await db.query<{ position: number; idx: number; n: number }>(
      `SELECT c.position, c.idx, c.n FROM metric_chunks c WHERE (c.position, c.idx) > ($1, $2) AND c.position >= $1${byRun}${inRange('c')} ORDER BY c.position, c.idx LIMIT ${CHUNK_BATCH_ROWS}`,
      [after.position, after.idx],
    );
    if (heads.length === 0) break;
    let points = 0;
    let cut = heads[0]!;
    for (const h of heads) {
      if (points > 0 && points + h.n > CHUNK_BATCH_POINTS) break;
      points += h.n;
      cut = h;
    }
    const rows = await db.query<CheckedChunk & Record<ChunkColumn, string>>(
      `SELECT c.position, c.idx, c.key, c.n, c.first_step, c.last_step, c.min, c.max, c.last_value,
              ${CHUNK_COLUMNS.map((col) => byteaAsBase64(`c.${col}`, col)).join(', ')}, c.digest, c.stride,
              e.stream_id, e.stream_version, e.event_id, e.type, e.schema_version,
              CASE WHEN e.schema_version >= 2 THEN e.data->'chunks'->c.idx END AS entry
       FROM metric_chunks c
       -- The events of the batch's position range, joined as a set (a probe per chunk into the partitioned
       -- events cost more than the rest of the check); (position, project_id) is the events' key: one match at most.
       LEFT JOIN events e ON e.project_id = c.project_id AND e.position = c.position AND e.position BETWEEN $1 AND $3
       WHERE (c.position, c.idx) > ($1, $2) AND (c.position, c.idx) <= ($3, $4) AND c.position BETWEEN $1 AND $3${byRun}
       ORDER BY c.position, c.idx`,
      [after.position, after.idx, cut.position, cut.idx],
    );
    for (const row of rows) {
      const c: CheckedChunk = { ...row, steps: bytesOf(row.steps), vals: bytesOf(row.vals), times: bytesOf(row.times), blocks: bytesOf(row.blocks) };
      if (broken && broken.position <= c.position) return broken;
      if (c.type !== 'MetricsLogged' || c.schema_version === null) {
        broken ??= { position: c.position, streamId: c.stream_id ?? '?', streamVersion: c.stream_version ?? 0, eventId: c.event_id ?? '?', type: c.type ?? '(no event)', reason: `metric chunk ${c.idx} (${c.key}) has no MetricsLogged event of its project at its position` };
        continue;
      }
      if (c.schema_version < 2 && inline.position !== c.position) {
        const [row] = await db.query<{ data: { points?: InlinePoint[] } }>('SELECT data FROM events WHERE position = $1', [c.position]);
        inline.position = c.position;
        inline.points = row?.data.points ?? [];
      }
      const reason = chunkWrong(c, c.schema_version < 2 ? inline.points.filter((p) => p.key === c.key) : null);
      if (reason) return { position: c.position, streamId: c.stream_id!, streamVersion: c.stream_version!, eventId: c.event_id!, type: c.type, reason };
    }
    after = { position: cut.position, idx: cut.idx };
  }
  return broken;
}

function eventOf(r: { position: number; stream_id: string; stream_version: number; event_id: string; type: string }): Omit<BrokenEvent, 'reason'> {
  return { position: r.position, streamId: r.stream_id, streamVersion: r.stream_version, eventId: r.event_id, type: r.type };
}

const same = (a: number, b: number) => a === b || (Number.isNaN(a) && Number.isNaN(b));

/** What is wrong with a chunk, or null. `inline`: the points of its key in an event written before v2. */
function chunkWrong(c: CheckedChunk, inline: { step: number; value: MetricValueJson; time: number }[] | null): string | null {
  const name = `metric chunk ${c.idx} (${c.key})`;
  const bytes = c.steps.byteLength;
  if (bytes % POINT_BYTES !== 0 || c.vals.byteLength !== bytes || c.times.byteLength !== bytes || bytes === 0) return `${name}: its columns differ in length (altered after it was written)`;
  const steps = decodeSteps(c.steps);
  const values = decodeFloats(c.vals);
  // Times enter only a digest over JSON (a columns digest hashes their bytes): decoded only for one.
  const decoded = () => ({ steps, values, times: decodeFloats(c.times) });
  if (inline) {
    if (c.digest !== null) return `${name}: a digest on a chunk of an event that holds its points inline (altered)`;
    const expected = jsonChunkDigest(c.key, inline.map((p) => p.step), inline.map((p) => metricNumber(p.value)), inline.map((p) => p.time));
    if (jsonChunkDigest(c.key, steps, values, decoded().times) !== expected) return `${name} does not hold the points its event holds (altered after it was written)`;
  } else {
    const entry = c.entry;
    if (!entry || entry.key !== c.key || entry.n !== steps.length || entry.digest !== c.digest || c.digest === null) return `${name} is not the chunk its event names (altered after it was written)`;
    if (digestOf(c.digest, c.key, c, decoded) !== c.digest) return `${name} does not match its digest (altered after it was written)`;
  }
  const s = summarize(steps, values);
  if (c.n !== s.n || c.first_step !== s.firstStep || c.last_step !== s.lastStep || !same(c.min, s.min) || !same(c.max, s.max) || !same(c.last_value, s.lastValue)) {
    return `${name}: its summary (count, steps, min, max, last) is not its points' (altered after it was written)`;
  }
  if (!encodeBlocks(steps, values).equals(c.blocks)) return `${name}: its block summaries are not its points' (altered after it was written)`;
  // No stride only costs a chart speed; a wrong one would misplace points.
  if (c.stride !== null && c.stride !== strideOf(steps)) return `${name}: its stride is not its steps' (altered after it was written)`;
  return null;
}

/** Deeper than this, JSON.stringify's recursion is not trusted with a value: canonicalJson (iterative) takes it. */
const FAST_PATH_DEPTH = 256;

/**
 * canonicalJson(value) for a value parsed from JSON text, as the drivers
 * return jsonb — found ~10× faster where possible. JSON.stringify writes
 * strings and numbers exactly as canonicalJson does, and object keys in
 * their own order; so wherever every object's keys are already in sorted
 * order, the two agree. jsonb keeps keys shortest first, which for a metric
 * point ({key, step, time, value}) is sorted order too, so a 50,000-point
 * batch takes the fast path (~40 ms, not ~500). Checked for each value,
 * never assumed: anything else (unsorted keys, integer-like keys, which
 * objects list first, non-finite numbers, anything JSON text cannot hold,
 * deep nesting) goes to canonicalJson.
 */
export function canonicalJsonOfParsed(value: unknown): string {
  return keysInCanonicalOrder(value) ? JSON.stringify(value) : canonicalJson(value);
}

/** Whether JSON.stringify(value) is canonicalJson(value): see canonicalJsonOfParsed. Iterative. */
function keysInCanonicalOrder(value: unknown): boolean {
  const values: unknown[] = [value];
  const depths: number[] = [0];
  while (values.length > 0) {
    const v = values.pop();
    const depth = depths.pop()!;
    switch (typeof v) {
      case 'string':
      case 'boolean':
        continue;
      case 'number':
        if (!Number.isFinite(v)) return false;
        continue;
      case 'object':
        break;
      default:
        return false; // undefined, a function, a symbol, a bigint: not from JSON text
    }
    if (v === null) continue;
    if (depth >= FAST_PATH_DEPTH) return false;
    if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) {
        if (!(i in v)) return false; // a hole
        values.push(v[i]);
        depths.push(depth + 1);
      }
      continue;
    }
    const proto = Object.getPrototypeOf(v) as unknown;
    if ((proto !== Object.prototype && proto !== null) || typeof (v as { toJSON?: unknown }).toJSON === 'function') return false;
    const keys = Object.keys(v);
    for (let i = 0; i < keys.length; i++) {
      if (i > 0 && !(keys[i - 1]! < keys[i]!)) return false; // < on strings: UTF-16 code units, as sort() orders them
      values.push((v as Record<string, unknown>)[keys[i]!]);
      depths.push(depth + 1);
    }
  }
  return true;
}

/** The event exactly as stored (no upcasting, whatever its type says): the hash covers the stored version. */
function rowToEventRaw(row: EventRow): Omit<StoredEvent, 'position' | 'prevHash' | 'hash'> {
  return {
    streamId: row.stream_id,
    streamVersion: row.stream_version,
    eventId: row.event_id,
    projectId: row.project_id,
    type: row.type,
    schemaVersion: row.schema_version,
    data: row.data,
    metadata: row.metadata,
    recordedAt: row.recorded_at,
  } as Omit<StoredEvent, 'position' | 'prevHash' | 'hash'>;
}
