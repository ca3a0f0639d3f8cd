import { describe, expect, it } from 'vitest';
import { checkArithmetic, DIGIT0, EOS, EQUALS, PLUS } from '../data/data.ts';
import { sampleCompletions, type LogitsModel } from '../model/sampling.ts';
import { TransformerModel } from '../model/transformer.ts';
import { Rng } from '../rng.ts';
import { keepQuestion, memoizeOracle, modelCandidates, pivotalTokenSearch, ptsPairs, samplingOracle, subdivide, type SuccessOracle } from './pts.ts';

// Legend: B = batch, T = time, V = vocab; p(k) = p(solution[:k]).

// Planted tokens (ids ≥ 20 are filler with Δp = 0). Deltas are multiples of 1/16 so sums are exact.
const R = 40; // raises p by 0.25
const R2 = 41; // raises p by 0.5
const L = 42; // lowers p by 0.25
const S = 43; // raises p by 0.125: under p_gap 0.2
const DELTA: Record<number, number> = { [R]: 0.25, [R2]: 0.5, [L]: -0.25, [S]: 0.125 };

/**
 * An oracle with exact success probabilities: the question's first token /16 is the base p, each
 * planted token in the prefix adds its Δ. Records every (question, prefix) it is asked.
 */
function plantedOracle(): SuccessOracle & { asked: string[] } {
  const asked: string[] = [];
  return {
    asked,
    p(question, prefix) {
      asked.push(`${question.join(',')}|${prefix.join(',')}`);
      return question[0]! / 16 + prefix.reduce((s, t) => s + (DELTA[t] ?? 0), 0);
    },
  };
}

/** Filler of length n (tokens 20, 21, 22, … cycling; none planted). */
const filler = (n: number) => Array.from({ length: n }, (_, i) => 20 + (i % 7));
/** `n` filler tokens with planted tokens at the given indices. */
function solutionWith(n: number, planted: Record<number, number>): number[] {
  const s = filler(n);
  for (const [i, t] of Object.entries(planted)) s[Number(i)] = t;
  return s;
}
/** Indices whose own Δp is at least pGap: what an ideal search finds. */
const bruteForce = (solution: number[], pGap: number) => solution.flatMap((t, i) => (Math.abs(DELTA[t] ?? 0) >= pGap ? [i] : []));

describe('pivotal token search on an oracle with known probabilities', () => {
  const cases: { name: string; base: number; n: number; planted: Record<number, number> }[] = [
    { name: 'length 1, pivotal', base: 8, n: 1, planted: { 0: R2 } },
    { name: 'length 1, not pivotal', base: 8, n: 1, planted: {} },
    { name: 'length 2, the second token', base: 8, n: 2, planted: { 1: L } },
    { name: 'odd length 7, a lowering and a raising token', base: 8, n: 7, planted: { 1: L, 5: R2 } },
    { name: 'long (40), four planted with one lowering, and sub-gap tokens', base: 2, n: 40, planted: { 5: R, 9: S, 22: R, 30: L, 37: R2 } },
    { name: 'long (33), pivotal at both ends', base: 6, n: 33, planted: { 0: R, 32: R } },
  ];
  for (const c of cases) {
    it(`finds exactly the planted pivotal tokens: ${c.name}`, () => {
      const oracle = plantedOracle();
      const question = [c.base, PLUS];
      const solution = solutionWith(c.n, c.planted);
      const got = pivotalTokenSearch(oracle, question, solution);
      const want = bruteForce(solution, 0.2);
      expect(got.pivotal.map((pt) => pt.prefix.length)).toEqual(want);
      let p = c.base / 16;
      for (let i = 0, k = 0; i < solution.length; i++) {
        const before = p;
        p += DELTA[solution[i]!] ?? 0;
        if (!want.includes(i)) continue;
        expect(got.pivotal[k++]).toEqual({ prefix: solution.slice(0, i), token: solution[i], pBefore: before, pAfter: p });
      }
      expect(got.pSuccess).toBe(c.base / 16);
      // memoized: no prefix is asked twice, and the count is the oracle's
      expect(new Set(oracle.asked).size).toBe(oracle.asked.length);
      expect(got.oracleCalls).toBe(oracle.asked.length);
    });
  }

  it('asks far fewer prefixes than there are tokens on a long solution', () => {
    const oracle = plantedOracle();
    const solution = solutionWith(64, { 40: R2 });
    const got = pivotalTokenSearch(oracle, [4], solution);
    expect(got.pivotal.map((pt) => pt.token)).toEqual([R2]);
    expect(got.oracleCalls).toBeLessThanOrEqual(2 + 2 * Math.log2(64)); // a binary search's path
  });

  it('respects p_gap: |Δp| ≥ p_gap is pivotal, smaller is not', () => {
    const solution = solutionWith(9, { 2: S, 6: R });
    const at = (pGap: number) => pivotalTokenSearch(plantedOracle(), [8], solution, { pGap }).pivotal.map((pt) => pt.token);
    expect(at(0.2)).toEqual([R]); // S's 0.125 is under the default gap
    expect(at(0.1)).toEqual([S, R]);
    expect(at(0.125)).toEqual([S, R]); // the gap itself counts
    expect(at(0.25)).toEqual([R]);
    expect(at(0.3)).toEqual([]);
  });

  it('does not descend into a piece whose raise and fall cancel (the algorithm as stated)', () => {
    const solution = solutionWith(8, { 1: R, 2: L });
    expect(pivotalTokenSearch(plantedOracle(), [8], solution).pivotal).toEqual([]);
    // subdivide keeps the whole solution as one piece: p(0) = p(8)
    expect(subdivide(() => 0.5, 0, 8, 0.2)).toEqual([{ start: 0, end: 8 }]);
  });

  it('memoizeOracle answers repeats from its cache', () => {
    const inner = plantedOracle();
    const memo = memoizeOracle(inner);
    memo.p([8], [R]);
    memo.p([8], [R]);
    memo.p([8], []);
    expect([memo.calls, memo.lookups, inner.asked.length]).toEqual([2, 3, 2]);
  });
});

describe('question filter and DPO pairs', () => {
  it('keeps questions with 0.2 ≤ p(success) ≤ 0.8, configurable', () => {
    expect([0.19, 0.2, 0.5, 0.8, 0.81].map((p) => keepQuestion(p))).toEqual([false, true, true, true, false]);
    expect([0.2, 0.25, 0.75, 0.8].map((p) => keepQuestion(p, { minP: 0.25, maxP: 0.75 }))).toEqual([false, true, true, false]);
  });

  it('pairs each pivotal token with an alternative moving p the other way, and counts', () => {
    // bases 1/16 and 15/16 fail the filter; 4/16 and 8/16 pass.
    const problems = [1, 4, 8, 15].map((base) => ({ question: [base, PLUS], solution: solutionWith(7, { 1: L, 5: R2 }) }));
    // Candidates: a filler (Δ 0, never qualifies), then S (raises 0.125), then L (lowers 0.25).
    const candidates = () => [20, S, L];
    const oracle = plantedOracle();
    const { pairs, pivotal, stats } = ptsPairs(oracle, problems, candidates);
    expect(pivotal).toHaveLength(4);
    const sol = problems[0]!.solution;
    for (const [k, base] of [4, 8].entries()) {
      const [lower, raise] = [pairs[2 * k]!, pairs[2 * k + 1]!];
      // L lowered p: accepted is the first candidate that raises it (S), rejected is L
      expect(lower).toEqual({ query: [base, PLUS, sol[0]], accepted: S, rejected: L, pAccepted: base / 16 + 0.125, pRejected: base / 16 - 0.25, pBefore: base / 16 });
      // R2 raised p: accepted is R2, rejected the first candidate that lowers it (L)
      const before = base / 16 - 0.25;
      expect(raise).toEqual({ query: [base, PLUS, ...sol.slice(0, 5)], accepted: R2, rejected: L, pAccepted: before + 0.5, pRejected: before - 0.25, pBefore: before });
    }
    expect(stats).toEqual({ questions: 4, kept: 2, oracleCalls: new Set(oracle.asked).size, pivotalTokens: 4, pairs: 4, noAlternative: 0 });
    expect(oracle.asked.length).toBe(stats.oracleCalls); // one memo across filter, search and alternatives
  });

  it('drops a pivotal token when no candidate moves p the other way', () => {
    const problems = [{ question: [8], solution: solutionWith(3, { 1: R }) }];
    const { pairs, stats } = ptsPairs(plantedOracle(), problems, () => [20, S, R2]);
    expect(pairs).toEqual([]);
    expect(stats).toMatchObject({ pivotalTokens: 1, pairs: 0, noAlternative: 1 });
  });
});

// ---------------------------------------------------------------- model-backed oracle

const digits = (n: number) => String(n).split('').map((d) => DIGIT0 + Number(d));
const number = (ts: readonly number[]) => Number(ts.map((t) => t - DIGIT0).join(''));

/**
 * A stand-in for a model trained on `a + b = c`: after EQUALS it writes c's digits then EOS, except
 * that the first digit is a coin flip between the right one and the next digit up (mod 10).
 */
function calculator(V = 32): LogitsModel {
  return {
    logits(inputs, B, T) {
      const out = new Float32Array(B * T * V); // (B,T,V)
      for (let b = 0; b < B; b++) {
        const row = Array.from(inputs.subarray(b * T, (b + 1) * T));
        const [plus, equals] = [row.indexOf(PLUS), row.indexOf(EQUALS)];
        if (plus < 0 || equals < 0) continue;
        const answer = [...digits(number(row.slice(0, plus)) + number(row.slice(plus + 1, equals))), EOS];
        for (let t = equals; t < T; t++) {
          const j = t - equals; // answer tokens already written
          const o = (b * T + t) * V;
          out[o + (answer[j] ?? EOS)] = 40;
          if (j === 0) out[o + DIGIT0 + ((answer[0]! - DIGIT0 + 1) % 10)] = 40;
        }
      }
      return out;
    },
  };
}

describe('samplingOracle', () => {
  it('is the share of sampled completions the checker accepts (a stub checker on the transformer)', () => {
    const model = new TransformerModel({ arch: 'transformer', vocab: 32, layers: 1, dModel: 16, heads: 2, context: 16, ropeBase: 500, seed: 1 }, { mode: 'reference' });
    const checker = (doc: readonly number[]) => doc[3]! % 2 === 0; // the first completion token of [5,8] + [9] is even
    const oracle = samplingOracle(model, checker, { rollouts: 12, maxTokens: 3, rng: new Rng(5) });
    const p = oracle.p([5, 8], [9]);
    const completions = sampleCompletions(model, [5, 8, 9], 12, { maxTokens: 3, rng: new Rng(5) });
    expect(p).toBe(completions.filter((c) => c[0]! % 2 === 0).length / 12);
    expect(p).toBeGreaterThan(0);
    expect(p).toBeLessThan(1);
    expect(oracle.calls).toBe(1);
  });

  it('with checkArithmetic: a coin-flip first digit gives p ≈ ½, 1 after the right digit, 0 after a wrong one', () => {
    const question = [...digits(23), PLUS, ...digits(45), EQUALS]; // 23 + 45 = 68
    const oracle = samplingOracle(calculator(), checkArithmetic, { rollouts: 16, maxTokens: 4, rng: new Rng(3) });
    const p0 = oracle.p(question, []);
    expect(p0).toBeGreaterThanOrEqual(0.2);
    expect(p0).toBeLessThanOrEqual(0.8);
    expect(oracle.p(question, [DIGIT0 + 6])).toBe(1);
    expect(oracle.p(question, [DIGIT0 + 7])).toBe(0);
    const calls = oracle.calls;
    expect(oracle.p(question, [...digits(68), EOS])).toBe(1); // a finished document is checked, not sampled
    expect(oracle.p(question, [...digits(69), EOS])).toBe(0);
    expect(oracle.calls).toBe(calls);
  });

  it('end to end: PTS finds the first answer digit and pairs it against the model’s wrong digit', () => {
    const model = calculator();
    const oracle = samplingOracle(model, checkArithmetic, { rollouts: 16, maxTokens: 4, rng: new Rng(7) });
    const question = [...digits(23), PLUS, ...digits(45), EQUALS];
    const { pairs, pivotal, stats } = ptsPairs(oracle, [{ question, solution: [...digits(68), EOS] }], modelCandidates(model, { samples: 8, rng: new Rng(8) }));
    expect(pivotal.map((pt) => [pt.prefix.length, pt.token, pt.pAfter])).toEqual([[0, DIGIT0 + 6, 1]]);
    expect(pairs).toHaveLength(1);
    expect(pairs[0]).toMatchObject({ query: question, accepted: DIGIT0 + 6, rejected: DIGIT0 + 7, pAccepted: 1, pRejected: 0 });
    expect(stats).toMatchObject({ questions: 1, kept: 1, pivotalTokens: 1, pairs: 1, noAlternative: 0 });
  });
});
