import type { Json, RunKind } from '@pedigree/ledger';
import { contentDigest } from './ids.ts';
import type { Tracker } from './commands.ts';

/**
 * A small Phi-4-shaped history (the Phi-4 report, arXiv 2412.08905), recorded through the
 * tracker like any user's: five pretraining sources mixed as in Table 5, a
 * pretraining run, midtraining (30% long data / 70% replay, RoPE base ×25,
 * LR ÷10, 4× context) and one ablation fork, SFT, DPO, evals. Metrics are
 * synthetic curves, not training results; the trainer records real ones.
 */
export async function recordSampleLineage(pd: { tracker: Tracker }, opts: { project?: string; steps?: number; seed?: number } = {}) {
  const t = pd.tracker;
  const steps = opts.steps ?? 400;
  const projectId = await t.ensureProject(opts.project ?? 'phi4-toy');
  let seed = opts.seed ?? 7;
  const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);

  const dataset = (name: string, source: string, params: Record<string, Json>, tokens: number) =>
    t.registerArtifact({ projectId, name, spec: { kind: 'dataset', source, params, tokens, docs: Math.round(tokens / 120) } });
  const sources: [string, number][] = [
    ['web', 0.15],
    ['web_rewrites', 0.15],
    ['synthetic', 0.4],
    ['code', 0.2],
    ['acquired', 0.1],
  ];
  const pre = [];
  for (const [s, w] of sources) pre.push({ id: (await dataset(`${s}-v1`, `synthetic-language/${s}`, { seed: 1, docLength: 128 }, 2_000_000)).artifactId, w });
  const pretrainMix = await t.registerArtifact({
    projectId,
    name: 'pretrain-mix',
    spec: { kind: 'datamix', components: pre.map((p) => ({ artifactId: p.id, weight: p.w })) },
  });
  const longDocs = await dataset('long-kv-native', 'json-kv/native', { seed: 2, minTokens: 256, maxTokens: 1024 }, 400_000);
  const concatDocs = await dataset('long-kv-concatenated', 'json-kv/concatenated', { seed: 2, pieces: 4 }, 400_000);
  const midMix = (name: string, long: string) =>
    t.registerArtifact({
      projectId,
      name,
      spec: {
        kind: 'datamix',
        components: [
          { artifactId: long, weight: 0.3, filter: { minTokens: 256, upweight: { tokens: 512, factor: 2 } } },
          { artifactId: pretrainMix.artifactId, weight: 0.7 },
        ],
      },
    });
  const midtrainMix = await midMix('midtrain-mix', longDocs.artifactId);
  const concatMix = await midMix('midtrain-mix-concat', concatDocs.artifactId);
  const sftData = await dataset('arith-sft', 'arithmetic/sft', { seed: 3, digits: 2 }, 50_000);
  const evalset = await t.registerArtifact({ projectId, name: 'kv-recall', spec: { kind: 'evalset', source: 'json-kv/recall', params: { lengths: [128, 256, 512, 1024] } } });

  const curve = async (runId: string, from: number, to: number, n: number, lr: number) => {
    const points = [];
    for (let s = 0; s < n; s++) {
      const loss = to + (from - to) * Math.exp((-4 * s) / n) + (rand() - 0.5) * 0.05;
      points.push({ key: 'train/loss', step: s, value: loss }, { key: 'lr', step: s, value: lr * Math.min(1, (s + 1) / (n / 10)) * (1 - s / n) });
    }
    await t.logMetrics(runId, points);
  };
  const stage = async (
    name: string,
    kind: RunKind,
    hp: Record<string, Json>,
    inputs: { artifactId: string; role: string }[],
    loss: [number, number],
    fork?: { runId: string; artifactId: string },
  ) => {
    const { runId } = fork
      ? await t.forkRun(fork.runId, { name, kind, hyperparameters: hp, inputs, checkpointId: fork.artifactId, inheritHyperparameters: false, codeVersion: 'sample', start: true })
      : await t.createRun({ projectId, name, kind, hyperparameters: hp, inputs, codeVersion: 'sample', environment: { trainer: 'sample' }, start: true });
    await curve(runId, loss[0], loss[1], steps, Number(hp.lr ?? 1e-3));
    // Stands in for the digest of a checkpoint file: unique per run, so the sample can be recorded again.
    const ckpt = await t.saveCheckpoint(runId, { name: `${name}@${steps}`, step: steps, digest: contentDigest({ runId, name, steps }), manifest: { wte: [256, 64] } });
    return { runId, checkpoint: ckpt.artifactId };
  };

  const base = { layers: 2, d_model: 64, heads: 4, vocab: 256, seed: 1, batch: 16, weight_decay: 0.1 };
  const pretrain = await stage('pretrain', 'pretrain', { ...base, context: 128, rope_base: 500, lr: 3e-3, schedule: 'warmup+linear' }, [{ artifactId: pretrainMix.artifactId, role: 'train-mix' }], [5.5, 2.1]);
  const midHp = { ...base, context: 512, rope_base: 12500, lr: 3e-4, schedule: 'warmup+linear' };
  const midtrain = await stage('midtrain', 'midtrain', midHp, [{ artifactId: midtrainMix.artifactId, role: 'train-mix' }], [2.4, 1.9], {
    runId: pretrain.runId,
    artifactId: pretrain.checkpoint,
  });
  const concat = await stage('midtrain-concat', 'midtrain', midHp, [{ artifactId: concatMix.artifactId, role: 'train-mix' }], [2.4, 2.0], { runId: pretrain.runId, artifactId: pretrain.checkpoint });
  const sft = await stage('sft', 'sft', { ...midHp, lr: 1e-4, epochs: 2 }, [{ artifactId: sftData.artifactId, role: 'train-set' }], [1.9, 0.8], {
    runId: midtrain.runId,
    artifactId: midtrain.checkpoint,
  });
  await t.changeHyperparameter(sft.runId, { key: 'lr', value: 5e-5, step: Math.floor(steps / 2), reason: 'loss plateau' });
  const dpo = await stage('dpo', 'dpo', { ...midHp, lr: 2e-5, beta: 0.1 }, [], [0.69, 0.45], { runId: sft.runId, artifactId: sft.checkpoint });
  const evalRun = await t.createRun({ projectId, name: 'eval', kind: 'eval', inputs: [{ artifactId: dpo.checkpoint, role: 'model' }, { artifactId: evalset.artifactId, role: 'eval-set' }], start: true });
  for (const [i, ctx] of [128, 256, 512, 1024].entries()) {
    await t.recordEval(evalRun.runId, { suite: 'kv-recall', task: 'exact-match', contextLength: ctx, score: Math.max(0, 1 - 0.15 * i - rand() * 0.05), n: 64 });
  }
  for (const r of [pretrain, midtrain, concat, sft, dpo]) await t.completeRun(r.runId);
  await t.completeRun(evalRun.runId);
  await t.addTag(midtrain.runId, 'baseline');
  await t.addNote(midtrain.runId, 'Phi-4 §3.3: 30% new long data, 70% replay; RoPE base raised; LR ÷10.');
  return { projectId, runs: { pretrain: pretrain.runId, midtrain: midtrain.runId, midtrainConcat: concat.runId, sft: sft.runId, dpo: dpo.runId, eval: evalRun.runId } };
}
