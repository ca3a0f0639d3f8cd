import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PGlite, types } from '@electric-sql/pglite';
import type { Db, Queryable, Row } from './db.ts';

const parsers = { [types.INT8]: (v: string) => Number(v) };

/** The file in an embedded store's directory that names the process holding it. */
export const STORE_LOCK_FILE = 'pedigree.lock';

interface LockNote {
  pid: number;
  host: string;
  since: string;
}

/** Whether process `pid` on this host runs: EPERM is alive (someone else's), ESRCH gone (killed, its note left behind). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Whether the process a lock names still runs (one on another host is taken to: it cannot be asked). */
function holderAlive(note: LockNote): boolean {
  return note.host !== os.hostname() || processAlive(note.pid);
}

/**
 * Holds an embedded store's directory for this process. PGlite keeps the
 * database in the process's memory and writes it back to the directory, so a
 * second process opening the same directory (a script while `pedigree demo`
 * runs, two notebooks) would corrupt it: seen here, a store opened by two
 * scripts at once no longer opened at all (PGlite: "RuntimeError: Aborted()").
 * The lock is a file created exclusively, naming the holder; one left by a
 * process that is gone (killed) is taken over. Two processes taking over the
 * same stale lock in the same instant could both succeed: that race needs a
 * crash first, and is not closed here. Returns the release.
 */
function holdDirectory(dir: string): () => void {
  const file = path.join(dir, STORE_LOCK_FILE);
  const note: LockNote = { pid: process.pid, host: os.hostname(), since: new Date().toISOString() };
  const mine = `${JSON.stringify(note)}\n`;
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      writeFileSync(file, mine, { flag: 'wx' });
      return () => {
        try {
          if (readFileSync(file, 'utf8') === mine) rmSync(file, { force: true });
        } catch {
          // already gone
        }
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    let holder: LockNote | null = null;
    try {
      holder = JSON.parse(readFileSync(file, 'utf8')) as LockNote;
    } catch {
      // removed meanwhile, or not yet written whole: look again
    }
    if (holder && typeof holder.pid === 'number' && holderAlive(holder)) {
      const who = holder.pid === process.pid && holder.host === note.host ? 'this process already has it open' : `process ${holder.pid} on ${holder.host} has it open (since ${holder.since})`;
      throw new Error(
        `the embedded store in ${dir} is in use: ${who}. An embedded store takes one process at a time; ` +
          'serve it with `pedigree start` and connect over HTTP to share it, or close the other process ' +
          `(if it is gone and this persists, remove ${file})`,
      );
    }
    if (holder) rmSync(file, { force: true }); // its process is gone
    else if (attempt > 0) rmSync(file, { force: true }); // unreadable twice: a holder that died mid-write
  }
  throw new Error(`could not lock the embedded store in ${dir} (${file} keeps changing)`);
}

/** Embedded PostgreSQL (WebAssembly) in `dir`, or in memory when dir is ':memory:'. One process at a time holds a directory (see holdDirectory). */
export async function openPglite(dir: string): Promise<Db> {
  const inMemory = dir === ':memory:';
  if (!inMemory) mkdirSync(dir, { recursive: true });
  const release = inMemory ? () => {} : holdDirectory(dir);
  let pg: PGlite;
  try {
    pg = await PGlite.create(inMemory ? undefined : dir, { parsers });
  } catch (err) {
    release();
    throw err;
  }

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
    close: async () => {
      try {
        await pg.close();
      } finally {
        release();
      }
    },
    get pglite() {
      return pg;
    },
  } as Db & { pglite: PGlite };
}

export function pgliteOf(db: Db): PGlite | undefined {
  return (db as Db & { pglite?: PGlite }).pglite;
}
