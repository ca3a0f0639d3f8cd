/**
 * The dashboard in headless Chromium against the real server (`pedigree start
 * --url …` on PostgreSQL):
 *
 * 1. A run page with N overlaid runs × M points of one metric
 *    (`/runs/<id>?overlay=<the others>`): time from navigation to the chart
 *    drawn with every series loaded, and the bytes the page transferred
 *    (CDP Network.loadingFinished, encoded lengths), vs a page that fetches
 *    every raw point of the same series (`metrics.points`, parsed in the
 *    browser) in the same run: the ratio.
 * 2. The runs table of a project with 10,000 runs: time to interactive (rows
 *    drawn, then a search narrowed to one row), vs a project with 10 runs.
 *
 * Sizes: --quick 4 × 50k points, 1,000 runs. Default 20 × 100k points (2M
 * points; loading them takes about a minute here). The full size,
 * 20 × 1M (20M points: loading takes many minutes on 2 cores), is opt-in:
 * PEDIGREE_BENCH_WEB_POINTS=1000000. The size used is printed.
 */
import { openPedigree, type MetricPointInput, type Pedigree } from '@pedigree/lineage';
import type { Page, Request } from 'playwright-core';
import { browserUnavailable, launchChromium } from '../test/support/browser.ts';
import { pedigreeCommand, pedigreeServer } from '../test/support/server.ts';
import { fmtInt, fmtMs, fmtRate, fmtRatio, rng, summarize, timeIt, withServerDatabase, type BenchContext, type Benchmark, type Figure } from './lib.ts';

const KEY = 'train/loss';
const LOAD_BATCH = 50_000;

async function loadRuns(pd: Pedigree, project: string, runs: number, points: number): Promise<string[]> {
  const projectId = await pd.tracker.ensureProject(project);
  const ids: string[] = [];
  for (let r = 0; r < runs; r++) {
    const { runId } = await pd.tracker.createRun({ projectId, name: `run-${String(r).padStart(2, '0')}`, kind: 'pretrain', hyperparameters: { lr: 1e-3 * (1 + r), seed: r }, start: true });
    const rand = rng(r + 1);
    for (let start = 0; start < points; start += LOAD_BATCH) {
      const batch: MetricPointInput[] = [];
      for (let s = start; s < Math.min(points, start + LOAD_BATCH); s++) batch.push({ key: KEY, step: s, value: 1.5 + 3 * Math.exp(-s / (points / 6)) + r * 0.05 + (rand() - 0.5) * 0.2 });
      await pd.tracker.logMetrics(runId, batch);
    }
    await pd.tracker.completeRun(runId);
    ids.push(runId);
  }
  return ids;
}

/**
 * Bytes the page received over the network (encoded bodies and response
 * headers) while `fn` ran, its workers' requests included (the lineage
 * graph's layout engine loads in a Web Worker, whose fetches a CDP session on
 * the page does not see; Playwright's context reports them).
 */
async function countBytes<T>(page: Page, fn: () => Promise<T>): Promise<{ bytes: number; api: number; result: T }> {
  const sizes: Promise<{ api: boolean; bytes: number }>[] = [];
  const onFinished = (request: Request) => {
    sizes.push(request.sizes().then((s) => ({ api: request.url().includes('/api/trpc/'), bytes: s.responseBodySize + s.responseHeadersSize }), () => ({ api: false, bytes: 0 })));
  };
  page.context().on('requestfinished', onFinished);
  try {
    const result = await fn();
    const all = await Promise.all(sizes);
    return { bytes: all.reduce((n, s) => n + s.bytes, 0), api: all.reduce((n, s) => n + (s.api ? s.bytes : 0), 0), result };
  } finally {
    page.context().off('requestfinished', onFinished);
  }
}

/** The page's DOM, typed just enough for the checks below (this file compiles without the DOM lib). */
type Doc = { querySelector(s: string): { getAttribute(n: string): string | null; textContent: string | null } | null; querySelectorAll(s: string): { length: number } };

const fmtBytes = (b: number) => (b >= 1e6 ? `${(b / 1e6).toFixed(1)} MB` : `${(b / 1e3).toFixed(1)} kB`);

export const web: Benchmark = {
  name: 'web',
  description: 'dashboard in headless Chromium: run page with N overlaid runs × M points (buckets vs all points), runs table with 10,000 runs',
  async run(ctx: BenchContext) {
    const why = browserUnavailable();
    if (why) throw new Error(why);
    const nRuns = ctx.quick ? 4 : 20;
    const nPoints = ctx.quick ? 50_000 : Number(process.env.PEDIGREE_BENCH_WEB_POINTS ?? 100_000);
    const tableRuns = ctx.quick ? 1_000 : 10_000;
    const reps = ctx.quick ? 2 : 3;
    const figures: Figure[] = [];
    const size = `${nRuns} runs × ${fmtInt(nPoints)} points`;
    ctx.log(`size: ${size} = ${fmtInt(nRuns * nPoints)} points${!ctx.quick && nPoints < 1_000_000 ? ' (the full 20 × 1M is opt-in: PEDIGREE_BENCH_WEB_POINTS=1000000; loading 20M points takes many minutes here)' : ''}; runs table: ${fmtInt(tableRuns)} runs`);

    await withServerDatabase(async ({ url }) => {
      const migrated = await pedigreeCommand(['migrate', '--url', url]);
      if (migrated.code !== 0) throw new Error(`migrate failed: ${migrated.stderr}`);
      const pd = await openPedigree({ url }, { role: null /* the bench owns its database: VACUUM */ });
      let runIds: string[];
      try {
        const loaded = await timeIt(() => loadRuns(pd, 'bench-web', nRuns, nPoints));
        runIds = loaded.result;
        ctx.log(`loaded ${size} through logMetrics in ${fmtMs(loaded.ms)} (${fmtRate(nRuns * nPoints, loaded.ms, 'points')})`);
        const tp = await pd.tracker.ensureProject('bench-table');
        const small = await pd.tracker.ensureProject('bench-table-small');
        const made = await timeIt(async () => {
          for (let i = 0; i < tableRuns; i++)
            await pd.tracker.createRun({ projectId: tp, name: `t-${String(i).padStart(5, '0')}`, kind: i % 3 ? 'pretrain' : 'sft', hyperparameters: { lr: 1e-4 * (1 + (i % 7)), batch: 16 << i % 3, seed: i } });
          for (let i = 0; i < 10; i++) await pd.tracker.createRun({ projectId: small, name: `t-${String(i).padStart(5, '0')}`, kind: 'pretrain', hyperparameters: { lr: 1e-4, seed: i } });
        });
        ctx.log(`created ${fmtInt(tableRuns)} runs in ${fmtMs(made.ms)}`);
        await pd.database.db.query('VACUUM ANALYZE');
      } finally {
        await pd.close();
      }

      const server = await pedigreeServer({ url, auth: 'open' });
      await server.start();
      const browser = await launchChromium();
      try {
        const fresh = async () => {
          const context = await browser.newContext({ viewport: { width: 1360, height: 900 } });
          return { context, page: await context.newPage() };
        };
        const [first, ...others] = runIds;
        const runUrl = `${server.url}/runs/${first}?overlay=${others.join(',')}`;
        const total = nRuns * nPoints;

        // Warm the server (Next's first render of each route, the database's caches).
        {
          const { context, page } = await fresh();
          await page.goto(runUrl);
          await page.waitForFunction((n) => Number((globalThis as unknown as { document: Doc }).document.querySelector('figure.chart')?.getAttribute('data-points')) === n && (globalThis as unknown as { document: Doc }).document.querySelector('figure.chart canvas') !== null, total, { timeout: 300_000 });
          await context.close();
        }

        // 1a. The run page: every series's buckets loaded and drawn.
        const chartMs: number[] = [];
        let chartBytes = 0;
        let chartApi = 0;
        for (let i = 0; i < reps; i++) {
          const { context, page } = await fresh();
          const { bytes, api, result: ms } = await countBytes(page, async () => {
            const t0 = performance.now();
            await page.goto(runUrl);
            await page.waitForFunction(
              (n) => Number((globalThis as unknown as { document: Doc }).document.querySelector('figure.chart')?.getAttribute('data-points')) === n && Number((globalThis as unknown as { document: Doc }).document.querySelector('figure.chart')?.getAttribute('data-series')) > 0 && (globalThis as unknown as { document: Doc }).document.querySelector('figure.chart canvas') !== null,
              total,
              { timeout: 300_000, polling: 20 },
            );
            return performance.now() - t0;
          });
          chartMs.push(ms);
          chartBytes = bytes;
          chartApi = api;
          await context.close();
        }
        const chart = summarize(chartMs);
        ctx.log(`run page, ${size} overlaid: first chart with all series ${fmtMs(chart.median)} (n=${reps}), ${fmtBytes(chartBytes)} transferred (whole page: HTML, JS, API), of which API ${fmtBytes(chartApi)}`);

        // 1b. Baseline: the same page shell, then every raw point of every series fetched and parsed in the browser.
        // At 1M points per series that is gigabytes of JSON: one repetition, within a time limit
        // (PEDIGREE_BENCH_WEB_BASELINE_LIMIT_S, default 900 s); past it the baseline is reported as not finished.
        const baselineReps = nPoints >= 1_000_000 ? 1 : reps;
        const baselineLimitMs = Number(process.env.PEDIGREE_BENCH_WEB_BASELINE_LIMIT_S ?? 900) * 1000;
        const allMs: number[] = [];
        let allBytes = 0;
        let allApi = 0;
        let allPoints = 0;
        let unfinished: string | null = null;
        for (let i = 0; i < baselineReps && !unfinished; i++) {
          const { context, page } = await fresh();
          let timer: ReturnType<typeof setTimeout> | undefined;
          const limit = new Promise<never>((_, reject) => {
            timer = setTimeout(() => reject(new Error(`did not finish within ${fmtMs(baselineLimitMs)}`)), baselineLimitMs);
          });
          const measured = countBytes(page, async () => {
            const t0 = performance.now();
            await page.goto(`${server.url}/runs/${first}`);
            await page.waitForSelector('h1');
            // A string, not a function: tsx's transform would inject helpers the page does not have.
            const args = JSON.stringify({ ids: runIds, key: KEY, limit: Math.min(1_000_000, nPoints) });
            const n = await page.evaluate<number>(`(async ({ ids, key, limit }) => {
              let count = 0;
              // Four at a time, as a browser would (and to keep the tab's memory bounded).
              const queue = [...ids];
              async function worker() {
                for (let id = queue.shift(); id; id = queue.shift()) {
                  const input = encodeURIComponent(JSON.stringify({ json: { runId: id, key, limit } }));
                  const res = await fetch('/api/trpc/metrics.points?input=' + input);
                  const body = await res.json();
                  count += body.result.data.json.length;
                }
              }
              await Promise.all([worker(), worker(), worker(), worker()]);
              return count;
            })(${args})`);
            return { ms: performance.now() - t0, n };
          });
          try {
            const { bytes, api, result } = await Promise.race([measured, limit]);
            allMs.push(result.ms);
            allBytes = bytes;
            allApi = api;
            allPoints = result.n;
          } catch (err) {
            unfinished = (err as Error).message;
            measured.catch(() => {}); // closing the context below ends it
          } finally {
            clearTimeout(timer);
            await context.close();
          }
        }
        figures.push({ bench: 'web', what: `run page, ${size} overlaid: time to first chart`, value: fmtMs(chart.median), note: `${fmtBytes(chartBytes)} transferred (API ${fmtBytes(chartApi)})` });
        if (unfinished) {
          ctx.log(`baseline, page + all ${fmtInt(total)} raw points: ${unfinished} (no ratio)`);
          figures.push({ bench: 'web', what: `baseline: page + all raw points fetched (${fmtInt(total)})`, value: 'not finished', note: unfinished });
        } else {
          const all = summarize(allMs);
          ctx.log(`baseline, page + all ${fmtInt(allPoints)} raw points fetched and parsed (not drawn): ${fmtMs(all.median)} (n=${baselineReps}), ${fmtBytes(allBytes)} transferred, of which API ${fmtBytes(allApi)}`);
          ctx.log(`ratio all points / buckets: time ${fmtRatio(all.median / chart.median)}, bytes ${fmtRatio(allBytes / chartBytes)} (API only ${fmtRatio(allApi / chartApi)})`);
          figures.push(
            { bench: 'web', what: `baseline: page + all raw points fetched (${fmtInt(allPoints)})`, value: fmtMs(all.median), note: `${fmtBytes(allBytes)} transferred (API ${fmtBytes(allApi)})` },
            { bench: 'web', what: 'ratio all points / buckets: time', value: fmtRatio(all.median / chart.median) },
            { bench: 'web', what: 'ratio all points / buckets: bytes', value: fmtRatio(allBytes / chartBytes), note: `API only ${fmtRatio(allApi / chartApi)}` },
          );
        }

        // 2. Runs table: rows drawn, then a search that narrows to one row.
        const tti = async (project: string, runs: number, name: string) => {
          const first: number[] = [];
          const search: number[] = [];
          for (let i = 0; i < reps; i++) {
            const { context, page } = await fresh();
            const t0 = performance.now();
            await page.goto(`${server.url}/?project=${project}`);
            await page.locator('table.runs tbody tr').first().waitFor({ timeout: 120_000 });
            first.push(performance.now() - t0);
            const t1 = performance.now();
            await page.getByLabel('search runs').fill(name);
            await page.waitForFunction((n) => (globalThis as unknown as { document: Doc }).document.querySelectorAll('table.runs tbody tr').length === 1 && (globalThis as unknown as { document: Doc }).document.querySelector('table.runs tbody tr')?.textContent?.includes(n), name, { timeout: 60_000, polling: 20 });
            search.push(performance.now() - t1);
            await context.close();
          }
          const f = summarize(first);
          const s = summarize(search);
          ctx.log(`runs table, ${fmtInt(runs)} runs: rows drawn ${fmtMs(f.median)}, search → 1 row ${fmtMs(s.median)}; interactive ${fmtMs(f.median + s.median)} (n=${reps})`);
          return { first: f.median, search: s.median };
        };
        const big = await tti('bench-table', tableRuns, `t-${String(tableRuns - 7).padStart(5, '0')}`);
        const smallT = await tti('bench-table-small', 10, 't-00007');
        figures.push(
          { bench: 'web', what: `runs table, ${fmtInt(tableRuns)} runs: time to interactive`, value: fmtMs(big.first + big.search), note: `rows ${fmtMs(big.first)} + search ${fmtMs(big.search)}` },
          { bench: 'web', what: 'runs table, 10 runs (baseline)', value: fmtMs(smallT.first + smallT.search), note: `ratio ${fmtRatio((big.first + big.search) / (smallT.first + smallT.search))}` },
        );
      } finally {
        await browser.close().catch(() => {});
        await server.stop().catch(() => server.kill());
      }
    });
    return figures;
  },
};
