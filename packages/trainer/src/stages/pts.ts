import { EOS } from '../data/data.ts';
import { sampleCompletions, type LogitsModel } from '../model/sampling.ts';
import type { Rng } from '../rng.ts';
import type { DpoPair } from './dpo.ts';

/**
 * Pivotal Token Search (the Phi-4 report, arXiv 2412.08905, §4.3: the algorithm this follows):
 *
 *   p(prefix): fraction of N sampled completions of Q+prefix the checker accepts (memoized)
 *   Subdivide(prefix, T):
 *     if len(T) <= 1 or |p(prefix) − p(prefix+T)| < p_gap: return [T]
 *     split T at its midpoint into L, R; return Subdivide(prefix, L) + Subdivide(prefix+L, R)
 *   walk the pieces of Subdivide("", solution); a piece of one token whose |Δp| ≥ p_gap is pivotal.
 *
 * Every prefix the search asks about is a prefix of the solution, so a piece is the index range
 * [start, end) of the solution and p is memoized by prefix length. The search only descends into
 * pieces whose ends differ by p_gap: two pivotal tokens that cancel inside one piece are not
 * found (the report's algorithm, kept as stated).
 *
 * Only questions with 0.2 ≤ p(success) ≤ 0.8 are searched; each pivotal token becomes a DPO
 * pair at query Q+prefix with single-token answers: the token that raises p is accepted, the one
 * that lowers it rejected; the other side is an alternative next token found among candidates.
 */

/** Probability that a completion of question+prefix succeeds (an estimate, e.g. a fraction of rollouts). */
export interface SuccessOracle {
  p(question: readonly number[], prefix: readonly number[]): number;
}

/** An oracle answering each (question, prefix) once; `calls` counts the inner oracle's calls, `lookups` every ask. */
export interface MemoOracle extends SuccessOracle {
  readonly calls: number;
  readonly lookups: number;
}

export function memoizeOracle(oracle: SuccessOracle): MemoOracle {
  const cache = new Map<string, number>();
  let calls = 0;
  let lookups = 0;
  return {
    get calls() {
      return calls;
    },
    get lookups() {
      return lookups;
    },
    p(question, prefix) {
      lookups++;
      const key = `${question.join(',')}|${prefix.join(',')}`;
      let p = cache.get(key);
      if (p === undefined) {
        calls++;
        p = oracle.p(question, prefix);
        cache.set(key, p);
      }
      return p;
    },
  };
}

export interface PivotalToken {
  prefix: number[]; // the solution's tokens before it
  token: number;
  pBefore: number; // p(prefix)
  pAfter: number; // p(prefix + token)
}

export interface PtsResult {
  pivotal: PivotalToken[];
  /** p(question) with the empty prefix: the question's success rate. */
  pSuccess: number;
  /** Distinct prefixes the search asked the oracle about (its calls, when the oracle is not memoized elsewhere). */
  oracleCalls: number;
}

/** A half-open range [start, end) of the solution. */
export interface Piece {
  start: number;
  end: number;
}

export const DEFAULT_P_GAP = 0.2;

/** Subdivide(solution[:start], solution[start:end]): pieces whose ends differ by < pGap, or single tokens. `p(k)` = p(solution[:k]). */
export function subdivide(p: (k: number) => number, start: number, end: number, pGap: number): Piece[] {
  if (end - start <= 1 || Math.abs(p(start) - p(end)) < pGap) return [{ start, end }];
  const mid = start + Math.floor((end - start) / 2);
  return [...subdivide(p, start, mid, pGap), ...subdivide(p, mid, end, pGap)];
}

/** The pivotal tokens of one solution to one question. */
export function pivotalTokenSearch(oracle: SuccessOracle, question: readonly number[], solution: readonly number[], opts: { pGap?: number } = {}): PtsResult {
  const pGap = opts.pGap ?? DEFAULT_P_GAP;
  const memo = new Map<number, number>(); // prefix length → p
  const p = (k: number): number => {
    let v = memo.get(k);
    if (v === undefined) {
      v = oracle.p(question, solution.slice(0, k));
      memo.set(k, v);
    }
    return v;
  };
  const pivotal: PivotalToken[] = [];
  for (const { start, end } of subdivide(p, 0, solution.length, pGap)) {
    if (end - start !== 1) continue;
    const [pBefore, pAfter] = [p(start), p(end)];
    if (Math.abs(pAfter - pBefore) >= pGap) pivotal.push({ prefix: solution.slice(0, start), token: solution[start]!, pBefore, pAfter });
  }
  return { pivotal, pSuccess: p(0), oracleCalls: memo.size };
}

export interface QuestionFilter {
  minP: number; // default 0.2
  maxP: number; // default 0.8
}

export const DEFAULT_QUESTION_FILTER: QuestionFilter = { minP: 0.2, maxP: 0.8 };

/** Whether a question is worth searching: neither almost always solved nor almost never. */
export function keepQuestion(pSuccess: number, filter: QuestionFilter = DEFAULT_QUESTION_FILTER): boolean {
  return pSuccess >= filter.minP && pSuccess <= filter.maxP;
}

// ---------------------------------------------------------------- pairs

/** Alternative next tokens to try at a query, most promising first. */
export type CandidateSource = (query: readonly number[]) => number[];

/** A DPO pair from a pivotal token, with the success probabilities after each answer. */
export interface PtsPair extends DpoPair {
  pAccepted: number; // p(query + accepted)
  pRejected: number; // p(query + rejected)
  pBefore: number; // p(query)
}

/**
 * The pair of one pivotal token: it is accepted when it raises p, and the first candidate that
 * moves p the other way from p(prefix) (by more than `altGap`, default 0) is rejected; and vice
 * versa. Null when no candidate qualifies. The pair's p contrast is then ≥ p_gap.
 */
export function pairFor(oracle: SuccessOracle, question: readonly number[], pt: PivotalToken, candidates: CandidateSource, altGap = 0): PtsPair | null {
  const query = [...question, ...pt.prefix];
  const raises = pt.pAfter > pt.pBefore;
  for (const alt of candidates(query)) {
    if (alt === pt.token) continue;
    const pAlt = oracle.p(question, [...pt.prefix, alt]);
    const opposite = raises ? pt.pBefore - pAlt : pAlt - pt.pBefore;
    if (opposite <= altGap) continue;
    return raises
      ? { query, accepted: pt.token, rejected: alt, pAccepted: pt.pAfter, pRejected: pAlt, pBefore: pt.pBefore }
      : { query, accepted: alt, rejected: pt.token, pAccepted: pAlt, pRejected: pt.pAfter, pBefore: pt.pBefore };
  }
  return null;
}

/** Candidates sampled from the model at the query: `samples` next tokens, distinct, most often drawn first. */
export function modelCandidates(model: LogitsModel, opts: { samples: number; temperature?: number; rng: Rng }): CandidateSource {
  return (query) => {
    const drawn = sampleCompletions(model, query, opts.samples, { maxTokens: 1, temperature: opts.temperature ?? 1, rng: opts.rng, stopAt: -1 }).map((c) => c[0]!);
    const counts = new Map<number, number>(); // insertion order = first drawn
    for (const t of drawn) counts.set(t, (counts.get(t) ?? 0) + 1);
    return [...counts.entries()].sort((a, b) => b[1] - a[1]).map(([t]) => t); // stable: ties keep draw order
  };
}

export interface PtsProblem {
  question: number[];
  solution: number[]; // a solution to search (the reference, or a sampled one)
}

export interface PtsStats {
  questions: number; // seen
  kept: number; // passed the p(success) filter
  oracleCalls: number; // distinct (question, prefix) evaluations, filter and alternatives included
  pivotalTokens: number;
  pairs: number;
  noAlternative: number; // pivotal tokens with no candidate moving p the other way
}

export interface PtsOptions {
  pGap?: number; // default 0.2
  filter?: QuestionFilter; // default 0.2 ≤ p ≤ 0.8
  altGap?: number; // default 0
}

/** PTS over problems: filter, search, pair. One memo spans the filter, the search and the alternatives. */
export function ptsPairs(oracle: SuccessOracle, problems: readonly PtsProblem[], candidates: CandidateSource, opts: PtsOptions = {}): { pairs: PtsPair[]; pivotal: (PivotalToken & { question: number[] })[]; stats: PtsStats } {
  const memo = memoizeOracle(oracle);
  const pairs: PtsPair[] = [];
  const pivotal: (PivotalToken & { question: number[] })[] = [];
  const stats: PtsStats = { questions: 0, kept: 0, oracleCalls: 0, pivotalTokens: 0, pairs: 0, noAlternative: 0 };
  for (const { question, solution } of problems) {
    stats.questions++;
    if (!keepQuestion(memo.p(question, []), opts.filter)) continue;
    stats.kept++;
    for (const pt of pivotalTokenSearch(memo, question, solution, { pGap: opts.pGap }).pivotal) {
      pivotal.push({ question, ...pt });
      const pair = pairFor(memo, question, pt, candidates, opts.altGap);
      if (pair) pairs.push(pair);
      else stats.noAlternative++;
    }
  }
  stats.oracleCalls = memo.calls;
  stats.pivotalTokens = pivotal.length;
  stats.pairs = pairs.length;
  return { pairs, pivotal, stats };
}

// ---------------------------------------------------------------- a model-backed oracle

export interface SamplingOracleOptions {
  rollouts: number; // N completions per prefix (the toy: 8–16)
  maxTokens: number;
  temperature?: number; // default 1
  rng: Rng;
  stopAt?: number; // default EOS
}

/**
 * p(question, prefix) = share of `rollouts` sampled completions of question+prefix whose whole
 * document (question + prefix + completion) the checker accepts. A prefix that already ends at
 * the stop token is complete: p is 1 or 0 without sampling. `calls` counts the prefixes sampled.
 */
export function samplingOracle(model: LogitsModel, checker: (doc: readonly number[]) => boolean, opts: SamplingOracleOptions): SuccessOracle & { readonly calls: number } {
  const stopAt = opts.stopAt ?? EOS;
  let calls = 0;
  return {
    get calls() {
      return calls;
    },
    p(question, prefix) {
      const doc = [...question, ...prefix];
      if (prefix.length > 0 && prefix.at(-1) === stopAt) return checker(doc) ? 1 : 0;
      calls++;
      const completions = sampleCompletions(model, doc, opts.rollouts, { maxTokens: opts.maxTokens, temperature: opts.temperature, rng: opts.rng, stopAt });
      return completions.filter((c) => checker([...doc, ...c])).length / opts.rollouts;
    },
  };
}
