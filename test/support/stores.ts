import { randomBytes } from 'node:crypto';
import postgres from 'postgres';
import { openPedigree, type Pedigree } from '@pedigree/lineage';

/**
 * The storage backends every contract test runs against: embedded PGlite (in
 * memory) and the PostgreSQL server at PEDIGREE_TEST_DATABASE_URL, each test
 * file in a database of its own, dropped afterwards. Where no server answers,
 * the server half is skipped with the reason printed — except under CI, where
 * that is a failure.
 */
export const SERVER_URL = process.env.PEDIGREE_TEST_DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/test';

export interface Backend {
  name: 'pglite' | 'postgres';
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

/** Both backends, the server one marked skipped (with a printed reason) when unreachable outside CI. */
export async function backends(): Promise<{ backend: Backend; skip: string | null }[]> {
  const why = await serverUnavailable();
  if (why && process.env.CI) throw new Error(`CI must run the server-mode tests, but ${why}`);
  if (why) console.warn(`[skipping server-mode tests] ${why}`);
  return [
    { backend: pgliteBackend(), skip: null },
    { backend: postgresBackend(), skip: why },
  ];
}
