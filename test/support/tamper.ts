import { createHash, randomUUID } from 'node:crypto';
import canonicalize from 'canonicalize';
import type { Queryable } from '@pedigree/db';
import { EVENT_COLUMNS, type EventRow } from '@pedigree/ledger';
import type { Pedigree } from '@pedigree/lineage';

/**
 * What someone with the database's owner or superuser rights can do to the
 * event log behind the store's back, written as an attacker would: raw SQL,
 * triggers switched off for the moment, and hashes recomputed with the
 * algorithm docs/ledger-verification.md publishes — implemented here from
 * that page (JCS by the `canonicalize` package, not Pedigree's code), so the
 * forgeries also prove the page right: plain `verify` accepts them.
 */

/** An events row as SELECT returns it: the ledger's own row type (only the hashing below is written from the page). */
export type RawEvent = EventRow;

export const GENESIS = '0'.repeat(64);

/** The event hash as docs/ledger-verification.md specifies it: SHA-256 over the previous hash (hex) and the JCS form of the event. */
export function documentedEventHash(prevHash: string, e: Omit<RawEvent, 'position' | 'prev_hash' | 'hash'>): string {
  const envelope = {
    streamId: e.stream_id,
    streamVersion: e.stream_version,
    eventId: e.event_id,
    projectId: e.project_id,
    type: e.type,
    schemaVersion: e.schema_version,
    data: e.data,
    metadata: e.metadata,
    recordedAt: e.recorded_at.toISOString(),
  };
  return createHash('sha256').update(`${prevHash}${canonicalize(envelope)}`, 'utf8').digest('hex');
}

/**
 * Runs `sql` with the events table's user triggers (the immutability guard) off, as an owner or superuser can.
 * The store's connections run as pedigree_app, which may not; the test server's and PGlite's login is a
 * superuser, so this session steps out of that role first (SET LOCAL ROLE NONE), as anyone with the login could.
 */
export async function behindTheStoresBack(db: Queryable & { transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> }, fn: (tx: Queryable) => Promise<void>): Promise<void> {
  await db.transaction(async (tx) => {
    await tx.query('SET LOCAL ROLE NONE');
    await tx.query('ALTER TABLE events DISABLE TRIGGER USER');
    await fn(tx);
    await tx.query('ALTER TABLE events ENABLE TRIGGER USER');
  });
}

const COLUMNS = EVENT_COLUMNS;

export async function lastEvent(db: Queryable): Promise<RawEvent> {
  const [row] = await db.query<RawEvent>(`SELECT ${COLUMNS} FROM events ORDER BY position DESC LIMIT 1`);
  return row!;
}

/** (a) Deletes the log's last event (the last of its stream too, so every chain still verifies). */
export async function deleteLastEvent(pd: Pedigree): Promise<RawEvent> {
  const last = await lastEvent(pd.database.db);
  await behindTheStoresBack(pd.database.db, async (tx) => {
    await tx.query('DELETE FROM events WHERE position = $1', [last.position]);
  });
  return last;
}

/**
 * (b) Inserts a forged ProjectCreated (a new stream, so its chain is valid)
 * at `position` — a gap left by a failed transaction, or zero or below —
 * with its hash computed as documented. A plain INSERT: the guard does not
 * even stand in its way.
 */
export async function insertForgedEvent(pd: Pedigree, position: number): Promise<RawEvent> {
  const projectId = randomUUID();
  const base = {
    stream_id: `project-${projectId}`,
    stream_version: 1,
    event_id: randomUUID(),
    project_id: projectId,
    type: 'ProjectCreated',
    schema_version: 1,
    data: { projectId, name: 'backdated' },
    metadata: { actor: 'history' },
    recorded_at: new Date('2026-01-01T00:00:00.000Z'),
  };
  const hash = documentedEventHash(GENESIS, base);
  await pd.database.db.query(
    `INSERT INTO events (position, stream_id, stream_version, event_id, project_id, type, schema_version, data, metadata, recorded_at, prev_hash, hash)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9::jsonb, $10, $11, $12)`,
    [position, base.stream_id, base.stream_version, base.event_id, base.project_id, base.type, base.schema_version, JSON.stringify(base.data), JSON.stringify(base.metadata), base.recorded_at, GENESIS, hash],
  );
  return { ...base, position, prev_hash: GENESIS, hash };
}

/**
 * (c) Changes one event's data and re-hashes it and the rest of its stream,
 * each link recomputed as documented: every chain still verifies.
 */
export async function rewriteAndRehash(pd: Pedigree, position: number, newData: unknown): Promise<void> {
  const db = pd.database.db;
  const [target] = await db.query<RawEvent>(`SELECT ${COLUMNS} FROM events WHERE position = $1`, [position]);
  const rest = await db.query<RawEvent>(`SELECT ${COLUMNS} FROM events WHERE stream_id = $1 AND stream_version >= $2 ORDER BY stream_version`, [target!.stream_id, target!.stream_version]);
  await behindTheStoresBack(db, async (tx) => {
    let prev = target!.prev_hash;
    for (const [i, row] of rest.entries()) {
      const data = i === 0 ? newData : row.data;
      const hash = documentedEventHash(prev, { ...row, data });
      await tx.query('UPDATE events SET data = $1::jsonb, prev_hash = $2, hash = $3 WHERE position = $4', [JSON.stringify(data), prev, hash, row.position]);
      prev = hash;
    }
  });
}

/** Consumes sequence values as failed transactions do, leaving a gap in positions; returns the skipped positions. */
export async function burnPositions(db: Queryable, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const [row] = await db.query<{ p: number }>(`SELECT nextval(pg_get_serial_sequence('events', 'position'))::int8 AS p`);
    out.push(row!.p);
  }
  return out;
}
