import type { TrainConfig } from '../config.ts';
import type { DataSourceConfig } from '../data/data.ts';
import { createModel } from '../stages/train.ts';
import { RECIPE_PRESETS, TOY, type RecipeSize } from './presets.ts';
import { ABLATIONS, stageConfigs, type Ablation } from './recipe.ts';

/**
 * How long the recipe will take, before it starts: the work each stage plans
 * (training steps of batch × context tokens, eval tokens, generated answers),
 * priced by a training step measured just now at each stage's shape on the
 * backend it will use (so a slower or busier machine gets a longer estimate).
 *
 * Only the training steps are measured; the rest is priced in "train tokens"
 * (the time one token of a pretraining-shaped step takes) by the constants
 * below, calibrated on the machine kind the budget is for (2 CPU cores, no
 * GPU, backend reference) from the quick run (78 s) and a full run of
 * the old recipe (9.2 minutes): they matter little, as training steps are
 * ~90% of the time.
 */
export const COST = {
  /** A step also draws its batch, weights the answer tokens, logs, and evaluates every so often: on top of forward + backward + update. */
  stepOverhead: 0.15,
  /** A token of an eval's forward pass (recall at up to 8× the context, one document at a time) against a token of a training step. */
  evalToken: 0.5,
  /** One generated answer of an eval (an addition's sum, token by token, no cache), greedy or sampled. */
  answer: 12,
  /** One PTS rollout: the rest of an answer from a prefix, shorter than a whole one (--full, two-digit sums: 39,024 in 43 s at 94 ms a pretraining step). */
  ptsRollout: 6,
  /** A DPO pair: one accepted and one rejected token after a short prompt, the policy's forward, then forward and backward (--full: 2,560 more pairs took 9 s more). */
  dpoPair: 18,
  /** Each stage generates its data, registers it and the run, saves a checkpoint: per document of each source. */
  perDoc: 2,
  /** Prefixes PTS samples per question (the question itself, then the subdivision where p moves): 1.2–2.3 measured on one-digit sums, 3.25 on two-digit. */
  ptsPrefixesPerQuestion: 3,
} as const;

/** One stage's planned work. */
export interface PlannedStage {
  name: string;
  /** Training steps, each `batch` × `context` tokens (0: no training, as in PTS). */
  steps: number;
  batch: number;
  context: number;
  /** Forward-only tokens of its evals (recall documents, held-out batches). */
  evalTokens: number;
  /** Answers the arithmetic evals generate. */
  answers: number;
  /** PTS rollouts (prefixes × rollouts each). */
  rollouts: number;
  /** DPO pairs trained on (steps × batch at most). */
  pairs: number;
  /** Documents generated for its data. */
  docs: number;
}

/** The recipe's stages at `size`, in the order they run, with the work each does (from the presets; no model is built). */
export function planRecipe(size: RecipeSize, ablations: readonly Ablation[] = ABLATIONS): PlannedStage[] {
  const p = RECIPE_PRESETS[size];
  const configs = stageConfigs(size, 'plan');
  const recallTokens = p.evals.recallDocs * 2 * TOY.recallContexts.reduce((n, f) => n + f * TOY.pretrainContext, 0); // both query orders
  const lossTokens = p.evals.lossBatches * 4 * TOY.pretrainContext;
  const arithmeticAnswers = p.evals.arithmeticQuestions * 9; // greedy, and 8 samples each
  const training = (c: TrainConfig, evals: { recall?: boolean; arithmetic?: boolean }): PlannedStage => ({
    name: c.name,
    steps: c.steps,
    batch: c.batchSize,
    context: c.model.context,
    evalTokens: (evals.recall ? recallTokens + lossTokens : 0) + (c.evalEvery > 0 ? Math.ceil(c.steps / c.evalEvery) + 1 : 1) * c.evalBatches * c.batchSize * c.model.context,
    answers: evals.arithmetic ? arithmeticAnswers : 0,
    rollouts: 0,
    pairs: 0,
    docs: documents(c.data.sources, c.data.heldoutDocs),
  });
  return [
    training(configs.pretrain, { recall: true }),
    training(configs.midtrain, { recall: true }),
    ...ablations.map((a) => training(configs.ablations[a], { recall: true })),
    training(configs.sft, { arithmetic: true }),
    { name: 'pts', steps: 0, batch: 0, context: 0, evalTokens: 0, answers: 0, rollouts: p.pts.questions * COST.ptsPrefixesPerQuestion * p.pts.rollouts, pairs: 0, docs: 0 },
    { name: 'dpo', steps: 0, batch: 0, context: 0, evalTokens: 0, answers: arithmeticAnswers, rollouts: 0, pairs: p.dpo.steps * p.dpo.batch, docs: 0 },
    { name: 'dpo-rpo', steps: 0, batch: 0, context: 0, evalTokens: 0, answers: arithmeticAnswers, rollouts: 0, pairs: p.rpo.steps * p.dpo.batch, docs: 0 },
  ];
}

/** Documents a mix generates, training and held-out (`heldout` a source), a nested mix's sources included. */
function documents(sources: readonly DataSourceConfig[], heldout: number): number {
  return sources.reduce((n, s) => n + (s.mix ? documents(s.mix, heldout) : s.docs + heldout), 0);
}

/** Seconds a training step takes, by shape (`${batch}x${context}`), and a pretraining step's seconds per token. */
export interface Throughput {
  stepSeconds: Record<string, number>;
  tokenSeconds: number;
  backend: string;
  /** How long measuring took. */
  seconds: number;
}

export const shapeKey = (batch: number, context: number) => `${batch}x${context}`;

/**
 * Times `steps` training steps one by one (after `WARMUP_STEPS` to warm up:
 * gpu.js compiles its kernels, V8 optimises the reference path's loops, the
 * worker thread starts) at each distinct shape the recipe trains at, on
 * `backend`, with the model of `size`, and takes the median: one slow step
 * (a collection, a neighbour's burst) does not set the estimate. With one
 * warm-up step and the mean of three, the full recipe's estimate was 17
 * minutes for a 9.4-minute run. About a second at the quick and full sizes.
 */
const WARMUP_STEPS = 4;

export function measureThroughput(size: RecipeSize, backend: TrainConfig['backend'] = 'reference', steps = 7): Throughput {
  const started = performance.now();
  const configs = stageConfigs(size, 'plan', { backend });
  const shapes = new Map<string, TrainConfig>();
  for (const c of [configs.pretrain, configs.midtrain, configs.sft]) shapes.set(shapeKey(c.batchSize, c.model.context), c);
  const stepSeconds: Record<string, number> = {};
  let name = '';
  for (const [key, c] of shapes) {
    const model = createModel(c);
    name = model.backend;
    try {
      const B = c.batchSize;
      const T = c.model.context;
      const inputs = new Int32Array(B * T).map((_, i) => (i * 7919) % c.model.vocab); // (B,T) any tokens: the cost does not depend on them
      const targets = inputs.map((t) => (t + 1) % c.model.vocab);
      const once = (t: number) => {
        model.forwardBackward(inputs, targets, B, T);
        model.step(c.optimizer.lr, t, c.optimizer);
      };
      for (let t = 1; t <= WARMUP_STEPS; t++) once(t);
      const times: number[] = [];
      for (let t = 0; t < steps; t++) {
        const t0 = performance.now();
        once(WARMUP_STEPS + 1 + t);
        times.push((performance.now() - t0) / 1000);
      }
      times.sort((a, b) => a - b);
      stepSeconds[key] = times[Math.floor(times.length / 2)]!;
    } finally {
      model.destroy?.();
    }
  }
  const pre = configs.pretrain;
  return { stepSeconds, tokenSeconds: stepSeconds[shapeKey(pre.batchSize, pre.model.context)]! / (pre.batchSize * pre.model.context), backend: name, seconds: (performance.now() - started) / 1000 };
}

export interface RecipeEstimate {
  seconds: number;
  stages: { name: string; seconds: number }[];
  throughput: Throughput;
}

/** The plan priced by the measured throughput (COST for everything but the training steps). */
export function estimateRecipe(plan: readonly PlannedStage[], throughput: Throughput): RecipeEstimate {
  const token = throughput.tokenSeconds;
  const stages = plan.map((s) => {
    const step = s.steps ? (throughput.stepSeconds[shapeKey(s.batch, s.context)] ?? token * s.batch * s.context) : 0;
    const seconds =
      s.steps * step * (1 + COST.stepOverhead) +
      token * (s.evalTokens * COST.evalToken + s.answers * COST.answer + s.rollouts * COST.ptsRollout + s.pairs * COST.dpoPair + s.docs * COST.perDoc);
    return { name: s.name, seconds };
  });
  return { seconds: stages.reduce((n, s) => n + s.seconds, 0), stages, throughput };
}

/** "about 9 minutes", "about 40 seconds": an estimate, said as one. */
export function describeDuration(seconds: number): string {
  if (seconds < 55) return `about ${Math.max(5, Math.round(seconds / 5) * 5)} seconds`;
  const minutes = seconds / 60;
  if (minutes < 1.5) return 'about a minute';
  if (minutes < 10) return `about ${Math.round(minutes * 2) / 2} minutes`.replace('.5 minutes', '½ minutes');
  return `about ${Math.round(minutes)} minutes`;
}
