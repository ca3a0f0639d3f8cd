import { mkdirSync } from 'node:fs';
import { PGlite, types } from '@electric-sql/pglite';
import type { Db, Queryable, Row } from './db.ts';

const parsers = { [types.INT8]: (v: string) => Number(v) };

/** Embedded PostgreSQL (WebAssembly) in `dir`, or in memory when dir is ':memory:'. */
export async function openPglite(dir: string): Promise<Db> {
  const inMemory = dir === ':memory:';
  if (!inMemory) mkdirSync(dir, { recursive: true });
  const pg = await PGlite.create(inMemory ? undefined : dir, { parsers });

  const wrap = (q: Pick<PGlite, 'query'>): Queryable => ({
    async query<T extends Row>(text: string, params?: readonly unknown[]) {
      const res = await q.query<T>(text, params as unknown[] | undefined);
      return res.rows;
    },
  });
  const root = wrap(pg);
  return {
    kind: 'pglite',
    location: inMemory ? ':memory:' : dir,
    query: root.query,
    transaction: (fn) => pg.transaction((tx) => fn(wrap(tx))),
    exec: async (script) => {
      await pg.exec(script);
    },
    listen: async (channel, onPayload) => {
      const unlisten = await pg.listen(channel, onPayload);
      return async () => unlisten();
    },
    close: () => pg.close(),
    get pglite() {
      return pg;
    },
  } as Db & { pglite: PGlite };
}

export function pgliteOf(db: Db): PGlite | undefined {
  return (db as Db & { pglite?: PGlite }).pglite;
}
