/**
 * Training progress for a terminal. On a TTY: one line redrawn in place
 * (step/steps, %, a bar, loss, tokens/s, ETA), at most every `redrawMs`.
 * Elsewhere (a pipe, a CI log): a plain line each time another `everyPercent`
 * of the steps is done, so logs stay readable.
 */

export interface ProgressSink {
  write(text: string): void;
  /** A terminal that understands \r and erase-line. */
  isTTY?: boolean;
  columns?: number;
}

export interface ProgressOptions {
  label: string;
  /** Steps this stage runs in all. */
  total: number;
  /** What a step is called in the line (default "step"): "eval 3/9". */
  unit?: string;
  /** Step already done when the bar starts (a resume). */
  start?: number;
  everyPercent?: number;
  redrawMs?: number;
  /** Clock in ms (tests pass a fake one). */
  now?: () => number;
}

export interface ProgressUpdate {
  /** Steps done. */
  step: number;
  loss?: number;
  evalLoss?: number;
  /** Tokens trained on since the last update. */
  tokens: number;
}

const BAR_WIDTH = 20;

export class ProgressBar {
  private readonly startedAt: number;
  private readonly start: number;
  private readonly now: () => number;
  private tokens = 0;
  private lastDraw = -Infinity;
  private lastPercentLine = -1;
  private drawn = false;
  private last: ProgressUpdate | undefined;

  constructor(
    private readonly sink: ProgressSink,
    private readonly opts: ProgressOptions,
  ) {
    this.now = opts.now ?? (() => performance.now());
    this.startedAt = this.now();
    this.start = opts.start ?? 0;
    this.lastPercentLine = Math.floor(this.percent(this.start) / this.every);
  }

  private get every(): number {
    return this.opts.everyPercent ?? 10;
  }

  private percent(step: number): number {
    return (100 * step) / Math.max(1, this.opts.total);
  }

  update(u: ProgressUpdate): void {
    this.tokens += u.tokens;
    this.last = { ...this.last, ...u, evalLoss: u.evalLoss ?? this.last?.evalLoss, loss: u.loss ?? this.last?.loss };
    const done = u.step >= this.opts.total;
    if (this.sink.isTTY) {
      const now = this.now();
      if (now - this.lastDraw < (this.opts.redrawMs ?? 100) && !done) return;
      this.lastDraw = now;
      const text = this.line(true);
      this.sink.write(`\r\x1b[K${text.length > (this.sink.columns || 80) - 1 ? text.slice(0, (this.sink.columns || 80) - 2) + '…' : text}`);
      this.drawn = true;
    } else {
      const bucket = Math.floor(this.percent(u.step) / this.every);
      if (bucket > this.lastPercentLine || (done && this.lastPercentLine < Math.floor(100 / this.every))) {
        this.lastPercentLine = bucket;
        this.sink.write(`${this.line(false)}\n`);
      }
    }
  }

  /** Ends the redrawn line (it stays on screen, as the stage's summary). */
  finish(): void {
    if (this.sink.isTTY && this.drawn) this.sink.write('\n');
    this.drawn = false;
  }

  /** The text of one progress line. */
  line(withBar: boolean): string {
    const u = this.last ?? { step: this.start, tokens: 0 };
    const total = this.opts.total;
    const fraction = Math.min(1, u.step / Math.max(1, total));
    const elapsedS = (this.now() - this.startedAt) / 1000;
    const stepsDone = u.step - this.start;
    const parts = [`${this.opts.label}  ${this.opts.unit ?? 'step'} ${u.step}/${total}`, `${Math.floor(fraction * 100)}%`.padStart(4)];
    if (withBar) {
      const filled = Math.round(fraction * BAR_WIDTH);
      parts.push(`[${'#'.repeat(filled)}${'.'.repeat(BAR_WIDTH - filled)}]`);
    }
    if (u.loss !== undefined) parts.push(`loss ${u.loss.toFixed(4)}`);
    if (u.evalLoss !== undefined) parts.push(`eval ${u.evalLoss.toFixed(4)}`);
    if (elapsedS > 0 && this.tokens > 0) parts.push(`${formatRate(this.tokens / elapsedS)} tok/s`);
    if (stepsDone > 0 && u.step < total) parts.push(`ETA ${formatSeconds((elapsedS / stepsDone) * (total - u.step))}`);
    else if (u.step >= total) parts.push(`in ${formatSeconds(elapsedS)}`);
    return parts.join('  ');
  }
}

export function formatRate(perSecond: number): string {
  if (perSecond >= 1e6) return `${(perSecond / 1e6).toFixed(2)}M`;
  if (perSecond >= 1e3) return `${(perSecond / 1e3).toFixed(1)}k`;
  return perSecond.toFixed(0);
}

/** 42s, 3:07, 1:02:03 */
export function formatSeconds(s: number): string {
  const total = Math.max(0, Math.round(s));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const sec = total % 60;
  if (h) return `${h}:${String(m).padStart(2, '0')}:${String(sec).padStart(2, '0')}`;
  if (m) return `${m}:${String(sec).padStart(2, '0')}`;
  return `${sec}s`;
}
