import { readFileSync } from 'node:fs';
import { DataFilter as StoredDataFilter, RUN_KINDS, WEIGHT_TOLERANCE } from '@pedigree/client';
import { z } from 'zod';
import { DataConfigSchema, GENERATORS, type DataSourceConfig } from './data/data.ts';
import type { GpuMode } from './kernels/backend.ts';

/**
 * One stage of training, as one typed config with its defaults written out
 * (nanoGPT's config block, validated). A JSON file gives only what differs;
 * `--set key=value` changes one field on top of it.
 */

/** The kinds of run the trainer records: the ledger's, less `data` (a data pipeline's run, which others report). */
const RunKind = z.enum(RUN_KINDS).exclude(['data']);
/** `bigram`: the plain-TypeScript reference model (src/model/reference-model.ts); `transformer`: the gpu.js decoder. */
export const ARCHS = ['bigram', 'transformer'] as const;
/**
 * Where the model's kernels run: `auto` takes PEDIGREE_GPU_MODE (src/env.ts), else lets
 * src/kernels/backend.ts pick the best gpu.js mode; a gpu.js mode forces it; `reference` forces the
 * plain-TypeScript ops.
 */
export const BACKEND_MODES = ['auto', 'reference', 'headlessgl', 'webasm', 'cpu'] as const satisfies readonly ('auto' | 'reference' | GpuMode)[];

const int = (min: number, max = Number.MAX_SAFE_INTEGER) => z.number().int().min(min).max(max);
const positive = () => z.number().finite().positive();

export const ModelConfigSchema = z
  .object({
    arch: z.enum(ARCHS).default('bigram'),
    vocab: int(32, 65_536).default(64), // V: tokens 0..16 are specials and digits (src/data/data.ts), the rest words
    layers: int(1, 64).default(2),
    dModel: int(1, 8192).default(64), // C
    heads: int(1, 256).default(4),
    context: int(2, 1 << 20).default(128), // T: tokens per training sequence
    ropeBase: positive().default(500), // RoPE θ base; Phi-4 raises it for long context (docs/trainer.md: ×25 at midtraining)
    seed: int(0, 0xffffffff).default(1337), // weight initialisation
  })
  .strict()
  .refine((m) => m.dModel % m.heads === 0, { message: 'dModel must be a multiple of heads', path: ['dModel'] });

export const OptimizerConfigSchema = z
  .object({
    lr: positive().default(3e-3), // peak learning rate, reached after warmup
    decay: z.enum(['linear', 'cosine']).default('linear'), // after warmup, down to minLr at the last step (Phi-4: linear)
    warmupSteps: int(0).default(20),
    minLr: z.number().finite().nonnegative().optional(), // default: lr / 10
    weightDecay: z.number().finite().nonnegative().default(0.1), // AdamW, on matrices only (not biases)
    beta1: z.number().min(0).lt(1).default(0.9),
    beta2: z.number().min(0).lt(1).default(0.95),
    eps: positive().default(1e-8),
    gradClip: z.number().finite().nonnegative().default(1), // global gradient norm; 0: no clipping
  })
  .strict()
  .transform((o) => ({ ...o, minLr: o.minLr ?? Number((o.lr / 10).toPrecision(12)) })) // toPrecision: 3e-4, not 0.00030000000000000003
  .refine((o) => o.minLr <= o.lr, { message: 'minLr must not exceed lr', path: ['minLr'] });

// The data sources' schemas live with the generators they name (data/data.ts).
export { DataConfigSchema, DataFilterSchema, DataSourceSchema, type DataConfig, type DataFilter, type DataSourceConfig } from './data/data.ts';

export const TrainConfigSchema = z
  .object({
    project: z.string().trim().min(1).max(200).default('pedigree-toy'),
    name: z.string().trim().min(1).max(200).default('pretrain'), // the run's name
    kind: RunKind.default('pretrain'),
    tags: z.array(z.string().min(1).max(250)).default([]),
    model: ModelConfigSchema.prefault({}),
    optimizer: OptimizerConfigSchema.prefault({}),
    steps: int(1).default(200), // optimizer steps in this stage
    batchSize: int(1, 4096).default(8), // B: sequences per step
    evalEvery: int(0).default(50), // steps between held-out evaluations (0: only at the end)
    evalBatches: int(1, 10_000).default(4), // held-out batches per evaluation
    checkpointEvery: int(0).default(100), // steps between checkpoints (0: only at the end)
    logEvery: int(1).default(1), // steps between logged train/loss points
    answerWeight: positive().default(1), // loss weight of answer tokens (values after ANSWER) against 1 for the rest, normalised; 1: plain LM loss
    data: DataConfigSchema,
    init: z.object({ checkpoint: z.string().min(1).optional() }).strict().prefault({}), // a checkpoint file to start from (weights only)
    outputDir: z.string().min(1).default('checkpoints'), // where checkpoint files go, named by digest (relative: to the working directory)
    backend: z.enum(BACKEND_MODES).default('auto'),
  })
  .strict()
  .refine((c) => c.optimizer.warmupSteps <= c.steps, { message: 'warmupSteps must not exceed steps', path: ['optimizer', 'warmupSteps'] })
  .refine((c) => c.answerWeight === 1 || c.model.arch !== 'bigram', { message: 'the bigram reference model takes no loss weights: answerWeight must be 1', path: ['answerWeight'] })
  .superRefine((c, ctx) => {
    // a generator's documents need enough words (e.g. distinct 1-token keys: vocab ≥ 2 × pairs + 17)
    const check = (sources: readonly DataSourceConfig[], path: (string | number)[]) =>
      sources.forEach((s, i) => {
        if (s.mix) return check(s.mix, [...path, i, 'mix']);
        const need = s.generator ? (GENERATORS[s.generator] as { minVocab?: (p: unknown) => number }).minVocab?.(s.params) : undefined;
        if (need !== undefined && c.model.vocab < need) {
          ctx.addIssue({ code: 'custom', message: `${s.generator} source ${s.name} needs a vocabulary of at least ${need}; model.vocab is ${c.model.vocab}`, path: [...path, i, 'params'] });
        }
      });
    check(c.data.sources, ['data', 'sources']);
  })
  .refine((c) => c.model.arch !== 'bigram' || c.backend === 'auto' || c.backend === 'reference', {
    message: 'the bigram reference model runs in plain TypeScript only: use backend "auto" or "reference"',
    path: ['backend'],
  });

export type TrainConfig = z.output<typeof TrainConfigSchema>;
export type TrainConfigInput = z.input<typeof TrainConfigSchema>;
export type ModelConfig = TrainConfig['model'];
export type OptimizerConfig = TrainConfig['optimizer'];

/** A config that does not validate: one line per bad field, each with its path. */
export class ConfigError extends Error {
  override name = 'ConfigError';
  constructor(
    readonly source: string,
    readonly issues: { path: string; message: string }[],
  ) {
    super(`${source}: ${issues.length === 1 ? 'bad config' : `${issues.length} problems`}:\n${issues.map((i) => `  ${i.path || '(top level)'}: ${i.message}`).join('\n')}`);
  }
}

/** Validates a config (as parsed JSON); `source` names it in errors (a file path, "checkpoint …"). */
export function parseConfig(raw: unknown, source = 'config'): TrainConfig {
  const parsed = TrainConfigSchema.safeParse(raw);
  if (parsed.success) return parsed.data;
  throw new ConfigError(
    source,
    parsed.error.issues.map((i) => ({ path: i.path.map(String).join('.'), message: i.message.replace(/^Invalid input: /, '') })),
  );
}

/**
 * `key.path=value` changes, applied to a raw config before validation.
 * Values are JSON where they parse as JSON (`3e-4`, `true`, `[1,2]`),
 * strings otherwise; array elements by index (`data.sources.0.weight=0.5`).
 */
export function applyOverrides(raw: unknown, assignments: readonly string[], source = '--set'): Record<string, unknown> {
  const root = structuredClone((raw ?? {}) as Record<string, unknown>);
  if (typeof root !== 'object' || Array.isArray(root)) throw new ConfigError(source, [{ path: '', message: 'a config is a JSON object' }]);
  for (const assignment of assignments) {
    const eq = assignment.indexOf('=');
    if (eq <= 0) throw new ConfigError(source, [{ path: assignment, message: 'expected key=value, e.g. optimizer.lr=3e-4' }]);
    const keys = assignment.slice(0, eq).trim().split('.');
    const text = assignment.slice(eq + 1);
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      value = text;
    }
    let node: Record<string, unknown> = root;
    for (const [i, key] of keys.entries()) {
      if (!key) throw new ConfigError(source, [{ path: keys.join('.'), message: 'empty key' }]);
      if (i === keys.length - 1) {
        node[key] = value;
        break;
      }
      const next = node[key];
      if (next === undefined || next === null) node[key] = {};
      else if (typeof next !== 'object') throw new ConfigError(source, [{ path: keys.slice(0, i + 1).join('.'), message: `is ${JSON.stringify(next)}, not an object` }]);
      node = node[key] as Record<string, unknown>;
    }
  }
  return root;
}

/** Splits one `--set` value into assignments: `a=1,b.c=[1,2]` (commas inside brackets, braces or quotes stay). */
export function splitAssignments(text: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let quoted = false;
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (ch === '"' && text[i - 1] !== '\\') quoted = !quoted;
    else if (!quoted && (ch === '[' || ch === '{')) depth++;
    else if (!quoted && (ch === ']' || ch === '}')) depth--;
    else if (!quoted && depth === 0 && ch === ',') {
      out.push(text.slice(start, i));
      start = i + 1;
    }
  }
  out.push(text.slice(start));
  return out.map((s) => s.trim()).filter(Boolean);
}

/** Reads a JSON config file, applies `set`, validates; errors name the file and each bad field. */
export function loadConfig(file: string, set: readonly string[] = []): TrainConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(file, [{ path: '', message: `cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` }]);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(file, [{ path: '', message: `not valid JSON: ${(err as Error).message}` }]);
  }
  return parseConfig(applyOverrides(raw, set), set.length ? `${file} (with --set ${set.join(',')})` : file);
}

/**
 * The hyperparameters a run declares: flat snake_case keys, as the rest of
 * Pedigree names them (see the sample lineage), so runs line up in a diff.
 * The data mix is not here: it is an input artifact.
 */
export function hyperparametersOf(cfg: TrainConfig): Record<string, string | number> {
  const m = cfg.model;
  const o = cfg.optimizer;
  return {
    arch: m.arch,
    vocab: m.vocab,
    layers: m.layers,
    d_model: m.dModel,
    heads: m.heads,
    context: m.context,
    rope_base: m.ropeBase,
    seed: m.seed,
    lr: o.lr,
    schedule: `warmup+${o.decay}`,
    warmup_steps: o.warmupSteps,
    min_lr: o.minLr,
    weight_decay: o.weightDecay,
    beta1: o.beta1,
    beta2: o.beta2,
    eps: o.eps,
    grad_clip: o.gradClip,
    steps: cfg.steps,
    batch: cfg.batchSize,
    eval_every: cfg.evalEvery,
    eval_batches: cfg.evalBatches,
    checkpoint_every: cfg.checkpointEvery,
    answer_weight: cfg.answerWeight,
    data_seed: cfg.data.seed,
  };
}
