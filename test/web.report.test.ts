import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { connect, type Pedigree } from '@pedigree/client';
import { recordReport, writeReport, type RecipeResult, type RecordedReport, type WrittenReport } from '@pedigree/trainer';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { browserUnavailable, collectErrors, launchChromium } from './support/browser.ts';
import { pedigreeCommand, pedigreeServer, type PedigreeServer } from './support/server.ts';

/**
 * The toy recipe's report in the dashboard: results.md and its two SVG
 * figures, written by the trainer's own writeReport from a hand-made result
 * and recorded by recordReport as `report` artifacts, as `pedigree demo` does.
 * On a keys server: the run page shows the figures (fetched with the key in a
 * header, drawn as <img>), the artifact pages show a figure and the text, and
 * GET /api/reports/<id> serves a file only while it matches its recorded
 * SHA-256. Screenshots land in test-results/web/.
 */
const why = browserUnavailable();
if (why && process.env.CI) throw new Error(`CI must run the browser tests, but ${why}`);
if (why) console.warn(`[skipping browser tests] ${why}`);

const until = <T>(read: () => Promise<T> | T, opts: { timeout?: number } = {}) => expect.poll(read, { timeout: opts.timeout ?? 15_000, interval: 100 });

const SHOTS = path.resolve(import.meta.dirname, '../test-results/web');
const PROJECT = 'recipe';
/** What the page's side of evaluate() touches (this file is type-checked without the DOM's types). */
type Img = { complete: boolean; naturalWidth: number };
const loadedWidth = (el: unknown) => ((el as Img).complete ? (el as Img).naturalWidth : 0);
type Storage = { localStorage: { setItem(key: string, value: string): void } };
const sha256 = (bytes: Uint8Array | string) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

/** Every stage the figures draw: recall at 1×–8× the pretraining context, then the SFT and PTS-DPO pass rates. */
function handMadeResult(runIds: Record<string, string>): RecipeResult {
  const recall = (...scores: number[]) => scores.map((score, i) => ({ contextLength: 64 * 2 ** i, score, n: 24 }));
  const stage = (name: string, kind: string, evals: RecipeResult['stages'][number]['evals']) => ({ name, kind, runId: runIds[name]!, evals, seconds: 12 });
  return {
    project: PROJECT,
    size: 'ci',
    seconds: 95,
    backend: 'reference',
    stages: [
      stage('pretrain', 'pretrain', { recall: recall(41.7, 12.5, 8.3, 4.2), shortContextLoss: 1.61 }),
      stage('midtrain', 'midtrain', { recall: recall(45.8, 37.5, 29.2, 16.7), shortContextLoss: 1.55 }),
      stage('midtrain-concat', 'midtrain', { recall: recall(41.7, 20.8, 12.5, 8.3), shortContextLoss: 1.58 }),
      stage('sft', 'sft', { arithmetic: { score: 82, n: 100 }, arithmeticSampled: { score: 64.5, n: 800 } }),
      stage('dpo', 'dpo', { arithmetic: { score: 88, n: 100 }, arithmeticSampled: { score: 71.25, n: 800 } }),
    ],
  };
}

describe.skipIf(why)('the report in the dashboard (Chromium, keys server)', () => {
  let home: string;
  let files: string;
  let server: PedigreeServer;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let errors: string[];
  let apiKey: string;
  let otherKey: string;
  let pd: Pedigree;
  const runIds: Record<string, string> = {};
  let written: WrittenReport;
  let recorded: RecordedReport;
  let otherRunId: string;

  /** GET /api/reports/<id>, with a key (the project's by default) in the header. */
  const report = (artifactId: string, key: string | null = apiKey) => fetch(`${server.url}/api/reports/${artifactId}`, { headers: key ? { authorization: `Bearer ${key}` } : {} });
  const useKey = (key: string) => page.evaluate((k) => (globalThis as unknown as Storage).localStorage.setItem('pedigree.apiKey', k), key);

  beforeAll(async () => {
    mkdirSync(SHOTS, { recursive: true });
    home = mkdtempSync(path.join(os.tmpdir(), 'pedigree-web-report-'));
    files = path.join(home, 'results');
    const keyFor = async (project: string) => {
      const made = await pedigreeCommand(['projects', 'create', project, '--home', home]);
      expect(made, made.stderr).toMatchObject({ code: 0 });
      const created = await pedigreeCommand(['keys', 'create', '--project', project, '--name', `${project}-dashboard`, '--json', '--home', home]);
      expect(created, created.stderr).toMatchObject({ code: 0 });
      return (JSON.parse(created.stdout) as { key: string }).key;
    };
    apiKey = await keyFor(PROJECT);
    otherKey = await keyFor('no-report');
    server = await pedigreeServer({ home, auth: 'keys', demo: 'none' });
    [, browser] = await Promise.all([server.start(), launchChromium()]);

    pd = await connect({ url: server.url, apiKey, handleSignals: false });
    for (const [name, kind] of [['pretrain', 'pretrain'], ['midtrain', 'midtrain'], ['midtrain-concat', 'midtrain'], ['sft', 'sft'], ['dpo', 'dpo']] as const) {
      const run = await pd.startRun({ project: PROJECT, name, kind });
      run.log({ 'train/loss': 2 }, 0);
      await run.finish();
      runIds[name] = run.id;
    }
    written = await writeReport(handMadeResult(runIds), path.join(files, 'results.md'), { date: new Date('2026-11-30T00:00:00Z') });
    recorded = await recordReport(pd, PROJECT, written);

    const other = await connect({ url: server.url, apiKey: otherKey, handleSignals: false });
    try {
      const run = await other.startRun({ project: 'no-report', name: 'plain', kind: 'pretrain' });
      await run.finish();
      otherRunId = run.id;
    } finally {
      await other.close();
    }

    context = await browser.newContext({ viewport: { width: 1360, height: 900 } });
    // The key is stored from a first tab (whose requests, made before it, are refused), then the
    // pages under test open in a fresh one, watched for errors from their first request on.
    const first = await context.newPage();
    await first.goto(`${server.url}/`);
    await first.evaluate((k) => (globalThis as unknown as Storage).localStorage.setItem('pedigree.apiKey', k), apiKey);
    await first.close();
    page = await context.newPage();
    errors = collectErrors(page);
  });

  afterAll(async () => {
    await pd?.close();
    await context?.close().catch(() => {});
    await browser?.close().catch(() => {});
    if (server) {
      const stopped = await server.stop();
      expect(stopped.leftover).toBe(false);
    }
    if (home) rmSync(home, { recursive: true, force: true });
  });

  it('the run page shows the figures, loaded, captioned, with a link to results.md; a project without a report shows none', async () => {
    await page.goto(`${server.url}/runs/${runIds.dpo}`);
    await until(() => page.locator('h1').innerText()).toContain('dpo');
    const section = page.getByRole('region', { name: 'Report' });
    const names = written.figures.map((f) => f.name);
    expect(names).toEqual(['results-recall-by-context.svg', 'results-pass-rate.svg']);
    for (const name of names) {
      const img = section.locator(`figure[data-report="${name}"] img`);
      await until(() => img.evaluate(loadedWidth)).toBeGreaterThan(0);
      await until(() => section.locator(`figure[data-report="${name}"] figcaption`).innerText()).toBe(name);
    }
    await until(() => section.getByRole('link', { name: 'results.md' }).getAttribute('href')).toBe(`/artifacts/${recorded.reportArtifactId}`);
    // Shown as images (no script can run in one), never as inline SVG in the page.
    expect(await section.locator('svg').count()).toBe(0);
    await section.scrollIntoViewIfNeeded();
    await page.screenshot({ path: path.join(SHOTS, 'run-report.png'), fullPage: true });

    // The rest of the page still reads (the charts, the live machinery untouched).
    await until(() => page.locator('figure.chart[data-metric="train/loss"] canvas').count()).toBeGreaterThan(0);

    // Out of the way where there is none: once the project's reports are listed (none), no section.
    await useKey(otherKey);
    const listed = page.waitForResponse((r) => r.url().includes('artifacts.list'));
    await page.goto(`${server.url}/runs/${otherRunId}`);
    await until(() => page.locator('h1').innerText()).toContain('plain');
    expect((await listed).status()).toBe(200);
    await until(() => page.getByRole('heading', { name: 'Evals', exact: true }).count()).toBe(1);
    expect(await page.getByRole('region', { name: 'Report' }).count()).toBe(0);
    await useKey(apiKey);
    expect(errors).toEqual([]);
  });

  it('the artifact page shows a figure, and results.md as text with its figures in place', async () => {
    await page.goto(`${server.url}/artifacts/${recorded.figureArtifactIds[0]}`);
    await until(() => page.locator('h1').innerText()).toContain('results-recall-by-context.svg');
    const img = page.locator('figure.reportfig img');
    await until(() => img.evaluate(loadedWidth)).toBeGreaterThan(0);
    await page.screenshot({ path: path.join(SHOTS, 'artifact-report-figure.png'), fullPage: true });

    await page.goto(`${server.url}/artifacts/${recorded.reportArtifactId}`);
    const text = page.locator('.markdown[data-report="results.md"]');
    await until(() => text.getByRole('heading', { level: 2 }).first().innerText()).toBe('The Phi-4 recipe at toy scale: results (ci)');
    await until(() => text.getByRole('heading', { name: 'Evals by stage' }).count()).toBe(1);
    // The claims table, as a table; bold verdicts as bold, not asterisks.
    await until(() => text.locator('table').first().locator('thead').innerText()).toMatch(/claim\s+the report\s+toy measurement\s+at toy scale/);
    expect(await text.innerText()).not.toContain('**');
    // Its image links are the figures of those names.
    for (const name of written.figures.map((f) => f.name)) {
      await until(() => text.locator(`figure[data-report="${name}"] img`).evaluate(loadedWidth)).toBeGreaterThan(0);
    }
    await page.screenshot({ path: path.join(SHOTS, 'artifact-report-text.png'), fullPage: true });
    expect(errors).toEqual([]);
  });

  it('GET /api/reports/<id> serves the recorded bytes as SVG or markdown, with no script allowed, to the project’s key only', async () => {
    const [figure] = written.figures;
    const svg = await report(recorded.figureArtifactIds[0]!);
    expect(svg.status).toBe(200);
    expect(svg.headers.get('content-type')).toBe('image/svg+xml');
    expect(svg.headers.get('x-content-type-options')).toBe('nosniff');
    const csp = svg.headers.get('content-security-policy') ?? '';
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain('sandbox');
    expect(csp).not.toMatch(/script-src/);
    expect(Buffer.from(await svg.arrayBuffer()).equals(readFileSync(figure!.path))).toBe(true);

    const md = await report(recorded.reportArtifactId);
    expect(md.status).toBe(200);
    expect(md.headers.get('content-type')).toBe('text/markdown; charset=utf-8');
    expect(md.headers.get('x-content-type-options')).toBe('nosniff');
    expect(await md.text()).toBe(readFileSync(written.report.path, 'utf8'));

    // Checked like any read: no key, or another project's key, gets nothing.
    expect((await report(recorded.reportArtifactId, null)).status).toBe(401);
    const outside = await report(recorded.reportArtifactId, otherKey);
    expect(outside.status).toBe(403);
    expect(await outside.text()).not.toContain('results.md');
    expect((await report('not-a-uuid')).status).toBe(400);
  });

  it('refuses an artifact that is not a report, a file changed since it was recorded (409) and a missing one (404)', async () => {
    const dataset = await pd.registerArtifact({ project: PROJECT, name: 'web-v1', spec: { kind: 'dataset', source: 'synthetic/web' } });
    const notReport = await report(dataset.artifactId);
    expect(notReport.status).toBe(422);
    expect(((await notReport.json()) as { error: string }).error).toMatch(/is a dataset, not a report/);

    // A figure whose file is rewritten after it was recorded.
    // Distinct bytes for each: an artifact's id follows from its project, kind and digest.
    const svgOf = (width: number) => `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="20"><rect width="${width}" height="20" fill="#2563eb"/></svg>`;
    const original = svgOf(40);
    const changedPath = path.join(files, 'changed.svg');
    writeFileSync(changedPath, original);
    const changed = await pd.registerArtifact({ project: PROJECT, name: 'changed.svg', digest: sha256(original), spec: { kind: 'report', format: 'svg', path: changedPath } });
    expect((await report(changed.artifactId)).status).toBe(200);
    writeFileSync(changedPath, original.replace('#2563eb', '#cf222e'));
    const refused = await report(changed.artifactId);
    expect(refused.status).toBe(409);
    expect(((await refused.json()) as { error: string }).error).toMatch(/^the file changed since it was recorded/);
    // The page says why instead of drawing the new bytes (the browser logs the refused request: nothing else).
    const before = errors.length;
    await page.goto(`${server.url}/artifacts/${changed.artifactId}`);
    await until(() => page.locator('figure.reportfig .errorbox').innerText()).toContain('the file changed since it was recorded');
    expect(await page.locator('figure.reportfig img').count()).toBe(0);
    await page.screenshot({ path: path.join(SHOTS, 'artifact-report-changed.png'), fullPage: true });
    expect(errors.splice(before).filter((e) => !/status of 409/.test(e))).toEqual([]);
    // Put back, it is served again.
    writeFileSync(changedPath, original);
    expect((await report(changed.artifactId)).status).toBe(200);

    // A figure whose file is gone.
    const gonePath = path.join(files, 'gone.svg');
    writeFileSync(gonePath, svgOf(41));
    const gone = await pd.registerArtifact({ project: PROJECT, name: 'gone.svg', digest: sha256(svgOf(41)), spec: { kind: 'report', format: 'svg', path: gonePath } });
    unlinkSync(gonePath);
    const missing = await report(gone.artifactId);
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as { error: string }).error).toMatch(/does not exist/);

    // A report in a format that is not served, and one whose path is not of its format.
    const pdf = await pd.registerArtifact({ project: PROJECT, name: 'results.pdf', digest: sha256(svgOf(42)), spec: { kind: 'report', format: 'pdf', path: changedPath } });
    expect((await report(pdf.artifactId)).status).toBe(422);
    const passwd = await pd.registerArtifact({ project: PROJECT, name: 'passwd.svg', digest: sha256(readFileSync('/etc/passwd')), spec: { kind: 'report', format: 'svg', path: '/etc/passwd' } });
    expect((await report(passwd.artifactId)).status).toBe(422);
    expect(errors).toEqual([]);
  });
});
