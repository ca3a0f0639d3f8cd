import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pedigreeCommand, pedigreeServer, type PedigreeServer, type ServingInfo } from './support/server.ts';
import { createServerDatabase, serverUnavailable } from './support/stores.ts';

/**
 * `pedigree start` serves the web app and the API over real HTTP, from one
 * process that holds the store, and stops cleanly: against an embedded store
 * and against a PostgreSQL server.
 */
const why = await serverUnavailable();
if (why && process.env.CI) throw new Error(`CI must run the server-mode tests, but ${why}`);
if (why) console.warn(`[skipping server-mode tests] ${why}`);

interface Store {
  name: 'pglite' | 'postgres';
  skip: string | null;
  /** The --home or --url of a fresh store, ready to serve. */
  create(): Promise<{ home?: string; url?: string; dispose(): Promise<void> }>;
  auth: 'open' | 'keys';
}

const stores: Store[] = [
  {
    name: 'pglite',
    skip: null,
    auth: 'open',
    async create() {
      const home = mkdtempSync(path.join(os.tmpdir(), 'pedigree-server-'));
      return { home, dispose: async () => rmSync(home, { recursive: true, force: true }) };
    },
  },
  {
    name: 'postgres',
    skip: why,
    auth: 'keys',
    async create() {
      const db = await createServerDatabase();
      // A server is never migrated by surprise: `pedigree migrate` first, as its users do.
      const migrated = await pedigreeCommand(['migrate', '--url', db.url]);
      expect(migrated, migrated.stderr).toMatchObject({ code: 0 });
      return { url: db.url, dispose: db.drop };
    },
  },
];

const getJson = async (url: string) => {
  const res = await fetch(url);
  return { status: res.status, body: (await res.json()) as { result?: { data: { json: Record<string, unknown> } }; error?: { json: { data: { code: string } } } } };
};

describe.each(stores)('pedigree start serves ($name)', ({ name, skip, create, auth }) => {
  let store: Awaited<ReturnType<Store['create']>>;
  let server: PedigreeServer;
  let info: ServingInfo;

  beforeAll(async () => {
    if (skip) return;
    store = await create();
    server = await pedigreeServer({ home: store.home, url: store.url });
    info = await server.start();
  });

  afterAll(async () => {
    if (server?.pid) await server.stop();
    await store?.dispose();
  });

  it.skipIf(skip)('prints one JSON line with where it listens, the store (sample recorded: it was empty) and the auth mode', () => {
    expect(server.stdout.trim().split('\n')).toHaveLength(1);
    expect(info).toMatchObject({ url: server.url, api: `${server.url}/api/trpc`, port: server.port, kind: name, auth, recordedSample: true, pid: server.pid });
    expect(info.store).toContain(name === 'pglite' ? store.home : 'PostgreSQL at');
    expect(server.stderr).toBe('');
  });

  it.skipIf(skip)('answers system.health over HTTP', async () => {
    const health = await getJson(`${server.url}/api/trpc/system.health`);
    expect(health.status).toBe(200);
    expect(health.body.result?.data.json).toMatchObject({ ok: true, storage: name, auth, position: info.events });
  });

  it.skipIf(skip)('serves the dashboard', async () => {
    const res = await fetch(`${server.url}/`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/html/);
    const html = await res.text();
    // The dashboard draws itself in the browser (test/web.test.ts checks what it shows); the server sends its shell.
    expect(html).toContain('<title>Pedigree</title>');
    expect(html).toContain('class="brand"');
  });

  it.skipIf(skip)('answers 404 for an unknown procedure, and for an unknown page', async () => {
    const unknown = await getJson(`${server.url}/api/trpc/nothing.here`);
    expect(unknown.status).toBe(404);
    expect(unknown.body.error?.json.data.code).toBe('NOT_FOUND');
    expect((await fetch(`${server.url}/no-such-page`)).status).toBe(404);
  });

  it.skipIf(skip)('a second server on the same port fails at once, with one line, and leaves its store alone', async () => {
    const otherHome = path.join(os.tmpdir(), `pedigree-never-${process.pid}-${name}`);
    const second = await pedigreeCommand(['start', ...(store.home ? ['--home', otherHome] : ['--url', store.url!]), '--port', String(server.port)]);
    expect(second.code).toBe(1);
    expect(second.stdout).toBe('');
    expect(second.stderr).toBe(`pedigree: port ${server.port} on 127.0.0.1 is in use (another pedigree start?); stop that server or choose another with --port\n`);
    expect(existsSync(otherHome)).toBe(false); // it failed before it opened (or created) a store
  });

  it.skipIf(skip || name !== 'pglite')('keeps other CLI processes out of the embedded store it holds: they read through it (test/cli.server.test.ts)', async () => {
    const runs = await pedigreeCommand(['runs', '--home', store.home!, '--json']);
    expect(runs, runs.stderr).toMatchObject({ code: 0, stderr: '' });
    expect(JSON.parse(runs.stdout)).toHaveLength(6);
    const replay = await pedigreeCommand(['replay', '--home', store.home!]);
    expect(replay.code).toBe(1);
    expect(replay.stderr).toMatch(new RegExp(`^pedigree: \`pedigree replay\` needs the store in .* itself, and \`pedigree start\` \\(pid ${server.pid}, serving ${server.url}\\) holds it.*\\n$`));
  });

  it.skipIf(skip)('SIGTERM stops it: exit 0, nothing of its process group left running', async () => {
    const stopped = await server.stop('SIGTERM');
    expect(stopped).toMatchObject({ code: 0, signal: null, stderr: '', leftover: false });
    await expect(fetch(`${server.url}/api/trpc/system.health`)).rejects.toThrow();
  });

  it.skipIf(skip)('starts again on the same port, with the same data', async () => {
    const again = await server.start();
    expect(again).toMatchObject({ url: server.url, recordedSample: false, events: info.events });
    const health = await getJson(`${server.url}/api/trpc/system.health`);
    expect(health.body.result?.data.json).toMatchObject({ storage: name, position: info.events });
  });

  it.skipIf(skip || auth !== 'open')('Ctrl-C (SIGINT) stops it promptly and cleanly with a live subscription open', async () => {
    const runs = await getJson(`${server.url}/api/trpc/runs.list?input=${encodeURIComponent(JSON.stringify({ json: { project: 'phi4-toy' } }))}`);
    const runId = (runs.body.result?.data.json as { runs: { id: string }[] }).runs[0]!.id;
    const live = await fetch(`${server.url}/api/trpc/runs.watch?input=${encodeURIComponent(JSON.stringify({ json: { runId } }))}`);
    expect(live.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const reader = live.body!.getReader();
    expect(new TextDecoder().decode((await reader.read()).value)).toContain('event: connected');
    const ended = (async () => {
      while (!(await reader.read()).done);
    })().catch(() => {}); // cut, or ended: either way, over

    const began = performance.now();
    const stopped = await server.stop('SIGINT');
    expect(stopped).toMatchObject({ code: 0, stderr: '', leftover: false });
    expect(performance.now() - began).toBeLessThan(5_000);
    await ended;
  });
});

describe('pedigree start (usage)', () => {
  it('rejects a bad port or auth mode before doing anything', async () => {
    const [port, authMode] = await Promise.all([pedigreeCommand(['start', '--port', 'http']), pedigreeCommand(['start', '--auth', 'none'])]);
    expect(port).toMatchObject({ code: 2, stdout: '' });
    expect(port.stderr).toBe('pedigree: --port must be a whole number from 0 to 65535, got "http"\n');
    expect(authMode).toMatchObject({ code: 2, stdout: '' });
    expect(authMode.stderr).toBe('pedigree: --auth must be one of open, keys; got "none"\n');
  });
});

/**
 * An open server is for this machine only. How we tried to break it: asked it
 * to listen on every address; reached it with another site's name in the Host
 * header, as a page that rebinds its DNS name to 127.0.0.1 would; sent a
 * chunked body over the size limit and then a second request on the same
 * kept-alive connection.
 */
describe('an open server stays on this machine', () => {
  let home: string;
  let server: PedigreeServer;

  beforeAll(async () => {
    home = mkdtempSync(path.join(os.tmpdir(), 'pedigree-open-'));
    server = await pedigreeServer({ home, auth: 'open', demo: 'none' });
    await server.start();
  });
  afterAll(async () => {
    if (server?.pid) await server.stop();
    rmSync(home, { recursive: true, force: true });
  });

  it('refuses to serve --auth open on an address other machines can reach', async () => {
    const other = mkdtempSync(path.join(os.tmpdir(), 'pedigree-open-'));
    try {
      const r = await pedigreeCommand(['start', '--host', '0.0.0.0', '--port', '0', '--auth', 'open', '--home', other, '--demo', 'none']);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/refusing to serve with --auth open on 0\.0\.0\.0/);
    } finally {
      rmSync(other, { recursive: true, force: true });
    }
  });

  it('answers only requests whose Host is a loopback name (DNS rebinding)', async () => {
    const get = (host: string) =>
      new Promise<number>((resolve, reject) => {
        const req = http.get({ host: '127.0.0.1', port: server.port, path: '/api/trpc/system.health', headers: { host } }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on('error', reject);
      });
    expect(await get('evil.example:80')).toBe(403);
    expect(await get(`attacker.test:${server.port}`)).toBe(403);
    expect(await get(`localhost:${server.port}`)).toBe(200);
    expect(await get(`127.0.0.1:${server.port}`)).toBe(200);
    expect(await get(`[::1]:${server.port}`)).toBe(200);
  });

  it('answers a chunked body over the limit with 413 and closes the connection, so a next request cannot be read from its rest', async () => {
    const socket = net.connect(server.port, '127.0.0.1');
    await new Promise((resolve) => socket.once('connect', resolve));
    let received = '';
    socket.on('data', (d) => (received += d.toString('latin1')));
    const closed = new Promise<number>((resolve) => socket.once('close', () => resolve(Date.now())));
    socket.on('error', () => {});
    socket.write(`POST /api/trpc/runs.logMetrics HTTP/1.1\r\nHost: 127.0.0.1:${server.port}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n`);
    // The whole body, as most clients send it before they read the answer: 20 MiB, 4 over the limit.
    const chunk = Buffer.alloc(1024 * 1024, 0x20);
    for (let i = 0; i < 20; i++) {
      socket.write(`${chunk.length.toString(16)}\r\n`);
      socket.write(chunk);
      socket.write('\r\n');
    }
    socket.write('0\r\n\r\n');
    // A second request on the same connection: it must not be served from a half-read stream.
    socket.write(`GET /api/trpc/system.health HTTP/1.1\r\nHost: 127.0.0.1:${server.port}\r\n\r\n`);
    const sent = Date.now();
    const end = await Promise.race([closed, new Promise<number>((r) => setTimeout(() => r(-1), 10_000))]);
    expect(received).toMatch(/^HTTP\/1\.1 413/);
    expect(received.match(/HTTP\/1\.1 /g)).toHaveLength(1);
    expect(end, 'the server kept the connection open after the 413').not.toBe(-1);
    expect(end - sent).toBeLessThan(10_000);
  });
});
