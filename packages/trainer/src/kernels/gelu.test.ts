import { describe, it } from 'vitest';
import { geluBackward, geluBackwardRef, geluForward, geluForwardRef } from './gelu.ts';
import { expectClose, f64, gradCheck, randn, reportMissingModes, testBackends, weightedSum } from './testing.ts';

// Elementwise: float32 kernels vs the float64 reference differ by a few ulps of the result
// plus the GLSL exp's own error (llvmpipe's exp is good to ~1e-6 relative).
const TOL = { atol: 1e-6, rtol: 1e-5 };
const SIZES = [1, 7, 1000, 4097];

const { backends, missing } = await testBackends();

describe('gelu reference', () => {
  it('backward matches finite differences', () => {
    const N = 64;
    const x = f64(randn(N, 1, 4));
    const w = f64(randn(N, 2));
    const y = new Float64Array(N);
    const dx = new Float64Array(N);
    geluBackwardRef(dx, x, w, N);
    gradCheck('gelu', x, () => (geluForwardRef(y, x, N), weightedSum(y, w)), dx, { count: N });
  });
});

describe.each(backends)('gelu on $mode', (be) => {
  it.each(SIZES)('forward and backward, N=%i', (N) => {
    const x = randn(N, N, 6); // wide enough to reach both tails, where a naive tanh gives NaN
    x[0] = 60;
    if (N > 1) x[1] = -60;
    const dout = randn(N, N + 1);
    const y = new Float64Array(N);
    geluForwardRef(y, f64(x), N);
    expectClose(be, 'gelu forward', geluForward(be, x, N), y, TOL);
    const dx = new Float64Array(N);
    geluBackwardRef(dx, f64(x), f64(dout), N);
    expectClose(be, 'gelu backward', geluBackward(be, x, dout, N), dx, TOL);
  });
});

reportMissingModes(missing);
