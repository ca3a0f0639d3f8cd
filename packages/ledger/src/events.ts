import { z } from 'zod';

/**
 * Every event type Pedigree stores, declared once. A stored event's shape
 * never changes: to change one, bump its version, keep the old schema, and
 * add an upcaster from the old version (see `upcasters`).
 */

export const RUN_KINDS = ['pretrain', 'midtrain', 'sft', 'dpo', 'pts', 'eval', 'custom'] as const;
export const ARTIFACT_KINDS = ['dataset', 'datamix', 'checkpoint', 'evalset', 'report'] as const;
export const MAX_NAME = 200;
export const MAX_KEY = 250;
export const MAX_POINTS_PER_BATCH = 50_000;

const Uuid = z.uuid();
const Name = z.string().trim().min(1).max(MAX_NAME);
const Key = z.string().min(1).max(MAX_KEY).regex(/^[\w.\-/:@ ]+$/, 'use letters, digits, spaces and _ . - / : @');
const Step = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const Digest = z.string().regex(/^sha256:[0-9a-f]{64}$/, 'expected sha256:<64 hex>');

/** JSON values, finite numbers only. */
export type Json = string | number | boolean | null | Json[] | { [k: string]: Json };
export const JsonValue: z.ZodType<Json> = z.lazy(() =>
  z.union([z.string(), z.number().refine(Number.isFinite, 'numbers must be finite'), z.boolean(), z.null(), z.array(JsonValue), z.record(z.string(), JsonValue)]),
);

/** A metric value: a finite number, or NaN/±Infinity spelled out (allowed only when the logger opts in). */
export const MetricValue = z.union([z.number().refine(Number.isFinite, 'metric values must be finite (pass allowNonFinite to log NaN/Infinity)'), z.enum(['NaN', 'Infinity', '-Infinity'])]);

export const MetricPointSchema = z.object({
  key: Key,
  step: Step,
  value: MetricValue,
  /** Wall time, ms since the epoch. */
  time: z.number().finite().nonnegative(),
});

export const DataFilter = z
  .object({
    minTokens: z.number().int().nonnegative().optional(),
    maxTokens: z.number().int().nonnegative().optional(),
    /** Upweight documents longer than `tokens` by `factor`. */
    upweight: z.object({ tokens: z.number().int().nonnegative(), factor: z.number().positive() }).optional(),
    tags: z.array(z.string().max(MAX_KEY)).optional(),
  })
  .strict();

export const DatamixComponentSchema = z.object({
  artifactId: Uuid,
  weight: z.number().finite().gt(0).lte(1),
  filter: DataFilter.default({}),
});

const ArtifactSpec = z.discriminatedUnion('kind', [
  z.object({
    kind: z.literal('dataset'),
    source: z.string().min(1).max(MAX_NAME),
    params: z.record(z.string(), JsonValue).default({}),
    docs: z.number().int().nonnegative().optional(),
    tokens: z.number().int().nonnegative().optional(),
    lengthHistogram: z.array(z.object({ upTo: z.number().int().positive(), count: z.number().int().nonnegative() })).optional(),
  }),
  z.object({ kind: z.literal('datamix'), components: z.array(DatamixComponentSchema).min(1).max(256) }),
  z.object({
    kind: z.literal('checkpoint'),
    manifest: z.record(z.string(), z.array(z.number().int().nonnegative())).default({}),
    path: z.string().max(4096).optional(),
    bytes: z.number().int().nonnegative().optional(),
  }),
  z.object({ kind: z.literal('evalset'), source: z.string().min(1).max(MAX_NAME), params: z.record(z.string(), JsonValue).default({}) }),
  z.object({ kind: z.literal('report'), format: z.string().max(50).default('markdown'), path: z.string().max(4096).optional() }),
]);
export type ArtifactSpec = z.infer<typeof ArtifactSpec>;
export { ArtifactSpec as ArtifactSpecSchema };

export const EventSchemas = {
  ProjectCreated: { version: 1, schema: z.object({ projectId: Uuid, name: Name, description: z.string().max(2000).optional() }) },
  RunCreated: {
    version: 1,
    schema: z.object({
      runId: Uuid,
      projectId: Uuid,
      name: Name,
      kind: z.enum(RUN_KINDS),
      codeVersion: z.string().max(MAX_NAME).optional(),
      environment: z.record(z.string(), JsonValue).default({}),
    }),
  },
  RunForked: { version: 1, schema: z.object({ fromRunId: Uuid, fromArtifactId: Uuid.optional(), step: Step.optional() }) },
  HyperparametersDeclared: { version: 1, schema: z.object({ values: z.record(Key, JsonValue) }) },
  HyperparameterChanged: { version: 1, schema: z.object({ key: Key, value: JsonValue, step: Step, reason: z.string().max(2000).optional() }) },
  InputUsed: { version: 1, schema: z.object({ artifactId: Uuid, role: Key, step: Step.optional() }) },
  RunStarted: { version: 1, schema: z.object({}) },
  MetricsLogged: { version: 1, schema: z.object({ points: z.array(MetricPointSchema).min(1).max(MAX_POINTS_PER_BATCH) }) },
  CheckpointSaved: {
    version: 1,
    schema: z.object({ artifactId: Uuid, name: Name, digest: Digest, step: Step, spec: ArtifactSpec }),
  },
  OutputProduced: { version: 1, schema: z.object({ artifactId: Uuid, role: Key, step: Step.optional() }) },
  EvalRecorded: {
    version: 1,
    schema: z.object({
      suite: Key,
      task: Key,
      contextLength: z.number().int().positive().optional(),
      score: z.number().finite(),
      n: z.number().int().nonnegative().optional(),
      step: Step.optional(),
    }),
  },
  RunCompleted: { version: 1, schema: z.object({}) },
  RunFailed: { version: 1, schema: z.object({ error: z.string().min(1).max(10_000) }) },
  ArtifactRegistered: { version: 1, schema: z.object({ artifactId: Uuid, projectId: Uuid, name: Name, digest: Digest, spec: ArtifactSpec }) },
  TagAdded: { version: 1, schema: z.object({ tag: Key }) },
  NoteAdded: { version: 1, schema: z.object({ text: z.string().min(1).max(10_000), author: z.string().max(MAX_NAME).optional() }) },
} as const;

export type EventType = keyof typeof EventSchemas;
export type EventData<T extends EventType> = z.infer<(typeof EventSchemas)[T]['schema']>;
export type EventInputData<T extends EventType> = z.input<(typeof EventSchemas)[T]['schema']>;

export const EVENT_TYPES = Object.keys(EventSchemas) as EventType[];

/** Old versions of an event, upcast to the current one when read. None yet: the first versions are current. */
export const upcasters: { [T in EventType]?: Record<number, (data: unknown) => unknown> } = {};

export interface EventMetadata {
  actor?: string;
  client?: string;
  /** Free-form correlation (e.g. a request id). */
  correlationId?: string;
}

/** An event as a caller proposes it. */
export type NewEvent = {
  [T in EventType]: Readonly<{ type: T; data: EventInputData<T>; eventId?: string; metadata?: EventMetadata }>;
}[EventType];

/** An event as stored. */
export type StoredEvent = {
  [T in EventType]: Readonly<{
    position: number;
    streamId: string;
    streamVersion: number;
    eventId: string;
    projectId: string;
    type: T;
    schemaVersion: number;
    data: EventData<T>;
    metadata: EventMetadata;
    recordedAt: Date;
    prevHash: string;
    hash: string;
  }>;
}[EventType];

export type StoredEventOf<T extends EventType> = Extract<StoredEvent, { type: T }>;

export const streamIds = {
  project: (id: string) => `project-${id}`,
  run: (id: string) => `run-${id}`,
  artifact: (id: string) => `artifact-${id}`,
};

/** Parses an event's data against its declared schema; throws zod's error. */
export function parseEventData<T extends EventType>(type: T, data: unknown): EventData<T> {
  const def = EventSchemas[type];
  if (!def) throw new Error(`unknown event type ${String(type)}`);
  return def.schema.parse(data) as EventData<T>;
}

export function upcast(type: EventType, schemaVersion: number, data: unknown): unknown {
  let v = schemaVersion;
  let d = data;
  const current = EventSchemas[type].version;
  while (v < current) {
    const up = upcasters[type]?.[v];
    if (!up) throw new Error(`no upcaster for ${type} v${v}`);
    d = up(d);
    v++;
  }
  return d;
}
