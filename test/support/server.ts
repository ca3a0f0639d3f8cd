import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import path from 'node:path';

/**
 * `pedigree start` as a user runs it: the real launcher in a child process of
 * its own process group (setsid), so that stopping it can check that nothing
 * it started outlives it. One handle can be stopped and started again on the
 * same store and port (a server restart mid-test).
 */
const root = path.resolve(import.meta.dirname, '../..');
export const PEDIGREE_BIN = path.join(root, 'packages/cli/bin/pedigree.mjs');
const STARTUP_TIMEOUT_MS = 90_000;
const STOP_TIMEOUT_MS = 20_000;

/** The line `pedigree start --json` prints once it listens. */
export interface ServingInfo {
  url: string;
  api: string;
  port: number;
  store: string;
  kind: 'pglite' | 'postgres';
  auth: 'open' | 'keys';
  pid: number;
  /** In --json mode only. */
  recordedSample?: boolean;
  /** The demo size being recorded in the background, or null. */
  demo?: string | null;
  events?: number;
  /** The replicas it reads from (--read-url), passwords redacted. */
  replicas?: string[];
}

export interface ServerOptions {
  /** The store: an embedded one in `home`, or the PostgreSQL database at `url` (migrated beforehand: see `pedigreeCommand`). */
  home?: string;
  url?: string;
  /** Default: a free port, chosen once, so that a restart comes back at the same address. */
  port?: number;
  auth?: 'open' | 'keys';
  /** What an empty store gets (default here: the synthetic sample, instant; `npm start` records the quick demo). */
  demo?: 'quick' | 'full' | 'ci' | 'sample' | 'none';
  /** Machine-readable startup (default); false for the human tour, as `npm start` shows it. */
  json?: boolean;
  /** More environment for the server; DATABASE_URL, PEDIGREE_HOME, PEDIGREE_PORT and PEDIGREE_AUTH are not inherited. */
  env?: NodeJS.ProcessEnv;
  /** More arguments for `pedigree start` (e.g. --read-url). */
  args?: string[];
}

export interface Stopped {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Everything the run printed. */
  stdout: string;
  stderr: string;
  /** Processes of its group still alive after it exited (killed then): should be false. */
  leftover: boolean;
}

export interface PedigreeServer {
  readonly port: number;
  /** http://127.0.0.1:<port> */
  readonly url: string;
  /** The running process's pid (its process group id too); undefined when stopped. */
  readonly pid: number | undefined;
  /** What the current (or last) run has printed so far. */
  readonly stdout: string;
  readonly stderr: string;
  /** Starts `pedigree start` and resolves once it listens; rejects with its output if it exits or times out first. */
  start(): Promise<ServingInfo>;
  /** Signals the process group, waits for the exit and for the whole group to be gone. */
  stop(signal?: NodeJS.Signals): Promise<Stopped>;
  /** For afterAll: SIGKILLs whatever is left of the group. */
  kill(): void;
}

/** A TCP port nobody listens on right now. */
export async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve, reject) => probe.once('error', reject).listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as { port: number };
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

/** The environment the CLI sees: the store chosen only by flags, no colour. */
function cliEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1' };
  for (const name of ['DATABASE_URL', 'PEDIGREE_DIRECT_URL', 'PEDIGREE_READ_URLS', 'PEDIGREE_HOME', 'PEDIGREE_PORT', 'PEDIGREE_AUTH', 'PEDIGREE_DEBUG', 'PEDIGREE_SERVER', 'PEDIGREE_API_KEY']) delete env[name];
  return { ...env, ...extra };
}

const storeArgs = (opts: { home?: string; url?: string }): string[] => {
  if ((opts.home === undefined) === (opts.url === undefined)) throw new Error('give exactly one of home and url');
  return opts.home !== undefined ? ['--home', opts.home] : ['--url', opts.url!];
};

/** A one-shot `pedigree …` command (migrate, runs, or a start expected to fail). */
export function pedigreeCommand(args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [PEDIGREE_BIN, ...args], { cwd: root, env: cliEnv(opts.env), timeout: opts.timeoutMs ?? 90_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
    });
  });
}

/** Is any process of group `pgid` alive? */
function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function waitFor(condition: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
  return true;
}

export async function pedigreeServer(opts: ServerOptions): Promise<PedigreeServer> {
  const port = opts.port ?? (await freePort());
  const json = opts.json ?? true;
  const args = ['start', ...storeArgs(opts), '--port', String(port), '--demo', opts.demo ?? 'sample', ...(opts.auth ? ['--auth', opts.auth] : []), ...(json ? ['--json'] : []), ...(opts.args ?? [])];
  let child: ChildProcess | undefined;
  let exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }> | undefined;
  let stdout = '';
  let stderr = '';

  const server: PedigreeServer = {
    port,
    url: `http://127.0.0.1:${port}`,
    get pid() {
      return child?.pid;
    },
    get stdout() {
      return stdout;
    },
    get stderr() {
      return stderr;
    },

    async start() {
      if (child) throw new Error('the server is running already; stop() it first');
      stdout = '';
      stderr = '';
      const proc = spawn(process.execPath, [PEDIGREE_BIN, ...args], { cwd: root, env: cliEnv(opts.env), detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
      child = proc;
      exited = new Promise((resolve) => proc.once('close', (code, signal) => resolve({ code, signal })));
      proc.stdout!.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
      proc.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));

      const started = Date.now();
      for (;;) {
        const info = json ? servingLine(stdout) : humanServingLine(stdout, port, proc.pid!);
        if (info) return info;
        const done = await Promise.race([exited, new Promise<null>((r) => setTimeout(() => r(null), 50))]);
        if (done) {
          child = undefined;
          throw new Error(`pedigree ${args.join(' ')} exited (code ${done.code}, signal ${done.signal}) before it listened:\n${stderr || stdout}`);
        }
        if (Date.now() - started > STARTUP_TIMEOUT_MS) {
          server.kill();
          throw new Error(`pedigree ${args.join(' ')} did not listen within ${STARTUP_TIMEOUT_MS} ms:\n${stdout}\n${stderr}`);
        }
      }
    },

    async stop(signal = 'SIGTERM') {
      const proc = child;
      if (!proc?.pid) throw new Error('the server is not running');
      process.kill(-proc.pid, signal);
      const timer = setTimeout(() => server.kill(), STOP_TIMEOUT_MS);
      const { code, signal: bySignal } = await exited!;
      clearTimeout(timer);
      // The group outlives its leader only if something it started is still running.
      const leftover = !(await waitFor(() => !groupAlive(proc.pid!), 5_000));
      if (leftover) process.kill(-proc.pid, 'SIGKILL');
      child = undefined;
      return { code, signal: bySignal, stdout, stderr, leftover };
    },

    kill() {
      if (child?.pid && groupAlive(child.pid)) process.kill(-child.pid, 'SIGKILL');
    },
  };
  return server;
}

function servingLine(stdout: string): ServingInfo | null {
  for (const line of stdout.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      const parsed = JSON.parse(line) as Partial<ServingInfo>;
      if (typeof parsed.url === 'string') return parsed as ServingInfo;
    } catch {
      // a partial line: more is coming
    }
  }
  return null;
}

/** The same facts from the line the human output ends its startup with. */
function humanServingLine(stdout: string, port: number, pid: number): ServingInfo | null {
  const m = /^Pedigree is serving (\S+) {2}\(API: (\S+), store: (.*), auth: (open|keys)\)$/m.exec(stdout);
  if (!m) return null;
  const [, url = '', api = '', store = '', auth = ''] = m;
  return { url, api: `${url}${api}`, port, store, kind: store.startsWith('embedded') ? 'pglite' : 'postgres', auth: auth as ServingInfo['auth'], pid };
}
