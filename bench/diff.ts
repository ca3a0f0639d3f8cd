/**
 * Lineage diff: two runs with six stages each (pretrain → midtrain → sft →
 * pts → dpo → eval, forked apart after pretraining) and 1M metric points on
 * each final run. The diff reads summaries from the projections, never the
 * raw points: its time is printed beside the time to read one run's raw
 * points, as a ratio.
 */
import { contentDigest, openPedigree, type MetricPointInput, type Pedigree } from '@pedigree/lineage';
import { fmtInt, fmtMs, measure, rng, withServerDatabase, type Benchmark, type Figure } from './lib.ts';

const KINDS = ['pretrain', 'midtrain', 'sft', 'pts', 'dpo', 'eval'] as const;

async function chain(pd: Pedigree, projectId: string, mix: string, side: string, pointsOnLast: number, from?: { runId: string; checkpoint: string }) {
  let prev = from;
  let last = '';
  for (const [i, kind] of KINDS.entries()) {
    if (from && i === 0) continue; // shared pretraining
    const hp = { lr: 1e-3 / (i + 1), rope_base: side === 'b' && kind === 'midtrain' ? 250_000 : 12_500, context: 128 * 2 ** Math.min(i, 2) };
    const { runId } = prev
      ? await pd.tracker.forkRun(prev.runId, { name: `${side}-${kind}`, kind, checkpointId: prev.checkpoint, hyperparameters: hp, inheritHyperparameters: false, start: true })
      : await pd.tracker.createRun({ projectId, name: `${side}-${kind}`, kind, hyperparameters: hp, inputs: [{ artifactId: mix, role: 'train-mix' }], start: true });
    const n = i === KINDS.length - 1 ? pointsOnLast : 1000;
    const rand = rng(i * 7 + side.charCodeAt(0));
    for (let done = 0; done < n; done += 50_000) {
      const batch: MetricPointInput[] = [];
      for (let j = done; j < Math.min(n, done + 50_000); j++) batch.push({ key: j % 2 ? 'train/loss' : 'lr', step: j >> 1, value: rand(), time: 0 });
      await pd.tracker.logMetrics(runId, batch);
    }
    if (kind === 'eval') await pd.tracker.recordEval(runId, { suite: 'recall', task: 'kv', contextLength: 512, score: rand() });
    const { artifactId } = await pd.tracker.saveCheckpoint(runId, { step: n, digest: contentDigest({ runId }) });
    await pd.tracker.completeRun(runId);
    prev = { runId, checkpoint: artifactId };
    last = runId;
  }
  return { last, first: from ?? prev! };
}

export const diff: Benchmark = {
  name: 'diff',
  description: "lineage diff of two 6-stage runs with 1M points each (summaries only) vs reading one run's raw points",
  async run(ctx) {
    const points = ctx.quick ? 100_000 : 1_000_000;
    const figures: Figure[] = [];
    await withServerDatabase(async ({ url }) => {
      const pd = await openPedigree({ url }, { migrate: true, role: null /* the bench owns its database: baseline tables, VACUUM */ });
      try {
        const { projectId } = await pd.tracker.createProject({ name: 'bench-diff' });
        const data = (await pd.tracker.registerArtifact({ projectId, name: 'web', spec: { kind: 'dataset', source: 'synthetic', params: { seed: 1 } } })).artifactId;
        const mix = (await pd.tracker.registerArtifact({ projectId, name: 'mix', spec: { kind: 'datamix', components: [{ artifactId: data, weight: 1 }] } })).artifactId;
        ctx.log(`recording two 6-stage lineages with ${fmtInt(points)} points on each final run…`);
        // Pretraining once, then two branches from its checkpoint.
        const shared = await chain(pd, projectId, mix, 'a', points);
        const pre = (await pd.lineage.runs({ projectId, kind: 'pretrain' })).runs[0]!;
        const preCkpt = (await pd.lineage.edgesOf(pre.id)).find((e) => e.direction === 'produced')!.artifactId;
        const other = await chain(pd, projectId, mix, 'b', points, { runId: pre.id, checkpoint: preCkpt });

        const result = await pd.lineage.diff(shared.last, other.last);
        ctx.log(`diff: ${result.stages.length} stages, common ancestor ${result.commonAncestor?.name}, ${result.stages.filter((s) => s.status === 'changed').length} changed`);
        const d = await measure(() => pd.lineage.diff(shared.last, other.last), { reps: 5, warmup: 1 });
        const raw = await measure(async () => {
          for (const key of ['train/loss', 'lr']) await pd.lineage.metricPoints(shared.last, key);
        }, { reps: 3, warmup: 1 });
        ctx.log(`diff of the two lineages    median ${fmtMs(d.median)}`);
        ctx.log(`reading one run's raw points (${fmtInt(points)})  median ${fmtMs(raw.median)}`);
        ctx.log(`raw read / diff             ${(raw.median / d.median).toFixed(1)}× (the diff reads summaries, not points)`);
        figures.push(
          { bench: 'diff', what: `diff, 6 stages × 2, ${fmtInt(points)} points per final run`, value: fmtMs(d.median) },
          { bench: 'diff', what: "reading one run's raw points (baseline)", value: fmtMs(raw.median) },
          { bench: 'diff', what: 'ratio raw read / diff', value: `${(raw.median / d.median).toFixed(1)}×` },
        );
      } finally {
        await pd.close();
      }
    });
    return figures;
  },
};
