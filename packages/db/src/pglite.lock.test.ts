/**
 * One process at a time holds an embedded store. How we tried to break it:
 * a second open in the same process, a second process opening the store
 * while the first holds it (both ways round), a holder killed with SIGKILL
 * (its lock left behind), a lock file naming a process that is gone, and a
 * half-written lock file. The store is refused while held, with a message
 * naming the holder, and opens again (with its rows) once the holder is gone.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openPglite, STORE_LOCK_FILE } from './pglite.ts';

const dirs: string[] = [];
const tempDir = () => {
  const d = mkdtempSync(path.join(os.tmpdir(), 'pedigree-lock-'));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const here = import.meta.dirname;

/** A child process that opens the store, writes a row, prints "open", and waits to be killed. */
function holder(dir: string) {
  const code = `
    const { openPglite } = await import(${JSON.stringify(path.join(here, 'pglite.ts'))});
    const db = await openPglite(${JSON.stringify(dir)});
    await db.query('CREATE TABLE IF NOT EXISTS t (x int)');
    await db.query('INSERT INTO t VALUES (1)');
    process.stdout.write('open\\n');
    setInterval(() => {}, 1000);`;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'pipe'] });
  const ready = new Promise<void>((resolve, reject) => {
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    child.stdout.on('data', (d) => String(d).includes('open') && resolve());
    child.on('exit', (code) => reject(new Error(`holder exited ${code}: ${err}`)));
  });
  return { child, ready };
}

describe('an embedded store is held by one process at a time', () => {
  it('refuses a second open in the same process, and opens again after close', async () => {
    const dir = tempDir();
    const db = await openPglite(dir);
    await expect(openPglite(dir)).rejects.toThrow(/in use: this process already has it open.*pedigree start/s);
    await db.close();
    expect(existsSync(path.join(dir, STORE_LOCK_FILE))).toBe(false);
    const again = await openPglite(dir);
    await again.close();
  });

  it('refuses a store another process holds, naming it; takes it over once that process is killed', async () => {
    const dir = tempDir();
    const { child, ready } = holder(dir);
    try {
      await ready;
      await expect(openPglite(dir)).rejects.toThrow(new RegExp(`in use: process ${child.pid} on .* has it open`));
    } finally {
      child.kill('SIGKILL');
      await new Promise((resolve) => child.once('exit', resolve));
    }
    // killed: its lock is left behind, naming a process that is gone
    expect(JSON.parse(readFileSync(path.join(dir, STORE_LOCK_FILE), 'utf8')).pid).toBe(child.pid);
    const db = await openPglite(dir);
    try {
      expect(await db.query('SELECT count(*)::int AS n FROM t')).toEqual([{ n: 1 }]);
    } finally {
      await db.close();
    }
  }, 60_000);

  it('and the other way round: a process cannot open a store this one holds', async () => {
    const dir = tempDir();
    const db = await openPglite(dir);
    try {
      const { ready } = holder(dir);
      await expect(ready).rejects.toThrow(new RegExp(`in use: process ${process.pid} on`));
    } finally {
      await db.close();
    }
  }, 60_000);

  it('takes over a lock whose process is gone, or that was left half-written', async () => {
    const dir = tempDir();
    const gone = spawnSync(process.execPath, ['-e', '']).pid!; // exited: its pid names no process now
    writeFileSync(path.join(dir, STORE_LOCK_FILE), JSON.stringify({ pid: gone, host: os.hostname(), since: '2026-01-01T00:00:00Z' }));
    const db = await openPglite(dir);
    expect(JSON.parse(readFileSync(path.join(dir, STORE_LOCK_FILE), 'utf8')).pid).toBe(process.pid);
    await db.close();
    writeFileSync(path.join(dir, STORE_LOCK_FILE), '{"pid": 12');
    const again = await openPglite(dir);
    await again.close();
  });
});
