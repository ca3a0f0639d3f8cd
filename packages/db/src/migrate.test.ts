import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { Db } from './db.ts';
import { APP_ROLE, defaultRole, loadMigrations, migrate, openDatabase, openPglite, readEnv, splitStatements } from './index.ts';

describe('migration runner', () => {
  const dirs: string[] = [];
  afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

  it('splits scripts on top-level semicolons only', () => {
    expect(splitStatements(`CREATE FUNCTION f() AS $$ BEGIN x; y; END $$; -- a; comment\nSELECT 'a;b'; SELECT 2`)).toEqual([
      'CREATE FUNCTION f() AS $$ BEGIN x; y; END $$',
      "SELECT 'a;b'",
      'SELECT 2',
    ]);
  });

  it('applies each migration once, and refuses one edited after it was applied', async () => {
    const db = await openPglite(':memory:');
    const first = await migrate(db);
    expect(first.applied).toEqual(loadMigrations().map((m) => m.name));
    expect((await migrate(db)).applied).toEqual([]);
    const edited = loadMigrations().map((m, i) => (i === 0 ? { ...m, checksum: 'x' } : m));
    await expect(migrate(db, edited)).rejects.toThrow(/was changed after it was applied/);
    await db.close();
  });

  it('rolls a failing migration back whole', async () => {
    const db = await openPglite(':memory:');
    await expect(migrate(db, [{ name: '1_bad', checksum: 'c', sql: 'CREATE TABLE t1 (a int); SELECT no_such_function();' }])).rejects.toThrow(/no_such_function/);
    const [row] = await db.query<{ t: string | null }>(`SELECT to_regclass('t1')::text AS t`);
    expect(row?.t).toBeNull();
    await db.close();
  });

  it('creates the embedded store in a new directory and reopens it with its data', async () => {
    const dir = path.join(mkdtempSync(path.join(tmpdir(), 'pedigree-')), 'nested', 'home');
    dirs.push(path.dirname(path.dirname(dir)));
    const a = await openDatabase({ dir });
    await a.db.query(`INSERT INTO projects (id, name, created_at, position) VALUES ('00000000-0000-4000-8000-000000000001', 'p', now(), 1)`);
    await a.close();
    const b = await openDatabase({ dir });
    expect(await b.prisma.project.count()).toBe(1);
    await b.close();
  });

  it('migrates as the login, then runs the store as pedigree_app; the owner reopens it and finds nothing pending', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'pedigree-'));
    dirs.push(dir);
    const who = async (db: { query: Db['query'] }) => (await db.query<{ u: string }>('SELECT current_user AS u'))[0]!.u;
    const store = await openDatabase({ dir });
    expect(await who(store.db)).toBe(APP_ROLE);
    await expect(store.db.query('ALTER TABLE events DISABLE TRIGGER USER')).rejects.toThrow(/must be owner of table events/);
    await store.close();

    const owner = await openPglite(dir); // as `pedigree migrate` opens it
    expect(await who(owner)).toBe('postgres');
    expect((await migrate(owner)).applied).toEqual([]);
    const [events] = await owner.query<{ o: string }>(`SELECT tableowner AS o FROM pg_tables WHERE tablename = 'events'`);
    expect(events!.o).toBe('postgres');
    await owner.close();

    const unswitched = await openDatabase({ dir }, { role: null }); // PEDIGREE_DB_ROLE=none
    expect(await who(unswitched.db)).toBe('postgres');
    await unswitched.close();
  });

  it('reads PEDIGREE_DB_ROLE: pedigree_app unless none, anything else refused', () => {
    expect(defaultRole(readEnv({}))).toBe(APP_ROLE);
    expect(defaultRole(readEnv({ PEDIGREE_DB_ROLE: 'pedigree_app' }))).toBe(APP_ROLE);
    expect(defaultRole(readEnv({ PEDIGREE_DB_ROLE: 'none' }))).toBeNull();
    expect(() => readEnv({ PEDIGREE_DB_ROLE: 'postgres' })).toThrow(/bad environment: PEDIGREE_DB_ROLE/);
  });
});
