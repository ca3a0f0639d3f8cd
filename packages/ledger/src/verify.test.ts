import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalJson } from './canonical.ts';
import { canonicalJsonOfParsed } from './verify.ts';

/**
 * verify and replay hash what they read through canonicalJsonOfParsed, a
 * fast path that must give canonicalJson's bytes exactly, for every value a
 * driver can return (JSON parsed from jsonb's text) and anything else.
 */
describe('canonicalJsonOfParsed', () => {
  const same = (value: unknown) => expect(canonicalJsonOfParsed(value)).toBe(canonicalJson(value));

  it('equals canonicalJson on random JSON, as parsed back from text', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        same(JSON.parse(JSON.stringify(v)));
      }),
      { numRuns: 2000 },
    );
    fc.assert(
      fc.property(fc.jsonValue({ stringUnit: 'binary' }), (v) => {
        same(JSON.parse(JSON.stringify(v)));
      }),
      { numRuns: 1000 },
    );
    // Keys already in canonical order at every level (the fast path's case), as jsonb mostly returns metric points.
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        same(JSON.parse(canonicalJson(v)));
      }),
      { numRuns: 2000 },
    );
  });

  it('equals it where the keys are out of canonical order or cannot be put in it', () => {
    same({ b: 1, a: 2 }); // insertion order
    same(JSON.parse('{"step":1,"key":"x"}'));
    same({ 10: 'a', 9: 'b', x: 1 }); // integer-like keys come first, numerically: "10" < "9" as text
    same({ '\uffff': 1, '\ud83d\ude00': 2 }); // UTF-16 code units, not code points
    same({ a: { d: 1, c: [{ f: 1, e: 2 }] } }); // deep inside
    same({ lone: '\ud800', ctrl: '\u0001\u001f"\\', big: 1e21, small: 5e-7, neg: -0 });
  });

  it('equals it on values no JSON text holds (undefined, holes, toJSON, Dates)', () => {
    same({ a: undefined, b: 1 });
    same([1, undefined, 3]);
    same([1, , 3]);
    same({ toJSON: () => 'no', a: 1 });
    same({ when: new Date(0) });
    expect(() => canonicalJsonOfParsed({ x: Number.NaN })).toThrow(); // as canonicalJson does
  });

  it('takes the deep values JSON.stringify would recurse into, without overflowing the stack', () => {
    let deep: unknown = 1;
    for (let i = 0; i < 100_000; i++) deep = { a: deep };
    same(deep);
  });
});
