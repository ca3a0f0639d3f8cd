/**
 * `pedigree checkpoint`, `pedigree verify --checkpoint FILE` and the
 * checkpoints `pedigree start` signs, as an operator uses them, against an
 * embedded store and a PostgreSQL server; and the attacks of issue 13 item 5,
 * done with raw SQL as the database's superuser (test/support/tamper.ts).
 * Plain `verify` (the chains) misses (a)–(c); `verify --checkpoint` catches
 * each, with exit code 1 and a line saying what differs.
 *
 * One store of each kind is recorded and checkpointed once; each attack gets
 * a copy of it (the embedded store's directory copied, the server's database
 * created from it as a template), so the attacks do not see each other.
 */
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openPedigree, type Pedigree } from '@pedigree/lineage';
import { pedigreeCommand, pedigreeServer } from './support/server.ts';
import { SERVER_URL, serverUnavailable } from './support/stores.ts';
import { burnPositions, deleteLastEvent, insertForgedEvent, rewriteAndRehash } from './support/tamper.ts';

/** Each test runs a handful of CLI processes (seconds each, more on a busy machine). */
const CLI_TEST_MS = 300_000;

const why = await serverUnavailable();
if (why && process.env.CI) throw new Error(`CI must run the server-mode tests, but ${why}`);
if (why) console.warn(`[skipping server-mode tests] ${why}`);

const tmp = mkdtempSync(path.join(os.tmpdir(), 'pedigree-checkpoint-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
/** PEDIGREE_HOME for every command here: a server store's default key and checkpoints go under it, not into the repository. */
const env = { PEDIGREE_HOME: path.join(tmp, 'home') };
const pedigree = (...args: string[]) => pedigreeCommand(args, { env, timeoutMs: 120_000 });

interface Store {
  /** --home DIR or --url URL */
  args: string[];
  open(): Promise<Pedigree>;
  dir?: string;
}

interface Kind {
  name: 'pglite' | 'postgres';
  skip: string | null;
  /** A new, empty store (migrated). */
  create(): Promise<Store>;
  /** A copy of `base` (closed) for one attack. */
  copy(base: Store): Promise<Store>;
  dispose(): Promise<void>;
}

const serverDatabases: string[] = [];
async function adminSql<T>(fn: (sql: postgres.Sql) => Promise<T>): Promise<T> {
  const sql = postgres(SERVER_URL, { max: 1, onnotice: () => {} });
  try {
    return await fn(sql);
  } finally {
    await sql.end();
  }
}
const urlOf = (name: string) => {
  const u = new URL(SERVER_URL);
  u.pathname = `/${name}`;
  return u.toString();
};

const kinds: Kind[] = [
  {
    name: 'pglite',
    skip: null,
    async create() {
      const dir = path.join(tmp, `pglite-${randomBytes(4).toString('hex')}`);
      return { dir, args: ['--home', dir], open: () => openPedigree({ dir }) };
    },
    async copy(base) {
      const dir = path.join(tmp, `pglite-${randomBytes(4).toString('hex')}`);
      cpSync(base.dir!, dir, { recursive: true });
      return { dir, args: ['--home', dir], open: () => openPedigree({ dir }) };
    },
    async dispose() {},
  },
  {
    name: 'postgres',
    skip: why,
    async create() {
      const name = `pedigree_t_${randomBytes(6).toString('hex')}`;
      await adminSql((sql) => sql.unsafe(`CREATE DATABASE ${name}`));
      serverDatabases.push(name);
      const url = urlOf(name);
      const migrated = await pedigree('migrate', '--url', url);
      expect(migrated, migrated.stderr).toMatchObject({ code: 0 });
      return { args: ['--url', url], open: () => openPedigree({ url }) };
    },
    async copy(base) {
      const name = `pedigree_t_${randomBytes(6).toString('hex')}`;
      const baseName = new URL(base.args[1]!).pathname.slice(1);
      await adminSql((sql) => sql.unsafe(`CREATE DATABASE ${name} TEMPLATE ${baseName}`));
      serverDatabases.push(name);
      const url = urlOf(name);
      return { args: ['--url', url], open: () => openPedigree({ url }) };
    },
    async dispose() {
      await adminSql(async (sql) => {
        for (const name of serverDatabases.splice(0)) await sql.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      });
    },
  },
];

/** Opens the store directly (as its superuser), does `fn`, closes it: the CLI then sees the result. */
async function withStore<T>(store: Store, fn: (pd: Pedigree) => Promise<T>): Promise<T> {
  const pd = await store.open();
  try {
    return await fn(pd);
  } finally {
    await pd.close();
  }
}

describe.each(kinds)('signed checkpoints from the CLI ($name)', (kind) => {
  let base: Store;
  /** The checkpoint signed of `base`, held "elsewhere" (outside the store). */
  let checkpointFile: string;
  /** The signer's public key, as a third party would be given it. */
  let publicKeyFile: string;
  let signed: { treeSize: number; lastPosition: number; file: string; keyFile: string; keyCreated: boolean };
  /** --key for verify: the embedded store's copies carry their key; the server's copies are other databases, so the public key is named. */
  const keyArgs = () => (kind.name === 'postgres' ? ['--key', publicKeyFile] : []);

  beforeAll(async () => {
    if (kind.skip) return;
    base = await kind.create();
    // Two recordings with a failed transaction's gap in positions between them.
    expect(await pedigree('sample', ...base.args, '--project', 'first', '--json')).toMatchObject({ code: 0 });
    await withStore(base, (pd) => burnPositions(pd.database.db, 2));
    expect(await pedigree('sample', ...base.args, '--project', 'second', '--json')).toMatchObject({ code: 0 });
    checkpointFile = path.join(tmp, `${kind.name}-held-elsewhere.checkpoint`);
    const made = await pedigree('checkpoint', ...base.args, '--out', checkpointFile, '--json');
    expect(made, made.stderr).toMatchObject({ code: 0 });
    signed = JSON.parse(made.stdout);
    publicKeyFile = path.join(tmp, `${kind.name}-public.pem`);
    const pub = await pedigree('checkpoint', ...base.args, '--public-key', '--json');
    writeFileSync(publicKeyFile, JSON.parse(pub.stdout).publicKey);
  }, 300_000);
  afterAll(() => kind.dispose());

  it.skipIf(kind.skip)('signs with a key made on first use outside the database (0600), writes the checkpoint to the store’s directory and to --out', async () => {
    expect(signed.keyCreated).toBe(true);
    expect(statSync(signed.keyFile).mode & 0o777).toBe(0o600);
    expect(signed.keyFile).toEqual(
      kind.name === 'pglite' ? path.join(base.dir!, 'checkpoint-key.pem') : expect.stringMatching(new RegExp(`^${env.PEDIGREE_HOME}/postgres/[^/]+_5432_pedigree_t_[0-9a-f]+/checkpoint-key\\.pem$`)),
    );
    expect(readFileSync(signed.file, 'utf8')).toBe(readFileSync(checkpointFile, 'utf8'));
    const lines = readFileSync(checkpointFile, 'utf8').split('\n');
    expect(lines[0]).toMatch(kind.name === 'pglite' ? /^pedigree\.local\/pglite\// : /^pedigree\.local\/postgres\//);
    expect(lines[1]).toBe(String(signed.treeSize));
    expect(lines[4]).toBe(`last-position ${signed.lastPosition}`);
    expect(lines.at(-2)).toMatch(/^\u2014 pedigree\.local\/\S+ [A-Za-z0-9+/=]+$/);
    // The printed form is the file.
    const again = await pedigree('checkpoint', ...base.args);
    expect(again.code).toBe(0);
    expect(again.stdout.split('\n')[1]).toBe(String(signed.treeSize));
  }, CLI_TEST_MS);

  it.skipIf(kind.skip)('a log that grew verifies against the checkpoint', async () => {
    const store = await kind.copy(base);
    expect(await pedigree('sample', ...store.args, '--project', 'later', '--json')).toMatchObject({ code: 0 });
    const verify = await pedigree('verify', ...store.args, '--checkpoint', checkpointFile, ...keyArgs());
    expect(verify, verify.stderr).toMatchObject({ code: 0 });
    expect(verify.stdout).toMatch(/^OK\s+[\d,]+ events in [\d,]+ streams/m);
    expect(verify.stdout).toMatch(new RegExp(`^OK  the log extends checkpoint .* \\([\\d,]+ events, signed .* by pedigree\\.local/\\S+ \\(key ID [0-9a-f]{8}\\)\\): [\\d,]+ events appended since; consistency proof of \\d+ hashes checked\\.$`, 'm'));
  }, CLI_TEST_MS);

  it.skipIf(kind.skip)('(a) the last event deleted: plain verify misses it, verify --checkpoint names the truncation', async () => {
    const store = await kind.copy(base);
    await withStore(store, (pd) => deleteLastEvent(pd));
    expect((await pedigree('verify', ...store.args)).code).toBe(0);
    const verify = await pedigree('verify', ...store.args, '--checkpoint', checkpointFile, ...keyArgs());
    expect(verify.code).toBe(1);
    expect(verify.stdout).toMatch(/^TAMPERED  the log does not extend checkpoint /m);
    expect(verify.stdout).toContain(`the checkpoint vouches for ${signed.treeSize.toLocaleString('en-US')} events: 1 event removed (the tail truncated, or events deleted).`);
    // …and `pedigree checkpoint` will not sign the shortened log over it (the embedded store keeps its checkpoints with it).
    if (kind.name === 'pglite') {
      const refused = await pedigree('checkpoint', ...store.args);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toMatch(/^pedigree: refusing to sign: the log does not extend the newest checkpoint/);
    }
  }, CLI_TEST_MS);

  it.skipIf(kind.skip)('(b) a forged event inserted in a gap before the checkpoint: plain verify misses it, verify --checkpoint names the insert', async () => {
    const store = await kind.copy(base);
    const gap = await withStore(store, async (pd) => {
      const [row] = await pd.database.db.query<{ p: number }>(
        'SELECT s.p FROM generate_series(1, $1::int8) AS s(p) WHERE NOT EXISTS (SELECT 1 FROM events WHERE position = s.p) ORDER BY s.p LIMIT 1',
        [signed.lastPosition],
      );
      await insertForgedEvent(pd, row!.p);
      return row!.p;
    });
    expect(gap).toBeLessThan(signed.lastPosition);
    expect((await pedigree('verify', ...store.args)).code).toBe(0);
    const verify = await pedigree('verify', ...store.args, '--checkpoint', checkpointFile, ...keyArgs());
    expect(verify.code).toBe(1);
    expect(verify.stdout).toContain(`lie at or before position ${signed.lastPosition} where the checkpoint counted ${signed.treeSize.toLocaleString('en-US')}: 1 event inserted (forged).`);
  }, CLI_TEST_MS);

  it.skipIf(kind.skip)('(c) a value changed and its stream re-hashed: plain verify misses it, verify --checkpoint names the rewrite', async () => {
    const store = await kind.copy(base);
    await withStore(store, async (pd) => {
      const [row] = await pd.database.db.query<{ position: number; data: { values: Record<string, unknown> } }>(
        `SELECT position, data FROM events WHERE type = 'HyperparametersDeclared' ORDER BY position LIMIT 1`,
      );
      await rewriteAndRehash(pd, row!.position, { values: { ...row!.data.values, lr: 1 } });
    });
    const plain = await pedigree('verify', ...store.args);
    expect(plain.code, plain.stdout).toBe(0);
    const verify = await pedigree('verify', ...store.args, '--checkpoint', checkpointFile, ...keyArgs(), '--json');
    expect(verify.code).toBe(1);
    const result = JSON.parse(verify.stdout);
    expect(result.ok).toBe(true); // the chains
    expect(result.checkpoint).toMatchObject({ ok: false, problem: { code: 'REWRITTEN' } });
    expect(result.checkpoint.problem.message).toMatch(/was altered and its hash recomputed/);
  }, CLI_TEST_MS);

  it.skipIf(kind.skip)('a checkpoint with a bad signature, or by another key, is refused', async () => {
    const edited = path.join(tmp, `${kind.name}-edited.checkpoint`);
    writeFileSync(edited, readFileSync(checkpointFile, 'utf8').replace(`\n${signed.treeSize}\n`, `\n${signed.treeSize - 1}\n`));
    const bad = await pedigree('verify', ...base.args, '--checkpoint', edited, ...keyArgs());
    expect(bad.code).toBe(1);
    expect(bad.stdout).toMatch(/^REFUSED  checkpoint .*edited\.checkpoint: the signature by pedigree\.local\/\S+ does not verify/m);

    const otherKey = path.join(tmp, `${kind.name}-other.pem`);
    writeFileSync(otherKey, generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    const store = await kind.copy(base);
    const foreignFile = path.join(tmp, `${kind.name}-foreign.checkpoint`);
    expect(await pedigree('checkpoint', ...store.args, '--key', otherKey, '--out', foreignFile)).toMatchObject({ code: 0 });
    const foreign = await pedigree('verify', ...store.args, '--checkpoint', foreignFile, ...keyArgs());
    expect(foreign.code).toBe(1);
    expect(foreign.stdout).toMatch(/^REFUSED  checkpoint .*: not signed by the trusted key .*another key$/m);
    // With the key it was signed by, the same file verifies.
    expect((await pedigree('verify', ...store.args, '--checkpoint', foreignFile, '--key', otherKey)).code).toBe(0);
  }, CLI_TEST_MS);

  it.skipIf(kind.skip)('usage: --key without --checkpoint, and a missing file, are clear errors', async () => {
    expect(await pedigree('verify', ...base.args, '--key', publicKeyFile)).toMatchObject({ code: 2, stderr: 'pedigree: --key goes with --checkpoint FILE\n' });
    const missing = await pedigree('verify', ...base.args, '--checkpoint', path.join(tmp, 'nope.checkpoint'));
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^pedigree: cannot read the checkpoint .*nope\.checkpoint: ENOENT\n$/);
  }, CLI_TEST_MS);
});

describe('pedigree start signs checkpoints', () => {
  it('periodically, on request (`pedigree checkpoint` while it serves), and on stop; each verifies', async () => {
    const home = path.join(tmp, 'served');
    mkdirSync(home);
    const server = await pedigreeServer({ home, demo: 'sample', json: false, env: { ...env, PEDIGREE_CHECKPOINT_EVERY: '1s' } });
    const dir = path.join(home, 'ledger-checkpoints');
    const files = () => (existsSync(dir) ? readdirSync(dir).filter((n) => n.endsWith('.checkpoint')) : []);
    try {
      await server.start();
      const deadline = Date.now() + 60_000;
      while (!/^Checkpoints of the event log/m.test(server.stdout) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      expect(server.stdout).toMatch(/^Checkpoints of the event log: every 1 s when the log grew, on request and on stop, into .*ledger-checkpoints \(`kill -USR2 \d+` or `pedigree checkpoint` for one now\)$/m);
      while (files().length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
      expect(files().length).toBeGreaterThan(0);

      const before = files().length;
      const asked = await pedigree('checkpoint', '--home', home);
      expect(asked, asked.stderr).toMatchObject({ code: 0 });
      expect(asked.stderr).toMatch(/signed by the serving pedigree start \(pid \d+\)/);
      expect(files().length).toBe(before + 1);
    } finally {
      const stopped = await server.stop();
      expect(stopped.stderr).toBe('');
      expect(stopped.stdout).toMatch(/Stopping \(SIGTERM\)…\nStopped\.\n$/);
      server.kill();
    }
    for (const name of files()) {
      const verify = await pedigree('verify', '--home', home, '--checkpoint', path.join(dir, name));
      expect(verify.code, `${name}: ${verify.stdout}`).toBe(0);
    }
  }, CLI_TEST_MS);
});
