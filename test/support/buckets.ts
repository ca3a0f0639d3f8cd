import type { Bucket } from '@pedigree/lineage';

/**
 * What a bucket query must return, from raw points in (step, position, idx)
 * order. `grid`: buckets of this width from this step instead of the query's
 * own (what a live chart keeps while points arrive).
 */
export function referenceBuckets(points: { step: number; value: number }[], opts: { buckets: number; fromStep?: number; toStep?: number }, grid?: { from: number; width: number }): Bucket[] {
  if (points.length === 0) return [];
  const first = points[0]!.step;
  const last = points.at(-1)!.step;
  const from = grid?.from ?? Math.max(opts.fromStep ?? first, first);
  const to = grid ? Infinity : Math.min(opts.toStep ?? last, last);
  if (to < from) return [];
  const width = grid?.width ?? Math.max(1, Math.ceil((to - from + 1) / opts.buckets));
  const out = new Map<number, Bucket>();
  for (const p of points) {
    if (p.step < from || p.step > to) continue;
    const b = Math.floor((p.step - from) / width);
    const cur = out.get(b);
    const finite = Number.isNaN(p.value) ? null : p.value;
    if (!cur) {
      out.set(b, { fromStep: p.step, toStep: p.step, count: 1, min: finite ?? NaN, max: finite ?? NaN, last: p.value, lastStep: p.step });
      continue;
    }
    cur.toStep = p.step;
    cur.lastStep = p.step;
    cur.count++;
    cur.last = p.value;
    if (finite !== null) {
      cur.min = Number.isNaN(cur.min) ? finite : Math.min(cur.min, finite);
      cur.max = Number.isNaN(cur.max) ? finite : Math.max(cur.max, finite);
    }
  }
  return [...out.entries()].sort(([a], [b]) => a - b).map(([, v]) => v);
}
