import { describe, expect, it } from 'vitest';
import type { ModelConfig, OptimizerConfig } from '../config.ts';
import { randn } from '../kernels/testing.ts';
import { assertClose } from '../kernels/validate.ts';
import { PartWorker, type PartJob } from './parallel.ts';
import { TransformerModel } from './transformer.ts';

/**
 * The reference mode on two threads (parallel.ts) against one: the same losses
 * and gradients up to the rounding of their sum, step after step, for even and
 * odd batches, ignored positions, DPO-style signed per-position weights, and a
 * batch of one row (not split). Tried: handing the worker a wrong half, or
 * leaving its gradients out, fails here.
 */
const OPT: OptimizerConfig = { lr: 1e-2, decay: 'linear', warmupSteps: 0, minLr: 1e-3, weightDecay: 0.1, beta1: 0.9, beta2: 0.95, eps: 1e-8, gradClip: 1 };
const config: ModelConfig = { arch: 'transformer', vocab: 40, layers: 2, dModel: 16, heads: 2, context: 12, ropeBase: 500, seed: 3 };
const TOL = { atol: 1e-6, rtol: 1e-4 };

function batch(B: number, T: number, seed: number): { inputs: Int32Array; targets: Int32Array } {
  const r = randn(2 * B * T, seed);
  const inputs = Int32Array.from({ length: B * T }, (_, i) => Math.floor((r[i]! + 1) * 20) % 40);
  // every seventh position ignored (−1), as prompts are in SFT
  const targets = Int32Array.from({ length: B * T }, (_, i) => (i % 7 === 3 ? -1 : Math.floor((r[B * T + i]! + 1) * 20) % 40));
  return { inputs, targets };
}

describe('reference mode on two threads', () => {
  it.each([
    [4, 'even batch'],
    [5, 'odd batch'],
    [1, 'one row'],
  ] as const)('matches one thread step after step (%i rows: %s)', (B, _shape) => {
    const one = new TransformerModel(config, { mode: 'reference', threads: 1 });
    const two = new TransformerModel(config, { mode: 'reference', threads: 2 });
    expect(two.backend).toBe('reference (TypeScript, 2 threads)');
    const T = config.context;
    for (let step = 1; step <= 4; step++) {
      const { inputs, targets } = batch(B, T, step);
      // Steps 3 and 4 with signed per-position weights (DPO's), the others with the default mean.
      const weights = step >= 3 ? Float32Array.from(randn(B * T, 100 + step), (w, i) => (targets[i]! >= 0 ? w / (B * T) : 0)) : undefined;
      const l1 = one.forwardBackward(inputs, targets, B, T, weights);
      const l2 = two.forwardBackward(inputs, targets, B, T, weights);
      expect(l2).toBeCloseTo(l1, 5);
      const g1 = one.gradients();
      two.gradients().forEach((g, i) => assertClose(`step ${step} gradient ${g.name}`, g.data, g1[i]!.data, TOL));
      one.step(OPT.lr, step, OPT);
      two.step(OPT.lr, step, OPT);
    }
    one.parameters().forEach((p, i) => assertClose(`parameter ${p.name} after 4 steps`, two.parameters()[i]!.data, p.data, { atol: 1e-5, rtol: 1e-4 }));
  });
});

describe('the worker protocol', () => {
  /** A job for `rows` rows of `batch(rows, T, seed)`, with the model's parameters. */
  function job(model: TransformerModel, rows: number, seed: number): PartJob {
    const T = config.context;
    const { inputs, targets } = batch(rows, T, seed);
    const counted = targets.reduce((n, t) => n + (t >= 0 ? 1 : 0), 0);
    return {
      model: { vocab: config.vocab, dModel: config.dModel, heads: config.heads, layers: config.layers, ropeBase: config.ropeBase },
      matmul: 'reference',
      params: model.parameters().map((p) => p.data),
      inputs,
      targets,
      weights: Float32Array.from(targets, (t) => (t >= 0 ? 1 / counted : 0)),
      B: rows,
      T,
    };
  }

  it('gives each job its own answer: one whose caller gave up is dropped, a failed one is named, and the next still answers', () => {
    const model = new TransformerModel(config, { mode: 'reference', threads: 1 });
    const worker = new PartWorker();
    try {
      const [a, b] = [job(model, 2, 11), job(model, 3, 12)];
      worker.start(a);
      const lossA = worker.wait().loss;
      worker.start(b);
      const lossB = worker.wait().loss;
      expect(lossA).not.toBe(lossB);
      // A caller that starts a job and never waits for it (as one whose wait threw does): the next
      // caller must get its own job's answer, not the stale one (with one flag for every job it did).
      worker.start(a);
      (worker as unknown as { busy: boolean }).busy = false;
      worker.start(b);
      expect(worker.wait().loss).toBe(lossB);
      // A job the worker cannot run is named as failed; the one after it is answered.
      worker.start({ ...a, params: a.params.slice(0, 1) });
      expect(() => worker.wait()).toThrow(/the training worker failed/);
      worker.start(a);
      expect(worker.wait().loss).toBe(lossA);
    } finally {
      worker.destroy();
    }
  });

  it('a wake that is not its own job\'s answer does not end a wait', async () => {
    // The race CI met: the worker stores its flag for one job and is preempted before it notifies; the
    // caller takes that answer, starts the next job and waits, and the late notify wakes it with nothing
    // on the port. Here a second thread notifies the flag over and over while the worker computes.
    const model = new TransformerModel(config, { mode: 'reference', threads: 1 });
    const worker = new PartWorker();
    const big = job(model, 24, 13);
    try {
      worker.start(big);
      const loss = worker.wait().loss;
      const flag = (worker as unknown as { flag: Int32Array }).flag;
      const { Worker } = await import('node:worker_threads');
      const nagger = new Worker(
        `const { workerData } = require('node:worker_threads');
         const nap = new Int32Array(new SharedArrayBuffer(4));
         const until = Date.now() + 400;
         while (Date.now() < until) { Atomics.notify(workerData.flag, 0); Atomics.wait(nap, 0, 0, 0.2); }`,
        { eval: true, workerData: { flag } },
      );
      await new Promise((r) => setTimeout(r, 30)); // the nagger is running
      for (let i = 0; i < 5; i++) {
        worker.start(big);
        expect(worker.wait().loss).toBe(loss);
      }
      await nagger.terminate();
    } finally {
      worker.destroy();
    }
  });
});
