/**
 * OpenLineage in: RunEvents from other producers POSTed to /api/v1/lineage
 * (in-process HTTP, both stores). Every example of the official spec that the
 * strict schema accepts is stored as a run of kind `data`, its datasets as
 * artifacts and edges, the raw event on the run's stream; a Pedigree training
 * run on the pipeline's output has the pipeline in its ancestry. Gzip bodies,
 * re-sends stored once, events out of order, parents, failures. Bad events
 * (no runId, a time without offset, not JSON, too large) get 400/413 naming
 * the field and store nothing; keys are checked like every request. Last,
 * `pedigree start` serves the routes: an event in, and out again through the
 * export.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey, datasetDigest, exportOpenLineage, pedigreeRunId, type OpenLineageRunEvent } from '@pedigree/api';
import { nameUuid, type Pedigree } from '@pedigree/lineage';
import { serveInProcess } from './support/inprocess.ts';
import { openLineageValidator, specExamples, specUnavailable, SPEC_DIR } from './support/openlineage.ts';
import { pedigreeServer, type PedigreeServer } from './support/server.ts';
import { backends } from './support/stores.ts';

const specMissing = specUnavailable();
const PRODUCER = 'https://github.com/example/pipeline/tree/1.0.0';
const SCHEMA_URL = 'https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent';
/** The examples the strict schema accepts, as SOURCE.md in the spec folder (SPEC_DIR, beside the repository) lists them. */
const VALID_EXAMPLES = ['examples/client-python-example_full_event.json', 'examples/event_simple.json', 'tests/example_full_event.json'];

type Json = Record<string, unknown>;
const example = (name: string) => JSON.parse(readFileSync(path.join(SPEC_DIR, name), 'utf8')) as Json;

/** A RunEvent of a made-up pipeline. */
function runEvent(eventType: string, runId: string, opts: { time: string; job?: string; inputs?: Json[]; outputs?: Json[]; runFacets?: Json }): Json {
  return {
    eventType,
    eventTime: opts.time,
    producer: PRODUCER,
    schemaURL: SCHEMA_URL,
    run: { runId, ...(opts.runFacets ? { facets: opts.runFacets } : {}) },
    job: { namespace: 'pipelines', name: opts.job ?? 'build-corpus' },
    inputs: opts.inputs ?? [],
    outputs: opts.outputs ?? [],
  };
}
const ds = (name: string, version?: string): Json => ({
  namespace: 's3://corpora',
  name,
  ...(version ? { facets: { version: { _producer: PRODUCER, _schemaURL: 'https://openlineage.io/spec/facets/1-0-1/DatasetVersionDatasetFacet.json', datasetVersion: version } } } : {}),
});
const uuid = (n: number) => `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`;

for (const { backend, skip } of await backends()) {
  describe.skipIf(skip || specMissing)(`OpenLineage in on ${backend.name}`, () => {
    let pd: Pedigree;
    let server: Awaited<ReturnType<typeof serveInProcess>>;
    const validator = specMissing ? null : openLineageValidator();

    const post = (body: string | Uint8Array | Json, opts: { query?: string; headers?: Record<string, string> } = {}) =>
      fetch(`${server.url}/api/v1/lineage${opts.query ?? ''}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...opts.headers },
        body: typeof body === 'string' || body instanceof Uint8Array ? body : JSON.stringify(body),
      });
    const postOk = async (body: Json, query = '?project=pipelines') => {
      const res = await post(body, { query });
      const json = (await res.json()) as { runId: string; projectId: string; created: boolean; duplicate: boolean; events: number; error?: string };
      expect([200, 201], json.error).toContain(res.status);
      return json;
    };
    const eventCount = async () => Number((await pd.database.db.query<{ n: string }>('SELECT count(*) AS n FROM events'))[0]!.n);
    const projectId = async (name: string) => (await pd.lineage.projectByName(name)).id;

    beforeAll(async () => {
      pd = await backend.open();
      server = await serveInProcess(pd, 'open');
    });
    afterAll(async () => {
      await server?.close();
      await backend.dispose();
    });

    it('stores every spec example the strict schema accepts: a run of kind data, its datasets as artifacts and edges, the raw event on its stream', async () => {
      const examples = specExamples();
      const valid = examples.filter((e) => validator!.problems(e.event).length === 0);
      expect(valid.map((e) => e.name)).toEqual(VALID_EXAMPLES);
      for (const { name, event } of valid) {
        const e = event as { eventType: string; eventTime: string; run: { runId: string }; job: { namespace: string; name: string }; inputs?: Json[]; outputs?: Json[] };
        // Open mode, no ?project=: the job's namespace is the project.
        const res = await post(event as Json);
        const body = (await res.json()) as { runId: string; projectId: string; created: boolean };
        expect(res.status, `${name}: ${JSON.stringify(body)}`).toBe(201);
        const project = await pd.lineage.projectByName(e.job.namespace);
        expect(body).toMatchObject({ projectId: project.id, runId: pedigreeRunId(project.id, e.run.runId), created: true });

        const run = await pd.lineage.run(body.runId);
        expect(run).toMatchObject({ kind: 'data', name: e.job.name, status: 'completed', endedAt: new Date(e.eventTime) });
        expect(run.environment).toEqual({ openlineage: { runId: e.run.runId, job: { namespace: e.job.namespace, name: e.job.name }, producer: (event as Json).producer } });
        const stream = await pd.store.readStream(`run-${run.id}`);
        const received = stream.find((s) => s.type === 'LineageEventReceived');
        expect(received?.data).toEqual({ format: 'openlineage', eventType: e.eventType, eventTime: e.eventTime, event });

        const edges = await pd.lineage.edgesOf(run.id);
        const artifacts = new Map((await pd.lineage.artifacts(project.id)).map((a) => [a.id, a]));
        const named = (direction: string) => edges.filter((x) => x.direction === direction).map((x) => [artifacts.get(x.artifactId)?.kind, artifacts.get(x.artifactId)?.name, x.role]);
        const inputs = (e.inputs ?? []).map((d) => ['dataset', `${d.namespace}/${d.name}`, 'input']);
        expect(named('used'), name).toEqual(inputs);
        // A job that writes the very (unversioned) dataset it reads would be its own ancestor: the output edge is left out.
        const outputs = (e.outputs ?? []).map((d) => ['dataset', `${d.namespace}/${d.name}`, 'output']).filter((o) => !inputs.some((i) => i[1] === o[1]));
        expect(named('produced'), name).toEqual(outputs);
      }
      expect(await pd.verify()).toMatchObject({ ok: true });
    });

    it("shows the pipeline in the ancestry of a Pedigree training run that uses its output, matched by namespace + name + version", async () => {
      const pid = await projectId('pipelines').catch(() => pd.tracker.ensureProject('pipelines'));
      const runId = uuid(1);
      await postOk(runEvent('START', runId, { time: '2024-05-01T10:00:00+02:00', inputs: [ds('raw/web', 'v7')] }));
      const done = await postOk(runEvent('COMPLETE', runId, { time: '2024-05-01T11:30:00.5+02:00', inputs: [ds('raw/web', 'v7')], outputs: [ds('clean/web', 'v3')] }));
      expect(done).toMatchObject({ created: false, duplicate: false });
      const run = await pd.lineage.run(done.runId);
      expect(run).toMatchObject({ status: 'completed', startedAt: new Date('2024-05-01T08:00:00Z'), endedAt: new Date('2024-05-01T09:30:00.500Z') });

      // The artifact id is computable from the dataset's identity, so a trainer can name the same dataset.
      const corpusId = nameUuid('artifact', pid, 'dataset', datasetDigest({ namespace: 's3://corpora', name: 'clean/web', version: 'v3' }));
      expect((await pd.lineage.artifact(corpusId)).spec).toMatchObject({ kind: 'dataset', source: 's3://corpora', params: { namespace: 's3://corpora', name: 'clean/web', version: 'v3' } });
      const train = await pd.tracker.createRun({ projectId: pid, name: 'pretrain', kind: 'pretrain', inputs: [{ artifactId: corpusId, role: 'train-set' }], start: true });
      const graph = await pd.lineage.ancestry(train.runId);
      expect(graph.nodes.map((n) => [n.type, n.kind, n.name])).toEqual(
        expect.arrayContaining([
          ['run', 'data', 'build-corpus'],
          ['artifact', 'dataset', 's3://corpora/clean/web'],
          ['artifact', 'dataset', 's3://corpora/raw/web'],
        ]),
      );
      expect(graph.edges).toEqual(expect.arrayContaining([{ from: run.id, to: corpusId, relation: 'produced', role: 'output' }]));

      // Another version of the same table is another artifact.
      const next = await postOk(runEvent('COMPLETE', uuid(2), { time: '2024-05-02T11:00:00Z', inputs: [ds('raw/web', 'v8')], outputs: [ds('clean/web', 'v4')] }));
      const nextInputs = await pd.lineage.edgesOf(next.runId);
      const firstInputs = await pd.lineage.edgesOf(run.id);
      expect(nextInputs.find((x) => x.direction === 'used')!.artifactId).not.toBe(firstInputs.find((x) => x.direction === 'used')!.artifactId);
      // The same version read again is the same artifact.
      const again = await postOk(runEvent('START', uuid(3), { time: '2024-05-03T11:00:00Z', job: 'audit', inputs: [ds('clean/web', 'v3')] }));
      expect((await pd.lineage.edgesOf(again.runId))[0]!.artifactId).toBe(corpusId);
    });

    it('takes a gzip body, and stores a re-sent event once (200, nothing written)', async () => {
      const event = runEvent('START', uuid(10), { time: '2024-06-01T00:00:00Z', job: 'gz', inputs: [ds('raw/gz')] });
      const first = await post(gzipSync(JSON.stringify(event)), { query: '?project=pipelines', headers: { 'content-encoding': 'gzip' } });
      expect(first.status).toBe(201);
      const stored = (await first.json()) as { runId: string };
      expect((await pd.lineage.run(stored.runId)).status).toBe('running');
      const before = await eventCount();
      for (const body of [JSON.stringify(event), gzipSync(JSON.stringify(event))]) {
        const res = await post(body, { query: '?project=pipelines', headers: typeof body === 'string' ? {} : { 'content-encoding': 'gzip' } });
        expect(res.status).toBe(200);
        expect(await res.json()).toMatchObject({ runId: stored.runId, duplicate: true, events: 0 });
      }
      // Re-sent concurrently too: still once.
      const racing = await Promise.all([1, 2, 3].map(() => post(runEvent('COMPLETE', uuid(10), { time: '2024-06-01T01:00:00Z', job: 'gz' }), { query: '?project=pipelines' })));
      expect(racing.map((r) => r.status).sort()).toEqual([200, 200, 201]);
      expect(await eventCount()).toBe(before + 1 + 1); // LineageEventReceived + RunCompleted
      const received = (await pd.store.readStream(`run-${stored.runId}`)).filter((s) => s.type === 'LineageEventReceived');
      expect(received).toHaveLength(2);
    });

    it('takes events out of order: COMPLETE first creates the run, a later START is recorded and changes nothing', async () => {
      const runId = uuid(20);
      const complete = await postOk(runEvent('COMPLETE', runId, { time: '2024-07-01T12:00:00Z', job: 'late-start', outputs: [ds('out/late')] }));
      expect(complete.created).toBe(true);
      const start = await postOk(runEvent('START', runId, { time: '2024-07-01T11:00:00Z', job: 'late-start', inputs: [ds('in/late')] }));
      expect(start).toMatchObject({ created: false, duplicate: false });
      const run = await pd.lineage.run(complete.runId);
      expect(run).toMatchObject({ status: 'completed', endedAt: new Date('2024-07-01T12:00:00Z') });
      const types = (await pd.store.readStream(`run-${run.id}`)).map((s) => s.type);
      expect(types).toEqual(['RunCreated', 'LineageEventReceived', 'OutputProduced', 'RunCompleted', 'LineageEventReceived', 'InputUsed']);
      // RUNNING after START does not restart; a START older than the recorded start moves it back.
      const r2 = uuid(21);
      await postOk(runEvent('RUNNING', r2, { time: '2024-07-02T10:30:00Z', job: 'stream' }));
      await postOk(runEvent('START', r2, { time: '2024-07-02T10:00:00Z', job: 'stream' }));
      await postOk(runEvent('RUNNING', r2, { time: '2024-07-02T11:00:00Z', job: 'stream' }));
      const streaming = await pd.lineage.run(pedigreeRunId(await projectId('pipelines'), r2));
      expect(streaming).toMatchObject({ status: 'running', startedAt: new Date('2024-07-02T10:00:00Z') });
    });

    it('fails runs on FAIL (with the errorMessage facet) and ABORT (killed); OTHER only records', async () => {
      const errorMessage = { _producer: PRODUCER, _schemaURL: 'https://openlineage.io/spec/facets/1-0-1/ErrorMessageRunFacet.json', message: 'Table not found: raw.clicks', programmingLanguage: 'PYTHON' };
      const failed = await postOk(runEvent('FAIL', uuid(30), { time: '2024-08-01T00:00:00Z', job: 'clicks', runFacets: { errorMessage } }));
      expect(await pd.lineage.run(failed.runId)).toMatchObject({ status: 'failed', error: 'Table not found: raw.clicks', killed: false });
      const aborted = await postOk(runEvent('ABORT', uuid(31), { time: '2024-08-01T00:00:00Z', job: 'clicks' }));
      expect(await pd.lineage.run(aborted.runId)).toMatchObject({ status: 'failed', killed: true, error: expect.stringContaining('aborted') });
      const other = await postOk(runEvent('OTHER', uuid(32), { time: '2024-08-01T00:00:00Z', job: 'clicks' }));
      expect((await pd.lineage.run(other.runId)).status).toBe('created');
    });

    it('makes a run whose parent facet names a known run a stage after it, also when the parent reports later', async () => {
      const parentFacet = (runId: string) => ({ parent: { _producer: PRODUCER, _schemaURL: 'https://openlineage.io/spec/facets/1-2-0/ParentRunFacet.json', run: { runId }, job: { namespace: 'pipelines', name: 'dag' } } });
      const dag = await postOk(runEvent('START', uuid(40), { time: '2024-09-01T00:00:00Z', job: 'dag' }));
      const task = await postOk(runEvent('START', uuid(41), { time: '2024-09-01T00:01:00Z', job: 'dag.task', runFacets: parentFacet(uuid(40)) }));
      expect((await pd.lineage.run(task.runId)).forkedFromRunId).toBe(dag.runId);
      // The child first: linked once it reports again after its parent.
      const orphan = await postOk(runEvent('START', uuid(43), { time: '2024-09-02T00:01:00Z', job: 'dag.task', runFacets: parentFacet(uuid(42)) }));
      expect((await pd.lineage.run(orphan.runId)).forkedFromRunId).toBeNull();
      const lateParent = await postOk(runEvent('START', uuid(42), { time: '2024-09-02T00:00:00Z', job: 'dag' }));
      await postOk(runEvent('COMPLETE', uuid(43), { time: '2024-09-02T00:02:00Z', job: 'dag.task', runFacets: parentFacet(uuid(42)) }));
      expect((await pd.lineage.run(orphan.runId)).forkedFromRunId).toBe(lateParent.runId);
      // A Pedigree run named by its own id (as the export writes parents) is a parent too.
      const pid = await projectId('pipelines');
      const native = await pd.tracker.createRun({ projectId: pid, name: 'orchestrator', kind: 'custom', start: true });
      const child = await postOk(runEvent('START', uuid(44), { time: '2024-09-03T00:00:00Z', job: 'step', runFacets: parentFacet(native.runId) }));
      expect((await pd.lineage.run(child.runId)).forkedFromRunId).toBe(native.runId);
    });

    it('refuses bad events with 400 naming the field (413 when too large), storing nothing', async () => {
      const before = await eventCount();
      const good = runEvent('START', uuid(50), { time: '2024-10-01T00:00:00Z', inputs: [ds('a'), ds('b')] });
      const cases: [string, string | Uint8Array | Json, number, string | null, Record<string, string>?][] = [
        ['no runId (the spec example)', example('examples/event_no_run_id.json'), 400, 'run.runId'],
        ['a time without offset', { ...good, eventTime: '2021-11-03T10:53:52.427343' }, 400, 'eventTime'],
        ['the serialiser example with a naive time', example('examples/client-python-serde_example_run_event.json'), 400, 'eventTime'],
        ['an impossible date', { ...good, eventTime: '2024-02-30T00:00:00Z' }, 400, 'eventTime'],
        ['a runId that is no UUID', { ...good, run: { runId: 'run-1' } }, 400, 'run.runId'],
        ['an unknown eventType', { ...good, eventType: 'DONE' }, 400, 'eventType'],
        ['a producer that is no URI', { ...good, producer: 'my pipeline' }, 400, 'producer'],
        ['no schemaURL', { ...good, schemaURL: undefined }, 400, 'schemaURL'],
        ['an empty job name', { ...good, job: { namespace: 'pipelines', name: '' } }, 400, 'job.name'],
        ['a dataset without a name', { ...good, inputs: [ds('a'), { namespace: 's3://x' }] }, 400, 'inputs[1].name'],
        ['facets that are not objects', { ...good, run: { runId: uuid(50), facets: { parent: 'x' } } }, 400, 'run.facets.parent'],
        ['a NUL in a facet', { ...good, job: { namespace: 'pipelines', name: 'j', facets: { documentation: { _producer: PRODUCER, _schemaURL: SCHEMA_URL, description: 'a\u0000b' } } } }, 400, 'job.facets.documentation.description'],
        ['a dataset event, not a run event', { eventTime: '2024-10-01T00:00:00Z', producer: PRODUCER, schemaURL: SCHEMA_URL, dataset: { namespace: 'n', name: 'd' } }, 400, 'run'],
        ['a JSON array', '[]', 400, null],
        ['not JSON', '{"eventType": "START",', 400, null],
        ['broken gzip', 'not gzip at all', 400, null, { 'content-encoding': 'gzip' }],
        ['an unknown encoding', JSON.stringify(good), 415, null, { 'content-encoding': 'br' }],
        ['over 16 MiB', JSON.stringify({ ...good, padding: 'x'.repeat(17 * 1024 * 1024) }), 413, null],
        ['over 16 MiB once gunzipped', gzipSync(JSON.stringify({ ...good, padding: ' '.repeat(20 * 1024 * 1024) })), 413, null, { 'content-encoding': 'gzip' }],
      ];
      for (const [what, body, status, field, headers] of cases) {
        const res = await post(body, { query: '?project=pipelines', headers });
        const answer = (await res.json()) as { error: string; field: string | null };
        expect([res.status, answer.field], `${what}: ${answer.error}`).toEqual([status, field]);
        expect(answer.error.length, what).toBeGreaterThan(10);
      }
      expect(await eventCount()).toBe(before);
      expect((await post(good, { query: '?project=pipelines' })).status).toBe(201); // the same event, well formed, is taken
    });

    it('exports an ingested run back as it came: its runId, job and datasets', async () => {
      const events: OpenLineageRunEvent[] = [];
      for await (const e of exportOpenLineage(pd, { projects: [await projectId('pipelines')] })) events.push(e);
      for (const e of events) expect(validator!.problems(e)).toEqual([]);
      const corpus = events.filter((e) => e.run.runId === uuid(1));
      expect(corpus.map((e) => [e.eventType, e.eventTime, e.job.namespace, e.job.name])).toEqual([
        ['START', '2024-05-01T08:00:00.000Z', 'pipelines', 'build-corpus'],
        ['COMPLETE', '2024-05-01T09:30:00.500Z', 'pipelines', 'build-corpus'],
      ]);
      expect(corpus[1]!.outputs.map((d) => [d.namespace, d.name, (d.facets?.version as { datasetVersion?: string } | undefined)?.datasetVersion])).toEqual([['s3://corpora', 'clean/web', 'v3']]);
      const training = events.find((e) => e.job.name === 'pretrain')!;
      expect(training.inputs.map((d) => [d.namespace, d.name])).toEqual([['s3://corpora', 'clean/web']]);
      // The task's parent is the dag's OpenLineage run.
      expect(events.find((e) => e.run.runId === uuid(41))!.run.facets.parent).toMatchObject({ run: { runId: uuid(40) }, job: { namespace: 'pipelines', name: 'dag' } });
    });

    it('checks keys like every request: none is 401, another project 403; a key stores into its project', async () => {
      await server.close();
      server = await serveInProcess(pd, 'keys');
      const mine = await pd.tracker.createProject({ name: 'keyed' });
      const key = (await createApiKey(pd.database.db, mine.projectId, 'producer')).key;
      const otherKey = (await createApiKey(pd.database.db, await projectId('pipelines'), 'other')).key;
      const event = runEvent('START', uuid(60), { time: '2024-11-01T00:00:00Z' });
      const before = await eventCount();
      const anonymous = await post(event);
      expect(anonymous.status).toBe(401);
      expect(await anonymous.json()).toMatchObject({ field: null, error: expect.stringContaining('API key') });
      expect((await post(event, { headers: { authorization: 'Bearer pdg_forged' } })).status).toBe(401);
      expect((await post(event, { query: '?project=keyed', headers: { authorization: `Bearer ${otherKey}` } })).status).toBe(403);
      expect((await post(event, { query: '?project=brand-new', headers: { authorization: `Bearer ${key}` } })).status).toBe(403);
      expect(await eventCount()).toBe(before);
      const res = await post(event, { headers: { authorization: `Bearer ${key}` } });
      expect(res.status).toBe(201);
      expect(await res.json()).toMatchObject({ projectId: mine.projectId, runId: pedigreeRunId(mine.projectId, uuid(60)) });
    });
  });
}

describe.skipIf(specMissing)('OpenLineage through pedigree start', () => {
  let home: string;
  let server: PedigreeServer;
  beforeAll(async () => {
    home = mkdtempSync(path.join(os.tmpdir(), 'pedigree-ol-'));
    server = await pedigreeServer({ home, demo: 'none', auth: 'open' });
    await server.start();
  }, 120_000);
  afterAll(async () => {
    if (server?.pid) await server.stop();
    server?.kill();
    rmSync(home, { recursive: true, force: true });
  });

  it('mounts POST /api/v1/lineage and GET /api/v1/lineage/export: an event in (gzip), the same run out', async () => {
    const event = example('examples/event_simple.json');
    const res = await fetch(`${server.url}/api/v1/lineage?project=served`, { method: 'POST', headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' }, body: gzipSync(JSON.stringify(event)) });
    expect(res.status, await res.clone().text()).toBe(201);
    const bad = await fetch(`${server.url}/api/v1/lineage?project=served`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...event, run: {} }) });
    expect([bad.status, ((await bad.json()) as { field: string }).field]).toEqual([400, 'run.runId']);
    const exported = await fetch(`${server.url}/api/v1/lineage/export?project=served`);
    expect(exported.status).toBe(200);
    const lines = (await exported.text()).split('\n').filter(Boolean).map((l) => JSON.parse(l) as OpenLineageRunEvent);
    expect(lines.map((e) => [e.eventType, e.run.runId, e.job.name, e.inputs.length, e.outputs.length])).toEqual([
      ['START', '41fb5137-f0fd-4ee5-ba5c-56f8571d1bd7', 'myjob', 2, 0],
      ['COMPLETE', '41fb5137-f0fd-4ee5-ba5c-56f8571d1bd7', 'myjob', 2, 1],
    ]);
    const validator = openLineageValidator();
    for (const e of lines) expect(validator.problems(e)).toEqual([]);
  });
});
