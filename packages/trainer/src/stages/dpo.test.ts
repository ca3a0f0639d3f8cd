import { describe, expect, it } from 'vitest';
import { OptimizerConfigSchema } from '../config.ts';
import { EOS } from '../data/data.ts';
import { TransformerModel } from '../model/transformer.ts';
import { Rng } from '../rng.ts';
import { dpoBackward, dpoBatch, dpoEvaluate, dpoStep, pairLogProbs, referenceLogProbs, type DpoPair, type PairLogProbs } from './dpo.ts';

// Legend: N = pairs, B = batch rows (2N), T = longest query, V = vocab.

const tinyModel = (seed = 1) => new TransformerModel({ arch: 'transformer', vocab: 32, layers: 1, dModel: 16, heads: 2, context: 16, ropeBase: 500, seed }, { mode: 'reference' });

const PAIRS: DpoPair[] = [
  { query: [7, 8, 5, 9, 6], accepted: 11, rejected: 12 },
  { query: [3], accepted: 20, rejected: 0 },
  { query: [9, 9, 5, 7, 7, 6, 10], accepted: 8, rejected: 30 },
  { query: [21, 22], accepted: 23, rejected: 24 },
];

/** θ += s·d over every parameter tensor (the model reads its parameters from these views). */
function nudge(model: TransformerModel, d: Float32Array[], s: number): void {
  model.parameters().forEach((p, i) => {
    for (let j = 0; j < p.data.length; j++) p.data[j]! += s * d[i]![j]!;
  });
}

const dot = (a: Float32Array[], b: Float32Array[]) => a.reduce((s, x, i) => s + x.reduce((t, v, j) => t + v * b[i]![j]!, 0), 0);

describe('DPO on single-token pairs', () => {
  it('lays out two rows per pair with signed weights at the query’s last position', () => {
    const z = Float64Array.from([0, 2]);
    const pairs = PAIRS.slice(0, 2);
    const { inputs, targets, weights, B, T } = dpoBatch(pairs, z, 0.5);
    expect([B, T]).toEqual([4, 5]);
    expect(Array.from(inputs.subarray(0, 5))).toEqual([7, 8, 5, 9, 6]);
    expect(Array.from(inputs.subarray(15, 20))).toEqual([3, EOS, EOS, EOS, EOS]);
    expect(Array.from(targets)).toEqual([-1, -1, -1, -1, 11, -1, -1, -1, -1, 12, 20, -1, -1, -1, -1, 0, -1, -1, -1, -1]);
    const w = (0.5 * (1 / (1 + Math.exp(2)))) / 2; // β·σ(−z)/N for the second pair
    expect(weights[4]).toBeCloseTo(0.5 * 0.5 / 2, 7); // σ(0) = ½
    expect(weights[9]).toBeCloseTo(-0.5 * 0.5 / 2, 7);
    expect(weights[10]).toBeCloseTo(w, 7);
    expect(weights[15]).toBeCloseTo(-w, 7);
    expect(weights.filter((x) => x !== 0)).toHaveLength(4);
    // the NLL term (α) adds α/N to the accepted rows only
    const rpo = dpoBatch(pairs, z, 0.5, 0.8).weights;
    expect(rpo[4]! - weights[4]!).toBeCloseTo(0.8 / 2, 7);
    expect(rpo[10]! - weights[10]!).toBeCloseTo(0.8 / 2, 7);
    expect(rpo[9]).toBe(weights[9]);
    expect(rpo[15]).toBe(weights[15]);
  });

  it.each([
    ['plain DPO', 0],
    ['with an NLL term on the accepted answer (RPO, α = 0.8)', 0.8],
  ])('its gradient matches a central difference of the loss: %s (directional, float32)', (_, nll) => {
    const model = tinyModel();
    const beta = 0.7;
    // A reference away from the policy, so that σ(−z) differs across pairs.
    const rng = new Rng(4);
    const now = pairLogProbs(model, PAIRS);
    const ref: PairLogProbs = { accepted: now.accepted.map((x) => x + 2 * rng.normal()), rejected: now.rejected.map((x) => x + 2 * rng.normal()) };
    dpoBackward(model, PAIRS, ref, beta, nll);
    const grads = model.gradients().map((g) => Float32Array.from(g.data));
    const loss = () => {
      const s = dpoEvaluate(model, PAIRS, ref, beta);
      return s.loss + nll * s.nll;
    };
    const gnorm = Math.sqrt(dot(grads, grads));
    expect(gnorm).toBeGreaterThan(1e-3);
    const random = grads.map((g) => Float32Array.from(g, () => rng.normal()));
    const rnorm = Math.sqrt(dot(random, random));
    for (const [name, d] of [
      ['gradient', grads.map((g) => g.map((x) => x / gnorm))],
      ['random', random.map((g) => g.map((x) => x / rnorm))],
    ] as const) {
      const eps = 2e-3;
      nudge(model, d, eps);
      const up = loss();
      nudge(model, d, -2 * eps);
      const down = loss();
      nudge(model, d, eps);
      const numeric = (up - down) / (2 * eps);
      const analytic = dot(grads, d);
      expect(Math.abs(numeric - analytic), `${name}: numeric ${numeric} analytic ${analytic}`).toBeLessThan(2e-4 + 5e-3 * Math.abs(analytic));
    }
  });

  it('a few dpoStep updates raise the margin and the accuracy', () => {
    const model = tinyModel(3);
    const ref = referenceLogProbs(model, PAIRS);
    const optimizer = OptimizerConfigSchema.parse({});
    const beta = 0.5;
    const before = dpoEvaluate(model, PAIRS, ref, beta);
    expect(before).toMatchObject({ loss: Math.log(2), accuracy: 0, margin: 0 }); // π = π_ref: z = 0
    expect(before.nll).toBeCloseTo(-ref.accepted.reduce((a, b) => a + b, 0) / PAIRS.length, 12);
    const stats = Array.from({ length: 8 }, (_, i) => dpoStep(model, PAIRS, ref, { beta, lr: 1e-2, t: i + 1, optimizer }));
    expect(stats[0]!.loss).toBeCloseTo(Math.log(2), 6);
    const after = dpoEvaluate(model, PAIRS, ref, beta);
    expect(after.margin).toBeGreaterThan(0.1);
    expect(after.accuracy).toBe(1);
    expect(after.loss).toBeLessThan(before.loss);
    // every pair moved the right way: π(a) up relative to π(r)
    const now = pairLogProbs(model, PAIRS);
    PAIRS.forEach((_, i) => expect(now.accepted[i]! - now.rejected[i]!).toBeGreaterThan(ref.accepted[i]! - ref.rejected[i]!));
    // the reference is what the starting model said: unchanged by the updates
    expect(referenceLogProbs(tinyModel(3), PAIRS)).toEqual(ref);
  });
});
