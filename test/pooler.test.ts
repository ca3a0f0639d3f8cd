/**
 * Behind PgBouncer in transaction mode (issue 17, item 2): many client
 * connections share a few server connections, and nothing Pedigree does
 * needs a server connection to itself across transactions. The ledger's
 * contract, concurrency and follow suites run behind the pooler too
 * (test/support/stores.ts, pgbouncerBackend); this file checks what is
 * particular to it.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { APP_ROLE, openPostgres } from '@pedigree/db';
import { EventStore, streamIds } from '@pedigree/ledger';
import { openPedigree, type Pedigree } from '@pedigree/lineage';
import { pgbouncerUnavailable, startPgbouncer, startPrimary, withSql, type Bouncer, type Cluster } from './support/clusters.ts';
import { pedigreeServer } from './support/server.ts';
import { POOL_LOGIN } from './support/stores.ts';
import { connect } from '@pedigree/client';

const why = pgbouncerUnavailable();
if (why && process.env.CI) throw new Error(`CI must run the pooler tests, but ${why}`);
if (why) console.warn(`[skipping pooler tests] ${why}`);

const CLIENTS = 500;
const POOL_SIZE = 5;
const DB = 'pedigree';

describe.skipIf(why)('behind pgbouncer in transaction mode', () => {
  let cluster: Cluster;
  let bouncer: Bouncer;
  let pd: Pedigree;

  beforeAll(async () => {
    cluster = await startPrimary();
    await withSql(cluster.url(), async (sql) => {
      await sql.unsafe(`CREATE DATABASE ${DB}`);
      await sql.unsafe(`CREATE ROLE ${APP_ROLE} NOLOGIN; CREATE ROLE ${POOL_LOGIN} LOGIN IN ROLE ${APP_ROLE}; ALTER ROLE ${POOL_LOGIN} SET role = ${APP_ROLE}`);
    });
    bouncer = await startPgbouncer(cluster, { serverUser: POOL_LOGIN, poolSize: POOL_SIZE, maxClients: CLIENTS + 50 });
    pd = await openPedigree({ url: bouncer.url(DB), directUrl: cluster.url(DB) }, { migrate: true });
  });

  afterAll(async () => {
    await pd?.close();
    await bouncer?.stop();
    await cluster?.stop();
  });

  it(`${CLIENTS} client connections append at once over ${POOL_SIZE} server connections`, async () => {
    // One pool of CLIENTS connections, as that many processes would open: all busy at once, so all opened.
    const db = await openPostgres(bouncer.url(DB), { max: CLIENTS, role: APP_ROLE });
    try {
      const store = new EventStore(db);
      const { projectId } = await pd.tracker.createProject({ name: 'crowd' });
      const streams = Array.from({ length: CLIENTS }, () => streamIds.run(randomUUID()));
      const results = await Promise.all(
        streams.map((stream, i) => store.append(stream, [{ type: 'NoteAdded', data: { text: `client ${i}` } }], { projectId, expectedVersion: 0 })),
      );
      expect(results.every((r) => r.version === 1 && !r.duplicate)).toBe(true);
      expect(new Set(results.flatMap((r) => r.positions)).size).toBe(CLIENTS);

      const clients = (await bouncer.show('CLIENTS')).filter((c) => c.database === DB);
      const servers = (await bouncer.show('SERVERS')).filter((s) => s.database === DB);
      expect(clients.length).toBeGreaterThanOrEqual(CLIENTS);
      expect(servers.length).toBeGreaterThan(0);
      expect(servers.length).toBeLessThanOrEqual(POOL_SIZE);
      // As the server sees it: at most the pool's connections from the pooler's login.
      const { n } = (await withSql(cluster.url(), (sql) => sql<{ n: number }[]>`select count(*)::int as n from pg_stat_activity where datname = ${DB} and usename = ${POOL_LOGIN}`))[0]!;
      expect(n).toBeLessThanOrEqual(POOL_SIZE);
      console.log(`[pgbouncer] ${clients.length} client connections, ${servers.length} server connections, ${n} seen by PostgreSQL`);
      expect(await pd.verify()).toMatchObject({ ok: true });
    } finally {
      await db.close();
    }
  });

  it('runs as the app role from the pooler login, for SQL and Prisma alike (no role startup parameter)', async () => {
    const [me] = await pd.database.db.query<{ user: string; session: string }>('select current_user as user, session_user as session');
    expect(me).toEqual({ user: APP_ROLE, session: POOL_LOGIN });
    const viaPrisma = await pd.database.prisma.$queryRawUnsafe<{ user: string }[]>('select current_user as "user"');
    expect(viaPrisma).toEqual([{ user: APP_ROLE }]);
  });

  it('refuses a pooled login that does not run as the app role, saying what to do', async () => {
    await withSql(cluster.url(), (sql) => sql.unsafe(`ALTER ROLE ${POOL_LOGIN} RESET role`));
    try {
      // Server connections logged in afresh (the pool's were logged in with the setting).
      await bouncerReconnect(bouncer);
      await expect(openPostgres(bouncer.url(DB), { role: APP_ROLE })).rejects.toThrow(/not pedigree_app: a pooler cannot pass the role on, so its own login must run as pedigree_app .*ALTER ROLE <login> SET role = pedigree_app/);
    } finally {
      await withSql(cluster.url(), (sql) => sql.unsafe(`ALTER ROLE ${POOL_LOGIN} SET role = ${APP_ROLE}`));
      await bouncerReconnect(bouncer);
    }
  });

  it('live updates: LISTEN goes to the direct URL; without one, subscribing says why it cannot', async () => {
    const { projectId } = await pd.tracker.createProject({ name: 'live' });
    const seen: number[] = [];
    const sub = pd.subscribe((events) => void seen.push(...events.map((e) => e.position)), { projectId, pollMs: 60_000 });
    await sub.ready;
    const { positions } = await pd.tracker.createRun({ projectId, name: 'notified', kind: 'custom' });
    // Woken by the notification, not by the (minute-long) poll.
    await expect.poll(() => seen, { timeout: 5_000 }).toContain(positions[0]);
    await sub.close();

    const noDirect = await openPedigree({ url: bouncer.url(DB) });
    try {
      await expect(noDirect.subscribe(() => {}).ready).rejects.toThrow(/LISTEN does not work through a transaction-mode pooler .*direct URL/);
    } finally {
      await noDirect.close();
    }
  });

  it('`pedigree start` behind the pooler (--direct-url for LISTEN): writes, reads and live updates', async () => {
    const srv = await pedigreeServer({ url: bouncer.url(DB), auth: 'open', demo: 'none', args: ['--direct-url', cluster.url(DB)] });
    try {
      await srv.start();
      const c = await connect({ url: srv.url, handleSignals: false, retry: { retryForMs: 0 } });
      try {
        const { projectId } = await c.api.projects.create.mutate({ name: 'served', eventId: randomUUID() });
        const { runId } = await c.api.runs.create.mutate({ project: projectId, name: 'pooled', kind: 'custom', start: true, eventId: randomUUID() });
        expect((await c.api.runs.get.query({ runId })).status).toBe('running');
        const seen: string[] = [];
        const sub = c.api.runs.watch.subscribe({ runId }, { onData: (u) => void seen.push(u.data.type) });
        try {
          await new Promise((r) => setTimeout(r, 300));
          await c.api.runs.complete.mutate({ runId, eventId: randomUUID() });
          await expect.poll(() => seen, { timeout: 5_000 }).toContain('status');
        } finally {
          sub.unsubscribe();
        }
      } finally {
        await c.close();
      }
    } finally {
      expect((await srv.stop()).leftover).toBe(false);
    }
  });
});

/** Closes the pooler's (idle) server connections to DB, so that the next ones log in afresh. */
async function bouncerReconnect(bouncer: Bouncer): Promise<void> {
  await bouncer.admin(`RECONNECT ${DB}`);
  await expect.poll(async () => (await bouncer.show('SERVERS')).filter((s) => s.database === DB).length, { timeout: 10_000 }).toBe(0);
}
