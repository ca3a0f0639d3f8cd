import { describe, expect, it } from 'vitest';
import { parseConfig } from '../config.ts';
import { buildMix, getBatch } from '../data/data.ts';
import { Rng } from '../rng.ts';
import { BigramModel } from './reference-model.ts';

const cfg = parseConfig({
  model: { vocab: 32, dModel: 8, context: 16 },
  optimizer: { lr: 0.02, warmupSteps: 0 },
  data: { sources: [{ name: 'web', generator: 'language', weight: 1, docs: 64, params: { branching: 2 } }] },
});

describe('the reference bigram model', () => {
  it('backward matches finite differences of the loss (float64 not needed: tolerance atol + rtol·|ref|)', () => {
    const model = new BigramModel(cfg.model);
    const { inputs, targets } = getBatch(buildMix(cfg.data, 32, 'train').mix, 2, 16, new Rng(1));
    model.forwardBackward(inputs, targets, 2, 16);
    const grads = model.gradients().map((g) => Float32Array.from(g.data));
    const rng = new Rng(3);
    const eps = 1e-2;
    for (const [k, p] of model.parameters().entries()) {
      for (let n = 0; n < 12; n++) {
        // rows the batch touches have non-zero gradient for wte; elsewhere any index
        const i = p.name === 'wte' ? inputs[rng.int(inputs.length)]! * 8 + rng.int(8) : rng.int(p.data.length);
        const old = p.data[i]!;
        p.data[i] = old + eps;
        const up = model.evaluate(inputs, targets, 2, 16);
        p.data[i] = old - eps;
        const down = model.evaluate(inputs, targets, 2, 16);
        p.data[i] = old;
        const numeric = (up - down) / (2 * eps);
        const analytic = grads[k]![i]!;
        expect(Math.abs(analytic - numeric), `${p.name}[${i}] analytic ${analytic} numeric ${numeric}`).toBeLessThan(2e-4 + 2e-2 * Math.abs(numeric));
      }
    }
  });

  it('learns: AdamW steps lower the loss on the synthetic language, and clip the gradient norm', () => {
    const model = new BigramModel(cfg.model);
    const mix = buildMix(cfg.data, 32, 'train').mix;
    const rng = new Rng(2);
    const losses: number[] = [];
    for (let t = 1; t <= 60; t++) {
      const { inputs, targets } = getBatch(mix, 4, 16, rng);
      losses.push(model.forwardBackward(inputs, targets, 4, 16));
      const norm = model.step(0.02, t, cfg.optimizer);
      expect(norm).toBeGreaterThan(0);
    }
    expect(losses[0]).toBeCloseTo(Math.log(32), 0);
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    expect(mean(losses.slice(-10))).toBeLessThan(mean(losses.slice(0, 10)) - 0.5);
    for (const g of model.gradients()) expect(g.data.every((x) => x === 0)).toBe(true); // zeroed after the step
  });
});
