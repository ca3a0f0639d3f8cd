import type { Db } from '@pedigree/db';
import { GENESIS_HASH } from './canonical.ts';
import { eventHash, rowToEvent, type EventRow } from './store.ts';

export interface BrokenEvent {
  position: number;
  streamId: string;
  streamVersion: number;
  eventId: string;
  type: string;
  reason: string;
}

export interface VerifyResult {
  ok: boolean;
  checked: number;
  streams: number;
  /** The first event (in global order) whose hash, link or version is wrong. */
  firstBroken?: BrokenEvent;
}

/**
 * Walks every stream's hash chain in global order: each event's prev_hash must
 * be the previous event's hash, versions must count 1, 2, 3…, and the hash must
 * match the event's canonical content.
 */
export async function verifyChain(db: Db, opts: { streamId?: string; batch?: number; onProgress?: (checked: number) => void } = {}): Promise<VerifyResult> {
  const heads = new Map<string, { version: number; hash: string }>();
  const batch = opts.batch ?? 5000;
  let after = 0;
  let checked = 0;
  for (;;) {
    const rows = await db.query<EventRow>(
      `SELECT position, stream_id, stream_version, event_id, project_id, type, schema_version, data, metadata, recorded_at, prev_hash, hash
       FROM events WHERE position > $1 ${opts.streamId ? 'AND stream_id = $3' : ''} ORDER BY position LIMIT $2`,
      opts.streamId ? [after, batch, opts.streamId] : [after, batch],
    );
    if (rows.length === 0) break;
    for (const row of rows) {
      const head = heads.get(row.stream_id) ?? { version: 0, hash: GENESIS_HASH };
      const e = rowToEventRaw(row);
      const broken = (reason: string): VerifyResult => ({
        ok: false,
        checked,
        streams: heads.size,
        firstBroken: { position: row.position, streamId: row.stream_id, streamVersion: row.stream_version, eventId: row.event_id, type: row.type, reason },
      });
      if (row.stream_version !== head.version + 1) return broken(`version ${row.stream_version} follows ${head.version}`);
      if (row.prev_hash !== head.hash) return broken('prev_hash does not match the previous event’s hash');
      if (eventHash(row.prev_hash, e) !== row.hash) return broken('content does not match its hash (altered after it was written)');
      heads.set(row.stream_id, { version: row.stream_version, hash: row.hash });
      checked++;
    }
    after = rows[rows.length - 1]!.position;
    opts.onProgress?.(checked);
  }
  return { ok: true, checked, streams: heads.size };
}

/** The event exactly as stored (no upcasting): the hash covers the stored version. */
function rowToEventRaw(row: EventRow) {
  return { ...rowToEvent(row), data: row.data } as ReturnType<typeof rowToEvent>;
}
