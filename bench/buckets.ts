/**
 * Bucketed series: what a chart of a long metric costs. Two runs in one
 * store, each with one metric loaded through the ledger in batches of the
 * same size (so the same chunk size): a long one (1M points) and a short one
 * (10k points).
 *   - `metricBuckets(run, key, {buckets: 1000})` (exact min/max/last per
 *     step range, computed in the database from the chunks: a chunk within
 *     one bucket by its summary, one that straddles a bucket edge point by
 *     point) vs the baseline `metricPoints(run, key)` (every raw point to the
 *     client), on the long series;
 *   - the same bucket query on the long series vs on the short one: how the
 *     chart's cost grows with the series;
 * and checks that the buckets keep the series' extremes exactly.
 */
import { openPedigree, type MetricPointInput, type Pedigree } from '@pedigree/lineage';
import { fmtInt, fmtMeasurement, fmtMs, fmtRate, fmtRatio, inTurn, measure, rng, summarize, targetLine, timeIt, withServerDatabase, type BenchContext, type Benchmark, type Figure } from './lib.ts';

const KEY = 'train/loss';
/** Points per logMetrics call, for both series: the client's default batch size (PEDIGREE_BENCH_BUCKETS_BATCH to try another, ≤ 50,000). */
const LOAD_BATCH = Number(process.env.PEDIGREE_BENCH_BUCKETS_BATCH ?? 10_000);
const BUCKETS = 1000;
const SHORT = 10_000;
/** metricPoints / metricBuckets on the long series, at least. */
const TARGET = 200;
/** metricBuckets on the long series / on the short one, at most. */
const SCALE_TARGET = 3;

/** A noisy loss curve with a few spikes (and one dip) at pseudo-random steps: the extremes a chart must not lose. */
function makeSeries(n: number, seed = 42): { batches: MetricPointInput[][]; min: number; max: number } {
  const rand = rng(seed);
  const t0 = Date.UTC(2025, 0, 1);
  const spikes = new Map<number, number>();
  for (let i = 0; i < 20; i++) spikes.set(Math.floor(rand() * n), 8 + rand() * 40 + i * 1e-9);
  spikes.set(Math.floor(rand() * n), -0.123456789);
  const batches: MetricPointInput[][] = [];
  let min = Infinity;
  let max = -Infinity;
  for (let start = 0; start < n; start += LOAD_BATCH) {
    const b: MetricPointInput[] = [];
    for (let s = start; s < Math.min(n, start + LOAD_BATCH); s++) {
      const value = spikes.get(s) ?? 1.5 + 3 * Math.exp(-s / (n / 6)) + (rand() - 0.5) * 0.2;
      if (value < min) min = value;
      if (value > max) max = value;
      b.push({ key: KEY, step: s, value, time: t0 + s * 100 });
    }
    batches.push(b);
  }
  return { batches, min, max };
}

async function load(pd: Pedigree, projectId: string, name: string, batches: MetricPointInput[][]): Promise<{ runId: string; ms: number }> {
  const { runId } = await pd.tracker.createRun({ projectId, name, kind: 'pretrain', start: true });
  const { ms } = await timeIt(async () => {
    for (const b of batches) await pd.tracker.logMetrics(runId, b);
  });
  return { runId, ms };
}

function extremes(points: { value: number }[]) {
  let rawMin = Infinity;
  let rawMax = -Infinity;
  for (const p of points) {
    if (p.value < rawMin) rawMin = p.value;
    if (p.value > rawMax) rawMax = p.value;
  }
  return { length: points.length, rawMin, rawMax };
}

interface Loaded {
  runId: string;
  n: number;
  series: { min: number; max: number };
}

/** Whether the buckets' global extremes and count are the raw series' exactly, and a line saying so. */
async function exactness(pd: Pedigree, s: Loaded, buckets: { min: number; max: number; count: number }[]) {
  const { length, rawMin, rawMax } = extremes(await pd.lineage.metricPoints(s.runId, KEY));
  if (length !== s.n) throw new Error(`metricPoints returned ${length} points, expected ${s.n}`);
  const bMin = Math.min(...buckets.map((b) => b.min));
  const bMax = Math.max(...buckets.map((b) => b.max));
  const count = buckets.reduce((sum, b) => sum + b.count, 0);
  const exact = bMin === rawMin && bMax === rawMax && rawMin === s.series.min && rawMax === s.series.max && count === s.n;
  return { exact, line: `buckets min ${bMin} max ${bMax}; raw min ${rawMin} max ${rawMax}; counts ${fmtInt(count)}/${fmtInt(s.n)} → ${exact ? 'EXACT' : 'MISMATCH'}` };
}

/** Times both reads on the long series, and the bucket query on the short one; checks the buckets' extremes. */
async function compare(ctx: BenchContext, label: string, pd: Pedigree, long: Loaded, short: Loaded, reps: { buckets: number; points: number }) {
  const chunks = async (runId: string) =>
    (await pd.database.db.query<{ c: number }>('SELECT count(*)::int AS c FROM metric_chunks WHERE run_id = $1 AND key = $2', [runId, KEY]))[0]!.c;
  const [longChunks, shortChunks] = [await chunks(long.runId), await chunks(short.runId)];
  // These first calls (used for the checks below) are also the warmup.
  let buckets = await pd.lineage.metricBuckets(long.runId, KEY, { buckets: BUCKETS });
  let shortBuckets = await pd.lineage.metricBuckets(short.runId, KEY, { buckets: BUCKETS });
  const longExact = await exactness(pd, long, buckets);
  const shortExact = await exactness(pd, short, shortBuckets);
  // Long and short bucket queries alternate, so both see the same machine.
  const longMs: number[] = [];
  const shortMs: number[] = [];
  for (let i = 0; i < reps.buckets; i++) {
    const a = async () => longMs.push((await timeIt(async () => (buckets = await pd.lineage.metricBuckets(long.runId, KEY, { buckets: BUCKETS })))).ms);
    const b = async () => shortMs.push((await timeIt(async () => (shortBuckets = await pd.lineage.metricBuckets(short.runId, KEY, { buckets: BUCKETS })))).ms);
    await inTurn(i, a, b);
  }
  const bucketMs = summarize(longMs);
  const shortBucketMs = summarize(shortMs);
  const pointsMs = await measure(() => pd.lineage.metricPoints(long.runId, KEY), { reps: reps.points, warmup: 0 });
  const ratio = pointsMs.median / bucketMs.median;
  const scale = bucketMs.median / shortBucketMs.median;

  ctx.log(`${label}: long series ${fmtInt(long.n)} points in ${fmtInt(longChunks)} chunks; short series ${fmtInt(short.n)} points in ${fmtInt(shortChunks)} chunk${shortChunks === 1 ? '' : 's'}`);
  ctx.log(`${label}: metricBuckets(${fmtInt(BUCKETS)}), ${fmtInt(long.n)} points  ${fmtMeasurement(bucketMs)} → ${buckets.length} buckets`);
  ctx.log(`${label}: metricBuckets(${fmtInt(BUCKETS)}), ${fmtInt(short.n)} points    ${fmtMeasurement(shortBucketMs)} → ${shortBuckets.length} buckets`);
  ctx.log(`${label}: metricPoints (all ${fmtInt(long.n)})       ${fmtMeasurement(pointsMs)}`);
  ctx.log(`${label}: metricPoints / metricBuckets, ${fmtInt(long.n)} points  ${targetLine(ratio, TARGET, '×')}`);
  ctx.log(
    `${label}: metricBuckets at ${fmtInt(long.n)} / at ${fmtInt(short.n)} points  ${fmtRatio(scale)} (target ≤ ${SCALE_TARGET}×: ${scale <= SCALE_TARGET ? 'MET' : 'NOT MET'})`,
  );
  ctx.log(`${label}: extremes, ${fmtInt(long.n)} points: ${longExact.line}`);
  ctx.log(`${label}: extremes, ${fmtInt(short.n)} points: ${shortExact.line}`);
  return { bucketMs, shortBucketMs, pointsMs, ratio, scale, longChunks, exact: longExact.exact && shortExact.exact };
}

export const buckets: Benchmark = {
  name: 'buckets',
  description: `metricBuckets(${BUCKETS} buckets) vs metricPoints (all points) on a long metric; the bucket query at 1M vs 10k points; extremes kept exactly`,
  async run(ctx) {
    if (!(Number.isInteger(LOAD_BATCH) && LOAD_BATCH > 0 && LOAD_BATCH <= 50_000)) throw new Error('PEDIGREE_BENCH_BUCKETS_BATCH must be an integer in 1..50000');
    const n = ctx.quick ? 100_000 : 1_000_000;
    const longSeries = makeSeries(n);
    const shortSeries = makeSeries(SHORT, 43);
    const figures: Figure[] = [];
    ctx.log(`${fmtInt(n)} points of ${KEY} in one run and ${fmtInt(SHORT)} in another, loaded through logMetrics in batches of ${fmtInt(LOAD_BATCH)}`);

    const loadBoth = async (pd: Pedigree, label: string) => {
      const { projectId } = await pd.tracker.createProject({ name: 'bench-buckets' });
      const long = await load(pd, projectId, 'long-run', longSeries.batches);
      const short = await load(pd, projectId, 'short-run', shortSeries.batches);
      ctx.log(`${label}: loaded ${fmtInt(n)} points in ${fmtMs(long.ms)} (${fmtRate(n, long.ms, 'points')}), ${fmtInt(SHORT)} in ${fmtMs(short.ms)}`);
      // What autovacuum would do soon anyway; done here so the plans do not change mid-measurement.
      await pd.database.db.query('VACUUM ANALYZE metric_chunks');
      await pd.database.db.query('VACUUM ANALYZE metric_series');
      return { long: { runId: long.runId, n, series: longSeries }, short: { runId: short.runId, n: SHORT, series: shortSeries } };
    };

    await withServerDatabase(async ({ url }) => {
      const pd = await openPedigree({ url }, { migrate: true, role: null /* the bench owns its database: baseline tables, VACUUM */ });
      try {
        const { long, short } = await loadBoth(pd, 'PostgreSQL');
        const r = await compare(ctx, 'PostgreSQL', pd, long, short, { buckets: 21, points: 5 });
        figures.push(
          { bench: 'buckets', what: `metricPoints, all ${fmtInt(n)} (PostgreSQL), baseline`, value: fmtMs(r.pointsMs.median) },
          { bench: 'buckets', what: `metricBuckets ${BUCKETS}, ${fmtInt(n)} points in ${fmtInt(r.longChunks)} chunks (PostgreSQL)`, value: fmtMs(r.bucketMs.median) },
          { bench: 'buckets', what: 'ratio points / buckets (PostgreSQL)', value: fmtRatio(r.ratio), note: `target ≥ ${TARGET}×: ${r.ratio >= TARGET ? 'MET' : 'NOT MET'}` },
          { bench: 'buckets', what: `metricBuckets ${BUCKETS}, ${fmtInt(SHORT)} points (PostgreSQL)`, value: fmtMs(r.shortBucketMs.median) },
          {
            bench: 'buckets',
            what: `ratio buckets at ${fmtInt(n)} / at ${fmtInt(SHORT)} points (PostgreSQL)`,
            value: fmtRatio(r.scale),
            note: `target ≤ ${SCALE_TARGET}×: ${r.scale <= SCALE_TARGET ? 'MET' : 'NOT MET'}`,
          },
          { bench: 'buckets', what: 'bucket extremes = raw extremes (PostgreSQL)', value: r.exact ? 'exact' : 'MISMATCH' },
        );
      } finally {
        await pd.close();
      }
    });

    // Embedded mode, for information.
    const lite = await openPedigree({ dir: ':memory:' }, { role: null /* VACUUM needs the owner */ });
    try {
      const { long, short } = await loadBoth(lite, 'PGlite');
      const r = await compare(ctx, 'PGlite', lite, long, short, { buckets: 9, points: 3 });
      figures.push(
        { bench: 'buckets', what: `metricPoints, all ${fmtInt(n)} (PGlite), info`, value: fmtMs(r.pointsMs.median) },
        { bench: 'buckets', what: `metricBuckets ${BUCKETS} (PGlite), info`, value: fmtMs(r.bucketMs.median) },
        { bench: 'buckets', what: 'ratio points / buckets (PGlite), info', value: fmtRatio(r.ratio), note: r.exact ? 'extremes exact' : 'extremes MISMATCH' },
        { bench: 'buckets', what: `ratio buckets at ${fmtInt(n)} / at ${fmtInt(SHORT)} (PGlite), info`, value: fmtRatio(r.scale) },
      );
    } finally {
      await lite.close();
    }
    return figures;
  },
};
