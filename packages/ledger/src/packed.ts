import { Buffer } from 'node:buffer';
import { ValidationError } from './errors.ts';
import { MAX_POINTS_PER_BATCH } from './vocabulary.ts';

/**
 * A batch of metric points as columns, the way the client sends it over
 * HTTP: each column is the base64 of n IEEE-754 float64 values,
 * little-endian. A 10,000-point batch is ~430 KB of text where the same
 * points as JSON objects are ~810 KB, and neither end walks 40,000 JSON
 * values (superjson's walk of those cost the client ~60 ms a batch; the
 * columns cost ~1 ms). NaN, ±Infinity and -0 travel as their bits; the
 * ledger then treats them exactly as it treats the same numbers sent as
 * objects (refused unless allowNonFinite; -0 stored as 0).
 *
 * `keys` holds each distinct key once; with more than one, `keyIndex` is
 * the base64 of n uint32 little-endian indices into it.
 */
export interface PackedPoints {
  format: typeof PACKED_FORMAT;
  n: number;
  keys: string[];
  keyIndex?: string;
  steps: string;
  values: string;
  times: string;
}

export const PACKED_FORMAT = 'columns/f64le';
/** Longest base64 column: MAX_POINTS_PER_BATCH float64s. */
export const MAX_PACKED_COLUMN = Math.ceil((MAX_POINTS_PER_BATCH * 8) / 3) * 4;

/**
 * Points held as columns, the way the client buffers them: point i has key
 * keys[keyIndex[i]], and steps[i], values[i], times[i] (the arrays may be
 * longer than the points in use).
 */
export interface PointColumns {
  keys: readonly string[];
  keyIndex: Uint32Array;
  steps: Float64Array;
  values: Float64Array;
  times: Float64Array;
}

/** Whether this host stores numbers little-endian (typed arrays use the host's order). */
export const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** The base64 of a typed array's values, little-endian whatever the host's byte order. */
function base64LE(values: Float64Array | Uint32Array): string {
  const bytes = Buffer.from(values.buffer, values.byteOffset, values.byteLength);
  if (LITTLE_ENDIAN) return bytes.toString('base64');
  const copy = Buffer.from(bytes);
  return (values instanceof Float64Array ? copy.swap64() : copy.swap32()).toString('base64');
}

/**
 * Packs points [from, to) of columns. The batch names each key it uses once,
 * in the order of first use, and its index maps into that list.
 */
export function packColumns(columns: PointColumns, from: number, to: number): PackedPoints {
  const n = to - from;
  const keys: string[] = [];
  const inBatch = new Int32Array(columns.keys.length).fill(-1);
  const index = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    const k = columns.keyIndex[from + i]!;
    let b = inBatch[k]!;
    if (b < 0) {
      b = inBatch[k] = keys.length;
      keys.push(columns.keys[k]!);
    }
    index[i] = b;
  }
  return {
    format: PACKED_FORMAT,
    n,
    keys,
    ...(keys.length > 1 ? { keyIndex: base64LE(index) } : {}),
    steps: base64LE(columns.steps.subarray(from, to)),
    values: base64LE(columns.values.subarray(from, to)),
    times: base64LE(columns.times.subarray(from, to)),
  };
}

/** Packs points (key, step, value, time each) into columns. */
export function packPoints(points: readonly { key: string; step: number; value: number; time: number }[]): PackedPoints {
  const n = points.length;
  const keys: string[] = [];
  const ids = new Map<string, number>();
  const columns: PointColumns = { keys, keyIndex: new Uint32Array(n), steps: new Float64Array(n), values: new Float64Array(n), times: new Float64Array(n) };
  for (let i = 0; i < n; i++) {
    const p = points[i]!;
    let k = ids.get(p.key);
    if (k === undefined) {
      k = keys.length;
      ids.set(p.key, k);
      keys.push(p.key);
    }
    columns.keyIndex[i] = k;
    columns.steps[i] = p.step;
    columns.values[i] = p.value;
    columns.times[i] = p.time;
  }
  return packColumns(columns, 0, n);
}

/** A base64 column's bytes, checked to hold n values of `width` bytes (field names the column in the error). */
function column(text: unknown, n: number, width: number, field: string): Buffer {
  const notBase64 = () => new ValidationError('invalid packed points', [{ path: `columns.${field}`, message: 'must be base64 (RFC 4648, padded)' }]);
  if (typeof text !== 'string') throw notBase64();
  const b = Buffer.from(text, 'base64');
  // Node's decoder skips what is not base64; encoding back is the strict check (and ~20× cheaper than a regular expression here).
  if (b.toString('base64') !== text) throw notBase64();
  if (b.byteLength !== n * width) throw new ValidationError('invalid packed points', [{ path: `columns.${field}`, message: `must hold n × ${width} = ${n * width} bytes, got ${b.byteLength}` }]);
  return b;
}

/**
 * The points of a packed batch, as the ledger takes them. Everything about
 * the packing is checked here (format, n, column lengths, key indices); the
 * points themselves (keys, steps, values, times) are checked by the ledger,
 * as for points sent as objects, and errors name them `points.<i>.<field>`.
 */
export function unpackPoints(p: PackedPoints): { key: string; step: number; value: number; time: number }[] {
  const bad = (path: string, message: string) => new ValidationError('invalid packed points', [{ path: path ? `columns.${path}` : 'columns', message }]);
  if (p === null || typeof p !== 'object') throw bad('', 'must be an object');
  if (p.format !== PACKED_FORMAT) throw bad('format', `must be "${PACKED_FORMAT}"`);
  const n = p.n;
  if (!Number.isInteger(n) || n < 1 || n > MAX_POINTS_PER_BATCH) throw bad('n', `must be an integer in 1..${MAX_POINTS_PER_BATCH}`);
  if (!Array.isArray(p.keys) || p.keys.length < 1 || p.keys.length > n || p.keys.some((k) => typeof k !== 'string')) throw bad('keys', `must be 1..n strings`);
  if (new Set(p.keys).size !== p.keys.length) throw bad('keys', 'must not repeat a key');
  const steps = column(p.steps, n, 8, 'steps');
  const values = column(p.values, n, 8, 'values');
  const times = column(p.times, n, 8, 'times');
  let index: Buffer | null = null;
  if (p.keys.length > 1) {
    if (p.keyIndex === undefined) throw bad('keyIndex', 'is required when keys holds more than one key');
    index = column(p.keyIndex, n, 4, 'keyIndex');
  } else if (p.keyIndex !== undefined) throw bad('keyIndex', 'must be left out when keys holds one key');
  const out = new Array<{ key: string; step: number; value: number; time: number }>(n);
  for (let i = 0; i < n; i++) {
    const k = index ? index.readUInt32LE(i * 4) : 0;
    if (k >= p.keys.length) throw bad('keyIndex', `point ${i} names key ${k}, past the ${p.keys.length} keys given`);
    out[i] = { key: p.keys[k]!, step: steps.readDoubleLE(i * 8), value: values.readDoubleLE(i * 8), time: times.readDoubleLE(i * 8) };
  }
  return out;
}
