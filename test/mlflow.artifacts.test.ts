/**
 * MLflow's artifact proxy and the tracking API's artifacts/list, called as
 * MLflow's Python client calls them (PUT with the file's bytes as the body,
 * GET to download, GET ?path= to list; Bearer key), on both stores, through
 * the in-process server. How we tried to break it: the same PUT twice and
 * twice at once; the same bytes under two paths and in two runs; A, B, A
 * again under one path; `..` encoded every way, absolute paths, backslashes,
 * NUL, empty segments; a file one byte over the limit, announced and
 * streamed; a client that hangs up mid-body; another project's key, no key,
 * the wrong experiment in the URL; DELETE; a deleted run. Each refusal leaves
 * the store's directory and the event log as they were.
 */
import { randomBytes, createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { accessFor, createApiKey, createContext, listRunArtifacts } from '@pedigree/api';
import { openPedigree, type Pedigree } from '@pedigree/lineage';
import { serveInProcess } from './support/inprocess.ts';
import { mlflowCaller } from './support/mlflow.ts';
import { pedigreeServer, type PedigreeServer } from './support/server.ts';
import { backends } from './support/stores.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
/** The server's limit per file in these tests (the default is 5 GiB). */
const LIMIT = 8 * MiB;
const T0 = 1_764_000_000_000;
const PYTHON_CLIENT = 'mlflow-python-client/2.17.0';

const sha256 = (b: Uint8Array) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  json(): any;
}

/**
 * One raw HTTP request, as `requests` sends it: a Buffer goes with its
 * content-length; chunks go one by one (`contentLength` announced as given, or
 * chunked when absent), as `requests` streams a file object or a generator.
 */
function send(base: string, method: string, urlPath: string, opts: { token?: string | null; body?: Buffer | Buffer[]; contentLength?: number; contentType?: string } = {}): Promise<Reply> {
  const u = new URL(base);
  const headers: Record<string, string | number> = { 'user-agent': PYTHON_CLIENT, 'accept-encoding': 'identity' };
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  if (opts.contentType) headers['content-type'] = opts.contentType;
  const chunks = opts.body === undefined ? [] : Array.isArray(opts.body) ? opts.body : [opts.body];
  if (!Array.isArray(opts.body) && opts.body) headers['content-length'] = opts.body.length;
  if (opts.contentLength !== undefined) headers['content-length'] = opts.contentLength;
  return new Promise((resolve, reject) => {
    const req = http.request({ host: u.hostname, port: u.port, method, path: urlPath, headers }, (res) => {
      const got: Buffer[] = [];
      res.on('data', (c: Buffer) => got.push(c));
      res.on('end', () => {
        const body = Buffer.concat(got);
        resolve({ status: res.statusCode!, headers: res.headers, body, json: () => JSON.parse(body.toString('utf8')) });
      });
    });
    req.on('error', reject);
    void (async () => {
      for (const c of chunks) if (!req.write(c)) await new Promise((r) => req.once('drain', r));
      req.end();
    })();
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

async function until(what: string, ok: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await ok())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const eventCount = async (pd: Pedigree) => Number((await pd.database.db.query<{ n: string }>('SELECT count(*) AS n FROM events'))[0]!.n);

for (const { backend, skip } of await backends()) {
  describe.skipIf(skip)(`MLflow artifacts (${backend.name})`, () => {
    let pd: Pedigree;
    let server: Awaited<ReturnType<typeof serveInProcess>>;
    let dir: string;
    let keyA: string;
    let keyB: string;
    let expA: string;
    let expB: string;
    let run: { id: string; uri: string };
    let sibling: { id: string; uri: string };
    let other: { id: string; uri: string };
    const weights = randomBytes(3 * MiB + 12_345);
    const metricsJson = Buffer.from(JSON.stringify({ accuracy: 0.93, loss: 0.21 }));
    const mlmodel = Buffer.from('artifact_path: model\nflavors:\n  python_function:\n    loader_module: mlflow.pytorch\n');
    const csv = Buffer.from('step,loss\n0,2.0\n1,1.5\n');

    /** The URL path MLflow's client derives from a run's artifact_uri (mlflow_artifacts_repo.py resolve_uri) plus a file's path. */
    const fileUrl = (r: { uri: string }, p: string) => `/api/2.0/mlflow-artifacts/artifacts/${r.uri.slice('mlflow-artifacts:/'.length)}/${p}`;
    /** What HttpArtifactRepository.list_artifacts sends: the artifact_uri's tail (and a directory under it) as `path`. */
    const listUrl = (r: { uri: string }, p?: string) => `/api/2.0/mlflow-artifacts/artifacts?${new URLSearchParams({ path: `${r.uri.slice('mlflow-artifacts:/'.length)}${p ? `/${p}` : ''}` })}`;
    const put = (r: { uri: string }, p: string, body: Buffer | Buffer[], opts: { token?: string | null; contentLength?: number; contentType?: string } = {}) =>
      send(server.url, 'PUT', fileUrl(r, p), { token: opts.token === undefined ? keyA : opts.token, body, contentLength: opts.contentLength, contentType: opts.contentType ?? 'application/octet-stream' });
    const get = (urlPath: string, token: string | null = keyA) => send(server.url, 'GET', urlPath, { token });
    const listDirect = async (body: Record<string, unknown>, key = keyA) => {
      const ctx = await createContext({ pedigree: pd, authMode: 'keys', apiKey: key, client: PYTHON_CLIENT });
      return listRunArtifacts({ ctx, access: accessFor(ctx), body });
    };
    const fileEvents = async (runId: string) => (await pd.store.readStream(`run-${runId}`)).filter((e) => e.type === 'FileUploaded');

    beforeAll(async () => {
      pd = await backend.open();
      dir = await fs.mkdtemp(path.join(os.tmpdir(), 'pedigree-artifacts-'));
      server = await serveInProcess(pd, 'keys', { files: { dir, maxBytes: LIMIT } });
      expA = (await pd.tracker.createProject({ name: 'vision' })).projectId;
      expB = (await pd.tracker.createProject({ name: 'speech' })).projectId;
      keyA = (await createApiKey(pd.database.db, expA, 'a')).key;
      keyB = (await createApiKey(pd.database.db, expB, 'b')).key;
      const create = async (key: string, experimentId: string, name: string) => {
        const r = await mlflowCaller(server.url, key)('POST', 'runs/create', { experiment_id: experimentId, run_name: name, start_time: T0, tags: [{ key: 'mlflow.user', value: 'ada' }, { key: 'mlflow.runName', value: name }] });
        expect(r.status).toBe(200);
        return { id: r.body.run.info.run_id as string, uri: r.body.run.info.artifact_uri as string };
      };
      run = await create(keyA, expA, 'train');
      sibling = await create(keyA, expA, 'train-seed-2');
      other = await create(keyB, expB, 'asr');
    });
    afterAll(async () => {
      await server?.close();
      await backend.dispose();
      if (dir) await fs.rm(dir, { recursive: true, force: true });
    });

    it('uploads as log_artifact does and downloads byte-identical: JSON, a model directory, a few-MB file streamed in chunks, a chunked body', async () => {
      expect(run.uri).toBe(`mlflow-artifacts:/${expA}/${run.id}/artifacts`);
      expect((await put(run, 'metrics.json', metricsJson, { contentType: 'application/json' })).status).toBe(200);
      expect((await put(run, 'model/MLmodel', mlmodel, { contentType: 'text/plain' })).json()).toEqual({});
      // A file object under `requests`: its size announced, the bytes in 64 KiB pieces.
      const pieces = Array.from({ length: Math.ceil(weights.length / (64 * KiB)) }, (_, i) => weights.subarray(i * 64 * KiB, (i + 1) * 64 * KiB));
      expect((await put(run, 'model/weights.bin', pieces, { contentLength: weights.length })).status).toBe(200);
      // A generator under `requests`: chunked, no length.
      expect((await put(run, 'model/data/part-0.csv', [csv.subarray(0, 5), csv.subarray(5)], { contentType: 'text/csv' })).status).toBe(200);

      for (const [p, bytes, type] of [
        ['metrics.json', metricsJson, 'application/json'],
        ['model/MLmodel', mlmodel, 'text/plain'],
        ['model/weights.bin', weights, 'application/octet-stream'],
        ['model/data/part-0.csv', csv, 'text/csv'],
      ] as const) {
        const got = await get(fileUrl(run, p));
        expect(got.status).toBe(200);
        expect(got.body.equals(bytes)).toBe(true);
        expect(got.headers['content-length']).toBe(String(bytes.length));
        expect(got.headers['content-type']).toBe(type);
        expect(got.headers['content-disposition']).toMatch(/^attachment;/);
        expect(got.headers['x-content-type-options']).toBe('nosniff');
      }
      const hex = sha256(weights).slice('sha256:'.length);
      expect((await fs.stat(path.join(dir, 'sha256', hex.slice(0, 2), hex.slice(2)))).size).toBe(weights.length);
      expect(await filesUnder(path.join(dir, 'tmp'))).toEqual([]);
    });

    it('lists as list_artifacts does: only direct children, directories implied by paths, sizes for files only', async () => {
      const root = await get(listUrl(run));
      expect(root.status).toBe(200);
      expect(root.json()).toEqual({
        files: [
          { path: 'metrics.json', is_dir: false, file_size: metricsJson.length },
          { path: 'model', is_dir: true },
        ],
      });
      const model = {
        files: [
          { path: 'MLmodel', is_dir: false, file_size: mlmodel.length },
          { path: 'data', is_dir: true },
          { path: 'weights.bin', is_dir: false, file_size: weights.length },
        ],
      };
      expect((await get(listUrl(run, 'model'))).json()).toEqual(model);
      expect((await get(listUrl(run, 'model/'))).json()).toEqual(model);
      expect((await get(listUrl(run, 'model/data'))).json()).toEqual({ files: [{ path: 'part-0.csv', is_dir: false, file_size: csv.length }] });
      // A file, or a directory with nothing in it, lists as empty: the client tells a directory by a non-empty listing.
      expect((await get(listUrl(run, 'metrics.json'))).json()).toEqual({ files: [] });
      expect((await get(listUrl(run, 'nothing-here'))).json()).toEqual({ files: [] });
      expect((await get(listUrl(sibling))).json()).toEqual({ files: [] });
    });

    it('lists through the tracking API (artifacts/list): paths from the run root, root_uri, paging', async () => {
      expect(await listDirect({ run_id: run.id })).toEqual({
        root_uri: run.uri,
        files: [
          { path: 'metrics.json', is_dir: false, file_size: metricsJson.length },
          { path: 'model', is_dir: true },
        ],
      });
      expect(await listDirect({ run_id: run.id, path: 'model' })).toEqual({
        root_uri: run.uri,
        files: [
          { path: 'model/MLmodel', is_dir: false, file_size: mlmodel.length },
          { path: 'model/data', is_dir: true },
          { path: 'model/weights.bin', is_dir: false, file_size: weights.length },
        ],
      });
      // MLflow's run ids as 32 hex digits name the same run.
      expect((await listDirect({ run_uuid: run.id.replace(/-/g, ''), path: 'model/data' })).files).toEqual([{ path: 'model/data/part-0.csv', is_dir: false, file_size: csv.length }]);

      // Through HTTP (GET, query string as the Python client sends it).
      const viaHttp = await mlflowCaller(server.url, keyA)('GET', 'artifacts/list', { run_id: run.id, path: 'model' });
      expect(viaHttp.status).toBe(200);
      expect(viaHttp.body).toEqual(await listDirect({ run_id: run.id, path: 'model' }));

      // Pages of 1,000: recorded directly (listing needs the events, not the bytes).
      const many = await mlflowCaller(server.url, keyA)('POST', 'runs/create', { experiment_id: expA, run_name: 'many-files', start_time: T0 });
      const manyId: string = many.body.run.info.run_id;
      const digest = sha256(Buffer.from('x'));
      for (let i = 0; i < 1003; i++) await pd.tracker.recordFile(manyId, { path: `shards/s-${String(i).padStart(4, '0')}.bin`, digest, bytes: 1 });
      const first = await listDirect({ run_id: manyId, path: 'shards' });
      expect(first.files).toHaveLength(1000);
      const second = await listDirect({ run_id: manyId, path: 'shards', page_token: first.next_page_token });
      expect((second.files as { path: string }[]).map((f) => f.path)).toEqual(['shards/s-1000.bin', 'shards/s-1001.bin', 'shards/s-1002.bin']);
      expect(second.next_page_token).toBeUndefined();
    });

    it('stores a retried PUT once; the same bytes under two paths and in two runs are one file; A, B, A under one path is three uploads', async () => {
      const blobs = (await filesUnder(dir)).length;
      const before = await eventCount(pd);
      expect((await put(run, 'metrics.json', metricsJson)).status).toBe(200);
      expect(await eventCount(pd)).toBe(before);
      // A retry racing its first attempt.
      const note = Buffer.from('first epoch done');
      const both = await Promise.all([put(run, 'notes/retry.txt', note), put(run, 'notes/retry.txt', note)]);
      expect(both.map((r) => r.status)).toEqual([200, 200]);
      expect(await eventCount(pd)).toBe(before + 1);

      expect((await put(run, 'copies/metrics.json', metricsJson)).status).toBe(200);
      expect((await put(sibling, 'metrics.json', metricsJson)).status).toBe(200);
      expect(await eventCount(pd)).toBe(before + 3);
      expect((await filesUnder(dir)).length).toBe(blobs + 1); // only the note is new bytes
      const files = [...(await pd.lineage.runFiles(run.id)), ...(await pd.lineage.runFiles(sibling.id))].filter((f) => f.digest === sha256(metricsJson));
      expect(files.map((f) => f.path).sort()).toEqual(['copies/metrics.json', 'metrics.json', 'metrics.json']);
      expect(new Set(files.map((f) => f.artifactId)).size).toBe(1); // one artifact: same project, same content
      expect((await get(fileUrl(sibling, 'metrics.json'))).body.equals(metricsJson)).toBe(true);

      for (const v of ['v1', 'v2', 'v1']) expect((await put(run, 'notes/latest.txt', Buffer.from(v))).status).toBe(200);
      expect((await fileEvents(run.id)).filter((e) => (e.data as { path: string }).path === 'notes/latest.txt')).toHaveLength(3);
      expect((await get(fileUrl(run, 'notes/latest.txt'))).body.toString()).toBe('v1');
    });

    it('refuses traversal and malformed paths with INVALID_PARAMETER_VALUE, storing nothing', async () => {
      const files = await filesUnder(dir);
      const before = await eventCount(pd);
      const bad = [
        '..%2F..%2F..%2Fescape.txt',
        'a%2F..%2F..%2F..%2F..%2Fescape.txt',
        '%2e%2e%2f%2e%2e%2fescape.txt',
        '%2Fetc%2Fpasswd',
        'a%5C..%5C..%5Cescape.txt',
        'C%3A%5Cescape.txt',
        'a%00b.txt',
        'line%0Abreak.txt',
        'a//b.txt',
        'dir/',
      ];
      for (const p of bad) {
        const r = await put(run, p, Buffer.from('evil'));
        expect({ p, status: r.status, code: r.json().error_code }).toEqual({ p, status: 400, code: 'INVALID_PARAMETER_VALUE' });
      }
      // Raw `..` in the request line: URL parsing resolves it (as Next does), so it can only land outside the run's artifacts, and is refused there.
      for (const raw of [`${fileUrl(run, '../../../escape.txt')}`, `${fileUrl(run, '../../../../escape.txt')}`, `${fileUrl(run, '../../' + other.id + '/artifacts/x.txt')}`]) {
        const r = await send(server.url, 'PUT', raw, { token: keyA, body: Buffer.from('evil') });
        expect(r.status).toBeGreaterThanOrEqual(400);
        expect(r.status).toBeLessThan(500);
      }
      const escaped = await get(listUrl(run, `../../${other.id}/artifacts`));
      expect(escaped.status).toBe(400);
      expect(escaped.json().error_code).toBe('INVALID_PARAMETER_VALUE');
      await expect(listDirect({ run_id: run.id, path: '../x' })).rejects.toMatchObject({ code: 'INVALID_PARAMETER_VALUE' });
      expect((await get(`/api/2.0/mlflow-artifacts/artifacts?path=${expA}`)).status).toBe(400);
      expect(await filesUnder(dir)).toEqual(files);
      expect(await eventCount(pd)).toBe(before);
    });

    it('refuses a file over the limit with 413, announced or found while streaming, leaving no file and no event; exactly the limit is accepted', async () => {
      const files = await filesUnder(dir);
      const before = await eventCount(pd);
      const over = randomBytes(LIMIT + 1);
      const announced = await put(run, 'big/announced.bin', over);
      expect(announced.status).toBe(413);
      expect(announced.json()).toMatchObject({ error_code: 'BAD_REQUEST', message: expect.stringMatching(/limit of 8388608 bytes/) });
      const streamed = await put(run, 'big/streamed.bin', Array.from({ length: 2 * (LIMIT / MiB) }, () => randomBytes(MiB)));
      expect(streamed.status).toBe(413);
      expect(streamed.json().error_code).toBe('BAD_REQUEST');
      expect(await filesUnder(dir)).toEqual(files);
      expect(await eventCount(pd)).toBe(before);

      const exact = over.subarray(0, LIMIT);
      expect((await put(run, 'big/exact.bin', exact)).status).toBe(200);
      expect((await get(fileUrl(run, 'big/exact.bin'))).body.equals(exact)).toBe(true);
    });

    it('an upload the client abandons mid-body leaves no file and no event (announced length, and chunked)', async () => {
      const files = await filesUnder(dir);
      const before = await eventCount(pd);
      const tmp = path.join(dir, 'tmp');
      for (const announced of [true, false]) {
        const u = new URL(server.url);
        const headers: Record<string, string | number> = { 'user-agent': PYTHON_CLIENT, authorization: `Bearer ${keyA}`, 'content-type': 'application/octet-stream' };
        if (announced) headers['content-length'] = 4 * MiB;
        const req = http.request({ host: u.hostname, port: u.port, method: 'PUT', path: fileUrl(run, `abandoned-${announced}.bin`), headers });
        const failed = new Promise((resolve) => req.on('error', resolve));
        req.write(randomBytes(MiB));
        // The server is writing it to disk…
        await until('the upload to reach the disk', async () => (await filesUnder(tmp)).length > 0);
        // …when the client goes away.
        req.destroy();
        await failed;
        await until('the partial file to be removed', async () => (await filesUnder(tmp)).length === 0);
      }
      expect(await filesUnder(dir)).toEqual(files);
      expect(await eventCount(pd)).toBe(before);
      expect((await get(fileUrl(run, 'abandoned-true.bin'))).status).toBe(404);
    });

    it("another project's key gets PERMISSION_DENIED (upload, download, listing, artifacts/list) and stores nothing; no key is UNAUTHENTICATED; the wrong experiment is not found", async () => {
      const files = await filesUnder(dir);
      const before = await eventCount(pd);
      const upload = await put(run, 'intruder.txt', Buffer.from('from project B'), { token: keyB });
      expect(upload.status).toBe(403);
      expect(upload.json().error_code).toBe('PERMISSION_DENIED');
      expect((await get(fileUrl(run, 'metrics.json'), keyB)).status).toBe(403);
      expect((await get(listUrl(run), keyB)).json().error_code).toBe('PERMISSION_DENIED');
      await expect(listDirect({ run_id: run.id }, keyB)).rejects.toMatchObject({ code: 'FORBIDDEN' });
      expect((await put(other, 'x.txt', Buffer.from('a writes b')))).toMatchObject({ status: 403 });
      const anonymous = await put(run, 'anon.txt', Buffer.from('who?'), { token: null });
      expect(anonymous.status).toBe(401);
      expect(anonymous.json().error_code).toBe('UNAUTHENTICATED');
      // The run named under an experiment it is not in.
      const misplaced = await send(server.url, 'GET', `/api/2.0/mlflow-artifacts/artifacts/${expB}/${run.id}/artifacts/metrics.json`, { token: keyA });
      expect(misplaced.status).toBe(404);
      expect(misplaced.json().error_code).toBe('RESOURCE_DOES_NOT_EXIST');
      expect(await filesUnder(dir)).toEqual(files);
      expect(await eventCount(pd)).toBe(before);
    });

    it('the audit log shows each upload as FileUploaded, and the lineage graph shows the file produced by the run', async () => {
      const events = await fileEvents(run.id);
      const weightsEvent = events.find((e) => (e.data as { path: string }).path === 'model/weights.bin')!;
      expect(weightsEvent.data).toMatchObject({ path: 'model/weights.bin', digest: sha256(weights), bytes: weights.length });
      expect(weightsEvent.metadata).toMatchObject({ actor: `key:a (${PYTHON_CLIENT})` });
      const artifactId = (weightsEvent.data as { artifactId: string }).artifactId;
      expect(await pd.lineage.artifact(artifactId)).toMatchObject({ kind: 'file', digest: sha256(weights), projectId: expA, producedBy: run.id });
      expect(await pd.lineage.edgesOf(run.id)).toContainEqual(expect.objectContaining({ artifactId, direction: 'produced', role: 'file', step: null, kind: 'file' }));

      // A later stage that starts from the uploaded weights: its ancestry runs through the file back to this run.
      const finetune = await mlflowCaller(server.url, keyA)('POST', 'runs/create', { experiment_id: expA, run_name: 'finetune', start_time: T0 });
      const finetuneId: string = finetune.body.run.info.run_id;
      await pd.tracker.useInput(finetuneId, { artifactId, role: 'init' });
      const graph = await pd.lineage.ancestry(finetuneId);
      expect(graph.edges).toContainEqual({ from: artifactId, to: finetuneId, relation: 'used', role: 'init' });
      expect(graph.edges).toContainEqual({ from: run.id, to: artifactId, relation: 'produced', role: 'file' });
      expect(graph.nodes).toContainEqual(expect.objectContaining({ id: artifactId, type: 'artifact', kind: 'file' }));
      expect((await pd.verify()).ok).toBe(true);
    });

    it('answers a missing file and a directory with 404, refuses DELETE (removing nothing), refuses uploads to a deleted run, accepts them after the run ended', async () => {
      const missing = await get(fileUrl(run, 'nope.txt'));
      expect(missing.status).toBe(404);
      expect(missing.json().error_code).toBe('RESOURCE_DOES_NOT_EXIST');
      const directory = await get(fileUrl(run, 'model'));
      expect(directory.status).toBe(404);
      expect(directory.json().message).toMatch(/is a directory/);

      const deleted = await send(server.url, 'DELETE', fileUrl(run, 'metrics.json'), { token: keyA });
      expect(deleted.status).toBe(405);
      expect(deleted.json()).toMatchObject({ error_code: 'BAD_REQUEST', message: expect.stringMatching(/cannot be deleted/) });
      expect((await get(fileUrl(run, 'metrics.json'))).body.equals(metricsJson)).toBe(true);

      const call = mlflowCaller(server.url, keyA);
      expect((await call('POST', 'runs/update', { run_id: sibling.id, status: 'FINISHED', end_time: T0 + 1000 })).status).toBe(200);
      expect((await put(sibling, 'after-end.txt', Buffer.from('evaluated later'))).status).toBe(200);

      expect((await call('POST', 'runs/delete', { run_id: sibling.id })).status).toBe(200);
      const files = await filesUnder(dir);
      const before = await eventCount(pd);
      const refused = await put(sibling, 'late.txt', Buffer.from('too late'));
      expect(refused.status).toBe(400);
      expect(refused.json().error_code).toBe('INVALID_PARAMETER_VALUE');
      expect(await filesUnder(dir)).toEqual(files);
      expect(await eventCount(pd)).toBe(before);
      // Reading a deleted run's files still works, as MLflow's get_run does for deleted runs.
      expect((await get(fileUrl(sibling, 'after-end.txt'))).status).toBe(200);
    });
  });
}

/**
 * The same calls through the real `pedigree start` (Next.js's route, its
 * request bodies and its abort signal), on an embedded store: files land in
 * the store's own directory, PEDIGREE_MAX_ARTIFACT_BYTES is read from the
 * environment, and what the audit log holds is checked once the server has
 * let go of the store.
 */
describe('MLflow artifacts through pedigree start (embedded store)', () => {
  let home: string;
  let server: PedigreeServer;
  let run: { id: string; uri: string };
  const body = randomBytes(1536 * KiB);

  beforeAll(async () => {
    home = await fs.mkdtemp(path.join(os.tmpdir(), 'pedigree-artifacts-start-'));
    server = await pedigreeServer({ home, auth: 'open', demo: 'none', env: { PEDIGREE_MAX_ARTIFACT_BYTES: '2M' } });
    await server.start();
    const call = mlflowCaller(server.url);
    const experimentId = (await call('POST', 'experiments/create', { name: 'toy-lm' })).body.experiment_id;
    const created = await call('POST', 'runs/create', { experiment_id: experimentId, run_name: 'pretrain', start_time: T0 });
    run = { id: created.body.run.info.run_id, uri: created.body.run.info.artifact_uri };
  });
  afterAll(async () => {
    server?.kill();
    if (home) await fs.rm(home, { recursive: true, force: true });
  });

  it('streams an upload into <store>/artifacts, serves it back, lists it, refuses over the limit and forgets an abandoned upload', async () => {
    const tail = run.uri.slice('mlflow-artifacts:/'.length);
    const url = (p: string) => `/api/2.0/mlflow-artifacts/artifacts/${tail}/${p}`;
    const pieces = Array.from({ length: body.length / (64 * KiB) }, (_, i) => body.subarray(i * 64 * KiB, (i + 1) * 64 * KiB));
    expect((await send(server.url, 'PUT', url('checkpoints/step-100.bin'), { body: pieces, contentLength: body.length })).status).toBe(200);
    const got = await send(server.url, 'GET', url('checkpoints/step-100.bin'));
    expect(got.status).toBe(200);
    expect(got.body.equals(body)).toBe(true);
    // Next.js drops a route's content-length (next/dist/server/send-response.js) and sends the stream chunked; when a length is sent, it is the file's.
    expect(got.headers['content-length'] ?? String(body.length)).toBe(String(body.length));
    const hex = sha256(body).slice('sha256:'.length);
    expect((await fs.stat(path.join(home, 'artifacts', 'sha256', hex.slice(0, 2), hex.slice(2)))).size).toBe(body.length);
    const listed = await send(server.url, 'GET', `/api/2.0/mlflow-artifacts/artifacts?${new URLSearchParams({ path: `${tail}/checkpoints` })}`);
    expect(listed.json()).toEqual({ files: [{ path: 'step-100.bin', is_dir: false, file_size: body.length }] });

    const over = await send(server.url, 'PUT', url('checkpoints/too-big.bin'), { body: Array.from({ length: 6 }, () => randomBytes(512 * KiB)) });
    expect(over.status).toBe(413);
    expect(over.json().error_code).toBe('BAD_REQUEST');

    const tmp = path.join(home, 'artifacts', 'tmp');
    const u = new URL(server.url);
    const req = http.request({ host: u.hostname, port: u.port, method: 'PUT', path: url('abandoned.bin'), headers: { 'content-length': 1536 * KiB } });
    const failed = new Promise((resolve) => req.on('error', resolve));
    req.write(randomBytes(512 * KiB));
    await until('the upload to reach the disk', async () => (await filesUnder(tmp)).length > 0);
    req.destroy();
    await failed;
    await until('the partial file to be removed', async () => (await filesUnder(tmp)).length === 0);
    expect((await send(server.url, 'GET', url('abandoned.bin'))).status).toBe(404);

    expect((await server.stop()).code).toBe(0);
    const pd = await openPedigree({ dir: home });
    try {
      const uploads = (await pd.store.readStream(`run-${run.id}`)).filter((e) => e.type === 'FileUploaded');
      expect(uploads.map((e) => e.data)).toEqual([expect.objectContaining({ path: 'checkpoints/step-100.bin', digest: sha256(body), bytes: body.length })]);
    } finally {
      await pd.close();
    }
    expect((await filesUnder(path.join(home, 'artifacts'))).filter((f) => !f.startsWith('sha256'))).toEqual([]);
  });
});
