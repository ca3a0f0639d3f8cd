import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { ModelConfig, OptimizerConfig } from '../config.ts';
import { randn, reportMissingModes, testBackends } from '../kernels/testing.ts';
import { assertClose, compareArrays } from '../kernels/validate.ts';
import { copyInto, loadCheckpoint, saveCheckpoint } from './checkpoint.ts';
import { buildParams, parameterSpecs, TransformerModel, transformerLossRef } from './transformer.ts';

// Legend: B = batch, T = time, C = channels, V = vocab, NH = heads.

const OPT: OptimizerConfig = { lr: 1e-2, decay: 'linear', warmupSteps: 0, minLr: 1e-3, weightDecay: 0.1, beta1: 0.9, beta2: 0.95, eps: 1e-8, gradClip: 1 };
const config = (over: Partial<ModelConfig> = {}): ModelConfig => ({ arch: 'transformer', vocab: 32, layers: 2, dModel: 16, heads: 2, context: 8, ropeBase: 500, seed: 7, ...over });

/** A repetitive language: each row counts up mod `period` from a random start; the target is the next token. */
function countingBatch(B: number, T: number, period: number, seed: number): { inputs: Int32Array; targets: Int32Array } {
  const starts = randn(B, seed);
  const inputs = new Int32Array(B * T); // (B,T)
  const targets = new Int32Array(B * T); // (B,T)
  for (let b = 0; b < B; b++) {
    const s = Math.floor((starts[b]! + 1) * period * 4);
    for (let t = 0; t < T; t++) {
      inputs[b * T + t] = (s + t) % period;
      targets[b * T + t] = (s + t + 1) % period;
    }
  }
  return { inputs, targets };
}

const { backends, missing } = await testBackends();

describe('transformer, reference path', () => {
  it('gradient of the whole loss w.r.t. every parameter tensor matches central differences (float64)', () => {
    // Tiny, with random (not init) weights so that biases and layernorm gains are non-trivial,
    // and one ignored target (−1).
    const cfg = config({ vocab: 11, dModel: 8, heads: 2, layers: 2 });
    const [B, T] = [2, 5];
    const dims = { B, T, C: cfg.dModel, V: cfg.vocab, NH: cfg.heads, rope: { base: cfg.ropeBase } };
    const specs = parameterSpecs(cfg);
    const params = buildParams(specs, cfg.layers, (s, i) => Float64Array.from(randn(s.shape.reduce((a, b) => a * b, 1), 100 + i, 0.5)));
    const grads = buildParams(specs, cfg.layers, (s) => new Float64Array(s.shape.reduce((a, b) => a * b, 1)));
    const inputs = Int32Array.from([1, 4, 7, 10, 2, 0, 3, 3, 9, 5]);
    const targets = Int32Array.from([4, 7, 10, 2, -1, 3, 3, 9, 5, 8]);
    const alloc = (n: number) => new Float64Array(n);
    transformerLossRef(params, inputs, targets, dims, alloc, grads);
    const loss = () => transformerLossRef(params, inputs, targets, dims, alloc).loss;

    // Central differences, h = 1e-5: truncation ~h²·L''' ≈ 1e-10, rounding ~1e-16/h ≈ 1e-11.
    // Seen over ALL coordinates: worst |analytic − numeric| ≈ 7e-11, gradients up to ~0.17.
    const h = 1e-5;
    const tol = { atol: 1e-8, rtol: 1e-6 };
    let checked = 0;
    for (const s of specs) {
      const x = s.get(params);
      const g = s.get(grads);
      const picks = [0, Math.floor(x.length / 3), Math.floor((2 * x.length) / 3), x.length - 1];
      const numeric: number[] = [];
      const exact: number[] = [];
      for (const i of new Set(picks)) {
        const x0 = x[i]!;
        x[i] = x0 + h;
        const lp = loss();
        x[i] = x0 - h;
        const lm = loss();
        x[i] = x0;
        numeric.push((lp - lm) / (2 * h));
        exact.push(g[i]!);
        checked++;
      }
      assertClose(`d loss / d ${s.name}`, exact, numeric, tol);
      expect(exact.some((v) => v !== 0), `${s.name} gets a gradient`).toBe(true);
    }
    expect(checked).toBeGreaterThan(4 * 20);
  });

  it('initialises GPT-2 style, deterministically from the seed; the LM head is tied to wte', () => {
    const a = new TransformerModel(config(), { mode: 'reference' });
    const b = new TransformerModel(config(), { mode: 'reference' });
    const c = new TransformerModel(config({ seed: 8 }), { mode: 'reference' });
    const pa = a.parameters();
    expect(pa.map((p) => p.name)).toEqual(b.parameters().map((p) => p.name));
    expect(pa.every((p, i) => p.data.every((x, j) => x === b.parameters()[i]!.data[j]))).toBe(true);
    expect(pa[0]!.data.some((x, j) => x !== c.parameters()[0]!.data[j])).toBe(true);
    expect(pa.some((p) => p.name.includes('lm'))).toBe(false); // tied: no separate head
    const std = (name: string) => {
      const d = pa.find((p) => p.name === name)!.data;
      return Math.sqrt(d.reduce((s, x) => s + x * x, 0) / d.length);
    };
    expect(std('h0.fcw')).toBeCloseTo(0.02, 2);
    expect(std('h1.fcprojw')).toBeCloseTo(0.02 / Math.sqrt(2 * 2), 2);
    expect(pa.find((p) => p.name === 'h0.ln1w')!.data.every((x) => x === 1)).toBe(true);
    expect(pa.find((p) => p.name === 'h0.qkvb')!.data.every((x) => x === 0)).toBe(true);
  });

  it('learns a repetitive sequence: loss falls well below ln V within 40 steps', () => {
    const m = new TransformerModel(config(), { mode: 'reference' });
    const [B, T] = [4, 8];
    const losses: number[] = [];
    for (let step = 1; step <= 40; step++) {
      const { inputs, targets } = countingBatch(B, T, 10, step);
      losses.push(m.forwardBackward(inputs, targets, B, T));
      m.step(1e-2, step, OPT);
    }
    expect(losses[0]).toBeGreaterThan(Math.log(32) - 0.2);
    expect(losses.at(-1)!).toBeLessThan(0.5 * losses[0]!);
  });
});

describe('transformer, gpu.js path against the reference', () => {
  reportMissingModes(missing);
  const [B, T] = [2, 8];
  const { inputs, targets } = countingBatch(B, T, 13, 3);

  for (const be of backends) {
    it(`${be.mode}: loss, every gradient, and the parameters after a step match the reference`, () => {
      const ref = new TransformerModel(config(), { mode: 'reference' });
      const gpu = new TransformerModel(config(), { backend: be });
      expect(gpu.backend).toBe(`gpu.js ${be.mode}`);
      const lr = ref.forwardBackward(inputs, targets, B, T);
      const lg = gpu.forwardBackward(inputs, targets, B, T);
      // float32 both ways, different summation orders: seen |Δloss| ≲ 1e-7, gradient errors
      // ≲ 1.2e-7 absolute on values up to ~0.6 (all three modes). Tolerances ≥ 8× that.
      expect(Math.abs(lg - lr)).toBeLessThan(1e-5);
      const gRef = ref.gradients();
      gpu.gradients().forEach((g, i) => assertClose(`${be.mode} d${g.name}`, g.data, gRef[i]!.data, { atol: 1e-6, rtol: 1e-3 }));
      const nr = ref.step(1e-2, 1, OPT);
      const ng = gpu.step(1e-2, 1, OPT);
      expect(Math.abs(ng - nr) / nr).toBeLessThan(1e-4);
      gpu.syncToHost();
      // After one AdamW step each weight moves by ≈ lr; sign flips of tiny gradients can differ.
      const pRef = ref.parameters();
      gpu.parameters().forEach((p, i) => {
        const m = compareArrays(p.data, pRef[i]!.data, { atol: 1e-5, rtol: 1e-4 });
        expect(m.bad, `${be.mode} ${p.name} after a step: worst ${JSON.stringify(m.worst)}`).toBeLessThanOrEqual(Math.ceil(p.data.length * 0.01));
        expect(m.maxAbsErr).toBeLessThan(2.5e-2);
      });
      expect(Math.abs(gpu.evaluate(inputs, targets, B, T) - ref.evaluate(inputs, targets, B, T))).toBeLessThan(1e-4);
      gpu.destroy();
    });
  }
});

describe('RoPE: positions beyond the training context', () => {
  const models = () => [new TransformerModel(config(), { mode: 'reference' }), ...backends.map((be) => new TransformerModel(config(), { backend: be }))];
  it('give finite logits at 3× the context, and the first `context` positions do not change (causal)', () => {
    const ctx = config().context;
    const [B, T] = [1, 3 * ctx];
    const { inputs } = countingBatch(B, T, 17, 5);
    for (const m of models()) {
      const long = m.logits(inputs, B, T); // (B,T,V)
      expect(long.every(Number.isFinite), m.backend).toBe(true);
      const short = m.logits(inputs.subarray(0, ctx), 1, ctx); // (1,ctx,V)
      assertClose(`${m.backend} causal prefix`, long.subarray(0, short.length), short, { atol: 1e-5, rtol: 1e-4 });
      (m as TransformerModel).destroy();
    }
  });
});

describe('checkpoints', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pedigree-tx-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const modes = [{ mode: 'reference' as const }, ...backends.map((be) => ({ backend: be }))];

  for (const opts of modes) {
    it(`${'mode' in opts ? opts.mode : opts.backend.mode}: weights and AdamW state round-trip through save/load and give the same loss and the same next step`, async () => {
      const [B, T] = [2, 8];
      const a = new TransformerModel(config(), opts);
      for (let step = 1; step <= 3; step++) {
        const { inputs, targets } = countingBatch(B, T, 10, step);
        a.forwardBackward(inputs, targets, B, T);
        a.step(1e-2, step, OPT);
      }
      a.syncToHost();
      const saved = await saveCheckpoint(dir, [...a.parameters(), ...a.optimizerState()], { step: '3' });
      const loaded = await loadCheckpoint(saved.path);
      const b = new TransformerModel(config({ seed: 99 }), opts); // different init: everything must come from the file
      copyInto(b.parameters(), loaded.tensors, 'checkpoint');
      copyInto(b.optimizerState(), loaded.tensors, 'checkpoint');
      b.syncFromHost();
      const { inputs, targets } = countingBatch(B, T, 10, 4);
      expect(b.evaluate(inputs, targets, B, T)).toBe(a.evaluate(inputs, targets, B, T));
      expect(b.forwardBackward(inputs, targets, B, T)).toBe(a.forwardBackward(inputs, targets, B, T));
      expect(b.step(1e-2, 4, OPT)).toBe(a.step(1e-2, 4, OPT));
      const next = countingBatch(B, T, 10, 5);
      expect(b.evaluate(next.inputs, next.targets, B, T)).toBe(a.evaluate(next.inputs, next.targets, B, T));
      a.destroy();
      b.destroy();
    });
  }
});
