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

/** The shared flag: 0 while the worker computes, 1 once it has answered (parallel-worker.ts sets it). */
const IDLE = 0;

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

  constructor() {
    const { port1, port2 } = new MessageChannel();
    this.port = port1;
    // The worker is TypeScript: it registers tsx's loader (a dependency of the project, which the
    // CLI runs on) before importing it. A worker that fails to start, or exits, raises the flag
    // with no answer (or an error), so the caller never blocks on it for good.
    const entry = new URL('./parallel-worker.ts', import.meta.url).href;
    const boot = `
      const { workerData } = require('node:worker_threads');
      const raise = () => { Atomics.store(workerData.flag, 0, 1); Atomics.notify(workerData.flag, 0); };
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
    Atomics.store(this.flag, 0, IDLE);
    this.port.postMessage(job);
  }

  wait(): PartResult {
    Atomics.wait(this.flag, 0, IDLE); // returns at once when the worker is already done
    this.busy = false;
    const message = receiveMessageOnPort(this.port)?.message as (PartResult & { error?: undefined }) | { error: string } | undefined;
    if (!message) throw new Error('the training worker answered nothing');
    if (message.error !== undefined) throw new Error(`the training worker failed: ${message.error}`);
    return message;
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
