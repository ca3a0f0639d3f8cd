/**
 * The figures of results.md, as SVG written directly: a line chart (recall
 * against context length, one line per stage) and a grouped bar chart with
 * error bars (pass rates). No dependency, no DOM: a string in, a string out.
 *
 * Readable on a light and a dark page alike: the background is transparent,
 * text and axes take their colours from a `prefers-color-scheme` rule inside
 * the SVG (which an <img> honours), and the series colours are mid-tones
 * that hold on both, told apart by dash and marker shape too, not by colour alone.
 *
 * Coordinates: the plot area is CHART.margin inside CHART.width × CHART.height;
 * y grows downwards in SVG, so value v of the y domain [lo, hi] sits at
 * bottom − (v − lo) / (hi − lo) · (bottom − top − headroom).
 */

export const CHART = {
  width: 760,
  height: 360,
  /** Room for the title (top), the tick labels and axis title (bottom, left), the legend (right). */
  margin: { top: 52, right: 230, bottom: 52, left: 60 },
  /** Between the top of the plot area and where the y domain ends: room for labels above a full bar. */
  headroom: 16,
} as const;

/** Mid-tone series colours (Tableau 10), legible on white and on near-black. */
export const PALETTE = ['#4e79a7', '#f28e2b', '#e15759', '#59a14f', '#b07aa1', '#76b7b2', '#edc948', '#9c755f'] as const;
const DASHES = ['', '6 3', '2 3', '8 3 2 3', '1 2'] as const;
const MARKERS = ['circle', 'square', 'triangle', 'diamond', 'circle'] as const;

const STYLE = [
  '.fg{fill:#1f2328}.muted{fill:#59636e}.axis{stroke:#59636e}.grid{stroke:#d1d9e0}.ref{stroke:#59636e}.err{stroke:#1f2328}',
  '@media (prefers-color-scheme:dark){.fg{fill:#e6edf3}.muted{fill:#9198a1}.axis{stroke:#9198a1}.grid{stroke:#3d444d}.ref{stroke:#9198a1}.err{stroke:#e6edf3}}',
  'text{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;font-size:12px}.title{font-size:14px;font-weight:600}',
].join('');

/** Text and attribute values, escaped for XML (names come from users: runs, projects). */
export function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

/** Coordinates to two decimals: exact enough for a screen, short in the file. */
const n = (x: number) => String(Math.round(x * 100) / 100);

/** Maps a domain onto a range, linearly (a zero-width domain maps to the range's middle). */
export function linearScale(domain: readonly [number, number], range: readonly [number, number]): (v: number) => number {
  const [d0, d1] = domain;
  const [r0, r1] = range;
  if (d1 === d0) return () => (r0 + r1) / 2;
  return (v) => r0 + ((v - d0) / (d1 - d0)) * (r1 - r0);
}

/** Round tick values covering [lo, hi]: steps of 1, 2 or 5 × 10^k, about `count` of them. */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!Number.isFinite(lo) || !Number.isFinite(hi) || hi <= lo) return Number.isFinite(lo) ? [lo] : [];
  const raw = (hi - lo) / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = ([1, 2, 5, 10].find((m) => m * power >= raw) ?? 10) * power;
  const ticks: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

function frame(title: string, subtitle: string | undefined, body: string[]): string {
  const { width, height } = CHART;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="${escapeXml(title)}">`,
    `<title>${escapeXml(title)}</title>`,
    `<style>${STYLE}</style>`,
    `<text class="fg title" x="${CHART.margin.left}" y="20">${escapeXml(title)}</text>`,
    ...(subtitle ? [`<text class="muted" x="${CHART.margin.left}" y="36">${escapeXml(subtitle)}</text>`] : []),
    ...body,
    '</svg>',
    '',
  ].join('\n');
}

const plotArea = () => {
  const { width, height, margin } = CHART;
  return { left: margin.left, right: width - margin.right, top: margin.top, bottom: height - margin.bottom };
};

/** The y axis: grid lines, tick labels, the axis title turned on its side. */
function yAxis(y: (v: number) => number, ticks: number[], label: string, format: (v: number) => string): string[] {
  const a = plotArea();
  const out = ticks.map((t) => `<line class="grid" x1="${n(a.left)}" x2="${n(a.right)}" y1="${n(y(t))}" y2="${n(y(t))}" stroke-width="1"/><text class="muted" x="${n(a.left - 6)}" y="${n(y(t) + 4)}" text-anchor="end">${escapeXml(format(t))}</text>`);
  out.push(`<line class="axis" x1="${n(a.left)}" x2="${n(a.left)}" y1="${n(a.top)}" y2="${n(a.bottom)}" stroke-width="1"/>`);
  out.push(`<line class="axis" x1="${n(a.left)}" x2="${n(a.right)}" y1="${n(a.bottom)}" y2="${n(a.bottom)}" stroke-width="1"/>`);
  const cy = (a.top + a.bottom) / 2;
  out.push(`<text class="fg" x="16" y="${n(cy)}" text-anchor="middle" transform="rotate(-90 16 ${n(cy)})">${escapeXml(label)}</text>`);
  return out;
}

function xTitle(label: string): string {
  const a = plotArea();
  return `<text class="fg" x="${n((a.left + a.right) / 2)}" y="${n(CHART.height - 10)}" text-anchor="middle">${escapeXml(label)}</text>`;
}

function noData(): string {
  const a = plotArea();
  return `<text class="muted" x="${n((a.left + a.right) / 2)}" y="${n((a.top + a.bottom) / 2)}" text-anchor="middle">no data</text>`;
}

function marker(shape: (typeof MARKERS)[number], x: number, y: number, colour: string, title: string): string {
  const t = `<title>${escapeXml(title)}</title>`;
  const r = 3.5;
  switch (shape) {
    case 'circle':
      return `<circle cx="${n(x)}" cy="${n(y)}" r="${r}" fill="${colour}">${t}</circle>`;
    case 'square':
      return `<rect x="${n(x - r)}" y="${n(y - r)}" width="${2 * r}" height="${2 * r}" fill="${colour}" data-cx="${n(x)}" data-cy="${n(y)}">${t}</rect>`;
    case 'triangle':
      return `<path d="M${n(x)} ${n(y - r - 1)}L${n(x + r + 0.5)} ${n(y + r)}L${n(x - r - 0.5)} ${n(y + r)}Z" fill="${colour}" data-cx="${n(x)}" data-cy="${n(y)}">${t}</path>`;
    case 'diamond':
      return `<path d="M${n(x)} ${n(y - r - 1)}L${n(x + r + 1)} ${n(y)}L${n(x)} ${n(y + r + 1)}L${n(x - r - 1)} ${n(y)}Z" fill="${colour}" data-cx="${n(x)}" data-cy="${n(y)}">${t}</path>`;
    default: {
      const never: never = shape;
      throw new Error(`unknown marker ${String(never)}`);
    }
  }
}

function legend(entries: { name: string; colour: string; dash?: string; shape?: (typeof MARKERS)[number]; swatch: 'line' | 'box' }[]): string[] {
  const a = plotArea();
  const x = a.right + 20;
  return entries.map((e, i) => {
    const y = a.top + 8 + i * 20;
    const swatch =
      e.swatch === 'box'
        ? `<rect x="${n(x)}" y="${n(y - 6)}" width="22" height="12" fill="${e.colour}"/>`
        : `<line x1="${n(x)}" x2="${n(x + 22)}" y1="${n(y)}" y2="${n(y)}" stroke="${e.colour}" stroke-width="2"${e.dash ? ` stroke-dasharray="${e.dash}"` : ''}/>${marker(e.shape ?? 'circle', x + 11, y, e.colour, e.name)}`;
    return `<g class="legend">${swatch}<text class="fg" x="${n(x + 30)}" y="${n(y + 4)}">${escapeXml(e.name)}</text></g>`;
  });
}

// ------------------------------------------------------------------ line chart

export interface LineSeries {
  name: string;
  /** Points in x order; a non-finite x or y is skipped and breaks the line there. */
  points: readonly { x: number; y: number }[];
}

export interface LineChartSpec {
  title: string;
  subtitle?: string;
  xLabel: string;
  yLabel: string;
  series: readonly LineSeries[];
  /** Where the x ticks go, and what they say (default: every x of the data). */
  xTicks?: readonly { value: number; label: string }[];
  /** log2: powers of two evenly spaced (context lengths). */
  xScale?: 'linear' | 'log2';
  /** Default: the data's range (0 to 1 when there is none). */
  yDomain?: readonly [number, number];
  yFormat?: (v: number) => string;
  /** Dashed reference lines across the plot: a level (y) or a position (x), labelled. */
  references?: readonly ({ y: number; label: string } | { x: number; label: string })[];
  /** Pixels between neighbouring series along x, so that lines at the same values stay visible side by side (default 0). */
  dodge?: number;
}

export function lineChart(spec: LineChartSpec): string {
  const a = plotArea();
  const finite = (p: { x: number; y: number }) => Number.isFinite(p.x) && Number.isFinite(p.y) && (spec.xScale !== 'log2' || p.x > 0);
  const points = spec.series.flatMap((s) => s.points.filter(finite));
  const tx = spec.xScale === 'log2' ? Math.log2 : (v: number) => v;
  const xs = [...points.map((p) => p.x), ...(spec.xTicks ?? []).map((t) => t.value)].filter((v) => Number.isFinite(v) && (spec.xScale !== 'log2' || v > 0));
  const ys = points.map((p) => p.y);
  const yDomain: [number, number] = spec.yDomain ? [spec.yDomain[0], spec.yDomain[1]] : ys.length ? [Math.min(...ys), Math.max(...ys)] : [0, 1];
  if (yDomain[0] === yDomain[1]) yDomain[1] = yDomain[0] + 1;
  const xDomain: [number, number] = xs.length ? [tx(Math.min(...xs)), tx(Math.max(...xs))] : [0, 1];
  const pad = 16; // the first and last x sit inside the axes, not on them
  const sx = linearScale(xDomain, [a.left + pad, a.right - pad]);
  const x = (v: number) => sx(tx(v));
  const y = linearScale(yDomain, [a.bottom, a.top + CHART.headroom]);
  const yFormat = spec.yFormat ?? ((v: number) => String(v));

  const body: string[] = yAxis(y, niceTicks(yDomain[0], yDomain[1]), spec.yLabel, yFormat);
  const xTicks = spec.xTicks ?? [...new Set(points.map((p) => p.x))].sort((p, q) => p - q).map((v) => ({ value: v, label: String(v) }));
  for (const t of xTicks) {
    if (!Number.isFinite(t.value) || (spec.xScale === 'log2' && t.value <= 0)) continue;
    body.push(`<line class="axis" x1="${n(x(t.value))}" x2="${n(x(t.value))}" y1="${n(a.bottom)}" y2="${n(a.bottom + 4)}" stroke-width="1"/><text class="muted" x="${n(x(t.value))}" y="${n(a.bottom + 17)}" text-anchor="middle">${escapeXml(t.label)}</text>`);
  }
  body.push(xTitle(spec.xLabel));
  for (const r of spec.references ?? []) {
    if ('y' in r) {
      if (!Number.isFinite(r.y) || r.y < yDomain[0] || r.y > yDomain[1]) continue;
      body.push(`<g class="reference"><line class="ref" x1="${n(a.left)}" x2="${n(a.right)}" y1="${n(y(r.y))}" y2="${n(y(r.y))}" stroke-width="1" stroke-dasharray="4 4"/><text class="muted" x="${n(a.right - 4)}" y="${n(y(r.y) - 4)}" text-anchor="end">${escapeXml(r.label)}</text></g>`);
    } else {
      if (!Number.isFinite(r.x) || !xs.length || tx(r.x) < xDomain[0] || tx(r.x) > xDomain[1]) continue;
      body.push(`<g class="reference"><line class="ref" x1="${n(x(r.x))}" x2="${n(x(r.x))}" y1="${n(a.top)}" y2="${n(a.bottom)}" stroke-width="1" stroke-dasharray="4 4"/><text class="muted" x="${n(x(r.x) + 4)}" y="${n(a.top + 10)}">${escapeXml(r.label)}</text></g>`);
    }
  }
  spec.series.forEach((s, i) => {
    const shift = (i - (spec.series.length - 1) / 2) * (spec.dodge ?? 0);
    const x = (v: number) => sx(tx(v)) + shift;
    const colour = PALETTE[i % PALETTE.length]!;
    const dash = DASHES[i % DASHES.length]!;
    const shape = MARKERS[i % MARKERS.length]!;
    // runs of consecutive usable points: a gap (NaN) breaks the line
    const runs: { x: number; y: number }[][] = [[]];
    for (const p of s.points) {
      if (finite(p)) runs.at(-1)!.push(p);
      else if (runs.at(-1)!.length) runs.push([]);
    }
    const parts = runs.filter((r) => r.length > 1).map((r) => `<polyline fill="none" stroke="${colour}" stroke-width="2"${dash ? ` stroke-dasharray="${dash}"` : ''} points="${r.map((p) => `${n(x(p.x))},${n(y(p.y))}`).join(' ')}"/>`);
    const marks = s.points.filter(finite).map((p) => marker(shape, x(p.x), y(p.y), colour, `${s.name}: ${p.x} → ${yFormat(p.y)}`));
    body.push(`<g class="series" data-name="${escapeXml(s.name)}">${[...parts, ...marks].join('')}</g>`);
  });
  if (!points.length) body.push(noData());
  body.push(...legend(spec.series.map((s, i) => ({ name: s.name, colour: PALETTE[i % PALETTE.length]!, dash: DASHES[i % DASHES.length], shape: MARKERS[i % MARKERS.length], swatch: 'line' as const }))));
  return frame(spec.title, spec.subtitle, body);
}

// ------------------------------------------------------------------ bar chart

export interface BarGroup {
  label: string;
  /** One bar per series, in the spec's series order; a non-finite value draws no bar ("n/a"). */
  values: readonly { value: number; se?: number }[];
}

export interface BarChartSpec {
  title: string;
  subtitle?: string;
  yLabel: string;
  /** The bars of each group, named in the legend. */
  series: readonly string[];
  groups: readonly BarGroup[];
  /** Default: 0 to the largest bar or error bar. */
  yDomain?: readonly [number, number];
  yFormat?: (v: number) => string;
  /** Error bars reach ± this many standard errors (default 2); clipped to the y domain. */
  errorBarSE?: number;
}

export function barChart(spec: BarChartSpec): string {
  const a = plotArea();
  const k = spec.errorBarSE ?? 2;
  const bars = spec.groups.flatMap((g) => g.values.filter((v) => Number.isFinite(v.value)));
  const tops = bars.map((b) => b.value + k * (Number.isFinite(b.se) ? b.se! : 0));
  const yDomain: [number, number] = spec.yDomain ? [spec.yDomain[0], spec.yDomain[1]] : [0, tops.length ? Math.max(...tops) : 1];
  if (yDomain[0] === yDomain[1]) yDomain[1] = yDomain[0] + 1;
  const y = linearScale(yDomain, [a.bottom, a.top + CHART.headroom]);
  const clip = (v: number) => Math.min(yDomain[1], Math.max(yDomain[0], v));
  const yFormat = spec.yFormat ?? ((v: number) => String(v));
  const body: string[] = yAxis(y, niceTicks(yDomain[0], yDomain[1]), spec.yLabel, yFormat);

  const groupWidth = (a.right - a.left) / Math.max(1, spec.groups.length);
  const barWidth = Math.min(56, (groupWidth * 0.7) / Math.max(1, spec.series.length));
  spec.groups.forEach((g, gi) => {
    const centre = a.left + groupWidth * (gi + 0.5);
    const first = centre - (barWidth * spec.series.length) / 2;
    body.push(`<text class="muted" x="${n(centre)}" y="${n(a.bottom + 17)}" text-anchor="middle">${escapeXml(g.label)}</text>`);
    spec.series.forEach((name, si) => {
      const v = g.values[si];
      const x0 = first + si * barWidth + 2;
      const w = barWidth - 4;
      const cx = x0 + w / 2;
      if (!v || !Number.isFinite(v.value)) {
        body.push(`<text class="muted" x="${n(cx)}" y="${n(a.bottom - 6)}" text-anchor="middle">n/a</text>`);
        return;
      }
      const top = y(clip(v.value));
      const base = y(clip(Math.max(yDomain[0], 0)));
      const parts = [`<rect x="${n(x0)}" y="${n(Math.min(top, base))}" width="${n(w)}" height="${n(Math.abs(base - top))}" fill="${PALETTE[si % PALETTE.length]}"><title>${escapeXml(`${name}, ${g.label}: ${yFormat(v.value)}${v.se !== undefined && Number.isFinite(v.se) ? ` ± ${yFormat(k * v.se)} (${k} SE)` : ''}`)}</title></rect>`];
      let labelAt = top;
      if (v.se !== undefined && Number.isFinite(v.se) && v.se > 0) {
        const hi = y(clip(v.value + k * v.se));
        const lo = y(clip(v.value - k * v.se));
        parts.push(
          `<g class="error-bar" data-se="${n(v.se)}"><line class="err" x1="${n(cx)}" x2="${n(cx)}" y1="${n(lo)}" y2="${n(hi)}" stroke-width="1.5"/><line class="err" x1="${n(cx - 6)}" x2="${n(cx + 6)}" y1="${n(hi)}" y2="${n(hi)}" stroke-width="1.5"/><line class="err" x1="${n(cx - 6)}" x2="${n(cx + 6)}" y1="${n(lo)}" y2="${n(lo)}" stroke-width="1.5"/></g>`,
        );
        labelAt = hi;
      }
      parts.push(`<text class="fg" x="${n(cx)}" y="${n(Math.max(a.top + 10, labelAt - 5))}" text-anchor="middle">${escapeXml(yFormat(v.value))}</text>`);
      body.push(`<g class="bar" data-series="${escapeXml(name)}" data-group="${escapeXml(g.label)}">${parts.join('')}</g>`);
    });
  });
  if (!bars.length) body.push(noData());
  body.push(...legend(spec.series.map((name, i) => ({ name, colour: PALETTE[i % PALETTE.length]!, swatch: 'box' as const }))));
  return frame(spec.title, spec.subtitle, body);
}
