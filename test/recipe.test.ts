import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { connect, type Pedigree } from '@pedigree/client';
import { checkClaims, loadCheckpoint, loadPairs, RECIPE_PRESETS, recordReport, resultsMarkdown, runRecipe, TOY, writeReport, type RecipeResult } from '@pedigree/trainer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pedigreeCommand, pedigreeServer } from './support/server.ts';

/**
 * The whole toy recipe at its `ci` size (seconds), into a real embedded store
 * through the client, then read back as a user would: every stage a run with
 * its inputs and outputs, the data mixes' weights and filters as declared,
 * hyperparameters as declared, checkpoints that load and match their
 * digests, evals recorded, ablations that diff to exactly what they change,
 * results.md and its figures written and recorded as report artifacts.
 * Then the same through the real binary: `pedigree demo` (the expected time
 * said first, the results beside the store), and `pedigree start` on an
 * empty store recording the demo in the background.
 */
let dir: string;
let pd: Pedigree;
let result: RecipeResult;
const PROJECT = 'recipe-test';

type Artifact = Awaited<ReturnType<Pedigree['api']['artifacts']['get']['query']>>;

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'pedigree-recipe-'));
  pd = await connect({ embedded: path.join(dir, 'store'), handleSignals: false });
  result = await runRecipe({ pd, project: PROJECT, size: 'ci', backend: 'reference', outputDir: path.join(dir, 'checkpoints') });
}, 240_000);

afterAll(async () => {
  await pd?.close();
  rmSync(dir, { recursive: true, force: true });
});

const runNamed = async (name: string) => {
  const { runs } = await pd.runs({ project: PROJECT, limit: 100 });
  const matches = runs.filter((r) => r.name === name);
  expect(matches, `exactly one run named ${name}`).toHaveLength(1);
  return pd.run(matches[0]!.id);
};
const edges = (runId: string) => pd.api.runs.edges.query({ runId });
const artifact = (artifactId: string): Promise<Artifact> => pd.api.artifacts.get.query({ artifactId });
const input = async (runId: string, role: string): Promise<Artifact> => {
  const e = (await edges(runId)).filter((x) => x.direction === 'used' && x.role === role);
  expect(e, `run ${runId} uses one ${role}`).toHaveLength(1);
  return artifact(e[0]!.artifactId);
};
const sha256 = (file: string) => `sha256:${createHash('sha256').update(readFileSync(file)).digest('hex')}`;
type ReportSpec = { kind: 'report'; format: string; path: string };
/** The project's report artifacts, by format, each checked against the file it names. */
async function reportArtifacts(client: Pedigree, project: string): Promise<{ markdown: Artifact[]; svg: Artifact[] }> {
  const reports = (await client.api.artifacts.list.query({ project, kind: 'report' })) as Artifact[];
  for (const r of reports) expect(sha256((r.spec as ReportSpec).path), r.name).toBe(r.digest);
  return { markdown: reports.filter((r) => (r.spec as ReportSpec).format === 'markdown'), svg: reports.filter((r) => (r.spec as ReportSpec).format === 'svg') };
}
const components = (mix: Artifact) => (mix.spec as { components: { artifactId: string; weight: number; filter?: Record<string, unknown> }[] }).components;

describe('the toy recipe, recorded', () => {
  it('records every stage as a completed run of its kind', async () => {
    const expected: [string, string][] = [
      ['pretrain', 'pretrain'],
      ['midtrain', 'midtrain'],
      ['midtrain-rope-unchanged', 'midtrain'],
      ['midtrain-concat', 'midtrain'],
      ['midtrain-lr-not-lowered', 'midtrain'],
      ['sft', 'sft'],
      ['pts', 'pts'],
      ['dpo', 'dpo'],
      ['dpo-rpo', 'dpo'],
    ];
    const { runs, total } = await pd.runs({ project: PROJECT, limit: 100 });
    expect(total).toBe(expected.length);
    for (const [name, kind] of expected) {
      const run = runs.find((r) => r.name === name);
      expect(run, name).toBeDefined();
      expect(run!.kind).toBe(kind);
      expect(run!.status).toBe('completed');
    }
  });

  it('declares the pretraining mix with Table 5 weights over five tagged datasets', async () => {
    const pretrain = await runNamed('pretrain');
    const mix = await input(pretrain.id, 'train-mix');
    expect(mix.spec.kind).toBe('datamix');
    const parts = await Promise.all(components(mix).map(async (c) => ({ ...c, artifact: await artifact(c.artifactId) })));
    expect(Object.fromEntries(parts.map((p) => [p.artifact.name, p.weight]))).toEqual({ web: 0.15, web_rewrites: 0.15, synthetic: 0.4, code: 0.2, acquired: 0.1 });
    for (const p of parts) {
      expect(p.artifact.spec.kind).toBe('dataset');
      const spec = p.artifact.spec as { docs: number; tokens: number; lengthHistogram: { count: number }[]; params: { seed: number } };
      expect(spec.docs).toBeGreaterThan(0);
      expect(spec.tokens).toBeGreaterThan(spec.docs);
      expect(spec.lengthHistogram.reduce((n, b) => n + b.count, 0)).toBe(spec.docs);
      expect(typeof spec.params.seed).toBe('number');
    }
    expect((await input(pretrain.id, 'eval-set')).spec.kind).toBe('evalset');
  });

  it('midtrains on 30% native long data, filtered and upweighted, and 70% replay of the very pretraining datasets', async () => {
    const [pretrain, midtrain] = [await runNamed('pretrain'), await runNamed('midtrain')];
    const mix = await input(midtrain.id, 'train-mix');
    const [long, replay] = components(mix);
    expect(long!.weight).toBe(0.3);
    expect(long!.filter).toEqual({ minTokens: 2 * TOY.pretrainContext, upweight: { tokens: 3 * TOY.pretrainContext, factor: 2 } });
    const longData = await artifact(long!.artifactId);
    expect(longData.name).toBe('long-native');
    expect((longData.spec as { source: string }).source).toBe('synthetic/kv-recall');
    expect(replay!.weight).toBe(0.7);
    const replayMix = await artifact(replay!.artifactId);
    expect(replayMix.spec.kind).toBe('datamix');
    const pretrainMix = await input(pretrain.id, 'train-mix');
    // the same datasets, not regenerated look-alikes
    expect(components(replayMix).map((c) => c.artifactId)).toEqual(components(pretrainMix).map((c) => c.artifactId));
    expect(components(replayMix).map((c) => c.weight)).toEqual(components(pretrainMix).map((c) => c.weight));
    // the concatenated ablation: the same share, the same filter, other content
    const concatMix = await input((await runNamed('midtrain-concat')).id, 'train-mix');
    const concatLong = await artifact(components(concatMix)[0]!.artifactId);
    expect((concatLong.spec as { source: string }).source).toBe('synthetic/kv-concat');
    expect(components(concatMix)[0]!.filter).toEqual(long!.filter);
  });

  it('declares the hyperparameters each stage changes, and forks each from the stage before', async () => {
    const hp = async (name: string) => (await pd.api.runs.hyperparameters.query({ runId: (await runNamed(name)).id })) as unknown as Record<string, unknown>;
    const hyper = async (name: string) => {
      const h = await hp(name);
      return (Array.isArray(h) ? Object.fromEntries((h as { key: string; value: unknown }[]).map((x) => [x.key, x.value])) : h) as Record<string, number | string>;
    };
    const pre = await hyper('pretrain');
    const mid = await hyper('midtrain');
    expect(pre).toMatchObject({ context: TOY.pretrainContext, rope_base: TOY.ropeBase });
    expect(mid).toMatchObject({ context: TOY.pretrainContext * 4, rope_base: TOY.ropeBase * 25 });
    expect(mid.lr).toBeCloseTo((pre.lr as number) / 10, 12);
    expect(await hyper('midtrain-rope-unchanged')).toMatchObject({ rope_base: TOY.ropeBase, lr: mid.lr, context: mid.context });
    expect(await hyper('midtrain-lr-not-lowered')).toMatchObject({ lr: pre.lr, rope_base: mid.rope_base });
    expect(await hyper('dpo')).toMatchObject({ beta: expect.any(Number), pairs: result.pts!.pairs.length });

    const pretrain = await runNamed('pretrain');
    for (const name of ['midtrain', 'midtrain-rope-unchanged', 'midtrain-concat', 'midtrain-lr-not-lowered']) {
      expect((await runNamed(name)).forkedFromRunId, name).toBe(pretrain.id);
    }
    expect((await runNamed('sft')).forkedFromRunId).toBe((await runNamed('midtrain')).id);
    expect((await runNamed('dpo')).forkedFromRunId).toBe((await runNamed('sft')).id);
  });

  it('saves checkpoints that load and match their digests', async () => {
    const checkpoints = (await pd.api.artifacts.list.query({ project: PROJECT, kind: 'checkpoint' })) as Artifact[];
    expect(checkpoints.length).toBeGreaterThanOrEqual(7); // five midtrain-ish stages, pretrain, sft, dpo
    for (const c of checkpoints) {
      const file = (c.spec as { path: string }).path;
      const loaded = await loadCheckpoint(file, { digest: c.digest });
      expect(Object.keys((c.spec as { manifest: Record<string, number[]> }).manifest).sort()).toEqual([...loaded.tensors.keys()].sort());
    }
  });

  it('runs PTS on the SFT model and trains DPO on the pairs it produced', async () => {
    const [sft, pts, dpo] = [await runNamed('sft'), await runNamed('pts'), await runNamed('dpo')];
    const model = await input(pts.id, 'model');
    expect(model.producedBy).toBe(sft.id);
    const produced = (await edges(pts.id)).filter((e) => e.direction === 'produced' && e.role === 'pairs');
    expect(produced).toHaveLength(1);
    const pairs = await artifact(produced[0]!.artifactId);
    expect((await input(dpo.id, 'train-pairs')).id).toBe(pairs.id);
    const spec = pairs.spec as { source: string; docs: number; params: { path: string; p_gap: number; rollouts: number; questions: number; kept: number } };
    expect(spec.source).toBe('pts/pairs');
    expect(spec.params.p_gap).toBe(0.2);
    expect(spec.docs).toBe(result.pts!.pairs.length);
    // the file is the artifact's content
    expect(await loadPairs(spec.params.path, pairs.digest)).toEqual(result.pts!.pairs);
  });

  it('records the evals: recall at 1×–8× and short-context loss around midtraining, arithmetic after SFT and DPO', async () => {
    const contexts = TOY.recallContexts.map((f) => f * TOY.pretrainContext);
    for (const name of ['pretrain', 'midtrain', 'midtrain-rope-unchanged', 'midtrain-concat', 'midtrain-lr-not-lowered']) {
      const evals = await pd.evals((await runNamed(name)).id);
      const recall = evals.filter((e) => e.task === 'kv-recall');
      expect(recall.map((e) => e.contextLength).sort((a, b) => a! - b!), name).toEqual(contexts);
      for (const e of recall) expect(e.score).toBeGreaterThanOrEqual(0), expect(e.score).toBeLessThanOrEqual(100);
      expect(evals.filter((e) => e.task === 'short-context-loss'), name).toHaveLength(1);
    }
    for (const name of ['sft', 'dpo', 'dpo-rpo']) {
      const evals = await pd.evals((await runNamed(name)).id);
      expect(evals.filter((e) => e.task === 'arithmetic-pass'), name).toHaveLength(1);
    }
    // the report's DPO has no NLL term, the other run has one: both say so in their hyperparameters
    const hp = async (name: string) => {
      const h = (await pd.api.runs.hyperparameters.query({ runId: (await runNamed(name)).id })) as unknown;
      return (Array.isArray(h) ? Object.fromEntries((h as { key: string; value: unknown }[]).map((x) => [x.key, x.value])) : h) as Record<string, unknown>;
    };
    expect((await hp('dpo')).nll_weight).toBe(0);
    expect((await hp('dpo-rpo')).nll_weight).toBe(RECIPE_PRESETS.ci.rpo.nll);
    // what was recorded is what the recipe measured
    const mid = result.stages.find((s) => s.name === 'midtrain')!;
    const stored = (await pd.evals(mid.runId)).find((e) => e.task === 'short-context-loss')!;
    expect(stored.score).toBeCloseTo(mid.evals.shortContextLoss!, 3);
  });

  it('diffs an ablation to exactly what it changes', async () => {
    const [mid, rope, concat] = [await runNamed('midtrain'), await runNamed('midtrain-rope-unchanged'), await runNamed('midtrain-concat')];
    const ropeDiff = await pd.diff(mid.id, rope.id);
    expect(ropeDiff.commonAncestor?.type).toBe('checkpoint');
    const ropeStage = ropeDiff.stages.find((s) => s.status === 'changed')!;
    expect(ropeStage.hyperparameters.map((h) => h.path)).toEqual(['rope_base']);
    expect(ropeStage.inputs).toEqual([]);

    const concatDiff = await pd.diff(mid.id, concat.id);
    const concatStage = concatDiff.stages.find((s) => s.status === 'changed')!;
    expect(concatStage.hyperparameters).toEqual([]);
    const mixDiff = concatStage.inputs.find((i) => i.role === 'train-mix')!;
    expect(mixDiff.components.map((c) => `${c.name} ${c.change}`).sort()).toEqual(['long-concatenated added', 'long-native removed']);
  });

  it('writes results.md with a verdict for each claim, from the recorded figures', () => {
    const checks = checkClaims(result);
    expect(checks.map((c) => c.claim)).toHaveLength(6);
    for (const c of checks) expect(typeof c.held).toBe('boolean');
    const md = resultsMarkdown(result);
    expect(md).toContain('| claim | the report | toy measurement | at toy scale |');
    expect(md.match(/\*\*(held|did not hold)\*\*/g)).toHaveLength(6);
    for (const s of result.stages) expect(md).toContain(s.runId.slice(0, 8));
  });

  it('writes results.md with its figures beside it and records all three as report artifacts', async () => {
    const file = path.join(dir, 'report', 'results.md');
    const written = await writeReport(result, file);
    const recorded = await recordReport(pd, PROJECT, written);
    const md = readFileSync(file, 'utf8');
    expect(written.figures.map((f) => f.name)).toEqual(['results-recall-by-context.svg', 'results-pass-rate.svg']);
    for (const f of written.figures) {
      expect(path.dirname(f.path)).toBe(path.dirname(file));
      expect(md).toContain(`](${f.name})`); // a relative link
      const svg = readFileSync(f.path, 'utf8');
      expect(svg).toMatch(/^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"[^>]*>[\s\S]*<\/svg>\n$/);
    }
    // every stage with recall is a line of the recall figure
    const recallSvg = readFileSync(written.figures[0]!.path, 'utf8');
    for (const name of ['pretrain', 'midtrain', 'midtrain-rope-unchanged', 'midtrain-concat', 'midtrain-lr-not-lowered']) expect(recallSvg).toContain(`data-name="${name}"`);
    const { markdown, svg } = await reportArtifacts(pd, PROJECT);
    expect(markdown.map((a) => a.id)).toEqual([recorded.reportArtifactId]);
    expect(svg.map((a) => a.id).sort()).toEqual([...recorded.figureArtifactIds].sort());
    expect(svg.map((a) => a.name).sort()).toEqual(written.figures.map((f) => f.name).sort());
  });
});

describe('pedigree demo and npm start', () => {
  it('`pedigree demo --size ci` says how long it expects, records the recipe into a new project of the embedded store, and writes the results beside it', async () => {
    const home = path.join(dir, 'demo-home');
    const res = await pedigreeCommand(['demo', '--size', 'ci', '--home', home, '--backend', 'reference', '--json'], { timeoutMs: 240_000 });
    expect(res.code, res.stderr).toBe(0);
    const summary = JSON.parse(res.stdout) as { project: string; stages: { name: string }[]; results: string; figures: string[]; expectedSeconds: number; reportArtifactId: string };
    expect(summary.project).toBe('phi4-recipe');
    expect(summary.stages.map((s) => s.name)).toContain('dpo');
    // the expected time comes before the first stage, the comparison after the last
    expect(res.stderr).toMatch(/^Expected: about \d+ seconds \(pretrain .*\)$/m);
    expect(res.stderr.indexOf('Expected: ')).toBeLessThan(res.stderr.indexOf('── [1/9] pretrain'));
    expect(res.stderr).toMatch(/expected about \d+ seconds\.\n {2}by stage, took \/ expected: pretrain \d+s \/ \d+s/);
    expect(summary.expectedSeconds).toBeGreaterThanOrEqual(0);
    // results.md and its figures in the store's directory, the path said last
    const results = path.join(home, 'results', 'phi4-recipe', 'results.md');
    expect(summary.results).toBe(results);
    expect(res.stderr.trimEnd().split('\n').at(-1)).toBe(`Results: ${results}`);
    expect(readFileSync(results, 'utf8')).toContain('at toy scale');
    expect(summary.figures).toEqual([path.join(path.dirname(results), 'results-recall-by-context.svg'), path.join(path.dirname(results), 'results-pass-rate.svg')]);
    for (const f of summary.figures) expect(readFileSync(f, 'utf8')).toContain('<svg');
    expect(existsSync(path.join(home, 'checkpoints'))).toBe(true);
    const client = await connect({ embedded: home, handleSignals: false });
    try {
      const { markdown, svg } = await reportArtifacts(client, 'phi4-recipe');
      expect(markdown.map((a) => [a.id, (a.spec as ReportSpec).path])).toEqual([[summary.reportArtifactId, results]]);
      expect(svg.map((a) => (a.spec as ReportSpec).path).sort()).toEqual([...summary.figures].sort());
    } finally {
      await client.close();
    }
    // a second demo into the same project is refused, and records nothing
    const again = await pedigreeCommand(['demo', '--size', 'ci', '--home', home, '--project', 'phi4-recipe'], { timeoutMs: 120_000 });
    expect(again.code).not.toBe(0);
    expect(again.stderr).toMatch(/already has \d+ runs/);
    const runs = await pedigreeCommand(['runs', '--home', home, '--project', 'phi4-recipe', '--json']);
    expect(JSON.parse(runs.stdout) as unknown[]).toHaveLength(summary.stages.length + 1);
  }, 300_000);

  it('`pedigree start` on an empty store records the demo in the background while serving', async () => {
    const home = path.join(dir, 'start-home');
    const server = await pedigreeServer({ home, demo: 'ci', env: { PEDIGREE_DEMO_BACKEND: 'reference' } });
    try {
      const info = await server.start();
      expect(info.demo).toBe('ci');
      const client = await connect({ url: server.url, handleSignals: false });
      try {
        // the report is the demo's last write: after DPO, results.md's artifact
        const deadline = Date.now() + 180_000;
        let reports: Artifact[] = [];
        while (Date.now() < deadline) {
          reports = (await client.api.artifacts.list.query({ project: 'phi4-recipe', kind: 'report' }).catch(() => [])) as Artifact[];
          if (reports.some((r) => (r.spec as ReportSpec).format === 'markdown')) break;
          await new Promise((r) => setTimeout(r, 1_000));
        }
        expect(reports, `the demo finished; server output:\n${server.stderr.slice(-2000)}`).toHaveLength(3);
        const { runs, total } = await client.runs({ project: 'phi4-recipe', limit: 100 });
        expect(total).toBe(9);
        expect(runs.find((r) => r.name === 'dpo')?.status).toBe('completed');
        expect(runs.find((r) => r.name === 'dpo-rpo')?.status).toBe('completed');
        // recorded through the server, written beside the store it serves (start hands the demo its checkpoints directory)
        const { markdown } = await reportArtifacts(client, 'phi4-recipe');
        expect((markdown[0]!.spec as ReportSpec).path).toBe(path.join(home, 'results', 'phi4-recipe', 'results.md'));
      } finally {
        await client.close();
      }
    } finally {
      const stopped = await server.stop();
      expect(stopped.leftover).toBe(false);
    }
    // a second start finds a store that is not empty: no second demo
    const again = await pedigreeServer({ home, demo: 'ci' });
    try {
      expect((await again.start()).demo).toBeNull();
    } finally {
      await again.stop();
    }
  }, 300_000);
});
