/**
 * diffLineage over built histories (recorded through the tracker, no mocks),
 * on every backend; the API's refusal across projects; the CLI's report.
 * How we tried to break it: identical runs, a run against itself, forks that
 * differ only in RoPE base and mix weights, different depths, a mid-run
 * change at step 500, a dataset regenerated with another seed under the same
 * name, runs in two projects with a key for one, unknown ids.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey } from '@pedigree/api';
import { connect } from '@pedigree/client';
import type { Pedigree } from '@pedigree/lineage';
import { serveInProcess } from './support/inprocess.ts';
import { backends } from './support/stores.ts';

const digest = () => `sha256:${randomUUID().replace(/-/g, '').padEnd(64, '0')}`;

for (const { backend, skip } of await backends()) {
  describe.skipIf(skip)(`lineage diff on ${backend.name}`, () => {
    let pd: Pedigree;
    let projectId: string;
    let web: string;
    let code: string;
    let mix: string;
    beforeAll(async () => {
      pd = await backend.open();
      ({ projectId } = await pd.tracker.createProject({ name: 'diff' }));
      web = (await pd.tracker.registerArtifact({ projectId, name: 'web', spec: { kind: 'dataset', source: 'synthetic/web', params: { seed: 1 } } })).artifactId;
      code = (await pd.tracker.registerArtifact({ projectId, name: 'code', spec: { kind: 'dataset', source: 'synthetic/code', params: { seed: 1 } } })).artifactId;
      mix = (await pd.tracker.registerArtifact({ projectId, name: 'mix', spec: { kind: 'datamix', components: [{ artifactId: web, weight: 0.6 }, { artifactId: code, weight: 0.4 }] } }))
        .artifactId;
    });
    afterAll(() => backend.dispose());

    /** A finished stage: hyperparameters, inputs, a loss curve, a checkpoint. */
    async function stage(name: string, kind: 'pretrain' | 'midtrain' | 'sft' | 'dpo' | 'eval', hp: Record<string, number | string>, opts: { inputs?: { artifactId: string; role: string }[]; from?: { runId: string; checkpoint: string }; loss?: number; lrAt500?: number } = {}) {
      const { runId } = opts.from
        ? await pd.tracker.forkRun(opts.from.runId, { name, kind, checkpointId: opts.from.checkpoint, hyperparameters: hp, inheritHyperparameters: false, inputs: opts.inputs, start: true })
        : await pd.tracker.createRun({ projectId, name, kind, hyperparameters: hp, inputs: opts.inputs, codeVersion: 'v1', start: true });
      const loss = opts.loss ?? 2;
      await pd.tracker.logMetrics(runId, Array.from({ length: 10 }, (_, s) => ({ key: 'train/loss', step: s * 100, value: loss + 1 / (s + 1), time: 0 })));
      if (opts.lrAt500 !== undefined) await pd.tracker.changeHyperparameter(runId, { key: 'lr', value: opts.lrAt500, step: 500, reason: 'plateau' });
      const { artifactId } = await pd.tracker.saveCheckpoint(runId, { step: 1000, digest: digest() });
      await pd.tracker.completeRun(runId);
      return { runId, checkpoint: artifactId };
    }

    it('identical runs: an empty diff', async () => {
      const a = await stage('twin-a', 'pretrain', { lr: 1e-3, rope_base: 500 }, { inputs: [{ artifactId: mix, role: 'train-mix' }] });
      const b = await stage('twin-b', 'pretrain', { lr: 1e-3, rope_base: 500 }, { inputs: [{ artifactId: mix, role: 'train-mix' }] });
      const d = await pd.lineage.diff(a.runId, b.runId);
      expect(d).toMatchObject({ identical: true, firstDivergence: null, commonAncestor: null, collapsed: 1 });
      expect(d.stages).toEqual([expect.objectContaining({ status: 'identical', collapsed: true, hyperparameters: [], inputs: [], metrics: [] })]);
    });

    it('a run against itself: identical, the run is its own common ancestor', async () => {
      const a = await stage('self', 'pretrain', { lr: 1e-3 }, { inputs: [{ artifactId: mix, role: 'train-mix' }] });
      const d = await pd.lineage.diff(a.runId, a.runId.slice(0, 8));
      expect(d).toMatchObject({ identical: true, commonAncestor: { type: 'run', id: a.runId } });
      expect(d.stages.map((s) => s.status)).toEqual(['shared']);
    });

    it('two midtraining forks of one checkpoint: exactly the RoPE base and the mix weights differ; the ancestor is the checkpoint', async () => {
      const pre = await stage('pre', 'pretrain', { lr: 1e-3, rope_base: 500, context: 128 }, { inputs: [{ artifactId: mix, role: 'train-mix' }] });
      const long = (await pd.tracker.registerArtifact({ projectId, name: 'long', spec: { kind: 'dataset', source: 'synthetic/long', params: { seed: 2 } } })).artifactId;
      const midMix = async (name: string, w: number) =>
        (await pd.tracker.registerArtifact({ projectId, name, spec: { kind: 'datamix', components: [{ artifactId: long, weight: w, filter: { minTokens: 256 } }, { artifactId: mix, weight: 1 - w }] } }))
          .artifactId;
      const hp = { lr: 1e-4, context: 512 };
      const a = await stage('mid-a', 'midtrain', { ...hp, rope_base: 12_500 }, { from: pre, inputs: [{ artifactId: await midMix('mid-mix-30', 0.3), role: 'train-mix' }] });
      const b = await stage('mid-b', 'midtrain', { ...hp, rope_base: 250_000 }, { from: pre, inputs: [{ artifactId: await midMix('mid-mix-50', 0.5), role: 'train-mix' }] });
      const d = await pd.lineage.diff(a.runId, b.runId);
      expect(d.commonAncestor).toEqual({ type: 'checkpoint', id: pre.checkpoint, name: 'checkpoint@1000', kind: 'checkpoint' });
      expect(d.firstDivergence).toMatchObject({ a: { runId: a.runId }, b: { runId: b.runId } });
      expect(d.stages.map((s) => [s.kind, s.status])).toEqual([
        ['pretrain', 'shared'],
        ['midtrain', 'changed'],
      ]);
      const mid = d.stages[1]!;
      expect(mid.hyperparameters).toEqual([{ path: 'rope_base', change: 'changed', a: 12_500, b: 250_000, delta: 237_500, relative: 19 }]);
      expect(mid.inputs).toHaveLength(1);
      expect(mid.inputs[0]).toMatchObject({ role: 'train-mix', change: 'changed', a: { name: 'mid-mix-30' }, b: { name: 'mid-mix-50' } });
      expect(mid.inputs[0]!.components.map((c) => [c.name, c.weight.a, c.weight.b])).toEqual([
        ['long', 0.3, 0.5],
        ['mix', 0.7, 0.5],
      ]);
      expect(mid.inputs[0]!.components.every((c) => c.filter.length === 0 && c.digest === null)).toBe(true);
      expect(mid.midRunChanges).toBeNull();
      expect(mid.codeVersion).toBeNull();
    });

    it('different depths: the extra SFT and DPO show as stages only one side has; a mid-run change at step 500 is reported', async () => {
      const pre = await stage('deep-pre', 'pretrain', { lr: 1e-3 }, { inputs: [{ artifactId: mix, role: 'train-mix' }] });
      const mid = await stage('deep-mid', 'midtrain', { lr: 1e-4 }, { from: pre });
      const sft = await stage('deep-sft', 'sft', { lr: 5e-5 }, { from: mid, lrAt500: 2e-5 });
      const dpo = await stage('deep-dpo', 'dpo', { lr: 1e-6 }, { from: sft });
      const d = await pd.lineage.diff(mid.runId, dpo.runId);
      expect(d.stages.map((s) => [s.kind, s.status])).toEqual([
        ['pretrain', 'shared'],
        ['midtrain', 'shared'],
        ['sft', 'added'],
        ['dpo', 'added'],
      ]);
      expect(d.commonAncestor).toMatchObject({ type: 'run', id: mid.runId });
      expect(d.firstDivergence).toEqual({ a: null, b: expect.objectContaining({ runId: sft.runId }) });

      const sft2 = await stage('deep-sft-2', 'sft', { lr: 5e-5 }, { from: mid });
      const e = await pd.lineage.diff(sft2.runId, sft.runId);
      const s = e.stages.find((x) => x.kind === 'sft')!;
      expect(s.status).toBe('changed');
      expect(s.hyperparameters).toEqual([{ path: 'lr', change: 'changed', a: 5e-5, b: 2e-5, delta: expect.closeTo(-3e-5, 12), relative: expect.closeTo(-0.6, 9) }]);
      expect(s.midRunChanges).toEqual({ a: [], b: [{ key: 'lr', value: 2e-5, step: 500, reason: 'plateau' }] });
    });

    it('a dataset regenerated with another seed under the same name: the component whose content changed, and how', async () => {
      const v1 = (await pd.tracker.registerArtifact({ projectId, name: 'books', spec: { kind: 'dataset', source: 'synthetic/books', params: { seed: 1 }, tokens: 1000 } })).artifactId;
      const v2 = (await pd.tracker.registerArtifact({ projectId, name: 'books', spec: { kind: 'dataset', source: 'synthetic/books', params: { seed: 2 }, tokens: 1000 } })).artifactId;
      const m1 = (await pd.tracker.registerArtifact({ projectId, name: 'books-mix', spec: { kind: 'datamix', components: [{ artifactId: v1, weight: 1 }] } })).artifactId;
      const m2 = (await pd.tracker.registerArtifact({ projectId, name: 'books-mix', spec: { kind: 'datamix', components: [{ artifactId: v2, weight: 1 }] } })).artifactId;
      const a = await stage('books-a', 'pretrain', { lr: 1e-3 }, { inputs: [{ artifactId: m1, role: 'train-mix' }] });
      const b = await stage('books-b', 'pretrain', { lr: 1e-3 }, { inputs: [{ artifactId: m2, role: 'train-mix' }] });
      const d = await pd.lineage.diff(a.runId, b.runId);
      const [input] = d.stages[0]!.inputs;
      expect(input!.components).toEqual([
        expect.objectContaining({ name: 'books', change: 'changed', weight: { a: 1, b: 1, delta: 0 }, digest: { a: expect.any(String), b: expect.any(String) } }),
      ]);
      expect(input!.components[0]!.spec).toEqual([{ path: 'params.seed', change: 'changed', a: 1, b: 2, delta: 1, relative: 1 }]);
    });

    it('unknown run ids: a clear error', async () => {
      await expect(pd.lineage.diff(randomUUID(), randomUUID())).rejects.toThrow(/not found/);
      await expect(pd.lineage.diff('zz', 'yy')).rejects.toThrow(/not a run id/);
    });

    it('over the API: a key reads only its project, so runs of two projects are refused to it; open mode diffs them', async () => {
      const { projectId: other } = await pd.tracker.createProject({ name: 'diff-other' });
      const x = (await pd.tracker.createRun({ projectId: other, name: 'x', kind: 'pretrain', start: true })).runId;
      const mine = await stage('mine', 'pretrain', { lr: 1 }, {});
      const key = (await createApiKey(pd.database.db, projectId, 'diff')).key;
      const server = await serveInProcess(pd, 'open');
      try {
        const withKey = await connect({ url: server.url, apiKey: key, handleSignals: false, retry: { retryForMs: 0 } });
        await expect(withKey.diff(mine.runId, x)).rejects.toMatchObject({ code: 'FORBIDDEN' });
        await expect(withKey.diff(mine.runId, mine.runId)).resolves.toMatchObject({ identical: true });
        await withKey.close();
        const open = await connect({ url: server.url, handleSignals: false, retry: { retryForMs: 0 } });
        const d = await open.diff(mine.runId, x);
        expect(d.commonAncestor).toBeNull();
        expect(d.stages[0]).toMatchObject({ status: 'changed', hyperparameters: [{ path: 'lr', change: 'removed', a: 1 }] });
        await expect(open.diff(mine.runId, randomUUID())).rejects.toMatchObject({ code: 'NOT_FOUND' });
        await open.close();
      } finally {
        await server.close();
      }
    });
  });
}
