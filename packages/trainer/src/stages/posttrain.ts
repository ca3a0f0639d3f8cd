import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Pedigree, Run } from '@pedigree/client';
import { hyperparametersOf, type TrainConfig } from '../config.ts';
import { arithmeticAnswer, checkArithmetic } from '../data/data.ts';
import { sha256, writeContentAddressed } from '../model/checkpoint.ts';
import { TransformerModel } from '../model/transformer.ts';
import { deriveSeed, Rng } from '../rng.ts';
import { dpoEvaluate, dpoStep, referenceLogProbs } from './dpo.ts';
import { arithmeticQuestions, type StageEvals } from './evals.ts';
import type { StageOutcome } from './outcome.ts';
import { ProgressBar, type ProgressSink } from './progress.ts';
import { modelCandidates, ptsPairs, samplingOracle, type PtsPair, type PtsStats } from './pts.ts';
import { loadRunCheckpoint, saveRunCheckpoint, TRAINER, type CheckpointRecord } from './train.ts';

/**
 * The post-training stages after SFT, each a run:
 *   pts   samples the SFT model (Pivotal Token Search, pts.ts) on held-out
 *         additions and writes the DPO pairs it finds to a content-addressed
 *         JSON file, registered as a `dataset` artifact the run produces;
 *   dpo   a fork of the SFT run at its checkpoint, trained on those pairs
 *         (dpo.ts), its own checkpoint and evals recorded.
 * Both run the model on the plain-TypeScript path: they run many small shapes
 * (every prompt length and batch), for each of which gpu.js would compile kernels.
 */

const PAIRS_FORMAT = 'pedigree-pts-pairs/1';
const P_GAP = 0.2;
const FILTER = { minP: 0.2, maxP: 0.8 };
/** An answer is at most 3 digits and EOS. */
const MAX_ANSWER_TOKENS = 4;

interface StageContext {
  pd: Pedigree;
  project: string;
  sft: StageOutcome;
  sftConfig: TrainConfig;
  log: (line: string) => void;
  progress?: ProgressSink | null;
}

/** How much PTS samples: questions (additions of `digits`-digit numbers) and rollouts per prefix. */
export interface PtsSettings {
  questions: number;
  rollouts: number;
  digits: number;
}

/** DPO on the PTS pairs: steps, β, a constant learning rate, pairs per step. */
export interface DpoSettings {
  steps: number;
  beta: number;
  lr: number;
  batch: number;
  /** α of an NLL term on the accepted answer (RPO; dpo.ts); 0 or absent: plain DPO, the report's setting. Recorded as the hyperparameter nll_weight either way. */
  nll?: number;
  /** The run's name (default "dpo"). */
  name?: string;
}

export interface PtsStageResult {
  runId: string;
  pairsArtifactId: string;
  pairsPath: string;
  pairs: PtsPair[];
  stats: PtsStats;
  seconds: number;
}

async function sftModel(ctx: StageContext): Promise<TransformerModel> {
  const model = new TransformerModel(ctx.sftConfig.model, { mode: 'reference' });
  const c = ctx.sft.checkpoint!;
  const record: CheckpointRecord = { step: c.step, artifactId: c.artifactId, digest: c.digest, path: c.path, name: `${ctx.sft.name}@${c.step}` };
  await loadRunCheckpoint(model, record);
  return model;
}

/**
 * `exclude`: questions PTS must not use (the recipe's eval questions: DPO
 * trained on their pivotal tokens would be trained on the test).
 */
export async function runPtsStage(ctx: StageContext & { settings: PtsSettings; questionsSeed: number; exclude?: readonly number[][] }): Promise<PtsStageResult> {
  const { pd, project, log } = ctx;
  const t0 = performance.now();
  const model = await sftModel(ctx);
  const { questions: count, rollouts, digits } = ctx.settings;
  const excluded = new Set((ctx.exclude ?? []).map((q) => q.join(',')));
  const questions = arithmeticQuestions(count + excluded.size, digits, ctx.questionsSeed, model.config.vocab)
    .filter((q) => !excluded.has(q.join(',')))
    .slice(0, count);
  const { artifactId: questionsId } = await pd.registerArtifact({
    project,
    name: 'pts-questions',
    spec: { kind: 'evalset', source: 'synthetic/arithmetic', params: { count, digits, seed: ctx.questionsSeed, split: 'pts', excluding: excluded.size ? 'the eval questions' : 'none' } },
  });
  const hyperparameters = { p_gap: P_GAP, filter_min_p: FILTER.minP, filter_max_p: FILTER.maxP, rollouts, temperature: 1, questions: count, max_answer_tokens: MAX_ANSWER_TOKENS, seed: ctx.questionsSeed };
  const run = await pd.startRun({
    project,
    name: 'pts',
    kind: 'pts',
    hyperparameters,
    inputs: [
      { artifactId: ctx.sft.checkpoint!.artifactId, role: 'model' },
      { artifactId: questionsId, role: 'questions' },
    ],
    tags: ['toy-recipe'],
    codeVersion: TRAINER,
    environment: { trainer: TRAINER, backend: model.backend, model: { ...model.config } },
  });
  try {
    const rng = new Rng(deriveSeed(ctx.questionsSeed, 'pts-sampling'));
    const oracle = samplingOracle(model, checkArithmetic, { rollouts, maxTokens: MAX_ANSWER_TOKENS, temperature: 1, rng });
    const candidates = modelCandidates(model, { samples: rollouts, rng });
    const bar = ctx.progress ? new ProgressBar(ctx.progress, { label: 'pts', total: questions.length }) : null;
    const pairs: PtsPair[] = [];
    const stats: PtsStats = { questions: 0, kept: 0, oracleCalls: 0, pivotalTokens: 0, pairs: 0, noAlternative: 0 };
    // one question at a time, so progress shows and metrics tell the story as it goes
    for (const [i, question] of questions.entries()) {
      const one = ptsPairs(oracle, [{ question, solution: arithmeticAnswer(question) }], candidates, { pGap: P_GAP, filter: FILTER });
      pairs.push(...one.pairs);
      for (const k of Object.keys(stats) as (keyof PtsStats)[]) stats[k] += one.stats[k];
      run.log({ 'pts/kept': stats.kept, 'pts/pivotal_tokens': stats.pivotalTokens, 'pts/pairs': stats.pairs, 'pts/oracle_calls': stats.oracleCalls }, i);
      bar?.update({ step: i + 1, tokens: 0 });
      await new Promise((resolve) => setImmediate(resolve));
    }
    bar?.finish();
    const bytes = new TextEncoder().encode(`${JSON.stringify({ format: PAIRS_FORMAT, pGap: P_GAP, filter: FILTER, rollouts, pairs })}\n`);
    const file = await writeContentAddressed(path.resolve(ctx.sftConfig.outputDir), bytes, '.pts-pairs.json');
    const { artifactId } = await pd.registerArtifact({
      project,
      name: 'pts-pairs',
      digest: file.digest,
      spec: {
        kind: 'dataset',
        source: 'pts/pairs',
        params: { ...hyperparameters, model: ctx.sft.checkpoint!.artifactId, path: file.path, ...stats },
        docs: pairs.length,
        tokens: pairs.reduce((n, p) => n + p.query.length + 1, 0),
      },
    });
    await run.produce(artifactId, 'pairs');
    await run.note(
      `PTS: ${stats.questions} questions, ${stats.kept} with p(success) in [${FILTER.minP}, ${FILTER.maxP}], ${stats.pivotalTokens} pivotal tokens, ${stats.pairs} pairs (${stats.noAlternative} without an alternative token), ${stats.oracleCalls} prefixes sampled ${rollouts}× each`,
      TRAINER,
    );
    await run.finish();
    log(`  ${stats.questions} questions, ${stats.kept} kept (0.2 ≤ p ≤ 0.8), ${stats.pivotalTokens} pivotal tokens → ${stats.pairs} pairs; ${file.path}`);
    return { runId: run.id, pairsArtifactId: artifactId, pairsPath: file.path, pairs, stats, seconds: (performance.now() - t0) / 1000 };
  } catch (err) {
    await run.fail(err).catch(() => {});
    throw err;
  }
}

/** Reads a pairs file, checking its digest against the artifact's. */
export async function loadPairs(file: string, digest: string): Promise<PtsPair[]> {
  const bytes = await readFile(file);
  if (sha256(bytes) !== digest) throw new Error(`${file} does not match its recorded digest ${digest}`);
  const parsed = JSON.parse(bytes.toString('utf8')) as { format?: string; pairs?: PtsPair[] };
  if (parsed.format !== PAIRS_FORMAT || !Array.isArray(parsed.pairs)) throw new Error(`${file} is not a ${PAIRS_FORMAT} file`);
  return parsed.pairs;
}

export interface DpoStageResult {
  outcome: StageOutcome;
  pairs: number;
  firstLoss: number;
  lastLoss: number;
  firstAccuracy: number;
  lastAccuracy: number;
}

export async function runDpoStage(
  ctx: StageContext & {
    settings: DpoSettings;
    pts: PtsStageResult;
    outputDir: string;
    evaluate: (model: TransformerModel, run: Run, step: number) => Promise<StageEvals>;
  },
): Promise<DpoStageResult> {
  const { pd, project, log, pts } = ctx;
  const t0 = performance.now();
  const model = await sftModel(ctx);
  const { steps, beta, lr, batch } = ctx.settings;
  const nll = ctx.settings.nll ?? 0;
  const name = ctx.settings.name ?? 'dpo';
  const pairs = pts.pairs;
  const optimizer = { ...ctx.sftConfig.optimizer, lr, minLr: lr, warmupSteps: 0 };
  const c = ctx.sft.checkpoint!;
  const run = await pd.startRun({
    project,
    name,
    kind: 'dpo',
    hyperparameters: { ...hyperparametersOf(ctx.sftConfig), lr, min_lr: lr, schedule: 'constant', warmup_steps: 0, steps, batch, beta, nll_weight: nll, pairs: pairs.length },
    inputs: [{ artifactId: pts.pairsArtifactId, role: 'train-pairs' }],
    tags: ['toy-recipe'],
    codeVersion: TRAINER,
    forkOf: { runId: ctx.sft.runId, checkpointId: c.artifactId, step: c.step, inheritHyperparameters: false },
  });
  try {
    await run.note(`environment: ${JSON.stringify({ trainer: TRAINER, backend: model.backend, model: { ...model.config } })}`, TRAINER);
    let first = { loss: NaN, accuracy: NaN };
    let last = { loss: NaN, accuracy: NaN };
    if (!pairs.length) {
      await run.note('PTS found no pairs: DPO has nothing to train on; the model is the SFT model', TRAINER);
      log('  no pairs: nothing to train on');
    } else {
      const ref = referenceLogProbs(model, pairs);
      run.log({ 'dpo/loss_all_pairs': Math.LN2, 'dpo/accuracy_all_pairs': 0 }, 0); // the policy is the reference: z = 0 for every pair
      const rng = new Rng(deriveSeed(1337, 'dpo-batches'));
      const bar = ctx.progress ? new ProgressBar(ctx.progress, { label: name, total: steps }) : null;
      for (let step = 0; step < steps; step++) {
        const picked = pairs.length <= batch ? pairs : Array.from({ length: batch }, () => pairs[rng.int(pairs.length)]!);
        const stats = dpoStep(model, picked, ref, { beta, nll, lr, t: step + 1, optimizer });
        run.log({ 'dpo/loss': stats.loss, 'dpo/accuracy': stats.accuracy, 'dpo/margin': stats.margin, 'dpo/nll': stats.nll, lr }, step);
        bar?.update({ step: step + 1, loss: stats.loss, tokens: picked.length });
        await new Promise((resolve) => setImmediate(resolve));
      }
      bar?.finish();
      first = { loss: Math.LN2, accuracy: 0 }; // before any update the policy is the reference: z = 0 for every pair
      const end = dpoEvaluate(model, pairs, ref, beta);
      last = { loss: end.loss, accuracy: end.accuracy };
      run.log({ 'dpo/loss_all_pairs': end.loss, 'dpo/accuracy_all_pairs': end.accuracy }, steps);
      log(`  ${pairs.length} pairs, ${steps} steps: DPO loss ${Math.LN2.toFixed(3)} → ${end.loss.toFixed(3)}, pairs ranked right ${(100 * end.accuracy).toFixed(0)}%`);
    }
    // the SFT config under the DPO run's name, so `pedigree train --fork` can go on from here
    const config = JSON.stringify({ ...ctx.sftConfig, name, kind: 'dpo' });
    const checkpoint = await saveRunCheckpoint(run, model, { outputDir: ctx.outputDir, name: `${name}@${steps}`, step: steps, metadata: { config } });
    const evals = await ctx.evaluate(model, run, steps);
    await run.finish();
    return {
      outcome: {
        name,
        kind: 'dpo',
        runId: run.id,
        evals,
        checkpoint: { artifactId: checkpoint.artifactId, digest: checkpoint.digest, path: checkpoint.path, step: checkpoint.step },
        seconds: (performance.now() - t0) / 1000,
      },
      pairs: pairs.length,
      firstLoss: first.loss,
      lastLoss: last.loss,
      firstAccuracy: first.accuracy,
      lastAccuracy: last.accuracy,
    };
  } catch (err) {
    await run.fail(err).catch(() => {});
    throw err;
  }
}
