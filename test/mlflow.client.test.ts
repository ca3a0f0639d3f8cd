/**
 * A third-party MLflow client (the npm package `mlflow`, pinned) against the
 * real `pedigree start`, as a training script uses it: an experiment, a run
 * with its tags, params, thousands of metric steps, a nested run, the end;
 * then get, search and the full history, with exact values. Both stores; the
 * server store needs a key, sent as MLflow clients send MLFLOW_TRACKING_TOKEN.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import MLflow from 'mlflow';
import { RunStatus } from 'mlflow/enum';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { pedigreeCommand, pedigreeServer, type PedigreeServer } from './support/server.ts';
import { createServerDatabase, serverUnavailable } from './support/stores.ts';

const serverSkip = await serverUnavailable();
const modes = [
  { name: 'embedded PGlite', skip: null as string | null },
  { name: 'PostgreSQL server', skip: serverSkip && !process.env.CI ? serverSkip : null },
];

const STEPS = 5_000;
const T0 = 1_764_000_000_000;
const loss = (step: number) => 3 * Math.exp(-step / 1500) + 0.1;

for (const mode of modes) {
  describe.skipIf(mode.skip)(`the npm mlflow client against pedigree start, ${mode.name}`, () => {
    let server: PedigreeServer;
    let client: MLflow;
    let cleanup: () => Promise<void> = async () => {};
    let experimentId: string;
    let authorization: string | undefined;

    beforeAll(async () => {
      // The package logs every POST body on stdout (its own quirk); keep the test output readable.
      vi.spyOn(console, 'log').mockImplementation(() => {});
      const store: { home?: string; url?: string } = {};
      const headers: Record<string, string> = {};
      if (mode.name.startsWith('embedded')) {
        store.home = mkdtempSync(path.join(os.tmpdir(), 'pedigree-mlflow-'));
        cleanup = async () => rmSync(store.home!, { recursive: true, force: true });
        server = await pedigreeServer({ ...store, auth: 'open', demo: 'none' });
      } else {
        const db = await createServerDatabase();
        store.url = db.url;
        cleanup = db.drop;
        expect((await pedigreeCommand(['migrate', '--url', db.url])).code).toBe(0);
        expect((await pedigreeCommand(['projects', 'create', 'toy-lm', '--url', db.url])).code).toBe(0);
        const key = await pedigreeCommand(['keys', 'create', '--project', 'toy-lm', '--name', 'mlflow', '--json', '--url', db.url]);
        authorization = `Bearer ${(JSON.parse(key.stdout) as { key: string }).key}`;
        headers.Authorization = authorization;
        server = await pedigreeServer({ ...store, auth: 'keys', demo: 'none' });
      }
      await server.start();
      client = new MLflow({ endpoint: server.url, headers });
    });

    afterAll(async () => {
      vi.restoreAllMocks();
      server?.kill();
      await cleanup();
    });

    it('logs a training script and reads it back exactly', async () => {
      if (mode.name.startsWith('embedded')) {
        experimentId = (await client.Experiments.create({ name: 'toy-lm', artifact_location: '' })).experiment_id;
      } else {
        // With a key, the experiment is the key's project (a key cannot create projects).
        const { experiments } = await client.Experiments.list();
        experimentId = experiments.find((e: { name: string }) => e.name === 'toy-lm')!.experiment_id;
      }
      expect((await client.Experiments.get({ experiment_id: experimentId })).experiment.name).toBe('toy-lm');

      const tags = [
        { key: 'mlflow.user', value: 'ada' },
        { key: 'mlflow.source.name', value: 'train.py' },
        { key: 'mlflow.source.type', value: 'LOCAL' },
        { key: 'mlflow.runName', value: 'pretrain' },
      ];
      const { run } = await client.Runs.create({ experiment_id: experimentId, user_id: 'ada', start_time: T0, tags });
      const runId = run.info.run_id;
      expect(run.info.status).toBe('RUNNING');
      await client.Runs.logBatch({ run_id: runId, params: [{ key: 'lr', value: '0.0003' }, { key: 'context', value: '128' }] });
      await client.Runs.logParameter({ run_id: runId, key: 'seed', value: '7' });
      for (let start = 0; start < STEPS; start += 1000) {
        const metrics = Array.from({ length: 1000 }, (_, i) => ({ key: 'train/loss', value: loss(start + i), timestamp: T0 + start + i, step: start + i }));
        await client.Runs.logBatch({ run_id: runId, metrics });
      }
      await client.Runs.logMetric({ run_id: runId, key: 'eval/acc', value: 0.5, timestamp: T0 + STEPS, step: STEPS - 1 });
      await client.Runs.setTag({ run_id: runId, key: 'stage', value: 'pretrain' });

      const nested = await client.Runs.create({
        experiment_id: experimentId,
        user_id: 'ada',
        start_time: T0 + 60_000,
        tags: [...tags.filter((t) => t.key !== 'mlflow.runName'), { key: 'mlflow.runName', value: 'midtrain' }, { key: 'mlflow.parentRunId', value: runId }],
      });
      const nestedId = nested.run.info.run_id;
      await client.Runs.logBatch({ run_id: nestedId, params: [{ key: 'lr', value: '0.00003' }], metrics: [{ key: 'train/loss', value: 0.5, timestamp: T0 + 61_000, step: 0 }] });
      await client.Runs.update({ run_id: nestedId, status: RunStatus.FINISHED, end_time: T0 + 62_000 });
      await client.Runs.update({ run_id: runId, status: RunStatus.FINISHED, end_time: T0 + 63_000 });

      const got = (await client.Runs.get({ run_id: runId })).run;
      expect(got.info).toMatchObject({ run_id: runId, status: 'FINISHED', start_time: T0, end_time: T0 + 63_000, run_name: 'pretrain' });
      const params = Object.fromEntries(got.data.params.map((p: { key: string; value: string }) => [p.key, p.value]));
      expect(params).toEqual({ lr: '0.0003', context: '128', seed: '7' });
      const last = Object.fromEntries(got.data.metrics.map((m: { key: string; value: number; step: number }) => [m.key, [m.value, m.step]]));
      expect(last).toEqual({ 'train/loss': [loss(STEPS - 1), STEPS - 1], 'eval/acc': [0.5, STEPS - 1] });
      const tagMap = Object.fromEntries(got.data.tags.map((t: { key: string; value: string }) => [t.key, t.value]));
      expect(tagMap).toMatchObject({ stage: 'pretrain', 'mlflow.runName': 'pretrain', 'mlflow.user': 'ada' });

      const history = await client.Metrics.getHistory({ run_id: runId, metric_key: 'train/loss' });
      expect(history.metrics).toHaveLength(STEPS);
      history.metrics.forEach((m: { value: number; step: number; timestamp: number }, i: number) => {
        expect(m.step).toBe(i);
        expect(m.value).toBe(loss(i));
        expect(m.timestamp).toBe(T0 + i);
      });

      const children = await client.Runs.search({ experiment_ids: [experimentId], filter: `tags.mlflow.parentRunId = '${runId}'` });
      expect(children.runs.map((r: { info: { run_id: string } }) => r.info.run_id)).toEqual([nestedId]);
      const byParam = await client.Runs.search({ experiment_ids: [experimentId], filter: "params.lr = '0.0003' and metrics.`train/loss` < 1" });
      expect(byParam.runs.map((r: { info: { run_id: string } }) => r.info.run_id)).toEqual([runId]);

      // Pedigree's own API sees the same runs: params as hyperparameters, the nested run as the next stage of its parent.
      const input = encodeURIComponent(JSON.stringify({ json: { runId: nestedId } }));
      const res = await fetch(`${server.url}/api/trpc/runs.get?input=${input}`, { headers: { ...(authorization ? { authorization } : {}) } });
      const view = ((await res.json()) as { result: { data: { json: { forkedFromRunId: string; hyperparameters: Record<string, unknown>; status: string } } } }).result.data.json;
      expect(view).toMatchObject({ forkedFromRunId: runId, hyperparameters: { lr: '0.00003' }, status: 'completed' });
    });
  });
}
