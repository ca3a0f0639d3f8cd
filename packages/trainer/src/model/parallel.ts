import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';

/**
 * Data parallelism on the CPU: a worker thread that computes the forward and
 * backward of part of a batch while the caller computes the rest, so that a
 * training step uses two cores. Synchronous to the caller (the Model interface
 * is): the job goes over a message port, the caller blocks on a shared flag
 * (`Atomics.wait`, allowed on Node's main thread) and takes the answer with
 * `receiveMessageOnPort`. The worker runs `transformerLossRef` with the same
 * matmuls as the caller (parallel-worker.ts).
 *
 * Each job has an id; the worker posts its answer, with the id, and then
 * writes the id to the flag. The caller waits for its own job's id and takes
 * only its own answer. With one flag raised for every job, a worker
 * preempted between storing the flag for one job and notifying woke the
 * caller's wait for the next job with nothing on the port, and every step
 * after it took the answer of the one before (seen in a loaded CI run).
 */

export interface PartJob {
  model: WorkerModel;
  /** Which host matmuls to run: the model's own (TransformerOptions.matmul). */
  matmul: 'cpu' | 'reference';
  /** The parameters, flat per tensor in spec order (copied to the worker). */
  params: Float32Array[];
  inputs: Int32Array;
  targets: Int32Array;
  /** Each position's loss gradient (1/N over the whole batch's N counted positions, or DPO's). */
  weights: Float32Array;
  B: number;
  T: number;
}

/** A job as it goes to the worker: with its id, which the answer carries back. */
export type PartMessage = PartJob & { id: number };

export interface PartResult {
  /** Mean loss over this part's counted positions (NaN when none), and how many. */
  loss: number;
  counted: number;
  /** Gradients of this part, per tensor in spec order. */
  grads: Float32Array[];
}

export interface WorkerModel {
  vocab: number;
  dModel: number;
  heads: number;
  layers: number;
  ropeBase: number;
}

/**
 * The shared flag: the id of the last job the worker answered (parallel-worker.ts
 * writes it after posting the answer), or EXITED once the worker has stopped
 * or failed to start.
 */
const EXITED = -1;
/** How long a caller whose job the flag says is answered looks for the answer on the port (ms) before giving up. */
const ANSWER_GRACE_MS = 2000;

let shared: PartWorker | null = null;

/**
 * The process's one worker, started on first use and shared by every model (a
 * job says which model it is): it idles between steps and never keeps the
 * process alive.
 */
export function partWorker(): PartWorker {
  return (shared ??= new PartWorker());
}

export class PartWorker {
  private readonly worker: Worker;
  private readonly port: MessagePort;
  private readonly flag = new Int32Array(new SharedArrayBuffer(4));
  private busy = false;
  /** The last job's id (the first is 1; the flag starts at 0). */
  private jobId = 0;

  constructor() {
    const { port1, port2 } = new MessageChannel();
    this.port = port1;
    // The worker is TypeScript: it registers tsx's loader (a dependency of the project, which the
    // CLI runs on) before importing it. A worker that fails to start, or exits, raises the flag
    // with no answer (or an error), so the caller never blocks on it for good.
    const entry = new URL('./parallel-worker.ts', import.meta.url).href;
    const boot = `
      const { workerData } = require('node:worker_threads');
      const raise = () => { Atomics.store(workerData.flag, 0, ${EXITED}); Atomics.notify(workerData.flag, 0); };
      process.on('exit', raise);
      import(${JSON.stringify(tsxLoader())})
        .then((tsx) => { tsx.register(); return import(${JSON.stringify(entry)}); })
        .catch((err) => { workerData.port.postMessage({ error: String((err && err.stack) || err) }); raise(); });`;
    this.worker = new Worker(boot, { eval: true, workerData: { flag: this.flag, port: port2 }, transferList: [port2] });
    this.worker.unref();
  }

  /** Hands the worker its part; `wait()` for the answer before the next. */
  start(job: PartJob): void {
    if (this.busy) throw new Error('the worker is still computing the last part');
    this.busy = true;
    this.jobId = this.jobId >= 0x7fffffff ? 1 : this.jobId + 1;
    this.port.postMessage({ ...job, id: this.jobId } satisfies PartMessage);
  }

  wait(): PartResult {
    const id = this.jobId;
    this.busy = false;
    // Until the flag holds this job's id (or says the worker is gone): a wait that returns for any other
    // reason looks again.
    for (let seen = Atomics.load(this.flag, 0); seen !== id && seen !== EXITED; seen = Atomics.load(this.flag, 0)) Atomics.wait(this.flag, 0, seen);
    // The answer was posted before the flag was written; answers to earlier jobs (a caller that gave up) are dropped.
    const deadline = performance.now() + ANSWER_GRACE_MS;
    for (;;) {
      const message = receiveMessageOnPort(this.port)?.message as (PartResult & { id: number; error?: undefined }) | { id?: number; error: string } | undefined;
      // An error without an id is the worker's own (it failed to start).
      if (message?.error !== undefined && (message.id === undefined || message.id === id)) throw new Error(`the training worker failed: ${message.error}`);
      if (message?.id === id && message.error === undefined) return message;
      if (message) continue;
      if (Atomics.load(this.flag, 0) === EXITED) throw new Error('the training worker stopped without answering');
      if (performance.now() > deadline) throw new Error('the training worker answered nothing');
      Atomics.wait(this.flag, 0, Atomics.load(this.flag, 0), 5);
    }
  }

  destroy(): void {
    if (shared === this) shared = null;
    this.port.close();
    void this.worker.terminate();
  }
}


/** tsx's ESM loader API (`tsx/esm/api`, its `import` entry), as a file URL a worker can import. */
function tsxLoader(): string {
  const manifest = createRequire(import.meta.url).resolve('tsx/package.json');
  const entry = (JSON.parse(readFileSync(manifest, 'utf8')) as { exports: Record<string, { import: { default: string } }> }).exports['./esm/api']!.import.default;
  return pathToFileURL(path.join(path.dirname(manifest), entry)).href;
}
