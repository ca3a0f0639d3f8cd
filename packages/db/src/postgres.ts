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
 * A pool of connections to the server at `url`. With `role`, every connection
 * asks for it in its startup message, so it runs as that role from its first
 * statement, reconnects included, and RESET ROLE or DISCARD ALL return to it
 * (only an explicit SET ROLE, which the login role must be allowed, leaves it).
 */
export async function openPostgres(url: string, opts: { max?: number; role?: string | null } = {}): Promise<Db> {
  const location = redact(stripQuery(url));
  const sql = postgres(stripQuery(url), {
    max: opts.max ?? 10,
    connection: opts.role ? { role: opts.role } : {},
    onnotice: () => {},
    types: {
      bigint: { to: 20, from: [20], parse: (v: string) => Number(v), serialize: (v: number | bigint) => String(v) },
      // JSON parameters arrive as JSON text (as PGlite takes them): pass text through, do not re-encode it.
      json: { to: 114, from: [114], parse: JSON.parse, serialize: jsonText },
      jsonb: { to: 3802, from: [3802], parse: JSON.parse, serialize: jsonText },
    },
  });
  try {
    await sql`select 1`; // fail fast with a connection error here, not later
  } catch (err) {
    await sql.end({ timeout: 1 }).catch(() => {});
    throw opts.role ? roleRefusal(err, opts.role, location) : err;
  }
  const wrap = (q: postgres.Sql | postgres.TransactionSql): Queryable => ({
    async query<T extends Row>(text: string, params?: readonly unknown[]) {
      // prepare: our SQL texts are a fixed set, and unprepared parameterised queries cost postgres.js two round trips.
      const rows = await q.unsafe(text, (params ?? []) as postgres.ParameterOrJSON<never>[], { prepare: true });
      return rows as unknown as T[];
    },
  });
  const root = wrap(sql);
  return {
    kind: 'postgres',
    location,
    query: root.query,
    transaction: async (fn) => (await sql.begin((tx) => fn(wrap(tx)))) as never,
    exec: async (script) => {
      await sql.unsafe(script);
    },
    listen: async (channel, onPayload) => {
      const sub = await sql.listen(channel, onPayload);
      return () => sub.unlisten();
    },
    close: () => sql.end({ timeout: 5 }),
    get sql() {
      return sql;
    },
  } as Db & { sql: postgres.Sql };
}

export function postgresOf(db: Db): postgres.Sql | undefined {
  return (db as Db & { sql?: postgres.Sql }).sql;
}
