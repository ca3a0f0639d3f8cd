/**
 * One pass over a store, in a process of its own, for bench/replay-size.ts:
 * prints one line of JSON with what it did, how long it took and its peak RSS.
 *
 *   node --import tsx bench/replay-size-child.ts replay|verify|read <url|dir> <maxBatchBytes|count>
 *
 * `count` reads by count only (the reader before issue 13); `read` only reads
 * the events (JSON-parsed), checking and projecting nothing.
 */
import { readEventBatches, pointsIn } from '@pedigree/ledger';
import { openPedigree } from '@pedigree/lineage';

const [mode, store, limit] = process.argv.slice(2);
if (!mode || !['replay', 'verify', 'read'].includes(mode) || !store || !limit) {
  console.error('usage: replay-size-child.ts replay|verify|read <url|dir> <maxBatchBytes|count>');
  process.exit(2);
}
const maxBatchBytes = limit === 'count' ? Infinity : Number(limit);

const pd = await openPedigree(/^postgres(ql)?:/.test(store) ? { url: store } : { dir: store });
try {
  const t0 = performance.now();
  let events = 0;
  let points = 0;
  let batches = 0;
  let ok = true;
  if (mode === 'replay') {
    const r = await pd.replay({ maxBatchBytes });
    ({ events, batches = 0 } = r);
    points = r.points ?? 0;
  } else if (mode === 'verify') {
    const r = await pd.verify({ maxBatchBytes });
    ({ ok, checked: events, batches = 0 } = r);
    points = r.points ?? 0;
  } else {
    for await (const batch of readEventBatches(pd.database.db, { maxBatchBytes })) {
      batches++;
      events += batch.rows.length;
      for (const row of batch.rows) points += pointsIn(row);
    }
  }
  const ms = performance.now() - t0;
  // maxRSS: kilobytes on Linux and macOS.
  console.log(JSON.stringify({ mode, ok, events, points, batches, ms, maxRssBytes: process.resourceUsage().maxRSS * 1024 }));
} finally {
  await pd.close();
}
