import { z } from 'zod';
import type { MetricPointData } from './chunks.ts';
import { ARTIFACT_KINDS, DataFilter, isNonFinite, MAX_ERROR, MAX_KEY, MAX_POINTS_PER_BATCH, NON_FINITE, RUN_KINDS } from './vocabulary.ts';

export * from './vocabulary.ts';

/**
 * Every event type Pedigree stores, declared once. A stored event's shape
 * never changes: to change one, bump its version, keep the old schema, and
 * add an upcaster from the old version (see `upcasters`).
 *
 * The vocabulary the events are written in (run and artifact kinds, the
 * data-filter schema, the data-mix weight tolerance, the spelling of NaN and
 * ±Infinity) is defined beside them, in vocabulary.ts, and only there: every
 * other package imports it (the dashboard through @pedigree/api, the client
 * from @pedigree/ledger/vocabulary, the trainer through the client; see
 * test/architecture.test.ts). test/vocabulary.test.ts holds them to it.
 */

/** A run's lifecycle: deleted runs and projects stay in the ledger, hidden from default listings, and can be restored. */
export const LIFECYCLES = ['active', 'deleted'] as const;
/** Longest tag value (MLflow's own limit). */
export const MAX_TAG_VALUE = 8000;
export const MAX_NAME = 200;
/** A project's description (ProjectCreated). */
export const MAX_DESCRIPTION = 2000;
/** Why a hyperparameter changed (HyperparameterChanged). */
export const MAX_REASON = 2000;
/** A note's text (NoteAdded). */
export const MAX_NOTE = 10_000;
/** A file path an artifact names (checkpoint, report, uploaded file). */
export const MAX_PATH = 4096;
/** Latest time, ms since the epoch: the last a JavaScript Date can hold. */
export const MAX_TIME = 8.64e15;
/** An OpenLineage event's eventTime, as the producer wrote it (LineageEventReceived). */
export const MAX_LINEAGE_EVENT_TIME = 100;
/** Stream versions are INTEGER columns. */
export const MAX_STREAM_VERSION = 2 ** 31 - 1;

const Uuid = z.uuid();
const Name = z.string().trim().min(1).max(MAX_NAME);
const KEY_PATTERN = /^[\w.\-/:@ ]+$/;
const Key = z.string().min(1).max(MAX_KEY).regex(KEY_PATTERN, 'use letters, digits, spaces and _ . - / : @');
const Step = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
/** ms since the epoch. */
const Time = z.number().int().nonnegative().max(MAX_TIME);
const Digest = z.string().regex(/^sha256:[0-9a-f]{64}$/, 'expected sha256:<64 hex>');

/** JSON values, finite numbers only. */
export type Json = string | number | boolean | null | Json[] | { [k: string]: Json };
export const JsonValue: z.ZodType<Json> = z.lazy(() =>
  z.union([z.string(), z.number().refine(Number.isFinite, 'numbers must be finite'), z.boolean(), z.null(), z.array(JsonValue), z.record(z.string(), JsonValue)]),
);


/** A metric value: a finite number, or NaN/±Infinity spelled out (allowed only when the logger opts in). */
export const MetricValue = z.union([z.number().refine(Number.isFinite, 'metric values must be finite (pass allowNonFinite to log NaN/Infinity)'), z.enum(NON_FINITE)]);

/**
 * MetricsLogged's data when every point is valid, as its schema would parse
 * it (unknown fields dropped), checked in one plain loop; else null, and the
 * schema (which names what is wrong) takes it. Metric batches are the bulk
 * of what is written: the schema costs ~1.5 µs a point, this a tenth of it.
 */
export function validMetricBatch(data: unknown): { points: MetricPointData[] } | null {
  const points = (data as { points?: unknown } | null)?.points;
  if (!Array.isArray(points) || points.length < 1 || points.length > MAX_POINTS_PER_BATCH) return null;
  const out = new Array<MetricPointData>(points.length);
  const valid = new Set<string>(); // the keys found valid: a batch repeats a few keys, often interleaved
  for (let i = 0; i < points.length; i++) {
    const p = points[i] as { key?: unknown; step?: unknown; value?: unknown; time?: unknown } | null;
    if (typeof p !== 'object' || p === null) return null;
    const { key, step, value, time } = p;
    if (typeof key !== 'string') return null;
    if (!valid.has(key)) {
      if (key.length < 1 || key.length > MAX_KEY || !KEY_PATTERN.test(key)) return null;
      valid.add(key);
    }
    if (!Number.isSafeInteger(step) || (step as number) < 0) return null;
    if (!(typeof value === 'number' ? Number.isFinite(value) : isNonFinite(value))) return null;
    if (!(typeof time === 'number' && Number.isFinite(time) && time >= 0)) return null;
    out[i] = { key, step: step as number, value: value as MetricPointData['value'], time };
  }
  return { points: out };
}

export const MetricPointSchema = z.object({
  key: Key,
  step: Step,
  value: MetricValue,
  /** Wall time, ms since the epoch. */
  time: z.number().finite().nonnegative(),
});


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
    path: z.string().max(MAX_PATH).optional(),
    bytes: z.number().int().nonnegative().optional(),
  }),
  z.object({ kind: z.literal('evalset'), source: z.string().min(1).max(MAX_NAME), params: z.record(z.string(), JsonValue).default({}) }),
  z.object({ kind: z.literal('report'), format: z.string().max(50).default('markdown'), path: z.string().max(MAX_PATH).optional() }),
  z.object({ kind: z.literal('file'), path: z.string().min(1).max(MAX_PATH), bytes: z.number().int().nonnegative() }),
]);
export type ArtifactSpec = z.infer<typeof ArtifactSpec>;
export { ArtifactSpec as ArtifactSpecSchema };

export const EventSchemas = {
  ProjectCreated: { version: 1, schema: z.object({ projectId: Uuid, name: Name, description: z.string().max(MAX_DESCRIPTION).optional() }) },
  ProjectRenamed: { version: 1, schema: z.object({ name: Name }) },
  ProjectDeleted: { version: 1, schema: z.object({}) },
  ProjectRestored: { version: 1, schema: z.object({}) },
  ProjectTagSet: { version: 1, schema: z.object({ key: Key, value: z.string().max(MAX_TAG_VALUE) }) },
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
  HyperparameterChanged: { version: 1, schema: z.object({ key: Key, value: JsonValue, step: Step, reason: z.string().max(MAX_REASON).optional() }) },
  InputUsed: { version: 1, schema: z.object({ artifactId: Uuid, role: Key, step: Step.optional() }) },
  /** v2: `at`, the start time the client reported (ms since the epoch), when it did. */
  RunStarted: { version: 2, schema: z.object({ at: Time.optional() }) },
  /** v2: stored as columns, one chunk per key (chunks.ts); read back with its points grouped by key. v1 held its points inline. */
  MetricsLogged: { version: 2, schema: z.object({ points: z.array(MetricPointSchema).min(1).max(MAX_POINTS_PER_BATCH) }) },
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
      contextLength: z.number().int().positive().max(Number.MAX_SAFE_INTEGER).optional(),
      score: z.number().finite(),
      n: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER).optional(),
      step: Step.optional(),
    }),
  },
  /** v2: `at`, the end time the client reported. */
  RunCompleted: { version: 2, schema: z.object({ at: Time.optional() }) },
  /** v2: `at`, the end time the client reported; `killed`: stopped from outside (MLflow's KILLED), not by its own error. */
  RunFailed: { version: 2, schema: z.object({ error: z.string().min(1).max(MAX_ERROR), at: Time.optional(), killed: z.boolean().optional() }) },
  RunRenamed: { version: 1, schema: z.object({ name: Name }) },
  RunDeleted: { version: 1, schema: z.object({}) },
  RunRestored: { version: 1, schema: z.object({}) },
  /** A key–value tag (MLflow's tags). Plain labels are TagAdded. */
  TagSet: { version: 1, schema: z.object({ key: Key, value: z.string().max(MAX_TAG_VALUE) }) },
  TagRemoved: { version: 1, schema: z.object({ key: Key }) },
  /** A file the run uploaded, stored by content: the artifact (kind `file`) and a `produced` edge. */
  FileUploaded: { version: 1, schema: z.object({ artifactId: Uuid, path: z.string().min(1).max(MAX_PATH), digest: Digest, bytes: z.number().int().nonnegative() }) },
  /** An event another producer sent (OpenLineage RunEvent), kept as it came. */
  LineageEventReceived: {
    version: 1,
    schema: z.object({ format: z.literal('openlineage'), eventType: z.string().max(50), eventTime: z.string().max(MAX_LINEAGE_EVENT_TIME), event: z.record(z.string(), JsonValue) }),
  },
  ArtifactRegistered: { version: 1, schema: z.object({ artifactId: Uuid, projectId: Uuid, name: Name, digest: Digest, spec: ArtifactSpec }) },
  TagAdded: { version: 1, schema: z.object({ tag: Key }) },
  NoteAdded: { version: 1, schema: z.object({ text: z.string().min(1).max(MAX_NOTE), author: z.string().max(MAX_NAME).optional() }) },
} as const;

export type EventType = keyof typeof EventSchemas;
export type EventData<T extends EventType> = z.infer<(typeof EventSchemas)[T]['schema']>;
export type EventInputData<T extends EventType> = z.input<(typeof EventSchemas)[T]['schema']>;

export const EVENT_TYPES = Object.keys(EventSchemas) as EventType[];

/** Old versions of an event, upcast to the current one when read. */
export const upcasters: { [T in EventType]?: Record<number, (data: unknown) => unknown> } = {
  // v2 only added optional fields: a v1 event is a v2 event without them.
  MetricsLogged: { 1: (d) => d },
  RunStarted: { 1: (d) => d },
  RunCompleted: { 1: (d) => d },
  RunFailed: { 1: (d) => d },
};

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
