import { describe, it } from 'vitest';
import { layernormBackward, layernormBackwardRef, layernormForward, layernormForwardRef } from './layernorm.ts';
import { expectClose, f64, gradCheck, randn, reportMissingModes, testBackends, weightedSum } from './testing.ts';

// Row reductions over C (≤ 160 here) and sums over B·T (≤ 150) in float32, then a
// normalisation that amplifies input error by rstd (inputs have std ≈ 1.7, so rstd ≈ 0.6):
// errors seen ~1e-6. atol 2e-5 / rtol 1e-4 keeps a 10× margin.
const TOL = { atol: 2e-5, rtol: 1e-4 };
const SHAPES: [number, number, number][] = [
  [1, 1, 3],
  [2, 7, 13],
  [3, 50, 160],
];

const { backends, missing } = await testBackends();

function inputs(B: number, T: number, C: number) {
  const inp = randn(B * T * C, C, 3);
  for (let i = 0; i < inp.length; i++) inp[i]! += 0.5; // a nonzero mean
  return { inp, weight: randn(C, 2), bias: randn(C, 3), dout: randn(B * T * C, 4) };
}

describe('layernorm reference', () => {
  it('backward matches finite differences', () => {
    const [B, T, C] = [2, 3, 6];
    const x = inputs(B, T, C);
    const inp = f64(x.inp);
    const weight = f64(x.weight);
    const bias = f64(x.bias);
    const w = f64(x.dout);
    const out = new Float64Array(B * T * C);
    const mean = new Float64Array(B * T);
    const rstd = new Float64Array(B * T);
    const loss = () => (layernormForwardRef(out, mean, rstd, inp, weight, bias, B, T, C), weightedSum(out, w));
    loss();
    const dinp = new Float64Array(B * T * C);
    const dweight = new Float64Array(C);
    const dbias = new Float64Array(C);
    layernormBackwardRef(dinp, dweight, dbias, w, inp, weight, mean, rstd, B, T, C);
    gradCheck('layernorm dinp', inp, loss, dinp, { count: B * T * C });
    gradCheck('layernorm dweight', weight, loss, dweight, { count: C });
    gradCheck('layernorm dbias', bias, loss, dbias, { count: C });
  });
});

describe.each(backends)('layernorm on $mode', (be) => {
  it.each(SHAPES)('forward and backward, B=%i T=%i C=%i', (B, T, C) => {
    const x = inputs(B, T, C);
    const out = new Float64Array(B * T * C);
    const mean = new Float64Array(B * T);
    const rstd = new Float64Array(B * T);
    layernormForwardRef(out, mean, rstd, f64(x.inp), f64(x.weight), f64(x.bias), B, T, C);
    const y = layernormForward(be, x.inp, x.weight, x.bias, B, T, C);
    expectClose(be, 'layernorm out', y.out, out, TOL);
    const dinp = new Float64Array(B * T * C);
    const dweight = new Float64Array(C);
    const dbias = new Float64Array(C);
    layernormBackwardRef(dinp, dweight, dbias, f64(x.dout), f64(x.inp), f64(x.weight), mean, rstd, B, T, C);
    const g = layernormBackward(be, x.dout, x.inp, x.weight, y.mean, y.rstd, B, T, C);
    expectClose(be, 'layernorm mean', y.mean, mean, TOL);
    expectClose(be, 'layernorm rstd', y.rstd, rstd, TOL);
    expectClose(be, 'layernorm dinp', g.dinp, dinp, TOL);
    expectClose(be, 'layernorm dweight', g.dweight, dweight, TOL);
    expectClose(be, 'layernorm dbias', g.dbias, dbias, TOL);
  });
});

reportMissingModes(missing);
