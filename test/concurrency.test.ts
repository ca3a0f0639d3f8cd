/**
 * Racing writers. Each writer reads the stream's version, appends with it as
 * the expected version, and on a ConcurrencyError re-reads and retries — the
 * only error it is allowed to see. Afterwards every acknowledged event must be
 * there exactly once, versions must be 1..N without gaps, and the chains verify.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConcurrencyError, streamIds, type EventStore } from '@pedigree/ledger';
import type { Pedigree } from '@pedigree/lineage';
import { backends } from './support/stores.ts';

const WRITERS = 8;

async function writer(store: EventStore, projectId: string, stream: string, appends: number, tag: string) {
  const acked: string[] = [];
  let conflicts = 0;
  for (let i = 0; i < appends; i++) {
    const eventId = randomUUID();
    for (;;) {
      const version = await store.streamVersion(stream);
      try {
        await store.append(stream, [{ type: 'TagAdded', eventId, data: { tag: `${tag}-${i}` } }], { projectId, expectedVersion: version });
        acked.push(eventId);
        break;
      } catch (err) {
        if (!(err instanceof ConcurrencyError)) throw err;
        conflicts++;
      }
    }
  }
  return { acked, conflicts };
}

for (const { backend, skip } of await backends({ pooler: true })) {
  describe.skipIf(skip)(`concurrency on ${backend.name}`, () => {
    let pd: Pedigree;
    let projectId: string;
    beforeAll(async () => {
      pd = await backend.open();
      projectId = (await pd.tracker.createProject({ name: 'race' })).projectId;
    });
    afterAll(() => backend.dispose());

    const newRun = async () => {
      const { runId } = await pd.tracker.createRun({ projectId, name: 'race', kind: 'custom' });
      return streamIds.run(runId);
    };

    async function check(stream: string, acked: string[]) {
      const events = await pd.store.readStream(stream);
      const ids = events.map((e) => e.eventId);
      expect(new Set(ids).size).toBe(ids.length); // nothing twice
      for (const id of acked) expect(ids).toContain(id); // nothing lost
      expect(events.map((e) => e.streamVersion)).toEqual(events.map((_, i) => i + 1)); // no duplicate or missing version
      return events;
    }

    it(`${WRITERS} writers on one stream: no lost event, no duplicate version, conflicts surfaced as typed errors`, async () => {
      const stream = await newRun();
      // On a server, each writer gets its own pool of connections, as separate processes would.
      const stores = backend.reopen
        ? await Promise.all(Array.from({ length: WRITERS }, async () => (await backend.reopen!()).store))
        : Array.from({ length: WRITERS }, () => pd.store);
      const per = backend.name !== 'pglite' ? 60 : 40;
      const results = await Promise.all(stores.map((s, w) => writer(s, projectId, stream, per, `w${w}`)));
      const acked = results.flatMap((r) => r.acked);
      expect(acked).toHaveLength(WRITERS * per);
      const events = await check(stream, acked);
      expect(events).toHaveLength(1 + WRITERS * per);
      const conflicts = results.reduce((s, r) => s + r.conflicts, 0);
      console.log(`[${backend.name}] one stream: ${acked.length} appends, ${conflicts} conflicts retried`);
      if (backend.name !== 'pglite') expect(conflicts).toBeGreaterThan(0); // they really raced
    });

    it(`${WRITERS} writers on one stream, any version: each reads the head only once it holds the stream, so none ever conflicts`, async () => {
      // How I tried to break it: the stream's lock and the head read go to the server together (one round trip);
      // were the read's snapshot taken before the lock was granted, a writer would build on a stale head and hit
      // the unique version, surfacing as a ConcurrencyError that an 'any' append must never see.
      const stream = await newRun();
      const stores = backend.reopen
        ? await Promise.all(Array.from({ length: WRITERS }, async () => (await backend.reopen!()).store))
        : Array.from({ length: WRITERS }, () => pd.store);
      const per = backend.name !== 'pglite' ? 40 : 20;
      const acked = (
        await Promise.all(
          stores.map(async (s, w) => {
            const ids: string[] = [];
            for (let i = 0; i < per; i++) {
              const eventId = randomUUID();
              await s.append(stream, [{ type: 'TagAdded', eventId, data: { tag: `any-${w}-${i}` } }], { projectId, expectedVersion: 'any' });
              ids.push(eventId);
            }
            return ids;
          }),
        )
      ).flat();
      expect(await check(stream, acked)).toHaveLength(1 + WRITERS * per);
    });

    it(`${WRITERS} writers on separate streams, thousands of appends in all`, async () => {
      const streams = await Promise.all(Array.from({ length: WRITERS }, newRun));
      const per = 250;
      const results = await Promise.all(streams.map((s, w) => writer(pd.store, projectId, s, per, `s${w}`)));
      for (const [w, r] of results.entries()) {
        expect(r.conflicts).toBe(0); // nobody else writes these streams
        expect(await check(streams[w]!, r.acked)).toHaveLength(1 + per);
      }
      const all = await pd.store.readAll({ limit: 1_000_000 });
      const positions = all.map((e) => e.position);
      expect(positions).toEqual([...positions].sort((a, b) => a - b));
      const verified = await pd.verify();
      expect(verified).toMatchObject({ ok: true });
      expect(verified.checked).toBeGreaterThanOrEqual(WRITERS * per);
    });

    it('identical retries racing on one event id both succeed, one as a duplicate, even when the server fills the points\' times differently', async () => {
      const { runId } = await pd.tracker.createRun({ projectId, name: 'retries', kind: 'custom', start: true });
      // The twins leave `time` to the server, which fills it before the append's transaction: 1000 and 2000 ms stand for two clocks.
      for (let pair = 0; pair < 20; pair++) {
        const eventId = randomUUID();
        const points = [{ key: 'loss', step: pair, value: 1 / (pair + 1) }];
        const results = await Promise.all([
          pd.tracker.logMetrics(runId, points, { eventId, now: 1000 + pair }),
          pd.tracker.logMetrics(runId, points, { eventId, now: 2000 + pair }),
        ]);
        expect(results.map((r) => r.duplicate).sort()).toEqual([false, true]);
      }
      expect(await pd.lineage.metricPoints(runId, 'loss')).toHaveLength(20);
      // A real difference is still refused.
      const eventId = randomUUID();
      await pd.tracker.logMetrics(runId, [{ key: 'loss', step: 100, value: 1 }], { eventId });
      await expect(pd.tracker.logMetrics(runId, [{ key: 'loss', step: 100, value: 2 }], { eventId })).rejects.toMatchObject({ code: 'IDEMPOTENCY_MISMATCH' });
    });
  });
}
