import { describe, expect, it } from 'vitest';
import { COST, describeDuration, estimateRecipe, measureThroughput, planRecipe, shapeKey, type Throughput } from './estimate.ts';
import { RECIPE_PRESETS } from './presets.ts';

/**
 * Training steps as the full run of docs/toy-recipe-results.md took them on
 * the machine kind the budget is for (2 CPU cores, no GPU, backend
 * reference, 2 threads): 468 s for 8,000 pretraining steps of 8 × 64 tokens
 * with their evals (0.0585 s a step, 0.051 before COST.stepOverhead), 17 s for
 * 200 midtraining steps of 2 × 256 (0.074 before it).
 */
const TWO_CORES: Throughput = { stepSeconds: { [shapeKey(8, 64)]: 0.051, [shapeKey(2, 256)]: 0.074 }, tokenSeconds: 0.051 / 512, backend: 'reference (TypeScript)', seconds: 1 };

describe('the expected time', () => {
  it('plans every stage in the order it runs, with the work the presets give it', () => {
    const plan = planRecipe('full');
    const p = RECIPE_PRESETS.full;
    expect(plan.map((s) => s.name)).toEqual(['pretrain', 'midtrain', 'midtrain-rope-unchanged', 'midtrain-concat', 'midtrain-lr-not-lowered', 'sft', 'pts', 'dpo', 'dpo-rpo']);
    expect(plan[0]).toMatchObject({ steps: p.pretrain.steps, batch: p.pretrain.batch, context: 64 });
    expect(plan[1]).toMatchObject({ steps: p.midtrain.steps, batch: p.midtrain.batch, context: 256 });
    expect(plan[5]).toMatchObject({ steps: p.sft.steps, batch: p.sft.batch, context: p.sft.context });
    expect(plan.find((s) => s.name === 'pts')!.rollouts).toBe(p.pts.questions * COST.ptsPrefixesPerQuestion * p.pts.rollouts);
    // the midtraining replay is the pretraining mix generated again: its documents count
    expect(plan[1]!.docs).toBe(6 * (p.docs + p.heldoutDocs));
    expect(plan.find((s) => s.name === 'dpo')!.pairs).toBe(p.dpo.steps * p.dpo.batch);
    expect(planRecipe('ci', ['concat']).map((s) => s.name)).toEqual(['pretrain', 'midtrain', 'midtrain-concat', 'sft', 'pts', 'dpo', 'dpo-rpo']);
  });

  it('prices training steps at the measured step time, and scales with it', () => {
    const plan = planRecipe('quick');
    const e = estimateRecipe(plan, TWO_CORES);
    const pre = e.stages.find((s) => s.name === 'pretrain')!.seconds;
    expect(pre).toBeGreaterThan(plan[0]!.steps * 0.051 * (1 + COST.stepOverhead));
    expect(e.seconds).toBeCloseTo(e.stages.reduce((n, s) => n + s.seconds, 0), 9);
    const slower: Throughput = { ...TWO_CORES, stepSeconds: { [shapeKey(8, 64)]: 0.102, [shapeKey(2, 256)]: 0.148 }, tokenSeconds: TWO_CORES.tokenSeconds * 2 };
    expect(estimateRecipe(plan, slower).seconds).toBeCloseTo(2 * e.seconds, 6);
  });

  it('keeps the budget on 2 cores: quick ≤ 2 minutes, full ≤ 20 minutes', () => {
    // a guard on the presets: more steps than the machine kind can take fail here, not after a 25-minute run
    expect(estimateRecipe(planRecipe('quick'), TWO_CORES).seconds).toBeLessThan(120);
    expect(estimateRecipe(planRecipe('full'), TWO_CORES).seconds).toBeLessThan(20 * 60);
  });

  it('measures a step at each shape the recipe trains at', () => {
    const t = measureThroughput('ci', 'reference', 1);
    const p = RECIPE_PRESETS.ci;
    expect(Object.keys(t.stepSeconds).sort()).toEqual([shapeKey(p.pretrain.batch, 64), shapeKey(p.midtrain.batch, 256)].sort());
    for (const s of Object.values(t.stepSeconds)) expect(s).toBeGreaterThan(0);
    expect(t.tokenSeconds).toBeCloseTo(t.stepSeconds[shapeKey(p.pretrain.batch, 64)]! / (p.pretrain.batch * 64), 12);
    expect(t.backend).toMatch(/reference/);
  });

  it('says a duration as an estimate', () => {
    expect([describeDuration(3), describeDuration(31), describeDuration(70), describeDuration(100), describeDuration(552), describeDuration(725)]).toEqual([
      'about 5 seconds',
      'about 30 seconds',
      'about a minute',
      'about 1½ minutes',
      'about 9 minutes',
      'about 12 minutes',
    ]);
  });
});
