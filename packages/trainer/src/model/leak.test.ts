import { describe, expect, it } from 'vitest';
import type { ModelConfig, OptimizerConfig } from '../config.ts';
import { reportMissingModes, testBackends } from '../kernels/testing.ts';
import { Rng } from '../rng.ts';
import { parameterSpecs, TransformerModel } from './transformer.ts';

// Legend: B = batch, T = time, V = vocab.
//
// Issue 4: RSS grew over long training runs on headlessgl. Every step allocated and freed ~140
// output textures (~30 MB of texture storage through malloc); they are recycled now (backend.ts,
// TexturePool). These tests pin what a step may leave behind, in every mode: after warm-up, the
// live tensors (the parameters and both AdamW moments: nothing else survives a step), the
// compiled kernels and, on headlessgl, the texture storage allocated must not move.

const OPT: OptimizerConfig = { lr: 1e-2, decay: 'linear', warmupSteps: 0, minLr: 1e-3, weightDecay: 0.1, beta1: 0.9, beta2: 0.95, eps: 1e-8, gradClip: 1 };
const CONFIG: ModelConfig = { arch: 'transformer', vocab: 32, layers: 2, dModel: 16, heads: 2, context: 8, ropeBase: 500, seed: 7 };
const [B, T] = [2, 8];
const WARMUP = 3;
const MEASURED = 5;

function randomBatch(rng: Rng): { inputs: Int32Array; targets: Int32Array } {
  const inputs = new Int32Array(B * T); // (B,T)
  const targets = new Int32Array(B * T); // (B,T)
  for (let i = 0; i < B * T; i++) {
    inputs[i] = rng.int(CONFIG.vocab);
    targets[i] = rng.int(CONFIG.vocab);
  }
  return { inputs, targets };
}

const { backends, missing } = await testBackends();

describe('gpu.js training holds no more memory after each step (issue 4)', () => {
  for (const be of backends) {
    it(`${be.mode}: live tensors, compiled kernels and texture allocations stay flat over ${MEASURED} steps`, () => {
      const before = be.stats().liveTensors;
      const model = new TransformerModel(CONFIG, { backend: be });
      const rng = new Rng(11);
      const trainStep = (t: number) => {
        const { inputs, targets } = randomBatch(rng);
        model.forwardBackward(inputs, targets, B, T);
        model.step(OPT.lr, t, OPT);
        // evaluation and sampling share the forward: they must not leave anything either
        model.evaluate(inputs, targets, B, T);
        model.logits(inputs, B, T);
      };
      try {
        for (let t = 1; t <= WARMUP; t++) trainStep(t);
        const warm = be.stats();
        // parameter, m and v per parameter tensor; gradients are consumed by the step
        expect(warm.liveTensors - before).toBe(3 * parameterSpecs(CONFIG).length);
        for (let t = WARMUP + 1; t <= WARMUP + MEASURED; t++) trainStep(t);
        const after = be.stats();
        expect(after.liveTensors).toBe(warm.liveTensors);
        expect(after.kernels).toBe(warm.kernels);
        if (be.mode === 'headlessgl') {
          expect(after.textures).not.toBeNull();
          // every output of the measured steps rendered into a recycled texture
          expect(after.textures!.allocated).toBe(warm.textures!.allocated);
          expect(after.textures!.reused).toBeGreaterThan(warm.textures!.reused);
        } else {
          expect(after.textures).toBeNull();
        }
      } finally {
        model.destroy();
      }
      expect(be.stats().liveTensors).toBe(before);
    });
  }
  reportMissingModes(missing);
});
