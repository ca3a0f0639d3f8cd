import { describe, expect, it } from 'vitest';
import { embeddingBackward, embeddingBackwardRef, embeddingForward, embeddingForwardRef, tokenGroups } from './embedding.ts';
import { expectClose, f64, gradCheck, randInts, randn, reportMissingModes, testBackends, weightedSum } from './testing.ts';

// The forward is a copy (exact); the backward sums at most B·T float32 values per element
// (≤ 120 here): errors ~1e-7, tolerance with ≥ 10× margin.
const TOL = { atol: 1e-5, rtol: 1e-5 };
// [B, T, C, V]; the last has many repeats of few tokens, the second tokens that never occur.
const SHAPES: [number, number, number, number][] = [
  [1, 1, 1, 1],
  [2, 7, 13, 50],
  [4, 30, 24, 5],
];

const { backends, missing } = await testBackends();

describe('embedding reference', () => {
  it('backward matches finite differences', () => {
    const [B, T, C, V] = [2, 5, 3, 4];
    const ids = randInts(B * T, V, 1);
    const wte = f64(randn(V * C, 2));
    const w = f64(randn(B * T * C, 3));
    const out = new Float64Array(B * T * C);
    const dwte = new Float64Array(V * C);
    embeddingBackwardRef(dwte, w, ids, B, T, C);
    gradCheck('embedding dwte', wte, () => (embeddingForwardRef(out, ids, wte, B, T, C), weightedSum(out, w)), dwte, { count: V * C });
  });

  it('groups positions by token', () => {
    const { start, order } = tokenGroups(Int32Array.from([2, 0, 2, 1, 2]), 4);
    expect([...start]).toEqual([0, 1, 2, 5, 5]);
    expect([...order]).toEqual([1, 3, 0, 2, 4]);
    expect(() => tokenGroups(Int32Array.from([4]), 4)).toThrow(/outside the vocabulary/);
  });
});

describe.each(backends)('embedding on $mode', (be) => {
  it.each(SHAPES)('forward and backward, B=%i T=%i C=%i V=%i', (B, T, C, V) => {
    const ids = randInts(B * T, V, V);
    const wte = randn(V * C, 2);
    const dout = randn(B * T * C, 3);
    const out = new Float64Array(B * T * C);
    embeddingForwardRef(out, ids, f64(wte), B, T, C);
    expectClose(be, 'embedding forward', embeddingForward(be, ids, wte, B, T, C), out, TOL);
    const dwte = new Float64Array(V * C);
    embeddingBackwardRef(dwte, f64(dout), ids, B, T, C);
    expectClose(be, 'embedding backward', embeddingBackward(be, dout, ids, B, T, C, V), dwte, TOL);
  });
});

reportMissingModes(missing);
