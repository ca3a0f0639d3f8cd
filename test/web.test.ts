import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { connect, type Pedigree } from '@pedigree/client';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { browserUnavailable, collectErrors, launchChromium } from './support/browser.ts';
import { pedigreeCommand, pedigreeServer, type PedigreeServer } from './support/server.ts';

/**
 * The dashboard in a real browser (Debian's headless Chromium) against the
 * real `pedigree start`, on a store filled by `pedigree sample`: runs → run →
 * lineage node → diff, and a chart that moves while a run is logged live.
 * Screenshots of each page land in test-results/web/.
 */
const why = browserUnavailable();
if (why && process.env.CI) throw new Error(`CI must run the browser tests, but ${why}`);
if (why) console.warn(`[skipping browser tests] ${why}`);

/** Waits for the page: the first load of a page compiles nothing (a production build) but queries a fresh store. */
const until = <T>(read: () => Promise<T> | T, opts: { timeout?: number } = {}) => expect.poll(read, { timeout: opts.timeout ?? 15_000, interval: 100 });

const SHOTS = path.resolve(import.meta.dirname, '../test-results/web');

/** Closes the browser, stops the server (checking nothing it started is left) and removes its store. */
async function tearDown(parts: { context?: BrowserContext; browser?: Browser; server?: PedigreeServer; home?: string }): Promise<void> {
  await parts.context?.close().catch(() => {});
  await parts.browser?.close().catch(() => {});
  if (parts.server) {
    const stopped = await parts.server.stop();
    expect(stopped.leftover).toBe(false);
  }
  if (parts.home) rmSync(parts.home, { recursive: true, force: true });
}

describe.skipIf(why)('web dashboard (Chromium)', () => {
  let home: string;
  let server: PedigreeServer;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let errors: string[];

  beforeAll(async () => {
    mkdirSync(SHOTS, { recursive: true });
    home = mkdtempSync(path.join(os.tmpdir(), 'pedigree-web-'));
    const sampled = await pedigreeCommand(['sample', '--home', home]);
    expect(sampled, sampled.stderr).toMatchObject({ code: 0 });
    server = await pedigreeServer({ home, auth: 'open' });
    [, browser] = await Promise.all([server.start(), launchChromium()]);
    context = await browser.newContext({ viewport: { width: 1360, height: 900 } });
    page = await context.newPage();
    errors = collectErrors(page);
  });

  afterAll(() => tearDown({ context, browser, server, home }));

  it('runs → run → lineage node → diff, with the seeded content on each page', async () => {
    // Runs: every stage of the sample, its hyperparameters and final metrics.
    await page.goto(`${server.url}/`);
    const table = page.locator('table.runs');
    for (const name of ['pretrain', 'midtrain', 'midtrain-concat', 'sft', 'dpo', 'eval']) await until(() => table.locator(`tr[data-run="${name}"]`).count()).toBe(1);
    await until(() => table.locator('tr[data-run="midtrain"]').innerText()).toMatch(/completed/);
    await until(() => table.locator('tr[data-run="midtrain"]').innerText()).toContain('baseline');
    await page.screenshot({ path: path.join(SHOTS, 'runs.png'), fullPage: true });

    // Search narrows the table.
    await page.getByLabel('search runs').fill('concat');
    await until(() => table.locator('tbody tr').count()).toBe(1);
    await page.getByLabel('search runs').fill('');
    await until(() => table.locator('tbody tr').count()).toBe(6);

    // Run: header, hyperparameters, the data mix, the lineage graph, charts.
    await table.locator('tr[data-run="midtrain"] a').first().click();
    await page.waitForURL(/\/runs\/[0-9a-f-]{36}$/);
    await until(() => page.locator('h1').innerText()).toContain('midtrain');
    await until(() => page.locator('tr[data-hp="rope_base"]').innerText()).toContain('12500');
    await until(() => page.locator('tr[data-hp="context"]').innerText()).toContain('512');
    await until(() => page.locator('.datamix').innerText()).toContain('long-kv-native');
    const graph = page.getByTestId('lineage-graph');
    await until(() => graph.locator('.react-flow__node').count()).toBe(5); // pretrain-mix, pretrain, its checkpoint, midtrain-mix, midtrain: the datasets are folded into their mixes
    await until(() => page.locator('figure.chart[data-metric="train/loss"] canvas').count()).toBeGreaterThan(0);
    expect(Number(await page.locator('figure.chart[data-metric="train/loss"]').getAttribute('data-points'))).toBeGreaterThan(0);
    // No min/max helper rows in the chart legend: one row for the step, one per drawn series.
    const legendRows = page.locator('figure.chart[data-metric="train/loss"] .u-legend tr.u-series');
    const visibleLegend = await legendRows.filter({ visible: true }).allInnerTexts();
    expect(visibleLegend).toHaveLength(2);
    expect(visibleLegend.join(' ')).not.toMatch(/\bm(in|ax)\b/);
    await page.screenshot({ path: path.join(SHOTS, 'run-midtrain.png'), fullPage: true });

    // End to end: pretrain → midtrain on one axis, the boundary marked; then midtrain-concat overlaid.
    const lossChart = page.locator('figure.chart[data-metric="train/loss"]');
    const singleLast = Number(await lossChart.getAttribute('data-last-step'));
    await page.getByLabel(/end to end across stages \(2 stages\)/).check();
    await until(() => lossChart.getAttribute('data-series')).toBe('2');
    await until(() => lossChart.getAttribute('data-starts')).toBe('0,400');
    await until(async () => Number(await lossChart.getAttribute('data-last-step'))).toBeGreaterThan(singleLast);
    await until(() => lossChart.locator('.u-legend').innerText()).toMatch(/pretrain[\s\S]*midtrain/);
    const chainPoints = Number(await lossChart.getAttribute('data-points'));
    await page.getByRole('button', { name: /Overlay runs/ }).click();
    await page.getByLabel('overlay midtrain-concat', { exact: true }).check();
    await until(() => lossChart.getAttribute('data-series')).toBe('3');
    await until(async () => Number(await lossChart.getAttribute('data-points'))).toBeGreaterThan(chainPoints);
    await until(() => lossChart.locator('.u-legend').innerText()).toContain('midtrain-concat');
    // midtrain-concat forked from pretrain too: it is drawn from the same boundary as midtrain, not from 0.
    await until(() => lossChart.getAttribute('data-starts')).toBe('0,400,400');
    const legend3 = await lossChart.locator('.u-legend tr.u-series').filter({ visible: true }).count();
    expect(legend3).toBe(4);
    await lossChart.scrollIntoViewIfNeeded();
    await page.screenshot({ path: path.join(SHOTS, 'run-midtrain-end-to-end.png'), fullPage: true });
    await page.getByLabel(/end to end across stages/).uncheck();
    await page.getByRole('button', { name: 'clear overlays' }).click();
    await until(() => lossChart.getAttribute('data-series')).toBe('1');

    // The event log, with hashes.
    await page.getByRole('tab', { name: 'Event log' }).click();
    await until(() => page.locator('table.events').innerText()).toContain('RunCompleted');
    await until(() => page.locator('table.events code.hash').count()).toBeGreaterThan(3);
    await page.screenshot({ path: path.join(SHOTS, 'run-events.png'), fullPage: true });
    await page.getByRole('tab', { name: 'Overview' }).click();

    // Clicking the pretrain node opens the pretrain run.
    await graph.locator('.react-flow__node.lnode-run', { hasText: /^pretrain/ }).first().click();
    await until(() => page.locator('h1').innerText()).toMatch(/^pretrain/);
    await until(() => page.locator('tr[data-hp="rope_base"]').innerText()).toContain('500');
    await page.screenshot({ path: path.join(SHOTS, 'run-pretrain.png'), fullPage: true });

    // sft: its mid-run lr change, in the table and marked on every chart at the step it happened.
    await page.goto(`${server.url}/`);
    await table.locator('tr[data-run="sft"] a').first().click();
    await until(() => page.locator('h1').innerText()).toMatch(/^sft/);
    await until(() => page.locator('tr[data-hp="lr"]').innerText()).toMatch(/→ \S+ at step \d+ \(loss plateau\)/);
    const changedAt = /at step (\d+)/.exec(await page.locator('tr[data-hp="lr"]').innerText())![1]!;
    await until(() => page.locator('figure.chart[data-metric="train/loss"] canvas').count()).toBeGreaterThan(0);
    expect(await page.locator('figure.chart[data-metric="train/loss"]').getAttribute('data-markers')).toBe(changedAt);
    await page.screenshot({ path: path.join(SHOTS, 'run-sft.png'), fullPage: true });

    // eval: scores laid out task × context length.
    await page.goto(`${server.url}/`);
    await table.locator('tr[data-run="eval"] a').first().click();
    await until(() => page.locator('h1').innerText()).toMatch(/^eval/);
    const evals = page.locator('table.evals');
    await until(() => evals.locator('thead').innerText()).toMatch(/ctx 128\s+ctx 256\s+ctx 512\s+ctx 1024/);
    expect(await evals.locator('tbody tr').allInnerTexts()).toEqual([expect.stringMatching(/^kv-recall \/ exact-match(\s+\d\.\d+){4}$/)]);
    await page.screenshot({ path: path.join(SHOTS, 'run-eval.png'), fullPage: true });

    // Diff: tick midtrain and midtrain-concat, diff them.
    await page.goto(`${server.url}/`);
    await page.getByLabel('select midtrain', { exact: true }).check();
    await page.getByLabel('select midtrain-concat', { exact: true }).check();
    await page.getByRole('button', { name: /Diff selected/ }).click();
    await page.waitForURL(/\/diff\?a=/);
    await until(() => page.getByTestId('first-divergence').innerText()).toContain('midtrain-concat');
    const mix = page.locator('table.mixdiff');
    await until(() => mix.innerText()).toContain('long-kv-native');
    await until(() => mix.locator('tr[data-component="long-kv-native"]').innerText()).toContain('removed');
    await until(() => mix.locator('tr[data-component="long-kv-concatenated"]').innerText()).toContain('added');
    // Exactly the seeded differences: only the long-data component swapped, the replay side untouched.
    expect(await mix.locator('tbody tr').count()).toBe(2);
    await until(() => page.locator('figure.chart[data-metric="train/loss"] canvas').count()).toBeGreaterThan(0);
    // The common ancestor is the pretrain checkpoint, named once.
    await until(() => page.locator('dl.facts').innerText()).toMatch(/common ancestor\s+pretrain@\d+ \(checkpoint\)/);
    // The two lineages side by side, exactly the changed nodes marked on each.
    const marked = (side: 'a' | 'b') => page.getByTestId(`lineage-${side}`).locator('.react-flow__node.lnode-changed b').allInnerTexts().then((t) => t.sort());
    await until(() => page.getByTestId('lineage-a').locator('.react-flow__node').count()).toBeGreaterThan(5);
    await until(() => page.getByTestId('lineage-b').locator('.react-flow__node').count()).toBeGreaterThan(5);
    await until(() => marked('a')).toEqual(['long-kv-native', 'midtrain', 'midtrain-mix']);
    await until(() => marked('b')).toEqual(['long-kv-concatenated', 'midtrain-concat', 'midtrain-mix-concat']);
    // Shared ancestry is not marked.
    expect(await page.getByTestId('lineage-a').locator('.react-flow__node.lnode-changed', { hasText: /^pretrain/ }).count()).toBe(0);
    await page.screenshot({ path: path.join(SHOTS, 'diff.png'), fullPage: true });

    // Artifacts: from the nav, the sample's datasets and mixes with counts, and where each was used.
    await page.getByRole('navigation').getByRole('link', { name: 'Artifacts' }).click();
    await page.waitForURL(/\/artifacts$/);
    const arts = page.locator('table.artifacts');
    for (const name of ['web-v1', 'code-v1', 'long-kv-native', 'long-kv-concatenated', 'arith-sft', 'pretrain-mix', 'midtrain-mix', 'midtrain-mix-concat'])
      await until(() => arts.locator(`tr[data-artifact="${name}"]`).count()).toBe(1);
    // Sample datasets declare counts but no histogram: the counts are shown.
    await until(() => arts.locator('tr[data-artifact="long-kv-native"]').innerText()).toMatch(/400,?000/);
    await until(() => arts.locator('tr[data-artifact="long-kv-native"]').innerText()).toContain('sha256:');
    await until(() => arts.locator('tr[data-artifact="midtrain-mix"] .uses').innerText()).toMatch(/midtrain\s+used as train-mix/);
    await until(() => arts.locator('tr[data-artifact="pretrain-mix"]').innerText()).toMatch(/web-v1 15%/);
    await until(() => arts.locator('tr[data-artifact="long-kv-native"] .uses').innerText()).toMatch(/in midtrain-mix at 30%/);
    await page.screenshot({ path: path.join(SHOTS, 'artifacts.png'), fullPage: true });
    await arts.locator('tr[data-artifact="midtrain-mix-concat"] .uses a', { hasText: 'midtrain-concat' }).click();
    await page.waitForURL(/\/runs\/[0-9a-f-]{36}$/);
    await until(() => page.locator('h1').innerText()).toMatch(/^midtrain-concat/);

    expect(errors).toEqual([]);
  });

  it('the artifacts page draws a dataset’s length histogram when its spec has one', async () => {
    const pd: Pedigree = await connect({ url: server.url, handleSignals: false });
    try {
      const lengthHistogram = [{ upTo: 64, count: 10 }, { upTo: 128, count: 40 }, { upTo: 256, count: 25 }, { upTo: 512, count: 5 }];
      await pd.registerArtifact({ project: 'phi4-toy', name: 'hist-web', spec: { kind: 'dataset', source: 'synthetic/web', params: { seed: 9 }, docs: 80, tokens: 12_345, lengthHistogram } });
      await page.goto(`${server.url}/artifacts?project=phi4-toy`);
      const row = page.locator('table.artifacts tr[data-artifact="hist-web"]');
      await until(() => row.locator('svg.hist rect').count()).toBe(4);
      expect(await row.locator('svg.hist').getAttribute('aria-label')).toBe('length histogram: ≤64: 10, ≤128: 40, ≤256: 25, ≤512: 5');
      await until(() => row.innerText()).toContain('12,345');
      await until(() => row.locator('.uses').innerText()).toContain('not used by a run');
      await row.scrollIntoViewIfNeeded();
      await page.screenshot({ path: path.join(SHOTS, 'artifacts-histogram.png'), fullPage: true });
    } finally {
      await pd.close();
    }
    expect(errors).toEqual([]);
  });

  it('a running run’s chart receives points live while the client logs them', async () => {
    const pd: Pedigree = await connect({ url: server.url, flushIntervalMs: 100, handleSignals: false });
    try {
      const run = await pd.startRun({ project: 'phi4-toy', name: 'live-pretrain', kind: 'pretrain', hyperparameters: { lr: 1e-3 } });
      for (let step = 0; step < 50; step++) run.log({ 'train/loss': 3 - step / 100 }, step);
      await run.flush();

      await page.goto(`${server.url}/runs/${run.id}`);
      const chart = page.locator('figure.chart[data-metric="train/loss"]');
      await until(() => chart.getAttribute('data-last-step'), { timeout: 20_000 }).toBe('49');

      // More points while the page is open: the subscription brings them in, no reload, and the chart
      // draws them from the updates themselves (no request for its buckets again), counted exactly once.
      const chartReads: string[] = [];
      const onRequest = (req: { url(): string }) => {
        if (req.url().includes('metrics.chart')) chartReads.push(req.url());
      };
      page.on('request', onRequest);
      for (let step = 50; step < 200; step++) run.log({ 'train/loss': 3 - step / 100 }, step);
      await run.flush();
      await until(() => chart.getAttribute('data-last-step'), { timeout: 20_000 }).toBe('199');
      expect(Number(await chart.getAttribute('data-points'))).toBe(200);
      page.off('request', onRequest);
      expect(chartReads).toEqual([]);
      // A reload reads the buckets afresh: the same 200 points.
      await page.reload();
      await until(() => page.locator('figure.chart[data-metric="train/loss"]').getAttribute('data-points'), { timeout: 20_000 }).toBe('200');
      await page.screenshot({ path: path.join(SHOTS, 'run-live.png'), fullPage: true });

      await run.finish();
      await until(() => page.locator('h1 .status').innerText(), { timeout: 20_000 }).toBe('completed');
    } finally {
      await pd.close();
    }
    expect(errors).toEqual([]);
  });
});

/**
 * A server in `keys` mode: the dashboard asks for an API key (top bar, kept in
 * localStorage), sends it as a Bearer header on queries and as a connection
 * parameter on the SSE subscription (EventSource cannot set headers), and a
 * running run's chart still moves while the client logs. Drawn in dark mode.
 */
describe.skipIf(why)('web dashboard on a keys server (Chromium, dark)', () => {
  let home: string;
  let server: PedigreeServer;
  let browser: Browser;
  let context: BrowserContext;
  let apiKey: string;

  beforeAll(async () => {
    mkdirSync(SHOTS, { recursive: true });
    home = mkdtempSync(path.join(os.tmpdir(), 'pedigree-web-keys-'));
    const made = await pedigreeCommand(['projects', 'create', 'keyed', '--home', home]);
    expect(made, made.stderr).toMatchObject({ code: 0 });
    const created = await pedigreeCommand(['keys', 'create', '--project', 'keyed', '--name', 'dashboard', '--json', '--home', home]);
    expect(created, created.stderr).toMatchObject({ code: 0 });
    apiKey = (JSON.parse(created.stdout) as { key: string }).key;
    server = await pedigreeServer({ home, auth: 'keys' });
    [, browser] = await Promise.all([server.start(), launchChromium()]);
    context = await browser.newContext({ viewport: { width: 1360, height: 900 }, colorScheme: 'dark' });
  });

  afterAll(() => tearDown({ context, browser, server, home }));

  it('asks for a key, then a running run’s chart receives points live over SSE', async () => {
    // Without a key: the refusal is shown (not a blank page) and the top bar asks for a key.
    const first = await context.newPage();
    await first.goto(`${server.url}/`);
    await until(() => first.locator('.errorbox').innerText()).toMatch(/key/i);
    await first.screenshot({ path: path.join(SHOTS, 'keys-no-key-dark.png'), fullPage: true });
    await first.getByLabel('API key').fill(apiKey);
    await first.getByRole('button', { name: 'Use key' }).click();
    await until(() => first.locator('h1').innerText()).toContain('Runs');
    await first.close();

    // With the key stored: a fresh tab, watched for errors and for the subscription's requests.
    const page = await context.newPage();
    const errors = collectErrors(page);
    const watches: { url: string; status: number; type: string }[] = [];
    page.on('response', (r) => {
      if (r.url().includes('/api/trpc/runs.watch')) watches.push({ url: r.url(), status: r.status(), type: r.headers()['content-type'] ?? '' });
    });
    const pd: Pedigree = await connect({ url: server.url, apiKey, flushIntervalMs: 100, handleSignals: false });
    try {
      const run = await pd.startRun({ project: 'keyed', name: 'keyed-live', kind: 'pretrain', hyperparameters: { lr: 1e-3 } });
      for (let step = 0; step < 50; step++) run.log({ 'train/loss': 3 - step / 100 }, step);
      await run.flush();

      await page.goto(`${server.url}/runs/${run.id}`);
      await until(() => page.locator('h1').innerText()).toContain('keyed-live');
      const chart = page.locator('figure.chart[data-metric="train/loss"]');
      await until(() => chart.getAttribute('data-last-step'), { timeout: 20_000 }).toBe('49');
      // The subscription is open, authenticated by a ticket in its connection parameters: the key never in a URL.
      await until(() => watches.length, { timeout: 20_000 }).toBeGreaterThan(0);
      expect(watches[0]).toMatchObject({ status: 200, type: expect.stringContaining('text/event-stream') });
      expect(decodeURIComponent(watches[0]!.url)).toMatch(/"ticket":"pdt_/);
      expect(decodeURIComponent(watches[0]!.url)).not.toContain(apiKey);

      // Points logged while the page is open arrive without a reload.
      for (let step = 50; step < 200; step++) run.log({ 'train/loss': 3 - step / 100 }, step);
      await run.flush();
      await until(() => chart.getAttribute('data-last-step'), { timeout: 20_000 }).toBe('199');
      expect(Number(await chart.getAttribute('data-points'))).toBe(200);
      await page.screenshot({ path: path.join(SHOTS, 'keys-run-live-dark.png'), fullPage: true });

      await run.finish();
      await until(() => page.locator('h1 .status').innerText(), { timeout: 20_000 }).toBe('completed');
    } finally {
      await pd.close();
      await page.close();
    }
    expect(errors).toEqual([]);
  });
});
