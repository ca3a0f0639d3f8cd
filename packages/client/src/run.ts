import { randomUUID } from 'node:crypto';
import type { RouterInputs } from '@pedigree/api';
import { packColumns, type PointColumns } from '@pedigree/ledger/packed';
import { MAX_ERROR } from '@pedigree/ledger/vocabulary';
import { PedigreeError } from './errors.ts';
import type { Api } from './transport.ts';

/** What a run needs of its connection (the client's `Pedigree` is one). */
export interface ClientCore {
  api: Api;
  options: { batchSize: number; flushIntervalMs: number; allowNonFinite?: boolean; onError?: (err: PedigreeError) => void };
  call<T>(what: string, fn: () => Promise<T>): Promise<T>;
  forget(run: Run): void;
}

/**
 * `runs.saveCheckpoint`'s input, less the ids the run fills in: `step`,
 * `digest` (`sha256:<64 hex>` of the checkpoint file), and optionally `name`,
 * `manifest` (tensor name → shape), `path`, `bytes`.
 */
export type CheckpointInput = Omit<RouterInputs['runs']['saveCheckpoint'], 'runId' | 'eventId'>;

/** `runs.recordEval`'s input, less the ids the run fills in: `suite`, `task`, `score`, and optionally `contextLength`, `n`, `step`. */
export type EvalInput = Omit<RouterInputs['runs']['recordEval'], 'runId' | 'eventId'>;

/** Room for this many points when a run's buffer is first used; it doubles as needed and is reused after each send. */
const INITIAL_CAPACITY = 1024;

/**
 * One run being recorded. `log` is synchronous and cheap: points are
 * buffered and sent in batches in the background, one batch in flight at a
 * time (so they arrive in order), each with an event id fixed before its
 * first attempt (so a retry after a lost response is a no-op on the server).
 * Everything else waits for what was logged before it.
 */
export class Run {
  /** Points logged and not yet handed to the send queue: the first `buffered` of these columns (keys: every key this run has logged). */
  private buffer: PointColumns & { keys: string[] } = { keys: [], keyIndex: new Uint32Array(0), steps: new Float64Array(0), values: new Float64Array(0), times: new Float64Array(0) };
  private buffered = 0;
  private keyIds = new Map<string, number>();
  private queue: Promise<void> = Promise.resolve();
  private failure: PedigreeError | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private nextStep = 0;
  private ended = false;
  /** Points sent and acknowledged. */
  pointsSent = 0;

  constructor(
    private readonly core: ClientCore,
    readonly id: string,
    readonly name: string,
    readonly projectId: string,
  ) {}

  /** Logs values at a step (default: one past the last step logged). */
  log(values: Record<string, number>, step?: number): void {
    this.assertOpen();
    const at = step ?? this.nextStep;
    if (!Number.isInteger(at) || at < 0) throw new PedigreeError(`step must be a non-negative integer, got ${at}`, 'BAD_REQUEST', null);
    this.nextStep = Math.max(this.nextStep, at + 1);
    const time = Date.now();
    // Every value is checked before any is buffered: a call with a bad value logs nothing.
    const keys = Object.keys(values);
    for (const key of keys) if (typeof values[key] !== 'number') throw new PedigreeError(`${key} must be a number, got ${typeof values[key]}`, 'BAD_REQUEST', null);
    for (const key of keys) this.bufferPoint(key, at, values[key]!, time);
    if (this.buffered >= this.core.options.batchSize) this.drain();
    else this.timer ??= setTimeout(() => this.drain(), this.core.options.flushIntervalMs);
  }

  /** Sends what is buffered and waits until every point logged so far is acknowledged. */
  async flush(): Promise<void> {
    this.drain();
    await this.queue;
    if (this.failure) throw this.failure;
  }

  /** Points logged but not yet acknowledged. */
  get pending(): number {
    return this.buffered;
  }

  async checkpoint(input: CheckpointInput): Promise<{ artifactId: string }> {
    const res = await this.write('save checkpoint', (eventId) => this.core.api.runs.saveCheckpoint.mutate({ runId: this.id, eventId, ...input }));
    return { artifactId: res.artifactId };
  }

  async eval(input: EvalInput): Promise<void> {
    await this.write('record eval', (eventId) => this.core.api.runs.recordEval.mutate({ runId: this.id, eventId, ...input }));
  }

  /** A hyperparameter changed mid-run (a learning-rate drop, a new context length). */
  async changeHyperparameter(key: string, value: unknown, step: number, reason?: string): Promise<void> {
    await this.write('change hyperparameter', (eventId) => this.core.api.runs.changeHyperparameter.mutate({ runId: this.id, eventId, key, value, step, reason }));
  }

  async use(artifactId: string, role: string, step?: number): Promise<void> {
    await this.write('use input', (eventId) => this.core.api.runs.useInput.mutate({ runId: this.id, eventId, artifactId, role, step }));
  }

  async produce(artifactId: string, role: string, step?: number): Promise<void> {
    await this.write('produce output', (eventId) => this.core.api.runs.produceOutput.mutate({ runId: this.id, eventId, artifactId, role, step }));
  }

  async tag(tag: string): Promise<void> {
    await this.write('tag', (eventId) => this.core.api.runs.tag.mutate({ runId: this.id, eventId, tag }));
  }

  async note(text: string, author?: string): Promise<void> {
    await this.write('note', (eventId) => this.core.api.runs.note.mutate({ runId: this.id, eventId, text, author }));
  }

  /** Flushes, then marks the run completed. */
  async finish(): Promise<void> {
    await this.write('complete run', (eventId) => this.core.api.runs.complete.mutate({ runId: this.id, eventId }));
    this.ended = true;
    this.core.forget(this);
  }

  /** Flushes what it can, then marks the run failed with the reason. */
  async fail(error: unknown): Promise<void> {
    const reason = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    await this.flush().catch(() => {});
    this.failure = null;
    await this.write('fail run', (eventId) => this.core.api.runs.fail.mutate({ runId: this.id, eventId, error: reason.slice(0, MAX_ERROR) || 'failed' }));
    this.ended = true;
    this.core.forget(this);
  }

  private assertOpen() {
    if (this.ended) throw new PedigreeError(`run ${this.name} (${this.id}) has ended; start or resume a run to log more`, 'BAD_REQUEST', null);
    if (this.failure) throw this.failure;
  }

  /** One point into the buffer's columns (grown by doubling when full). */
  private bufferPoint(key: string, step: number, value: number, time: number): void {
    let b = this.buffer;
    if (this.buffered === b.steps.length) {
      const room = Math.max(INITIAL_CAPACITY, b.steps.length * 2);
      const grow = <T extends Float64Array | Uint32Array>(old: T, make: (n: number) => T) => {
        const next = make(room);
        next.set(old);
        return next;
      };
      b = this.buffer = {
        keys: b.keys,
        keyIndex: grow(b.keyIndex, (n) => new Uint32Array(n)),
        steps: grow(b.steps, (n) => new Float64Array(n)),
        values: grow(b.values, (n) => new Float64Array(n)),
        times: grow(b.times, (n) => new Float64Array(n)),
      };
    }
    let k = this.keyIds.get(key);
    if (k === undefined) {
      k = b.keys.length;
      this.keyIds.set(key, k);
      b.keys.push(key);
    }
    const i = this.buffered++;
    b.keyIndex[i] = k;
    b.steps[i] = step;
    b.values[i] = value;
    b.times[i] = time;
  }

  /** Moves the buffer into the send queue, in batches, each packed now: every attempt sends the same bytes, and the buffer is free again. */
  private drain(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    for (let from = 0; from < this.buffered; from += this.core.options.batchSize) {
      const columns = packColumns(this.buffer, from, Math.min(this.buffered, from + this.core.options.batchSize));
      const eventId = randomUUID();
      this.queue = this.queue.then(async () => {
        if (this.failure) return; // a batch was refused: keep the rest for the caller to see, send nothing out of order
        try {
          await this.core.call('log metrics', () => this.core.api.runs.logMetrics.mutate({ runId: this.id, eventId, columns, allowNonFinite: this.core.options.allowNonFinite }));
          this.pointsSent += columns.n;
        } catch (err) {
          this.failure = err as PedigreeError;
          this.core.options.onError?.(this.failure);
        }
      });
    }
    this.buffered = 0;
  }

  /** A write after everything logged before it, with one event id for all its attempts. */
  private async write<T>(what: string, fn: (eventId: string) => Promise<T>): Promise<T> {
    this.assertOpen();
    await this.flush();
    const eventId = randomUUID();
    return this.core.call(what, () => fn(eventId));
  }
}
