/**
 * OpenLineage out: a realistic lineage (the sample recipe: datasets, data
 * mixes with filters, pretraining, a midtraining fork and its ablation, SFT,
 * DPO, an eval; plus a failed run, a killed one, one still running, one never
 * started, two runs sharing a name) exported as RunEvents, every event valid
 * under the official 2-0-2 schema and every facet under its own facet schema
 * (Pedigree's facets under theirs and the base definitions), on both stores;
 * the same events over HTTP (auth like every request) and from the CLI.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey, CUSTOM_FACETS, exportOpenLineage, PRODUCER, STANDARD_FACETS, type OpenLineageDataset, type OpenLineageRunEvent } from '@pedigree/api';
import { contentDigest, recordSampleLineage, type Pedigree } from '@pedigree/lineage';
import { serveInProcess } from './support/inprocess.ts';
import { openLineageValidator, specUnavailable, type OpenLineageValidator } from './support/openlineage.ts';
import { pedigreeCommand } from './support/server.ts';
import { backends } from './support/stores.ts';

const specMissing = specUnavailable();
const NOW = new Date('2030-01-01T00:00:00.000Z');

async function collect(events: AsyncIterable<OpenLineageRunEvent>): Promise<OpenLineageRunEvent[]> {
  const out: OpenLineageRunEvent[] = [];
  for await (const e of events) out.push(e);
  return out;
}

const parseNdjson = (text: string) =>
  text
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as OpenLineageRunEvent);

/** The sample, and around it the states a run can be in. */
async function recordLineage(pd: Pedigree) {
  const t = pd.tracker;
  const sample = await recordSampleLineage(pd, { project: 'phi4-toy', steps: 30 });
  const projectId = sample.projectId;
  const [mix] = await pd.lineage.artifacts(projectId, 'datamix');
  const failed = await t.createRun({ projectId, name: 'pretrain-bigger', kind: 'pretrain', hyperparameters: { lr: 6e-3 }, inputs: [{ artifactId: mix!.id, role: 'train-mix' }], start: true });
  await t.failRun(failed.runId, 'loss diverged at step 12 (NaN)', { at: Date.parse('2029-06-01T10:00:00Z') });
  const killed = await t.forkRun(sample.runs.sft, { name: 'sft-killed', start: true });
  await t.failRun(killed.runId, 'stopped by the user', { killed: true });
  const running = await t.forkRun(sample.runs.pretrain, { name: 'midtrain', kind: 'midtrain', start: true }); // a second "midtrain": names collide
  await t.saveCheckpoint(running.runId, { step: 5, digest: contentDigest({ running: 1 }), manifest: { wte: [256, 64] } });
  await t.recordEval(running.runId, { suite: 'kv-recall', task: 'exact-match', contextLength: 512, score: 0.25, n: 32 });
  const created = await t.createRun({ projectId, name: 'queued', kind: 'eval' });
  const other = await t.createProject({ name: 'other-project' });
  await t.createRun({ projectId: other.projectId, name: 'elsewhere', kind: 'custom', start: true });
  return { ...sample, failed: failed.runId, killed: killed.runId, running: running.runId, created: created.runId, otherProjectId: other.projectId };
}

type Lineage = Awaited<ReturnType<typeof recordLineage>>;

for (const { backend, skip } of await backends()) {
  describe.skipIf(skip || specMissing)(`OpenLineage export on ${backend.name}`, () => {
    let pd: Pedigree;
    let world: Lineage;
    let events: OpenLineageRunEvent[];
    let validator: OpenLineageValidator;
    const ofRun = (runId: string) => events.filter((e) => e.run.runId === runId);
    const dataset = (list: OpenLineageDataset[], name: string) => list.find((d) => d.name === name);

    beforeAll(async () => {
      pd = await backend.open();
      world = await recordLineage(pd);
      validator = openLineageValidator();
      events = await collect(exportOpenLineage(pd, { projects: [world.projectId], now: NOW }));
    });
    afterAll(() => backend.dispose());

    it('writes events every one of which the official schema accepts, each facet under its own schema', () => {
      expect(events.length).toBeGreaterThan(10);
      for (const e of events) expect(validator.problems(e), `${e.eventType} ${e.job.name}`).toEqual([]);
      // Every facet Pedigree writes was checked against the schema its _schemaURL names.
      const checked = [...validator.checkedWith.keys()];
      for (const url of Object.values(STANDARD_FACETS)) expect(checked, url).toContain(url.split('#')[0]);
      for (const url of Object.values(CUSTOM_FACETS)) expect(checked, url).toContain(url);
      // Each standard facet says which schema it follows: the one it was checked against.
      for (const e of events) {
        const facets = [...Object.entries(e.run.facets), ...Object.entries(e.job.facets ?? {}), ...[...e.inputs, ...e.outputs].flatMap((d) => Object.entries(d.facets ?? {}))];
        for (const [key, f] of facets) {
          expect(f._producer).toBe(PRODUCER);
          if (key in STANDARD_FACETS) expect(f._schemaURL).toBe(STANDARD_FACETS[key as keyof typeof STANDARD_FACETS]);
        }
      }
    });

    it("gives each run a START at its start and its end (COMPLETE, FAIL, ABORT; RUNNING as of now), in time order, one project only", async () => {
      const runs = (await pd.lineage.runs({ projectId: world.projectId, limit: 100 })).runs;
      expect(new Set(events.map((e) => e.run.runId))).toEqual(new Set(runs.map((r) => r.id)));
      for (const r of runs) {
        const [start, end, ...rest] = ofRun(r.id);
        expect(rest).toEqual([]);
        expect(start).toMatchObject({ eventType: 'START', eventTime: (r.startedAt ?? r.createdAt).toISOString(), producer: PRODUCER, schemaURL: 'https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent' });
        expect(start!.outputs).toEqual([]);
        const expected = ({ completed: 'COMPLETE', failed: r.killed ? 'ABORT' : 'FAIL', running: 'RUNNING' } as Record<string, string>)[r.status];
        expect(end?.eventType, r.name).toBe(expected);
        if (r.status === 'completed' || r.status === 'failed') expect(end!.eventTime).toBe(r.endedAt!.toISOString());
      }
      expect(ofRun(world.running)[1]!.eventTime).toBe(NOW.toISOString());
      expect(ofRun(world.failed)[1]!.eventTime).toBe('2029-06-01T10:00:00.000Z');
      const times = events.map((e) => Date.parse(e.eventTime));
      expect(times).toEqual([...times].sort((a, b) => a - b));
      for (const e of events) expect(e.eventTime).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
    });

    it('names jobs after runs within the project, made unique with the short run id where names repeat', () => {
      for (const e of events) expect(e.job.namespace).toBe('phi4-toy');
      const jobs = new Map<string, string>();
      for (const e of events) {
        expect(jobs.get(e.job.name) ?? e.run.runId, `job ${e.job.name} names two runs`).toBe(e.run.runId);
        jobs.set(e.job.name, e.run.runId);
      }
      expect(ofRun(world.runs.pretrain)[0]!.job).toMatchObject({ name: 'pretrain', facets: { jobType: { processingType: 'BATCH', integration: 'PEDIGREE', jobType: 'PRETRAIN' } } });
      expect(ofRun(world.runs.midtrain)[0]!.job.name).toBe(`midtrain [${world.runs.midtrain.slice(0, 8)}]`);
      expect(ofRun(world.running)[0]!.job.name).toBe(`midtrain [${world.running.slice(0, 8)}]`);
    });

    it('writes inputs and outputs as datasets with the digest as their version, data mixes with weights and filters', async () => {
      const [start, complete] = ofRun(world.runs.midtrain);
      const mixArtifact = (await pd.lineage.artifacts(world.projectId, 'datamix')).find((a) => a.name === 'midtrain-mix')!;
      const mix = dataset(start!.inputs, 'datamix/midtrain-mix')!;
      expect(mix).toMatchObject({
        namespace: 'pedigree://phi4-toy',
        facets: {
          version: { datasetVersion: mixArtifact.digest },
          pedigree_artifact: { artifactId: mixArtifact.id, kind: 'datamix', name: 'midtrain-mix', digest: mixArtifact.digest },
        },
        inputFacets: { pedigree_usage: { roles: ['train-mix'] } },
      });
      const components = (mix.facets!.pedigree_datamix as unknown as { components: { name: string; weight: number; filter: unknown; version: string }[] }).components;
      expect(components.map((c) => [c.name, c.weight, c.filter])).toEqual([
        ['dataset/long-kv-native', 0.3, { minTokens: 256, upweight: { tokens: 512, factor: 2 } }],
        ['datamix/pretrain-mix', 0.7, {}],
      ]);
      expect(components[1]!.version).toMatch(/^sha256:/);
      // The checkpoint it was forked from is an input (init), a model.
      const init = start!.inputs.find((d) => (d.inputFacets?.pedigree_usage as { roles?: string[] } | undefined)?.roles?.includes('init'))!;
      expect(init).toMatchObject({ name: 'checkpoint/pretrain@30', facets: { datasetType: { datasetType: 'MODEL' } } });
      // Outputs at the end only: its checkpoint.
      expect(complete!.outputs.map((d) => [d.name, d.outputFacets?.pedigree_usage])).toEqual([['checkpoint/midtrain@30', expect.objectContaining({ roles: ['checkpoint'], step: 30 })]]);
      expect(complete!.inputs).toEqual(start!.inputs);
      // The pretraining mix with its five sources, weighted as in Phi-4's Table 5.
      const pre = dataset(ofRun(world.runs.pretrain)[0]!.inputs, 'datamix/pretrain-mix')!;
      expect((pre.facets!.pedigree_datamix as unknown as { components: { name: string; weight: number }[] }).components.map((c) => [c.name, c.weight])).toEqual([
        ['dataset/web-v1', 0.15],
        ['dataset/web_rewrites-v1', 0.15],
        ['dataset/synthetic-v1', 0.4],
        ['dataset/code-v1', 0.2],
        ['dataset/acquired-v1', 0.1],
      ]);
    });

    it('gives forks and later stages the parent facet (with the root of the chain), naming the parent job as exported', () => {
      expect(ofRun(world.runs.pretrain)[0]!.run.facets.parent).toBeUndefined();
      expect(ofRun(world.runs.midtrain)[0]!.run.facets.parent).toMatchObject({ run: { runId: world.runs.pretrain }, job: { namespace: 'phi4-toy', name: 'pretrain' } });
      expect(ofRun(world.runs.midtrain)[0]!.run.facets.parent).not.toHaveProperty('root');
      expect(ofRun(world.runs.dpo)[0]!.run.facets.parent).toMatchObject({
        run: { runId: world.runs.sft },
        job: { name: 'sft' },
        root: { run: { runId: world.runs.pretrain }, job: { namespace: 'phi4-toy', name: 'pretrain' } },
      });
    });

    it('carries hyperparameters (with mid-run changes), eval scores and the error as facets', () => {
      const sft = ofRun(world.runs.sft)[0]!.run.facets;
      expect(sft.pedigree_hyperparameters).toMatchObject({ values: { lr: 5e-5, epochs: 2, rope_base: 12500 }, changes: [{ key: 'lr', value: 5e-5, step: 15, reason: 'loss plateau' }] });
      expect(sft.pedigree_run).toMatchObject({ runId: world.runs.sft, kind: 'sft', status: 'completed', project: 'phi4-toy', forkedFromArtifactId: expect.any(String) });
      const evalEnd = ofRun(world.runs.eval)[1]!;
      expect((evalEnd.run.facets.pedigree_evals as unknown as { results: unknown[] }).results).toHaveLength(4);
      expect(evalEnd.run.facets.pedigree_evals).toMatchObject({ results: [{ suite: 'kv-recall', task: 'exact-match', contextLength: 128, n: 64 }, {}, {}, {}] });
      expect(ofRun(world.runs.eval)[0]!.run.facets.pedigree_evals).toBeUndefined(); // scores are known at the end
      expect(ofRun(world.failed)[1]!.run.facets.errorMessage).toMatchObject({ message: 'loss diverged at step 12 (NaN)', programmingLanguage: 'unknown' });
      expect(ofRun(world.killed)[1]!.run.facets.errorMessage).toMatchObject({ message: 'stopped by the user' });
      const running = ofRun(world.running)[1]!;
      expect(running.outputs.map((d) => d.name)).toEqual(['checkpoint/checkpoint@5']);
      expect(running.run.facets.pedigree_evals).toMatchObject({ results: [{ score: 0.25 }] });
      expect(ofRun(world.created)).toHaveLength(1);
    });

    it('serves the same events as NDJSON at GET /api/v1/lineage/export: a key sees its project only; no key is 401, another project 403', async () => {
      const key = (await createApiKey(pd.database.db, world.projectId, 'export')).key;
      const otherKey = (await createApiKey(pd.database.db, world.otherProjectId, 'other')).key;
      const server = await serveInProcess(pd, 'keys');
      try {
        const get = (query: string, apiKey?: string) => fetch(`${server.url}/api/v1/lineage/export${query}`, { headers: apiKey ? { authorization: `Bearer ${apiKey}` } : {} });
        const res = await get('', key);
        expect(res.status).toBe(200);
        expect(res.headers.get('content-type')).toMatch(/^application\/x-ndjson/);
        const served = parseNdjson(await res.text());
        // RUNNING is stamped with the time of the export: the server's is now, not NOW, which also moves it in the order.
        const withoutNow = (list: OpenLineageRunEvent[]) =>
          list.map((e) => (e.eventType === 'RUNNING' ? { ...e, eventTime: '' } : e)).sort((a, b) => `${a.run.runId}${a.eventType}`.localeCompare(`${b.run.runId}${b.eventType}`));
        expect(withoutNow(served)).toEqual(withoutNow(events));
        expect(parseNdjson(await (await get('?project=phi4-toy', key)).text())).toHaveLength(events.length);

        const anonymous = await get('');
        expect(anonymous.status).toBe(401);
        expect(await anonymous.json()).toMatchObject({ error: expect.stringContaining('API key'), field: null });
        const forbidden = await get('?project=phi4-toy', otherKey);
        expect(forbidden.status).toBe(403);
        const own = parseNdjson(await (await get('', otherKey)).text());
        expect(own.map((e) => [e.job.name, e.eventType])).toEqual([
          ['elsewhere', 'START'],
          ['elsewhere', 'RUNNING'],
        ]);
        expect((await fetch(`${server.url}/api/v1/lineage/export`, { method: 'POST', headers: { authorization: `Bearer ${key}` } })).status).toBe(405);
      } finally {
        await server.close();
      }
    });

    it('exports every project when open and asked for none', async () => {
      const all = await collect(exportOpenLineage(pd, { projects: 'all', now: NOW }));
      expect(new Set(all.map((e) => e.job.namespace))).toEqual(new Set(['phi4-toy', 'other-project']));
      for (const e of all) expect(validator.problems(e)).toEqual([]);
    });
  });
}

describe.skipIf(specMissing)('pedigree export --openlineage', () => {
  let home: string;
  beforeAll(async () => {
    home = mkdtempSync(path.join(os.tmpdir(), 'pedigree-ol-export-'));
    const sample = await pedigreeCommand(['sample', '--home', home, '--project', 'cli-sample']);
    expect(sample, sample.stderr).toMatchObject({ code: 0 });
  });
  afterAll(() => rmSync(home, { recursive: true, force: true }));

  it('prints NDJSON on stdout, every event valid; --out writes the same into a file', async () => {
    const printed = await pedigreeCommand(['export', '--openlineage', '--home', home]);
    expect(printed, printed.stderr).toMatchObject({ code: 0, stderr: '' });
    const events = parseNdjson(printed.stdout);
    const validator = openLineageValidator();
    expect(events.map((e) => e.eventType).filter((t) => t === 'START')).toHaveLength(6);
    for (const e of events) expect(validator.problems(e)).toEqual([]);

    const file = path.join(home, 'lineage.ndjson');
    const written = await pedigreeCommand(['export', '--openlineage', '--project', 'cli-sample', '--out', file, '--home', home]);
    expect(written, written.stderr).toMatchObject({ code: 0, stdout: `wrote ${events.length} OpenLineage events to ${file}\n` });
    expect(parseNdjson(readFileSync(file, 'utf8'))).toEqual(events);
  });

  it('needs the format flag, and a project that exists', async () => {
    expect(await pedigreeCommand(['export', '--home', home])).toMatchObject({ code: 2, stderr: 'pedigree: export needs a format: --openlineage (see `pedigree export --help`)\n' });
    const missing = await pedigreeCommand(['export', '--openlineage', '--project', 'nope', '--home', home]);
    expect(missing).toMatchObject({ code: 1, stdout: '' });
    expect(missing.stderr).toContain('project "nope" not found');
  });
});
