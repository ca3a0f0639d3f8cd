import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, chown, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import postgres from 'postgres';

/**
 * PostgreSQL clusters of the tests' own, on free ports of this machine, with
 * Debian's postgresql-15 binaries: a primary (initdb), streaming replicas of
 * it (pg_basebackup -R), and PgBouncer in front of one. Each lives in a
 * temporary directory, is run as the `postgres` OS user when the tests run
 * as root (PostgreSQL and PgBouncer refuse to run as root), and is stopped
 * and removed by `stop()`. The shared test server at 5432 is never touched.
 */
const run = promisify(execFile);
export const PG_BIN = process.env.PEDIGREE_TEST_PG_BIN ?? '/usr/lib/postgresql/15/bin';
const PGBOUNCER = ['/usr/sbin/pgbouncer', '/usr/bin/pgbouncer'].find((p) => existsSync(p));
const asRoot = process.getuid?.() === 0;
const OS_USER = 'postgres';

/** null when clusters can be started here, else why not. */
export function clustersUnavailable(): string | null {
  for (const bin of ['initdb', 'pg_ctl', 'pg_basebackup']) {
    if (!existsSync(path.join(PG_BIN, bin))) return `no ${bin} in ${PG_BIN} (Debian's postgresql-15; set PEDIGREE_TEST_PG_BIN)`;
  }
  if (asRoot && !existsSync('/usr/sbin/runuser')) return 'running as root without runuser to start PostgreSQL as postgres';
  return null;
}

/** null when PgBouncer can be started here, else why not. */
export function pgbouncerUnavailable(): string | null {
  return clustersUnavailable() ?? (PGBOUNCER ? null : 'no pgbouncer binary (Debian package pgbouncer; `node scripts/setup.mjs --test` installs it)');
}

/** A command as the postgres OS user when we are root. */
function asPostgres(cmd: string, args: string[]): [string, string[]] {
  return asRoot ? ['/usr/sbin/runuser', ['-u', OS_USER, '--', cmd, ...args]] : [cmd, args];
}

async function exec(cmd: string, args: string[]): Promise<string> {
  const [c, a] = asPostgres(cmd, args);
  try {
    return (await run(c, a, { maxBuffer: 16 * 1024 * 1024 })).stdout;
  } catch (err) {
    const e = err as Error & { stderr?: string };
    throw new Error(`${cmd} ${args.join(' ')} failed: ${e.stderr || e.message}`);
  }
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

async function ownedTempDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  if (asRoot) {
    const { stdout } = await run('id', ['-u', OS_USER]);
    const { stdout: gid } = await run('id', ['-g', OS_USER]);
    await chown(dir, Number(stdout), Number(gid));
  }
  await chmod(dir, 0o700);
  return dir;
}

export interface Cluster {
  port: number;
  dir: string;
  /** postgresql://postgres@127.0.0.1:<port>/<db> */
  url(db?: string): string;
  stop(): Promise<void>;
}

const SETTINGS = (port: number, socketDir: string) => `
listen_addresses = '127.0.0.1'
port = ${port}
unix_socket_directories = '${socketDir}'
wal_level = replica
max_wal_senders = 10
max_replication_slots = 10
hot_standby = on
hot_standby_feedback = on
max_connections = 200
fsync = off
full_page_writes = off
shared_buffers = 32MB
`;

async function startDir(dir: string, port: number): Promise<Cluster> {
  await exec(path.join(PG_BIN, 'pg_ctl'), ['-D', path.join(dir, 'data'), '-l', path.join(dir, 'log'), '-w', '-t', '60', 'start']);
  const url = (db = 'postgres') => `postgresql://postgres@127.0.0.1:${port}/${db}`;
  return {
    port,
    dir,
    url,
    async stop() {
      await exec(path.join(PG_BIN, 'pg_ctl'), ['-D', path.join(dir, 'data'), '-m', 'immediate', '-w', 'stop']).catch(() => {});
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A new primary: initdb (trust on 127.0.0.1, replication allowed), started. */
export async function startPrimary(): Promise<Cluster> {
  const dir = await ownedTempDir('pedigree-primary-');
  const data = path.join(dir, 'data');
  await exec(path.join(PG_BIN, 'initdb'), ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--locale=C.UTF-8', '-N']);
  const port = await freePort();
  await exec('/bin/sh', ['-c', `printf '%s' "$0" >> ${data}/postgresql.conf && printf 'host replication all 127.0.0.1/32 trust\\n' >> ${data}/pg_hba.conf`, SETTINGS(port, dir)]);
  return startDir(dir, port);
}

/**
 * A streaming replica of `primary` (pg_basebackup -R), started, hot standby.
 * `name` becomes its `cluster_name`, which its WAL receiver reports to the
 * primary as application_name: what `synchronous_standby_names` names.
 */
export async function startReplica(primary: Cluster, opts: { name?: string } = {}): Promise<Cluster> {
  const dir = await ownedTempDir('pedigree-replica-');
  const data = path.join(dir, 'data');
  await exec(path.join(PG_BIN, 'pg_basebackup'), ['-h', '127.0.0.1', '-p', String(primary.port), '-U', 'postgres', '-D', data, '-R', '-X', 'stream', '-c', 'fast']);
  const port = await freePort();
  const name = opts.name ? `cluster_name = '${opts.name}'\n` : '';
  await exec('/bin/sh', ['-c', `printf '%s' "$0" >> ${data}/postgresql.conf`, `\nport = ${port}\nunix_socket_directories = '${dir}'\n${name}`]);
  return startDir(dir, port);
}

/** Runs `fn` with a one-connection client at `url`. */
export async function withSql<T>(url: string, fn: (sql: postgres.Sql) => Promise<T>): Promise<T> {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    return await fn(sql);
  } finally {
    await sql.end({ timeout: 1 });
  }
}

export interface Bouncer {
  port: number;
  /** A client URL through the pooler, marked `?pgbouncer=true`. */
  url(db: string, user?: string): string;
  /** Rows of an admin console command (SHOW POOLS, SHOW SERVERS, …), through psql: the console speaks only the simple protocol. */
  show(what: string): Promise<Record<string, string>[]>;
  /** Runs an admin console command (RECONNECT, PAUSE, …). */
  admin(command: string): Promise<void>;
  stop(): Promise<void>;
}

/**
 * PgBouncer in transaction mode in front of `target`, every server
 * connection logging in as `serverUser` (the pool's one login), at most
 * `poolSize` of them per database.
 */
export async function startPgbouncer(target: { port: number }, opts: { serverUser: string; poolSize: number; maxClients?: number }): Promise<Bouncer> {
  if (!PGBOUNCER) throw new Error('no pgbouncer');
  const dir = await ownedTempDir('pedigree-pgbouncer-');
  const port = await freePort();
  const ini = path.join(dir, 'pgbouncer.ini');
  await writeFile(
    ini,
    `[databases]
* = host=127.0.0.1 port=${target.port} user=${opts.serverUser}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = ${port}
unix_socket_dir = ${dir}
auth_type = any
admin_users = postgres
pool_mode = transaction
default_pool_size = ${opts.poolSize}
min_pool_size = 0
reserve_pool_size = 0
max_client_conn = ${opts.maxClients ?? 1000}
max_db_connections = ${opts.poolSize}
server_reset_query =
logfile = ${dir}/pgbouncer.log
pidfile = ${dir}/pgbouncer.pid
`,
  );
  if (asRoot) await run('chown', ['-R', `${OS_USER}:${OS_USER}`, dir]);
  const [c, a] = asPostgres(PGBOUNCER, [ini]);
  const child: ChildProcess = spawn(c, a, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const psql = async (sql: string) => (await run(path.join(PG_BIN, 'psql'), ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-d', 'pgbouncer', '-X', '-A', '-F', '\t', '-P', 'footer=off', '-c', sql])).stdout;
  for (let i = 0; ; i++) {
    try {
      await psql('SHOW VERSION');
      break;
    } catch (err) {
      if (child.exitCode !== null || i > 100) throw new Error(`pgbouncer did not start: ${stderr || (err as Error).message}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return {
    port,
    url: (db, user = opts.serverUser) => `postgresql://${user}@127.0.0.1:${port}/${db}?pgbouncer=true`,
    async show(what) {
      const [header, ...lines] = (await psql(`SHOW ${what}`)).trim().split('\n');
      const cols = (header ?? '').split('\t');
      return lines.filter(Boolean).map((l) => Object.fromEntries(l.split('\t').map((v, i) => [cols[i]!, v])));
    },
    async admin(command) {
      await psql(command);
    },
    async stop() {
      // The pid pgbouncer wrote (under runuser, the child is runuser itself).
      const pid = Number(await readFile(path.join(dir, 'pgbouncer.pid'), 'utf8').catch(() => ''));
      if (pid > 0) process.kill(pid, 'SIGTERM');
      else child.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
      if (child.exitCode === null) child.kill('SIGKILL');
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Makes `standby` (a replica started with that name) the primary's
 * synchronous standby: a commit is acknowledged once the standby has flushed
 * it (`synchronous_commit = on`, the default), or once it has also applied
 * it (`remote_apply`). Resolves once the primary reports it as `sync`.
 */
export async function requireSynchronousStandby(primary: Cluster, standby: string, opts: { commit?: 'on' | 'remote_apply' } = {}): Promise<void> {
  await withSql(primary.url(), async (sql) => {
    await sql.unsafe(`ALTER SYSTEM SET synchronous_standby_names = '"${standby}"'`);
    await sql.unsafe(`ALTER SYSTEM SET synchronous_commit = ${opts.commit ?? 'on'}`);
    await sql`select pg_reload_conf()`;
    for (let i = 0; ; i++) {
      const rows = await sql<{ state: string }[]>`select sync_state as state from pg_stat_replication where application_name = ${standby}`;
      if (rows[0]?.state === 'sync') return;
      if (i > 300) throw new Error(`${standby} did not become a synchronous standby (${JSON.stringify(rows)})`);
      await new Promise((r) => setTimeout(r, 50));
    }
  });
}

/**
 * kill -9 of the cluster's postmaster and of every process it started, at
 * once, as when its machine dies: nothing is shut down, flushed or sent.
 * pg_ctl starts the postmaster in a session of its own, so they are one
 * process group. Returns the postmaster's pid.
 */
export async function killCluster(cluster: Cluster): Promise<number> {
  const pid = Number((await readFile(path.join(cluster.dir, 'data', 'postmaster.pid'), 'utf8')).split('\n')[0]);
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    process.kill(pid, 'SIGKILL'); // not a group leader after all: its children die of its death
  }
  return pid;
}

/** Promotes a standby to primary (`pg_ctl promote`), resolving once it accepts writes. */
export async function promote(standby: Cluster): Promise<void> {
  await exec(path.join(PG_BIN, 'pg_ctl'), ['-D', path.join(standby.dir, 'data'), '-w', '-t', '60', 'promote']);
}

/** Stops `standby` receiving WAL (an empty primary_conninfo, reloaded), as a network partition or a far replica would: it keeps what it has. */
export async function disconnectStandby(standby: Cluster): Promise<void> {
  await withSql(standby.url(), async (sql) => {
    await sql`ALTER SYSTEM SET primary_conninfo = ''`;
    await sql`select pg_reload_conf()`;
    for (let i = 0; ; i++) {
      const [row] = await sql<{ n: number }[]>`select count(*)::int as n from pg_stat_wal_receiver`;
      if (row?.n === 0) return;
      if (i > 300) throw new Error('the standby kept receiving WAL');
      await new Promise((r) => setTimeout(r, 50));
    }
  });
}

/** Starts a cluster again in its directory after it was stopped or killed (crash recovery first, when killed). */
export async function restartCluster(cluster: Cluster): Promise<void> {
  await exec(path.join(PG_BIN, 'pg_ctl'), ['-D', path.join(cluster.dir, 'data'), '-l', path.join(cluster.dir, 'log'), '-w', '-t', '60', 'start']);
}
