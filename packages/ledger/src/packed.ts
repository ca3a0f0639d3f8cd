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

function encodeFloats(n: number, at: (i: number) => number): string {
  const bytes = Buffer.allocUnsafe(n * 8);
  for (let i = 0; i < n; i++) bytes.writeDoubleLE(at(i), i * 8);
  return bytes.toString('base64');
}

/** Packs points (key, step, value, time each) into columns. */
export function packPoints(points: readonly { key: string; step: number; value: number; time: number }[]): PackedPoints {
  const n = points.length;
  const keys: string[] = [];
  const indexOf = new Map<string, number>();
  const index = Buffer.allocUnsafe(n * 4);
  for (let i = 0; i < n; i++) {
    const key = points[i]!.key;
    let k = indexOf.get(key);
    if (k === undefined) {
      k = keys.length;
      indexOf.set(key, k);
      keys.push(key);
    }
    index.writeUInt32LE(k, i * 4);
  }
  return {
    format: PACKED_FORMAT,
    n,
    keys,
    ...(keys.length > 1 ? { keyIndex: index.toString('base64') } : {}),
    steps: encodeFloats(n, (i) => points[i]!.step),
    values: encodeFloats(n, (i) => points[i]!.value),
    times: encodeFloats(n, (i) => points[i]!.time),
  };
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
