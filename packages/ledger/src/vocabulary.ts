import { z } from 'zod';

/**
 * The words every package shares, defined once: run and artifact kinds, the
 * data-filter schema, the data-mix weight tolerance, the spelling of NaN and
 * ±Infinity, and the limits the client keeps to before it sends (the other
 * limits stand beside their schemas in events.ts). A module of its own
 * (`@pedigree/ledger/vocabulary`), free of the store, so the client and,
 * through it, the trainer can import it without loading the database code.
 * events.ts re-exports it.
 */

export const MAX_KEY = 250;
/** Points in one MetricsLogged event: one call's batch (the client splits its buffer at this size). */
export const MAX_POINTS_PER_BATCH = 50_000;
/** A failed run's error text (RunFailed; the client cuts a longer reason to this). */
export const MAX_ERROR = 10_000;

/** `data`: a data pipeline's run, as another producer reported it (OpenLineage). */
export const RUN_KINDS = ['pretrain', 'midtrain', 'sft', 'dpo', 'pts', 'eval', 'data', 'custom'] as const;
export type RunKind = (typeof RUN_KINDS)[number];
/** `file`: a file a run uploaded (MLflow's artifact store), stored by its SHA-256. */
export const ARTIFACT_KINDS = ['dataset', 'datamix', 'checkpoint', 'evalset', 'report', 'file'] as const;
export type ArtifactKind = (typeof ARTIFACT_KINDS)[number];
/**
 * How far a data mix's weights may sum from 1: decimal weights such as 0.7 +
 * 0.2 + 0.1 are not exact in binary (they sum to 0.9999999999999999), and no
 * mix is meant to differ from 1 by a millionth.
 */
export const WEIGHT_TOLERANCE = 1e-6;

/** JSON has no NaN or ±Infinity: events (and chunk digests, see chunks.ts) spell them as these strings. */
export const NON_FINITE = ['NaN', 'Infinity', '-Infinity'] as const;
/** A metric value as events carry it. */
export type MetricValueJson = number | (typeof NON_FINITE)[number];

/** A metric value as a number again: NaN and ±Infinity from their spelling. */
export function metricNumber(v: MetricValueJson | number): number {
  return typeof v === 'number' ? v : Number(v);
}

/** A metric value as events carry it: non-finite values spelled out. */
export function metricJson(v: number): MetricValueJson {
  if (Number.isFinite(v)) return v === 0 ? 0 : v; // no -0: JSON cannot carry it
  return Number.isNaN(v) ? 'NaN' : v > 0 ? 'Infinity' : '-Infinity';
}

/** Whether `v` is one of the spellings of NaN and ±Infinity. */
export function isNonFinite(v: unknown): v is (typeof NON_FINITE)[number] {
  return (NON_FINITE as readonly unknown[]).includes(v);
}

/** Which documents of a data-mix component are drawn, and how often (the trainer's data mixes use it too, less `tags`). */
export const DataFilter = z
  .object({
    /** Drop documents shorter than this. */
    minTokens: z.number().int().nonnegative().optional(),
    /** Drop documents longer than this. */
    maxTokens: z.number().int().nonnegative().optional(),
    /** Upweight documents longer than `tokens` by `factor` (drawn `factor`× as often). */
    upweight: z.object({ tokens: z.number().int().nonnegative(), factor: z.number().positive() }).strict().optional(),
    tags: z.array(z.string().max(MAX_KEY)).optional(),
  })
  .strict();
export type DataFilter = z.infer<typeof DataFilter>;
