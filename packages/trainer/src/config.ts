import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { GENERATORS, type GeneratorName } from './data/data.ts';
import type { GpuMode } from './kernels/backend.ts';

/**
 * One stage of training, as one typed config with its defaults written out
 * (nanoGPT's config block, validated). A JSON file gives only what differs;
 * `--set key=value` changes one field on top of it.
 */

export const RUN_KINDS = ['pretrain', 'midtrain', 'sft', 'dpo', 'pts', 'eval', 'custom'] as const;
/** `bigram`: the plain-TypeScript reference model (src/model/reference-model.ts); `transformer`: the gpu.js decoder. */
export const ARCHS = ['bigram', 'transformer'] as const;
/**
 * Where the model's kernels run: `auto` lets src/kernels/backend.ts pick the best gpu.js
 * mode (or PEDIGREE_GPU_MODE); a gpu.js mode forces it; `reference` forces the
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
    ropeBase: positive().default(500), // RoPE θ base; Phi-4 raises it for long context (RECIPE.md: ×25 at midtraining)
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

export const DataFilterSchema = z
  .object({
    minTokens: int(0).optional(), // drop documents shorter than this
    maxTokens: int(0).optional(), // drop documents longer than this
    upweight: z.object({ tokens: int(0), factor: positive() }).strict().optional(), // documents longer than `tokens` are drawn `factor`× as often
  })
  .strict();
export type DataFilter = z.infer<typeof DataFilterSchema>;

/** A source of training documents: a generator (a dataset), or a nested mix of sources (e.g. the 70% replay of the pretraining mix). */
export interface DataSourceConfig {
  name: string;
  weight: number;
  generator?: GeneratorName;
  params: Record<string, unknown>;
  docs: number;
  filter?: DataFilter;
  mix?: DataSourceConfig[];
  /** Generates this source (or, on a nested mix, its sources, as a top-level mix would) from this seed instead of one derived from the data seed. */
  seed?: number;
}

const WEIGHT_TOLERANCE = 1e-6;

/** What is wrong with one level of a mix: weights that do not sum to 1, names used twice. */
function mixIssues(sources: { name: string; weight: number }[]): { message: string; path: (string | number)[] }[] {
  const issues: { message: string; path: (string | number)[] }[] = [];
  const sum = sources.reduce((a, s) => a + s.weight, 0);
  if (Math.abs(sum - 1) > WEIGHT_TOLERANCE) {
    issues.push({ path: [], message: `weights must sum to 1, they sum to ${+sum.toFixed(9)} (${sources.map((s) => `${s.name} ${s.weight}`).join(', ')})` });
  }
  const seen = new Set<string>();
  for (const [i, s] of sources.entries()) {
    if (seen.has(s.name)) issues.push({ path: [i, 'name'], message: `two sources are named ${JSON.stringify(s.name)}` });
    seen.add(s.name);
  }
  return issues;
}

const GENERATOR_NAMES = Object.keys(GENERATORS) as [GeneratorName, ...GeneratorName[]];

export const DataSourceSchema: z.ZodType<DataSourceConfig, unknown> = z.lazy(() =>
  z
    .object({
      name: z.string().trim().min(1).max(200).regex(/^[\w.\-:@ ]+$/, 'use letters, digits, spaces and _ . - : @'),
      weight: z.number().finite().gt(0).lte(1), // share of training sequences drawn from this source
      generator: z.enum(GENERATOR_NAMES).optional(), // src/data/data.ts GENERATORS
      params: z.record(z.string(), z.unknown()).default({}), // the generator's own (checked against its schema)
      docs: int(1, 1_000_000).default(512), // documents generated for the training split
      filter: DataFilterSchema.optional(),
      mix: z.array(DataSourceSchema).min(1).max(256).optional(),
      seed: int(0, 0xffffffff).optional(), // e.g. a replay of the pretraining mix: its data seed, so the replay is the same data
    })
    .strict()
    .superRefine((s, ctx) => {
      if ((s.generator === undefined) === (s.mix === undefined)) {
        ctx.addIssue({ code: 'custom', message: 'give either a generator or a nested mix', path: [] });
        return;
      }
      if (s.mix) {
        if (s.filter) ctx.addIssue({ code: 'custom', message: 'filters apply to generator sources, not to a nested mix', path: ['filter'] });
        if (Object.keys(s.params).length) ctx.addIssue({ code: 'custom', message: 'a nested mix takes no params', path: ['params'] });
        for (const issue of mixIssues(s.mix)) ctx.addIssue({ code: 'custom', message: issue.message, path: ['mix', ...issue.path] });
        return;
      }
      const parsed = GENERATORS[s.generator!].params.safeParse(s.params);
      if (!parsed.success) for (const issue of parsed.error.issues) ctx.addIssue({ code: 'custom', message: issue.message, path: ['params', ...issue.path] });
    })
    .transform((s) => (s.generator ? { ...s, params: GENERATORS[s.generator].params.parse(s.params) as Record<string, unknown> } : s)),
);

export const DataConfigSchema = z
  .object({
    seed: int(0, 0xffffffff).default(1234), // generates every source's documents, and the held-out split
    name: z.string().trim().min(1).max(200).optional(), // the mix's artifact name (default: "<run name>-mix")
    sources: z.array(DataSourceSchema).min(1).max(256)
      .superRefine((sources, ctx) => {
        for (const issue of mixIssues(sources)) ctx.addIssue({ code: 'custom', message: issue.message, path: issue.path });
      }),
    heldoutDocs: int(1, 1_000_000).default(64), // documents per source in the held-out split (eval/loss)
  })
  .strict();

export const TrainConfigSchema = z
  .object({
    project: z.string().trim().min(1).max(200).default('pedigree-toy'),
    name: z.string().trim().min(1).max(200).default('pretrain'), // the run's name
    kind: z.enum(RUN_KINDS).default('pretrain'),
    tags: z.array(z.string().min(1).max(250)).default([]),
    model: ModelConfigSchema.prefault({}),
    optimizer: OptimizerConfigSchema.prefault({}),
    steps: int(1).default(200), // optimizer steps in this stage
    batchSize: int(1, 4096).default(8), // B: sequences per step
    evalEvery: int(0).default(50), // steps between held-out evaluations (0: only at the end)
    evalBatches: int(1, 10_000).default(4), // held-out batches per evaluation
    checkpointEvery: int(0).default(100), // steps between checkpoints (0: only at the end)
    logEvery: int(1).default(1), // steps between logged train/loss points
    data: DataConfigSchema,
    init: z.object({ checkpoint: z.string().min(1).optional() }).strict().prefault({}), // a checkpoint file to start from (weights only)
    outputDir: z.string().min(1).default('checkpoints'), // where checkpoint files go, named by digest (relative: to the working directory)
    backend: z.enum(BACKEND_MODES).default('auto'),
  })
  .strict()
  .refine((c) => c.optimizer.warmupSteps <= c.steps, { message: 'warmupSteps must not exceed steps', path: ['optimizer', 'warmupSteps'] })
  .refine((c) => c.model.arch !== 'bigram' || c.backend === 'auto' || c.backend === 'reference', {
    message: 'the bigram reference model runs in plain TypeScript only: use backend "auto" or "reference"',
    path: ['backend'],
  });

export type TrainConfig = z.output<typeof TrainConfigSchema>;
export type TrainConfigInput = z.input<typeof TrainConfigSchema>;
export type ModelConfig = TrainConfig['model'];
export type OptimizerConfig = TrainConfig['optimizer'];
export type DataConfig = TrainConfig['data'];

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
    data_seed: cfg.data.seed,
  };
}
