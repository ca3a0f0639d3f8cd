import { randomBytes } from 'node:crypto';
import postgres from 'postgres';
import { APP_ROLE } from '@pedigree/db';
import { openPedigree, type Pedigree } from '@pedigree/lineage';
import { pgbouncerUnavailable, startPgbouncer, startPrimary, withSql, type Bouncer, type Cluster } from './clusters.ts';

/**
 * The storage backends every contract test runs against: embedded PGlite (in
 * memory) and the PostgreSQL server at PEDIGREE_TEST_DATABASE_URL, each test
 * file in a database of its own, dropped afterwards. Where no server answers,
 * the server half is skipped with the reason printed — except under CI, where
 * that is a failure.
 */
export const SERVER_URL = process.env.PEDIGREE_TEST_DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/test';

export interface Backend {
  /** pgbouncer: PostgreSQL behind PgBouncer in transaction mode (see pgbouncerBackend). */
  name: 'pglite' | 'postgres' | 'pgbouncer';
  /** The server the store lives on (a maintenance database), for connections outside the store; undefined for PGlite. */
  serverUrl?: string;
  /** Opens a fresh, migrated, empty store. */
  open(): Promise<Pedigree>;
  /** A second, independent connection to the store `open` made last (server only: PGlite is single-process). */
  reopen?(): Promise<Pedigree>;
  /** Cleans up what `open` made (drops the server database). */
  dispose(): Promise<void>;
}

/** null when a PostgreSQL server answers at `url`, else why not. */
export async function probeServer(url: string): Promise<string | null> {
  const sql = postgres(url, { max: 1, connect_timeout: 3, onnotice: () => {} });
  try {
    await sql`select 1`;
    return null;
  } catch (err) {
    return `no PostgreSQL server at ${url}: ${(err as Error).message}`;
  } finally {
    await sql.end({ timeout: 1 });
  }
}

let serverProbe: Promise<string | null> | undefined;
/** null when the test server is reachable, else why not (asked once per process). */
export function serverUnavailable(): Promise<string | null> {
  serverProbe ??= probeServer(SERVER_URL);
  return serverProbe;
}

export function pgliteBackend(): Backend {
  const opened: Pedigree[] = [];
  return {
    name: 'pglite',
    async open() {
      const pd = await openPedigree({ dir: ':memory:' });
      opened.push(pd);
      return pd;
    },
    async dispose() {
      await Promise.all(opened.map((p) => p.close().catch(() => {})));
    },
  };
}

/** A database of its own on the test server; returns its URL. */
export async function createServerDatabase(): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `pedigree_t_${randomBytes(6).toString('hex')}`;
  const admin = postgres(SERVER_URL, { max: 1, onnotice: () => {} });
  await admin.unsafe(`CREATE DATABASE ${name}`);
  await admin.end();
  const u = new URL(SERVER_URL);
  u.pathname = `/${name}`;
  return {
    url: u.toString(),
    async drop() {
      const a = postgres(SERVER_URL, { max: 1, onnotice: () => {} });
      await a.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await a.end();
    },
  };
}

export function postgresBackend(): Backend {
  const opened: { pd: Pedigree; drop(): Promise<void> }[] = [];
  let lastUrl: string | undefined;
  return {
    name: 'postgres',
    serverUrl: SERVER_URL,
    async open() {
      const db = await createServerDatabase();
      const pd = await openPedigree({ url: db.url }, { migrate: true });
      opened.push({ pd, drop: db.drop });
      lastUrl = db.url;
      return pd;
    },
    async reopen() {
      const pd = await openPedigree({ url: lastUrl! });
      opened.unshift({ pd, drop: async () => {} }); // closed before the database is dropped
      return pd;
    },
    async dispose() {
      for (const o of opened) {
        await o.pd.close().catch(() => {});
        await o.drop().catch(() => {});
      }
    },
  };
}

/** The login PgBouncer's server connections use: a member of the app role that runs as it from the start (see openPostgres). */
export const POOL_LOGIN = 'pedigree_pool';
/** Server connections per database behind the pooler: enough for the suites' deliberately held transactions. */
const POOL_SIZE = 10;

/**
 * PostgreSQL behind PgBouncer in transaction mode: a cluster of the test's
 * own (test/support/clusters.ts, started at the first `open` and removed by
 * `dispose`), the pooler in front with at most POOL_SIZE server connections
 * per database, all logged in as POOL_LOGIN, which runs as the app role
 * from the start (ALTER ROLE … SET role). Each store is reached as
 * `?pgbouncer=true` through the pooler, with its direct URL for migrations
 * and LISTEN.
 */
export function pgbouncerBackend(): Backend {
  let cluster: Cluster | undefined;
  let bouncer: Bouncer | undefined;
  const opened: Pedigree[] = [];
  let last: { url: string; directUrl: string } | undefined;
  const backend: Backend = {
    name: 'pgbouncer',
    async open() {
      if (!cluster) {
        cluster = await startPrimary();
        backend.serverUrl = cluster.url();
        await withSql(cluster.url(), (sql) =>
          // A superuser, as the test server's login is: the suites step out of the app role (SET LOCAL ROLE NONE) to act as the owner.
          sql.unsafe(`CREATE ROLE ${APP_ROLE} NOLOGIN; CREATE ROLE ${POOL_LOGIN} LOGIN SUPERUSER IN ROLE ${APP_ROLE}; ALTER ROLE ${POOL_LOGIN} SET role = ${APP_ROLE}`),
        );
        bouncer = await startPgbouncer(cluster, { serverUser: POOL_LOGIN, poolSize: POOL_SIZE });
      }
      const name = `pedigree_t_${randomBytes(6).toString('hex')}`;
      await withSql(cluster.url(), (sql) => sql.unsafe(`CREATE DATABASE ${name}`));
      last = { url: bouncer!.url(name), directUrl: cluster.url(name) };
      const pd = await openPedigree(last, { migrate: true });
      opened.push(pd);
      return pd;
    },
    async reopen() {
      const pd = await openPedigree(last!);
      opened.push(pd);
      return pd;
    },
    async dispose() {
      for (const pd of opened) await pd.close().catch(() => {});
      await bouncer?.stop();
      await cluster?.stop();
    },
  };
  return backend;
}

/**
 * Both backends, the server one marked skipped (with a printed reason) when
 * unreachable outside CI; with `pooler`, the server behind PgBouncer too
 * (skipped, with the reason, where pgbouncer or the PostgreSQL binaries are
 * missing).
 */
export async function backends(opts: { pooler?: boolean } = {}): Promise<{ backend: Backend; skip: string | null }[]> {
  const why = await serverUnavailable();
  if (why && process.env.CI) throw new Error(`CI must run the server-mode tests, but ${why}`);
  if (why) console.warn(`[skipping server-mode tests] ${why}`);
  const all = [
    { backend: pgliteBackend(), skip: null },
    { backend: postgresBackend(), skip: why },
  ];
  if (opts.pooler) {
    const noPooler = pgbouncerUnavailable();
    if (noPooler && process.env.CI) throw new Error(`CI must run the pooler tests, but ${noPooler}`);
    if (noPooler) console.warn(`[skipping tests behind pgbouncer] ${noPooler}`);
    all.push({ backend: pgbouncerBackend(), skip: noPooler });
  }
  return all;
}
