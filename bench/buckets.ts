/**
 * Bucketed series: what a chart of a long metric costs. One run with one
 * long metric loaded through the ledger; `metricBuckets(run, key, {buckets:
 * 1000})` (min/max/last per step range, computed in the database) vs the
 * baseline `metricPoints(run, key)` (every raw point to the client). Also
 * checks that the buckets keep the series' extremes exactly.
 */
import { openPedigree, type MetricPointInput, type Pedigree } from '@pedigree/lineage';
import { fmtInt, fmtMeasurement, fmtMs, fmtRate, fmtRatio, measure, rng, targetLine, timeIt, withServerDatabase, type BenchContext, type Benchmark, type Figure } from './lib.ts';

const KEY = 'train/loss';
const LOAD_BATCH = 50_000; // the most logMetrics takes in one call
const BUCKETS = 1000;
const TARGET = 20;

/** A noisy loss curve with a few spikes (and one dip) at pseudo-random steps: the extremes a chart must not lose. */
function makeSeries(n: number): { batches: MetricPointInput[][]; min: number; max: number } {
  const rand = rng(42);
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

async function load(pd: Pedigree, batches: MetricPointInput[][]): Promise<{ runId: string; ms: number }> {
  const { projectId } = await pd.tracker.createProject({ name: 'bench-buckets' });
  const { runId } = await pd.tracker.createRun({ projectId, name: 'long-run', kind: 'pretrain', start: true });
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

/** Times both reads on one store and checks the buckets' extremes; returns the figures' raw numbers. */
async function compare(ctx: BenchContext, label: string, pd: Pedigree, runId: string, n: number, expected: { min: number; max: number }, reps: { buckets: number; points: number }) {
  // These first calls (used for the checks below) are also the warmup.
  let buckets = await pd.lineage.metricBuckets(runId, KEY, { buckets: BUCKETS });
  const { length, rawMin, rawMax } = extremes(await pd.lineage.metricPoints(runId, KEY));
  if (length !== n) throw new Error(`${label}: metricPoints returned ${length} points, expected ${n}`);
  const bucketMs = await measure(async () => (buckets = await pd.lineage.metricBuckets(runId, KEY, { buckets: BUCKETS })), { reps: reps.buckets, warmup: 0 });
  const pointsMs = await measure(() => pd.lineage.metricPoints(runId, KEY), { reps: reps.points, warmup: 0 });
  const ratio = pointsMs.median / bucketMs.median;

  // Exactness: the buckets' global extremes are the raw series' extremes, bit for bit.
  const bMin = Math.min(...buckets.map((b) => b.min));
  const bMax = Math.max(...buckets.map((b) => b.max));
  const count = buckets.reduce((s, b) => s + b.count, 0);
  const exact = bMin === rawMin && bMax === rawMax && rawMin === expected.min && rawMax === expected.max && count === n;

  ctx.log(`${label}: metricBuckets(${fmtInt(BUCKETS)} buckets) ${fmtMeasurement(bucketMs)} → ${buckets.length} buckets`);
  ctx.log(`${label}: metricPoints (all ${fmtInt(n)})   ${fmtMeasurement(pointsMs)}`);
  ctx.log(`${label}: metricPoints / metricBuckets  ${targetLine(ratio, TARGET, '×')}`);
  ctx.log(
    `${label}: extremes: buckets min ${bMin} max ${bMax}; raw min ${rawMin} max ${rawMax}; counts ${fmtInt(count)}/${fmtInt(n)} → ${exact ? 'EXACT' : 'MISMATCH'}`,
  );
  return { bucketMs, pointsMs, ratio, exact };
}

export const buckets: Benchmark = {
  name: 'buckets',
  description: `one long metric: metricBuckets(${BUCKETS} buckets) vs metricPoints (all points); extremes kept exactly`,
  async run(ctx) {
    const n = ctx.quick ? 100_000 : 1_000_000;
    const series = makeSeries(n);
    const figures: Figure[] = [];
    ctx.log(`${fmtInt(n)} points of ${KEY} in one run, loaded through logMetrics in batches of ${fmtInt(LOAD_BATCH)}`);

    await withServerDatabase(async ({ url }) => {
      const pd = await openPedigree({ url }, { migrate: true, role: null /* the bench owns its database: baseline tables, VACUUM */ });
      try {
        const { runId, ms } = await load(pd, series.batches);
        ctx.log(`PostgreSQL: loaded in ${fmtMs(ms)} (${fmtRate(n, ms, 'points')})`);
        // What autovacuum would do soon anyway; done here so the plans do not change mid-measurement.
        await pd.database.db.query('VACUUM ANALYZE metric_points');
        const r = await compare(ctx, 'PostgreSQL', pd, runId, n, series, { buckets: 7, points: 5 });
        figures.push(
          { bench: 'buckets', what: `metricPoints, all ${fmtInt(n)} (PostgreSQL), baseline`, value: fmtMs(r.pointsMs.median) },
          { bench: 'buckets', what: `metricBuckets ${BUCKETS} (PostgreSQL)`, value: fmtMs(r.bucketMs.median) },
          { bench: 'buckets', what: 'ratio points / buckets (PostgreSQL)', value: fmtRatio(r.ratio), note: `target ≥ ${TARGET}×: ${r.ratio >= TARGET ? 'MET' : 'NOT MET'}` },
          { bench: 'buckets', what: 'bucket extremes = raw extremes (PostgreSQL)', value: r.exact ? 'exact' : 'MISMATCH' },
        );
      } finally {
        await pd.close();
      }
    });

    // Embedded mode, for information.
    const lite = await openPedigree({ dir: ':memory:' }, { role: null /* VACUUM needs the owner */ });
    try {
      const { runId, ms } = await load(lite, series.batches);
      ctx.log(`PGlite: loaded in ${fmtMs(ms)} (${fmtRate(n, ms, 'points')})`);
      await lite.database.db.query('VACUUM ANALYZE metric_points');
      const r = await compare(ctx, 'PGlite', lite, runId, n, series, { buckets: 3, points: 3 });
      figures.push(
        { bench: 'buckets', what: `metricPoints, all ${fmtInt(n)} (PGlite), info`, value: fmtMs(r.pointsMs.median) },
        { bench: 'buckets', what: `metricBuckets ${BUCKETS} (PGlite), info`, value: fmtMs(r.bucketMs.median) },
        { bench: 'buckets', what: 'ratio points / buckets (PGlite), info', value: fmtRatio(r.ratio), note: r.exact ? 'extremes exact' : 'extremes MISMATCH' },
      );
    } finally {
      await lite.close();
    }
    return figures;
  },
};
