import { randomUUID } from 'node:crypto';
import path from 'node:path';
import type { Pedigree, Run, StartRunInput } from '@pedigree/client';
import packageJson from '../../package.json' with { type: 'json' };
import { applyOverrides, hyperparametersOf, parseConfig, type TrainConfig } from '../config.ts';
import { buildMix, getBatch, registerData, type Batch, type DataMix } from '../data/data.ts';
import { copyInto, loadCheckpoint, saveCheckpoint, type LoadedCheckpoint } from '../model/checkpoint.ts';
import { parameterCount, type Model } from '../model/model.ts';
import { BigramModel } from '../model/reference-model.ts';
import { TransformerModel } from '../model/transformer.ts';
import { deriveSeed, Rng } from '../rng.ts';
import { ProgressBar, type ProgressSink } from './progress.ts';
import { getLr } from './schedule.ts';

/**
 * One stage of training, reported through the Pedigree client like any
 * user's script: the data mix and held-out set as artifacts, the run with its
 * hyperparameters and environment, train/loss, lr, grad_norm, tokens_per_s
 * and eval/loss as metrics, checkpoints as files named by digest and recorded
 * with `run.checkpoint`.
 *
 * Three ways to start:
 * - fresh, from a config (optionally `init.checkpoint`: weights from a file);
 * - `fork`: a new run from another run's checkpoint (weights only; fresh
 *   optimizer, step 0), with a changed config: the ledger records RunForked
 *   and an `init` input edge to the checkpoint;
 * - `resume`: go on after a crash. The crashed run stays failed (marked so
 *   now if it was left running), and a new run forked from its last
 *   checkpoint continues from that step with the optimizer state and data
 *   stream restored: so the audit log shows the crash (RunFailed on the old
 *   run, plus a note naming its successor) and the resume (RunForked at the
 *   checkpoint's step on the new one, tagged `resumed`).
 *
 * Legend: B = batch, T = context (time), V = vocab.
 */

export const TRAINER = `pedigree-trainer/${packageJson.version}`;
const CHECKPOINT_FORMAT = 'pedigree-checkpoint/1';

export interface TrainOptions {
  /** The client the run is recorded through (embedded or over HTTP). */
  pd: Pedigree;
  /** The stage's config, validated. Not with `resume` (it goes on with the crashed run's); with `fork`, default: the parent checkpoint's. */
  config?: TrainConfig;
  /** `key=value` changes to the checkpoint's config, when `config` is not given (resume, fork). */
  set?: readonly string[];
  /** A run id (or prefix) to resume after a crash. */
  resume?: string;
  /** A run id (or prefix) to fork, and which checkpoint: a step, a name, an artifact id or digest prefix (default: the last). */
  fork?: { run: string; checkpoint?: string };
  /** Makes the model (default: `createModel`); the gpu.js transformer plugs in here. */
  createModel?: (config: TrainConfig) => Model;
  /** Where the progress bar goes (null: none). */
  progress?: ProgressSink | null;
  /** Lines for the person running it (what is being trained, where it went). */
  log?: (line: string) => void;
  /** After each step; what it throws fails the run like a crash (tests simulate crashes this way). */
  onStep?: (step: number, loss: number) => void | Promise<void>;
  /** After the last step and the final eval/loss, before the run completes: record evals on it (the recipe does). */
  onEnd?: (end: { run: Run; model: Model; config: TrainConfig; step: number }) => void | Promise<void>;
}

export interface CheckpointRecord {
  step: number;
  artifactId: string;
  digest: string;
  path: string;
  name: string;
}

export interface TrainResult {
  runId: string;
  name: string;
  project: string;
  config: TrainConfig;
  /** The step training started from (0, or a resumed checkpoint's). */
  startStep: number;
  steps: number;
  parameters: number;
  /** train/loss of the first and last step run here. */
  firstLoss: number;
  lastLoss: number;
  /** eval/loss at the end. */
  evalLoss: number;
  checkpoints: CheckpointRecord[];
  origin: Origin | null;
  model: Model;
}

export type Origin =
  | { kind: 'resume' | 'fork'; runId: string; runName: string; checkpoint: CheckpointRecord }
  /** `init.checkpoint` from the config: weights from a file; `runId` when the store knows which run made it. */
  | { kind: 'init'; runId: string | null; checkpoint: CheckpointRecord };

/** The model a config asks for. */
export function createModel(cfg: TrainConfig): Model {
  switch (cfg.model.arch) {
    case 'bigram':
      return new BigramModel(cfg.model);
    case 'transformer':
      // backend "auto": createBackend's pick (PEDIGREE_GPU_MODE, else the best gpu.js mode usable here); "reference": plain TypeScript.
      return new TransformerModel(cfg.model, { mode: cfg.backend });
    default: {
      const unknown: never = cfg.model.arch;
      throw new Error(`unknown model.arch ${String(unknown)}`);
    }
  }
}

/** Mean held-out loss over `batches` batches: the same batches every time (a fixed seed), so evaluations compare. */
export function estimateLoss(model: Model, mix: DataMix, cfg: TrainConfig): number {
  const B = cfg.batchSize;
  const T = cfg.model.context;
  const rng = new Rng(deriveSeed(cfg.data.seed, 'eval-batches'));
  let sum = 0;
  for (let i = 0; i < cfg.evalBatches; i++) {
    const batch = getBatch(mix, B, T, rng);
    sum += model.evaluate(batch.inputs, batch.targets, B, T);
  }
  return sum / cfg.evalBatches;
}

/**
 * Per-position loss weights (B,T) for forwardBackward: answer tokens count
 * `answerWeight`, the other counted positions 1, normalised to sum to 1 (the
 * plain mean's 1/N when every weight is 1). Undefined at weight 1: the model's
 * own mean.
 */
export function lossWeights(batch: Pick<Batch, 'targets' | 'answers'>, answerWeight: number): Float32Array | undefined {
  if (answerWeight === 1) return undefined;
  const weights = new Float32Array(batch.targets.length); // (B,T)
  let total = 0;
  for (let i = 0; i < weights.length; i++) {
    if (batch.targets[i]! < 0) continue; // masked positions stay 0
    const w = batch.answers[i] ? answerWeight : 1;
    weights[i] = w;
    total += w;
  }
  if (total > 0) for (let i = 0; i < weights.length; i++) weights[i] = weights[i]! / total;
  return weights;
}

/** Runs one stage; see the file's comment for fresh / fork / resume. */
export async function train(opts: TrainOptions): Promise<TrainResult> {
  const { pd } = opts;
  const say = opts.log ?? (() => {});
  const start = await resolveStart(opts);
  const cfg = start.config;
  const B = cfg.batchSize;
  const T = cfg.model.context;

  // ---- model, restored from a checkpoint when there is one
  const model = (opts.createModel ?? createModel)(cfg);
  const resumed = start.origin?.kind === 'resume';
  if (start.loaded) restoreInto(model, start.loaded, { optimizer: resumed });
  const startStep = resumed ? start.origin!.checkpoint.step : 0;
  const dataRng = resumed ? new Rng(JSON.parse(start.loaded!.metadata.data_rng ?? 'null') as number[]) : new Rng(deriveSeed(cfg.data.seed, 'train-batches'));

  // ---- data, registered as artifacts
  const trainData = buildMix(cfg.data, cfg.model.vocab, 'train');
  const heldout = buildMix(cfg.data, cfg.model.vocab, 'heldout');
  const mixName = cfg.data.name ?? `${cfg.name}-mix`;
  const data = await registerData(pd, cfg.project, cfg.data, cfg.model.vocab, mixName, trainData.corpora);

  // ---- the run
  const parameters = parameterCount(model);
  const environment = { trainer: TRAINER, backend: model.backend, backend_mode: cfg.backend, model: { ...cfg.model }, parameters };
  const inputs = [
    { artifactId: data.mixId, role: 'train-mix' },
    { artifactId: data.evalsetId, role: 'eval-set' },
  ];
  const origin = start.origin;
  const runInput: StartRunInput = {
    project: cfg.project,
    name: cfg.name,
    kind: cfg.kind,
    hyperparameters: hyperparametersOf(cfg),
    inputs,
    tags: resumed ? [...new Set([...cfg.tags, 'resumed'])] : cfg.tags,
    codeVersion: TRAINER,
    environment,
  };
  if (origin?.runId) {
    runInput.forkOf = { runId: origin.runId, checkpointId: origin.checkpoint.artifactId, step: origin.checkpoint.step, inheritHyperparameters: false };
  } else if (origin) {
    inputs.unshift({ artifactId: origin.checkpoint.artifactId, role: 'init' });
  }
  const run = await pd.startRun(runInput);
  if (runInput.forkOf) {
    // A fork cannot declare an environment (the API's fork takes none): keep it in the audit log as a note.
    await run.note(`environment: ${JSON.stringify(environment)}`, TRAINER);
  }
  if (origin?.kind === 'resume') {
    await pd.api.runs.note.mutate({
      runId: origin.runId,
      eventId: randomUUID(),
      text: `resumed as run ${run.id} from checkpoint ${origin.checkpoint.name} (step ${origin.checkpoint.step})`,
      author: TRAINER,
    });
  }
  say(`run ${run.id.slice(0, 8)}  ${cfg.name} (${cfg.kind}) in project ${cfg.project}: ${parameters.toLocaleString('en-US')} parameters, backend ${model.backend}`);
  if (origin) say(`  ${describeOrigin(origin)}`);
  say(`  data: ${mixName} (${cfg.data.sources.map((s) => `${s.name} ${s.weight}`).join(', ')}); ${B}×${T} tokens a step, steps ${startStep}→${cfg.steps}`);

  // ---- the loop
  const checkpoints: CheckpointRecord[] = [];
  const progress = opts.progress ? new ProgressBar(opts.progress, { label: cfg.name, total: cfg.steps, start: startStep }) : null;
  const saveAt = async (done: number) => {
    checkpoints.push(
      await saveRunCheckpoint(run, model, {
        outputDir: cfg.outputDir,
        name: `${cfg.name}@${done}`,
        step: done,
        metadata: { config: JSON.stringify(cfg), data_rng: JSON.stringify(dataRng.state()) },
      }),
    );
  };

  let firstLoss = NaN;
  let lastLoss = NaN;
  let evalLoss = NaN;
  try {
    let windowStart = performance.now();
    let windowTokens = 0;
    for (let step = startStep; step < cfg.steps; step++) {
      if (cfg.evalEvery > 0 && step % cfg.evalEvery === 0) {
        evalLoss = estimateLoss(model, heldout.mix, cfg);
        run.log({ 'eval/loss': evalLoss }, step);
      }
      const lr = getLr(step, cfg);
      const batch = getBatch(trainData.mix, B, T, dataRng); // inputs, targets (B, T)
      const loss = model.forwardBackward(batch.inputs, batch.targets, B, T, lossWeights(batch, cfg.answerWeight));
      if (!Number.isFinite(loss)) throw new Error(`train/loss is ${loss} at step ${step}`);
      const gradNorm = model.step(lr, step + 1, cfg.optimizer);
      if (step === startStep) firstLoss = loss;
      lastLoss = loss;
      windowTokens += B * T;
      if ((step - startStep) % cfg.logEvery === 0 || step === cfg.steps - 1) {
        const now = performance.now();
        const tokensPerS = windowTokens / Math.max(1e-6, (now - windowStart) / 1000);
        windowStart = now;
        windowTokens = 0;
        run.log({ 'train/loss': loss, lr, grad_norm: gradNorm, tokens_per_s: tokensPerS }, step);
      }
      progress?.update({ step: step + 1, loss, evalLoss: Number.isNaN(evalLoss) ? undefined : evalLoss, tokens: B * T });
      const done = step + 1;
      if ((cfg.checkpointEvery > 0 && done % cfg.checkpointEvery === 0) || done === cfg.steps) await saveAt(done);
      await opts.onStep?.(step, loss);
      await new Promise((resolve) => setImmediate(resolve)); // lets logged points go out, and signals in
    }
    evalLoss = estimateLoss(model, heldout.mix, cfg);
    run.log({ 'eval/loss': evalLoss }, cfg.steps);
    progress?.update({ step: cfg.steps, evalLoss, tokens: 0 });
    progress?.finish();
    await opts.onEnd?.({ run, model, config: cfg, step: cfg.steps });
    await run.finish();
  } catch (err) {
    progress?.finish();
    await failQuietly(run, err);
    throw err;
  }
  const last = checkpoints.at(-1);
  say(`done: ${cfg.name} steps ${startStep}→${cfg.steps}, train/loss ${firstLoss.toFixed(4)} → ${lastLoss.toFixed(4)}, eval/loss ${evalLoss.toFixed(4)}`);
  if (last) say(`  checkpoint ${last.name} ${last.digest.slice(0, 19)}… ${last.path}`);
  return { runId: run.id, name: cfg.name, project: cfg.project, config: cfg, startStep, steps: cfg.steps, parameters, firstLoss, lastLoss, evalLoss, checkpoints, origin, model };
}

/**
 * Saves the model (weights and optimizer state) as a content-addressed file in
 * `outputDir` and records it as the run's checkpoint at `step`. `metadata`
 * goes into the file's header (a stage's config, its data stream's state).
 */
export async function saveRunCheckpoint(
  run: Run,
  model: Model,
  opts: { outputDir: string; name: string; step: number; metadata?: Record<string, string> },
): Promise<CheckpointRecord> {
  model.syncToHost?.();
  const saved = await saveCheckpoint(path.resolve(opts.outputDir), [...model.parameters(), ...model.optimizerState()], {
    format: CHECKPOINT_FORMAT,
    run: run.id, // provenance; also keeps two runs that reach the same weights from sharing one checkpoint artifact
    step: String(opts.step),
    backend: model.backend,
    ...opts.metadata,
  });
  const { artifactId } = await run.checkpoint({ step: opts.step, digest: saved.digest, manifest: saved.manifest, path: saved.path, bytes: saved.bytes, name: opts.name });
  return { step: opts.step, artifactId, digest: saved.digest, path: saved.path, name: opts.name };
}

/** Loads a recorded checkpoint's weights (and, with `optimizer`, its AdamW state) into a model. */
export async function loadRunCheckpoint(model: Model, checkpoint: CheckpointRecord, opts: { optimizer?: boolean } = {}): Promise<LoadedCheckpoint> {
  const loaded = await loadRecorded(checkpoint);
  restoreInto(model, loaded, opts);
  return loaded;
}

/** Writes a loaded checkpoint's weights (and, with `optimizer`, its AdamW state) into the model, then onto its device. */
function restoreInto(model: Model, loaded: LoadedCheckpoint, opts: { optimizer?: boolean }): void {
  const what = `checkpoint ${loaded.path}`;
  copyInto(model.parameters(), loaded.tensors, what);
  if (opts.optimizer) copyInto(model.optimizerState(), loaded.tensors, what);
  model.syncFromHost?.();
}

async function failQuietly(run: Run, err: unknown): Promise<void> {
  try {
    await run.fail(err);
  } catch {
    // already ended (a signal handler failed it first), or the store is gone: the original error is what matters
  }
}

function describeOrigin(o: Origin): string {
  switch (o.kind) {
    case 'resume':
      return `resuming run ${o.runId.slice(0, 8)} (${o.runName}) from ${o.checkpoint.name} at step ${o.checkpoint.step}; the crashed run stays failed`;
    case 'fork':
      return `forked from run ${o.runId.slice(0, 8)} (${o.runName}) at ${o.checkpoint.name} (step ${o.checkpoint.step}): weights only, fresh optimizer`;
    case 'init':
      return `initialised from ${o.checkpoint.path}${o.runId ? ` (checkpoint ${o.checkpoint.name} of run ${o.runId.slice(0, 8)})` : ''}`;
    default: {
      const unknown: never = o;
      return String(unknown);
    }
  }
}

// ---------------------------------------------------------------- where a stage starts

interface Start {
  config: TrainConfig;
  origin: Origin | null;
  loaded: LoadedCheckpoint | null;
}

async function resolveStart(opts: TrainOptions): Promise<Start> {
  const { pd } = opts;
  const set = opts.set ?? [];
  if (opts.resume && opts.fork) throw new Error('resume or fork, not both');
  if (opts.resume) {
    if (opts.config) throw new Error("a resume goes on with the crashed run's own config (kept in its checkpoint): change fields with set, or fork the run instead");
    const parent = await pd.run(opts.resume);
    if (parent.status === 'completed') throw new Error(`run ${parent.id} (${parent.name}) completed; there is nothing to resume (fork it to train on)`);
    const checkpoint = await findCheckpoint(pd, parent.id);
    const loaded = await loadRecorded(checkpoint);
    const config = configOf(loaded, set);
    if (checkpoint.step >= config.steps) throw new Error(`nothing to resume: checkpoint ${checkpoint.name} is at step ${checkpoint.step} and the stage has ${config.steps} steps (raise them with set steps=N)`);
    if (parent.status !== 'failed') {
      // Left running by a process that died without saying so (killed, power lost): record that it stopped.
      const stale = await pd.resumeRun(parent.id);
      await stale.fail(`interrupted: the process stopped without finishing; resumed from checkpoint ${checkpoint.name} (step ${checkpoint.step})`);
    }
    return { config, loaded, origin: { kind: 'resume', runId: parent.id, runName: parent.name, checkpoint } };
  }
  if (opts.fork) {
    const parent = await pd.run(opts.fork.run);
    const checkpoint = await findCheckpoint(pd, parent.id, opts.fork.checkpoint);
    const loaded = await loadRecorded(checkpoint);
    const config = opts.config ?? configOf(loaded, set);
    if (config.init.checkpoint) throw new Error('a fork starts from the parent checkpoint: drop init.checkpoint from the config');
    return { config, loaded, origin: { kind: 'fork', runId: parent.id, runName: parent.name, checkpoint } };
  }
  if (!opts.config) throw new Error('no config: give one (or resume / fork a run)');
  const config = opts.config;
  if (!config.init.checkpoint) return { config, loaded: null, origin: null };
  return initFromFile(pd, config, config.init.checkpoint);
}

/** The config a checkpoint was trained with, with `set` applied. */
function configOf(loaded: LoadedCheckpoint, set: readonly string[]): TrainConfig {
  const source = `config of checkpoint ${loaded.path}`;
  if (!loaded.metadata.config) throw new Error(`checkpoint ${loaded.path} carries no config: give one`);
  const raw = JSON.parse(loaded.metadata.config) as unknown;
  return parseConfig(set.length ? applyOverrides(raw, set) : raw, set.length ? `${source} (with ${set.join(',')})` : source);
}

async function loadRecorded(checkpoint: CheckpointRecord): Promise<LoadedCheckpoint> {
  const loaded = await loadCheckpoint(checkpoint.path, { digest: checkpoint.digest });
  if (loaded.metadata.format !== CHECKPOINT_FORMAT) throw new Error(`checkpoint ${checkpoint.path} is not a ${CHECKPOINT_FORMAT} file (format ${JSON.stringify(loaded.metadata.format)})`);
  return loaded;
}

/**
 * A run's checkpoint, from its produced edges: the last one, or the one
 * `which` names (a step, a name, an artifact id or digest prefix).
 */
export async function findCheckpoint(pd: Pedigree, runId: string, which?: string): Promise<CheckpointRecord> {
  const edges = (await pd.api.runs.edges.query({ runId })).filter((e) => e.direction === 'produced' && e.role === 'checkpoint');
  const records: CheckpointRecord[] = [];
  for (const e of edges) {
    const a = await pd.api.artifacts.get.query({ artifactId: e.artifactId });
    records.push({ step: e.step ?? 0, artifactId: a.id, digest: a.digest, path: String(a.spec.path ?? ''), name: a.name });
  }
  records.sort((a, b) => a.step - b.step);
  if (!records.length) {
    const view = await pd.run(runId);
    const parent = view.forkedFromRunId ? `; it started from run ${view.forkedFromRunId}'s checkpoint: resume or fork that run instead` : '';
    throw new Error(`run ${runId} (${view.name}) saved no checkpoint to start from${parent}`);
  }
  let found: CheckpointRecord | undefined;
  if (which === undefined) found = records.at(-1);
  else if (/^\d+$/.test(which)) found = records.find((r) => r.step === Number(which));
  else {
    const hex = which.replace(/^sha256:/, '');
    found = records.find((r) => r.name === which) ?? records.find((r) => r.artifactId.startsWith(which) || (hex.length >= 6 && r.digest.startsWith(`sha256:${hex}`)));
  }
  if (!found) throw new Error(`run ${runId} has no checkpoint ${JSON.stringify(which)}; it has ${records.map((r) => `${r.name} (step ${r.step})`).join(', ')}`);
  if (!found.path) throw new Error(`checkpoint ${found.name} was recorded without a file path`);
  return found;
}

/**
 * `init.checkpoint`: weights from a file. When the store knows the file (by
 * digest) as a run's checkpoint, the new run is forked from that run, so the
 * lineage holds; otherwise the file is registered as a checkpoint artifact
 * and used as the `init` input.
 */
async function initFromFile(pd: Pedigree, config: TrainConfig, file: string): Promise<Start> {
  const loaded = await loadCheckpoint(path.resolve(file));
  const step = Number(loaded.metadata.step ?? 0);
  const known = (await pd.api.artifacts.list.query({ project: config.project, kind: 'checkpoint' }).catch(() => [])).find((a) => a.digest === loaded.digest);
  if (known?.producedBy) {
    const parent = await pd.run(known.producedBy);
    const checkpoint = { step, artifactId: known.id, digest: known.digest, path: loaded.path, name: known.name };
    return { config, loaded, origin: { kind: 'fork', runId: parent.id, runName: parent.name, checkpoint } };
  }
  const name = path.basename(file);
  const { artifactId } = known
    ? { artifactId: known.id }
    : await pd.registerArtifact({ project: config.project, name, digest: loaded.digest, spec: { kind: 'checkpoint', manifest: loaded.manifest, path: loaded.path, bytes: loaded.bytes } });
  return { config, loaded, origin: { kind: 'init', runId: null, checkpoint: { step, artifactId, digest: loaded.digest, path: loaded.path, name } } };
}
