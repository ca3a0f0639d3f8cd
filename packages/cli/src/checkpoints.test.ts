import { generateKeyPairSync } from 'node:crypto';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openPedigree, type Pedigree } from '@pedigree/lineage';
import { openCheckpoint } from '@pedigree/ledger';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkpointFileName, checkpointPlace, loadSigningKey, newestCheckpoint, parseInterval, signHead, startPeriodicCheckpoints, writeCheckpointFile } from './checkpoints.ts';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'pedigree-checkpoints-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('where checkpoints and keys live', () => {
  it('names the store in the origin, without spaces or plus signs', () => {
    const embedded = checkpointPlace({ dir: '/srv/my store+1' }, undefined);
    expect(embedded).toEqual({
      kind: 'pglite',
      origin: 'pedigree.local/pglite/srv/my%20store%2B1',
      keyFile: '/srv/my store+1/checkpoint-key.pem',
      keyNamed: false,
      dir: '/srv/my store+1/ledger-checkpoints',
    });
    const server = checkpointPlace({ url: 'postgresql://u:secret@db.example:6543/lineage?sslmode=require' }, undefined);
    expect(server.origin).toBe('pedigree.local/postgres/db.example%3A6543/lineage');
    expect(server.keyFile).toMatch(/\/postgres\/db\.example_6543_lineage\/checkpoint-key\.pem$/);
    expect(server.origin).not.toContain('secret');
    expect(checkpointPlace({ url: 'postgres://localhost/x' }, '/keys/k.pem')).toMatchObject({ keyFile: '/keys/k.pem', keyNamed: true, origin: 'pedigree.local/postgres/localhost%3A5432/x' });
  });

  it('parses intervals', () => {
    expect(parseInterval('10m', 'x')).toBe(600_000);
    expect(parseInterval('30s', 'x')).toBe(30_000);
    expect(parseInterval('1h', 'x')).toBe(3_600_000);
    expect(parseInterval('5', 'x')).toBe(300_000);
    expect(parseInterval('off', 'x')).toBeNull();
    expect(parseInterval('0', 'x')).toBeNull();
    for (const bad of ['', '0.5s', '-1m', '1d', 'ten']) expect(() => parseInterval(bad, '--checkpoint-every'), bad).toThrow(/--checkpoint-every must be a duration/);
  });
});

describe('the signing key', () => {
  it('is made on first use, 0600, and read back the same', () => {
    const file = path.join(tmp, 'keys', 'first.pem');
    const made = loadSigningKey(file, { create: true });
    expect(made.created).toBe(true);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const again = loadSigningKey(file, { create: true });
    expect(again.created).toBe(false);
    expect(again.key.export({ type: 'pkcs8', format: 'pem' })).toBe(made.key.export({ type: 'pkcs8', format: 'pem' }));
  });

  it('is refused when missing (unless made), readable by others, or not Ed25519', () => {
    expect(() => loadSigningKey(path.join(tmp, 'none.pem'), { create: false })).toThrow(/no checkpoint key at/);
    const open = path.join(tmp, 'open.pem');
    writeFileSync(open, generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }));
    chmodSync(open, 0o644);
    expect(() => loadSigningKey(open, { create: false })).toThrow(/may be read by others \(mode 644\).*chmod 600/);
    const rsa = path.join(tmp, 'rsa.pem');
    writeFileSync(rsa, generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    expect(() => loadSigningKey(rsa, { create: false })).toThrow(/holds an ec key; checkpoint keys are Ed25519/);
  });
});

describe('the checkpoint directory', () => {
  it('names files by size then time, and finds the largest one the key opens', () => {
    const dir = path.join(tmp, 'dir');
    const place = { ...checkpointPlace({ dir: tmp }, undefined), dir };
    const { privateKey } = generateKeyPairSync('ed25519');
    const stranger = generateKeyPairSync('ed25519').privateKey;
    const head = (n: number) => ({ treeSize: n, rootHash: Buffer.alloc(32, n), lastPosition: n });
    const t = new Date('2026-11-30T12:00:00.000Z');
    expect(checkpointFileName({ treeSize: 42, timestamp: t })).toBe('000000000000042-20261130T120000000Z.checkpoint');
    for (const n of [5, 40, 9]) {
      const signed = signHead(place, privateKey, head(n), t);
      writeCheckpointFile(dir, signed.note, signed.checkpoint);
    }
    const foreign = signHead(place, stranger, head(99), t);
    writeCheckpointFile(dir, foreign.note, foreign.checkpoint);
    const { newest, skipped } = newestCheckpoint(dir, privateKey);
    expect(newest!.checkpoint.treeSize).toBe(40);
    expect(skipped).toHaveLength(1);
    expect(skipped[0]).toMatch(/000000000000099-.*not signed by the trusted key/);
    expect(newestCheckpoint(path.join(tmp, 'missing'), privateKey)).toEqual({ newest: null, skipped: [] });
  });
});

describe('periodic checkpoints (what pedigree start runs)', () => {
  let pd: Pedigree;
  let projectId: string;
  beforeAll(async () => {
    pd = await openPedigree({ dir: ':memory:' });
    projectId = (await pd.tracker.createProject({ name: 'periodic' })).projectId;
  });
  afterAll(() => pd.close());

  it('signs at start, when the log grew, on request, and on stop — and each one the log extends', async () => {
    const dir = path.join(tmp, 'periodic');
    const place = { ...checkpointPlace({ dir: tmp }, undefined), dir };
    const { privateKey } = generateKeyPairSync('ed25519');
    const warnings: string[] = [];
    const periodic = startPeriodicCheckpoints({ db: pd.database.db, place, key: privateKey, everyMs: 50, warn: (l) => warnings.push(l), note: () => {} });
    const files = () => readdirSync(dir).filter((n) => n.endsWith('.checkpoint'));
    const waitFor = async (n: number) => {
      const deadline = Date.now() + 20_000;
      while (files().length < n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    };
    await waitFor(1);
    expect(files()).toHaveLength(1); // at start
    await new Promise((r) => setTimeout(r, 300));
    expect(files()).toHaveLength(1); // nothing new: nothing signed
    await pd.tracker.createRun({ projectId, name: 'r', kind: 'pretrain' });
    await waitFor(2);
    expect(files()).toHaveLength(2);
    const onRequest = await periodic.takeNow();
    expect(onRequest).toMatch(/\.checkpoint$/);
    await pd.tracker.createRun({ projectId, name: 's', kind: 'sft' });
    await periodic.stop();
    const sizes = files()
      .map((n) => openCheckpoint(readFileSync(path.join(dir, n), 'utf8'), privateKey).checkpoint.treeSize)
      .sort((a, b) => a - b);
    expect(sizes.at(-1)).toBe((await pd.store.readAll({ limit: 1000 })).length);
    expect(new Set(sizes).size).toBeGreaterThanOrEqual(3);
    expect(warnings).toEqual([]);
    expect(readdirSync(dir)).not.toContain('serving-on-demand.json');
  });

  it('stops signing, and says why, when the log under the signed part changes', async () => {
    const dir = path.join(tmp, 'rewritten');
    const place = { ...checkpointPlace({ dir: tmp }, undefined), dir };
    const { privateKey } = generateKeyPairSync('ed25519');
    const warnings: string[] = [];
    const periodic = startPeriodicCheckpoints({ db: pd.database.db, place, key: privateKey, everyMs: null, warn: (l) => warnings.push(l), note: () => {} });
    expect(await periodic.takeNow()).toBeTruthy();
    await pd.database.db.transaction(async (tx) => {
      await tx.query('SET LOCAL ROLE NONE');
      await tx.query('ALTER TABLE events DISABLE TRIGGER USER');
      await tx.query('DELETE FROM events WHERE position = (SELECT min(position) FROM events)');
      await tx.query('ALTER TABLE events ENABLE TRIGGER USER');
    });
    expect(await periodic.takeNow()).toBeNull();
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/^pedigree: checkpoints stopped: the log changed under its signed part: \d+ events at or before position \d+, where \d+ were read \(events deleted behind the store's back\)/);
    await periodic.stop();
    // A new start checks the log against the newest checkpoint first, and signs nothing.
    const again: string[] = [];
    const restarted = startPeriodicCheckpoints({ db: pd.database.db, place, key: privateKey, everyMs: null, warn: (l) => again.push(l), note: () => {} });
    expect(await restarted.takeNow()).toBeNull();
    await restarted.stop();
    expect(again[0]).toMatch(/^pedigree: checkpoints stopped: the log does not extend the newest checkpoint, .*: the log holds \d+ events, the checkpoint vouches for \d+ events: 1 event removed/);
  });
});
