import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalJson, sha256Hex } from './canonical.ts';
import { BLOCK_POINTS, chunkCanonicalJson, chunkOrder, COLUMNS_DIGEST, columnsDigest, digestOf, jsonChunkDigest, chunkPoints, decodeBlocks, decodeFloats, decodeSteps, encodeBlocks, encodeFloats, encodeSteps, inChunkOrder, pointsOf, summarize } from './chunks.ts';
import { EventSchemas, metricJson, validMetricBatch } from './events.ts';

const value = fc.oneof(fc.double(), fc.constantFrom(0, -0, Number.MAX_VALUE, -Number.MIN_VALUE, 1e21, 1e-7, NaN, Infinity, -Infinity));
const point = fc.record({ key: fc.constantFrom('loss', 'lr', 'eval/acc@1', 'a b'), step: fc.nat({ max: 2 ** 53 - 1 }), value, time: fc.double({ min: 0, noNaN: true, noDefaultInfinity: true }) });

describe('metric chunks', () => {
  it('hash their bytes as stored: the key length-prefixed, then steps, vals and times', () => {
    fc.assert(
      fc.property(fc.array(point, { minLength: 1, maxLength: 50 }), (points) => {
        for (const c of chunkPoints(points.map((p) => ({ ...p, value: metricJson(p.value) })))) {
          const key = Buffer.from(c.key, 'utf8');
          const length = Buffer.alloc(4);
          length.writeUInt32BE(key.byteLength);
          const bytes = Buffer.concat([length, key, encodeSteps(c.steps), encodeFloats(c.values), encodeFloats(c.times)]);
          expect(c.digest).toBe(`${COLUMNS_DIGEST}${createHash('sha256').update(bytes).digest('hex')}`); // as chunkPoints makes it
          expect(digestOf(c.digest, c.key, c.columns, () => { throw new Error('a columns digest needs no decoding'); })).toBe(c.digest);
        }
      }),
    );
  });

  it('written before the columns digest: hash the canonical JSON (RFC 8785) of their points, non-finite values as strings', () => {
    fc.assert(
      fc.property(fc.array(point, { minLength: 1, maxLength: 50 }), (points) => {
        for (const c of chunkPoints(points.map((p) => ({ ...p, value: metricJson(p.value) })))) {
          const expected = canonicalJson({ key: c.key, steps: c.steps, times: c.times, values: c.values.map(metricJson) });
          expect(chunkCanonicalJson(c.key, c.steps, c.values, c.times)).toBe(expected);
          const legacy = jsonChunkDigest(c.key, c.steps, c.values, c.times);
          expect(legacy).toBe(`sha256:${sha256Hex(expected)}`);
          expect(digestOf(legacy, c.key, { steps: new Uint8Array(), vals: new Uint8Array(), times: new Uint8Array() }, () => c)).toBe(legacy);
        }
      }),
    );
  });

  it('name a key by its UTF-8 length, so no two keys and columns run together', () => {
    const one = new Uint8Array(8);
    expect(columnsDigest('ab', one, one, one)).not.toBe(columnsDigest('a', one, one, one));
  });

  it('give back every point, grouped by key in first-appearance order, and summarise them exactly', () => {
    fc.assert(
      fc.property(fc.array(point, { minLength: 1, maxLength: 50 }), (points) => {
        const batch = points.map((p) => ({ ...p, value: metricJson(p.value) }));
        const chunks = chunkPoints(batch);
        expect(pointsOf(chunks)).toEqual(inChunkOrder(batch));
        expect(chunkOrder(batch.map((p) => p.key)).map((i) => batch[i])).toEqual(inChunkOrder(batch));
        for (const c of chunks) {
          const mine = batch.filter((p) => p.key === c.key);
          const values = mine.map((p) => Number(p.value));
          const finite = values.filter((v) => !Number.isNaN(v));
          const lastStep = Math.max(...mine.map((p) => p.step));
          expect(summarize(c.steps, c.values)).toEqual({
            n: mine.length,
            firstStep: Math.min(...mine.map((p) => p.step)),
            lastStep,
            min: finite.length ? Math.min(...finite) : NaN,
            max: finite.length ? Math.max(...finite) : NaN,
            lastValue: values[mine.map((p) => p.step).lastIndexOf(lastStep)],
          });
        }
      }),
    );
  });

  it('write their columns as big-endian int8 and float8 bytes, read back exactly (-0 as 0), as PostgreSQL writes them', () => {
    // int8send / float8send's bytes for the same numbers (what the v2 → bytes migration writes).
    expect(encodeSteps([1, 2 ** 53 - 1, 0]).toString('hex')).toBe('0000000000000001001fffffffffffff0000000000000000');
    expect(encodeFloats([1.5, -0, NaN, -Infinity]).toString('hex')).toBe('3ff80000000000000000000000000000' + '7ff8000000000000fff0000000000000');
    fc.assert(
      fc.property(fc.array(value, { maxLength: 30 }), fc.array(fc.integer({ min: -(2 ** 53) + 1, max: 2 ** 53 - 1 }), { maxLength: 30 }), (values, steps) => {
        expect(decodeFloats(encodeFloats(values))).toEqual(values.map((v) => (v === 0 ? 0 : v)));
        expect(decodeSteps(encodeSteps(steps))).toEqual(steps.map((s) => (s === 0 ? 0 : s)));
      }),
    );
  });

  it('summarise every block of BLOCK_POINTS points by the rule the chunk itself follows', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat({ max: 300 }), value), { minLength: 1, maxLength: 3 * BLOCK_POINTS + 5 }), (pairs) => {
        const steps = pairs.map(([s]) => s);
        const values = pairs.map(([, v]) => (v === 0 ? 0 : v));
        const blocks = decodeBlocks(encodeBlocks(steps, values), steps.length);
        expect(blocks).toHaveLength(Math.ceil(steps.length / BLOCK_POINTS));
        blocks.forEach((b, k) => {
          const s = summarize(steps.slice(k * BLOCK_POINTS, (k + 1) * BLOCK_POINTS), values.slice(k * BLOCK_POINTS, (k + 1) * BLOCK_POINTS));
          expect(b).toEqual({ ...s, k });
        });
      }),
    );
  });
});

describe('validMetricBatch, the fast path of MetricsLogged validation', () => {
  const anything = fc.oneof(fc.string(), fc.double(), fc.integer(), fc.constant(null), fc.constant(undefined), fc.boolean(), fc.constantFrom('NaN', 'Infinity', '-Infinity', 'nan', ''));
  const maybePoint = fc.record(
    {
      key: fc.oneof(fc.constantFrom('loss', 'a/b:c@d', 'x'.repeat(251), '', 'bad\u0000', 'é'), anything),
      step: fc.oneof(fc.nat(), fc.constantFrom(-1, 0.5, 2 ** 53, 2 ** 53 - 1, -0), anything),
      value: fc.oneof(value, anything),
      time: fc.oneof(fc.double(), anything),
      extra: anything,
    },
    { requiredKeys: [] },
  );
  it('accepts exactly what the schema accepts, and gives what it parses', () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(maybePoint, anything), { maxLength: 8 }), (points) => {
        const zod = EventSchemas.MetricsLogged.schema.safeParse({ points });
        const fast = validMetricBatch({ points });
        if (zod.success) expect(fast).toEqual(zod.data);
        else expect(fast).toBeNull();
      }),
      { numRuns: 2000 },
    );
  });
});
