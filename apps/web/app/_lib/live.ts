/**
 * Live charts without refetching: a chart's buckets (`metrics.chart`, which
 * says the position of the run's last event it includes) take the points of
 * later `runs.watch` updates as the server would have counted them, into
 * buckets of the same width. What cannot be derived here is left to a
 * refetch: a zoomed chart that the points fall into (its range's ends depend
 * on the series), a point before the series' first step, an empty chart, or
 * a chart grown to twice the buckets it asked for.
 */

import type { Outputs } from './trpc';

/** A bucket as the server answers it (lineage's Bucket). */
export type LiveBucket = Outputs['metrics']['buckets'][number];

export interface ChartInput {
  buckets: number;
  fromStep?: number;
  toStep?: number;
}

export interface LivePoint {
  key: string;
  step: number;
  value: number;
}

/**
 * The chart after an update at `position` with these points (all keys; this
 * chart's key is `key`); `unchanged` when the update is one it already holds,
 * `refetch` when it cannot be derived.
 */
export interface LiveChart {
  position: number;
  buckets: LiveBucket[];
  /** The server's buckets' grid, kept once points are folded in (they may widen the step range, not the buckets). */
  grid?: { from: number; width: number };
}

export function foldUpdate(chart: LiveChart, input: ChartInput, key: string, position: number, points: readonly LivePoint[]): LiveChart | 'unchanged' | 'refetch' {
  if (position <= chart.position) return 'unchanged';
  const mine = points.filter((p) => p.key === key);
  if (mine.length === 0) return { ...chart, position };
  if (input.fromStep !== undefined || input.toStep !== undefined) {
    const lo = input.fromStep ?? -Infinity;
    const hi = input.toStep ?? Infinity;
    return mine.some((p) => p.step >= lo && p.step <= hi) ? 'refetch' : { ...chart, position };
  }
  const first = chart.buckets[0];
  const last = chart.buckets.at(-1);
  if (!first || !last) return 'refetch';
  // The server's rule (metricBuckets): width = ceil((last step − first step + 1) / buckets), from the first step.
  const { from, width } = chart.grid ?? { from: first.fromStep, width: Math.max(1, Math.ceil((last.toStep - first.fromStep + 1) / input.buckets)) };
  const byIndex = new Map(chart.buckets.map((b) => [Math.floor((b.fromStep - from) / width), { ...b }]));
  for (const p of mine) {
    if (p.step < from) return 'refetch';
    const i = Math.floor((p.step - from) / width);
    const b = byIndex.get(i);
    if (!b) {
      byIndex.set(i, { fromStep: p.step, toStep: p.step, count: 1, min: p.value, max: p.value, last: p.value, lastStep: p.step });
      continue;
    }
    b.count++;
    if (p.step < b.fromStep) b.fromStep = p.step;
    // min and max ignore NaN (NaN while the bucket holds nothing else); a later point wins a tie on step.
    if (!Number.isNaN(p.value)) {
      if (Number.isNaN(b.min) || p.value < b.min) b.min = p.value;
      if (Number.isNaN(b.max) || p.value > b.max) b.max = p.value;
    }
    if (p.step >= b.toStep) {
      b.toStep = p.step;
      b.lastStep = p.step;
      b.last = p.value;
    }
  }
  if (byIndex.size > 2 * input.buckets) return 'refetch';
  return { position, buckets: [...byIndex.entries()].sort(([a], [b]) => a - b).map(([, b]) => b), grid: { from, width } };
}
