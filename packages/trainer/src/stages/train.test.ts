import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { connect, type Pedigree } from '@pedigree/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig, type TrainConfigInput } from '../config.ts';
import { saveCheckpoint } from '../model/checkpoint.ts';
import { BigramModel } from '../model/reference-model.ts';
import { lossWeights, train, type TrainResult } from './train.ts';

/**
 * The trainer against a real embedded store, through the client, as a user
 * runs it. One store for the file (creating one takes seconds); the tests run
 * in order: a run, a crash and its resume, a fork of the first run.
 */
let dir: string;
let pd: Pedigree;

const base: TrainConfigInput = {
  project: 'trainer-test',
  name: 'pretrain',
  model: { vocab: 32, dModel: 16, context: 32, seed: 7 },
  optimizer: { lr: 0.03, warmupSteps: 5, minLr: 0.003 },
  steps: 40,
  batchSize: 4,
  evalEvery: 10,
  evalBatches: 2,
  checkpointEvery: 20,
  data: {
    seed: 11,
    name: 'test-mix',
    heldoutDocs: 16,
    sources: [
      { name: 'web', generator: 'language', weight: 0.7, docs: 64, params: { branching: 2 } },
      { name: 'kv', generator: 'kv-recall', weight: 0.3, docs: 32 },
    ],
  },
};
const config = (extra: Partial<TrainConfigInput> = {}) => parseConfig({ ...base, outputDir: path.join(dir, 'checkpoints'), ...extra });

const types = async (runId: string) => (await pd.events(runId)).events.map((e) => e.type);
const eventsOf = async (runId: string, type: string) => (await pd.events(runId)).events.filter((e) => e.type === type).map((e) => e.data as Record<string, unknown>);

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'pedigree-train-'));
  pd = await connect({ embedded: path.join(dir, 'store'), handleSignals: false, flushIntervalMs: 50 });
});

afterAll(async () => {
  await pd?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('train', () => {
  let first: TrainResult;

  it('trains: loss falls, and the run, its data, metrics and checkpoints land in the store', async () => {
    first = await train({ pd, config: config() });
    expect(first.lastLoss).toBeLessThan(first.firstLoss - 0.5);

    const run = await pd.run(first.runId);
    expect(run).toMatchObject({ name: 'pretrain', kind: 'pretrain', status: 'completed', codeVersion: expect.stringMatching(/^pedigree-trainer\//) });
    expect(run.hyperparameters).toMatchObject({ lr: 0.03, context: 32, d_model: 16, batch: 4, schedule: 'warmup+linear' });
    expect(run.environment).toMatchObject({ backend: 'reference (TypeScript)', parameters: first.parameters, model: { vocab: 32, dModel: 16 } });

    const trainLoss = await pd.metrics(first.runId, 'train/loss');
    expect(trainLoss.map((p) => p.step)).toEqual([...Array(40).keys()]);
    expect((await pd.metrics(first.runId, 'lr')).map((p) => p.value)[4]).toBeCloseTo(0.03);
    expect(await pd.metrics(first.runId, 'tokens_per_s')).toHaveLength(40);
    const evalLoss = await pd.metrics(first.runId, 'eval/loss');
    expect(evalLoss.map((p) => p.step)).toEqual([0, 10, 20, 30, 40]);
    expect(evalLoss.at(-1)!.value).toBeLessThan(evalLoss[0]!.value - 0.3);

    expect(first.checkpoints.map((c) => [c.step, c.name])).toEqual([
      [20, 'pretrain@20'],
      [40, 'pretrain@40'],
    ]);
    for (const c of first.checkpoints) expect(existsSync(c.path)).toBe(true);
    const edges = await pd.api.runs.edges.query({ runId: first.runId });
    expect(edges.map((e) => [e.direction, e.role])).toEqual([
      ['used', 'train-mix'],
      ['used', 'eval-set'],
      ['produced', 'checkpoint'],
      ['produced', 'checkpoint'],
    ]);

    // the lineage reaches the datasets, with their generator, counts and histogram
    const lineage = await pd.lineage(first.runId);
    const datasets = lineage.nodes.filter((n) => n.kind === 'dataset').map((n) => n.name);
    expect(datasets.sort()).toEqual(['kv', 'web']);
    const web = await pd.api.artifacts.get.query({ artifactId: lineage.nodes.find((n) => n.name === 'web')!.id });
    expect(web.spec).toMatchObject({ source: 'synthetic/language', docs: 64, params: { branching: 2, vocab: 32 } });
    expect((web.spec.lengthHistogram as { count: number }[]).reduce((n, b) => n + b.count, 0)).toBe(64);
    const mix = lineage.nodes.find((n) => n.kind === 'datamix')!;
    expect(lineage.edges.filter((e) => e.relation === 'component' && e.to === mix.id).map((e) => e.weight)).toEqual([0.7, 0.3]);
  });

  it('a crash fails the run; resume forks it from the last checkpoint and ends where an uninterrupted run ends', async () => {
    const crash = new Error('simulated crash');
    let crashedRunId = '';
    await expect(
      train({
        pd,
        config: config({ name: 'crashy', checkpointEvery: 10 }),
        log: (line) => (crashedRunId ||= /^run ([0-9a-f]{8})/.exec(line)?.[1] ?? ''),
        onStep: (step) => {
          if (step === 24) throw crash;
        },
      }),
    ).rejects.toBe(crash);
    const crashed = (await pd.runs({ project: 'trainer-test', search: 'crashy' })).runs[0]!;
    expect(crashed.id.startsWith(crashedRunId)).toBe(true);
    expect(crashed).toMatchObject({ status: 'failed', error: 'Error: simulated crash' });

    const resumed = await train({ pd, resume: crashed.id });
    expect(resumed.startStep).toBe(20);
    expect(resumed.origin).toMatchObject({ kind: 'resume', runId: crashed.id, checkpoint: { step: 20, name: 'crashy@20' } });

    // the audit log tells both halves: the crash and a pointer to the successor on the old run…
    const oldTypes = await types(crashed.id);
    expect(oldTypes.slice(-2)).toEqual(['RunFailed', 'NoteAdded']);
    expect((await eventsOf(crashed.id, 'NoteAdded'))[0]!.text).toBe(`resumed as run ${resumed.runId} from checkpoint crashy@20 (step 20)`);
    // …and the fork at the checkpoint on the new one
    expect((await eventsOf(resumed.runId, 'RunForked'))[0]).toEqual({ fromRunId: crashed.id, fromArtifactId: resumed.origin!.checkpoint.artifactId, step: 20 });
    const view = await pd.run(resumed.runId);
    expect(view).toMatchObject({ status: 'completed', name: 'crashy', forkedFromRunId: crashed.id, forkedAtStep: 20 });
    expect(view.tags).toContain('resumed');
    expect((await pd.metrics(resumed.runId, 'train/loss')).map((p) => p.step)).toEqual([...Array(20).keys()].map((i) => i + 20));

    // optimizer state and data stream restored: bit-identical to never crashing
    const straight = await train({ pd, config: config({ name: 'straight', checkpointEvery: 10 }) });
    for (const [i, p] of straight.model.parameters().entries()) {
      expect(Buffer.from(resumed.model.parameters()[i]!.data.buffer).equals(Buffer.from(p.data.buffer)), p.name).toBe(true);
    }
  });

  it('resume marks a run left running (its process died) failed before going on', async () => {
    let stuck!: () => void;
    const hanging = new Promise<void>((resolve) => (stuck = resolve));
    let reached!: () => void;
    const atStep = new Promise<void>((resolve) => (reached = resolve));
    const abandoned = train({
      pd,
      config: config({ name: 'abandoned', steps: 20, checkpointEvery: 5 }),
      onStep: async (step) => {
        if (step === 11) {
          reached();
          await hanging; // never returns while the test runs: a process that stopped
        }
      },
    }).catch(() => {});
    await atStep;
    const run = (await pd.runs({ project: 'trainer-test', search: 'abandoned' })).runs[0]!;
    expect(run.status).toBe('running');
    const resumed = await train({ pd, resume: run.id, set: ['evalEvery=0'] });
    expect(resumed.startStep).toBe(10);
    expect((await pd.run(run.id)).error).toBe('interrupted: the process stopped without finishing; resumed from checkpoint abandoned@10 (step 10)');
    expect((await pd.run(resumed.runId)).hyperparameters).toMatchObject({ eval_every: 0 });
    stuck();
    await abandoned;
  });

  it('forks a checkpoint into a new run with a changed hyperparameter: a lineage edge to the checkpoint', async () => {
    const forked = await train({ pd, fork: { run: first.runId.slice(0, 8), checkpoint: '20' }, set: ['name=pretrain-low-lr', 'optimizer.lr=0.003', 'steps=10'] });
    expect(forked.startStep).toBe(0);
    const ckpt20 = first.checkpoints[0]!;
    expect(forked.origin).toMatchObject({ kind: 'fork', runId: first.runId, checkpoint: { artifactId: ckpt20.artifactId, step: 20 } });

    const view = await pd.run(forked.runId);
    expect(view).toMatchObject({ name: 'pretrain-low-lr', status: 'completed', forkedFromRunId: first.runId, forkedFromArtifactId: ckpt20.artifactId });
    expect(view.hyperparameters).toMatchObject({ lr: 0.003, steps: 10, d_model: 16 });
    const edges = await pd.api.runs.edges.query({ runId: forked.runId });
    expect(edges.filter((e) => e.direction === 'used').map((e) => e.role)).toEqual(['init', 'train-mix', 'eval-set']);
    const lineage = await pd.lineage(forked.runId);
    expect(lineage.edges).toContainEqual({ from: ckpt20.artifactId, to: forked.runId, relation: 'used', role: 'init' });
    expect(lineage.edges).toContainEqual({ from: first.runId, to: ckpt20.artifactId, relation: 'produced', role: 'checkpoint' });
    // starting from trained weights: already far below a fresh model's loss
    expect(forked.firstLoss).toBeLessThan(first.firstLoss - 0.5);
    expect(await types(forked.runId)).toEqual(expect.arrayContaining(['RunForked', 'NoteAdded', 'CheckpointSaved', 'RunCompleted']));
  });

  it('init.checkpoint: a file the store knows becomes a fork of its run; an unknown one is registered and used as init', async () => {
    const known = await train({ pd, config: config({ name: 'from-file', steps: 5, init: { checkpoint: first.checkpoints[1]!.path } }) });
    expect(known.origin).toMatchObject({ kind: 'fork', runId: first.runId, checkpoint: { artifactId: first.checkpoints[1]!.artifactId, step: 40 } });

    const fresh = new BigramModel(config().model);
    const file = await saveCheckpoint(path.join(dir, 'elsewhere'), fresh.parameters(), { step: '0' });
    const unknown = await train({ pd, config: config({ name: 'from-unknown-file', steps: 5, init: { checkpoint: file.path } }) });
    expect(unknown.origin).toMatchObject({ kind: 'init', runId: null, checkpoint: { digest: file.digest } });
    const edges = await pd.api.runs.edges.query({ runId: unknown.runId });
    expect(edges[0]).toMatchObject({ direction: 'used', role: 'init', artifactId: unknown.origin!.checkpoint.artifactId });
    const artifact = await pd.api.artifacts.get.query({ artifactId: unknown.origin!.checkpoint.artifactId });
    expect(artifact).toMatchObject({ kind: 'checkpoint', digest: file.digest, producedBy: null });
  });

  it('refuses to resume a completed run, and names the checkpoints a fork can start from', async () => {
    await expect(train({ pd, resume: first.runId })).rejects.toThrow(/completed; there is nothing to resume \(fork it to train on\)/);
    await expect(train({ pd, fork: { run: first.runId, checkpoint: '25' } })).rejects.toThrow(/has no checkpoint "25"; it has pretrain@20 \(step 20\), pretrain@40 \(step 40\)/);
  });
});

describe('lossWeights', () => {
  it('weights answer tokens answerWeight against 1, normalised to sum to 1, masked positions 0; none at weight 1', () => {
    const batch = { targets: Int32Array.from([5, 6, -1, 7]), answers: Uint8Array.from([0, 1, 0, 0]) };
    expect(lossWeights(batch, 1)).toBeUndefined();
    expect(Array.from(lossWeights(batch, 4)!)).toEqual([1 / 6, 4 / 6, 0, 1 / 6].map(Math.fround));
  });
});
