import { createHash } from 'node:crypto';
import { LITTLE_ENDIAN } from './packed.ts';
import { metricJson, metricNumber, type MetricValueJson } from './vocabulary.ts';

/**
 * Metric storage v2: a MetricsLogged event's points are stored once, as
 * columns, one chunk per metric key (in the order the keys first appear in
 * the batch; each chunk's points in the order they were logged). The event
 * row keeps a manifest naming every chunk's key, size and digest; the event's
 * hash covers the manifest, so it covers the points through their digests.
 *
 * A chunk's digest is `sha256-columns:` + the hex SHA-256 of its bytes as
 * stored: the key's UTF-8 length (uint32, big-endian), the key, then the
 * steps, vals and times columns (see columnsDigest; SQL can compute it too).
 * Chunks written before it (metric storage v2's first layout) carry
 * `sha256:` + the hex SHA-256 of their canonical JSON (RFC 8785),
 * {"key":…,"steps":[…],"times":[…],"values":[…]}, non-finite values written
 * as the strings "NaN", "Infinity", "-Infinity" (jsonChunkDigest); the event's
 * hash covers the digest's prefix, so the scheme cannot be swapped.
 * docs/ledger-verification.md says the same for other verifiers.
 *
 * The columns are bytea, big-endian: steps as int8, values and times as
 * float8, 8 bytes a point, stored out of line uncompressed, so a reader can
 * fetch a slice (`substring`) without the rest. Each chunk also carries a
 * summary of every block of BLOCK_POINTS points (in stored order), so a chart
 * opens only the blocks at its bucket edges.
 */

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
  /** s when point i's step is firstStep + i·s for every i (s ≥ 1; 1 for one point), else null: see strideOf. */
  stride: number | null;
  /** The columns' bytes as the store writes them (made once, here). */
  columns: ChunkColumns;
}

/** What a v2 MetricsLogged event's row holds as its data. */
export interface ChunkManifest {
  chunks: { key: string; n: number; digest: string }[];
}

/** ES Number-to-String is RFC 8785's number form (-0 is "0"); non-finite values are strings. */
function jsonNumbers(values: ArrayLike<number>): string {
  let finite = true;
  for (let i = 0; i < values.length && finite; i++) finite = Number.isFinite(values[i]!);
  if (finite) return `[${Array.prototype.join.call(values, ',')}]`;
  let out = '[';
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (i) out += ',';
    out += Number.isFinite(v) ? String(v) : `"${metricJson(v)}"`;
  }
  return `${out}]`;
}

/** The chunk's canonical JSON, as its digest hashes it. */
export function chunkCanonicalJson(key: string, steps: ArrayLike<number>, values: ArrayLike<number>, times: ArrayLike<number>): string {
  return `{"key":${JSON.stringify(key)},"steps":${jsonNumbers(steps)},"times":${jsonNumbers(times)},"values":${jsonNumbers(values)}}`;
}

/** The digest of a chunk written before columnsDigest: over its canonical JSON. */
export function jsonChunkDigest(key: string, steps: ArrayLike<number>, values: ArrayLike<number>, times: ArrayLike<number>): string {
  return `sha256:${createHash('sha256').update(chunkCanonicalJson(key, steps, values, times)).digest('hex')}`;
}

/** How a digest over the columns' bytes starts (one over the canonical JSON starts `sha256:`). */
export const COLUMNS_DIGEST = 'sha256-columns:';

/**
 * A chunk's digest over its bytes as stored, the same in SQL:
 * `sha256(int4send(octet_length(convert_to(key, 'UTF8'))) || convert_to(key, 'UTF8') || steps || vals || times)`.
 */
export function columnsDigest(key: string, steps: Uint8Array, vals: Uint8Array, times: Uint8Array): string {
  const name = Buffer.from(key, 'utf8');
  const length = Buffer.allocUnsafe(4);
  length.writeUInt32BE(name.byteLength);
  return `${COLUMNS_DIGEST}${createHash('sha256').update(length).update(name).update(steps).update(vals).update(times).digest('hex')}`;
}

/** A stored chunk's digest recomputed by the scheme it names. */
export function digestOf(scheme: string, key: string, columns: { steps: Uint8Array; vals: Uint8Array; times: Uint8Array }, decoded: () => { steps: ArrayLike<number>; values: ArrayLike<number>; times: ArrayLike<number> }): string {
  if (scheme.startsWith(COLUMNS_DIGEST)) return columnsDigest(key, columns.steps, columns.vals, columns.times);
  const d = decoded();
  return jsonChunkDigest(key, d.steps, d.values, d.times);
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
export function summarize(steps: ArrayLike<number>, values: ArrayLike<number>, from = 0, to = steps.length): Summary {
  const s = emptySummary();
  for (let i = from; i < to; i++) addPoint(s, steps[i]!, values[i]!);
  return s;
}

/**
 * The chunk's stride: s when its steps are first, first + s, first + 2s, …
 * in stored order (s ≥ 1; a single point has stride 1), else null. Most
 * series are logged so (every step, or every s steps); a chart then knows
 * every point's step from its index and reads only values at bucket edges.
 */
export function strideOf(steps: ArrayLike<number>): number | null {
  if (steps.length < 2) return steps.length ? 1 : null;
  const first = steps[0]!;
  const stride = steps[1]! - first;
  if (!(stride >= 1)) return null;
  for (let i = 2; i < steps.length; i++) if (steps[i] !== first + i * stride) return null;
  return stride;
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
    const steps = encodeSteps(c.steps);
    const vals = encodeFloats(c.values);
    const times = encodeFloats(c.times);
    const columns = { steps, vals, times, blocks: encodeBlocks(c.steps, c.values) };
    return { key, ...c, ...summarize(c.steps, c.values), digest: columnsDigest(key, steps, vals, times), stride: strideOf(c.steps), columns };
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
  for (let i = 0; i < keys.length; i++) {
    const list = byKey.get(keys[i]!);
    if (list) list.push(i);
    else byKey.set(keys[i]!, [i]);
  }
  const order = new Array<number>(keys.length);
  let j = 0;
  for (const list of byKey.values()) for (const i of list) order[j++] = i;
  return order;
}

/** A batch as a v2 event reads back: in chunk order, so a retry's proposal compares equal to it. */
export function inChunkOrder<P extends { key: string }>(points: readonly P[]): P[] {
  return chunkOrder(points.map((p) => p.key)).map((i) => points[i]!);
}

/** Points a block summary covers (the last block of a chunk may hold fewer). */
export const BLOCK_POINTS = 64;
/** A block summary's bytes: first step, last step (int8), min, max, last value (float8). */
export const BLOCK_BYTES = 40;
/** A point's bytes in each column (int8 step, float8 value, float8 time). */
export const POINT_BYTES = 8;
const TWO_32 = 2 ** 32;

/** The columns of a chunk as the store writes them: the bytea values. */
export interface ChunkColumns {
  steps: Buffer;
  vals: Buffer;
  times: Buffer;
  blocks: Buffer;
}

/** Steps as big-endian int8 (whole numbers within ±2^53). */
export function encodeSteps(steps: ArrayLike<number>): Buffer {
  const buf = Buffer.allocUnsafe(steps.length * POINT_BYTES);
  const view = viewOf(buf);
  for (let i = 0; i < steps.length; i++) writeInt8(view, i * POINT_BYTES, steps[i]!);
  return buf;
}

/**
 * Values as big-endian float8; -0 is written as 0 (as JSON, and the chunk's
 * digest, carry it). Filled as a Float64Array and byte-swapped in one native
 * call: ~2× faster than a write per value (bench/ingest.ts's prepare line).
 */
export function encodeFloats(values: ArrayLike<number>): Buffer {
  const floats = new Float64Array(values.length);
  for (let i = 0; i < values.length; i++) floats[i] = storedFloat(values[i]!);
  const buf = Buffer.from(floats.buffer, 0, floats.byteLength);
  return LITTLE_ENDIAN ? buf.swap64() : buf;
}

/** A value as the columns store it: -0 as 0. */
function storedFloat(v: number): number {
  return v === 0 ? 0 : v;
}

function writeFloat8(view: DataView, at: number, v: number): void {
  view.setFloat64(at, storedFloat(v));
}

/** A number as a big-endian int8 at `at` (whole numbers within ±2^53): readInt8's inverse. */
function writeInt8(view: DataView, at: number, v: number): void {
  const hi = Math.floor(v / TWO_32);
  view.setInt32(at, hi);
  view.setUint32(at + 4, v - hi * TWO_32);
}

/** A big-endian int8 at `at` as a number (exact within ±2^53). */
export function readInt8(view: DataView, at: number): number {
  return view.getInt32(at) * TWO_32 + view.getUint32(at + 4);
}

/** A DataView over exactly these bytes (a Buffer may be a slice of a larger pool). */
export function viewOf(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

export function decodeSteps(bytes: Uint8Array): number[] {
  const view = viewOf(bytes);
  const out = new Array<number>(bytes.byteLength / POINT_BYTES);
  for (let i = 0; i < out.length; i++) out[i] = readInt8(view, i * POINT_BYTES);
  return out;
}

export function decodeFloats(bytes: Uint8Array): number[] {
  const view = viewOf(bytes);
  const out = new Array<number>(bytes.byteLength / POINT_BYTES);
  for (let i = 0; i < out.length; i++) out[i] = view.getFloat64(i * POINT_BYTES);
  return out;
}

/** The block summaries of a chunk's points, in stored order, BLOCK_BYTES each. */
export function encodeBlocks(steps: ArrayLike<number>, values: ArrayLike<number>): Buffer {
  const count = Math.ceil(steps.length / BLOCK_POINTS);
  const buf = Buffer.allocUnsafe(count * BLOCK_BYTES);
  const view = viewOf(buf);
  for (let k = 0; k < count; k++) {
    const s = summarize(steps, values, k * BLOCK_POINTS, Math.min(steps.length, (k + 1) * BLOCK_POINTS));
    const at = k * BLOCK_BYTES;
    writeInt8(view, at, s.firstStep);
    writeInt8(view, at + 8, s.lastStep);
    writeFloat8(view, at + 16, s.min);
    writeFloat8(view, at + 24, s.max);
    writeFloat8(view, at + 32, s.lastValue);
  }
  return buf;
}

/** A block's summary; `k` is its index in the chunk (its points are k × BLOCK_POINTS onwards). */
export interface BlockSummary extends Summary {
  k: number;
}

export function decodeBlocks(bytes: Uint8Array, n: number): BlockSummary[] {
  const view = viewOf(bytes);
  const out: BlockSummary[] = [];
  for (let k = 0; k * BLOCK_BYTES < bytes.byteLength; k++) {
    const at = k * BLOCK_BYTES;
    out.push({
      k,
      n: Math.min(BLOCK_POINTS, n - k * BLOCK_POINTS),
      firstStep: readInt8(view, at),
      lastStep: readInt8(view, at + 8),
      min: view.getFloat64(at + 16),
      max: view.getFloat64(at + 24),
      lastValue: view.getFloat64(at + 32),
    });
  }
  return out;
}

/**
 * A bytea column read as base64 text (`expr` a bytea expression, `as` its
 * name in the row): bytesOf gives its bytes back. The drivers read bytea as
 * hex, and PGlite parses that ~25× slower than this (8 MB: 800 ms against
 * 33 ms; postgres.js ~1.8×): every read of chunk columns goes this way.
 */
export function byteaAsBase64(expr: string, as: string): string {
  return `encode(${expr}, 'base64') AS ${as}`;
}

/** The bytes of a column read with byteaAsBase64 (PostgreSQL breaks the text into lines: Buffer skips them). */
export function bytesOf(base64: string): Buffer {
  return Buffer.from(base64, 'base64');
}

/** A metric_chunks row's summary columns, as SQL reads them back. */
export interface ChunkSummaryRow {
  position: number;
  idx: number;
  n: number;
  first_step: number;
  last_step: number;
  min: number;
  max: number;
  last_value: number;
}

/** A chunk row as SQL reads it back (the columns as base64: see byteaAsBase64). */
export interface ChunkRow {
  position: number;
  idx: number;
  key: string;
  steps: string;
  vals: string;
  times: string;
}

/** A chunk's points columns (steps, vals, times) as base64, under their own names: for chunkOfRow and its kin. */
export const CHUNK_POINT_COLUMNS = ['steps', 'vals', 'times'].map((c) => byteaAsBase64(c, c)).join(', ');

export const CHUNK_READ_COLUMNS = `position, idx, key, ${CHUNK_POINT_COLUMNS}`;

export function chunkOfRow(row: Pick<ChunkRow, 'key' | 'steps' | 'vals' | 'times'>): Pick<MetricChunk, 'key' | 'steps' | 'values' | 'times'> {
  return { key: row.key, steps: decodeSteps(bytesOf(row.steps)), values: decodeFloats(bytesOf(row.vals)), times: decodeFloats(bytesOf(row.times)) };
}
