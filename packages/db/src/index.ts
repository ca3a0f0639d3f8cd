import type { Db } from './db.ts';
import { defaultHome, readEnv } from './env.ts';
import { loadMigrations, migrate } from './migrate.ts';
import { openPglite } from './pglite.ts';
import { openPostgres } from './postgres.ts';
import { prismaFor, type PrismaClient } from './prisma.ts';

export * from './db.ts';
export { defaultHome, readEnv } from './env.ts';
export { loadMigrations, migrate, splitStatements, MIGRATIONS_DIR } from './migrate.ts';
export { openPglite, pgliteOf } from './pglite.ts';
export { openPostgres, postgresOf, redact, stripQuery } from './postgres.ts';
export { prismaFor, PrismaClient } from './prisma.ts';

export type StoreTarget = { url: string } | { dir: string };

/** What to open when nothing is said: DATABASE_URL if set, else the embedded store in PEDIGREE_HOME or ./.pedigree. */
export function defaultTarget(): StoreTarget {
  const env = readEnv();
  return env.DATABASE_URL ? { url: env.DATABASE_URL } : { dir: defaultHome(env) };
}

export interface Database {
  db: Db;
  prisma: PrismaClient;
  close(): Promise<void>;
}

/**
 * Opens the store. The embedded store migrates itself on open; a server is
 * migrated only when `migrate: true` (the `pedigree migrate` command), and
 * otherwise must already be at the latest migration.
 */
export async function openDatabase(target: StoreTarget = defaultTarget(), opts: { migrate?: boolean } = {}): Promise<Database> {
  const db = 'url' in target ? await openPostgres(target.url) : await openPglite(target.dir);
  try {
    if ('dir' in target || opts.migrate) await migrate(db);
    else await assertMigrated(db);
  } catch (err) {
    await db.close();
    throw err;
  }
  const prisma = prismaFor(db, 'url' in target ? target.url : undefined);
  return {
    db,
    prisma,
    async close() {
      await prisma.$disconnect();
      await db.close();
    },
  };
}

async function assertMigrated(db: Db): Promise<void> {
  const [exists] = await db.query<{ t: string | null }>(`SELECT to_regclass('_pedigree_migrations')::text AS t`);
  const done = exists?.t ? (await db.query<{ name: string }>('SELECT name FROM "_pedigree_migrations"')).map((r) => r.name) : [];
  const pending = loadMigrations().filter((m) => !done.includes(m.name));
  if (pending.length) {
    throw new Error(`pedigree: the database at ${db.location} needs migrating (${pending.length} pending: ${pending.map((m) => m.name).join(', ')}); run \`pedigree migrate\``);
  }
}
