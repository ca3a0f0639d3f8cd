import { createHash } from 'node:crypto';

/**
 * Canonical JSON: object keys sorted, no whitespace, numbers as JSON.stringify
 * writes them (shortest round-trip form). jsonb reorders keys and reformats
 * numbers, so hashes are taken over this form, never over stored text.
 *
 * For JSON values this is RFC 8785 (JCS) exactly: keys sorted by UTF-16 code
 * units, ECMAScript number and string serialisation (canonical.test.ts checks
 * it against RFC 8785's vectors and the `canonicalize` package). It parts
 * from JCS only on what is not I-JSON, which the ledger refuses before it
 * hashes: a lone surrogate is escaped (\udxxx) where JCS refuses it, and
 * objects' toJSON is never called. docs/ledger-verification.md specifies it.
 *
 * Iterative (an explicit stack), so no input can overflow the call stack;
 * its output is byte for byte that of the recursive definition it replaced
 * (kept in canonical.test.ts), quirks of non-JSON input included. A cyclic
 * value, which overflowed the recursion, is a TypeError.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return scalarJson(value) as string;
  const stack: Frame[] = [];
  // The containers open now: meeting one again is a cycle (where the recursion overflowed, a loop would never end).
  const open = new Set<object>();
  let out = enter(value, stack, open);
  while (stack.length > 0) {
    const frame = stack[stack.length - 1]!;
    if (frame.keys === null) {
      const { array, index } = frame;
      if (index === array.length) {
        out += ']';
        open.delete(array);
        stack.pop();
        continue;
      }
      frame.index = index + 1;
      if (index > 0) out += ',';
      // A hole in a sparse array was skipped by map(): empty, not null.
      if (!(index in array)) continue;
      const child = array[index];
      // As the recursive form joined them: an array's `undefined` text (a function, a symbol) is empty.
      out += child !== null && typeof child === 'object' ? enter(child, stack, open) : (scalarJson(child) ?? '');
    } else {
      const { object, keys, index } = frame;
      if (index === keys.length) {
        out += '}';
        open.delete(object);
        stack.pop();
        continue;
      }
      frame.index = index + 1;
      const key = keys[index]!;
      const child = object[key];
      // …and a member's is the word itself, as a template literal writes it.
      out += `${index > 0 ? ',' : ''}${JSON.stringify(key)}:${child !== null && typeof child === 'object' ? enter(child, stack, open) : `${scalarJson(child)}`}`;
    }
  }
  return out;
}

type Frame = { array: unknown[]; keys: null; index: number } | { object: Record<string, unknown>; keys: string[]; index: number };

/** Pushes the frame that will write `value`'s members; returns its opening bracket. Keys are chosen as the recursive form chose them, on entry. */
function enter(value: object, stack: Frame[], open: Set<object>): string {
  if (open.has(value)) throw new TypeError('cannot hash a cyclic value (an object or array that contains itself)');
  open.add(value);
  if (Array.isArray(value)) {
    stack.push({ array: value, keys: null, index: 0 });
    return '[';
  }
  const object = value as Record<string, unknown>;
  stack.push({ object, keys: Object.keys(object).filter((k) => object[k] !== undefined).sort(), index: 0 });
  return '{';
}

/** A value that is not an object or array: its JSON text (undefined for what JSON cannot write: a function, a symbol). */
function scalarJson(value: unknown): string | undefined {
  if (typeof value === 'number' && !Number.isFinite(value)) throw new TypeError(`cannot hash non-finite number ${value}`);
  if (value === undefined) return 'null';
  return JSON.stringify(value);
}

export function sha256Hex(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

export const GENESIS_HASH = '0'.repeat(64);

/** How deep a JSON value may nest (objects and arrays): deeper input is refused before anything recurses over it. */
export const MAX_JSON_DEPTH = 32;

/** The nesting depth of a value, found without recursion (a hostile value cannot overflow the stack); stops counting past `limit`. */
export function jsonDepth(value: unknown, limit = Infinity): number {
  let deepest = 0;
  const stack: [unknown, number][] = [[value, 0]];
  while (stack.length) {
    const [v, d] = stack.pop()!;
    if (v === null || typeof v !== 'object') continue;
    const depth = d + 1;
    if (depth > deepest) deepest = depth;
    if (deepest > limit) return deepest;
    for (const child of Array.isArray(v) ? v : Object.values(v)) if (child !== null && typeof child === 'object') stack.push([child, depth]);
  }
  return deepest;
}

/**
 * The nesting depth of JSON text, by scanning its brackets outside strings —
 * for a request body, before it is parsed: as a string, or as its UTF-8
 * bytes (the same answer: every byte of a multi-byte character is ≥ 0x80,
 * so none is a quote, a backslash or a bracket). Stops past `limit`. A string
 * is skipped with indexOf to its closing quote (one not escaped by an odd run
 * of backslashes): a metric batch's body is mostly long base64 strings, which
 * a character loop walked at ~70 ms per million points.
 */
export function jsonTextDepth(text: string | Uint8Array, limit = Infinity): number {
  const codeAt = typeof text === 'string' ? (i: number) => text.charCodeAt(i) : (i: number) => text[i]!;
  const quoteAfter = typeof text === 'string' ? (i: number) => text.indexOf('"', i + 1) : (i: number) => text.indexOf(34, i + 1);
  let depth = 0;
  let deepest = 0;
  for (let i = 0; i < text.length; i++) {
    const c = codeAt(i);
    if (c === 34 /* " */) {
      let end = quoteAfter(i);
      while (end !== -1 && escaped(codeAt, end)) end = quoteAfter(end);
      if (end === -1) break; // unterminated: the parser refuses it
      i = end;
    } else if (c === 123 /* { */ || c === 91 /* [ */) {
      if (++depth > deepest) deepest = depth;
      if (deepest > limit) return deepest;
    } else if (c === 125 /* } */ || c === 93 /* ] */) depth--;
  }
  return deepest;
}

/** Whether the quote at `at` is escaped: an odd number of backslashes before it. */
function escaped(codeAt: (i: number) => number | undefined, at: number): boolean {
  let n = 0;
  while (codeAt(at - 1 - n) === 92 /* \ */) n++;
  return n % 2 === 1;
}

/**
 * A copy of `value` with everything nested deeper than `maxDepth` replaced by
 * a marker string: for reading a value a store already holds, so that no
 * reader (a serializer, a chart) recurses past the limit. Iterative.
 */
export function clampDepth<T>(value: T, maxDepth = MAX_JSON_DEPTH): T {
  if (jsonDepth(value, maxDepth) <= maxDepth) return value;
  const root: { v: unknown } = { v: undefined };
  const stack: [unknown, (x: unknown) => void, number][] = [[value, (x) => (root.v = x), 0]];
  while (stack.length) {
    const [v, put, d] = stack.pop()!;
    if (v === null || typeof v !== 'object') {
      put(v);
      continue;
    }
    if (d >= maxDepth) {
      put(`[nested deeper than ${maxDepth} levels]`);
      continue;
    }
    if (Array.isArray(v)) {
      const out: unknown[] = new Array(v.length);
      put(out);
      v.forEach((child, i) => stack.push([child, (x) => (out[i] = x), d + 1]));
    } else {
      const out: Record<string, unknown> = {};
      put(out);
      for (const [k, child] of Object.entries(v)) stack.push([child, (x) => (out[k] = x), d + 1]);
    }
  }
  return root.v as T;
}

/**
 * The first string PostgreSQL cannot store or compare (NUL, an unpaired
 * surrogate) anywhere in a value, keys included, with its path; null when
 * there is none. Iterative. Reads refuse such strings as writes do.
 */
export function findUnstorableString(value: unknown): { path: string; message: string } | null {
  const stack: [unknown, string][] = [[value, '']];
  while (stack.length) {
    const [v, path] = stack.pop()!;
    if (typeof v === 'string') {
      if (v.includes('\u0000')) return { path, message: 'strings may not contain NUL (\\u0000)' };
      if (!v.isWellFormed()) return { path, message: 'strings must be valid Unicode (unpaired surrogate)' };
    } else if (Array.isArray(v)) v.forEach((x, i) => stack.push([x, `${path}[${i}]`]));
    else if (v && typeof v === 'object') {
      for (const [k, x] of Object.entries(v)) {
        const at = path ? `${path}.${k}` : k;
        if (k.includes('\u0000') || !k.isWellFormed()) return { path: at, message: 'keys may not contain NUL or unpaired surrogates' };
        stack.push([x, at]);
      }
    }
  }
  return null;
}
