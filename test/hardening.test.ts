/**
 * Attacks on the API's edge (issue 13), as raw tRPC wire requests on both
 * stores. How we tried to break it: hyperparameters nested 33 to 100,000
 * levels deep (a stack overflow, then a run that could never be read again);
 * a store that already holds a deeply nested value (written by an older
 * version) being listed; NUL in read filters and metric keys; steps and
 * context lengths at 2^31 and 2^53; an event stream read from 2^53 − 1; a data
 * mix naming one dataset twice; the same for MLflow's endpoints. Every answer
 * is a 4xx naming the problem or a 200, never a 5xx, and a refused write
 * leaves the event log as it was.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Pedigree } from '@pedigree/lineage';
import { serveInProcess } from './support/inprocess.ts';
import { backends } from './support/stores.ts';

const nested = (depth: number) => `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`;
const eventCount = async (pd: Pedigree) => Number((await pd.database.db.query<{ n: string }>('SELECT count(*) AS n FROM events'))[0]!.n);

for (const { backend, skip } of await backends()) {
  describe.skipIf(skip)(`hardened edge (${backend.name})`, () => {
    let pd: Pedigree;
    let server: Awaited<ReturnType<typeof serveInProcess>>;
    let projectId: string;
    let runId: string;

    const mutate = (path: string, rawJsonInput: string) =>
      fetch(`${server.url}/api/trpc/${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: `{"json":${rawJsonInput}}` });
    const query = (path: string, input: unknown) => fetch(`${server.url}/api/trpc/${path}?input=${encodeURIComponent(JSON.stringify({ json: input }))}`);
    const status = async (res: Promise<Response>) => {
      const r = await res;
      const text = await r.text();
      return { status: r.status, text };
    };

    beforeAll(async () => {
      pd = await backend.open();
      projectId = (await pd.tracker.createProject({ name: 'edge' })).projectId;
      runId = (await pd.tracker.createRun({ projectId, name: 'target', kind: 'pretrain', start: true })).runId;
      server = await serveInProcess(pd, 'open');
    });
    afterAll(async () => {
      await server?.close();
      await backend.dispose();
    });

    it('refuses deeply nested hyperparameters with a 400 at every depth, and the runs stay readable', async () => {
      const before = await eventCount(pd);
      for (const depth of [33, 1000, 10_000, 100_000]) {
        const r = await status(mutate('runs.declareHyperparameters', `{"runId":"${runId}","values":{"deep":${nested(depth)}}}`));
        expect(r.status, `depth ${depth}: ${r.text.slice(0, 200)}`).toBe(400);
        expect(r.text).toMatch(/nested more than 32 levels/);
        const q = await status(query('runs.list', { projectId: nested(depth) }));
        expect(q.status).toBeLessThan(500);
      }
      expect(await eventCount(pd)).toBe(before);
      // 30 levels are fine.
      expect((await status(mutate('runs.declareHyperparameters', `{"runId":"${runId}","values":{"ok":${nested(30)}}}`))).status).toBe(200);
      // The embedded client path (no HTTP) is refused by the ledger itself, before anything recurses.
      const deep = JSON.parse(nested(50_000));
      await expect(pd.tracker.declareHyperparameters(runId, { deep })).rejects.toMatchObject({ code: 'INVALID' });
      expect((await status(query('runs.get', { runId }))).status).toBe(200);
    });

    it('still lists and shows runs whose stored values are deeper than any reader could recurse', async () => {
      const { runId: old } = await pd.tracker.createRun({ projectId, name: 'written-by-an-older-version', kind: 'custom' });
      // A projection row as an older version could have left it (events are immutable; projections are not).
      await pd.database.db.query('UPDATE runs SET hyperparameters = $2::jsonb WHERE id = $1', [old, `{"deep":${nested(2000)}}`]);
      const got = await status(query('runs.get', { runId: old }));
      expect(got.status, got.text.slice(0, 300)).toBe(200);
      expect(got.text).toMatch(/nested deeper than 32 levels/);
      const listed = await status(query('runs.list', { project: 'edge' }));
      expect(listed.status, listed.text.slice(0, 300)).toBe(200);
    });

    it('answers NUL in read filters and metric keys with 400, not 500', async () => {
      for (const input of [{ project: 'edge', search: 'a\u0000b' }, { project: 'edge', tag: '\u0000' }, { project: 'ed\u0000ge' }]) {
        const r = await status(query('runs.list', input));
        expect(r.status, JSON.stringify(input)).toBeGreaterThanOrEqual(400);
        expect(r.status).toBeLessThan(500);
      }
      const r = await status(query('metrics.points', { runId, key: 'lo\u0000ss' }));
      expect(r.status).toBeGreaterThanOrEqual(400);
      expect(r.status).toBeLessThan(500);
    });

    it('stores steps and context lengths past 2^31 exactly, and refuses past 2^53 with a 400', async () => {
      const big = 2 ** 31 + 5;
      expect((await status(mutate('runs.changeHyperparameter', JSON.stringify({ runId, key: 'lr', value: 0.1, step: big })))).status).toBe(200);
      expect((await status(mutate('runs.recordEval', JSON.stringify({ runId, suite: 's', task: 't', score: 1, contextLength: big, step: big, n: big })))).status).toBe(200);
      const evals = await pd.lineage.evals(runId);
      expect(evals.at(-1)).toMatchObject({ contextLength: big, step: big, n: big });
      expect((await pd.lineage.hyperparameterHistory(runId)).find((h) => h.changed)?.step).toBe(big);
      const before = await eventCount(pd);
      for (const [path, body] of [
        ['runs.changeHyperparameter', { runId, key: 'lr', value: 0.1, step: 2 ** 53 }],
        ['runs.recordEval', { runId, suite: 's', task: 't', score: 1, contextLength: 2 ** 53 }],
      ] as const) {
        const r = await status(mutate(path, JSON.stringify(body)));
        expect(r.status, `${path}: ${r.text.slice(0, 200)}`).toBe(400);
      }
      expect(await eventCount(pd)).toBe(before);
      const stream = await status(query('events.stream', { runId, fromVersion: 2 ** 53 - 1 }));
      expect(stream.status).toBe(400);
    });

    it('refuses a data mix that names the same dataset twice', async () => {
      const ds = await pd.tracker.registerArtifact({ projectId, name: 'web', spec: { kind: 'dataset', source: 'crawl' } });
      const before = await eventCount(pd);
      const r = await status(
        mutate(
          'artifacts.register',
          JSON.stringify({ project: 'edge', name: 'mix', spec: { kind: 'datamix', components: [{ artifactId: ds.artifactId, weight: 0.5 }, { artifactId: ds.artifactId, weight: 0.5 }] } }),
        ),
      );
      expect(r.status).toBe(400);
      expect(r.text).toMatch(/twice/);
      expect(await eventCount(pd)).toBe(before);
    });

    it('refuses deep bodies on the OpenLineage endpoint', async () => {
      const r = await fetch(`${server.url}/api/v1/lineage`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: `{"eventType":"START","run":{"runId":"0190f9a1-0000-7000-8000-000000000000","facets":${nested(20_000)}}}` });
      expect(r.status).toBe(400);
    });

    it('refuses deep bodies on the MLflow endpoints too', async () => {
      const r = await fetch(`${server.url}/api/2.0/mlflow/runs/log-batch`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: `{"run_id":"${runId}","params":${nested(5000)}}` });
      expect(r.status).toBe(400);
      expect(((await r.json()) as { error_code: string }).error_code).toBe('INVALID_PARAMETER_VALUE');
    });
  });
}
