/**
 * Issue 13: the application's connections run as pedigree_app, which may read
 * and append events but does not own them. Written as attacks through the
 * store's own connections (the SQL pool and Prisma's): nothing that would let
 * history be rewritten is allowed, while everything the application does
 * still works. Then the deployments: two login roles (the owner migrates, the
 * application logs in as a member of pedigree_app) and one non-superuser
 * owner that logs in for both — and what each cannot protect against.
 */
import { randomBytes } from 'node:crypto';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { authenticateApiKey, createApiKey, revokeApiKey } from '@pedigree/api';
import { APP_ROLE, loadMigrations, migrate, openPostgres, pgErrorCode, type Queryable } from '@pedigree/db';
import { NOTIFY_CHANNEL } from '@pedigree/ledger';
import { openPedigree, type Pedigree } from '@pedigree/lineage';
import { backends, createServerDatabase, SERVER_URL, serverUnavailable } from './support/stores.ts';

/** What an attacker holding the application's connection would try first. Each needs ownership or a privilege the role lacks. */
const ATTACKS = [
  'ALTER TABLE events DISABLE TRIGGER USER',
  'ALTER TABLE events DISABLE TRIGGER ALL',
  'ALTER TABLE events DISABLE TRIGGER events_no_update_delete',
  'ALTER TABLE events ENABLE REPLICA TRIGGER events_no_update_delete',
  'DROP TRIGGER events_no_update_delete ON events',
  'DROP TRIGGER events_no_truncate ON events',
  `ALTER TABLE events OWNER TO ${APP_ROLE}`,
  'ALTER TABLE events RENAME TO events_old',
  'DROP TABLE events',
  'CREATE OR REPLACE FUNCTION pedigree_events_immutable() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$',
  'DROP FUNCTION pedigree_events_immutable() CASCADE',
  'CREATE TRIGGER sneak BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION pedigree_events_immutable()',
  `UPDATE events SET type = 'Forged'`,
  'DELETE FROM events',
  'TRUNCATE events',
  'SET session_replication_role = replica', // would skip every trigger: superuser only
  `SELECT setval('events_position_seq', 1)`,
  `ALTER ROLE ${APP_ROLE} SUPERUSER`,
  // The partitions (issue 17): the role is granted the partitioned tables only, never a partition itself.
  `UPDATE events_p0 SET type = 'Forged'`,
  'DELETE FROM metric_chunks_p3',
  'TRUNCATE events_p15',
  'TRUNCATE event_ids',
  'DELETE FROM event_ids',
  'SELECT count(*) FROM events_p1',
  `INSERT INTO event_ids_p4 (event_id, project_id, position) VALUES (gen_random_uuid(), gen_random_uuid(), 0)`,
  'ALTER TABLE events_p2 DISABLE TRIGGER USER',
  'ALTER TABLE events DETACH PARTITION events_p4',
  'ALTER TABLE metric_chunks DETACH PARTITION metric_chunks_p4',
  'DROP TABLE events_p5',
] as const;

async function refusal(run: Promise<unknown>): Promise<string> {
  try {
    await run;
  } catch (err) {
    expect(pgErrorCode(err), (err as Error).message).toBe('42501'); // insufficient_privilege: "must be owner", "permission denied"
    return (err as Error).message;
  }
  throw new Error('was allowed');
}

const whoami = async (q: Queryable) => (await q.query<{ current_user: string; session_user: string }>('SELECT current_user, session_user'))[0]!;
const eventCount = async (q: Queryable) => Number((await q.query<{ n: number }>('SELECT count(*)::int8 AS n FROM events'))[0]!.n);

for (const { backend, skip } of await backends()) {
  describe.skipIf(skip)(`the application's database role on ${backend.name}`, () => {
    let pd: Pedigree;
    let projectId: string;
    let runId: string;
    beforeAll(async () => {
      pd = await backend.open();
      projectId = await pd.tracker.ensureProject('role');
      ({ runId } = await pd.tracker.createRun({ projectId, name: 'r', kind: 'pretrain', start: true }));
      await pd.tracker.logMetrics(runId, Array.from({ length: 200 }, (_, i) => ({ key: 'loss', step: i, value: 1 / (i + 1) })));
    });
    afterAll(() => backend.dispose());

    it('runs every connection as pedigree_app, which owns nothing and is no member of the owner', async () => {
      const db = pd.database.db;
      expect((await whoami(db)).current_user).toBe(APP_ROLE);
      await db.transaction(async (tx) => expect((await whoami(tx)).current_user).toBe(APP_ROLE));
      const [viaPrisma] = await pd.database.prisma.$queryRawUnsafe<{ current_user: string }[]>('SELECT current_user::text AS current_user');
      expect(viaPrisma!.current_user).toBe(APP_ROLE);

      const [events] = await db.query<{ owner: string; member: boolean }>(
        `SELECT tableowner AS owner, pg_has_role($1, tableowner, 'MEMBER') AS member FROM pg_tables WHERE schemaname = current_schema() AND tablename = 'events'`,
        [APP_ROLE],
      );
      expect(events!.owner).not.toBe(APP_ROLE);
      expect(events!.member).toBe(false);
      const [rights] = await db.query<Record<string, boolean>>(
        `SELECT ${['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'TRIGGER', 'REFERENCES'].map((p) => `has_table_privilege('events', '${p}') AS "${p}"`).join(', ')}`,
      );
      expect(rights).toEqual({ SELECT: true, INSERT: true, UPDATE: false, DELETE: false, TRUNCATE: false, TRIGGER: false, REFERENCES: false });
    });

    it('can reach every table (a migration that adds one must grant the role what it needs)', async () => {
      const unreachable = await pd.database.db.query<{ table_name: string }>(
        `SELECT c.relname AS table_name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND NOT c.relispartition AND NOT has_table_privilege(c.oid, 'SELECT')`,
      );
      expect(unreachable.map((r) => r.table_name)).toEqual([]);
      // … through the partitioned tables only: not one partition is granted anything.
      const partitions = await pd.database.db.query<{ table_name: string; granted: boolean }>(
        `SELECT c.relname AS table_name, has_table_privilege(c.oid, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE') AS granted
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = current_schema() AND c.relispartition AND c.relkind = 'r'`,
      );
      expect(partitions.length).toBe(48);
      expect(partitions.filter((p) => p.granted).map((p) => p.table_name)).toEqual([]);
    });

    it('is refused every way of rewriting history, through the pool, in a transaction and through Prisma', async () => {
      const db = pd.database.db;
      const before = await eventCount(db);
      for (const attack of ATTACKS) {
        await refusal(db.query(attack));
        await refusal(db.exec(attack));
        await refusal(db.transaction((tx) => tx.query(attack)));
      }
      await expect(pd.database.prisma.$executeRawUnsafe('ALTER TABLE events DISABLE TRIGGER USER')).rejects.toThrow(/must be owner/);
      await expect(pd.database.prisma.$executeRawUnsafe('DELETE FROM events')).rejects.toThrow(/permission denied/);
      expect(await eventCount(db)).toBe(before);
      const [triggers] = await db.query<{ n: number }>(`SELECT count(*)::int8 AS n FROM pg_trigger WHERE tgrelid = 'events'::regclass AND NOT tgisinternal AND tgenabled = 'O'`);
      expect(triggers!.n).toBe(2);
      expect((await pd.verify()).ok).toBe(true);
    });

    it('still appends, notifies, rebuilds (truncating the projections), verifies, buckets and keeps keys', async () => {
      const got: string[] = [];
      const unlisten = await pd.database.db.listen(NOTIFY_CHANNEL, (p) => got.push(p));
      const appended = await pd.tracker.addTag(runId, 'after-role');
      await expect.poll(() => got.includes(String(appended.positions.at(-1))), { timeout: 5000 }).toBe(true);
      await unlisten();

      const buckets = await pd.lineage.metricBuckets(runId, 'loss', { buckets: 10 }); // SET LOCAL planner settings inside
      expect(buckets.reduce((n, b) => n + b.count, 0)).toBe(200);

      const runBefore = await pd.lineage.run(runId);
      const rebuilt = await pd.replay();
      expect(rebuilt.events).toBe(await eventCount(pd.database.db));
      expect(await pd.lineage.run(runId)).toEqual(runBefore);
      expect((await pd.verify()).ok).toBe(true);

      const key = await createApiKey(pd.database.db, projectId, 'ci');
      expect((await authenticateApiKey(pd.database.db, key.key))?.projectId).toBe(projectId);
      await revokeApiKey(pd.database.db, key.id);
      expect(await authenticateApiKey(pd.database.db, key.key)).toBeNull();
    });

    it('is not a boundary against code that holds a connection of a superuser login: SET ROLE NONE leaves it (the documented limit)', async () => {
      await pd.database.db.transaction(async (tx) => {
        await tx.query('SET LOCAL ROLE NONE');
        expect((await whoami(tx)).current_user).toBe('postgres');
      });
      expect((await whoami(pd.database.db)).current_user).toBe(APP_ROLE); // LOCAL: back at commit
    });
  });
}

/** A server URL with another login. */
function serverUrl(base: string, change: { user: string }): string {
  const u = new URL(base);
  u.username = change.user;
  return u.toString();
}

describe.skipIf(await serverUnavailable())('deployments on a PostgreSQL server', () => {
  const suffix = randomBytes(4).toString('hex');
  const admin = postgres(SERVER_URL, { max: 1, onnotice: () => {} });
  const cleanup: (() => Promise<void>)[] = [];
  afterAll(async () => {
    for (const step of cleanup.reverse()) await step().catch(() => {});
    await admin.end();
  });
  const loginRole = async (name: string, attributes: string) => {
    await admin.unsafe(`CREATE ROLE ${name} LOGIN ${attributes}`);
    cleanup.push(() => admin.unsafe(`DROP ROLE IF EXISTS ${name}`).then(() => {}));
  };
  const serverDatabase = async (owner?: string) => {
    const db = await createServerDatabase();
    cleanup.push(db.drop);
    if (owner) await admin.unsafe(`ALTER DATABASE ${new URL(db.url).pathname.slice(1)} OWNER TO ${owner}`);
    return db.url;
  };

  it('the owner migrates, the application logs in as a member of pedigree_app: no SET ROLE gets it back to owner rights', async () => {
    const url = await serverDatabase();
    const owner = await openPostgres(url);
    await migrate(owner); // what `pedigree migrate` does, as the superuser that owns the tables here
    await owner.close();
    const web = `pedigree_t_web_${suffix}`;
    await loginRole(web, `IN ROLE ${APP_ROLE}`);
    const webUrl = serverUrl(url, { user: web });

    // `pedigree start` migrates on open: nothing pending, so a login that owns nothing may do it.
    const pd = await openPedigree({ url: webUrl }, { migrate: true });
    cleanup.unshift(() => pd.close()); // before its database is dropped
    expect(await whoami(pd.database.db)).toEqual({ current_user: APP_ROLE, session_user: web });
    const projectId = await pd.tracker.ensureProject('web');
    await pd.tracker.createRun({ projectId, name: 'r', kind: 'sft' });
    expect((await pd.replay()).events).toBeGreaterThan(0);

    const escapedTo: Record<string, string> = {};
    for (const escape of ['SET LOCAL ROLE NONE', 'RESET ROLE', 'SET LOCAL SESSION AUTHORIZATION DEFAULT']) {
      await refusal(
        pd.database.db.transaction(async (tx) => {
          await tx.query(escape);
          escapedTo[escape] = (await whoami(tx)).current_user;
          await tx.query('ALTER TABLE events DISABLE TRIGGER USER');
        }),
      );
    }
    // Out of the role, only the login itself; the resets return to the role asked for at connect.
    expect(escapedTo).toEqual({ 'SET LOCAL ROLE NONE': web, 'RESET ROLE': APP_ROLE, 'SET LOCAL SESSION AUTHORIZATION DEFAULT': APP_ROLE });
    await refusal(pd.database.db.query('SET ROLE postgres'));
    await refusal(pd.database.db.query('SET SESSION AUTHORIZATION postgres'));

    // PEDIGREE_DB_ROLE=none here stays the login role, which has pedigree_app's rights and no more.
    const asLogin = await openPedigree({ url: webUrl }, { role: null });
    try {
      expect((await whoami(asLogin.database.db)).current_user).toBe(web);
      await refusal(asLogin.database.db.query('ALTER TABLE events DISABLE TRIGGER USER'));
    } finally {
      await asLogin.close();
    }

    // A pending migration is the owner's to apply, and says so.
    const login = await openPostgres(webUrl);
    try {
      const next = { name: '99999999999999_more', checksum: 'c', sql: 'CREATE TABLE more (a int)' };
      await expect(migrate(login, [...loadMigrations(), next])).rejects.toThrow(/migration 99999999999999_more was refused: permission denied for schema public; migrations run as the tables' owner/);
    } finally {
      await login.close();
    }
  });

  it('a non-superuser owner that logs in for both migrates, then runs as pedigree_app (and could leave it: the documented limit)', async () => {
    const ownerRole = `pedigree_t_owner_${suffix}`;
    await loginRole(ownerRole, 'CREATEROLE');
    const url = serverUrl(await serverDatabase(ownerRole), { user: ownerRole });
    const pd = await openPedigree({ url }, { migrate: true });
    cleanup.unshift(() => pd.close());
    expect(await whoami(pd.database.db)).toEqual({ current_user: APP_ROLE, session_user: ownerRole });
    const [events] = await pd.database.db.query<{ owner: string }>(`SELECT tableowner AS owner FROM pg_tables WHERE tablename = 'events'`);
    expect(events!.owner).toBe(ownerRole);
    for (const attack of ATTACKS) await refusal(pd.database.db.query(attack));
    await pd.tracker.ensureProject('owner');
    expect((await pd.verify()).ok).toBe(true);

    // The limit: this login IS the owner, so a session of it can step out of the role.
    await expect(
      pd.database.db.transaction(async (tx) => {
        await tx.query('SET LOCAL ROLE NONE');
        await tx.query('ALTER TABLE events DISABLE TRIGGER USER');
        throw new Error('rolled back');
      }),
    ).rejects.toThrow('rolled back');
  });

  it('says what to do when the role is missing, or the login may not take it on', async () => {
    const url = await serverDatabase();
    await expect(openPostgres(url, { role: `pedigree_t_missing_${suffix}` })).rejects.toThrow(/does not exist at .*; run `pedigree migrate` as the tables' owner \(it creates the role\), or set PEDIGREE_DB_ROLE=none/);
    const stranger = `pedigree_t_stranger_${suffix}`;
    await loginRole(stranger, '');
    await expect(openPostgres(serverUrl(url, { user: stranger }), { role: APP_ROLE })).rejects.toThrow(/may not act as pedigree_app; grant it \(GRANT pedigree_app TO <login role>/);
  });
});
