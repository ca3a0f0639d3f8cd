import { PrismaPg } from '@prisma/adapter-pg';
import { PrismaPGlite } from 'pglite-prisma-adapter';
import type { Db } from './db.ts';
import { PrismaClient } from './generated/prisma/client.ts';
import { pgliteOf } from './pglite.ts';
import { stripQuery } from './postgres.ts';

export { PrismaClient };
export type * from './generated/prisma/models.ts';

/** A Prisma client over the same database `db` talks to (the same PGlite instance when embedded). */
export function prismaFor(db: Db, url?: string): PrismaClient {
  const pglite = pgliteOf(db);
  if (pglite) return new PrismaClient({ adapter: new PrismaPGlite(pglite) });
  if (!url) throw new Error('pedigree: a server-mode Prisma client needs its DATABASE_URL');
  return new PrismaClient({ adapter: new PrismaPg({ connectionString: stripQuery(url), max: 4 }) });
}
