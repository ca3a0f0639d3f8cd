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
  chunk: Straddling;
  /** The first block's index in the chunk, and how many blocks. */
  k: number;
  blocks: number;
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
 * So the cost follows the number of buckets, not of points. Of a chunk with
 * a stride, the blocks at edges are known from its summary alone, so reads 2
 * and 3 go together (and read 2 not at all when every block is at an edge);
 * only chunks without one wait for their block summaries to find them.
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

  const acc = new Buckets(bucketOf(to) + 1);
  const straddling: Straddling[] = [];
  for (const c of chunks) {
    if (c.position === null) continue; // the series has no chunk in the range
    if (within(c.first_step, c.last_step)) acc.add(bucketOf(c.first_step), c.n, c.first_step, c.last_step, c.min, c.max, c.last_value, c.position, c.n);
    else straddling.push({ position: c.position, idx: c.idx, n: c.n, first: c.first_step, stride: c.stride });
  }
  if (!straddling.length) return acc.list();

  /**
   * Each block of the chunk in the range: `inBucket` for one within a bucket; one at an edge joins its
   * chunk's slices in `edges` (when given). A block's step range is read from its summary in `view`, or
   * of a chunk with a stride follows from the index: so the blocks at edges of such chunks are known
   * before their summaries are read, and both are read at once.
   */
  const scanBlocks = (c: Straddling, view: DataView | null, inBucket: (k: number, lo: number, hi: number) => void, edges: Slice[] | null) => {
    const blocks = Math.ceil(c.n / BLOCK_POINTS);
    for (let k = 0; k < blocks; k++) {
      const lo = c.stride !== null ? c.first + k * BLOCK_POINTS * c.stride : readInt8(view!, k * BLOCK_BYTES);
      const hi = c.stride !== null ? c.first + (Math.min((k + 1) * BLOCK_POINTS, c.n) - 1) * c.stride : readInt8(view!, k * BLOCK_BYTES + 8);
      if (outside(lo, hi)) continue;
      if (within(lo, hi)) inBucket(k, lo, hi);
      else if (edges) {
        const last = edges.at(-1);
        if (last?.chunk === c && last.k + last.blocks === k) last.blocks++;
        else edges.push({ chunk: c, k, blocks: 1 });
      }
    }
  };
  // Block summaries are read only where some block counts by its summary: not of a chunk with a stride all
  // of whose blocks lie at edges (a series shorter than its buckets are many).
  const strided: Slice[] = [];
  const summarised = straddling.filter((c) => {
    if (c.stride === null) return true;
    let anyWithin = false;
    scanBlocks(c, null, () => (anyWithin = true), strided);
    return anyWithin;
  });

  const [rows, stridedPoints] = await Promise.all([
    summarised.length
      ? q.query<{ position: number; idx: number; blocks: string }>(
          `SELECT m.position, m.idx, ${byteaAsBase64('m.blocks', 'blocks')} FROM unnest($1::int8[], $2::int4[]) AS u(position, idx)
           JOIN metric_chunks m ON m.project_id = $3::uuid AND m.position = u.position AND m.idx = u.idx`,
          [summarised.map((c) => c.position), summarised.map((c) => c.idx), projectId],
        )
      : [],
    readSlices(q, projectId, strided),
  ]);
  const chunkOf = new Map(summarised.map((c) => [`${c.position}/${c.idx}`, c]));
  const unstrided: Slice[] = [];
  for (const row of rows) {
    const c = chunkOf.get(`${row.position}/${row.idx}`)!;
    const view = viewOf(bytesOf(row.blocks));
    // A chunk with a stride has its edge slices already.
    const inBucket = (k: number, lo: number, hi: number) => {
      const at = k * BLOCK_BYTES;
      acc.add(bucketOf(lo), Math.min(BLOCK_POINTS, c.n - k * BLOCK_POINTS), lo, hi, view.getFloat64(at + 16), view.getFloat64(at + 24), view.getFloat64(at + 32), c.position, (k + 1) * BLOCK_POINTS - 1);
    };
    scanBlocks(c, view, inBucket, c.stride === null ? unstrided : null);
  }
  const addPoints = (slices: Slice[], opened: SliceRow[]) =>
    opened.forEach((row, j) => {
      const { chunk, k } = slices[j]!;
      const valBytes = bytesOf(row.vals);
      const vals = viewOf(valBytes);
      const steps = row.steps === null ? null : viewOf(bytesOf(row.steps));
      const firstIndex = k * BLOCK_POINTS;
      const points = valBytes.byteLength / POINT_BYTES;
      for (let i = 0; i < points; i++) {
        const step = steps ? readInt8(steps, i * POINT_BYTES) : chunk.first + (firstIndex + i) * chunk.stride!;
        if (step < from || step > to) continue;
        const v = vals.getFloat64(i * POINT_BYTES);
        acc.add(bucketOf(step), 1, step, step, v, v, v, chunk.position, firstIndex + i);
      }
    });
  addPoints(strided, stridedPoints);
  addPoints(unstrided, await readSlices(q, projectId, unstrided));
  return acc.list();
}

/** A chunk in the range that is not within one bucket. */
interface Straddling {
  position: number;
  idx: number;
  n: number;
  first: number;
  stride: number | null;
}

interface SliceRow {
  steps: string | null;
  vals: string;
}

/** The points of these slices, in order (substring reads only their bytes; of a chunk with a stride, only the values). */
async function readSlices(q: Queryable, projectId: string, slices: Slice[]): Promise<SliceRow[]> {
  if (!slices.length) return [];
  return q.query<SliceRow>(
    `SELECT ${byteaAsBase64(`CASE WHEN u.stride IS NULL THEN substring(m.steps FROM u.k * ${SLICE_BYTES} + 1 FOR u.blocks * ${SLICE_BYTES}) END`, 'steps')},
            ${byteaAsBase64(`substring(m.vals FROM u.k * ${SLICE_BYTES} + 1 FOR u.blocks * ${SLICE_BYTES})`, 'vals')}
     FROM unnest($1::int8[], $2::int4[], $3::int4[], $4::int4[], $5::int8[]) WITH ORDINALITY AS u(position, idx, k, blocks, stride, o)
     JOIN metric_chunks m ON m.project_id = $6::uuid AND m.position = u.position AND m.idx = u.idx
     ORDER BY u.o`,
    [slices.map((s) => s.chunk.position), slices.map((s) => s.chunk.idx), slices.map((s) => s.k), slices.map((s) => s.blocks), slices.map((s) => s.chunk.stride), projectId],
  );
}

/**
 * The buckets being summed, as columns (one entry per bucket): each part of
 * the series (a chunk's or a block's summary, or one point) is added to its
 * bucket. min and max ignore NaN (NaN when a bucket has nothing else); the
 * last value is the one at the highest step, the later event, then the later
 * point, winning a tie (lastPosition: its event's position, lastOrd: its
 * index in the chunk).
 */
class Buckets {
  private readonly count: Float64Array;
  private readonly fromStep: Float64Array;
  private readonly toStep: Float64Array;
  private readonly min: Float64Array;
  private readonly max: Float64Array;
  private readonly last: Float64Array;
  private readonly lastPosition: Float64Array;
  private readonly lastOrd: Float64Array;

  constructor(size: number) {
    this.count = new Float64Array(size);
    this.fromStep = new Float64Array(size).fill(Infinity);
    this.toStep = new Float64Array(size).fill(-Infinity);
    this.min = new Float64Array(size).fill(NaN);
    this.max = new Float64Array(size).fill(NaN);
    this.last = new Float64Array(size);
    this.lastPosition = new Float64Array(size);
    this.lastOrd = new Float64Array(size);
  }

  add(b: number, n: number, lo: number, hi: number, min: number, max: number, last: number, position: number, ord: number): void {
    this.count[b]! += n;
    if (lo < this.fromStep[b]!) this.fromStep[b] = lo;
    if (!Number.isNaN(min) && !(min >= this.min[b]!)) this.min[b] = min;
    if (!Number.isNaN(max) && !(max <= this.max[b]!)) this.max[b] = max;
    const top = this.toStep[b]!;
    if (hi > top || (hi === top && (position > this.lastPosition[b]! || (position === this.lastPosition[b]! && ord > this.lastOrd[b]!)))) {
      this.toStep[b] = hi;
      this.last[b] = last;
      this.lastPosition[b] = position;
      this.lastOrd[b] = ord;
    }
  }

  /** The buckets that hold points, in step order. */
  list(): Bucket[] {
    const out: Bucket[] = [];
    for (let b = 0; b < this.count.length; b++) {
      if (this.count[b] === 0) continue;
      out.push({ fromStep: this.fromStep[b]!, toStep: this.toStep[b]!, count: this.count[b]!, min: this.min[b]!, max: this.max[b]!, last: this.last[b]!, lastStep: this.toStep[b]! });
    }
    return out;
  }
}
