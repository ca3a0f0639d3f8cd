/**
 * `lineage.metricBuckets` against a plain reference computed from the raw
 * points (`lineage.metricPoints`, step order), on every backend: for many
 * bucket counts and zoom ranges, each bucket's step range, count, min, max and
 * last value must be exactly the reference's — with several points at one step
 * (within a batch and across batches), NaN/±Infinity, spikes and gaps in the
 * steps. Counting whole chunks by their summaries is an optimisation; this
 * file pins down that it changes nothing. And `metricPoints`, which pages
 * through chunks in order of their first step, against the points as logged.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Pedigree } from '@pedigree/lineage';
import { referenceBuckets } from './support/buckets.ts';
import { backends } from './support/stores.ts';

for (const { backend, skip } of await backends()) {
  describe.skipIf(skip)(`metric buckets on ${backend.name}`, () => {
    let pd: Pedigree;
    let runId: string;
    let raw: { step: number; value: number }[];
    beforeAll(async () => {
      pd = await backend.open();
      const projectId = await pd.tracker.ensureProject('buckets');
      ({ runId } = await pd.tracker.createRun({ projectId, name: 'b', kind: 'custom', start: true }));
      // Steps 3.. with gaps; a deterministic mix of noise, spikes, repeats and non-finite values.
      let seed = 7;
      const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
      const batch1: { key: string; step: number; value: number }[] = [];
      for (let s = 3; s < 5000; s += 1 + (s % 170 === 0 ? 40 : 0)) {
        batch1.push({ key: 'loss', step: s, value: Math.sin(s / 50) + rand() });
        if (s % 97 === 0) batch1.push({ key: 'loss', step: s, value: 100 + rand() }); // a second point at the same step, same batch
      }
      batch1[123]!.value = 1e9;
      batch1[777]!.value = -1e9;
      batch1[1500]!.value = NaN;
      batch1[1501]!.value = Infinity;
      batch1[2000]!.value = -Infinity;
      await pd.tracker.logMetrics(runId, batch1, { allowNonFinite: true });
      // A later batch re-logging some steps: its points come after the first batch's at those steps.
      await pd.tracker.logMetrics(runId, [{ key: 'loss', step: 250, value: -5 }, { key: 'loss', step: 4999, value: 0.5 }, { key: 'loss', step: 4999, value: NaN }], { allowNonFinite: true });
      raw = (await pd.lineage.metricPoints(runId, 'loss')).map((p) => ({ step: p.step, value: p.value }));
    });
    afterAll(() => backend.dispose());

    it('pages the raw points in (step, log) order, across chunks whose steps overlap and past one read', async () => {
      // Six 50,000-point batches (more than one read of chunks) whose step ranges overlap, logged out of step
      // order, with repeated steps: the page at any offset must be that slice of the points sorted by step,
      // the points of one step in the order they were logged.
      const starts = [100_000, 0, 60_000, 20_000, 140_000, 59_990];
      const logged: { step: number; value: number }[] = [];
      for (const [b, start] of starts.entries()) {
        const batch = Array.from({ length: 50_000 }, (_, i) => ({ key: 'paged', step: start + i, value: b * 1e6 + i, time: 1 }));
        await pd.tracker.logMetrics(runId, batch);
        logged.push(...batch.map((p) => ({ step: p.step, value: p.value })));
      }
      const expected = logged.map((p, i) => ({ ...p, i })).sort((x, y) => x.step - y.step || x.i - y.i).map(({ step, value }) => ({ step, value }));
      const strip = (ps: { step: number; value: number }[]) => ps.map((p) => ({ step: p.step, value: p.value }));
      expect(strip(await pd.lineage.metricPoints(runId, 'paged'))).toEqual(expected);
      for (const [offset, limit] of [[0, 10], [0, 60_000], [59_990, 30], [119_000, 5_000], [299_990, 100], [300_000, 5]] as const) {
        expect(strip(await pd.lineage.metricPoints(runId, 'paged', { offset, limit })), `${offset}+${limit}`).toEqual(expected.slice(offset, offset + limit));
      }
      const inRange = expected.filter((p) => p.step >= 59_000 && p.step <= 61_000);
      expect(strip(await pd.lineage.metricPoints(runId, 'paged', { fromStep: 59_000, toStep: 61_000, offset: 3, limit: 100 }))).toEqual(inRange.slice(3, 103));
    });

    it('matches the raw points exactly, for any bucket count and range', async () => {
      expect(raw.length).toBeGreaterThan(3500);
      const cases: { buckets: number; fromStep?: number; toStep?: number }[] = [
        { buckets: 1 },
        { buckets: 7 },
        { buckets: 400 },
        { buckets: 10_000 },
        { buckets: 50, fromStep: 240, toStep: 260 },
        { buckets: 3, fromStep: 4990 },
        { buckets: 400, toStep: 100 },
        { buckets: 10, fromStep: 0, toStep: 2 },
        { buckets: 10, fromStep: 6000 },
      ];
      for (const c of cases) {
        const got = await pd.lineage.metricBuckets(runId, 'loss', c);
        expect(got, JSON.stringify(c)).toEqual(referenceBuckets(raw, c));
      }
    });

    it('matches the raw points when a batch logs its steps out of order, one step many times across blocks', async () => {
      // Block summaries cover stored order, not step order: here every block spans most of the steps and
      // a step's points fall in many blocks, so the last value at a step is decided by the point's index.
      let seed = 11;
      const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
      const batch = Array.from({ length: 3000 }, () => ({ key: 'shuffled', step: Math.floor(rand() * 500), value: Math.floor(rand() * 20) - 10 }));
      batch[1234]!.value = NaN;
      await pd.tracker.logMetrics(runId, batch, { allowNonFinite: true });
      await pd.tracker.logMetrics(runId, batch.slice(0, 100).map((p) => ({ ...p, value: p.value + 0.5 })));
      const points = (await pd.lineage.metricPoints(runId, 'shuffled')).map((p) => ({ step: p.step, value: p.value }));
      expect(points).toHaveLength(3100);
      for (const c of [{ buckets: 1 }, { buckets: 3 }, { buckets: 64 }, { buckets: 500 }, { buckets: 1000 }, { buckets: 9, fromStep: 100, toStep: 130 }]) {
        expect(await pd.lineage.metricBuckets(runId, 'shuffled', c), JSON.stringify(c)).toEqual(referenceBuckets(points, c));
      }
      // Two whole blocks in one bucket that end at the same step (and a point at another block's edge):
      // the later block's last point is the bucket's last.
      const tie = [{ step: 0, value: 1 }, ...Array.from({ length: 127 }, (_, i) => ({ step: 10, value: i })), { step: 1000, value: 2 }];
      for (const [key, points] of [['tie', tie], ['tie-then-edge', [...tie, { step: 10, value: 7 }]]] as const) {
        await pd.tracker.logMetrics(runId, points.map((p) => ({ key, ...p })));
        const stored = (await pd.lineage.metricPoints(runId, key)).map((p) => ({ step: p.step, value: p.value }));
        for (const c of [{ buckets: 2 }, { buckets: 2, toStep: 999 }, { buckets: 100 }]) {
          expect(await pd.lineage.metricBuckets(runId, key, c), `${key} ${JSON.stringify(c)}`).toEqual(referenceBuckets(stored, c));
        }
      }
    });

    it('matches the raw points for chunks with a stride (steps from the index), overlapping and re-logged', async () => {
      // Strides 1 and 10, chunks whose step ranges overlap, a later chunk re-logging steps of an earlier one
      // (ties on step: the later event's point is the last), a one-point chunk, and one chunk without a stride
      // among them: a step misplaced by the index arithmetic, or a value read from the wrong offset, shows here.
      const key = 'strided';
      const batches = [
        Array.from({ length: 700 }, (_, i) => ({ step: 100 + i, value: Math.cos(i / 9) })),
        Array.from({ length: 300 }, (_, i) => ({ step: 5 + 10 * i, value: i % 50 === 0 ? 40 + i : -Math.sin(i / 7) })),
        Array.from({ length: 130 }, (_, i) => ({ step: 600 + i, value: i === 64 ? NaN : 1000 + i })),
        [{ step: 3000, value: -7 }],
        [{ step: 2, value: 3 }, { step: 1, value: 4 }, { step: 2, value: 5 }],
      ];
      for (const b of batches) await pd.tracker.logMetrics(runId, b.map((p) => ({ key, ...p })), { allowNonFinite: true });
      const strides = await pd.database.db.query<{ stride: number | null }>(`SELECT stride FROM metric_chunks WHERE run_id = $1 AND key = $2 ORDER BY position`, [runId, key]);
      expect(strides.map((s) => s.stride)).toEqual([1, 10, 1, 1, null]);
      const stored = (await pd.lineage.metricPoints(runId, key)).map((p) => ({ step: p.step, value: p.value }));
      expect(stored).toHaveLength(1134);
      for (const c of [{ buckets: 1 }, { buckets: 13 }, { buckets: 64 }, { buckets: 333 }, { buckets: 3000 }, { buckets: 10_000 }, { buckets: 17, fromStep: 640, toStep: 700 }, { buckets: 5, fromStep: 2999 }]) {
        expect(await pd.lineage.metricBuckets(runId, key, c), JSON.stringify(c)).toEqual(referenceBuckets(stored, c));
      }
    });

    it('keeps the extremes and the last point logged at a step', async () => {
      const all = await pd.lineage.metricBuckets(runId, 'loss', { buckets: 5 });
      expect(Math.max(...all.map((b) => b.max))).toBe(Infinity);
      expect(Math.min(...all.map((b) => b.min))).toBe(-Infinity);
      const last = all.at(-1)!;
      expect(last.toStep).toBe(4999);
      expect(last.last).toBeNaN(); // the last point logged at the last step
      const at250 = await pd.lineage.metricBuckets(runId, 'loss', { buckets: 1, fromStep: 250, toStep: 250 });
      expect(at250).toEqual([expect.objectContaining({ fromStep: 250, toStep: 250, count: raw.filter((p) => p.step === 250).length, last: -5 })]);
    });

    it('metricChart: the same buckets, with the position of the run’s last event they include', async () => {
      const chart = await pd.lineage.metricChart(runId, 'loss', { buckets: 7 });
      expect(chart.buckets).toEqual(await pd.lineage.metricBuckets(runId, 'loss', { buckets: 7 }));
      expect(chart.position).toBe((await pd.store.readStream(`run-${runId}`)).at(-1)!.position);
    });

    it('metricChart reads its position and its buckets in one snapshot, with batches committing beside it', async () => {
      // How I tried to break it: a writer appends batches to the run while charts are read in a loop (no
      // transaction holds them together any more). Every chart must count exactly the points of the run's
      // events up to its position: no more (a batch its position does not cover) and no fewer.
      const { runId: live } = await pd.tracker.createRun({ projectId: await pd.tracker.ensureProject('buckets'), name: 'live', kind: 'custom', start: true });
      const charts: { position: number; points: number }[] = [];
      let writing = true;
      const writer = (async () => {
        for (let b = 0; b < 25; b++) await pd.tracker.logMetrics(live, Array.from({ length: 400 + b }, (_, i) => ({ key: 'loss', step: b * 1000 + i, value: i })));
        writing = false;
      })();
      while (writing) {
        const chart = await pd.lineage.metricChart(live, 'loss', { buckets: 10 });
        charts.push({ position: chart.position, points: chart.buckets.reduce((n, b) => n + b.count, 0) });
      }
      await writer;
      const events = await pd.store.readStream(`run-${live}`);
      const pointsUpTo = (position: number) => events.filter((e) => e.position <= position && e.type === 'MetricsLogged').reduce((n, e) => n + (e.data as { points: unknown[] }).points.length, 0);
      expect(charts.length).toBeGreaterThan(2);
      for (const c of charts) expect(c.points, `chart at position ${c.position}`).toBe(pointsUpTo(c.position));
      expect(new Set(charts.map((c) => c.points)).size, 'charts taken while the batches landed').toBeGreaterThan(1);
      // A series with no points yet still has the run's position (its start events).
      const empty = await pd.lineage.metricChart(live, 'nope', { buckets: 10 });
      expect(empty).toEqual({ position: events.at(-1)!.position, buckets: [] });
    });

    it('returns nothing for an unknown series', async () => {
      expect(await pd.lineage.metricBuckets(runId, 'nope', { buckets: 10 })).toEqual([]);
    });
  });
}
