/**
 * Read replicas (issue 17, item 1): a primary and a streaming replica of its
 * own (initdb, pg_basebackup -R, on free ports), the API in front with its
 * reads on the replica. Writes go to the primary and answer with their
 * position; a read that carries it is served by a replica that has it, or
 * after a bounded wait by the primary: here the replica's replay is paused
 * (pg_wal_replay_pause), so without the position the read would miss the
 * write it follows.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MIN_POSITION_HEADER, POSITION_HEADER, ReadRouting, type RunUpdate } from '@pedigree/api';
import { connect, type Pedigree as Client } from '@pedigree/client';
import { openPedigree, type Pedigree } from '@pedigree/lineage';
import { clustersUnavailable, startPrimary, startReplica, withSql, type Cluster } from './support/clusters.ts';
import { serveInProcess } from './support/inprocess.ts';
import { pedigreeServer } from './support/server.ts';

const why = clustersUnavailable();
if (why && process.env.CI) throw new Error(`CI must run the replica tests, but ${why}`);
if (why) console.warn(`[skipping replica tests] ${why}`);

const WAIT_MS = 1500;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.skipIf(why)('read replicas with read-your-writes', () => {
  let primary: Cluster;
  let replica: Cluster;
  let pd: Pedigree;
  let reads: ReadRouting;
  let server: { url: string; close(): Promise<void> };
  const clients: Client[] = [];

  /** A client of the API (the typed one users have: it sends back the positions its writes were answered with). */
  const client = async () => {
    const c = await connect({ url: server.url, handleSignals: false, retry: { retryForMs: 0 } });
    clients.push(c);
    return c;
  };
  const replicaSql = <T>(fn: Parameters<typeof withSql<T>>[1]) => withSql(replica.url('pedigree'), fn);
  /** Until the replica has replayed everything the primary has written. */
  const caughtUp = async () => {
    const { lsn } = (await withSql(primary.url('pedigree'), (sql) => sql<{ lsn: string }[]>`select pg_current_wal_lsn()::text as lsn`))[0]!;
    for (let i = 0; i < 300; i++) {
      const { behind } = (await replicaSql((sql) => sql<{ behind: boolean }[]>`select pg_last_wal_replay_lsn() < ${lsn}::pg_lsn as behind`))[0]!;
      if (!behind) return;
      await sleep(20);
    }
    throw new Error('the replica did not catch up');
  };

  beforeAll(async () => {
    primary = await startPrimary();
    await withSql(primary.url(), (sql) => sql`CREATE DATABASE pedigree`);
    pd = await openPedigree({ url: primary.url('pedigree') }, { migrate: true });
    replica = await startReplica(primary);
    reads = await ReadRouting.open(pd, [replica.url('pedigree')], { waitMs: WAIT_MS });
    server = await serveInProcess(pd, 'open', { reads });
  });

  afterAll(async () => {
    for (const c of clients) await c.close().catch(() => {});
    await server?.close();
    await reads?.close();
    await pd?.close();
    await replica?.stop();
    await primary?.stop();
  });

  it('serves reads from the replica (it is a hot standby of the primary)', async () => {
    const { recovery } = (await replicaSql((sql) => sql<{ recovery: boolean }[]>`select pg_is_in_recovery() as recovery`))[0]!;
    expect(recovery).toBe(true);
    const c = await client();
    const { projectId } = await c.api.projects.create.mutate({ name: 'replicated', eventId: randomUUID() });
    await caughtUp();
    const before = { ...reads.stats };
    const fresh = await client(); // has written nothing: its reads carry no position
    expect((await fresh.api.projects.get.query({ project: projectId })).name).toBe('replicated');
    expect(reads.stats.replica).toBeGreaterThan(before.replica);
    expect(reads.stats.fellBack).toBe(before.fellBack);
  });

  it('a write then an immediate read sees it, with the replica lagged (replay paused)', async () => {
    const writer = await client();
    const { projectId } = await writer.api.projects.create.mutate({ name: 'lagged', eventId: randomUUID() });
    await caughtUp();
    await replicaSql((sql) => sql`select pg_wal_replay_pause()`);
    try {
      const { runId } = await writer.api.runs.create.mutate({ project: projectId, name: 'fresh', kind: 'custom', eventId: randomUUID() });
      const before = { ...reads.stats };
      const started = Date.now();
      const run = await writer.api.runs.get.query({ runId });
      expect(run.name).toBe('fresh');
      // Served by the primary once no replica had the write within the wait.
      expect(reads.stats.fellBack).toBe(before.fellBack + 1);
      expect(Date.now() - started).toBeGreaterThanOrEqual(WAIT_MS - 50);

      // The replica really is behind: a read without the position is served there, and misses the run.
      const stranger = await client();
      await expect(stranger.api.runs.get.query({ runId })).rejects.toThrow(/not found/);
      const { paused } = (await replicaSql((sql) => sql<{ paused: boolean }[]>`select pg_is_wal_replay_paused() as paused`))[0]!;
      expect(paused).toBe(true);
    } finally {
      await replicaSql((sql) => sql`select pg_wal_replay_resume()`);
    }

    // Replay resumed: the same kind of read is served by the replica once it has the position.
    const { runId } = await writer.api.runs.create.mutate({ project: projectId, name: 'caught-up', kind: 'custom', eventId: randomUUID() });
    const before = { ...reads.stats };
    expect((await writer.api.runs.get.query({ runId })).name).toBe('caught-up');
    expect(reads.stats.replica).toBe(before.replica + 1);
    expect(reads.stats.fellBack).toBe(before.fellBack);
  });

  it('every write answers with its position; a read carrying one it cannot have yet waits only as long as the bound', async () => {
    const body = JSON.stringify({ json: { name: 'raw', eventId: randomUUID() } });
    const res = await fetch(`${server.url}/api/trpc/projects.create`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    expect(res.status).toBe(200);
    const position = Number(res.headers.get(POSITION_HEADER));
    expect(position).toBeGreaterThan(0);
    expect(position).toBe(await pd.store.lastPosition());

    // A position from the future (no replica, nor the primary, has it): served by the primary after the wait, not refused.
    const fellBack = reads.stats.fellBack;
    const started = Date.now();
    const list = await fetch(`${server.url}/api/trpc/projects.list`, { headers: { [MIN_POSITION_HEADER]: String(position + 1_000_000) } });
    expect(list.status).toBe(200);
    const waited = Date.now() - started;
    expect(waited).toBeGreaterThanOrEqual(WAIT_MS - 50);
    expect(waited).toBeLessThan(WAIT_MS + 2000);
    expect(reads.stats.fellBack).toBe(fellBack + 1);
    // Reads do not report a position.
    expect(list.headers.get(POSITION_HEADER)).toBeNull();
  });

  it('subscriptions follow the primary notifications and read from the replica', async () => {
    const c = await client();
    const { projectId } = await c.api.projects.create.mutate({ name: 'live', eventId: randomUUID() });
    const { runId } = await c.api.runs.create.mutate({ project: projectId, name: 'watched', kind: 'custom', start: true, eventId: randomUUID() });
    const before = { ...reads.stats };
    const updates: RunUpdate[] = [];
    const sub = c.api.runs.watch.subscribe({ runId }, { onData: (u) => updates.push(u.data) });
    try {
      await sleep(300);
      await c.api.runs.logMetrics.mutate({ runId, eventId: randomUUID(), points: [{ key: 'loss', step: 1, value: 2.5 }] });
      for (let i = 0; i < 100 && !updates.some((u) => u.type === 'metrics'); i++) await sleep(50);
      const metrics = updates.find((u) => u.type === 'metrics');
      expect(metrics?.type === 'metrics' && metrics.points).toEqual([expect.objectContaining({ key: 'loss', step: 1, value: 2.5 })]);
      expect(reads.stats.replica).toBeGreaterThan(before.replica); // the subscription was opened on the replica
    } finally {
      sub.unsubscribe();
    }
  });

  it('`pedigree start --read-url` serves the API from the replica, read-your-writes included', async () => {
    const srv = await pedigreeServer({ url: primary.url('pedigree'), auth: 'open', demo: 'none', args: ['--read-url', replica.url('pedigree')] });
    try {
      const info = await srv.start();
      expect(info.replicas).toEqual([replica.url('pedigree')]);
      const writer = await connect({ url: srv.url, handleSignals: false, retry: { retryForMs: 0 } });
      const stranger = await connect({ url: srv.url, handleSignals: false, retry: { retryForMs: 0 } });
      try {
        const { projectId } = await writer.api.projects.create.mutate({ name: 'served', eventId: randomUUID() });
        await caughtUp();
        await replicaSql((sql) => sql`select pg_wal_replay_pause()`);
        try {
          const { runId } = await writer.api.runs.create.mutate({ project: projectId, name: 'through-start', kind: 'custom', eventId: randomUUID() });
          expect((await writer.api.runs.get.query({ runId })).name).toBe('through-start');
          await expect(stranger.api.runs.get.query({ runId })).rejects.toThrow(/not found/);
        } finally {
          await replicaSql((sql) => sql`select pg_wal_replay_resume()`);
        }
      } finally {
        await writer.close();
        await stranger.close();
      }
    } finally {
      const stopped = await srv.stop();
      expect(stopped.leftover).toBe(false);
    }
  });
});
