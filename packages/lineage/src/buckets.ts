import type { Queryable } from '@pedigree/db';
import { BLOCK_BYTES, BLOCK_POINTS, byteaAsBase64, bytesOf, POINT_BYTES, readInt8, ValidationError, viewOf, type ChunkSummaryRow } from '@pedigree/ledger';
import type { Bucket } from './views.ts';

export interface BucketOptions {
  buckets: number;
  fromStep?: number;
  toStep?: number;
}

/** A run of adjacent edge blocks of one chunk, read point by point. */
interface Slice {
  position: number;
  idx: number;
  /** The first block's index in the chunk, and how many blocks. */
  k: number;
  blocks: number;
  /** The chunk's first step, and its stride when its steps follow from the index (then only values are read), else null. */
  first: number;
  stride: number | null;
}

const SLICE_BYTES = BLOCK_POINTS * POINT_BYTES;

/** A series' range beside one of its chunks in the asked range (no chunk: position null; no series: project_id null). */
interface SeriesChunk extends Omit<ChunkSummaryRow, 'position'> {
  project_id: string | null;
  s_first: number;
  s_last: number;
  position: number | null;
  stride: number | null;
}

/**
 * One metric as `buckets` equal step ranges, each with its exact count, min,
 * max and last value: a chart drawn from these shows every spike a raw plot
 * would. Three reads, each narrower:
 *   1. a chunk whose steps all fall in one bucket counts by its summary;
 *   2. in a chunk that straddles a bucket edge (or the range's ends), a block
 *      of BLOCK_POINTS points that falls in one bucket counts by its block
 *      summary;
 *   3. only the blocks that straddle an edge are read point by point, as
 *      slices of the chunk's columns (substring reads only those bytes); of a
 *      chunk with a stride (steps first, first + s, …) only the values are
 *      read, the steps following from the index.
 * So the cost follows the number of buckets, not of points.
 */
export async function metricBuckets(q: Queryable, runId: string, key: string, opts: BucketOptions): Promise<Bucket[]> {
  return (await readBuckets(q, runId, key, opts, false)).buckets;
}

/**
 * The same buckets and `position`, the run's last event they include, from
 * one snapshot without a transaction: the first statement reads both the
 * position and which chunks there are, and the later ones read only rows of
 * those chunks, which never change once written.
 */
export async function metricChart(q: Queryable, runId: string, key: string, opts: BucketOptions): Promise<{ position: number; buckets: Bucket[] }> {
  return readBuckets(q, runId, key, opts, true);
}

async function readBuckets(q: Queryable, runId: string, key: string, opts: BucketOptions, withPosition: boolean): Promise<{ position: number; buckets: Bucket[] }> {
  if (!Number.isInteger(opts.buckets) || opts.buckets < 1 || opts.buckets > 10_000) throw new ValidationError('buckets must be an integer in 1..10000');
  // The series' range and its chunks in the asked range, in one round trip (and the run's last position:
  // one row even when the series has none). With the project's id beside a run's, each read below opens
  // one partition of metric_chunks.
  const seriesAndChunks = `SELECT s.project_id, s.first_step AS s_first, s.last_step AS s_last, c.position, c.idx, c.n, c.first_step, c.last_step, c.min, c.max, c.last_value, c.stride
     FROM metric_series s
     LEFT JOIN metric_chunks c ON c.project_id = s.project_id AND c.run_id = s.run_id AND c.key = s.key
       AND c.last_step >= greatest(s.first_step, coalesce($3::int8, s.first_step)) AND c.first_step <= least(s.last_step, coalesce($4::int8, s.last_step))
     WHERE s.run_id = $1::uuid AND s.key = $2`;
  const rows = await q.query<SeriesChunk & { run_position?: number | null }>(
    withPosition ? `SELECT p.run_position, x.* FROM (SELECT max(position) AS run_position FROM events WHERE stream_id = 'run-' || $1::uuid::text) p LEFT JOIN (${seriesAndChunks}) x ON true` : seriesAndChunks,
    [runId, key, opts.fromStep ?? null, opts.toStep ?? null],
  );
  return { position: rows[0]?.run_position ?? 0, buckets: await bucketsFrom(q, rows, opts) };
}

async function bucketsFrom(q: Queryable, chunks: SeriesChunk[], opts: BucketOptions): Promise<Bucket[]> {
  const series = chunks[0];
  if (!series?.project_id) return [];
  const projectId = series.project_id;
  const from = Math.max(opts.fromStep ?? series.s_first, series.s_first);
  const to = Math.min(opts.toStep ?? series.s_last, series.s_last);
  if (to < from) return [];
  const width = Math.max(1, Math.ceil((to - from + 1) / opts.buckets));
  const bucketOf = (step: number) => Math.floor((step - from) / width);
  const within = (lo: number, hi: number) => lo >= from && hi <= to && bucketOf(lo) === bucketOf(hi);
  const outside = (lo: number, hi: number) => hi < from || lo > to;

  const buckets = new Map<number, BucketAcc>();
  const straddling: { position: number; idx: number; n: number; first: number; stride: number | null }[] = [];
  for (const c of chunks) {
    if (c.position === null) continue; // the series has no chunk in the range
    if (within(c.first_step, c.last_step)) addToBucket(buckets, bucketOf(c.first_step), c.n, c.first_step, c.last_step, c.min, c.max, c.last_value, c.position, c.n);
    else straddling.push({ position: c.position, idx: c.idx, n: c.n, first: c.first_step, stride: c.stride });
  }

  const slices: Slice[] = [];
  if (straddling.length) {
    const rows = await q.query<{ position: number; idx: number; blocks: string }>(
      `SELECT m.position, m.idx, ${byteaAsBase64('m.blocks', 'blocks')} FROM unnest($1::int8[], $2::int4[]) AS u(position, idx)
       JOIN metric_chunks m ON m.project_id = $3::uuid AND m.position = u.position AND m.idx = u.idx`,
      [straddling.map((c) => c.position), straddling.map((c) => c.idx), projectId],
    );
    const chunkOf = new Map(straddling.map((c) => [`${c.position}/${c.idx}`, c]));
    for (const row of rows) {
      const { n, first, stride } = chunkOf.get(`${row.position}/${row.idx}`)!;
      const blocks = bytesOf(row.blocks);
      const view = viewOf(blocks);
      const count = blocks.byteLength / BLOCK_BYTES;
      for (let k = 0; k < count; k++) {
        const at = k * BLOCK_BYTES;
        const lo = readInt8(view, at);
        const hi = readInt8(view, at + 8);
        if (outside(lo, hi)) continue;
        if (within(lo, hi)) {
          addToBucket(buckets, bucketOf(lo), Math.min(BLOCK_POINTS, n - k * BLOCK_POINTS), lo, hi, view.getFloat64(at + 16), view.getFloat64(at + 24), view.getFloat64(at + 32), row.position, (k + 1) * BLOCK_POINTS - 1);
          continue;
        }
        const last = slices.at(-1);
        if (last && last.position === row.position && last.idx === row.idx && last.k + last.blocks === k) last.blocks++;
        else slices.push({ position: row.position, idx: row.idx, k, blocks: 1, first, stride });
      }
    }
  }

  if (slices.length) {
    const opened = await q.query<{ steps: string | null; vals: string }>(
      `SELECT ${byteaAsBase64(`CASE WHEN u.stride IS NULL THEN substring(m.steps FROM u.k * ${SLICE_BYTES} + 1 FOR u.blocks * ${SLICE_BYTES}) END`, 'steps')},
              ${byteaAsBase64(`substring(m.vals FROM u.k * ${SLICE_BYTES} + 1 FOR u.blocks * ${SLICE_BYTES})`, 'vals')}
       FROM unnest($1::int8[], $2::int4[], $3::int4[], $4::int4[], $5::int8[]) WITH ORDINALITY AS u(position, idx, k, blocks, stride, o)
       JOIN metric_chunks m ON m.project_id = $6::uuid AND m.position = u.position AND m.idx = u.idx
       ORDER BY u.o`,
      [slices.map((s) => s.position), slices.map((s) => s.idx), slices.map((s) => s.k), slices.map((s) => s.blocks), slices.map((s) => s.stride), projectId],
    );
    opened.forEach((row, j) => {
      const slice = slices[j]!;
      const valBytes = bytesOf(row.vals);
      const stepBytes = row.steps === null ? null : bytesOf(row.steps);
      const vals = viewOf(valBytes);
      const steps = stepBytes ? viewOf(stepBytes) : null;
      const firstIndex = slice.k * BLOCK_POINTS;
      const points = valBytes.byteLength / POINT_BYTES;
      for (let i = 0; i < points; i++) {
        const step = steps ? readInt8(steps, i * POINT_BYTES) : slice.first + (firstIndex + i) * slice.stride!;
        if (step < from || step > to) continue;
        const v = vals.getFloat64(i * POINT_BYTES);
        addToBucket(buckets, bucketOf(step), 1, step, step, v, v, v, slice.position, firstIndex + i);
      }
    });
  }
  return [...buckets.entries()]
    .sort(([x], [y]) => x - y)
    .map(([, a]) => ({ fromStep: a.fromStep, toStep: a.toStep, count: a.count, min: a.min, max: a.max, last: a.last, lastStep: a.toStep }));
}

interface BucketAcc extends Omit<Bucket, 'lastStep'> {
  /** Which point `last` is: its event's position and its index in the chunk (a later one wins a tie on step). */
  lastPosition: number;
  lastOrd: number;
}

/**
 * Adds a part of a series (a chunk's or a block's summary, or one point) to
 * its bucket: min and max ignore NaN (NaN when a bucket has nothing else); the
 * last value is the one at the highest step, the later event, then the later
 * point, winning a tie.
 */
function addToBucket(buckets: Map<number, BucketAcc>, b: number, n: number, lo: number, hi: number, min: number, max: number, last: number, position: number, ord: number): void {
  const a = buckets.get(b);
  if (!a) {
    buckets.set(b, { fromStep: lo, toStep: hi, count: n, min, max, last, lastPosition: position, lastOrd: ord });
    return;
  }
  a.count += n;
  if (lo < a.fromStep) a.fromStep = lo;
  if (!Number.isNaN(min) && !(min >= a.min)) a.min = min;
  if (!Number.isNaN(max) && !(max <= a.max)) a.max = max;
  if (hi > a.toStep || (hi === a.toStep && (position > a.lastPosition || (position === a.lastPosition && ord > a.lastOrd)))) {
    a.toStep = hi;
    a.last = last;
    a.lastPosition = position;
    a.lastOrd = ord;
  }
}
