import { describe, expect, it } from 'vitest';
import { geluBackwardRef, geluForwardRef } from './gelu.ts';
import { matmulBackwardCpu, matmulForwardCpu } from './matmul-cpu.ts';
import { matmulBackward, matmulBackwardRef, matmulForward, matmulForwardRef } from './matmul.ts';
import { assertClose } from './validate.ts';
import { expectClose, f64, gradCheck, randn, reportMissingModes, testBackends, weightedSum } from './testing.ts';

// float32 sums of K products of numbers in [-1, 1): the rounding error grows like √K·ε·(size
// of the partial sums, ≈ √K/3), about 1e-6·K·ε-scale; with K ≤ 2100 here the worst seen is
// ~3e-6. atol 3e-5 covers results that cancel to ~0; rtol 1e-4 the large ones (10× margin).
const TOL = { atol: 3e-5, rtol: 1e-4 };

// [B, T, C, OC]: odd sizes, T not a power of two, a K (=C or B·T) that is not a multiple of 4.
// From the third on they are big enough for headlessgl's packed kernel (gemm.ts: ≥ 2^16
// multiply-adds); the last has K = B·T ≥ 512 for dweight (the 8×4 block).
const SHAPES: [number, number, number, number][] = [
  [1, 1, 1, 1],
  [2, 7, 13, 5],
  [3, 17, 64, 48],
  [2, 50, 35, 130],
  [1, 1030, 24, 17],
];

const { backends, missing } = await testBackends();

describe('matmul reference', () => {
  it('backward matches finite differences (with bias)', () => {
    const [B, T, C, OC] = [2, 3, 5, 4];
    const inp = f64(randn(B * T * C, 1));
    const weight = f64(randn(OC * C, 2));
    const bias = f64(randn(OC, 3));
    const w = f64(randn(B * T * OC, 4));
    const out = new Float64Array(B * T * OC);
    const loss = () => (matmulForwardRef(out, inp, weight, bias, B, T, C, OC), weightedSum(out, w));
    const dinp = new Float64Array(B * T * C);
    const dweight = new Float64Array(OC * C);
    const dbias = new Float64Array(OC);
    matmulBackwardRef(dinp, dweight, dbias, w, inp, weight, B, T, C, OC);
    gradCheck('matmul dinp', inp, loss, dinp, { count: B * T * C });
    gradCheck('matmul dweight', weight, loss, dweight, { count: OC * C });
    gradCheck('matmul dbias', bias, loss, dbias, { count: OC });
  });
});

describe('matmul on the CPU (matmul-cpu.ts), against the same reference', () => {
  // Every block edge: rows (B·T) odd and even, outputs (OC) not a multiple of 4, and the
  // accumulating backward starting from gradients that are not zero.
  it.each([...SHAPES, [1, 3, 8, 6] as [number, number, number, number], [2, 32, 32, 272] as [number, number, number, number]])('forward and backward, B=%i T=%i C=%i OC=%i', (B, T, C, OC) => {
    const inp = randn(B * T * C, C);
    const weight = randn(OC * C, OC);
    const bias = randn(OC, 7);
    const dout = randn(B * T * OC, 11);
    for (const b of [bias, null]) {
      const ref = new Float64Array(B * T * OC);
      matmulForwardRef(ref, f64(inp), f64(weight), b && f64(b), B, T, C, OC);
      const out = new Float32Array(B * T * OC);
      matmulForwardCpu(out, inp, weight, b, B, T, C, OC);
      assertClose(`cpu matmul forward${b ? '' : ', no bias'}`, out, ref, TOL);
    }
    const start = { dinp: randn(B * T * C, 13), dweight: randn(OC * C, 17), dbias: randn(OC, 19) };
    const ref = { dinp: f64(start.dinp), dweight: f64(start.dweight), dbias: f64(start.dbias) };
    matmulBackwardRef(ref.dinp, ref.dweight, ref.dbias, f64(dout), f64(inp), f64(weight), B, T, C, OC);
    const got = { dinp: start.dinp.slice(), dweight: start.dweight.slice(), dbias: start.dbias.slice() };
    matmulBackwardCpu(got.dinp, got.dweight, got.dbias, dout, inp, weight, B, T, C, OC);
    assertClose('cpu matmul dinp', got.dinp, ref.dinp, TOL);
    assertClose('cpu matmul dweight', got.dweight, ref.dweight, TOL);
    assertClose('cpu matmul dbias', got.dbias, ref.dbias, TOL);
    const noBias = start.dweight.slice();
    matmulBackwardCpu(start.dinp.slice(), noBias, null, dout, inp, weight, B, T, C, OC);
    assertClose('cpu matmul dweight, no bias', noBias, ref.dweight, TOL);
  });
});

describe.each(backends)('matmul on $mode', (be) => {
  it.each(SHAPES)('forward and backward, B=%i T=%i C=%i OC=%i', (B, T, C, OC) => {
    const inp = randn(B * T * C, C);
    const weight = randn(OC * C, OC);
    const bias = randn(OC, 7);
    const dout = randn(B * T * OC, 11);
    const out = new Float64Array(B * T * OC);
    matmulForwardRef(out, f64(inp), f64(weight), f64(bias), B, T, C, OC);
    expectClose(be, 'matmul forward', matmulForward(be, inp, weight, bias, B, T, C, OC), out, TOL);
    const noBias = new Float64Array(B * T * OC);
    matmulForwardRef(noBias, f64(inp), f64(weight), null, B, T, C, OC);
    expectClose(be, 'matmul forward, no bias', matmulForward(be, inp, weight, null, B, T, C, OC), noBias, TOL);

    const dinp = new Float64Array(B * T * C);
    const dweight = new Float64Array(OC * C);
    const dbias = new Float64Array(OC);
    matmulBackwardRef(dinp, dweight, dbias, f64(dout), f64(inp), f64(weight), B, T, C, OC);
    const g = matmulBackward(be, dout, inp, weight, B, T, C, OC);
    expectClose(be, 'matmul dinp', g.dinp!, dinp, TOL);
    expectClose(be, 'matmul dweight', g.dweight, dweight, TOL);
    expectClose(be, 'matmul dbias', g.dbias!, dbias, TOL);
  });

  if (be.mode === 'headlessgl') {
    it('the big shapes ran on the packed kernel, both block shapes', () => {
      const blocks = be.compiledKernels().filter((k) => k.startsWith('gemm.block:'));
      expect(blocks.some((k) => k.endsWith(':4x4'))).toBe(true);
      expect(blocks.some((k) => k.endsWith(':8x4'))).toBe(true);
    });
  }

  it.each([
    [2, 9, 24, 20],
    [2, 60, 70, 33],
  ])('fused GELU: forward epilogue and the backward epilogue through a GELU input, B=%i T=%i C=%i OC=%i', (B, T, C, OC) => {
    const inp = randn(B * T * C, 1);
    const weight = randn(OC * C, 2);
    const bias = randn(OC, 3);
    const pre = new Float64Array(B * T * OC);
    matmulForwardRef(pre, f64(inp), f64(weight), f64(bias), B, T, C, OC);
    const act = new Float64Array(B * T * OC);
    geluForwardRef(act, pre, B * T * OC);
    expectClose(be, 'matmul+gelu forward', matmulForward(be, inp, weight, bias, B, T, C, OC, { gelu: true }), act, TOL);

    // The projection after the GELU: y = gelu(h)·w2ᵀ; with inputGeluOf: h its backward returns dh.
    const h = randn(B * T * C, 4, 3);
    const gh = new Float64Array(B * T * C);
    geluForwardRef(gh, f64(h), B * T * C);
    const dout = randn(B * T * OC, 5);
    const dgh = new Float64Array(B * T * C);
    matmulBackwardRef(dgh, new Float64Array(OC * C), null, f64(dout), gh, f64(weight), B, T, C, OC);
    const dh = new Float64Array(B * T * C);
    geluBackwardRef(dh, f64(h), dgh, B * T * C);
    const g = matmulBackward(be, dout, Float32Array.from(gh), weight, B, T, C, OC, { bias: false, inputGeluOf: h });
    expectClose(be, 'matmul backward through gelu', g.dinp!, dh, TOL);
    be.release(g.dweight);
  });
});

reportMissingModes(missing);
