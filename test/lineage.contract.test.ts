/**
 * Projections and queries on every backend, over a non-trivial history (the
 * Phi-4-shaped sample plus edge cases), and replay == inline.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EVENT_TYPES, NotFoundError, ValidationError } from '@pedigree/ledger';
import { recordSampleLineage, type Pedigree } from '@pedigree/lineage';
import { backends } from './support/stores.ts';
import { snapshot } from './support/snapshot.ts';

for (const { backend, skip } of await backends()) {
  describe.skipIf(skip)(`lineage on ${backend.name}`, () => {
    let pd: Pedigree;
    let sample: Awaited<ReturnType<typeof recordSampleLineage>>;
    beforeAll(async () => {
      pd = await backend.open();
      sample = await recordSampleLineage(pd, { steps: 300 });
    });
    afterAll(() => backend.dispose());

    it('derives run status, hyperparameters and summary from events', async () => {
      const mid = await pd.lineage.run(sample.runs.midtrain);
      expect(mid).toMatchObject({ name: 'midtrain', kind: 'midtrain', status: 'completed', tags: ['baseline'], forkedFromRunId: sample.runs.pretrain });
      expect(mid.hyperparameters).toMatchObject({ context: 512, rope_base: 12500, lr: 3e-4 });
      expect(mid.summary).toMatchObject({ points: 600, checkpoints: 1 });
      expect(mid.metrics['train/loss']).toBeTypeOf('number');
      expect(mid.startedAt).toBeInstanceOf(Date);
      expect(mid.endedAt!.getTime()).toBeGreaterThanOrEqual(mid.startedAt!.getTime());
    });

    it('keeps every hyperparameter value with the step it changed at', async () => {
      const history = await pd.lineage.hyperparameterHistory(sample.runs.sft);
      const lr = history.filter((h) => h.key === 'lr');
      expect(lr).toEqual([
        expect.objectContaining({ value: 1e-4, step: null, changed: false, type: 'number' }),
        expect.objectContaining({ value: 5e-5, step: 150, changed: true, reason: 'loss plateau' }),
      ]);
      expect((await pd.lineage.run(sample.runs.sft)).hyperparameters.lr).toBe(5e-5);
    });

    it('records data mixes with components, weights and filters', async () => {
      const mixes = await pd.lineage.artifacts(sample.projectId, 'datamix');
      const mid = mixes.find((m) => m.name === 'midtrain-mix')!;
      const full = await pd.lineage.artifact(mid.id);
      expect(full.components.map((c) => c.weight)).toEqual([0.3, 0.7]);
      expect(full.components[0]!.filter).toEqual({ minTokens: 256, upweight: { tokens: 512, factor: 2 } });
      expect(full.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    });

    it('walks a run’s ancestry back to the datasets', async () => {
      const g = await pd.lineage.ancestry(sample.runs.eval);
      const names = (type: string) => g.nodes.filter((n) => n.type === type).map((n) => n.name).sort();
      expect(names('run')).toEqual(['dpo', 'eval', 'midtrain', 'pretrain', 'sft']);
      expect(names('artifact')).toEqual(
        expect.arrayContaining(['arith-sft', 'kv-recall', 'long-kv-native', 'midtrain-mix', 'pretrain-mix', 'web-v1', 'code-v1', 'synthetic-v1']),
      );
      expect(names('artifact')).not.toContain('long-kv-concatenated'); // the ablation is not an ancestor
      const byName = new Map(g.nodes.map((n) => [n.name, n.id]));
      expect(g.edges).toContainEqual({ from: byName.get('pretrain'), to: expect.any(String), relation: 'produced', role: 'checkpoint' });
      expect(g.edges).toContainEqual({ from: byName.get('long-kv-native'), to: byName.get('midtrain-mix'), relation: 'component', role: 'component', weight: 0.3 });
    });

    it('lists runs with filters, sorting and pagination', async () => {
      const all = await pd.lineage.runs({ projectId: sample.projectId, limit: 100 });
      expect(all.total).toBe(6);
      const mids = await pd.lineage.runs({ projectId: sample.projectId, kind: 'midtrain', sort: 'name', order: 'asc' });
      expect(mids.runs.map((r) => r.name)).toEqual(['midtrain', 'midtrain-concat']);
      expect((await pd.lineage.runs({ projectId: sample.projectId, tag: 'baseline' })).runs.map((r) => r.name)).toEqual(['midtrain']);
      expect((await pd.lineage.runs({ projectId: sample.projectId, hyperparameters: { rope_base: 500 } })).runs.map((r) => r.name)).toEqual(['pretrain']);
      expect((await pd.lineage.runs({ projectId: sample.projectId, search: 'CONCAT' })).runs.map((r) => r.name)).toEqual(['midtrain-concat']);
      const page1 = await pd.lineage.runs({ projectId: sample.projectId, sort: 'name', order: 'asc', limit: 3 });
      const page2 = await pd.lineage.runs({ projectId: sample.projectId, sort: 'name', order: 'asc', limit: 3, offset: 3 });
      expect([...page1.runs, ...page2.runs].map((r) => r.name)).toEqual(['dpo', 'eval', 'midtrain', 'midtrain-concat', 'pretrain', 'sft']);
    });

    it('buckets a metric with exact extremes and the last value of each bucket', async () => {
      const { runId } = await pd.tracker.createRun({ projectId: sample.projectId, name: 'spiky', kind: 'custom', start: true });
      const values = Array.from({ length: 1000 }, (_, s) => Math.sin(s / 10));
      values[437] = 42; // a spike that a sampled plot would miss
      values[901] = -17;
      await pd.tracker.logMetrics(runId, values.map((value, step) => ({ key: 'x', step, value })));
      const buckets = await pd.lineage.metricBuckets(runId, 'x', { buckets: 10 });
      expect(buckets).toHaveLength(10);
      expect(buckets.map((b) => b.count)).toEqual(Array(10).fill(100));
      expect(buckets[4]).toMatchObject({ fromStep: 400, toStep: 499, max: 42, last: values[499] });
      expect(buckets[9]!.min).toBe(-17);
      const zoom = await pd.lineage.metricBuckets(runId, 'x', { buckets: 5, fromStep: 430, toStep: 439 });
      expect(zoom.map((b) => [b.fromStep, b.toStep])).toEqual([[430, 431], [432, 433], [434, 435], [436, 437], [438, 439]]);
      expect(zoom[3]!.max).toBe(42);
      expect(await pd.lineage.metricKeys(runId)).toEqual([{ key: 'x', count: 1000, firstStep: 0, lastStep: 999, last: values[999], min: -17, max: 42 }]);
      expect(await pd.lineage.metricPoints(runId, 'x', { fromStep: 436, toStep: 438 })).toEqual([
        expect.objectContaining({ step: 436, value: values[436] }),
        expect.objectContaining({ step: 437, value: 42 }),
        expect.objectContaining({ step: 438, value: values[438] }),
      ]);
    });

    it('stores NaN/Infinity only when the logger allows them', async () => {
      const { runId } = await pd.tracker.createRun({ projectId: sample.projectId, name: 'nan', kind: 'custom', start: true });
      const before = await snapshot(pd.database.db);
      await expect(pd.tracker.logMetrics(runId, [{ key: 'loss', step: 0, value: NaN }])).rejects.toThrow(/must be finite/);
      expect(await snapshot(pd.database.db)).toBe(before);
      await pd.tracker.logMetrics(runId, [{ key: 'loss', step: 0, value: 1 }, { key: 'loss', step: 1, value: NaN }, { key: 'loss', step: 2, value: Infinity }], { allowNonFinite: true });
      const pts = await pd.lineage.metricPoints(runId, 'loss');
      expect(pts.map((p) => p.value)).toEqual([1, NaN, Infinity]);
      const [k] = await pd.lineage.metricKeys(runId);
      expect(k).toMatchObject({ min: 1, max: Infinity, last: Infinity, count: 3 });
    });

    it('refuses bad commands with clear typed errors and changes nothing', async () => {
      const t = pd.tracker;
      const pid = sample.projectId;
      const [web] = await pd.lineage.artifacts(pid, 'dataset');
      const before = await snapshot(pd.database.db);
      const cases: [string, () => Promise<unknown>, RegExp, typeof ValidationError | typeof NotFoundError][] = [
        ['unknown run', () => t.logMetrics(randomUUID(), [{ key: 'a', step: 0, value: 1 }]), /run .* not found/, NotFoundError],
        ['run id not a uuid', () => t.startRun('nope'), /runId must be a UUID/, ValidationError],
        ['negative step', () => t.logMetrics(sample.runs.pretrain, [{ key: 'a', step: -1, value: 1 }]), /step/, ValidationError],
        ['fractional step', () => t.recordEval(sample.runs.eval, { suite: 's', task: 't', score: 1, step: 1.5 }), /step/, ValidationError],
        ['string value', () => t.logMetrics(sample.runs.dpo, [{ key: 'a', step: 0, value: '1' as never }]), /value/, ValidationError],
        ['write to a completed run', () => t.logMetrics(sample.runs.pretrain, [{ key: 'a', step: 0, value: 1 }]), /it is completed/, ValidationError],
        ['unknown project', () => t.createRun({ projectId: randomUUID(), name: 'x', kind: 'sft' }), /project .* not found/, NotFoundError],
        ['unknown kind', () => t.createRun({ projectId: pid, name: 'x', kind: 'pretraining' as never }), /kind/, ValidationError],
        ['empty name', () => t.createRun({ projectId: pid, name: '  ', kind: 'sft' }), /name/, ValidationError],
        ['unknown input', () => t.createRun({ projectId: pid, name: 'x', kind: 'sft', inputs: [{ artifactId: randomUUID(), role: 'train-set' }] }), /artifact .* not found/, NotFoundError],
        ['weights not summing to 1', () => t.registerArtifact({ projectId: pid, name: 'bad-mix', spec: { kind: 'datamix', components: [{ artifactId: web!.id, weight: 0.5 }, { artifactId: web!.id, weight: 0.4 }] } }), /sum to 1 .* 0\.9/, ValidationError],
        ['mix of a checkpoint', () => pd.lineage.artifacts(pid, 'checkpoint').then(([c]) => t.registerArtifact({ projectId: pid, name: 'm', spec: { kind: 'datamix', components: [{ artifactId: c!.id, weight: 1 }] } })), /is a checkpoint/, ValidationError],
        ['unknown filter field', () => t.registerArtifact({ projectId: pid, name: 'm', spec: { kind: 'datamix', components: [{ artifactId: web!.id, weight: 1, filter: { minTokenz: 5 } as never }] } }), /minTokenz/, ValidationError],
        ['oversize batch', () => t.logMetrics(sample.runs.dpo, Array.from({ length: 50_001 }, (_, i) => ({ key: 'a', step: i, value: 1 }))), /at most 50000/, ValidationError],
        ['oversize note', () => t.addNote(sample.runs.dpo, 'x'.repeat(10_001)), /10000/, ValidationError],
        ['bad metric key', () => t.logMetrics(sample.runs.dpo, [{ key: 'a\nb', step: 0, value: 1 }]), /key/, ValidationError],
        ['duplicate project name', () => t.createProject({ name: 'phi4-toy' }), /already exists/, ValidationError],
      ];
      for (const [what, call, message, type] of cases) {
        const err = await call().then(
          () => new Error(`${what}: accepted`),
          (e: unknown) => e,
        );
        expect(err, what).toBeInstanceOf(type);
        expect((err as Error).message, what).toMatch(message);
      }
      expect(await snapshot(pd.database.db)).toBe(before);
    });

    it('refuses an input edge that would close a cycle', async () => {
      const t = pd.tracker;
      const a = await t.createRun({ projectId: sample.projectId, name: 'cyc-a', kind: 'custom', start: true });
      const ckA = await t.saveCheckpoint(a.runId, { step: 1, digest: `sha256:${'a'.repeat(64)}` });
      const b = await t.createRun({ projectId: sample.projectId, name: 'cyc-b', kind: 'custom', inputs: [{ artifactId: ckA.artifactId, role: 'init' }], start: true });
      const ckB = await t.saveCheckpoint(b.runId, { step: 1, digest: `sha256:${'b'.repeat(64)}` });
      const before = await snapshot(pd.database.db);
      await expect(t.useInput(a.runId, { artifactId: ckB.artifactId, role: 'init' })).rejects.toThrow(/would create a cycle/);
      await expect(t.useInput(a.runId, { artifactId: ckA.artifactId, role: 'init' })).rejects.toThrow(/would create a cycle/);
      await expect(t.produceOutput(b.runId, { artifactId: ckA.artifactId, role: 'x' })).rejects.toThrow(/already (uses|produced)/);
      expect(await snapshot(pd.database.db)).toBe(before);
    });

    it('makes a retried command idempotent through its event id', async () => {
      const eventId = randomUUID();
      const { runId } = await pd.tracker.createRun({ projectId: sample.projectId, name: 'retry', kind: 'custom', start: true });
      const pts = [{ key: 'loss', step: 0, value: 1, time: 1 }];
      const a = await pd.tracker.logMetrics(runId, pts, { eventId });
      const b = await pd.tracker.logMetrics(runId, pts, { eventId });
      expect(b).toMatchObject({ duplicate: true, positions: a.positions });
      expect(await pd.lineage.metricPoints(runId, 'loss')).toHaveLength(1);
      // Same id, but a run created with a client-chosen id: the retry returns the same run.
      const runEventId = randomUUID();
      const input = { projectId: sample.projectId, runId: randomUUID(), name: 'retry-create', kind: 'sft' as const, hyperparameters: { lr: 1 } };
      const r1 = await pd.tracker.createRun(input, { eventId: runEventId });
      const r2 = await pd.tracker.createRun(input, { eventId: runEventId });
      expect(r2).toMatchObject({ runId: r1.runId, duplicate: true, positions: r1.positions });
    });

    it('rebuilds every event type, in the orders where order matters, to exactly the inline state (set-based replay)', async () => {
      const t = pd.tracker;
      // Tries to break the set-based rebuild where the inline fold is order-dependent: the latest
      // rename, lifecycle and tag value win; a tag removed then set again; an error kept across a
      // reopen; the first edge and the first producer win; the last upload of a path wins.
      const { projectId } = await t.createProject({ name: 'every-event', description: 'replay coverage' });
      await t.renameProject(projectId, 'every-event-2');
      await t.setProjectTag(projectId, 'team', 'a');
      await t.setProjectTag(projectId, 'team', 'b');
      await t.deleteProject(projectId);
      await t.restoreProject(projectId);
      await t.renameProject(projectId, 'every-event-3');
      const ds = await t.registerArtifact({ projectId, name: 'web', spec: { kind: 'dataset', source: 'crawl', params: { seed: 1 }, tokens: 1000, docs: 10 } });
      const ds2 = await t.registerArtifact({ projectId, name: 'code', spec: { kind: 'dataset', source: 'git', params: { seed: 2 }, tokens: 500, docs: 5 } });
      const mix = await t.registerArtifact({ projectId, name: 'mix', spec: { kind: 'datamix', components: [{ artifactId: ds.artifactId, weight: 0.7 }, { artifactId: ds2.artifactId, weight: 0.3 }] } });
      const { runId: a } = await t.createRun({ projectId, name: 'a', kind: 'pretrain', hyperparameters: { lr: 1, wd: 0.1 }, start: true });
      await t.declareHyperparameters(a, { lr: 2, batch: 8 });
      await t.changeHyperparameter(a, { key: 'lr', value: 0.5, step: 10, reason: 'decay' });
      await t.useInput(a, { artifactId: mix.artifactId, role: 'train', step: 0 });
      await t.useInput(a, { artifactId: mix.artifactId, role: 'train', step: 5 }).catch(() => {}); // the first edge wins (or it is refused)
      await t.produceOutput(a, { artifactId: ds2.artifactId, role: 'derived', step: 3 }).catch(() => {});
      await t.renameRun(a, 'a-renamed');
      await t.renameRun(a, 'a-final');
      await t.setTag(a, 'owner', 'x');
      await t.setTag(a, 'stage', 'pre');
      await t.removeTag(a, 'owner');
      await t.setTag(a, 'stage', 'mid');
      await t.removeTag(a, 'stage');
      await t.setTag(a, 'stage', 'late');
      await t.addTag(a, 'baseline');
      await t.addTag(a, 'long');
      await t.addTag(a, 'baseline');
      await t.recordFile(a, { path: 'out/model.bin', digest: `sha256:${'1'.repeat(64)}`, bytes: 10 });
      await t.recordFile(a, { path: 'out/model.bin', digest: `sha256:${'2'.repeat(64)}`, bytes: 20 });
      await t.recordFile(a, { path: 'out/log.txt', digest: `sha256:${'3'.repeat(64)}`, bytes: 3 });
      const ck = await t.saveCheckpoint(a, { step: 100, digest: `sha256:${'4'.repeat(64)}`, manifest: { w: [2, 2] } });
      await t.recordEval(a, { suite: 's', task: 'kv', contextLength: 4096, score: 0.5, n: 100, step: 100 });
      await t.recordEval(a, { suite: 's', task: 'kv', score: 0.25 });
      await t.logMetrics(a, [{ key: 'loss', step: 1, value: 2 }, { key: 'lr', step: 1, value: 1 }, { key: 'loss', step: 1, value: 3 }]);
      await t.failRun(a, 'OOM', { at: 1_700_000_000_123, killed: true });
      await t.startRun(a, { reopen: true, at: 1_700_000_001_456 });
      await t.logMetrics(a, [{ key: 'loss', step: 0, value: -1 }]);
      await t.addNote(a, 'reopened', 'me');
      await t.deleteRun(a);
      await t.restoreRun(a);
      await t.deleteRun(a);
      const { runId: b } = await t.forkRun(a, { name: 'b', checkpointId: ck.artifactId, step: 100, start: true } as never).catch(async () => t.createRun({ projectId, name: 'b', kind: 'midtrain', start: true }));
      await t.completeRun(b, { at: 1_700_000_002_789 });
      await t.startRun(b, { reopen: true });
      await t.failRun(b, 'again');
      await t.startRun(b, { reopen: true });
      await t.completeRun(b);
      await t.logMetrics(b, [{ key: 'loss', step: 7, value: NaN }], { allowNonFinite: true, evenIfEnded: true });
      const { runId: c } = await t.createRun({ projectId, name: 'c', kind: 'eval' });
      await t.produceOutput(c, { artifactId: ds.artifactId, role: 'made' });
      await t.appendToRun(c, [{ type: 'LineageEventReceived', data: { format: 'openlineage', eventType: 'START', eventTime: '2026-11-30T10:00:00Z', event: { eventType: 'START', run: { runId: c } } } }]);
      // Every event type is here: a fork or an edge that quietly failed above would leave one out.
      const seen = await pd.database.db.query<{ type: string }>('SELECT DISTINCT type FROM events WHERE project_id = $1 ORDER BY type', [projectId]);
      expect(seen.map((r) => r.type)).toEqual([...EVENT_TYPES].sort());
      const inline = await snapshot(pd.database.db);
      await pd.replay();
      expect(await snapshot(pd.database.db)).toBe(inline);
      expect((await pd.lineage.run(a)).name).toBe('a-final');
    });

    it('rebuilds every projection from the events to exactly the inline state', async () => {
      // More history first: a failure, notes, forks with mid-run changes.
      const t = pd.tracker;
      const { runId } = await t.createRun({ projectId: sample.projectId, name: 'doomed', kind: 'pretrain', hyperparameters: { lr: 1, nested: { a: [1, 2, { b: null }] } }, start: true });
      await t.changeHyperparameter(runId, { key: 'nested', value: { a: [] }, step: 3 });
      await t.logMetrics(runId, [{ key: 'loss', step: 5, value: 3 }, { key: 'loss', step: 2, value: 9 }, { key: 'loss', step: 5, value: 4 }]);
      await t.failRun(runId, 'NaN loss at step 6');
      await t.addNote(runId, 'diverged');
      const inline = await snapshot(pd.database.db);
      const result = await pd.replay();
      expect(result.events).toBeGreaterThan(80);
      expect(await snapshot(pd.database.db)).toBe(inline);
      expect((await pd.lineage.run(runId)).status).toBe('failed');
      expect((await pd.lineage.metricKeys(runId))[0]).toMatchObject({ last: 4, lastStep: 5, min: 3, max: 9 });
      expect((await pd.verify()).ok).toBe(true);
      // Without the checks first: the same read models, the same count of events and points.
      const unchecked = await pd.replay({ check: false });
      expect(unchecked).toMatchObject({ checked: false, events: result.events, points: result.points });
      expect(result.checked).toBe(true);
      expect(await snapshot(pd.database.db)).toBe(inline);
    });
  });
}
