/**
 * The dashboard's live charts (apps/web/app/_lib/live.ts) fold pushed points
 * into the buckets the server answered instead of reading them again. Folded,
 * a chart must be exactly what bucketing every point at the same width gives
 * (count, min, max ignoring NaN, the last point logged at the highest step);
 * an update it already holds changes nothing; what it cannot derive asks for
 * a refetch. Tried to break it with repeated steps, NaN, points landing in
 * old buckets and in new ones, and updates delivered twice.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { foldUpdate, type LiveBucket, type LiveChart } from '../apps/web/app/_lib/live.ts';
import { referenceBuckets } from './support/buckets.ts';

type P = { key: string; step: number; value: number };

/** Every point (in step order, a step's points as logged) into buckets of `width` from `from`. */
const bucketsAt = (points: P[], from: number, width: number): LiveBucket[] => referenceBuckets(sortPoints(points), { buckets: 1 }, { from, width });

const value = fc.oneof(fc.integer({ min: -50, max: 50 }), fc.constant(NaN));
const batch = (min: number) => fc.array(fc.record({ key: fc.constantFrom('loss', 'other'), step: fc.integer({ min, max: min + 300 }), value }), { minLength: 1, maxLength: 40 });

describe('live chart folding', () => {
  it('gives what bucketing every point at the chart’s width gives', () => {
    fc.assert(
      fc.property(batch(0), fc.array(batch(5), { maxLength: 6 }), fc.integer({ min: 1, max: 50 }), (first, later, n) => {
        const initial = first.filter((p) => p.key === 'loss');
        fc.pre(initial.length > 0);
        // What the server answered for the first batch (its width rule, from its first step).
        let chart: LiveChart = { position: 10, buckets: referenceBuckets(sortPoints(initial), { buckets: n }) };
        const from = chart.buckets[0]!.fromStep;
        const width = Math.max(1, Math.ceil((chart.buckets.at(-1)!.toStep - from + 1) / n));
        const all = [...initial];
        let refetched = false;
        later.forEach((points, j) => {
          const next = foldUpdate(chart, { buckets: n }, 'loss', 11 + j, points);
          all.push(...points.filter((p) => p.key === 'loss'));
          if (next === 'refetch') refetched = true;
          else if (next !== 'unchanged' && !refetched) {
            chart = next;
            expect(chart.position).toBe(11 + j);
          }
          // the same update again (a reconnect replays from the last id): nothing changes
          expect(foldUpdate(chart, { buckets: n }, 'loss', chart.position, points)).toBe('unchanged');
        });
        if (refetched) {
          // only when the points would need more than twice the buckets asked for, or a step before the first
          expect(all.some((p) => p.step < from) || new Set(all.map((p) => Math.floor((p.step - from) / width))).size > 2 * n).toBe(true);
          return;
        }
        expect(chart.buckets).toEqual(bucketsAt(all, from, width));
        if (later.length) expect(chart.grid ?? { from, width }).toEqual({ from, width });
      }),
      { numRuns: 500 },
    );
  });

  it('asks for a refetch where it cannot derive the answer', () => {
    const b = (step: number, value: number): LiveBucket => ({ fromStep: step, toStep: step, count: 1, min: value, max: value, last: value, lastStep: step });
    const chart = { position: 5, buckets: [b(10, 1), b(20, 2)] };
    expect(foldUpdate(chart, { buckets: 100 }, 'loss', 6, [{ key: 'loss', step: 3, value: 0 }])).toBe('refetch'); // before the first step
    expect(foldUpdate({ position: 5, buckets: [] }, { buckets: 100 }, 'loss', 6, [{ key: 'loss', step: 3, value: 0 }])).toBe('refetch'); // nothing to take the width from
    expect(foldUpdate(chart, { buckets: 100, fromStep: 0, toStep: 50 }, 'loss', 6, [{ key: 'loss', step: 30, value: 0 }])).toBe('refetch'); // zoomed, inside the range
    expect(foldUpdate(chart, { buckets: 100, fromStep: 0, toStep: 50 }, 'loss', 6, [{ key: 'loss', step: 60, value: 0 }])).toEqual({ ...chart, position: 6 }); // zoomed, outside
    expect(foldUpdate(chart, { buckets: 1 }, 'loss', 6, [{ key: 'loss', step: 500, value: 0 }, { key: 'loss', step: 900, value: 0 }])).toBe('refetch'); // past twice the buckets asked for
    expect(foldUpdate(chart, { buckets: 100 }, 'loss', 6, [{ key: 'other', step: 3, value: 0 }])).toEqual({ ...chart, position: 6 }); // another key's points
    expect(foldUpdate(chart, { buckets: 100 }, 'loss', 5, [{ key: 'loss', step: 30, value: 0 }])).toBe('unchanged'); // already in the answer
  });
});

function sortPoints(points: P[]): { step: number; value: number }[] {
  return points.map((p, i) => ({ ...p, i })).sort((a, b) => a.step - b.step || a.i - b.i).map(({ step, value }) => ({ step, value }));
}
