import postgres from 'postgres';
import type { Db, Queryable, Row } from './db.ts';
import { roleRefusal } from './roles.ts';

/** postgres.js rejects `?schema=…` style query strings: drop them. */
export function stripQuery(url: string): string {
  const i = url.indexOf('?');
  return i < 0 ? url : url.slice(0, i);
}

export function redact(url: string): string {
  return url.replace(/\/\/([^:/@]+):[^@]*@/, '//$1:***@');
}

const jsonText = (v: unknown) => (typeof v === 'string' ? v : JSON.stringify(v));

/**
 * True when `url` asks for a transaction-mode pooler (PgBouncer) with
 * `?pgbouncer=true`, the convention Prisma's own URLs use. Behind one, a
 * server connection is ours for one transaction only, so nothing may
 * outlive a transaction: see openPostgres.
 */
export function isPooledUrl(url: string): boolean {
  const i = url.indexOf('?');
  return i >= 0 && new URLSearchParams(url.slice(i + 1)).get('pgbouncer') === 'true';
}

export interface PostgresOptions {
  max?: number;
  role?: string | null;
  /**
   * Where LISTEN connects, when that is not `url`: a direct connection to the
   * primary. A transaction-mode pooler hands the server connection that ran
   * LISTEN to other clients at once, so notifications never reach us
   * through one (and a replica never sends any).
   */
  listenUrl?: string;
}

/**
 * A pool of connections to the server at `url`. With `role`, every connection
 * asks for it in its startup message, so it runs as that role from its first
 * statement, reconnects included, and RESET ROLE or DISCARD ALL return to it
 * (only an explicit SET ROLE, which the login role must be allowed, leaves it).
 *
 * Behind a transaction-mode pooler (`?pgbouncer=true`) no state may outlive a
 * transaction, and the pooler decides which server connection runs each one:
 * - statements are not prepared (named prepared statements are session
 *   state; PgBouncer keeps them across transactions only from 1.21, with
 *   `max_prepared_statements`);
 * - the role is not asked for (PgBouncer refuses startup parameters it does
 *   not know): the pooler's own login must run as `role` (ALTER ROLE <login>
 *   SET role = …), which this checks once connected;
 * - LISTEN needs `listenUrl`, a direct connection (see PostgresOptions).
 * Locks are all transaction-scoped (pg_advisory_xact_lock), which a pooler
 * does not disturb.
 */
export async function openPostgres(url: string, opts: PostgresOptions = {}): Promise<Db> {
  const pooled = isPooledUrl(url);
  const location = redact(stripQuery(url));
  const options = {
    onnotice: () => {},
    types: {
      bigint: { to: 20, from: [20], parse: (v: string) => Number(v), serialize: (v: number | bigint) => String(v) },
      // JSON parameters arrive as JSON text (as PGlite takes them): pass text through, do not re-encode it.
      json: { to: 114, from: [114], parse: JSON.parse, serialize: jsonText },
      jsonb: { to: 3802, from: [3802], parse: JSON.parse, serialize: jsonText },
    },
  };
  // prepare: false covers what postgres.js sends itself too (a transaction's BEGIN and COMMIT), not only our queries.
  const sql = postgres(stripQuery(url), { ...options, max: opts.max ?? 10, connection: opts.role && !pooled ? { role: opts.role } : {}, ...(pooled ? { prepare: false } : {}) });
  try {
    const [me] = await sql<{ user: string }[]>`select current_user as user`; // fail fast with a connection error here, not later
    if (pooled && opts.role && me?.user !== opts.role) throw pooledRoleRefusal(opts.role, me?.user, location);
  } catch (err) {
    await sql.end({ timeout: 1 }).catch(() => {});
    throw opts.role ? roleRefusal(err, opts.role, location) : err;
  }
  // prepare: our SQL texts are a fixed set, and unprepared parameterised queries cost postgres.js two round trips.
  const prepare = !pooled;
  const wrap = (q: postgres.Sql | postgres.TransactionSql): Queryable => ({
    async query<T extends Row>(text: string, params?: readonly unknown[]) {
      const rows = await q.unsafe(text, (params ?? []) as postgres.ParameterOrJSON<never>[], { prepare });
      return rows as unknown as T[];
    },
  });
  const root = wrap(sql);
  const listenUrl = opts.listenUrl && opts.listenUrl !== url ? opts.listenUrl : undefined;
  let listener: postgres.Sql | undefined;
  const listenerSql = (): postgres.Sql => {
    if (listenUrl) return (listener ??= postgres(stripQuery(listenUrl), { ...options, max: 1 }));
    if (pooled) throw new Error(`pedigree: LISTEN does not work through a transaction-mode pooler (${location}); give a direct URL to the primary for notifications (pedigree start --direct-url, or PEDIGREE_DIRECT_URL)`);
    return sql;
  };
  return {
    kind: 'postgres',
    location,
    query: root.query,
    transaction: async (fn) => (await sql.begin((tx) => fn(wrap(tx)))) as never,
    exec: async (script) => {
      await sql.unsafe(script);
    },
    listen: async (channel, onPayload) => {
      const sub = await listenerSql().listen(channel, onPayload);
      return () => sub.unlisten();
    },
    close: async () => {
      await Promise.all([sql.end({ timeout: 5 }), listener?.end({ timeout: 5 })]);
    },
    get sql() {
      return sql;
    },
  } as Db & { sql: postgres.Sql };
}

/** A pooled login that does not run as `role`: where to fix it. */
function pooledRoleRefusal(role: string, user: string | undefined, location: string): Error {
  return new Error(
    `pedigree: behind the pooler at ${location} connections run as ${user ?? 'an unknown role'}, not ${role}: a pooler cannot pass the role on, so its own login must run as ${role} (as a superuser: CREATE ROLE <login> LOGIN IN ROLE ${role}; ALTER ROLE <login> SET role = ${role}), or set PEDIGREE_DB_ROLE=none to run as the login role`,
  );
}

export function postgresOf(db: Db): postgres.Sql | undefined {
  return (db as Db & { sql?: postgres.Sql }).sql;
}
