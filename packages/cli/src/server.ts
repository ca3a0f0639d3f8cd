import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { processAlive, type StoreTarget } from '@pedigree/db';
import { UsageError } from './args.ts';

/**
 * The web app (apps/web) served by Next.js inside the `pedigree` process, as a
 * custom server: one process holds the store (PGlite allows only one) and
 * answers HTTP; no `next start`, so no child process outlives it.
 */

/** apps/web, from packages/cli/src. */
export const WEB_DIR = path.resolve(import.meta.dirname, '../../../apps/web');
export const DEFAULT_PORT = 4400;
export const DEFAULT_HOST = '127.0.0.1';
/** Once stopping begins, requests in progress get this long to finish (live subscriptions are cut at once). */
const DRAIN_MS = 2_000;

/** The part of Next's custom server (`next({ … })`) used here. */
interface NextApp {
  prepare(): Promise<void>;
  getRequestHandler(): Handler;
  close(): Promise<void>;
}
type CreateNextApp = (options: { dev: boolean; dir: string; hostname: string; port: number; quiet?: boolean; httpServer?: Server }) => NextApp;

export interface WebServer {
  /** http://host:port, as a browser on this machine would use it. */
  readonly url: string;
  readonly port: number;
  /** From now on, answer only requests whose Host names this machine's loopback (an open server, against DNS rebinding). */
  onlyLoopbackHosts(): void;
  /** Starts Next.js; requests that arrive before this is done wait for it. */
  serveApp(): Promise<void>;
  /** Stops accepting, lets open requests finish (briefly), closes Next and the socket. */
  close(): Promise<void>;
}

/**
 * Binds the port first, before the store is opened: a port in use fails in
 * milliseconds, and never after a second process has touched the store.
 */
export async function listen(opts: { host: string; port: number; webDir?: string }): Promise<WebServer> {
  const webDir = opts.webDir ?? WEB_DIR;
  const buildId = path.join(webDir, '.next', 'BUILD_ID');
  if (!existsSync(buildId)) {
    throw new Error(`the web app is not built (no ${path.relative(process.cwd(), buildId) || buildId}); run \`npm run build -w @pedigree/web\` (npm start does it for you)`);
  }

  // Requests that arrive while the store opens wait for the app; the first serveApp() starts it.
  let startApp!: (handler: Promise<Handler>) => void;
  const handler = new Promise<Handler>((resolve) => (startApp = resolve));
  handler.catch(() => {}); // a failed start is reported by serveApp()
  let app: NextApp | undefined;
  let starting: Promise<void> | undefined;
  const inFlight = new Set<Promise<void>>();
  const responses = new Set<ServerResponse>();
  let hostAllowed: ((host: string | undefined) => boolean) | null = null;
  const server = createServer((req, res) => {
    if (hostAllowed && !hostAllowed(req.headers.host)) {
      // DNS rebinding: a page on another site that resolves its name to 127.0.0.1 reaches an open server with its own Host.
      res.writeHead(403, { 'content-type': 'text/plain', connection: 'close' });
      res.end(`pedigree: Host ${JSON.stringify(req.headers.host ?? '')} is not allowed: this open server answers only to localhost, 127.0.0.1 and [::1] (use --auth keys to serve other names)\n`);
      return;
    }
    responses.add(res);
    res.once('close', () => responses.delete(res));
    const served = handler
      .then((handle) => handle(req, res))
      .catch((err: unknown) => {
        console.error(`pedigree: ${req.method} ${req.url}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
        res.end('internal error\n');
      })
      .finally(() => inFlight.delete(served));
    inFlight.add(served);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => reject(listenError(err, opts.host, opts.port)));
    server.listen(opts.port, opts.host, resolve);
  });
  const port = (server.address() as AddressInfo).port;
  const url = `http://${opts.host.includes(':') ? `[${opts.host}]` : opts.host}:${port}`;

  return {
    url,
    port,
    onlyLoopbackHosts() {
      hostAllowed = isLoopbackHostHeader;
    },
    serveApp() {
      starting ??= (async () => {
        const started = startNext(webDir, { hostname: opts.host, port, httpServer: server });
        startApp(started.then((a) => a.getRequestHandler()));
        app = await started;
      })();
      return starting;
    },
    async close() {
      // Stopped before the app started (the store failed to open): requests waiting for it get an error now.
      if (!starting) startApp(Promise.reject(new Error('the server stopped before it started')));
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      // Live subscriptions (SSE) never end by themselves: cut them now; other requests get a moment to finish.
      for (const res of responses) if (String(res.getHeader('content-type')).startsWith('text/event-stream')) res.destroy();
      const drain = setTimeout(() => server.closeAllConnections(), DRAIN_MS);
      await closed;
      clearTimeout(drain);
      // Handlers of cut connections still clean up (a subscription unlistens): let them, before the store closes.
      await settledWithin(inFlight, DRAIN_MS);
      await app?.close();
    },
  };
}

type Handler = (req: IncomingMessage, res: ServerResponse) => Promise<void>;

/** Loopback addresses, as `--host` names them. */
export const isLoopbackAddress = (host: string) => host === 'localhost' || host === '::1' || host === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);

/** A Host header naming this machine's loopback (`localhost:4400`, `127.0.0.1`, `[::1]:4400`). */
export function isLoopbackHostHeader(host: string | undefined): boolean {
  if (!host) return false;
  const name = host.startsWith('[') ? host.slice(0, host.indexOf(']') + 1) : host.replace(/:\d+$/, '');
  return isLoopbackAddress(name.toLowerCase());
}

async function settledWithin(promises: Iterable<Promise<unknown>>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([Promise.allSettled(promises), new Promise((resolve) => (timer = setTimeout(resolve, ms)))]);
  clearTimeout(timer);
}

async function startNext(webDir: string, opts: { hostname: string; port: number; httpServer: Server }): Promise<NextApp> {
  // Next reads NODE_ENV at load; `next start` sets it the same way.
  process.env.NODE_ENV ??= 'production';
  // Next is the web app's dependency: load the copy it was built with.
  const requireFromWeb = createRequire(path.join(webDir, 'package.json'));
  await loadNextConfigQuietly(requireFromWeb, webDir);
  const createNextApp = requireFromWeb('next') as CreateNextApp;
  const app = createNextApp({ dev: false, dir: webDir, quiet: true, ...opts });
  await app.prepare();
  return app;
}

/**
 * Next's server logs "Running next.config.ts took …" on stdout as it loads the
 * config, unless the config is in its per-process cache: loading it quietly
 * first keeps stdout for our own lines (--json promises exactly one). Internal
 * API, so a failure here only means that line comes back.
 */
async function loadNextConfigQuietly(requireFromWeb: NodeJS.Require, webDir: string): Promise<void> {
  try {
    const { default: loadConfig } = requireFromWeb('next/dist/server/config') as { default: (phase: string, dir: string) => Promise<unknown> };
    await loadConfig('phase-production-server', webDir);
  } catch {
    // cosmetic only
  }
}

function listenError(err: NodeJS.ErrnoException, host: string, port: number): Error {
  switch (err.code) {
    case 'EADDRINUSE':
      return new Error(`port ${port} on ${host} is in use (another pedigree start?); stop that server or choose another with --port`);
    case 'EACCES':
      return new Error(`no permission to listen on port ${port}; choose one above 1023 with --port`);
    case 'EADDRNOTAVAIL':
    case 'ENOTFOUND':
      return new Error(`cannot listen on ${host}: not an address of this machine (--host)`);
    default:
      return err;
  }
}

/**
 * Resolves on the first SIGINT or SIGTERM, with its name. A second one while
 * stopping ends the process at once.
 */
export function untilStopSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      process.once('SIGINT', () => process.exit(130));
      process.once('SIGTERM', () => process.exit(143));
      resolve(signal);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}

/**
 * PGlite opens a data directory in one process at a time, and nothing in it
 * stops a second (its postmaster.pid is a placeholder): two would both write
 * and spoil the store. While `pedigree start` serves an embedded store it
 * leaves this note in the directory: the CLI's read commands go through that
 * server instead, and its operator commands refuse to open the store.
 */
const SERVING_FILE = 'pedigree-serving.json';

export interface ServingNote {
  pid: number;
  url: string;
}

/** Leaves the note in `dir`; returns what removes it. */
export function markServing(dir: string, note: ServingNote): () => void {
  const file = path.join(dir, SERVING_FILE);
  writeFileSync(file, `${JSON.stringify(note)}\n`);
  return () => rmSync(file, { force: true });
}

/** The server holding the embedded store in `dir`, if one is running. */
export function servingProcess(dir: string): ServingNote | null {
  let note: ServingNote;
  try {
    note = JSON.parse(readFileSync(path.join(dir, SERVING_FILE), 'utf8')) as ServingNote;
  } catch {
    return null;
  }
  if (note.pid === process.pid) return null;
  return processAlive(note.pid) ? note : null; // a server that was killed left its note behind
}

/**
 * The operator commands (start, verify, replay, migrate, keys, sample…) need
 * the store itself: refused with --server, and while `pedigree start` holds
 * the embedded store (the user commands read through that server instead).
 */
export function assertStoreFree(command: string, target: StoreTarget, serverFlag: string | undefined): void {
  if (serverFlag !== undefined) {
    throw new UsageError(`\`pedigree ${command}\` works on the store itself, not through a server: give --home DIR or --url postgres://… instead of --server`);
  }
  if (!('dir' in target)) return;
  const server = servingProcess(target.dir);
  if (!server) return;
  throw new Error(
    `\`pedigree ${command}\` needs the store in ${target.dir} itself, and \`pedigree start\` (pid ${server.pid}, serving ${server.url}) holds it: stop that server first (read commands such as \`pedigree runs\` work while it serves)`,
  );
}
