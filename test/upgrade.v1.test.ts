/**
 * A store written before metric storage v2 (issue 14) opens under this
 * version through its migrations, and answers every read exactly as the
 * version that wrote it did.
 *
 * The fixture (test/fixtures/store-v1, made by generate.ts under that version)
 * holds the same history twice: an embedded store (a PGlite data directory)
 * and a server store (a data-only pg_dump, loaded here after that version's
 * migrations), each with what that version answered (expected.*.json):
 * every point of every series, charts at 1, 7 and 1000 buckets and zoomed,
 * the latest points, run views and listings, metric summaries, ancestry,
 * three diffs, verify's and replay's counts. The history has interleaved
 * keys, steps logged twice (across batches and within one), batches out of
 * step order, NaN/±Infinity, -0 and 0, extreme and subnormal doubles,
 * fractional times and steps up to 2^53 − 1; a completed and a failed run.
 *
 * Each store is then checked to verify, to replay to the same answers, and to
 * take new points on an old run: reads show the old points and the new, in
 * order, and charts, latest points and summaries agree with a reference
 * computed from those points (the same reference reproduces the old
 * version's charts from the old points first).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { brotliDecompressSync } from 'node:zlib';
import { PGlite } from '@electric-sql/pglite';
import { loadMigrations, migrate, openPostgres } from '@pedigree/db';
import { decodeSteps, strideOf } from '@pedigree/ledger';
import { openPedigree, type MetricPointInput, type Pedigree } from '@pedigree/lineage';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  BUCKET_COUNTS,
  collectReads,
  decodeNumber,
  encode,
  IDS,
  KEYS,
  replayCounts,
  V1_LAST_MIGRATION,
  verifyCounts,
  ZOOM,
  type Encoded,
  type Expected,
  type Reads,
} from './fixtures/store-v1/reads.ts';
import { createServerDatabase, serverUnavailable } from './support/stores.ts';
import { referenceBuckets } from './support/buckets.ts';

const FIXTURE = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures/store-v1');

interface Point {
  step: number;
  value: number;
  time: number;
}
interface Series {
  key: string;
  count: number;
  firstStep: number;
  lastStep: number;
  last: number;
  min: number;
  max: number;
}

/** Every read, section by section (soft: one run reports every section that differs). */
function expectSameReads(actual: Reads, expected: Reads, label: string): void {
  for (const section of ['projects', 'runs', 'artifacts', 'latestMetrics', 'diff', 'diffReverse', 'diffAll'] as const) {
    expect.soft(actual[section], `${label}: ${section}`).toEqual(expected[section]);
  }
  expect.soft(Object.keys(actual.perRun).sort(), `${label}: runs read`).toEqual(Object.keys(expected.perRun).sort());
  for (const [run, want] of Object.entries(expected.perRun)) {
    const got = actual.perRun[run]!;
    for (const part of ['run', 'metricKeys', 'hyperparameterHistory', 'edges', 'evals', 'notes', 'files', 'ancestry'] as const) {
      expect.soft(got[part], `${label}: ${run} ${part}`).toEqual(want[part]);
    }
    for (const [key, series] of Object.entries(want.series)) {
      expect.soft(got.series[key]?.points, `${label}: ${run} ${key} points`).toEqual(series.points);
      for (const n of BUCKET_COUNTS) expect.soft(got.series[key]?.buckets[n], `${label}: ${run} ${key} ${n} buckets`).toEqual(series.buckets[n]);
      expect.soft(got.series[key]?.zoom, `${label}: ${run} ${key} zoomed buckets`).toEqual(series.zoom);
    }
  }
}

const decodePoints = (v: Encoded): Point[] =>
  (v as { step: number; value: Encoded; time: number }[]).map((p) => ({ step: p.step, value: decodeNumber(p.value), time: p.time }));


/** A series' summary from its points in (step, position, idx) order: the last value is the last point logged at the highest step. */
function referenceSeries(key: string, points: Point[]): Series {
  const finite = points.map((p) => p.value).filter((v) => !Number.isNaN(v));
  return {
    key,
    count: points.length,
    firstStep: points[0]!.step,
    lastStep: points.at(-1)!.step,
    last: points.at(-1)!.value,
    min: finite.length ? Math.min(...finite) : NaN,
    max: finite.length ? Math.max(...finite) : NaN,
  };
}

/** The latest point as MLflow defines it: the highest step, then the latest wall time, then the larger value (NaN largest, as PostgreSQL orders). */
function referenceLatest(key: string, points: Point[]) {
  const gt = (a: number, b: number) => (Number.isNaN(a) ? !Number.isNaN(b) : !Number.isNaN(b) && a > b);
  let best = points[0]!;
  for (const p of points) {
    if (p.step > best.step || (p.step === best.step && (p.time > best.time || (p.time === best.time && gt(p.value, best.value))))) best = p;
  }
  return { key, value: best.value, step: best.step, time: best.time };
}

/** Points logged to the completed pretrain run after the upgrade: at an old step, past the end, at an earlier step, at 2^53 − 1 again, and a new key. */
const T1 = Date.UTC(2026, 11, 1);
const NEW_POINTS: MetricPointInput[] = [
  { key: 'loss', step: 5, value: 4.5, time: T1 },
  { key: 'post_upgrade', step: 0, value: 1, time: T1 },
  { key: 'loss', step: 700, value: 1.5, time: T1 + 1 },
  { key: 'loss', step: 700, value: -0, time: T1 + 2 },
  { key: 'loss', step: 2, value: NaN, time: T1 + 3 },
  { key: 'tokens', step: Number.MAX_SAFE_INTEGER, value: 3, time: T1 + 4 },
  { key: 'post_upgrade', step: 1, value: Infinity, time: T1 + 5 },
  { key: 'grad_norm', step: 690, value: 0.75, time: T1 + 6 },
];
/** As the old version stored a point: -0 as 0 (a JSON event has no -0). */
const asStored = (p: MetricPointInput): Point => ({ step: p.step, value: p.value === 0 ? 0 : p.value, time: p.time! });

interface Store {
  name: 'pglite' | 'postgres';
  skip: string | null;
  /** The fixture loaded as the old version left it, then opened (and so migrated) by this version. */
  open(): Promise<{ pd: Pedigree; dispose(): Promise<void> }>;
}

const oldMigrations = () => loadMigrations().filter((m) => m.name <= V1_LAST_MIGRATION);

const pgliteStore: Store = {
  name: 'pglite',
  skip: null,
  async open() {
    const dir = mkdtempSync(path.join(tmpdir(), 'pedigree-upgrade-v1-'));
    const tar = brotliDecompressSync(readFileSync(path.join(FIXTURE, 'pglite.tar.br')));
    const pg = await PGlite.create({ dataDir: dir, loadDataDir: new Blob([tar]) });
    await pg.close();
    const pd = await openPedigree({ dir });
    return {
      pd,
      async dispose() {
        await pd.close().catch(() => {});
        rmSync(dir, { recursive: true, force: true });
      },
    };
  },
};

async function postgresStore(): Promise<Store> {
  const why = await serverUnavailable();
  if (why && process.env.CI) throw new Error(`CI must run the server-mode tests, but ${why}`);
  if (why) console.warn(`[skipping server-mode tests] ${why}`);
  return {
    name: 'postgres',
    skip: why,
    async open() {
      const db = await createServerDatabase();
      try {
        // As the old version left it: its migrations, then its data.
        const owner = await openPostgres(db.url, { max: 1 });
        try {
          await migrate(owner, oldMigrations());
          await owner.exec(readFileSync(path.join(FIXTURE, 'postgres.sql'), 'utf8'));
        } finally {
          await owner.close();
        }
        const pd = await openPedigree({ url: db.url }, { migrate: true });
        return {
          pd,
          async dispose() {
            await pd.close().catch(() => {});
            await db.drop();
          },
        };
      } catch (err) {
        await db.drop().catch(() => {});
        throw err;
      }
    },
  };
}

for (const store of [pgliteStore, await postgresStore()]) {
  describe.skipIf(store.skip)(`a ${store.name} store written before metric storage v2`, () => {
    const expected = JSON.parse(readFileSync(path.join(FIXTURE, `expected.${store.name}.json`), 'utf8')) as Expected;
    let pd: Pedigree;
    let dispose = async () => {};
    beforeAll(async () => {
      ({ pd, dispose } = await store.open());
    });
    afterAll(() => dispose());

    it('is migrated to the current schema on open', async () => {
      expect(expected.writtenBy.lastMigration).toBe(V1_LAST_MIGRATION);
      const done = await pd.database.db.query<{ name: string }>('SELECT name FROM "_pedigree_migrations" ORDER BY name');
      expect(done.map((r) => r.name)).toEqual(loadMigrations().map((m) => m.name));
    });

    it('is moved into the partitioned layout: every event, its id and every chunk, each in its project’s partition', async () => {
      const [row] = await pd.database.db.query<{ partitioned: string[]; events: number; ids: number; misfiled: number; chunks: number; chunks_misfiled: number }>(
        `SELECT (SELECT array_agg(c.relname::text ORDER BY c.relname) FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid) AS partitioned,
                (SELECT count(*)::int FROM events) AS events,
                (SELECT count(*)::int FROM events e JOIN event_ids i USING (event_id, project_id, position)) AS ids,
                (SELECT count(*)::int FROM events e JOIN pg_class c ON c.oid = e.tableoid
                  WHERE NOT satisfies_hash_partition('events'::regclass, 16, substr(c.relname, 9)::int, e.project_id)) AS misfiled,
                (SELECT count(*)::int FROM metric_chunks) AS chunks,
                (SELECT count(*)::int FROM metric_chunks m JOIN pg_class c ON c.oid = m.tableoid JOIN events e ON e.position = m.position
                  WHERE e.project_id <> m.project_id OR substr(c.relname, 16) <> substr((SELECT relname FROM pg_class WHERE oid = e.tableoid), 9)) AS chunks_misfiled`,
      );
      expect(row!.partitioned).toEqual(['event_ids', 'events', 'metric_chunks']);
      expect(row!.events).toBe((expected.verify as { checked: number }).checked);
      expect(row!.ids).toBe(row!.events);
      expect(row!.misfiled).toBe(0);
      expect(row!.chunks).toBeGreaterThan(0);
      expect(row!.chunks_misfiled).toBe(0);
    });

    it('gives every old chunk its stride: that of its steps, or none', async () => {
      // The migration computes it in SQL; here it is recomputed from the points in JS.
      const chunks = await pd.database.db.query<{ steps: Uint8Array; stride: number | null }>('SELECT steps, stride FROM metric_chunks');
      expect(chunks.length).toBeGreaterThan(0);
      const strides = chunks.map((c) => ({ stored: c.stride, expected: strideOf(decodeSteps(c.steps)) }));
      for (const s of strides) expect(s.stored).toBe(s.expected);
      expect(strides.some((s) => s.expected !== null)).toBe(true);
      expect(strides.some((s) => s.expected === null)).toBe(true);
    });

    it('answers every read as the version that wrote it did', async () => {
      expectSameReads(await collectReads(pd), expected.reads, 'after the upgrade');
    });

    it('verifies: every chain intact, the same events and points', async () => {
      expect(verifyCounts(await pd.verify())).toEqual(expected.verify);
    });

    it('replays to the same answers', async () => {
      expect(replayCounts(await pd.replay())).toEqual(expected.replay);
      expectSameReads(await collectReads(pd), expected.reads, 'after replay');
      expect(verifyCounts(await pd.verify())).toEqual(expected.verify);
    });

    it('takes new points on an old run: reads show the old points and the new', async () => {
      const old = expected.reads.perRun.pretrain!;
      const keys = [...new Set([...KEYS.pretrain, ...NEW_POINTS.map((p) => p.key)])];
      const before = new Map(KEYS.pretrain.map((key) => [key, decodePoints(old.series[key]!.points)]));
      // The references reproduce the old version's answers from the old points.
      for (const [key, points] of before) {
        for (const n of BUCKET_COUNTS) expect(encode(referenceBuckets(points, { buckets: n })), `reference ${key} ${n} buckets`).toEqual(old.series[key]!.buckets[n]);
        expect(encode(referenceBuckets(points, ZOOM)), `reference ${key} zoomed`).toEqual(old.series[key]!.zoom);
      }
      expect(encode(KEYS.pretrain.map((key) => referenceSeries(key, before.get(key)!)).sort((a, b) => a.key.localeCompare(b.key)))).toEqual(old.metricKeys);
      expect(encode(KEYS.pretrain.map((key) => referenceLatest(key, before.get(key)!)).sort((a, b) => a.key.localeCompare(b.key)))).toEqual(
        (expected.reads.latestMetrics as Record<string, Encoded>)[IDS.pretrain],
      );

      await pd.tracker.logMetrics(IDS.pretrain, NEW_POINTS, { allowNonFinite: true, evenIfEnded: true });

      // Old points first at each step (lower positions), then the new ones in the order logged.
      const after = new Map(keys.map((key) => [key, [...(before.get(key) ?? []), ...NEW_POINTS.filter((p) => p.key === key).map(asStored)].sort((a, b) => a.step - b.step)]));
      const check = async (label: string) => {
        for (const [key, points] of after) {
          expect.soft(encode(await pd.lineage.metricPoints(IDS.pretrain, key)), `${label}: ${key} points`).toEqual(encode(points));
          for (const n of BUCKET_COUNTS) {
            expect.soft(encode(await pd.lineage.metricBuckets(IDS.pretrain, key, { buckets: n })), `${label}: ${key} ${n} buckets`).toEqual(encode(referenceBuckets(points, { buckets: n })));
          }
          expect.soft(encode(await pd.lineage.metricBuckets(IDS.pretrain, key, ZOOM)), `${label}: ${key} zoomed`).toEqual(encode(referenceBuckets(points, ZOOM)));
        }
        const sorted = [...keys].sort();
        expect.soft(encode(await pd.lineage.metricKeys(IDS.pretrain)), `${label}: summaries`).toEqual(encode(sorted.map((key) => referenceSeries(key, after.get(key)!))));
        expect.soft(encode((await pd.lineage.latestMetrics([IDS.pretrain])).get(IDS.pretrain)), `${label}: latest points`).toEqual(encode(sorted.map((key) => referenceLatest(key, after.get(key)!))));
        const run = await pd.lineage.run(IDS.pretrain);
        expect.soft(run.summary.points, `${label}: the run's point count`).toBe((old.run as { summary: { points: number } }).summary.points + NEW_POINTS.length);
        expect.soft(encode(run.metrics), `${label}: the run's last values`).toEqual(encode(Object.fromEntries(keys.map((key) => [key, after.get(key)!.at(-1)!.value]))));
        // What the new points did not touch reads as before.
        const now = await collectReads(pd);
        for (const key of KEYS.pretrain.filter((k) => !NEW_POINTS.some((p) => p.key === k))) {
          expect.soft(now.perRun.pretrain!.series[key], `${label}: untouched ${key}`).toEqual(old.series[key]);
        }
        expect.soft(now.perRun.midtrain!.series, `${label}: the other run's series`).toEqual(expected.reads.perRun.midtrain!.series);
        expect.soft((now.latestMetrics as Record<string, Encoded>)[IDS.midtrain], `${label}: the other run's latest points`).toEqual((expected.reads.latestMetrics as Record<string, Encoded>)[IDS.midtrain]);
        const verified = (await pd.verify()) as { ok: boolean; checked: number; points?: number };
        expect.soft({ ok: verified.ok, checked: verified.checked, points: verified.points }, `${label}: verify`).toEqual({
          ok: true,
          checked: (expected.verify as { checked: number }).checked + 1,
          points: expected.points + NEW_POINTS.length,
        });
      };
      await check('after logging');
      await pd.replay();
      await check('after logging and replay');
    });
  });
}
