import type { Pedigree, Run } from '@pedigree/client';
import { parseConfig, type DataSourceConfig, type TrainConfig, type TrainConfigInput } from '../config.ts';
import { buildMix, kvPairsIn } from '../data/data.ts';
import type { Model } from '../model/model.ts';
import { arithmeticPassRate, arithmeticQuestions, arithmeticSampledPassRate, evalEvents, mixLoss, recallEval, type StageEvals } from '../stages/evals.ts';
import type { StageOutcome } from '../stages/outcome.ts';
import { runPtsStage, runDpoStage, type DpoSettings, type PtsStageResult, type DpoStageResult } from '../stages/posttrain.ts';
import { formatSeconds, ProgressBar, type ProgressSink } from '../stages/progress.ts';
import { train, type TrainResult } from '../stages/train.ts';
import { RECIPE_PRESETS, TOY, type RecipeSize } from './presets.ts';

/**
 * The Phi-4 recipe (arXiv 2412.08905; docs/trainer.md) at toy scale, every stage a run in the store:
 *
 *   pretrain (context 64, RoPE base 500, Table 5's mix; answer tokens weighted)
 *     └─ midtrain (context 256 = 4×, base ×25, lr ÷10; 30% native long KV documents
 *        │          filtered to the longest, the longest upweighted + 70% replay of the pretraining mix)
 *        └─ SFT (verifiable arithmetic) ─ PTS (pairs from pivotal tokens) ─ DPO (on those pairs)
 *   ablations, each a fork of the same pretraining checkpoint:
 *     midtrain-rope-unchanged   base stays 500
 *     midtrain-concat           the long data made of concatenated short documents
 *     midtrain-lr-not-lowered   lr stays at the pretraining peak
 *
 * Each stage records its evals (recall at 1×/2×/4×/8× the pretraining
 * context, short-context loss, arithmetic pass rate) on its own run, so
 * `pedigree diff midtrain midtrain-concat` shows exactly what differs, evals
 * included. Sizes: `ci` (seconds, for tests), `quick` (the demo a new user's
 * first `npm start` records, a couple of minutes), `full` (≤ 20 minutes on 2
 * cores, for results.md).
 */

// ------------------------------------------------------------------ data

/**
 * Table 5's five sources, tagged, at toy scale. `kvShare` (RecipePreset.kvShare)
 * gives the KV "synthetic" source that share and the other four the rest in
 * equal parts: `--full` trains on 80% KV documents so that pretraining learns
 * recall within its budget (docs/recall-tuning.md), a stated departure from
 * Table 5's 40%.
 */
export function pretrainSources(docs: number, kvShare?: number): DataSourceConfig[] {
  const T = TOY.pretrainContext;
  const other = (table5: number) => (kvShare === undefined ? table5 : Number(((1 - kvShare) / 4).toPrecision(12)));
  return [
    { name: 'web', weight: other(0.15), generator: 'language', params: {}, docs },
    { name: 'web_rewrites', weight: other(0.15), generator: 'language', params: { branching: 2 }, docs },
    // a curriculum of pair counts (TOY.pretrainPairs; the 1× recall eval fills the context), queries shuffled
    { name: 'synthetic', weight: kvShare ?? 0.4, generator: 'kv-recall', params: { ...KV_FORMAT, minPairs: TOY.pretrainPairs[0], maxPairs: TOY.pretrainPairs[1], order: 'shuffled' }, docs },
    { name: 'code', weight: other(0.2), generator: 'long-recall', params: { minLength: T / 4, maxLength: T }, docs },
    { name: 'acquired', weight: other(0.1), generator: 'arithmetic', params: { digits: 2 }, docs },
  ];
}

/** The KV documents' format (TOY.kv) as kv-recall params. */
const KV_FORMAT = { keyLength: TOY.kv.keyLength, valueLength: TOY.kv.valueLength, values: TOY.kv.values, layout: TOY.kv.layout, queries: TOY.kv.queries };
/** The most pairs a KV document of `tokens` tokens holds beside its queries: what the recall eval fills a context with. */
const pairsIn = (tokens: number) => kvPairsIn(tokens, TOY.kv.queries, TOY.kv.keyLength, TOY.kv.valueLength, TOY.kv.layout);

/**
 * New long data: KV documents up to the midtraining context (longer ones would
 * lose their queries to truncation), filtered to those longer than 2× the
 * pretraining context ("> 8K tokens" for 4K), those longer than 3× drawn twice
 * as often ("≥ 16K upweighted").
 */
export function longSource(docs: number, style: 'native' | 'concatenated'): DataSourceConfig {
  const T = TOY.pretrainContext;
  const params = { ...KV_FORMAT, minPairs: 8, maxPairs: pairsIn(T * TOY.contextFactor), order: 'shuffled' };
  return {
    name: style === 'native' ? 'long-native' : 'long-concatenated',
    weight: TOY.newLongShare,
    generator: style === 'native' ? 'kv-recall' : 'kv-concat',
    params: style === 'native' ? params : { ...params, piecePairs: pairsIn(T) },
    docs,
    filter: { minTokens: 2 * T, upweight: { tokens: 3 * T, factor: 2 } },
  };
}

export function midtrainSources(docs: number, style: 'native' | 'concatenated', kvShare?: number): DataSourceConfig[] {
  return [
    longSource(docs, style),
    // the same seed and shares as pretraining: the replay is the pretraining data itself (same dataset artifacts)
    { name: 'replay', weight: TOY.replayShare, params: {}, docs, seed: TOY.dataSeed, mix: pretrainSources(docs, kvShare) },
  ];
}

// ------------------------------------------------------------------ stage configs

export interface RecipeOptions {
  pd: Pedigree;
  project: string;
  size: RecipeSize;
  /** Where checkpoint files go (default: ./checkpoints). */
  outputDir?: string;
  backend?: TrainConfig['backend'];
  progress?: ProgressSink | null;
  log?: (line: string) => void;
  /** Only these ablations (default all three). */
  ablations?: readonly Ablation[];
  /** Seconds each stage is expected to take, by name (estimate.ts): said in the stage's heading. */
  expected?: Readonly<Record<string, number>>;
}

export const ABLATIONS = ['rope-unchanged', 'concat', 'lr-not-lowered'] as const;
export type Ablation = (typeof ABLATIONS)[number];

export function stageConfigs(size: RecipeSize, project: string, opts: { outputDir?: string; backend?: TrainConfig['backend'] } = {}) {
  const p = RECIPE_PRESETS[size];
  const T = TOY.pretrainContext;
  const common = {
    project,
    outputDir: opts.outputDir ?? 'checkpoints',
    backend: opts.backend ?? 'auto',
    tags: ['toy-recipe', size],
    evalBatches: p.evals.lossBatches,
  } satisfies Partial<TrainConfigInput>;
  const model = { arch: 'transformer' as const, ...p.model, seed: 1337 };
  const pretrain = parseConfig(
    {
      ...common,
      name: 'pretrain',
      kind: 'pretrain',
      model: { ...model, context: T, ropeBase: TOY.ropeBase },
      optimizer: { lr: p.pretrain.lr, decay: 'linear', ...(p.pretrain.minLr === undefined ? {} : { minLr: p.pretrain.minLr }), warmupSteps: Math.min(20, Math.floor(p.pretrain.steps / 10)) },
      steps: p.pretrain.steps,
      batchSize: p.pretrain.batch,
      answerWeight: p.answerWeight,
      evalEvery: Math.max(1, Math.floor(p.pretrain.steps / 5)),
      checkpointEvery: 0,
      logEvery: 1,
      data: { seed: TOY.dataSeed, name: 'pretrain-mix', heldoutDocs: p.heldoutDocs, sources: pretrainSources(p.docs, p.kvShare) },
    },
    'recipe pretrain',
  );
  const midtrain = (name: string, change: { ropeBase?: number; lr?: number; style?: 'native' | 'concatenated' } = {}) =>
    parseConfig(
      {
        ...common,
        name,
        kind: 'midtrain',
        model: { ...model, context: T * TOY.contextFactor, ropeBase: change.ropeBase ?? TOY.ropeBase * TOY.ropeFactor },
        optimizer: { lr: change.lr ?? p.pretrain.lr * TOY.lrFactor, decay: 'linear', warmupSteps: Math.min(5, Math.floor(p.midtrain.steps / 5)) },
        steps: p.midtrain.steps,
        batchSize: p.midtrain.batch,
        answerWeight: p.answerWeight,
        evalEvery: 0,
        checkpointEvery: 0,
        logEvery: 1,
        data: {
          seed: TOY.dataSeed + 1,
          name: change.style === 'concatenated' ? 'midtrain-mix-concatenated' : 'midtrain-mix',
          heldoutDocs: p.heldoutDocs,
          sources: midtrainSources(p.docs, change.style ?? 'native', p.kvShare),
        },
      },
      `recipe ${name}`,
    );
  const sft = parseConfig(
    {
      ...common,
      name: 'sft',
      kind: 'sft',
      model: { ...model, context: p.sft.context, ropeBase: TOY.ropeBase * TOY.ropeFactor },
      optimizer: { lr: p.sft.lr, decay: 'linear', warmupSteps: Math.min(10, Math.floor(p.sft.steps / 10)) },
      steps: p.sft.steps,
      batchSize: p.sft.batch,
      evalEvery: 0,
      checkpointEvery: 0,
      logEvery: 1,
      data: { seed: TOY.dataSeed + 2, name: 'sft-arithmetic', heldoutDocs: p.heldoutDocs, sources: [{ name: 'arithmetic', weight: 1, generator: 'arithmetic', params: { digits: p.arithmeticDigits }, docs: p.docs }] },
    },
    'recipe sft',
  );
  return {
    pretrain,
    midtrain: midtrain('midtrain'),
    ablations: {
      'rope-unchanged': midtrain('midtrain-rope-unchanged', { ropeBase: TOY.ropeBase }),
      concat: midtrain('midtrain-concat', { style: 'concatenated' }),
      'lr-not-lowered': midtrain('midtrain-lr-not-lowered', { lr: p.pretrain.lr }),
    } satisfies Record<Ablation, TrainConfig>,
    sft,
  };
}

// ------------------------------------------------------------------ the run

export interface RecipeResult {
  project: string;
  size: RecipeSize;
  stages: StageOutcome[];
  pts?: PtsStageResult;
  dpo?: DpoStageResult;
  /** DPO with an NLL term (RPO), from the same SFT model and pairs. */
  rpo?: DpoStageResult;
  seconds: number;
  backend: string;
}

/** Runs the whole recipe into `project`; every stage reported through the client. */
export async function runRecipe(opts: RecipeOptions): Promise<RecipeResult> {
  const { pd, project, size } = opts;
  const say = opts.log ?? (() => {});
  const preset = RECIPE_PRESETS[size];
  const configs = stageConfigs(size, project, opts);
  const started = performance.now();
  const stages: StageOutcome[] = [];
  const questions = arithmeticQuestions(preset.evals.arithmeticQuestions, preset.arithmeticDigits, TOY.dataSeed + 3, preset.model.vocab);
  // the pretraining mix's held-out split: the short-context loss every stage is measured on
  const shortHeldout = buildMix(configs.pretrain.data, preset.model.vocab, 'heldout').mix;
  const recallContexts = TOY.recallContexts.map((f) => f * TOY.pretrainContext);

  /** A stage's evals, one part at a time under a progress bar of their own (recall at each length apart: each draws its own documents, so the scores are the same). */
  const measure = async (model: Model, which: { recall?: boolean; loss?: boolean; arithmetic?: boolean }, label: string): Promise<StageEvals> => {
    const parts: (() => void)[] = [];
    const evals: StageEvals = {};
    if (which.recall) {
      evals.recall = [];
      for (const L of recallContexts) parts.push(() => evals.recall!.push(...recallEval(model, [L], { ...TOY.kv, docs: preset.evals.recallDocs, seed: TOY.dataSeed + 4 })));
    }
    if (which.loss) parts.push(() => (evals.shortContextLoss = mixLoss(model, shortHeldout, 4, TOY.pretrainContext, preset.evals.lossBatches, TOY.dataSeed + 5)));
    if (which.arithmetic) {
      parts.push(() => (evals.arithmetic = arithmeticPassRate(model, questions)));
      parts.push(() => (evals.arithmeticSampled = arithmeticSampledPassRate(model, questions, { seed: TOY.dataSeed + 7 })));
    }
    // off a terminal: one line when the evals are done, not one per part
    const bar = opts.progress ? new ProgressBar(opts.progress, { label: `${label} evals`, unit: 'eval', total: parts.length, everyPercent: 100 }) : null;
    for (const [i, part] of parts.entries()) {
      part();
      bar?.update({ step: i + 1, tokens: 0 });
      await new Promise((resolve) => setImmediate(resolve)); // lets the bar draw and logged points go out
    }
    bar?.finish();
    return evals;
  };
  const stageCount = 6 + (opts.ablations ?? ABLATIONS).length; // pretrain, midtrain, the ablations, SFT, PTS, DPO, DPO with an NLL term
  let stageNumber = 0;
  const heading = (name: string, what: string) => {
    const expected = opts.expected?.[name];
    say('');
    say(`── [${++stageNumber}/${stageCount}] ${name} (${what})${expected === undefined ? '' : ` · expected ${formatSeconds(expected)}`}`);
  };
  const record = async (run: Run, evals: StageEvals, step: number) => {
    for (const e of evalEvents(evals, step)) await run.eval(e);
  };

  const stage = async (
    config: TrainConfig,
    from: StageOutcome | null,
    which: Parameters<typeof measure>[1],
  ): Promise<{ outcome: StageOutcome; result: TrainResult }> => {
    const t0 = performance.now();
    let evals: StageEvals = {};
    heading(config.name, config.kind);
    const result = await train({
      pd,
      config,
      ...(from ? { fork: { run: from.runId, checkpoint: from.checkpoint!.artifactId } } : {}),
      progress: opts.progress,
      log: say,
      onEnd: async ({ run, model, step }) => {
        evals = await measure(model, which, config.name);
        await record(run, evals, step);
        say(`  evals: ${describeEvals(evals)}`);
      },
    });
    const last = result.checkpoints.at(-1)!;
    result.model.destroy?.();
    const outcome: StageOutcome = {
      name: config.name,
      kind: config.kind,
      runId: result.runId,
      evals,
      checkpoint: { artifactId: last.artifactId, digest: last.digest, path: last.path, step: last.step },
      seconds: (performance.now() - t0) / 1000,
    };
    stages.push(outcome);
    return { outcome, result };
  };

  say(`The Phi-4 recipe at toy scale (${size}) into project ${project}`);
  const { outcome: pretrain, result: pretrainResult } = await stage(configs.pretrain, null, { recall: true, loss: true });
  const backend = pretrainResult.model.backend;
  const { outcome: midtrain } = await stage(configs.midtrain, pretrain, { recall: true, loss: true });
  for (const name of opts.ablations ?? ABLATIONS) await stage(configs.ablations[name], pretrain, { recall: true, loss: true });
  const { outcome: sft, result: sftResult } = await stage(configs.sft, midtrain, { arithmetic: true });

  heading('pts', 'Pivotal Token Search on the SFT model');
  const pts = await runPtsStage({
    pd,
    project,
    sft,
    sftConfig: sftResult.config,
    settings: { ...preset.pts, digits: preset.arithmeticDigits },
    questionsSeed: TOY.dataSeed + 6,
    exclude: questions, // the eval's: DPO never trains on the test
    log: say,
    progress: opts.progress,
  });
  // Both from the SFT model, on the same pairs: the report's DPO (no NLL term), then with one (RPO).
  const dpoRun = async (name: string, settings: DpoSettings) =>
    runDpoStage({
      pd,
      project,
      sft,
      sftConfig: sftResult.config,
      pts,
      settings: { ...settings, name },
      outputDir: configs.sft.outputDir,
      log: say,
      progress: opts.progress,
      evaluate: async (model, run, step) => {
        const evals = await measure(model, { arithmetic: true }, name);
        await record(run, evals, step);
        say(`  evals: ${describeEvals(evals)}`);
        return evals;
      },
    });
  heading('dpo', 'on the PTS pairs, as the report: no NLL term');
  const dpo = await dpoRun('dpo', preset.dpo);
  stages.push(dpo.outcome);
  heading('dpo-rpo', `on the same pairs, with an NLL term on the accepted answer (RPO, α ${preset.rpo.nll})`);
  const rpo = await dpoRun('dpo-rpo', { ...preset.dpo, ...preset.rpo });
  stages.push(rpo.outcome);
  return { project, size, stages, pts, dpo, rpo, seconds: (performance.now() - started) / 1000, backend };
}

export function describeEvals(e: StageEvals): string {
  const parts: string[] = [];
  if (e.recall) parts.push(`recall (shuffled queries; in order) ${e.recall.map((r) => `${r.contextLength}:${r.score.toFixed(0)}%${r.inOrder === undefined ? '' : `;${r.inOrder.toFixed(0)}%`}`).join(' ')}`);
  if (e.shortContextLoss !== undefined) parts.push(`short-context loss ${e.shortContextLoss.toFixed(3)}`);
  if (e.arithmetic) parts.push(`arithmetic ${e.arithmetic.score.toFixed(1)}% of ${e.arithmetic.n} greedy`);
  if (e.arithmeticSampled) parts.push(`${e.arithmeticSampled.score.toFixed(1)}% of ${e.arithmeticSampled.n} sampled`);
  return parts.join(' · ') || 'none';
}
