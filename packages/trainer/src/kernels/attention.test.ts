import { describe, expect, it } from 'vitest';
import { attentionBackward, attentionBackwardRef, attentionForward, attentionForwardRef } from './attention.ts';
import { ropeBackwardRef, ropeForwardRef, ropeTable } from './rope.ts';
import { expectClose, f64, gradCheck, randn, reportMissingModes, testBackends, weightedSum } from './testing.ts';
import { assertClose } from './validate.ts';

// Dots over HS ≤ 8, softmax over T ≤ 40 and sums over T in float32, with RoPE angles from a
// float64 table: errors seen ~1e-6 on values of order 1. atol 2e-5 / rtol 1e-4 (≥ 10× margin).
const TOL = { atol: 2e-5, rtol: 1e-4 };

// [B, T, C, NH, posOffset]: T not a power of two; the last two run past a notional training
// length of 16 (T = 37, and positions 2000…2036).
const SHAPES: [number, number, number, number, number][] = [
  [1, 1, 2, 1, 0],
  [2, 7, 12, 3, 0],
  [1, 37, 16, 2, 0],
  [2, 13, 8, 2, 2000],
];

const { backends, missing } = await testBackends();

describe('RoPE reference', () => {
  it('is a rotation: its backward is its transpose, and it keeps norms', () => {
    const [B, T, NH, HS] = [1, 5, 2, 6];
    const x = f64(randn(B * T * NH * HS, 1));
    const w = f64(randn(B * T * NH * HS, 2));
    const y = new Float64Array(x.length);
    const dx = new Float64Array(x.length);
    ropeBackwardRef(dx, w, B, T, NH, HS, { posOffset: 3 });
    gradCheck('rope', x, () => (ropeForwardRef(y, x, B, T, NH, HS, { posOffset: 3 }), weightedSum(y, w)), dx, { count: x.length });
    const norm = (a: Float64Array) => Math.hypot(...a);
    ropeForwardRef(y, x, B, T, NH, HS, { posOffset: 3 });
    expect(norm(y)).toBeCloseTo(norm(x), 12);
  });

  it('table rows hold cos then sin of pos·base^(−2i/HS); base is configurable', () => {
    const tab = ropeTable(3, 4, { base: 100, posOffset: 7 });
    expect(tab[2 * 4 + 1]).toBeCloseTo(Math.cos(9 * 100 ** -0.5), 6);
    expect(tab[2 * 4 + 3]).toBeCloseTo(Math.sin(9 * 100 ** -0.5), 6);
  });
});

describe('attention reference', () => {
  it('backward matches finite differences', () => {
    const [B, T, C, NH] = [2, 4, 8, 2];
    const inp = f64(randn(B * T * 3 * C, 1, 1.5));
    const w = f64(randn(B * T * C, 2));
    const out = new Float64Array(B * T * C);
    const preatt = new Float64Array(B * NH * T * T);
    const att = new Float64Array(B * NH * T * T);
    const rope = { posOffset: 5, base: 500 };
    const loss = () => (attentionForwardRef(out, preatt, att, inp, B, T, C, NH, rope), weightedSum(out, w));
    loss();
    const dinp = new Float64Array(B * T * 3 * C);
    attentionBackwardRef(dinp, w, inp, att, B, T, C, NH, rope);
    gradCheck('attention dinp', inp, loss, dinp, { count: 48 });
  });

  it('depends only on relative positions (so any position works)', () => {
    const [B, T, C, NH] = [1, 9, 8, 2];
    const inp = f64(randn(B * T * 3 * C, 3, 2));
    const at = (posOffset: number) => {
      const out = new Float64Array(B * T * C);
      const tmp = new Float64Array(B * NH * T * T);
      attentionForwardRef(out, tmp, new Float64Array(B * NH * T * T), inp, B, T, C, NH, { posOffset });
      return out;
    };
    assertClose('offset 0 vs 100000', at(100_000), at(0), { atol: 1e-9, rtol: 1e-9 });
  });
});

describe.each(backends)('attention on $mode', (be) => {
  it.each(SHAPES)('forward and backward, B=%i T=%i C=%i NH=%i posOffset=%i', (B, T, C, NH, posOffset) => {
    const rope = { posOffset };
    const inp = randn(B * T * 3 * C, T + C, 1.5);
    const dout = randn(B * T * C, 2);
    const out = new Float64Array(B * T * C);
    const preatt = new Float64Array(B * NH * T * T);
    const att = new Float64Array(B * NH * T * T);
    attentionForwardRef(out, preatt, att, f64(inp), B, T, C, NH, rope);
    const y = attentionForward(be, inp, B, T, C, NH, rope);
    expectClose(be, 'attention out', y.out, out, TOL);
    const dinp = new Float64Array(B * T * 3 * C);
    attentionBackwardRef(dinp, f64(dout), f64(inp), att, B, T, C, NH, rope);
    expectClose(be, 'attention dinp', attentionBackward(be, dout, y.qkvr, y.att, B, T, C, NH, rope), dinp, TOL);
    expectClose(be, 'attention att', y.att, att, TOL);
    be.release(y.qkvr);
  });

  it('gives the same output at positions far beyond training (relative positions only)', () => {
    const [B, T, C, NH] = [1, 24, 8, 2];
    const inp = randn(B * T * 3 * C, 9, 1.5);
    const near = attentionForward(be, inp, B, T, C, NH, { posOffset: 0 });
    const far = attentionForward(be, inp, B, T, C, NH, { posOffset: 50_000 });
    assertClose(`${be.mode} offset 0 vs 50000`, be.read(far.out), be.read(near.out), TOL);
    be.release(near.out, near.att, near.qkvr, far.out, far.att, far.qkvr);
  });
});

reportMissingModes(missing);
