import type { EventRow, EventStore } from './store.ts';
import { rowToEvent } from './store.ts';

export interface RebuildResult {
  events: number;
  ms: number;
}

/**
 * Rebuilds every projection from the events, in one transaction: readers keep
 * seeing the old read models until the new ones commit.
 */
export async function rebuildProjections(store: EventStore, opts: { batch?: number; onProgress?: (done: number, total: number) => void } = {}): Promise<RebuildResult> {
  const t0 = performance.now();
  const batch = opts.batch ?? 5000;
  const [countRow] = await store.db.query<{ n: number }>('SELECT count(*)::int8 AS n FROM events');
  const total = countRow?.n ?? 0;
  let done = 0;
  await store.db.transaction(async (tx) => {
    await tx.query('SELECT pg_advisory_xact_lock(72490002)'); // no appends while we rebuild
    const tables = store.projections.flatMap((p) => p.tables);
    if (tables.length) await tx.query(`TRUNCATE ${tables.map((t) => `"${t}"`).join(', ')}`);
    let after = 0;
    for (;;) {
      const rows = await tx.query<EventRow>(
        `SELECT position, stream_id, stream_version, event_id, project_id, type, schema_version, data, metadata, recorded_at, prev_hash, hash
         FROM events WHERE position > $1 ORDER BY position LIMIT $2`,
        [after, batch],
      );
      if (rows.length === 0) break;
      const events = rows.map(rowToEvent);
      for (const p of store.projections) await p.apply(tx, events);
      after = rows[rows.length - 1]!.position;
      done += rows.length;
      opts.onProgress?.(done, total);
    }
  });
  return { events: done, ms: performance.now() - t0 };
}
