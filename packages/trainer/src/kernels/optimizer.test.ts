import { describe, expect, it } from 'vitest';
import { adamwRef, adamwUpdate, type AdamWConfig } from './adamw.ts';
import { clipGradients, clipScale, globalNormRef, sumOfSquares, sumOfSquaresRef } from './clip.ts';
import { residualBackwardRef, residualForward, residualForwardRef } from './residual.ts';
import { expectClose, f64, gradCheck, randn, reportMissingModes, testBackends, weightedSum } from './testing.ts';

// AdamW is elementwise (a sqrt and two divisions) on values of order 1: float32 vs float64
// differs by a few ulps; 3 steps compound it a little. atol 1e-6 / rtol 1e-5.
const ADAM_TOL = { atol: 1e-6, rtol: 1e-5 };
// The squared norm is float32 partial sums of ≈√N terms added in float64: relative error ~1e-7.
const NORM_RTOL = 1e-5;
const SIZES = [1, 5, 1000, 4099];

const { backends, missing } = await testBackends();

describe('optimizer references', () => {
  it('AdamW: the first bias-corrected step moves each parameter by ≈ lr·sign(g)', () => {
    const p = Float64Array.of(1, -2, 3);
    const g = Float64Array.of(0.5, -1e-3, 20);
    adamwRef(p, g, new Float64Array(3), new Float64Array(3), 3, 1, { lr: 0.01, eps: 1e-12 });
    expect([...p].map((x, i) => x - [1, -2, 3][i]!)).toEqual([expect.closeTo(-0.01, 9), expect.closeTo(0.01, 9), expect.closeTo(-0.01, 9)]);
  });

  it('AdamW: weight decay is decoupled (zero gradient still shrinks the weights)', () => {
    const p = Float64Array.of(2);
    adamwRef(p, Float64Array.of(0), Float64Array.of(0), Float64Array.of(0), 1, 1, { lr: 0.1, weightDecay: 0.5 });
    expect(p[0]).toBeCloseTo(2 - 0.1 * 0.5 * 2, 12);
  });

  it('clipping: scale only above maxNorm; gradScale in AdamW equals clipping the gradients first', () => {
    expect(clipScale(0.5, 1)).toBe(1);
    expect(clipScale(4, 1)).toBeCloseTo(0.25, 6);
    expect(clipScale(4, 0)).toBe(1);
    const g = f64(randn(10, 1, 5));
    const norm = globalNormRef([g]);
    const scale = clipScale(norm, 1);
    const clipped = g.map((x) => x * scale);
    expect(globalNormRef([clipped])).toBeCloseTo(1, 5);
    const [p1, p2] = [f64(randn(10, 2)), f64(randn(10, 2))];
    const cfg: AdamWConfig = { lr: 0.1, weightDecay: 0.1 };
    adamwRef(p1, g, new Float64Array(10), new Float64Array(10), 10, 1, cfg, scale);
    adamwRef(p2, clipped, new Float64Array(10), new Float64Array(10), 10, 1, cfg);
    expect([...p1]).toEqual([...p2].map((x) => expect.closeTo(x, 12)));
  });

  it('residual backward matches finite differences', () => {
    const N = 6;
    const [a, b, w] = [f64(randn(N, 1)), f64(randn(N, 2)), f64(randn(N, 3))];
    const out = new Float64Array(N);
    const [da, db] = [new Float64Array(N), new Float64Array(N)];
    residualBackwardRef(da, db, w, N);
    const loss = () => (residualForwardRef(out, a, b, N), weightedSum(out, w));
    gradCheck('residual dinp1', a, loss, da, { count: N });
    gradCheck('residual dinp2', b, loss, db, { count: N });
  });
});

describe.each(backends)('optimizer kernels on $mode', (be) => {
  it.each(SIZES)('AdamW, 3 steps with a schedule, weight decay and a clip scale, N=%i', (N) => {
    const p = f64(randn(N, 1));
    const m = new Float64Array(N);
    const v = new Float64Array(N);
    let state = { param: be.upload(Float32Array.from(p)), m: be.upload(new Float32Array(N)), v: be.upload(new Float32Array(N)) };
    for (let step = 1; step <= 3; step++) {
      const grad = randn(N, 10 + step, 3);
      const cfg: AdamWConfig = { lr: 0.01 / step, weightDecay: 0.1, beta2: 0.99 };
      adamwRef(p, f64(grad), m, v, N, step, cfg, 0.7);
      const next = adamwUpdate(be, state, grad, N, step, cfg, 0.7);
      be.release(state.param, state.m, state.v);
      state = next;
    }
    expectClose(be, 'adamw m', state.m, m, ADAM_TOL);
    expectClose(be, 'adamw v', state.v, v, ADAM_TOL);
    expectClose(be, 'adamw param', state.param, p, ADAM_TOL);
  });

  it.each(SIZES)('sum of squares, global norm and residual add, N=%i', (N) => {
    const g1 = randn(N, 1, 2);
    const g2 = randn(2 * N + 3, 2);
    expect(sumOfSquares(be, g1, N)).toBeCloseTo(sumOfSquaresRef(f64(g1), N), -Math.log10(NORM_RTOL * sumOfSquaresRef(f64(g1), N) + 1e-12));
    const ref = globalNormRef([f64(g1), f64(g2)]);
    const t1 = be.upload(g1);
    const { norm, scale } = clipGradients(be, [{ tensor: t1, size: N }, { tensor: g2, size: 2 * N + 3 }], 1);
    expect(Math.abs(norm - ref)).toBeLessThanOrEqual(NORM_RTOL * ref);
    expect(scale).toBeCloseTo(clipScale(ref, 1), 6);
    const sum = new Float64Array(N);
    residualForwardRef(sum, f64(g1), f64(g2), N);
    expectClose(be, 'residual', residualForward(be, t1, g2.subarray(0, N), N), sum, ADAM_TOL);
    be.release(t1);
  });
});

reportMissingModes(missing);
