import { createHash } from 'node:crypto';

/**
 * Metric storage v2: a MetricsLogged event's points are stored once, as
 * columns, one chunk per metric key (in the order the keys first appear in
 * the batch; each chunk's points in the order they were logged). The event
 * row keeps a manifest naming every chunk's key, size and digest; the event's
 * hash covers the manifest, so it covers the points through their digests.
 *
 * A chunk's digest is `sha256:` + the hex SHA-256 of its canonical JSON
 * (RFC 8785): {"key":…,"steps":[…],"times":[…],"values":[…]}, non-finite
 * values written as the strings "NaN", "Infinity", "-Infinity" (as events
 * carry them). docs/ledger-verification.md says the same for other verifiers.
 */

/** A metric value as events carry it: JSON has no NaN or Infinity. */
export type MetricValueJson = number | 'NaN' | 'Infinity' | '-Infinity';

export interface MetricPointData {
  key: string;
  step: number;
  value: MetricValueJson;
  time: number;
}

export interface MetricChunk extends Summary {
  key: string;
  steps: number[];
  /** As numbers: NaN and ±Infinity included. */
  values: number[];
  times: number[];
  digest: string;
  /** The columns as the store writes them, made once for the digest and the insert. */
  literals: ChunkLiterals;
}

/** What a v2 MetricsLogged event's row holds as its data. */
export interface ChunkManifest {
  chunks: { key: string; n: number; digest: string }[];
}

export function metricNumber(v: MetricValueJson | number): number {
  return typeof v === 'number' ? v : Number(v);
}

export function metricJson(v: number): MetricValueJson {
  if (Number.isFinite(v)) return v === 0 ? 0 : v; // no -0: JSON cannot carry it
  return Number.isNaN(v) ? 'NaN' : v > 0 ? 'Infinity' : '-Infinity';
}

/**
 * ES Number-to-String is RFC 8785's number form; non-finite values are
 * strings. Where all are finite this is the array literal the store writes
 * (`literal`, when the caller has it), bracketed as JSON.
 */
function jsonNumbers(values: readonly number[], literal?: string): string {
  if (literal !== undefined && values.every(Number.isFinite)) return `[${literal.slice(1, -1)}]`;
  let out = '[';
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (i) out += ',';
    out += Number.isFinite(v) ? String(v) : `"${metricJson(v)}"`;
  }
  return `${out}]`;
}

/** The chunk's canonical JSON, as its digest hashes it. */
/** The columns as PostgreSQL array literals (what the store writes). */
export interface ChunkLiterals {
  steps: string;
  values: string;
  times: string;
}

export function chunkCanonicalJson(key: string, steps: readonly number[], values: readonly number[], times: readonly number[], literals?: ChunkLiterals): string {
  return `{"key":${JSON.stringify(key)},"steps":${jsonNumbers(steps, literals?.steps)},"times":${jsonNumbers(times, literals?.times)},"values":${jsonNumbers(values, literals?.values)}}`;
}

export function chunkDigest(key: string, steps: readonly number[], values: readonly number[], times: readonly number[], literals?: ChunkLiterals): string {
  return `sha256:${createHash('sha256').update(chunkCanonicalJson(key, steps, values, times, literals)).digest('hex')}`;
}

/** Count, step range, min and max (NaN aside) and last value of a series or of a part of it. */
export interface Summary {
  n: number;
  firstStep: number;
  lastStep: number;
  /** NaN while no value but NaN was seen. */
  min: number;
  max: number;
  /** The value of the last point seen at lastStep. */
  lastValue: number;
}

export function emptySummary(): Summary {
  return { n: 0, firstStep: Infinity, lastStep: -Infinity, min: NaN, max: NaN, lastValue: NaN };
}

/** Folds one point into a summary: the one rule chunks and series summaries follow. */
export function addPoint(s: Summary, step: number, value: number): void {
  s.n++;
  if (step < s.firstStep) s.firstStep = step;
  if (step >= s.lastStep) {
    s.lastStep = step;
    s.lastValue = value;
  }
  if (value === value) {
    if (!(value >= s.min)) s.min = value;
    if (!(value <= s.max)) s.max = value;
  }
}

/** A chunk's columns summarised. */
export function summarize(steps: readonly number[], values: readonly number[]): Summary {
  const s = emptySummary();
  for (let i = 0; i < steps.length; i++) addPoint(s, steps[i]!, values[i]!);
  return s;
}

/** Splits a batch into one chunk per key, in first-appearance order. */
export function chunkPoints(points: readonly MetricPointData[]): MetricChunk[] {
  const byKey = new Map<string, { steps: number[]; values: number[]; times: number[] }>();
  for (const p of points) {
    let c = byKey.get(p.key);
    if (!c) byKey.set(p.key, (c = { steps: [], values: [], times: [] }));
    c.steps.push(p.step);
    c.values.push(metricNumber(p.value));
    c.times.push(p.time);
  }
  return [...byKey].map(([key, c]) => {
    const literals = { steps: arrayLiteral(c.steps), values: arrayLiteral(c.values), times: arrayLiteral(c.times) };
    return { key, ...c, ...summarize(c.steps, c.values), digest: chunkDigest(key, c.steps, c.values, c.times, literals), literals };
  });
}

export function manifestOf(chunks: readonly MetricChunk[]): ChunkManifest {
  return { chunks: chunks.map((c) => ({ key: c.key, n: c.n, digest: c.digest })) };
}

/** The points of a batch as its chunks hold them: grouped by key, in chunk order. */
export function pointsOf(chunks: readonly Pick<MetricChunk, 'key' | 'steps' | 'values' | 'times'>[]): MetricPointData[] {
  const out: MetricPointData[] = [];
  for (const c of chunks) {
    for (let i = 0; i < c.steps.length; i++) out.push({ key: c.key, step: c.steps[i]!, value: metricJson(c.values[i]!), time: c.times[i]! });
  }
  return out;
}

/**
 * The order in which chunks store a batch's points: grouped by key, keys in
 * first-appearance order, stable within a key. `order[j]` is the index in
 * the batch of the j-th point stored.
 */
export function chunkOrder(keys: readonly string[]): number[] {
  const byKey = new Map<string, number[]>();
  keys.forEach((k, i) => {
    const list = byKey.get(k);
    if (list) list.push(i);
    else byKey.set(k, [i]);
  });
  return [...byKey.values()].flat();
}

/** A batch as a v2 event reads back: in chunk order, so a retry's proposal compares equal to it. */
export function inChunkOrder<P extends { key: string }>(points: readonly P[]): P[] {
  return chunkOrder(points.map((p) => p.key)).map((i) => points[i]!);
}

/** A PostgreSQL array literal of numbers ('NaN', 'Infinity' and '-Infinity' are valid float8 input). */
export function arrayLiteral(values: readonly number[]): string {
  return `{${values.join(',')}}`;
}

/** Parses a PostgreSQL array of numbers as text ('{1,2.5,NaN}'). */
export function parseArray(text: string): number[] {
  if (text.length <= 2) return [];
  const parts = text.slice(1, -1).split(',');
  const out = new Array<number>(parts.length);
  for (let i = 0; i < parts.length; i++) out[i] = Number(parts[i]);
  return out;
}

/** A chunk row as SQL reads it back (arrays as text: faster to parse here than through the driver). */
export interface ChunkRow {
  position: number;
  idx: number;
  key: string;
  steps: string;
  vals: string;
  times: string;
}

export const CHUNK_READ_COLUMNS = 'position, idx, key, steps::text AS steps, vals::text AS vals, times::text AS times';

export function chunkOfRow(row: ChunkRow): Pick<MetricChunk, 'key' | 'steps' | 'values' | 'times'> {
  return { key: row.key, steps: parseArray(row.steps), values: parseArray(row.vals), times: parseArray(row.times) };
}
