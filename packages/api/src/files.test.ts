/**
 * The content-addressed file store under MLflow's artifact proxy. How we
 * tried to break it: a body over the limit (announced, and only found while
 * streaming), a body that ends short of its content-length, a stream that
 * errors mid-way, an aborted request, the same bytes twice at once, a
 * corrupt copy already in place; each failure leaves no file behind. And
 * where the store lives for each kind of store and environment.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseByteSize, readServerEnv } from './env.ts';
import { drainBody, FileStore, FileTooLargeError, fileStoreSettings, UploadIncompleteError, DEFAULT_MAX_ARTIFACT_BYTES } from './files.ts';

const sha = (b: Uint8Array) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** A body of `chunks`, then (optionally) an error instead of the end. */
function body(chunks: Uint8Array[], opts: { failWith?: Error } = {}): ReadableStream<Uint8Array> {
  let i = 0;
  return new ReadableStream({
    pull(controller) {
      if (i < chunks.length) controller.enqueue(chunks[i++]!);
      else if (opts.failWith) controller.error(opts.failWith);
      else controller.close();
    },
  });
}

async function filesUnder(root: string, dir = root): Promise<string[]> {
  const out: string[] = [];
  for (const e of await fs.readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...(await filesUnder(root, p)));
    else out.push(path.relative(root, p));
  }
  return out.sort();
}

describe('FileStore', () => {
  let dir: string;
  let store: FileStore;
  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'pedigree-files-'));
    store = new FileStore({ dir, maxBytes: 1000 });
  });
  afterAll(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('stores a streamed body by its SHA-256 and reads it back; the same bytes again (even at once) are one file', async () => {
    const a = new Uint8Array(600).map((_, i) => i % 251);
    const chunks = [a.subarray(0, 100), a.subarray(100, 350), a.subarray(350)];
    const stored = await store.put(body(chunks), { expectedBytes: 600 });
    expect(stored).toEqual({ digest: sha(a), bytes: 600 });
    const hex = stored.digest.slice('sha256:'.length);
    expect(await filesUnder(dir)).toEqual([path.join('sha256', hex.slice(0, 2), hex.slice(2))]);
    const both = await Promise.all([store.put(body([a])), store.put(body(chunks))]);
    expect(both.map((s) => s.digest)).toEqual([stored.digest, stored.digest]);
    expect(await filesUnder(dir)).toHaveLength(1);
    const opened = (await store.open(stored.digest))!;
    expect(opened.bytes).toBe(600);
    expect(new Uint8Array(await new Response(opened.body).arrayBuffer())).toEqual(a);
    expect(await store.open(`sha256:${'0'.repeat(64)}`)).toBeNull();
  });

  it('an empty body is a file too', async () => {
    const stored = await store.put(body([]), { expectedBytes: 0 });
    expect(stored).toEqual({ digest: sha(new Uint8Array()), bytes: 0 });
  });

  it('refuses over the limit, announced or found while streaming, keeping nothing and leaving the body to drain', async () => {
    const before = await filesUnder(dir);
    await expect(store.put(body([new Uint8Array(10)]), { expectedBytes: 1001 })).rejects.toBeInstanceOf(FileTooLargeError);
    const stream = body([new Uint8Array(600), new Uint8Array(600), new Uint8Array(600)]);
    await expect(store.put(stream)).rejects.toBeInstanceOf(FileTooLargeError);
    expect(stream.locked).toBe(false);
    await drainBody(stream, 1000);
    expect(await filesUnder(dir)).toEqual(before);
  });

  it('keeps nothing from a body short of its content-length, a stream that errors, or an aborted request', async () => {
    const before = await filesUnder(dir);
    await expect(store.put(body([new Uint8Array(10)]), { expectedBytes: 20 })).rejects.toBeInstanceOf(UploadIncompleteError);
    await expect(store.put(body([new Uint8Array(10)], { failWith: new Error('aborted') }))).rejects.toThrow('aborted');
    await expect(store.put(body([new Uint8Array(10)]), { signal: AbortSignal.abort() })).rejects.toBeInstanceOf(UploadIncompleteError);
    expect(await filesUnder(dir)).toEqual(before);
  });

  it('replaces a damaged copy (wrong size) rather than trusting it, and refuses to serve one', async () => {
    const b = new Uint8Array([1, 2, 3]);
    const target = store.pathOf(sha(b));
    await fs.mkdir(path.dirname(target), { recursive: true });
    await fs.writeFile(target, 'xx');
    await store.put(body([b]));
    expect(new Uint8Array(await fs.readFile(target))).toEqual(b);
    // …and never serves one.
    await fs.writeFile(target, 'xxxx');
    await expect(store.open(sha(b), 3)).rejects.toThrow(/damaged/);
  });
});

describe('fileStoreSettings', () => {
  it('puts files in the embedded store, PEDIGREE_HOME or ./.pedigree for a server store, or PEDIGREE_ARTIFACTS_DIR', () => {
    expect(fileStoreSettings({ kind: 'pglite', location: '/data/store' }, readServerEnv({}))).toEqual({ dir: '/data/store/artifacts', maxBytes: DEFAULT_MAX_ARTIFACT_BYTES });
    expect(fileStoreSettings({ kind: 'postgres', location: 'postgresql://h/db' }, readServerEnv({ PEDIGREE_HOME: '/srv/pedigree' })).dir).toBe('/srv/pedigree/artifacts');
    expect(fileStoreSettings({ kind: 'postgres', location: 'postgresql://h/db' }, readServerEnv({})).dir).toBe(path.resolve('.pedigree/artifacts'));
    expect(fileStoreSettings({ kind: 'pglite', location: '/data/store' }, readServerEnv({ PEDIGREE_ARTIFACTS_DIR: 'blobs' })).dir).toBe(path.resolve('blobs'));
    expect(fileStoreSettings({ kind: 'pglite', location: ':memory:' }, readServerEnv({})).dir.startsWith(os.tmpdir())).toBe(true);
  });

  it('reads PEDIGREE_MAX_ARTIFACT_BYTES as bytes or with a binary unit, and refuses anything else', () => {
    expect(fileStoreSettings({ kind: 'pglite', location: '/s' }, readServerEnv({ PEDIGREE_MAX_ARTIFACT_BYTES: '1048576' })).maxBytes).toBe(1048576);
    expect(parseByteSize('512M', 'X')).toBe(512 * 1024 ** 2);
    expect(parseByteSize('5GiB', 'X')).toBe(5 * 1024 ** 3);
    expect(parseByteSize('2 kb', 'X')).toBe(2048);
    for (const bad of ['', '0', '-1', '1.5G', 'lots', '5 PB']) expect(() => parseByteSize(bad, 'PEDIGREE_MAX_ARTIFACT_BYTES')).toThrow(/PEDIGREE_MAX_ARTIFACT_BYTES/);
  });
});

describe('readServerEnv', () => {
  it('reads the server settings once, empty values as unset, and names every bad one', () => {
    expect(readServerEnv({ PEDIGREE_AUTH: '', PEDIGREE_ARTIFACTS_DIR: '', PEDIGREE_MAX_ARTIFACT_BYTES: '', PEDIGREE_HOME: '/h' })).toEqual({ auth: undefined, artifactsDir: undefined, maxArtifactBytes: undefined, home: '/h' });
    expect(readServerEnv({ PEDIGREE_AUTH: 'keys', PEDIGREE_MAX_ARTIFACT_BYTES: '2M' })).toMatchObject({ auth: 'keys', maxArtifactBytes: 2 * 1024 ** 2 });
    expect(() => readServerEnv({ PEDIGREE_AUTH: 'closed', PEDIGREE_MAX_ARTIFACT_BYTES: 'lots' })).toThrow(/PEDIGREE_AUTH must be open or keys, got "closed"; PEDIGREE_MAX_ARTIFACT_BYTES must be a size in bytes/);
  });
});
