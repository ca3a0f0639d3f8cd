import canonicalize from 'canonicalize';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalJson, jsonDepth, jsonTextDepth } from './canonical.ts';

/**
 * The event hash is specified as SHA-256 over RFC 8785 (JCS) canonical JSON
 * (docs/ledger-verification.md). These tests hold `canonicalJson` to that:
 * RFC 8785's own vectors (Appendix B's numbers; the test data of the RFC's
 * reference implementation, github.com/cyberphone/json-canonicalization
 * testdata/), the npm `canonicalize` package (by one of the RFC's authors)
 * on random JSON, and the recursive definition it replaced, byte for byte.
 */

/** The recursive canonicalJson, exactly as it was before it became iterative: the reference for byte-identical output. */
function recursiveCanonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') {
    if (typeof value === 'number' && !Number.isFinite(value)) throw new TypeError(`cannot hash non-finite number ${value}`);
    if (value === undefined) return 'null';
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map(recursiveCanonicalJson).join(',')}]`;
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj)
    .filter((k) => obj[k] !== undefined)
    .sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${recursiveCanonicalJson(obj[k])}`).join(',')}}`;
}

const ieee754 = (bits: string) => Buffer.from(bits, 'hex').readDoubleBE(0);

/** RFC 8785 Appendix B: IEEE 754 binary64 bit patterns and the text JCS writes for each. */
const APPENDIX_B: [string, string][] = [
  ['0000000000000000', '0'],
  ['8000000000000000', '0'], // minus zero
  ['0000000000000001', '5e-324'],
  ['8000000000000001', '-5e-324'],
  ['7fefffffffffffff', '1.7976931348623157e+308'],
  ['ffefffffffffffff', '-1.7976931348623157e+308'],
  ['4340000000000000', '9007199254740992'],
  ['c340000000000000', '-9007199254740992'],
  ['4430000000000000', '295147905179352830000'],
  ['44b52d02c7e14af5', '9.999999999999997e+22'],
  ['44b52d02c7e14af6', '1e+23'],
  ['44b52d02c7e14af7', '1.0000000000000001e+23'],
  ['444b1ae4d6e2ef4e', '999999999999999700000'],
  ['444b1ae4d6e2ef4f', '999999999999999900000'],
  ['444b1ae4d6e2ef50', '1e+21'],
  ['3eb0c6f7a0b5ed8c', '9.999999999999997e-7'],
  ['3eb0c6f7a0b5ed8d', '0.000001'],
  ['41b3de4355555553', '333333333.3333332'],
  ['41b3de4355555554', '333333333.33333325'],
  ['41b3de4355555555', '333333333.3333333'],
  ['41b3de4355555556', '333333333.3333334'],
  ['41b3de4355555557', '333333333.33333343'],
  ['becbf647612f3696', '-0.0000033333333333333333'],
  ['43143ff3c1cb0959', '1424953923781206.2'], // round to even
];

/** cyberphone/json-canonicalization testdata: input text → canonical output (escapes spelled out where the file holds raw characters). */
const JCS_TESTDATA: [string, string, string][] = [
  [
    'values.json (RFC 8785 §3.2.4)',
    '{\n  "numbers": [1E30, 4.50, 333333333.33333329, 2e-3, 0.000000000000000000000000001],\n  "escaping": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",\n  "literals": [null, true, false]\n}',
    '{"escaping":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/","literals":[null,true,false],"numbers":[1e+30,4.5,333333333.3333333,0.002,1e-27]}',
  ],
  [
    'weird.json (RFC 8785 §3.2.3: sorting by UTF-16 code units)',
    '{\n  "\\u20ac": "Euro Sign",\n  "1": "One",\n  "\\u0080": "Control\\u007f",\n  "\\ud83d\\ude02": "Smiley",\n  "\\u00f6": "Latin Small Letter O With Diaeresis",\n  "\\ufb33": "Hebrew Letter Dalet With Dagesh",\n  "</script>": "Browser Challenge"\n}\n',
    '{"1":"One","</script>":"Browser Challenge","\u0080":"Control\u007f","\u00f6":"Latin Small Letter O With Diaeresis","\u20ac":"Euro Sign","\ud83d\ude02":"Smiley","\ufb33":"Hebrew Letter Dalet With Dagesh"}',
  ],
  [
    'structures.json',
    '{\n  "1": {"f": {"f": "hi","F": 5} ,"\\n": 56.0},\n  "10": { },\n  "": "empty",\n  "a": { },\n  "111": [ { } ],\n  "A": { }\n}',
    '{"":"empty","1":{"\\n":56,"f":{"F":5,"f":"hi"}},"10":{},"111":[{}],"A":{},"a":{}}',
  ],
  [
    'french.json (no locale in the ordering)',
    '{\n  "peach": "This sorting order",\n  "péché": "is wrong according to French",\n  "pêche": "but canonicalization MUST",\n  "sin":   "ingnore locale"\n}\n',
    '{"peach":"This sorting order","péché":"is wrong according to French","pêche":"but canonicalization MUST","sin":"ingnore locale"}',
  ],
  ['unicode.json (no normalisation)', '{\n  "Unnormalized Unicode":"\\u1e0d\\u0307"\n}\n', '{"Unnormalized Unicode":"\u1e0d\u0307"}'],
  ['arrays.json', '[\n  56,\n  {\n    "d": true,\n    "10": null,\n    "1": [ ]\n  }\n]', '[56,{"1":[],"10":null,"d":true}]'],
  ['simpleString.json', '    "this is a test string 1235"', '"this is a test string 1235"'],
];

const jsonValues = (unit: 'grapheme' | 'binary') => fc.jsonValue({ maxDepth: 6, stringUnit: unit });

describe('canonicalJson is RFC 8785 (JCS)', () => {
  it('writes every number of RFC 8785 Appendix B as the RFC does', () => {
    const wrong = APPENDIX_B.map(([bits, text]) => ({ bits, text, got: canonicalJson(ieee754(bits)) })).filter((r) => r.got !== r.text);
    expect(wrong).toEqual([]);
    // The same numbers inside an array, as they sit in events.
    expect(canonicalJson(APPENDIX_B.map(([bits]) => ieee754(bits)))).toBe(`[${APPENDIX_B.map(([, text]) => text).join(',')}]`);
  });

  it('refuses NaN and ±Infinity, as RFC 8785 §3.2.2.3 requires', () => {
    for (const bits of ['7fffffffffffffff', '7ff0000000000000', 'fff0000000000000']) expect(() => canonicalJson([ieee754(bits)])).toThrow(/non-finite/);
  });

  it('gives the output of the JCS reference implementation’s test data', () => {
    for (const [name, input, output] of JCS_TESTDATA) {
      expect(canonicalJson(JSON.parse(input)), name).toBe(output);
      expect(canonicalize(JSON.parse(input)), `canonicalize: ${name}`).toBe(output);
    }
    // The UTF-8 bytes of simpleString.json's canonical form (testdata/outhex).
    expect(Buffer.from(canonicalJson(JSON.parse('    "this is a test string 1235"'))).toString('hex')).toBe(
      '22 74 68 69 73 20 69 73 20 61 20 74 65 73 74 20 73 74 72 69 6E 67 20 31 32 33 35 22'.replace(/ /g, '').toLowerCase(),
    );
  });

  it('agrees with the `canonicalize` package on random JSON (Unicode strings, doubles, deep nesting)', () => {
    fc.assert(
      fc.property(jsonValues('grapheme'), (value) => {
        expect(canonicalJson(value)).toBe(canonicalize(value));
      }),
      { numRuns: 2000 },
    );
    fc.assert(
      fc.property(fc.array(fc.double({ noNaN: true, noDefaultInfinity: true }), { maxLength: 50 }), (numbers) => {
        expect(canonicalJson(numbers)).toBe(canonicalize(numbers));
      }),
      { numRuns: 2000 },
    );
  });

  it('parts from JCS only on values that are not I-JSON, which the ledger refuses before hashing', () => {
    // A lone surrogate: JCS requires I-JSON input (RFC 7493 §2.1) and `canonicalize` throws; canonicalJson escapes it as
    // JSON.stringify does. EventStore.prepare refuses such strings (and PostgreSQL cannot store them), so no event holds one.
    expect(() => canonicalize({ s: '\ud800' })).toThrow(/surrogate/i);
    expect(canonicalJson({ s: '\ud800' })).toBe('{"s":"\\ud800"}');
    // toJSON: `canonicalize` calls it (a Date becomes its ISO string); canonicalJson never does (a Date has no own keys: {}).
    // Events hold parsed JSON only, and eventHash passes recordedAt as an ISO string.
    const date = new Date(0);
    expect(canonicalize({ d: date })).toBe('{"d":"1970-01-01T00:00:00.000Z"}');
    expect(canonicalJson({ d: date })).toBe('{"d":{}}');
  });
});

describe('canonicalJson is iterative and byte-identical to its recursive definition', () => {
  /** Both outcomes of a call: its text, or the error it threw. */
  const outcome = (f: (v: unknown) => string, v: unknown) => {
    try {
      return { text: f(v) };
    } catch (err) {
      return { error: `${(err as Error).name}: ${(err as Error).message}` };
    }
  };

  it('on random JSON, valid Unicode or not', () => {
    for (const unit of ['grapheme', 'binary'] as const) {
      fc.assert(
        fc.property(jsonValues(unit), (value) => {
          expect(canonicalJson(value)).toBe(recursiveCanonicalJson(value));
        }),
        { numRuns: 2000 },
      );
    }
  });

  it('on what JSON cannot hold: undefined, holes, functions, symbols, non-finite numbers, boxed and class values', () => {
    const oddities = fc.oneof(
      fc.constant(undefined),
      fc.constant(() => 1),
      fc.constant(Symbol('s')),
      fc.constant(NaN),
      fc.constant(-Infinity),
      fc.constant(-0),
      fc.constant(new Date(0)),
      fc.constant(new Number(3)),
      fc.constant(new Map([[1, 2]])),
      fc.constant(Object.assign([1, , 3], { extra: 1 })),
    );
    const { tree } = fc.letrec((tie) => ({
      tree: fc.oneof({ depthSize: 'small' }, fc.jsonValue({ maxDepth: 1 }), oddities, fc.array(tie('tree'), { maxLength: 4 }), fc.dictionary(fc.string({ maxLength: 3 }), tie('tree'), { maxKeys: 4 })),
    }));
    fc.assert(
      fc.property(tree, (value) => {
        expect(outcome(canonicalJson, value)).toEqual(outcome(recursiveCanonicalJson, value));
      }),
      { numRuns: 3000 },
    );
    // The quirks, spelled out.
    expect(canonicalJson([1, , undefined, () => 1])).toBe('[1,,null,]');
    expect(canonicalJson({ a: undefined, b: () => 1 })).toBe('{"b":undefined}');
  });

  it('on deep nesting: the same text where recursion still copes, and no stack overflow at 100,000 levels (1,000,000 for arrays)', () => {
    const nest = (depth: number, leaf: unknown, wrap: (inner: unknown) => unknown) => {
      let v = leaf;
      for (let i = 0; i < depth; i++) v = wrap(v);
      return v;
    };
    const mixed = (inner: unknown) => ({ k: [inner, 1], a: 0 });
    expect(canonicalJson(nest(2000, 'x', mixed))).toBe(recursiveCanonicalJson(nest(2000, 'x', mixed)));
    const depth = 100_000;
    expect(canonicalJson(nest(depth, null, (inner) => ({ a: inner })))).toBe(`${'{"a":'.repeat(depth)}null${'}'.repeat(depth)}`);
    for (const d of [depth, 1_000_000]) expect(canonicalJson(nest(d, 7, (inner) => [inner]))).toBe(`${'['.repeat(d)}7${']'.repeat(d)}`);
    expect(() => recursiveCanonicalJson(nest(100_000, 7, (inner) => [inner]))).toThrow(RangeError);
  });

  it('refuses a cyclic value (where the recursion overflowed), and takes a shared one as the recursion did', () => {
    const cyclic: Record<string, unknown> = { a: 1 };
    cyclic.self = { back: [cyclic] };
    expect(() => canonicalJson(cyclic)).toThrow(new TypeError('cannot hash a cyclic value (an object or array that contains itself)'));
    const loop: unknown[] = [];
    loop.push(loop);
    expect(() => canonicalJson(loop)).toThrow(/cyclic/);
    expect(() => recursiveCanonicalJson(loop)).toThrow(RangeError);
    const shared = { x: [1, 2] };
    const twice = { a: shared, b: [shared, shared], c: { d: shared } };
    expect(canonicalJson(twice)).toBe(recursiveCanonicalJson(twice));
  });

  it('costs about what the recursion did on a large metric batch (printed, not asserted)', () => {
    const points = Array.from({ length: 10_000 }, (_, i) => ({ key: 'train/loss', step: i, value: 2 / Math.sqrt(i + 1), time: 1_700_000_000_000 + i }));
    const batch = { runId: '00000000-0000-4000-8000-000000000000', points };
    const time = (f: (v: unknown) => string) => {
      f(batch);
      const t0 = performance.now();
      for (let i = 0; i < 20; i++) f(batch);
      return (performance.now() - t0) / 20;
    };
    const recursive = time(recursiveCanonicalJson);
    const iterative = time(canonicalJson);
    console.log(`canonicalJson of a 10,000-point batch: iterative ${iterative.toFixed(1)} ms, recursive ${recursive.toFixed(1)} ms (×${(iterative / recursive).toFixed(2)})`);
    expect(canonicalJson(batch)).toBe(recursiveCanonicalJson(batch));
  });
});

/** jsonTextDepth as it was, one character at a time: the reference for the indexOf scan. */
function charLoopTextDepth(text: string, limit = Infinity): number {
  let depth = 0;
  let deepest = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 92) i++;
      else if (c === 34) inString = false;
    } else if (c === 34) inString = true;
    else if (c === 123 || c === 91) {
      if (++depth > deepest) deepest = depth;
      if (deepest > limit) return deepest;
    } else if (c === 125 || c === 93) depth--;
  }
  return deepest;
}

describe('jsonTextDepth (a request body measured before it is parsed)', () => {
  it("agrees with the parsed value's depth on random JSON, strings full of quotes, brackets and backslashes included", () => {
    const tricky = fc.string({ unit: fc.constantFrom('"', '\\', '[', ']', '{', '}', 'a', '\\"', '\\\\') });
    const json = fc.letrec((tie) => ({
      value: fc.oneof({ depthSize: 'small' }, tricky, fc.double({ noNaN: true, noDefaultInfinity: true }), fc.constant(null), fc.array(tie('value'), { maxLength: 4 }), fc.dictionary(tricky, tie('value'), { maxKeys: 4 })),
    })).value;
    fc.assert(
      fc.property(json, fc.integer({ min: 0, max: 12 }), (value, limit) => {
        const text = JSON.stringify(value);
        expect(jsonTextDepth(text)).toBe(jsonDepth(value));
        expect(jsonTextDepth(new TextEncoder().encode(text))).toBe(jsonDepth(value));
        expect(jsonTextDepth(text, limit)).toBe(charLoopTextDepth(text, limit));
      }),
      { numRuns: 2000 },
    );
  });

  it('reads text that is not JSON the way the character loop did: unterminated strings, escaped quotes, stray closers', () => {
    // How I tried to break it: quotes escaped by odd and even runs of backslashes, a string that never ends, brackets inside strings.
    for (const text of ['"\\\\"[[', '"\\\\\\"[["', '["\\"', '[["]]"]]', '"abc', '[["\\\\\\\\"],[[]]]', ']]][[', '{"a\\"[":[{"b":"\\\\"}]}', '"', '""[', '[""]'])
      for (const limit of [Infinity, 1]) {
        expect(jsonTextDepth(text, limit), text).toBe(charLoopTextDepth(text, limit));
        expect(jsonTextDepth(new TextEncoder().encode(text), limit), text).toBe(charLoopTextDepth(text, limit));
      }
  });

  it('skips a long string in one native search (a 10,000-point packed batch)', () => {
    const body = JSON.stringify({ json: { runId: crypto.randomUUID(), columns: { steps: 'A'.repeat(106_668), values: 'B/+='.repeat(26_667), times: 'C'.repeat(106_668) } } });
    const time = (f: (t: string) => number) => {
      const t0 = performance.now();
      for (let i = 0; i < 20; i++) f(body);
      return (performance.now() - t0) / 20;
    };
    const bytes = new TextEncoder().encode(body);
    const ofBytes = () => jsonTextDepth(bytes);
    time(jsonTextDepth);
    time(charLoopTextDepth);
    const fast = time(jsonTextDepth);
    const fastBytes = time(ofBytes);
    const slow = time(charLoopTextDepth);
    console.log(`jsonTextDepth of a ${body.length}-character body: ${fast.toFixed(3)} ms (as bytes ${fastBytes.toFixed(3)} ms); the character loop ${slow.toFixed(3)} ms`);
    expect(jsonTextDepth(body)).toBe(3);
    expect(ofBytes()).toBe(3);
  });
});
