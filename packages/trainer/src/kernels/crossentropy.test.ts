import { describe, expect, it } from 'vitest';
import { crossEntropyBackward, crossEntropyBackwardRef, crossEntropyForward, crossEntropyForwardRef, meanLoss } from './crossentropy.ts';
import { expectClose, f64, gradCheck, randInts, randn, reportMissingModes, testBackends } from './testing.ts';

// exp/log in float32 on logits up to ±8 and sums over V ≤ 517: errors seen ~1e-6 on losses
// of ~5; probs are ≤ 1. atol 1e-5 / rtol 1e-4 leaves ≥ 10×.
const TOL = { atol: 1e-5, rtol: 1e-4 };
// [B, T, V]: V odd and not a power of two; the last includes ignored (-1) targets.
const SHAPES: [number, number, number][] = [
  [1, 1, 2],
  [2, 7, 13],
  [3, 11, 517],
];

const { backends, missing } = await testBackends();

function inputs(B: number, T: number, V: number) {
  const targets = randInts(B * T, V, V);
  if (B * T > 4) targets[3] = -1;
  return { logits: randn(B * T * V, V, 8), targets, dlosses: randn(B * T, 5) };
}

describe('cross-entropy reference', () => {
  it('backward matches finite differences, with an ignored position', () => {
    const [B, T, V] = [2, 3, 5];
    const x = inputs(B, T, V);
    const logits = f64(x.logits);
    const w = f64(x.dlosses);
    const losses = new Float64Array(B * T);
    const probs = new Float64Array(B * T * V);
    const loss = () => {
      crossEntropyForwardRef(losses, probs, logits, x.targets, B, T, V);
      return losses.reduce((s, l, i) => s + l * w[i]!, 0);
    };
    loss();
    const dlogits = new Float64Array(B * T * V);
    crossEntropyBackwardRef(dlogits, w, probs, x.targets, B, T, V);
    gradCheck('cross-entropy dlogits', logits, loss, dlogits, { count: B * T * V });
  });

  it('softmax of equal logits is uniform; the mean skips ignored positions', () => {
    const losses = new Float64Array(2);
    const probs = new Float64Array(8);
    crossEntropyForwardRef(losses, probs, new Float64Array(8).fill(3), Int32Array.from([1, -1]), 1, 2, 4);
    for (const p of probs) expect(p).toBeCloseTo(0.25, 15);
    expect(losses[0]).toBeCloseTo(Math.log(4), 12);
    expect(meanLoss(losses, Int32Array.from([1, -1]))).toBeCloseTo(Math.log(4), 12);
  });
});

describe.each(backends)('cross-entropy on $mode', (be) => {
  it.each(SHAPES)('forward and backward, B=%i T=%i V=%i', (B, T, V) => {
    const x = inputs(B, T, V);
    const losses = new Float64Array(B * T);
    const probs = new Float64Array(B * T * V);
    crossEntropyForwardRef(losses, probs, f64(x.logits), x.targets, B, T, V);
    const y = crossEntropyForward(be, x.logits, x.targets, B, T, V);
    const dlogits = new Float64Array(B * T * V);
    crossEntropyBackwardRef(dlogits, f64(x.dlosses), probs, x.targets, B, T, V);
    expectClose(be, 'cross-entropy dlogits', crossEntropyBackward(be, y.probs, x.targets, x.dlosses, B, T, V), dlogits, TOL);
    const uniform = new Float64Array(B * T * V);
    crossEntropyBackwardRef(uniform, 1 / (B * T), probs, x.targets, B, T, V);
    expectClose(be, 'cross-entropy dlogits (mean)', crossEntropyBackward(be, y.probs, x.targets, 1 / (B * T), B, T, V), uniform, TOL);
    expectClose(be, 'cross-entropy losses', y.losses, losses, TOL);
    expectClose(be, 'cross-entropy probs', y.probs, probs, TOL);
  });
});

reportMissingModes(missing);
