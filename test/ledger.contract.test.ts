/**
 * The event store's contract, run against every backend (emmett-style): the
 * same suite on embedded PGlite and on a PostgreSQL server.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConcurrencyError, EventStore, IdempotencyError, NOTIFY_CHANNEL, streamIds, ValidationError, type StoredEvent } from '@pedigree/ledger';
import type { Pedigree } from '@pedigree/lineage';
import { backends } from './support/stores.ts';
import { snapshot } from './support/snapshot.ts';

for (const { backend, skip } of await backends({ pooler: true })) {
  describe.skipIf(skip)(`ledger contract on ${backend.name}`, () => {
    let pd: Pedigree;
    let store: EventStore;
    let projectId: string;
    beforeAll(async () => {
      pd = await backend.open();
      store = pd.store;
      projectId = (await pd.tracker.createProject({ name: 'contract' })).projectId;
    });
    afterAll(() => backend.dispose());

    const newRun = () => {
      const runId = randomUUID();
      return { runId, stream: streamIds.run(runId), created: { type: 'RunCreated' as const, data: { runId, projectId, name: 'r', kind: 'pretrain' as const } } };
    };

    it('appends with versions 1, 2, 3… and reads the stream back as written', async () => {
      const { stream, created } = newRun();
      const res = await store.append(stream, [created, { type: 'RunStarted', data: {} }], { projectId, expectedVersion: 0 });
      expect(res.version).toBe(2);
      expect(res.duplicate).toBe(false);
      const res2 = await store.append(stream, [{ type: 'TagAdded', data: { tag: 'x' } }], { projectId, expectedVersion: 2 });
      expect(res2.version).toBe(3);
      const events = await store.readStream(stream);
      expect(events.map((e) => [e.streamVersion, e.type])).toEqual([
        [1, 'RunCreated'],
        [2, 'RunStarted'],
        [3, 'TagAdded'],
      ]);
      expect(events[0]!.data).toMatchObject({ name: 'r', kind: 'pretrain', environment: {} });
      expect(events.map((e) => e.position)).toEqual([...res.positions, ...res2.positions]);
      expect(events[1]!.prevHash).toBe(events[0]!.hash);
    });

    it('refuses a stale expected version with a typed, retryable error and stores nothing', async () => {
      const { stream, created } = newRun();
      await store.append(stream, [created], { projectId, expectedVersion: 0 });
      const before = await snapshot(pd.database.db);
      const err = await store.append(stream, [{ type: 'RunStarted', data: {} }], { projectId, expectedVersion: 0 }).catch((e) => e);
      expect(err).toBeInstanceOf(ConcurrencyError);
      expect(err).toMatchObject({ code: 'CONFLICT', expectedVersion: 0, actualVersion: 1 });
      expect(await snapshot(pd.database.db)).toBe(before);
    });

    it('makes a retried append idempotent: same positions back, nothing stored twice', async () => {
      const { stream, created } = newRun();
      const ids = [randomUUID(), randomUUID()];
      const events = [
        { ...created, eventId: ids[0] },
        { type: 'RunStarted' as const, data: {}, eventId: ids[1] },
      ];
      const first = await store.append(stream, events, { projectId, expectedVersion: 0 });
      // The retry even carries the now-stale expected version: it is recognised before the version check.
      const again = await store.append(stream, events, { projectId, expectedVersion: 0 });
      expect(again).toMatchObject({ positions: first.positions, version: 2, duplicate: true });
      expect(await store.readStream(stream)).toHaveLength(2);
    });

    it('refuses an event id reused for a different event, or a half-retried batch', async () => {
      const { stream, created } = newRun();
      const id = randomUUID();
      await store.append(stream, [{ ...created, eventId: id }], { projectId, expectedVersion: 0 });
      const before = await snapshot(pd.database.db);
      await expect(store.append(stream, [{ type: 'TagAdded', data: { tag: 'y' }, eventId: id }], { projectId, expectedVersion: 'any' })).rejects.toBeInstanceOf(IdempotencyError);
      await expect(
        store.append(stream, [{ ...created, eventId: id }, { type: 'TagAdded', data: { tag: 'z' }, eventId: randomUUID() }], { projectId, expectedVersion: 'any' }),
      ).rejects.toBeInstanceOf(IdempotencyError);
      expect(await snapshot(pd.database.db)).toBe(before);
    });

    it('validates every event before anything is written', async () => {
      const { stream, created } = newRun();
      const before = await snapshot(pd.database.db);
      const bad = [
        created,
        { type: 'MetricsLogged', data: { points: [{ key: 'loss', step: -1, value: 1, time: 0 }] } },
      ] as never;
      const err = await store.append(stream, bad, { projectId, expectedVersion: 0 }).catch((e) => e);
      expect(err).toBeInstanceOf(ValidationError);
      expect(err.message).toMatch(/events\[1\]\.data\.points\.0\.step/);
      await expect(store.append(stream, [{ type: 'NoSuchEvent', data: {} }] as never, { projectId, expectedVersion: 0 })).rejects.toThrow(/unknown event type "NoSuchEvent"/);
      await expect(store.append('runs-1', [created], { projectId, expectedVersion: 0 })).rejects.toThrow(/bad stream id/);
      await expect(store.append(stream, [], { projectId, expectedVersion: 0 })).rejects.toThrow(/nothing to append/);
      await expect(store.append(stream, [{ type: 'NoteAdded', data: { text: 'nul \u0000 here' } }], { projectId, expectedVersion: 'any' })).rejects.toThrow(/NUL/);
      await expect(store.append(stream, [{ type: 'NoteAdded', data: { text: 'half \ud800 pair' } }], { projectId, expectedVersion: 'any' })).rejects.toThrow(/surrogate/);
      expect(await snapshot(pd.database.db)).toBe(before);
    });

    it('reads all events in global order after a position, filtered by project', async () => {
      const last = await store.lastPosition();
      const { stream, created } = newRun();
      await store.append(stream, [created, { type: 'RunStarted', data: {} }], { projectId, expectedVersion: 0 });
      const after = await store.readAll({ afterPosition: last });
      expect(after.map((e) => e.type)).toEqual(['RunCreated', 'RunStarted']);
      expect(await store.readAll({ afterPosition: last, projectId: randomUUID() })).toEqual([]);
      const all = await store.readAll({ limit: 100_000 });
      expect(all.map((e) => e.position)).toEqual([...all.map((e) => e.position)].sort((a, b) => a - b));
    });

    it('delivers new events to subscribers exactly once, in order, and resumes from a position', async () => {
      const start = await store.lastPosition();
      const seen: StoredEvent[] = [];
      const sub = pd.subscribe((batch) => void seen.push(...batch), { afterPosition: start, projectId, pollMs: 60_000 });
      await sub.ready;
      const { stream, created } = newRun();
      await store.append(stream, [created], { projectId, expectedVersion: 0 });
      for (let i = 0; i < 20; i++) await store.append(stream, [{ type: 'TagAdded', data: { tag: `t${i}` } }], { projectId, expectedVersion: i + 1 });
      await expect.poll(() => seen.length, { timeout: 10_000 }).toBe(21);
      await sub.close();
      expect(seen.map((e) => e.streamVersion)).toEqual(Array.from({ length: 21 }, (_, i) => i + 1));
      // Resume from the middle: only what came after.
      const resumed: StoredEvent[] = [];
      const sub2 = pd.subscribe((b) => void resumed.push(...b), { afterPosition: seen[9]!.position, streamId: stream });
      await sub2.ready;
      await sub2.close();
      expect(resumed.map((e) => e.streamVersion)).toEqual(Array.from({ length: 11 }, (_, i) => i + 11));
    });

    it('notifies on the events channel only after commit', async () => {
      const got: string[] = [];
      const unlisten = await pd.database.db.listen(NOTIFY_CHANNEL, (p) => got.push(p));
      const { stream, created } = newRun();
      const res = await store.append(stream, [created], { projectId, expectedVersion: 0 });
      await expect.poll(() => got.includes(String(res.positions[0])), { timeout: 5000 }).toBe(true);
      await unlisten();
    });

    it('refuses UPDATE, DELETE and TRUNCATE on events, even as raw SQL', async () => {
      // The store's own connections (pedigree_app) hold no such privilege; test/app-role.test.ts tries more.
      const db = pd.database.db;
      await expect(db.query(`UPDATE events SET type = 'X' WHERE position = 1`)).rejects.toThrow(/permission denied for table events/);
      await expect(db.query('DELETE FROM events WHERE position = 1')).rejects.toThrow(/permission denied for table events/);
      await expect(db.query('TRUNCATE events')).rejects.toThrow(/permission denied for table events/);
      await expect(db.query('TRUNCATE events CASCADE')).rejects.toThrow(/permission denied for table events/);
      expect((await pd.verify()).ok).toBe(true);
    });

    it('refuses them to the owner too: the triggers guard the log against its own owner’s mistakes', async () => {
      // SET LOCAL ROLE NONE: back to the login (a superuser here, as `pedigree migrate` runs).
      // A row trigger fires for a row: the partitions written to are those that hold this project's events.
      const [{ p } = { p: '' }] = await pd.database.db.query<{ p: string }>('SELECT tableoid::regclass::text AS p FROM events WHERE project_id = $1 LIMIT 1', [projectId]);
      const [{ ids } = { ids: '' }] = await pd.database.db.query<{ ids: string }>('SELECT tableoid::regclass::text AS ids FROM event_ids WHERE project_id = $1 LIMIT 1', [projectId]);
      for (const [statement, op] of [
        [`UPDATE events SET type = 'X' WHERE position = 1`, 'UPDATE'],
        ['DELETE FROM events WHERE position = 1', 'DELETE'],
        ['TRUNCATE events', 'TRUNCATE'],
        // Each partition on its own (TRUNCATE of a partition fires only its own triggers), and the event ids.
        [`UPDATE ${p} SET type = 'X'`, 'UPDATE'],
        [`DELETE FROM ${p}`, 'DELETE'],
        ...Array.from({ length: 16 }, (_, k) => [`TRUNCATE events_p${k}`, 'TRUNCATE'] as const),
        ['UPDATE event_ids SET position = 0', 'UPDATE'],
        [`DELETE FROM ${ids}`, 'DELETE'],
        ['TRUNCATE event_ids', 'TRUNCATE'],
        ['TRUNCATE event_ids_p5', 'TRUNCATE'],
      ] as const) {
        await expect(
          pd.database.db.transaction(async (tx) => {
            await tx.query('SET LOCAL ROLE NONE');
            await tx.query(statement);
          }),
        ).rejects.toThrow(new RegExp(`events are immutable \\(${op} refused\\)`));
      }
      expect((await pd.verify()).ok).toBe(true);
    });

    it('refuses UPDATE, DELETE and TRUNCATE on metric chunks (part of their events), to the app and to the owner', async () => {
      const { stream, created } = newRun();
      await store.append(stream, [created, { type: 'MetricsLogged', data: { points: [{ key: 'loss', step: 1, value: 2, time: 3 }] } }], { projectId, expectedVersion: 0 });
      const db = pd.database.db;
      const [{ p } = { p: '' }] = await db.query<{ p: string }>('SELECT tableoid::regclass::text AS p FROM metric_chunks WHERE project_id = $1 LIMIT 1', [projectId]);
      for (const [statement, op] of [
        ['UPDATE metric_chunks SET vals = vals', 'UPDATE'],
        ['DELETE FROM metric_chunks', 'DELETE'],
        ['TRUNCATE metric_chunks', 'TRUNCATE'],
        [`UPDATE ${p} SET vals = vals`, 'UPDATE'],
        [`DELETE FROM ${p}`, 'DELETE'],
        ...Array.from({ length: 16 }, (_, k) => [`TRUNCATE metric_chunks_p${k}`, 'TRUNCATE'] as const),
      ] as const) {
        await expect(db.query(statement)).rejects.toThrow(/permission denied for table metric_chunks/);
        await expect(
          db.transaction(async (tx) => {
            await tx.query('SET LOCAL ROLE NONE');
            await tx.query(statement);
          }),
        ).rejects.toThrow(new RegExp(`metric chunks are part of their events and immutable \\(${op} refused\\)`));
      }
      expect((await pd.verify()).ok).toBe(true);
    });

    it('verify() names the first event altered behind the store’s back', async () => {
      const { stream, created } = newRun();
      await store.append(stream, [created, { type: 'TagAdded', data: { tag: 'honest' } }, { type: 'TagAdded', data: { tag: 'later' } }], { projectId, expectedVersion: 0 });
      const [target] = await store.readStream(stream, { fromVersion: 2, limit: 1 });
      expect((await pd.verify()).ok).toBe(true);
      // An attacker with the owner's rights (out of the application's role): disable the guard, edit history, restore the guard.
      await pd.database.db.transaction(async (tx) => {
        await tx.query('SET LOCAL ROLE NONE');
        await tx.query('ALTER TABLE events DISABLE TRIGGER events_no_update_delete');
        await tx.query(`UPDATE events SET data = '{"tag":"forged"}' WHERE position = $1`, [target!.position]);
        await tx.query('ALTER TABLE events ENABLE TRIGGER events_no_update_delete');
      });
      const result = await pd.verify();
      expect(result.ok).toBe(false);
      expect(result.firstBroken).toMatchObject({ position: target!.position, streamId: stream, streamVersion: 2, type: 'TagAdded' });
      expect(result.firstBroken!.reason).toMatch(/does not match its hash/);
      expect((await pd.verify({ streamId: stream })).firstBroken?.position).toBe(target!.position);
    });
  });
}
