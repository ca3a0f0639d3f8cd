import { existsSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import path from 'node:path';

/**
 * The web app (apps/web) served by Next.js inside the `pedigree` process, as a
 * custom server: one process holds the store (PGlite allows only one) and
 * answers HTTP; no `next start`, so no child process outlives it.
 */

/** apps/web, from packages/cli/src. */
export const WEB_DIR = path.resolve(import.meta.dirname, '../../../apps/web');
export const DEFAULT_PORT = 4400;
export const DEFAULT_HOST = '127.0.0.1';
/** Open connections (live subscriptions) get this long to finish once stopping begins. */
const DRAIN_MS = 2_000;

/** A one-line failure the user can act on (port taken, web app not built). */
export class ServeError extends Error {
  override name = 'ServeError';
}

/** The part of Next's custom server (`next({ … })`) used here. */
interface NextApp {
  prepare(): Promise<void>;
  getRequestHandler(): (req: IncomingMessage, res: ServerResponse) => Promise<void>;
  close(): Promise<void>;
}
type CreateNextApp = (options: { dev: boolean; dir: string; hostname: string; port: number; quiet?: boolean; httpServer?: Server }) => NextApp;

export interface WebServer {
  /** http://host:port, as a browser on this machine would use it. */
  readonly url: string;
  readonly port: number;
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
    throw new ServeError(`the web app is not built (no ${path.relative(process.cwd(), buildId) || buildId}); run \`npm run build -w @pedigree/web\` (npm start does it for you)`);
  }

  let handle: ((req: IncomingMessage, res: ServerResponse) => Promise<void>) | undefined;
  let ready: Promise<void> | undefined;
  let app: NextApp | undefined;
  const server = createServer((req, res) => {
    const serve = async () => {
      await ready;
      if (!handle) throw new Error('the web app is not started');
      await handle(req, res);
    };
    serve().catch((err: unknown) => {
      console.error(`pedigree: ${req.method} ${req.url}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
      res.end('internal error\n');
    });
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
    serveApp() {
      ready ??= (async () => {
        // Next reads NODE_ENV at load; `next start` sets it the same way.
        process.env.NODE_ENV ??= 'production';
        // Next is the web app's dependency: load the copy it was built with.
        const requireFromWeb = createRequire(path.join(webDir, 'package.json'));
        await loadNextConfigQuietly(requireFromWeb, webDir);
        const createNextApp = requireFromWeb('next') as CreateNextApp;
        app = createNextApp({ dev: false, dir: webDir, hostname: opts.host, port, quiet: true, httpServer: server });
        await app.prepare();
        handle = app.getRequestHandler();
      })();
      return ready;
    },
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      const drain = setTimeout(() => server.closeAllConnections(), DRAIN_MS);
      await closed;
      clearTimeout(drain);
      await app?.close();
    },
  };
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
      return new ServeError(`port ${port} on ${host} is in use (another pedigree start?); stop that server or choose another with --port`);
    case 'EACCES':
      return new ServeError(`no permission to listen on port ${port}; choose one above 1023 with --port`);
    case 'EADDRNOTAVAIL':
    case 'ENOTFOUND':
      return new ServeError(`cannot listen on ${host}: not an address of this machine (--host)`);
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
