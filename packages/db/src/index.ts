import type { Db } from './db.ts';
import { defaultHome, readEnv } from './env.ts';
import { loadMigrations, migrate } from './migrate.ts';
import { openPglite } from './pglite.ts';
import { openPostgres } from './postgres.ts';
import { prismaFor, type PrismaClient } from './prisma.ts';
import { defaultRole, type DbRole } from './roles.ts';

export * from './db.ts';
export { defaultHome, defaultReadUrls, readEnv, splitUrls } from './env.ts';
export { loadMigrations, migrate, splitStatements, MIGRATIONS_DIR } from './migrate.ts';
export { openPglite, pgliteOf, processAlive } from './pglite.ts';
export { isPooledUrl, openPostgres, postgresOf, redact, stripQuery, type PostgresOptions } from './postgres.ts';
export { prismaFor, PrismaClient } from './prisma.ts';
export { APP_ROLE, defaultRole, type DbRole } from './roles.ts';

/**
 * A server store is `url` (through a transaction-mode pooler when it ends in
 * `?pgbouncer=true`); `directUrl`, when given, is the primary itself, without
 * a pooler: migrations, and LISTEN for live updates, go there.
 */
export type StoreTarget = { url: string; directUrl?: string } | { dir: string };

/** What to open when nothing is said: DATABASE_URL (and PEDIGREE_DIRECT_URL) if set, else the embedded store in PEDIGREE_HOME or ./.pedigree. */
export function defaultTarget(): StoreTarget {
  const env = readEnv();
  if (!env.DATABASE_URL) return { dir: defaultHome(env) };
  return env.PEDIGREE_DIRECT_URL ? { url: env.DATABASE_URL, directUrl: env.PEDIGREE_DIRECT_URL } : { url: env.DATABASE_URL };
}

export interface Database {
  db: Db;
  prisma: PrismaClient;
  close(): Promise<void>;
}

export interface OpenOptions {
  /** Apply pending migrations first (as the login role). The embedded store always does. */
  migrate?: boolean;
  /** The role the application's connections run as; default APP_ROLE (null, the login role, with PEDIGREE_DB_ROLE=none). */
  role?: DbRole;
}

/**
 * Opens the store. The embedded store migrates itself on open; a server is
 * migrated only when `migrate: true` (the `pedigree migrate` command), and
 * otherwise must already be at the latest migration. Migrating and that check
 * happen as the role that logs in (the owner, where it migrates); the
 * connections handed back then run as `role` (see roles.ts).
 */
export async function openDatabase(target: StoreTarget = defaultTarget(), opts: OpenOptions = {}): Promise<Database> {
  const role = opts.role === undefined ? defaultRole() : opts.role;
  const db = 'url' in target ? await openServer(target.url, { migrate: opts.migrate ?? false, role, directUrl: target.directUrl }) : await openEmbedded(target.dir, role);
  const prisma = prismaFor(db, 'url' in target ? { url: target.url, role } : undefined);
  return {
    db,
    prisma,
    async close() {
      await prisma.$disconnect();
      await db.close();
    },
  };
}

/**
 * PGlite has one session, as its superuser: migrate, then switch that session
 * to `role` for good (the Prisma adapter shares it). In-process, this keeps
 * the application's own SQL in the role's bounds; it cannot keep out code in
 * the same process, which could RESET ROLE, or anyone holding the files.
 */
async function openEmbedded(dir: string, role: DbRole): Promise<Db> {
  const db = await openPglite(dir);
  try {
    await migrate(db);
    if (role) await db.exec(`SET ROLE ${role}`);
    return db;
  } catch (err) {
    await db.close();
    throw err;
  }
}

/**
 * Migrates or checks on a connection of the login role (at `directUrl` when
 * given: behind a pooler, the login is the application's), then hands back a
 * pool that runs as `role` and listens at `directUrl`.
 */
async function openServer(url: string, opts: { migrate: boolean; role: DbRole; directUrl?: string }): Promise<Db> {
  const ownerUrl = opts.directUrl ?? url;
  const reuse = !opts.role && ownerUrl === url;
  const login = await openPostgres(ownerUrl, reuse ? {} : { max: 1 });
  try {
    await (opts.migrate ? migrate(login) : assertMigrated(login));
  } catch (err) {
    await login.close();
    throw err;
  }
  if (reuse) return login;
  await login.close();
  return openPostgres(url, { role: opts.role, listenUrl: opts.directUrl });
}

async function assertMigrated(db: Db): Promise<void> {
  const [exists] = await db.query<{ t: string | null }>(`SELECT to_regclass('_pedigree_migrations')::text AS t`);
  const done = exists?.t ? (await db.query<{ name: string }>('SELECT name FROM "_pedigree_migrations"')).map((r) => r.name) : [];
  const pending = loadMigrations().filter((m) => !done.includes(m.name));
  if (pending.length) {
    throw new Error(`pedigree: the database at ${db.location} needs migrating (${pending.length} pending: ${pending.map((m) => m.name).join(', ')}); run \`pedigree migrate\``);
  }
}
