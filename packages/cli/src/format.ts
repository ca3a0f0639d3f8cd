import type { Json } from '@pedigree/ledger';

// ---------------------------------------------------------------- colours

const ANSI = { bold: [1, 22], dim: [2, 22], red: [31, 39], green: [32, 39], yellow: [33, 39], cyan: [36, 39], magenta: [35, 39] } as const;
export type Paint = Record<keyof typeof ANSI, (text: string) => string>;

/** Colour functions, or identity functions when colour is off (piped output, NO_COLOR). */
export function painter(enabled: boolean): Paint {
  const entries = Object.entries(ANSI).map(([name, [on, off]]) => [name, enabled ? (t: string) => (t ? `\x1b[${on}m${t}\x1b[${off}m` : t) : (t: string) => t]);
  return Object.fromEntries(entries) as Paint;
}

const ANSI_SEQUENCE = /\x1b\[[0-9;]*m/g;
export const visibleLength = (text: string) => [...text.replace(ANSI_SEQUENCE, '')].length;

/** Cuts plain text to `width` characters, marking the cut with an ellipsis. */
export function truncate(text: string, width: number): string {
  const chars = [...text];
  if (chars.length <= width) return text;
  return width <= 1 ? chars.slice(0, width).join('') : `${chars.slice(0, width - 1).join('')}…`;
}

/** Like `truncate`, for text that already carries colour codes (they take no width). */
export function truncateAnsi(text: string, width: number): string {
  if (visibleLength(text) <= width) return text;
  let out = '';
  let visible = 0;
  for (let i = 0; i < text.length; ) {
    const escape = text[i] === '\x1b' ? /^\x1b\[[0-9;]*m/.exec(text.slice(i)) : null;
    if (escape) {
      out += escape[0];
      i += escape[0].length;
      continue;
    }
    const ch = String.fromCodePoint(text.codePointAt(i)!);
    if (visible === width - 1) return `${out}…\x1b[0m`;
    out += ch;
    visible++;
    i += ch.length;
  }
  return out;
}

// ---------------------------------------------------------------- tables

export interface Column<Row> {
  header: string;
  cell: (row: Row) => string;
  align?: 'left' | 'right';
  /** Gives up width first when the table is wider than the terminal. */
  shrink?: boolean;
  /** Colours a cell after it is cut and padded, so colour codes never count as width. */
  paint?: (text: string, row: Row) => string;
}

const GAP = '  ';
const MIN_SHRUNK_WIDTH = 8;

/** An aligned table as lines: a dim header, then one line per row, cut to `width`. */
export function table<Row>(rows: readonly Row[], columns: readonly Column<Row>[], opts: { width: number; paint: Paint }): string[] {
  const cells = rows.map((row) => columns.map((c) => c.cell(row).replace(/\s+/g, ' ')));
  const widths = columns.map((c, i) => Math.max(visibleLength(c.header), ...cells.map((r) => visibleLength(r[i]!))));
  let overflow = widths.reduce((a, b) => a + b, 0) + GAP.length * (columns.length - 1) - opts.width;
  while (overflow > 0) {
    let widest = -1;
    columns.forEach((c, i) => {
      if (c.shrink && widths[i]! > MIN_SHRUNK_WIDTH && (widest < 0 || widths[i]! > widths[widest]!)) widest = i;
    });
    if (widest < 0) break;
    widths[widest]!--;
    overflow--;
  }
  const line = (texts: string[], paintCell: (text: string, i: number) => string) => {
    // Empty trailing cells are left out, so no line ends in spaces.
    const filled = texts.slice(0, texts.findLastIndex((t) => t !== '') + 1);
    return filled
      .map((text, i) => {
        const cut = truncate(text, widths[i]!);
        const padding = ' '.repeat(widths[i]! - visibleLength(cut));
        const padded = columns[i]!.align === 'right' ? padding + cut : i === filled.length - 1 ? cut : cut + padding;
        return paintCell(padded, i);
      })
      .join(GAP);
  };
  const header = line(
    columns.map((c) => c.header),
    (text) => opts.paint.dim(text),
  );
  const body = cells.map((texts, r) => line(texts, (text, i) => columns[i]!.paint?.(text, rows[r]!) ?? text));
  // Only when even the shrunk columns do not fit: cut whole lines rather than wrap them.
  return [header, ...body].map((l) => truncateAnsi(l, opts.width));
}

// ---------------------------------------------------------------- trees

export interface TreeNode {
  label: string;
  children: TreeNode[];
}

/** A tree drawn with box-drawing connectors, one line per node. */
export function renderTree(root: TreeNode, paint: Paint): string[] {
  const lines = [root.label];
  const walk = (node: TreeNode, indent: string) => {
    node.children.forEach((child, i) => {
      const last = i === node.children.length - 1;
      lines.push(`${indent}${paint.dim(last ? '└─ ' : '├─ ')}${child.label}`);
      walk(child, indent + paint.dim(last ? '   ' : '│  '));
    });
  };
  walk(root, '');
  return lines;
}

// ---------------------------------------------------------------- values

/** Compact numbers for humans: 3e-4, 0.003, 2.104, 12500. */
export function formatNumber(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  if (Number.isInteger(n) && Math.abs(n) < 1e15) return String(n);
  const abs = Math.abs(n);
  if (abs !== 0 && (abs < 1e-3 || abs >= 1e9)) return n.toExponential(2).replace(/\.?0+e/, 'e').replace('e+', 'e');
  return String(Number(n.toPrecision(4)));
}

/** Counts with thousands separators: 12,345. */
export const formatCount = (n: number) => n.toLocaleString('en-US');

export function formatJson(value: Json | undefined): string {
  if (value === undefined) return '';
  if (typeof value === 'number') return formatNumber(value);
  if (typeof value === 'string') return value;
  return JSON.stringify(value);
}

export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const s = Math.round(ms / 1000);
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
}

const pad2 = (n: number) => String(n).padStart(2, '0');

/** Local time, to the second (2025-11-24 23:17:03) or the millisecond. */
export function formatTimestamp(d: Date, opts: { ms?: boolean } = {}): string {
  const seconds = `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
  return opts.ms ? `${seconds}.${String(d.getMilliseconds()).padStart(3, '0')}` : seconds;
}

/** "12s ago", "5m ago", "3h ago", "2d ago"; the date past a week. */
export function formatAgo(d: Date, now = Date.now()): string {
  const s = Math.max(0, Math.round((now - d.getTime()) / 1000));
  if (s < 5) return 'just now';
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h ago`;
  if (s < 7 * 86_400) return `${Math.floor(s / 86_400)}d ago`;
  return formatTimestamp(d).slice(0, 10);
}

export const shortId = (id: string) => id.slice(0, 8);

export function paintStatus(status: string, paint: Paint): string {
  switch (status.trim()) {
    case 'completed':
      return paint.green(status);
    case 'running':
      return paint.cyan(status);
    case 'failed':
      return paint.red(status);
    default:
      return paint.dim(status);
  }
}

// ---------------------------------------------------------------- progress

const REDRAW_EVERY_MS = 80;
const BAR_WIDTH = 24;

/**
 * One self-redrawing line on a terminal (stderr), so it never mixes into
 * output a script reads. Silent when the stream is not a terminal.
 */
export class ProgressLine {
  private lastDraw = 0;
  private drawn = false;

  constructor(
    private readonly stream: NodeJS.WriteStream | null,
    private readonly label: string,
  ) {}

  update(done: number, total?: number): void {
    this.show(total ? done / total : undefined, total ? `${formatCount(done)}/${formatCount(total)}` : formatCount(done));
  }

  /** The bar at `fraction` (none when undefined), then `text`. */
  show(fraction: number | undefined, text: string): void {
    if (!this.stream) return;
    const now = performance.now();
    if (now - this.lastDraw < REDRAW_EVERY_MS && !(fraction !== undefined && fraction >= 1)) return;
    this.lastDraw = now;
    let line = `${this.label} ${text}`;
    if (fraction !== undefined) {
      const clamped = Math.min(1, Math.max(0, fraction));
      const filled = Math.round(clamped * BAR_WIDTH);
      line = `${this.label} [${'#'.repeat(filled)}${'.'.repeat(BAR_WIDTH - filled)}] ${Math.floor(clamped * 100)}%  ${text}`;
    }
    this.stream.write(`\r\x1b[K${truncate(line, (this.stream.columns || 80) - 1)}`);
    this.drawn = true;
  }

  /** Clears the line, leaving the terminal as it was. */
  finish(): void {
    if (this.stream && this.drawn) this.stream.write('\r\x1b[K');
    this.drawn = false;
  }
}
