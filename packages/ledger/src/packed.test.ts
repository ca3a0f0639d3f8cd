/**
 * The packed (columnar) wire form of a metric batch. How we tried to break
 * it: values whose JSON form is lossy or absent (NaN, ±Infinity, -0, the
 * largest and smallest doubles), many keys in any order, and packings that
 * lie — a wrong n, short and long columns, non-base64 text, an index past the
 * keys, repeated keys, an index given for one key or missing for several.
 * Each lie is refused naming the column; nothing is guessed.
 */
import { Buffer } from 'node:buffer';
import { describe, expect, it } from 'vitest';
import { ValidationError } from './errors.ts';
import { packColumns, packPoints, unpackPoints, type PackedPoints } from './packed.ts';

const points = [
  { key: 'loss', step: 0, value: 2.5, time: 1_700_000_000_000 },
  { key: 'acc', step: 0, value: NaN, time: 1_700_000_000_001 },
  { key: 'loss', step: 1, value: -0, time: 1_700_000_000_002 },
  { key: 'lr', step: 2 ** 53 - 1, value: Infinity, time: 0 },
  { key: 'acc', step: 7, value: -Infinity, time: 1.5 },
  { key: 'loss', step: 3, value: Number.MIN_VALUE, time: 2 },
  { key: 'lr', step: 4, value: -Number.MAX_VALUE, time: 3 },
];

describe('packed metric batches', () => {
  it('round-trips every number bit for bit, keys in first-appearance order', () => {
    const packed = packPoints(points);
    expect(packed).toMatchObject({ format: 'columns/f64le', n: 7, keys: ['loss', 'acc', 'lr'] });
    const back = unpackPoints(JSON.parse(JSON.stringify(packed)) as PackedPoints);
    expect(back).toHaveLength(points.length);
    back.forEach((p, i) => {
      expect(p.key).toBe(points[i]!.key);
      expect(Object.is(p.step, points[i]!.step)).toBe(true);
      expect(Object.is(p.value, points[i]!.value)).toBe(true); // NaN is NaN, -0 stays -0 on the wire
      expect(Object.is(p.time, points[i]!.time)).toBe(true);
    });
  });

  it('writes each column as the bytes of little-endian float64s (uint32 indices), the same from objects or from columns', () => {
    const le = (xs: number[], width: 4 | 8) => {
      const b = Buffer.alloc(xs.length * width);
      xs.forEach((x, i) => (width === 8 ? b.writeDoubleLE(x, i * 8) : b.writeUInt32LE(x, i * 4)));
      return b.toString('base64');
    };
    const packed = packPoints(points);
    expect(packed.steps).toBe(le(points.map((p) => p.step), 8));
    expect(packed.values).toBe(le(points.map((p) => p.value), 8));
    expect(packed.times).toBe(le(points.map((p) => p.time), 8));
    expect(packed.keyIndex).toBe(le([0, 1, 0, 2, 1, 0, 2], 4));

    // A client's buffer: the run's key table holds keys this batch does not use, and the batch is a slice of longer columns.
    const keys = ['unused', 'lr', 'loss', 'acc'];
    const at = (key: string) => keys.indexOf(key);
    const cap = points.length + 5;
    const columns = { keys, keyIndex: new Uint32Array(cap), steps: new Float64Array(cap), values: new Float64Array(cap), times: new Float64Array(cap) };
    points.forEach((p, i) => {
      columns.keyIndex[i + 2] = at(p.key);
      columns.steps[i + 2] = p.step;
      columns.values[i + 2] = p.value;
      columns.times[i + 2] = p.time;
    });
    expect(packColumns(columns, 2, 2 + points.length)).toEqual(packed);
    expect(packColumns(columns, 3, 4)).toEqual(packPoints([points[1]!]));
  });

  it('one key needs no index', () => {
    const packed = packPoints([{ key: 'loss', step: 0, value: 1, time: 0 }]);
    expect(packed.keyIndex).toBeUndefined();
    expect(unpackPoints(packed)).toEqual([{ key: 'loss', step: 0, value: 1, time: 0 }]);
  });

  const refused = (p: unknown, field: RegExp) => {
    let error: unknown;
    try {
      unpackPoints(p as PackedPoints);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).message).toMatch(field);
  };

  it('refuses a packing that lies about its size or content', () => {
    const good = packPoints(points);
    refused({ ...good, format: 'columns/f64be' }, /columns\.format/);
    refused({ ...good, n: 6 }, /columns\.steps: must hold n × 8 = 48 bytes, got 56/);
    refused({ ...good, n: 0 }, /columns\.n/);
    refused({ ...good, n: 50_001 }, /columns\.n/);
    refused({ ...good, values: good.values.slice(0, -4) }, /columns\.values/);
    refused({ ...good, times: `${good.times}AAAAAAAAAAA=` }, /columns\.times/);
    refused({ ...good, steps: `!${good.steps.slice(1)}` }, /columns\.steps: must be base64/);
    refused({ ...good, steps: 42 }, /columns\.steps: must be base64/);
    refused({ ...good, keys: [] }, /columns\.keys/);
    refused({ ...good, keys: ['loss', 'loss', 'lr'] }, /columns\.keys: must not repeat/);
    refused({ ...good, keyIndex: undefined }, /columns\.keyIndex: is required/);
    refused({ ...packPoints([{ key: 'a', step: 0, value: 1, time: 0 }]), keyIndex: 'AAAAAA==' }, /columns\.keyIndex: must be left out/);
    const past = Buffer.from(good.keyIndex!, 'base64');
    past.writeUInt32LE(3, 4 * 4);
    refused({ ...good, keyIndex: past.toString('base64') }, /columns\.keyIndex: point 4 names key 3, past the 3 keys/);
    refused(null, /columns: must be an object/);
  });
});
