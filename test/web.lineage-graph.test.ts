import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Browser, Locator, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { browserUnavailable, collectErrors, launchChromium } from './support/browser.ts';
import { pedigreeCommand, pedigreeServer, type PedigreeServer } from './support/server.ts';

/**
 * The run page's lineage graph as a user sees it, in a real browser (Debian's
 * headless Chromium) on the sample's deepest lineage (eval: five datasets → mix →
 * pretrain → midtrain → sft → dpo → eval, a checkpoint between each): at a wide
 * and a narrow window, every label at least 11 px on screen, a box as tall as
 * the graph needs, and the mixes' datasets folded until asked for.
 * Screenshots land in test-results/web/.
 */
const why = browserUnavailable();
if (why && process.env.CI) throw new Error(`CI must run the browser tests, but ${why}`);
if (why) console.warn(`[skipping browser tests] ${why}`);

const until = <T>(read: () => Promise<T> | T, opts: { timeout?: number } = {}) => expect.poll(read, { timeout: opts.timeout ?? 15_000, interval: 100 });

const SHOTS = path.resolve(import.meta.dirname, '../test-results/web');
/** The box every graph used to be squeezed into, whatever its size (globals.css, before issue 16). */
const OLD_BOX_PX = 340;
/** The smallest text a user should have to read. */
const LEGIBLE_PX = 11;
const WINDOW_HEIGHT = 900;
const PRETRAIN_DATASETS = ['web-v1', 'web_rewrites-v1', 'synthetic-v1', 'code-v1', 'acquired-v1'];

/** The little of the DOM the page functions below use (the tests compile without the DOM library). */
interface DomElement {
  readonly offsetWidth: number;
  readonly clientHeight: number;
  getBoundingClientRect(): { width: number };
  querySelector(selector: string): DomElement | null;
  querySelectorAll(selector: string): ArrayLike<DomElement>;
}
type BrowserGlobals = { getComputedStyle(el: DomElement): { fontSize: string } };

/**
 * The smallest on-screen font size of the texts `selector` matches in the graph,
 * in CSS px (0 when nothing matches): each computed size times the scale of the
 * viewport's transform (a node's on-screen width over its layout width; nodes
 * and edge labels share the transform).
 */
function smallestTextPx(graph: Locator, selector: string): Promise<number> {
  return graph.evaluate((box, sel) => {
    const root = box as unknown as DomElement;
    const window = globalThis as unknown as BrowserGlobals;
    const node = root.querySelector('.react-flow__node');
    const texts = Array.from(root.querySelectorAll(sel));
    if (!node || !texts.length) return 0;
    const scale = node.getBoundingClientRect().width / node.offsetWidth;
    return Math.min(...texts.map((el) => Math.round(parseFloat(window.getComputedStyle(el).fontSize) * scale * 100) / 100));
  }, selector);
}

/** The node whose name is exactly `name`. */
const nodeNamed = (graph: Locator, name: string) => graph.locator('.react-flow__node', { has: graph.page().locator('b', { hasText: new RegExp(`^${name}$`) }) });

/** Whether the node named `name` lies wholly inside the graph's box (not panned out of sight). */
async function inView(graph: Locator, name: string): Promise<boolean> {
  const box = await graph.boundingBox();
  const node = await nodeNamed(graph, name).boundingBox();
  if (!box || !node) return false;
  return node.x >= box.x - 1 && node.y >= box.y - 1 && node.x + node.width <= box.x + box.width + 1 && node.y + node.height <= box.y + box.height + 1;
}

describe.skipIf(why)('lineage graph (Chromium)', () => {
  let home: string;
  let server: PedigreeServer;
  let browser: Browser;
  let runIds: Map<string, string>;

  beforeAll(async () => {
    mkdirSync(SHOTS, { recursive: true });
    home = mkdtempSync(path.join(os.tmpdir(), 'pedigree-web-lineage-'));
    const sampled = await pedigreeCommand(['sample', '--home', home, '--json']);
    expect(sampled, sampled.stderr).toMatchObject({ code: 0 });
    runIds = new Map(Object.entries((JSON.parse(sampled.stdout) as { runs: Record<string, string> }).runs));
    server = await pedigreeServer({ home, auth: 'open' });
    [, browser] = await Promise.all([server.start(), launchChromium()]);
  });

  afterAll(async () => {
    await browser?.close().catch(() => {});
    if (server) expect((await server.stop()).leftover).toBe(false);
    if (home) rmSync(home, { recursive: true, force: true });
  });

  async function openPage(width: number, url: string): Promise<{ page: Page; errors: string[]; close: () => Promise<void> }> {
    const context = await browser.newContext({ viewport: { width, height: WINDOW_HEIGHT } });
    const page = await context.newPage();
    const errors = collectErrors(page);
    await page.goto(url);
    return { page, errors, close: () => context.close() };
  }

  it('lays out in a Web Worker, and says so when the worker cannot load (the rest of the page unharmed)', async () => {
    const url = `${server.url}/runs/${runIds.get('dpo')}`;
    let workerUrl: string;
    {
      const { page, errors, close } = await openPage(1440, url);
      try {
        await until(() => nodeNamed(page.getByTestId('lineage-graph'), 'dpo').count()).toBe(1);
        // elkjs (1.6 MB) is parsed and run by a dedicated worker, not on the page's main thread.
        const workers = page.workers().map((w) => w.url());
        expect(workers).toHaveLength(1);
        workerUrl = workers[0]!;
        expect(workerUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/_next\/static\//);
        expect(errors).toEqual([]);
      } finally {
        await close();
      }
    }
    // How I tried to break it: the worker's script answers 404 (a proxy that drops it, a stale deploy).
    // elkjs would wait forever; the page says what failed instead, and still draws the run's charts.
    const context = await browser.newContext({ viewport: { width: 1440, height: WINDOW_HEIGHT } });
    try {
      let refused = 0;
      await context.route(workerUrl.split('#')[0]!, (route) => {
        refused++;
        return route.fulfill({ status: 404, body: 'gone' });
      });
      const page = await context.newPage();
      await page.goto(url);
      await until(() => page.getByText(/Layout failed: .*the layout worker failed/).count()).toBe(1);
      await until(() => page.locator('figure.chart canvas').count()).toBeGreaterThan(0);
      expect(refused).toBe(1);
    } finally {
      await context.close();
    }
  });

  for (const width of [1440, 1024]) {
    it(`eval's lineage at ${width} px: legible labels, a box from the graph's size, datasets folded into their mixes`, async () => {
      const { page, errors, close } = await openPage(width, `${server.url}/runs/${runIds.get('eval')}`);
      try {
        const graph = page.getByTestId('lineage-graph');
        await until(() => nodeNamed(graph, 'eval').count()).toBe(1);
        await until(() => nodeNamed(graph, 'pretrain').count()).toBe(1);

        // Legible: no name, and no kind/status line, below 11 px on screen.
        await until(() => smallestTextPx(graph, '.lnode-label b')).toBeGreaterThanOrEqual(LEGIBLE_PX);
        expect(await smallestTextPx(graph, '.lnode-label span')).toBeGreaterThanOrEqual(LEGIBLE_PX);
        expect(await smallestTextPx(graph, '.react-flow__edge-text')).toBeGreaterThanOrEqual(LEGIBLE_PX);

        // Room: the box grows with the graph (taller than the old fixed box), within the window.
        const inner = await graph.evaluate((el) => (el as unknown as DomElement).clientHeight); // the box less its border, as OLD_BOX_PX was
        expect(inner).toBeGreaterThan(OLD_BOX_PX);
        expect(inner).toBeLessThanOrEqual(WINDOW_HEIGHT * 0.7);
        const box = (await graph.boundingBox())!;
        // The run the page is about is in view without panning.
        expect(await inView(graph, 'eval')).toBe(true);

        // Folded: the pretraining datasets live in their mix until asked for; datasets a run uses directly are not folded.
        for (const name of PRETRAIN_DATASETS) expect(await nodeNamed(graph, name).count()).toBe(0);
        expect(await nodeNamed(graph, 'long-kv-native').count()).toBe(0);
        expect(await nodeNamed(graph, 'arith-sft').count()).toBe(1);
        expect(await nodeNamed(graph, 'kv-recall').count()).toBe(1);
        const fold = nodeNamed(graph, 'pretrain-mix').locator('.lnode-fold');
        await until(() => fold.innerText()).toBe('+5 datasets');
        await until(() => nodeNamed(graph, 'midtrain-mix').locator('.lnode-fold').innerText()).toBe('+1 dataset');
        console.log(`[lineage ${width}px] box ${Math.round(box.width)}×${Math.round(box.height)} px (inside: ${inner} px tall), smallest name ${await smallestTextPx(graph, '.lnode-label b')} px, smallest detail ${await smallestTextPx(graph, '.lnode-label span')} px`);
        await page.screenshot({ path: path.join(SHOTS, `lineage-eval-${width}.png`), fullPage: true });

        // The deep graph overflows its box: the start of the recipe is reached by dragging the view down.
        if (!(await inView(graph, 'pretrain-mix'))) {
          await page.mouse.move(box.x + 40, box.y + 40);
          await page.mouse.down();
          await page.mouse.move(box.x + 40, box.y + box.height - 40, { steps: 8 });
          await page.mouse.up();
        }
        await until(() => inView(graph, 'pretrain-mix')).toBe(true);
        await until(() => inView(graph, 'pretrain')).toBe(true);

        // Unfolded: the mix's datasets appear, in view, still legible; the page did not navigate.
        await fold.click();
        for (const name of PRETRAIN_DATASETS) await until(() => nodeNamed(graph, name).count()).toBe(1);
        for (const name of PRETRAIN_DATASETS) await until(() => inView(graph, name)).toBe(true);
        expect(await fold.innerText()).toBe('hide 5 datasets');
        expect(await smallestTextPx(graph, '.lnode-label b')).toBeGreaterThanOrEqual(LEGIBLE_PX);
        expect(await nodeNamed(graph, 'long-kv-native').count()).toBe(0);
        expect(page.url()).toMatch(/\/runs\/[0-9a-f-]{36}$/);
        await graph.scrollIntoViewIfNeeded();
        await page.screenshot({ path: path.join(SHOTS, `lineage-eval-${width}-unfolded.png`), fullPage: true });

        // Folded again by the same button.
        await fold.click();
        for (const name of PRETRAIN_DATASETS) await until(() => nodeNamed(graph, name).count()).toBe(0);

        // The rest of a mix node still opens the mix.
        await nodeNamed(graph, 'pretrain-mix').locator('b').click();
        await page.waitForURL(/\/artifacts\/[0-9a-f-]{36}$/);
        expect(errors).toEqual([]);
      } finally {
        await close();
      }
    });

    it(`the diff page's two lineages at ${width} px: legible, changed datasets not folded away`, async () => {
      const { page, errors, close } = await openPage(width, `${server.url}/diff?a=${runIds.get('midtrain')}&b=${runIds.get('midtrainConcat')}`);
      try {
        for (const side of ['a', 'b']) {
          const graph = page.getByTestId(`lineage-${side}`);
          await until(() => graph.locator('.react-flow__node.lnode-changed').count()).toBe(3);
          await until(() => smallestTextPx(graph, '.lnode-label b')).toBeGreaterThanOrEqual(LEGIBLE_PX);
          expect(await nodeNamed(graph, side === 'a' ? 'long-kv-native' : 'long-kv-concatenated').count()).toBe(1);
          expect(await nodeNamed(graph, 'web-v1').count()).toBe(0);
          const inner = await graph.getByTestId('lineage-graph').evaluate((el) => (el as unknown as DomElement).clientHeight);
          console.log(`[lineage diff ${width}px, side ${side}] box ${inner} px tall, smallest name ${await smallestTextPx(graph, '.lnode-label b')} px`);
        }
        await page.getByTestId('lineage-a').scrollIntoViewIfNeeded();
        await page.screenshot({ path: path.join(SHOTS, `lineage-diff-${width}.png`), fullPage: true });
        expect(errors).toEqual([]);
      } finally {
        await close();
      }
    });
  }
});
