import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { StageOutcome } from '../stages/outcome.ts';
import { sha256 } from '../model/checkpoint.ts';
import { barChart, CHART, escapeXml, lineChart, niceTicks } from './plots.ts';
import { TOY } from './presets.ts';
import type { RecipeResult } from './recipe.ts';
import { figureFiles, passRateSE, writeReport } from './report.ts';

/**
 * A strict little XML reader, enough to hold the SVG to well-formedness:
 * every tag closed in order, attributes quoted, `&` only in the five
 * entities or a numeric one, no `<` in text or attribute values.
 */
interface Element {
  name: string;
  attrs: Record<string, string>;
  children: Element[];
  text: string;
}
const ENTITY = /&(?!(amp|lt|gt|quot|#39|#\d+);)/;
const unescape = (s: string) => s.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&amp;/g, '&');
function parseXml(xml: string): Element {
  const root: Element = { name: '#root', attrs: {}, children: [], text: '' };
  const stack = [root];
  const re = /<(\/?)([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>|([^<]+)|(<)/g;
  for (const m of xml.matchAll(re)) {
    const [, closing, name, attrText, selfClosing, text, stray] = m;
    const top = stack.at(-1)!;
    if (stray) throw new Error(`stray < at ${m.index}: ${xml.slice(m.index, m.index + 40)}`);
    if (text !== undefined) {
      if (ENTITY.test(text)) throw new Error(`bare & in text: ${text}`);
      if (stack.length === 1 && text.trim()) throw new Error(`text outside the root: ${text}`);
      top.text += unescape(text);
      continue;
    }
    if (closing) {
      if (top.name !== name) throw new Error(`</${name}> closes <${top.name}>`);
      stack.pop();
      continue;
    }
    const attrs: Record<string, string> = {};
    for (const a of attrText!.matchAll(/([\w:-]+)="([^"]*)"/g)) {
      if (a[1]! in attrs) throw new Error(`attribute ${a[1]} twice on <${name}>`);
      if (ENTITY.test(a[2]!)) throw new Error(`bare & in attribute ${a[1]}`);
      attrs[a[1]!] = unescape(a[2]!);
    }
    const el: Element = { name: name!, attrs, children: [], text: '' };
    top.children.push(el);
    if (!selfClosing) stack.push(el);
  }
  if (stack.length !== 1) throw new Error(`<${stack.at(-1)!.name}> is never closed`);
  if (root.children.length !== 1) throw new Error(`${root.children.length} root elements`);
  return root.children[0]!;
}
const all = (el: Element, pred: (e: Element) => boolean): Element[] => [...(pred(el) ? [el] : []), ...el.children.flatMap((c) => all(c, pred))];
const textOf = (el: Element): string => el.text + el.children.map(textOf).join('');
const num = (el: Element, attr: string) => Number(el.attrs[attr]);

const area = { left: CHART.margin.left, right: CHART.width - CHART.margin.right, top: CHART.margin.top, bottom: CHART.height - CHART.margin.bottom };
/** Where y value v of [lo, hi] is drawn (see plots.ts). */
const yAt = (v: number, lo = 0, hi = 100) => area.bottom - ((v - lo) / (hi - lo)) * (area.bottom - area.top - CHART.headroom);
/** A marker's centre, whatever its shape. */
const centre = (e: Element) => ({ x: Number(e.attrs.cx ?? e.attrs['data-cx']), y: Number(e.attrs.cy ?? e.attrs['data-cy']) });
const markers = (g: Element) => g.children.filter((c) => c.name !== 'polyline');

describe('the SVG line chart', () => {
  const spec = {
    title: 'Recall',
    xLabel: 'context length',
    yLabel: 'recall (%)',
    xScale: 'log2' as const,
    yDomain: [0, 100] as const,
    series: [
      { name: 'pretrain', points: [64, 128, 256, 512].map((x, i) => ({ x, y: [100, 50, 25, 0][i]! })) },
      { name: 'midtrain', points: [64, 128, 256, 512].map((x, i) => ({ x, y: [90, NaN, 80, 70][i]! })) },
    ],
    references: [{ y: 10, label: 'chance' }],
  };

  it('is well-formed SVG with a title, axes, ticks and a legend', () => {
    const svg = parseXml(lineChart(spec));
    expect(svg.name).toBe('svg');
    expect(svg.attrs).toMatchObject({ xmlns: 'http://www.w3.org/2000/svg', viewBox: `0 0 ${CHART.width} ${CHART.height}` });
    expect(all(svg, (e) => e.name === 'title')[0]!.text).toBe('Recall');
    const texts = all(svg, (e) => e.name === 'text').map(textOf);
    expect(texts).toEqual(expect.arrayContaining(['0', '20', '40', '60', '80', '100', '64', '128', '256', '512', 'context length', 'recall (%)', 'chance', 'pretrain', 'midtrain']));
    expect(all(svg, (e) => e.attrs.class === 'legend')).toHaveLength(2);
    // colours for light and dark pages from the SVG's own style
    expect(all(svg, (e) => e.name === 'style')[0]!.text).toContain('prefers-color-scheme:dark');
  });

  it('places each point where its value says: y by the domain, x evenly by powers of two', () => {
    const svg = parseXml(lineChart(spec));
    const [pre] = all(svg, (e) => e.attrs['data-name'] === 'pretrain');
    const points = markers(pre!).map(centre);
    const pad = 16;
    const xs = [0, 1, 2, 3].map((i) => area.left + pad + (i / 3) * (area.right - area.left - 2 * pad));
    for (const [i, p] of points.entries()) {
      expect(p.x).toBeCloseTo(xs[i]!, 1);
      expect(p.y).toBeCloseTo(yAt([100, 50, 25, 0][i]!), 1);
    }
    expect(points[0]!.y).toBeCloseTo(area.top + CHART.headroom, 1); // 100 at the top of the domain
    expect(points[3]!.y).toBeCloseTo(area.bottom, 1); // 0 on the x axis
    // the reference line at 10
    const ref = all(svg, (e) => e.attrs.class === 'ref')[0]!;
    expect(num(ref, 'y1')).toBeCloseTo(yAt(10), 1);
    // the tick labelled 100 sits on the grid line at 100
    const tick = all(svg, (e) => e.name === 'text' && e.text === '100')[0]!;
    expect(num(tick, 'y') - 4).toBeCloseTo(yAt(100), 1);
  });

  it('sets series side by side along x when asked, so equal values stay visible', () => {
    const svg = parseXml(lineChart({ ...spec, dodge: 4 }));
    const xs = ['pretrain', 'midtrain'].map((name) => centre(markers(all(svg, (e) => e.attrs['data-name'] === name)[0]!)[0]!).x);
    expect(xs[1]! - xs[0]!).toBeCloseTo(4, 5);
    expect((xs[0]! + xs[1]!) / 2).toBeCloseTo(area.left + 16, 5); // centred on the value's place
  });

  it('breaks a line at a missing value instead of drawing through it', () => {
    const svg = parseXml(lineChart(spec));
    const [mid] = all(svg, (e) => e.attrs['data-name'] === 'midtrain');
    const lines = mid!.children.filter((c) => c.name === 'polyline');
    expect(lines).toHaveLength(1); // 64 stands alone; 256 → 512 is the one segment
    expect(lines[0]!.attrs.points!.split(' ')).toHaveLength(2);
    expect(markers(mid!)).toHaveLength(3);
    expect(lineChart(spec)).not.toContain('NaN');
  });

  it('escapes names and labels', () => {
    const evil = `<script>alert("x")</script> & 'y'`;
    const text = lineChart({ ...spec, title: evil, series: [{ name: evil, points: [{ x: 64, y: 1 }] }], references: [{ y: 10, label: evil }] });
    expect(text).not.toContain('<script>');
    const svg = parseXml(text);
    expect(all(svg, (e) => e.name === 'title')[0]!.text).toBe(evil);
    expect(all(svg, (e) => e.attrs.class === 'legend').flatMap((g) => g.children.filter((c) => c.name === 'text').map(textOf))).toEqual([evil]);
    expect(all(svg, (e) => e.attrs['data-name'] === evil)).toHaveLength(1);
    expect(escapeXml(`<&>"'`)).toBe('&lt;&amp;&gt;&quot;&#39;');
  });

  it('draws axes and says "no data" for no series, or series of NaN only', () => {
    for (const series of [[], [{ name: 'a', points: [{ x: 64, y: NaN }, { x: NaN, y: 3 }] }]]) {
      const text = lineChart({ ...spec, series, xTicks: undefined });
      const svg = parseXml(text);
      expect(all(svg, (e) => e.name === 'text').map(textOf)).toContain('no data');
      expect(all(svg, (e) => e.name === 'polyline')).toHaveLength(0);
      expect(text).not.toMatch(/NaN|Infinity/);
    }
    // no y domain given and no data: still a drawable chart
    expect(() => parseXml(lineChart({ title: 't', xLabel: 'x', yLabel: 'y', series: [] }))).not.toThrow();
  });

  it('picks round ticks', () => {
    expect(niceTicks(0, 100)).toEqual([0, 20, 40, 60, 80, 100]);
    expect(niceTicks(0, 1)).toEqual([0, 0.2, 0.4, 0.6, 0.8, 1]);
    expect(niceTicks(1.3, 4.2)).toEqual([2, 3, 4]);
    expect(niceTicks(0, 0.07)).toEqual([0, 0.02, 0.04, 0.06]);
    expect(niceTicks(NaN, 1)).toEqual([]);
  });
});

describe('the SVG bar chart', () => {
  const spec = {
    title: 'Pass rate',
    yLabel: '%',
    series: ['SFT', 'PTS-DPO'],
    groups: [
      { label: 'greedy', values: [{ value: 50, se: 5 }, { value: 98, se: 2 }] },
      { label: 'sampled', values: [{ value: 30, se: 0 }, { value: NaN }] },
    ],
    yDomain: [0, 100] as const,
  };
  const bar = (svg: Element, series: string, group: string) => all(svg, (e) => e.attrs['data-series'] === series && e.attrs['data-group'] === group)[0];

  it('draws bars to their values and error bars at ±2 standard errors, clipped to the domain', () => {
    const svg = parseXml(barChart(spec));
    const sft = bar(svg, 'SFT', 'greedy')!;
    const rect = sft.children.find((c) => c.name === 'rect')!;
    expect(num(rect, 'y')).toBeCloseTo(yAt(50), 1);
    expect(num(rect, 'y') + num(rect, 'height')).toBeCloseTo(area.bottom, 1);
    const [stem] = all(sft, (e) => e.attrs.class === 'err');
    expect(num(stem!, 'y1')).toBeCloseTo(yAt(40), 1); // 50 − 2 × 5
    expect(num(stem!, 'y2')).toBeCloseTo(yAt(60), 1); // 50 + 2 × 5
    const [clipped] = all(bar(svg, 'PTS-DPO', 'greedy')!, (e) => e.attrs.class === 'err');
    expect(num(clipped!, 'y1')).toBeCloseTo(yAt(94), 1);
    expect(num(clipped!, 'y2')).toBeCloseTo(yAt(100), 1); // 98 + 4 stops at 100
    // SE 0: no error bar; a missing value: no bar, "n/a"
    expect(all(bar(svg, 'SFT', 'sampled')!, (e) => e.attrs.class === 'err')).toHaveLength(0);
    expect(bar(svg, 'PTS-DPO', 'sampled')).toBeUndefined();
    expect(all(svg, (e) => e.name === 'text').map(textOf)).toEqual(expect.arrayContaining(['n/a', 'greedy', 'sampled', 'SFT', 'PTS-DPO', '50', '98']));
    expect(barChart(spec)).not.toContain('NaN');
  });

  it('takes the error bars\' width from errorBarSE and escapes group and series names', () => {
    const svg = parseXml(barChart({ ...spec, series: ['<a&b>'], groups: [{ label: '"q"', values: [{ value: 50, se: 5 }] }], errorBarSE: 1 }));
    const b = bar(svg, '<a&b>', '"q"')!;
    const [stem] = all(b, (e) => e.attrs.class === 'err');
    expect(num(stem!, 'y1')).toBeCloseTo(yAt(45), 1);
    expect(num(stem!, 'y2')).toBeCloseTo(yAt(55), 1);
  });

  it('says "no data" with no bars', () => {
    const svg = parseXml(barChart({ ...spec, groups: [], yDomain: undefined }));
    expect(all(svg, (e) => e.name === 'text').map(textOf)).toContain('no data');
  });
});

describe('the report on disk', () => {
  const recall = (scores: number[]) => scores.map((score, i) => ({ contextLength: TOY.pretrainContext * 2 ** i, score, n: 48 }));
  const stage = (name: string, evals: StageOutcome['evals']): StageOutcome => ({ name, kind: name, runId: `${name}-0000-run`, evals, seconds: 1 });
  const result: RecipeResult = {
    project: 'p',
    size: 'ci',
    seconds: 60,
    backend: 'reference (TypeScript)',
    stages: [
      stage('pretrain', { recall: recall([50, 20, 10, 0]), shortContextLoss: 1.5 }),
      stage('midtrain', { recall: recall([60, 40, 30, 5]), shortContextLoss: 1.5 }),
      stage('sft', { arithmetic: { score: 40, n: 100 }, arithmeticSampled: { score: 40, n: 800 } }),
      stage('dpo', { arithmetic: { score: 50, n: 100 }, arithmeticSampled: { score: 45, n: 800 } }),
    ],
  };

  it('standard errors of a pass rate', () => {
    expect(passRateSE(50, 100)).toBeCloseTo(5, 10);
    expect(passRateSE(92.4, 800)).toBeCloseTo(100 * Math.sqrt((0.924 * 0.076) / 800), 10);
    expect(passRateSE(100, 100)).toBe(0);
  });

  it('writes results.md and its figures side by side, linked by relative names, with their digests', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'pedigree-report-'));
    try {
      const file = path.join(dir, 'new dir', 'my (toy) results.md');
      const written = await writeReport(result, file);
      expect(written.report.path).toBe(file);
      expect(written.figures.map((f) => f.path)).toEqual(Object.values(figureFiles(file)));
      const markdown = readFileSync(file, 'utf8');
      for (const f of [written.report, ...written.figures]) expect(sha256(readFileSync(f.path))).toBe(f.digest);
      for (const f of written.figures) {
        expect(path.dirname(f.path)).toBe(path.dirname(file));
        // a relative link, its spaces and parentheses escaped
        expect(markdown).toContain(`](${encodeURIComponent(f.name).replace(/\(/g, '%28').replace(/\)/g, '%29')})`);
        expect(() => parseXml(readFileSync(f.path, 'utf8'))).not.toThrow();
      }
      const recallSvg = parseXml(readFileSync(written.figures[0]!.path, 'utf8'));
      expect(all(recallSvg, (e) => e.attrs.class === 'series').map((g) => g.attrs['data-name'])).toEqual(['pretrain', 'midtrain']);
      const passSvg = parseXml(readFileSync(written.figures[1]!.path, 'utf8'));
      expect(all(passSvg, (e) => e.attrs.class === 'error-bar')).toHaveLength(4);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
