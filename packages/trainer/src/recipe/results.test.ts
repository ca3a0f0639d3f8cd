import { describe, expect, it } from 'vitest';
import type { RecallResult } from '../stages/evals.ts';
import type { StageOutcome } from '../stages/outcome.ts';
import { TOY, TOY_VOCAB } from './presets.ts';
import type { RecipeResult } from './recipe.ts';
import { checkClaims, clearlyGreater, resultsMarkdown } from './results.ts';

const recall = (scores: number[], n = 48): RecallResult[] => scores.map((score, i) => ({ contextLength: TOY.pretrainContext * 2 ** i, score, n }));
const stage = (name: string, evals: StageOutcome['evals']): StageOutcome => ({ name, kind: name.startsWith('midtrain') ? 'midtrain' : name, runId: `${name}-0000-run`, evals, seconds: 1 });
const result = (stages: StageOutcome[]): RecipeResult => ({ project: 'p', size: 'ci', stages, seconds: 60, backend: 'reference (TypeScript)' });

describe('results.md verdicts', () => {
  it('counts a win only beyond noise: two standard errors of the difference', () => {
    expect(clearlyGreater(0, 96, 0, 96)).toBe(false); // a tie at zero is no win
    expect(clearlyGreater(12, 48, 9, 48)).toBe(false); // within noise
    expect(clearlyGreater(60, 96, 20, 96)).toBe(true);
    expect(clearlyGreater(20, 96, 60, 96)).toBe(false);
  });

  it('judges each claim from the recorded evals', () => {
    const good = result([
      stage('pretrain', { recall: recall([100, 10, 0, 0]), shortContextLoss: 1.5 }),
      stage('midtrain', { recall: recall([100, 98, 95, 40]), shortContextLoss: 1.52 }),
      stage('midtrain-rope-unchanged', { recall: recall([100, 20, 5, 0]), shortContextLoss: 1.52 }),
      stage('midtrain-concat', { recall: recall([100, 50, 30, 5]), shortContextLoss: 1.51 }),
      stage('midtrain-lr-not-lowered', { recall: recall([90, 80, 70, 10]), shortContextLoss: 1.7 }),
      stage('sft', { arithmetic: { score: 40, n: 100 }, arithmeticSampled: { score: 40, n: 800 } }),
      stage('dpo', { arithmetic: { score: 70, n: 100 }, arithmeticSampled: { score: 60, n: 800 } }),
      stage('dpo-rpo', { arithmetic: { score: 72, n: 100 }, arithmeticSampled: { score: 62, n: 800 } }),
    ]);
    expect(checkClaims(good).map((c) => c.held)).toEqual([true, true, true, true, true, true]);
    const flat = result([
      stage('pretrain', { recall: recall([0, 0, 0, 0]), shortContextLoss: 1.5 }),
      stage('midtrain', { recall: recall([2, 0, 0, 0]), shortContextLoss: 1.8 }),
      stage('midtrain-rope-unchanged', { recall: recall([0, 0, 0, 0]), shortContextLoss: 1.7 }),
      stage('midtrain-concat', { recall: recall([0, 0, 0, 0]), shortContextLoss: 1.75 }),
      stage('midtrain-lr-not-lowered', { recall: recall([2, 0, 2, 2]), shortContextLoss: 1.71 }),
      stage('sft', { arithmetic: { score: 40, n: 100 }, arithmeticSampled: { score: 40, n: 800 } }),
      stage('dpo', { arithmetic: { score: 41, n: 100 }, arithmeticSampled: { score: 41, n: 800 } }),
      stage('dpo-rpo', { arithmetic: { score: 43, n: 100 }, arithmeticSampled: { score: 43, n: 800 } }), // +3 of 800: within 2 SE (4.9)
    ]);
    expect(checkClaims(flat).map((c) => c.held)).toEqual([false, false, false, false, false, false]);
    const md = resultsMarkdown(flat);
    expect(md).toContain('No stage learned key–value recall');
    expect(md.match(/\*\*did not hold\*\*/g)).toHaveLength(6);
    expect(resultsMarkdown(good)).not.toContain('No stage learned');
    // stages that were not run are said so, not judged
    expect(checkClaims(result([stage('pretrain', { recall: recall([0, 0, 0, 0]) })])).every((c) => c.held === null)).toBe(true);
  });
});

describe('the recall format', () => {
  it('is the one stages/evals.test.ts scores planted models in: KEY k v, 1-digit values, 6 queries, vocabulary 352, 64–512 tokens', () => {
    expect(TOY.kv).toEqual({ keyLength: 1, valueLength: 1, values: 'digits', layout: 'key', queries: 6 });
    expect(TOY_VOCAB).toBe(352);
    expect(TOY.recallContexts.map((f) => f * TOY.pretrainContext)).toEqual([64, 128, 256, 512]);
  });
});
