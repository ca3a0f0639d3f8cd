/**
 * MLflow's tracking REST API, called exactly as MLflow's Python client calls
 * it (field names, GET query strings, page tokens, error codes), on both
 * stores. How we tried to break it: a param logged again with another value;
 * the same log-batch sent twice and twice at once (a client retry racing its
 * first attempt); malformed JSON, unknown endpoints, runs and fields, a bad
 * filter, a negative step, a write to a deleted run — each answered with
 * MLflow's error code and leaving the event log as it was; another project's
 * key and no key at all.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey } from '@pedigree/api';
import type { Pedigree } from '@pedigree/lineage';
import { serveInProcess } from './support/inprocess.ts';
import { mlflowCaller } from './support/mlflow.ts';
import { backends } from './support/stores.ts';

const eventCount = async (pd: Pedigree) => Number((await pd.database.db.query<{ n: string }>('SELECT count(*) AS n FROM events'))[0]!.n);

const T0 = 1_764_000_000_000;
const loss = (step: number) => 2 / Math.sqrt(step + 1);

for (const { backend, skip } of await backends()) {
  describe.skipIf(skip)(`MLflow tracking API (${backend.name})`, () => {
    let pd: Pedigree;
    let server: Awaited<ReturnType<typeof serveInProcess>>;
    let call: ReturnType<typeof mlflowCaller>;
    let experimentId: string;
    let parentId: string;
    let childId: string;

    beforeAll(async () => {
      pd = await backend.open();
      server = await serveInProcess(pd, 'open');
      call = mlflowCaller(server.url);
    });
    afterAll(async () => {
      await server?.close();
      await backend.dispose();
    });

    it('creates an experiment the way set_experiment does: get-by-name answers 404, then create; a second create is RESOURCE_ALREADY_EXISTS', async () => {
      const missing = await call('GET', 'experiments/get-by-name', { experiment_name: 'toy-lm' });
      expect(missing.status).toBe(404);
      expect(missing.body.error_code).toBe('RESOURCE_DOES_NOT_EXIST');
      const created = await call('POST', 'experiments/create', { name: 'toy-lm', tags: [{ key: 'team', value: 'pretraining' }] });
      expect(created.status).toBe(200);
      experimentId = created.body.experiment_id;
      const again = await call('POST', 'experiments/create', { name: 'toy-lm' });
      expect(again).toMatchObject({ status: 400, body: { error_code: 'RESOURCE_ALREADY_EXISTS' } });
      const got = await call('GET', 'experiments/get-by-name', { experiment_name: 'toy-lm' });
      expect(got.body.experiment).toMatchObject({ experiment_id: experimentId, name: 'toy-lm', lifecycle_stage: 'active', artifact_location: `mlflow-artifacts:/${experimentId}` });
      expect(got.body.experiment.tags).toEqual([{ key: 'team', value: 'pretraining' }]);
      const byId = await call('GET', 'experiments/get', { experiment_id: experimentId });
      expect(byId.body.experiment.name).toBe('toy-lm');
    });

    it('records a training script: a run with the tags the client always sends, params, thousands of metric steps in log-batch requests of 1,000, a nested run, the end', async () => {
      const started = await call('POST', 'runs/create', {
        experiment_id: experimentId,
        start_time: T0,
        run_name: 'pretrain',
        tags: [
          { key: 'mlflow.user', value: 'ada' },
          { key: 'mlflow.source.name', value: 'train.py' },
          { key: 'mlflow.source.type', value: 'LOCAL' },
          { key: 'mlflow.source.git.commit', value: 'abc123' },
          { key: 'mlflow.runName', value: 'pretrain' },
        ],
      });
      expect(started.status).toBe(200);
      const info = started.body.run.info;
      parentId = info.run_id;
      expect(info).toMatchObject({ run_name: 'pretrain', experiment_id: experimentId, status: 'RUNNING', start_time: T0, user_id: 'ada', lifecycle_stage: 'active' });
      expect(info.artifact_uri).toBe(`mlflow-artifacts:/${experimentId}/${parentId}/artifacts`);

      const params = await call('POST', 'runs/log-batch', { run_id: parentId, params: [{ key: 'lr', value: '0.001' }, { key: 'batch_size', value: '32' }], metrics: [], tags: [] });
      expect(params.status).toBe(200);
      for (let start = 0; start < 3000; start += 1000) {
        const metrics = Array.from({ length: 1000 }, (_, i) => ({ key: 'loss', value: loss(start + i), timestamp: T0 + start + i, step: start + i }));
        const r = await call('POST', 'runs/log-batch', { run_id: parentId, metrics, params: [], tags: [] });
        expect(r.status).toBe(200);
      }
      const one = await call('POST', 'runs/log-metric', { run_id: parentId, run_uuid: parentId, key: 'eval_acc', value: 0.75, timestamp: T0 + 5000, step: 2999 });
      expect(one.status).toBe(200);
      expect((await call('POST', 'runs/log-parameter', { run_id: parentId, key: 'lr', value: '0.001' })).status).toBe(200);
      const changed = await call('POST', 'runs/log-parameter', { run_id: parentId, key: 'lr', value: '0.002' });
      expect(changed).toMatchObject({ status: 400, body: { error_code: 'INVALID_PARAMETER_VALUE' } });
      expect(changed.body.message).toMatch(/lr/);

      const child = await call('POST', 'runs/create', {
        experiment_id: experimentId,
        start_time: T0 + 10_000,
        tags: [
          { key: 'mlflow.user', value: 'ada' },
          { key: 'mlflow.parentRunId', value: parentId },
          { key: 'mlflow.runName', value: 'midtrain' },
        ],
      });
      childId = child.body.run.info.run_id;
      expect(child.body.run.info.run_name).toBe('midtrain');
      await call('POST', 'runs/log-batch', { run_id: childId, params: [{ key: 'lr', value: '0.0001' }], metrics: [{ key: 'loss', value: 0.4, timestamp: T0 + 11_000, step: 0 }] });
      expect((await call('POST', 'runs/update', { run_id: childId, run_uuid: childId, status: 'FAILED', end_time: T0 + 12_000 })).body.run_info).toMatchObject({ status: 'FAILED', end_time: T0 + 12_000 });

      expect((await call('POST', 'runs/set-tag', { run_id: parentId, run_uuid: parentId, key: 'phase', value: 'warmup' })).status).toBe(200);
      expect((await call('POST', 'runs/set-tag', { run_id: parentId, key: 'phase', value: 'done' })).status).toBe(200);
      expect((await call('POST', 'runs/delete-tag', { run_id: parentId, key: 'phase' })).status).toBe(200);
      expect(await call('POST', 'runs/delete-tag', { run_id: parentId, key: 'phase' })).toMatchObject({ status: 404, body: { error_code: 'RESOURCE_DOES_NOT_EXIST' } });

      const ended = await call('POST', 'runs/update', { run_id: parentId, run_uuid: parentId, status: 'FINISHED', end_time: T0 + 9_000 });
      expect(ended.body.run_info).toMatchObject({ status: 'FINISHED', end_time: T0 + 9_000, start_time: T0 });
    });

    it('reads the run back as runs/get does: latest metric per key (highest step), params, tags with mlflow.runName mirrored', async () => {
      const { body, status } = await call('GET', 'runs/get', { run_id: parentId });
      expect(status).toBe(200);
      const metrics = Object.fromEntries(body.run.data.metrics.map((m: any) => [m.key, m]));
      expect(metrics.loss).toEqual({ key: 'loss', value: loss(2999), timestamp: T0 + 2999, step: 2999 });
      expect(metrics.eval_acc).toEqual({ key: 'eval_acc', value: 0.75, timestamp: T0 + 5000, step: 2999 });
      expect(body.run.data.params).toEqual(expect.arrayContaining([{ key: 'lr', value: '0.001' }, { key: 'batch_size', value: '32' }]));
      const tags = Object.fromEntries(body.run.data.tags.map((t: any) => [t.key, t.value]));
      expect(tags).toMatchObject({ 'mlflow.runName': 'pretrain', 'mlflow.user': 'ada', 'mlflow.source.name': 'train.py' });
      expect(tags.phase).toBeUndefined();
      // The Pedigree side: the same run, with params as hyperparameters and the nested run as the next stage.
      const run = await pd.lineage.run(parentId);
      expect(run).toMatchObject({ name: 'pretrain', status: 'completed', codeVersion: 'abc123', hyperparameters: { lr: '0.001', batch_size: '32' } });
      expect((await pd.lineage.run(childId)).forkedFromRunId).toBe(parentId);
      const graph = await pd.lineage.ancestry(childId);
      expect(graph.edges).toContainEqual({ from: parentId, to: childId, relation: 'parent', role: 'parent' });
      expect(graph.nodes.map((n) => n.id)).toContain(parentId);
      const diff = await pd.lineage.diff(parentId, childId, { showAll: true });
      expect(diff.commonAncestor).toMatchObject({ type: 'run', id: parentId });
      expect(diff.stages.map((st) => st.b?.runId ?? null)).toContain(childId);
    });

    it('returns the whole history without max_results, and pages of it with next_page_token', async () => {
      const all = await call('GET', 'metrics/get-history', { run_id: parentId, metric_key: 'loss' });
      expect(all.body.metrics).toHaveLength(3000);
      expect(all.body.next_page_token).toBeUndefined();
      expect(all.body.metrics[1234]).toEqual({ key: 'loss', value: loss(1234), timestamp: T0 + 1234, step: 1234 });
      const paged: any[] = [];
      let token: string | undefined;
      let pages = 0;
      do {
        const r = await call('GET', 'metrics/get-history', { run_id: parentId, metric_key: 'loss', max_results: 1000, page_token: token });
        expect(r.status).toBe(200);
        paged.push(...r.body.metrics);
        token = r.body.next_page_token;
        pages++;
      } while (token);
      expect(pages).toBe(3);
      expect(paged).toEqual(all.body.metrics);
      expect((await call('GET', 'metrics/get-history', { run_id: parentId, metric_key: 'never-logged' })).body).toEqual({ metrics: [] });
    });

    it('searches runs with the filters clients send, orders them, and pages with opaque tokens', async () => {
      const ids = (r: { body: any }) => (r.body.runs ?? []).map((x: any) => x.info.run_id);
      const search = (body: Record<string, unknown>) => call('POST', 'runs/search', { experiment_ids: [experimentId], ...body });
      expect(ids(await search({ filter: "params.lr = '0.001'" }))).toEqual([parentId]);
      expect(ids(await search({ filter: 'metrics.loss > 0.1' }))).toEqual([childId]);
      expect(ids(await search({ filter: `tags.mlflow.parentRunId = '${parentId}'` }))).toEqual([childId]);
      expect(ids(await search({ filter: `tags.\`mlflow.parentRunId\` = '${parentId}'` }))).toEqual([childId]);
      expect(ids(await search({ filter: "attributes.status = 'FAILED'" }))).toEqual([childId]);
      expect(ids(await search({ filter: "attributes.run_name = 'pretrain' and params.batch_size = '32'" }))).toEqual([parentId]);
      expect(ids(await search({ filter: "attributes.run_name LIKE 'mid%'" }))).toEqual([childId]);
      expect(ids(await search({}))).toEqual([childId, parentId]); // start_time DESC by default
      expect(ids(await search({ order_by: ['metrics.loss ASC'] }))).toEqual([parentId, childId]);
      const first = await search({ max_results: 1 });
      expect(ids(first)).toEqual([childId]);
      expect(typeof first.body.next_page_token).toBe('string');
      const second = await search({ max_results: 1, page_token: first.body.next_page_token });
      expect(ids(second)).toEqual([parentId]);
      expect(second.body.next_page_token).toBeUndefined();
      const bad = await search({ filter: 'metrics.loss <' });
      expect(bad).toMatchObject({ status: 400, body: { error_code: 'INVALID_PARAMETER_VALUE' } });
      expect((await search({ filter: "params.lr = '1' or params.lr = '2'" })).status).toBe(400);
    });

    it('deletes and restores runs and experiments as events: hidden from default searches, never removed', async () => {
      expect((await call('POST', 'runs/delete', { run_id: childId })).status).toBe(200);
      const ids = async (view: string) => (await call('POST', 'runs/search', { experiment_ids: [experimentId], run_view_type: view })).body.runs?.map((r: any) => r.info.run_id) ?? [];
      expect(await ids('ACTIVE_ONLY')).toEqual([parentId]);
      expect(await ids('DELETED_ONLY')).toEqual([childId]);
      expect((await ids('ALL')).sort()).toEqual([childId, parentId].sort());
      expect((await call('GET', 'runs/get', { run_id: childId })).body.run.info.lifecycle_stage).toBe('deleted');
      const before = await eventCount(pd);
      const refused = await call('POST', 'runs/log-metric', { run_id: childId, key: 'loss', value: 1, timestamp: T0, step: 1 });
      expect(refused).toMatchObject({ status: 400, body: { error_code: 'INVALID_PARAMETER_VALUE' } });
      expect(await eventCount(pd)).toBe(before);
      expect((await call('POST', 'runs/restore', { run_id: childId })).status).toBe(200);
      expect(await ids('ACTIVE_ONLY')).toHaveLength(2);
      const types = (await pd.database.db.query<{ type: string }>('SELECT type FROM events WHERE stream_id = $1 ORDER BY stream_version', [`run-${childId}`])).map((r) => r.type);
      expect(types).toEqual(expect.arrayContaining(['RunDeleted', 'RunRestored']));

      const other = (await call('POST', 'experiments/create', { name: 'scratch' })).body.experiment_id;
      expect((await call('POST', 'experiments/update', { experiment_id: other, new_name: 'scratch-2' })).status).toBe(200);
      expect((await call('POST', 'experiments/update', { experiment_id: other, new_name: 'toy-lm' })).body.error_code).toBe('RESOURCE_ALREADY_EXISTS');
      expect((await call('POST', 'experiments/delete', { experiment_id: other })).status).toBe(200);
      const names = async (body: Record<string, unknown>) => (await call('POST', 'experiments/search', body)).body.experiments?.map((e: any) => e.name) ?? [];
      expect(await names({ filter: "name LIKE 'scratch%'" })).toEqual([]);
      expect(await names({ filter: "name LIKE 'scratch%'", view_type: 'DELETED_ONLY' })).toEqual(['scratch-2']);
      expect((await call('POST', 'runs/create', { experiment_id: other, start_time: T0 })).body.error_code).toBe('INVALID_PARAMETER_VALUE');
      expect((await call('POST', 'experiments/restore', { experiment_id: other })).status).toBe(200);
      expect(await names({ filter: "name = 'scratch-2'" })).toEqual(['scratch-2']);
      const page1 = await call('POST', 'experiments/search', { max_results: 1, order_by: ['name ASC'] });
      expect(page1.body.experiments).toHaveLength(1);
      const page2 = await call('POST', 'experiments/search', { max_results: 1, order_by: ['name ASC'], page_token: page1.body.next_page_token });
      expect(page2.body.experiments[0].name > page1.body.experiments[0].name).toBe(true);
    });

    it('stores a retried log-batch once, even when the retry races the first attempt', async () => {
      const run = (await call('POST', 'runs/create', { experiment_id: experimentId, start_time: T0 + 20_000, run_name: 'retry' })).body.run.info.run_id;
      const body = { run_id: run, metrics: Array.from({ length: 500 }, (_, i) => ({ key: 'x', value: i, timestamp: T0 + i, step: i })), params: [{ key: 'seed', value: '1' }], tags: [{ key: 't', value: 'v' }] };
      const before = await eventCount(pd);
      const first = await call('POST', 'runs/log-batch', body);
      expect(first.status).toBe(200);
      const written = (await eventCount(pd)) - before;
      const [a, b] = await Promise.all([call('POST', 'runs/log-batch', body), call('POST', 'runs/log-batch', body)]);
      expect([a.status, b.status]).toEqual([200, 200]);
      expect((await eventCount(pd)) - before).toBe(written);
      expect((await call('GET', 'metrics/get-history', { run_id: run, metric_key: 'x' })).body.metrics).toHaveLength(500);
      // A retried runs/create returns the same run.
      const create = { experiment_id: experimentId, start_time: T0 + 30_000, run_name: 'once' };
      const c1 = await call('POST', 'runs/create', create);
      const c2 = await call('POST', 'runs/create', create);
      expect(c2.body.run.info.run_id).toBe(c1.body.run.info.run_id);
    });

    it('answers bad input with MLflow error codes and changes nothing', async () => {
      const before = await eventCount(pd);
      expect(await call('POST', 'runs/log-batch', {}, { raw: '{"run_id": ' })).toMatchObject({ status: 400, body: { error_code: 'MALFORMED_REQUEST' } });
      expect(await call('POST', 'runs/nope', {})).toMatchObject({ status: 404, body: { error_code: 'ENDPOINT_NOT_FOUND' } });
      expect((await call('GET', 'runs/log-batch', {})).status).toBe(405);
      expect(await call('GET', 'runs/get', {})).toMatchObject({ status: 400, body: { error_code: 'INVALID_PARAMETER_VALUE' } });
      expect(await call('GET', 'runs/get', { run_id: '00000000-0000-4000-8000-000000000000' })).toMatchObject({ status: 404, body: { error_code: 'RESOURCE_DOES_NOT_EXIST' } });
      expect(await call('GET', 'runs/get', { run_id: 'not-a-run' })).toMatchObject({ status: 404, body: { error_code: 'RESOURCE_DOES_NOT_EXIST' } });
      expect(await call('POST', 'runs/log-metric', { run_id: parentId, key: 'loss', value: 'abc', timestamp: T0, step: 1 })).toMatchObject({ status: 400, body: { error_code: 'INVALID_PARAMETER_VALUE' } });
      expect(await call('POST', 'runs/log-batch', { run_id: parentId, metrics: [{ key: 'loss', value: 1, timestamp: T0, step: -1 }] })).toMatchObject({ status: 400 });
      expect(await call('POST', 'runs/log-batch', { run_id: parentId, metrics: [{ key: 'bad\u0000key', value: 1, timestamp: T0, step: 1 }] })).toMatchObject({ status: 400 });
      expect(await call('POST', 'runs/log-batch', { run_id: parentId, params: [{ key: 'p', value: 'x'.repeat(6001) }] })).toMatchObject({ status: 400 });
      expect(await call('POST', 'runs/update', { run_id: parentId, status: 'DONE' })).toMatchObject({ status: 400 });
      expect(await call('POST', 'runs/search', { experiment_ids: [experimentId], max_results: 50_001 })).toMatchObject({ status: 400 });
      expect(await call('POST', 'runs/search', { experiment_ids: [experimentId], page_token: 'garbage' })).toMatchObject({ status: 400 });
      expect(await call('GET', 'experiments/get', { experiment_id: '12345' })).toMatchObject({ status: 404, body: { error_code: 'RESOURCE_DOES_NOT_EXIST' } });
      const huge = JSON.stringify({ run_id: parentId, params: [{ key: 'big', value: 'x'.repeat(17 * 1024 * 1024) }] });
      expect(await call('POST', 'runs/log-batch', {}, { raw: huge })).toMatchObject({ status: 413, body: { error_code: 'BAD_REQUEST' } });
      expect(await eventCount(pd)).toBe(before);
    });

    it('keeps NaN and infinities as MLflow writes them, and logs after a run ended (as MLflow allows)', async () => {
      const r = await call('POST', 'runs/log-batch', {
        run_id: parentId,
        metrics: [
          { key: 'odd', value: 'NaN', timestamp: T0, step: 0 },
          { key: 'odd', value: 'Infinity', timestamp: T0, step: 1 },
          { key: 'odd', value: '-Infinity', timestamp: T0, step: 2 },
        ],
      });
      expect(r.status).toBe(200);
      const h = await call('GET', 'metrics/get-history', { run_id: parentId, metric_key: 'odd' });
      expect(h.body.metrics.map((m: any) => m.value)).toEqual(['NaN', 'Infinity', '-Infinity']);
    });

    it('records log-inputs datasets as dataset artifacts the run used', async () => {
      const dataset = { name: 'wiki-2k', digest: 'a1b2c3d4', source_type: 'http', source: '{"url": "https://example.org/wiki.parquet"}', schema: '{"mlflow_colspec": []}' };
      const r = await call('POST', 'runs/log-inputs', { run_id: parentId, datasets: [{ tags: [{ key: 'mlflow.data.context', value: 'training' }], dataset }] });
      expect(r.status).toBe(200);
      expect((await call('POST', 'runs/log-inputs', { run_id: parentId, datasets: [{ tags: [{ key: 'mlflow.data.context', value: 'training' }], dataset }] })).status).toBe(200);
      const got = await call('GET', 'runs/get', { run_id: parentId });
      expect(got.body.run.inputs.dataset_inputs).toEqual([{ tags: [{ key: 'mlflow.data.context', value: 'training' }], dataset }]);
      const graph = await pd.lineage.ancestry(parentId);
      expect(graph.nodes.find((n) => n.type === 'artifact')).toMatchObject({ kind: 'dataset', name: 'wiki-2k' });
      expect((await call('POST', 'runs/search', { experiment_ids: [experimentId], filter: "datasets.name = 'wiki-2k'" })).body.runs.map((x: any) => x.info.run_id)).toEqual([parentId]);
    });

    it('uses the Default experiment (id 0) when the client names none', async () => {
      const r = await call('POST', 'runs/create', { experiment_id: '0', start_time: T0 });
      expect(r.status).toBe(200);
      const exp = await call('GET', 'experiments/get', { experiment_id: '0' });
      expect(exp.body.experiment.name).toBe('Default');
      expect(r.body.run.info.experiment_id).toBe(exp.body.experiment.experiment_id);
    });
  });
}

for (const { backend, skip } of (await backends()).slice(0, 1)) {
  describe.skipIf(skip)(`MLflow tracking API with API keys (${backend.name})`, () => {
    let pd: Pedigree;
    let server: Awaited<ReturnType<typeof serveInProcess>>;
    let keyA: string;
    let keyB: string;
    let runB: string;

    beforeAll(async () => {
      pd = await backend.open();
      const a = await pd.tracker.createProject({ name: 'team-a' });
      const b = await pd.tracker.createProject({ name: 'team-b' });
      keyA = (await createApiKey(pd.database.db, a.projectId, 'a')).key;
      keyB = (await createApiKey(pd.database.db, b.projectId, 'b')).key;
      server = await serveInProcess(pd, 'keys');
      const asB = mlflowCaller(server.url, keyB);
      runB = (await asB('POST', 'runs/create', { experiment_id: b.projectId, start_time: T0 })).body.run.info.run_id;
    });
    afterAll(async () => {
      await server?.close();
      await backend.dispose();
    });

    it('needs a key: none → 401 UNAUTHENTICATED', async () => {
      const r = await mlflowCaller(server.url)('GET', 'experiments/get-by-name', { experiment_name: 'team-a' });
      expect(r).toMatchObject({ status: 401, body: { error_code: 'UNAUTHENTICATED' } });
    });

    it("refuses another project's data with 403 PERMISSION_DENIED and stores nothing", async () => {
      const asA = mlflowCaller(server.url, keyA);
      const before = await eventCount(pd);
      expect(await asA('GET', 'runs/get', { run_id: runB })).toMatchObject({ status: 403, body: { error_code: 'PERMISSION_DENIED' } });
      expect(await asA('POST', 'runs/log-batch', { run_id: runB, metrics: [{ key: 'x', value: 1, timestamp: T0, step: 0 }] })).toMatchObject({ status: 403, body: { error_code: 'PERMISSION_DENIED' } });
      expect(await asA('GET', 'experiments/get-by-name', { experiment_name: 'team-b' })).toMatchObject({ status: 403, body: { error_code: 'PERMISSION_DENIED' } });
      expect(await asA('POST', 'experiments/create', { name: 'new-one' })).toMatchObject({ status: 403, body: { error_code: 'PERMISSION_DENIED' } });
      expect(await eventCount(pd)).toBe(before);
      const names = (await asA('POST', 'experiments/search', {})).body.experiments.map((e: any) => e.name);
      expect(names).toEqual(['team-a']);
    });

    it("logs with the key's project as the default experiment, by Bearer or by Basic auth", async () => {
      const asA = mlflowCaller(server.url, keyA);
      const r = await asA('POST', 'runs/create', { start_time: T0 });
      expect(r.status).toBe(200);
      const run = r.body.run.info.run_id;
      const basic = await fetch(`${server.url}/api/2.0/mlflow/runs/get?run_id=${run}`, { headers: { authorization: `Basic ${Buffer.from(`ada:${keyA}`).toString('base64')}` } });
      expect(basic.status).toBe(200);
      expect(((await basic.json()) as any).run.info.experiment_id).toBe(r.body.run.info.experiment_id);
    });
  });
}
