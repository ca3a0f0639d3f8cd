import { canonicalJson, MAX_EVENT_BYTES, MAX_LINEAGE_EVENT_TIME, MAX_TIME, type Json } from '@pedigree/ledger';
import { z } from 'zod';
import { badField, OpenLineageError } from './errors.ts';
import { OPENLINEAGE_EVENT_TYPES, type OpenLineageEventType } from './spec.ts';

/**
 * An incoming OpenLineage RunEvent, checked by the server itself (it cannot
 * read the official JSON schema at run time): the fields Pedigree acts on,
 * each as strictly as the schema states it (RFC 3339 date-times with an
 * offset, URIs, a UUID runId). Facets are other producers' business and are
 * kept as they came; only those Pedigree reads (parent, errorMessage, a
 * dataset's version) are looked into, and ignored when malformed.
 */

/** Inputs and outputs per event: each becomes an edge, and one event is appended as one batch (the ledger takes 1,000 events at a time). */
export const MAX_DATASETS = 400;
/** Nesting deeper than this is refused before anything walks it recursively. */
const MAX_DEPTH = 64;

/** RFC 3339 `date-time` (time-offset required; `t`/space and `z` as the RFC allows). */
const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?(?:[Zz]|([+-])(\d{2}):(\d{2}))$/;
/** RFC 3986: a scheme, then only URI characters (percent-escapes well formed). */
const URI = /^[A-Za-z][A-Za-z0-9+.-]*:(?:[A-Za-z0-9\-._~:/?#[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})*$/;
/** As the schema's `format: uuid` reads it: any 8-4-4-4-12 hex, optionally as a URN. */
const UUID = /^(?:urn:uuid:)?([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$/i;

/** An RFC 3339 date-time with offset, as ms since the epoch; null when it is not one. */
export function parseRfc3339(s: string): number | null {
  const m = RFC3339.exec(s);
  if (!m) return null;
  const [y, mo, d, h, mi, sec] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  const daysInMonth = new Date(Date.UTC(y, mo, 0)).getUTCDate();
  if (mo < 1 || mo > 12 || d < 1 || d > daysInMonth || h > 23 || mi > 59 || sec > 60) return null;
  const offH = m[9] === undefined ? 0 : Number(m[9]);
  const offM = m[10] === undefined ? 0 : Number(m[10]);
  if (offH > 23 || offM > 59) return null;
  const offset = (m[8] === '-' ? -1 : 1) * (offH * 60 + offM) * 60_000;
  const fraction = m[7] ? Math.floor(Number(`0${m[7]}`) * 1000) : 0;
  // A leap second (:60) is kept as the last millisecond of its minute.
  const ms = Date.UTC(y, mo - 1, d, h, mi, Math.min(sec, 59)) + (sec === 60 ? 999 : fraction) - offset;
  return ms >= 0 && ms <= MAX_TIME ? ms : null;
}

export const isUri = (s: string) => URI.test(s);

/** The bare, lower-case UUID; null when it is not one. */
export function normalizeUuid(s: string): string | null {
  const m = UUID.exec(s);
  return m ? m[1]!.toLowerCase() : null;
}

const required = (what: string) => (iss: { input?: unknown }) => (iss.input === undefined ? 'is required' : `must be ${what}`);
const str = () => z.string({ error: required('a string') });
const nonEmpty = () => str().min(1, 'must not be empty');
const uri = () => str().refine(isUri, 'must be a URI (RFC 3986, with a scheme)');
const facets = () => z.record(z.string(), z.looseObject({}), { error: 'must be an object of facets (each an object)' }).optional();
const obj = <T extends z.ZodRawShape>(shape: T) => z.looseObject(shape, { error: required('an object') });

const Dataset = obj({ namespace: nonEmpty(), name: nonEmpty(), facets: facets(), inputFacets: facets(), outputFacets: facets() });

const RunEventSchema = obj({
  eventType: z.enum(OPENLINEAGE_EVENT_TYPES, { error: `must be one of ${OPENLINEAGE_EVENT_TYPES.join(', ')}` }).optional(),
  eventTime: str()
    .max(MAX_LINEAGE_EVENT_TIME, 'is too long')
    .refine((s) => parseRfc3339(s) !== null, 'must be an RFC 3339 date-time with a time offset (e.g. 2024-05-01T12:00:00.000Z or …+02:00), at or after 1970'),
  producer: uri(),
  schemaURL: uri(),
  run: obj({ runId: str().refine((s) => normalizeUuid(s) !== null, 'must be a UUID'), facets: facets() }),
  job: obj({ namespace: nonEmpty(), name: nonEmpty(), facets: facets() }),
  inputs: z.array(Dataset, { error: 'must be an array of datasets' }).max(MAX_DATASETS, `at most ${MAX_DATASETS} datasets per event`).optional(),
  outputs: z.array(Dataset, { error: 'must be an array of datasets' }).max(MAX_DATASETS, `at most ${MAX_DATASETS} datasets per event`).optional(),
});

/** A dataset as Pedigree identifies it: namespace, name, and version (from the DatasetVersion facet) when given. */
export interface DatasetRef {
  namespace: string;
  name: string;
  version: string | null;
}

/** A checked RunEvent: the raw event (kept in the ledger as it came) and what Pedigree reads from it. */
export interface ParsedRunEvent {
  raw: Record<string, Json>;
  /** Absent in the event: no state change (as OTHER). */
  eventType: OpenLineageEventType | null;
  eventTime: string;
  /** eventTime as ms since the epoch. */
  at: number;
  /** The producer's run id, normalised (lower case, no urn:uuid:). */
  runId: string;
  job: { namespace: string; name: string };
  producer: string;
  inputs: DatasetRef[];
  outputs: DatasetRef[];
  /** From the `parent` run facet, when well formed. */
  parent: { runId: string; job: { namespace: string; name: string } | null } | null;
  /** From the `errorMessage` run facet. */
  errorMessage: string | null;
}

/** `inputs.0.name` → `inputs[0].name`. */
function fieldPath(path: readonly PropertyKey[]): string {
  return path.reduce<string>((out, p) => (typeof p === 'number' ? `${out}[${p}]` : out ? `${out}.${String(p)}` : String(p)), '');
}

/** Strings Postgres's jsonb cannot hold, and nesting too deep to walk: refused up front, so nothing is stored. */
function checkStorable(value: unknown, path: (string | number)[], depth = 0): void {
  if (depth > MAX_DEPTH) throw badField(fieldPath(path), `nested deeper than ${MAX_DEPTH} levels`);
  if (typeof value === 'string') {
    if (value.includes('\u0000')) throw badField(fieldPath(path), 'strings may not contain NUL (\\u0000)');
    if (!value.isWellFormed()) throw badField(fieldPath(path), 'strings must be valid Unicode (unpaired surrogate)');
  } else if (Array.isArray(value)) {
    value.forEach((v, i) => checkStorable(v, [...path, i], depth + 1));
  } else if (value && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      checkStorable(k, [...path, k], depth + 1);
      checkStorable(v, [...path, k], depth + 1);
    }
  }
}

const record = (v: unknown): Record<string, unknown> | null => (v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : null);

function datasetRef(d: { namespace: string; name: string; facets?: Record<string, unknown> }): DatasetRef {
  const version = record(d.facets?.version)?.datasetVersion;
  return { namespace: d.namespace, name: d.name, version: typeof version === 'string' && version ? version : null };
}

function parentOf(runFacets: Record<string, unknown> | undefined): ParsedRunEvent['parent'] {
  const parent = record(runFacets?.parent);
  const runId = record(parent?.run)?.runId;
  const id = typeof runId === 'string' ? normalizeUuid(runId) : null;
  if (!id) return null;
  const job = record(parent?.job);
  const namespace = job?.namespace;
  const name = job?.name;
  return { runId: id, job: typeof namespace === 'string' && typeof name === 'string' ? { namespace, name } : null };
}

/** Checks a parsed JSON body as a RunEvent; throws OpenLineageError (400 naming the field, or 413). */
export function parseRunEvent(value: unknown): ParsedRunEvent {
  if (!record(value)) throw new OpenLineageError(400, 'the body must be a JSON object: one OpenLineage RunEvent');
  const parsed = RunEventSchema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const field = fieldPath(issue.path);
    throw badField(field, `invalid OpenLineage RunEvent: ${field || 'the event'} ${issue.message}`);
  }
  checkStorable(value, []);
  const size = canonicalJson(value as Json).length;
  // The raw event is one ledger event, with a few fields around it.
  if (size > MAX_EVENT_BYTES - 1024) throw new OpenLineageError(413, `the event is ${size} bytes as JSON; at most ${MAX_EVENT_BYTES - 1024}`);
  const e = parsed.data;
  const errorMessage = record(e.run.facets?.errorMessage)?.message;
  return {
    raw: value as Record<string, Json>,
    eventType: e.eventType ?? null,
    eventTime: e.eventTime,
    at: parseRfc3339(e.eventTime)!,
    runId: normalizeUuid(e.run.runId)!,
    job: { namespace: e.job.namespace, name: e.job.name },
    producer: e.producer,
    inputs: (e.inputs ?? []).map(datasetRef),
    outputs: (e.outputs ?? []).map(datasetRef),
    parent: parentOf(e.run.facets),
    errorMessage: typeof errorMessage === 'string' && errorMessage ? errorMessage : null,
  };
}
