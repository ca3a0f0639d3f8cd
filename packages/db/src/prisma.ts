import { PrismaPg } from '@prisma/adapter-pg';
import { PrismaPGlite } from 'pglite-prisma-adapter';
import type { Db } from './db.ts';
import { PrismaClient } from './generated/prisma/client.ts';
import { pgliteOf } from './pglite.ts';
import { isPooledUrl, stripQuery } from './postgres.ts';
import type { DbRole } from './roles.ts';

export { PrismaClient };
export type * from './generated/prisma/models.ts';

/**
 * A Prisma client over the same database `db` talks to: the same PGlite
 * instance (and so the same role) when embedded; on a server, a pool of its
 * own that asks for `server.role` at every connection, as openPostgres does
 * (behind a pooler, `?pgbouncer=true`, the pooler's login is the role: see
 * openPostgres; node-postgres prepares only unnamed statements, which a
 * transaction-mode pooler allows).
 */
export function prismaFor(db: Db, server?: { url: string; role?: DbRole }): PrismaClient {
  const pglite = pgliteOf(db);
  if (pglite) return new PrismaClient({ adapter: new PrismaPGlite(pglite) });
  if (!server) throw new Error('pedigree: a server-mode Prisma client needs its DATABASE_URL');
  const role = server.role && !isPooledUrl(server.url) ? { options: `-c role=${server.role}` } : {};
  return new PrismaClient({ adapter: new PrismaPg({ connectionString: stripQuery(server.url), max: 4, ...role }) });
}
