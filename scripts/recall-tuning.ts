/**
 * One recall-tuning run (issue 15): the `--full` recipe's pretraining stage
 * with `key=value` changes, recorded into a store's `recall-tuning` project
 * (the tuning is lineage too), then recall at 1× and 2× the pretraining
 * context, queries shuffled (the score) and in document order (a diagnostic),
 * recorded as evals on the run. docs/recall-tuning.md logs the runs.
 *
 *   npx tsx scripts/recall-tuning.ts --home /tmp/tune-store --name w4-lr15 answerWeight=4 optimizer.lr=0.015
 *   npx tsx scripts/recall-tuning.ts --fork <run id> --name more …   (more steps from a run's last checkpoint)
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { connect } from '@pedigree/client';
import { applyOverrides, evalEvents, parseConfig, recallEval, stageConfigs, TOY, train } from '@pedigree/trainer';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { home: { type: 'string', default: '/tmp/tune-store' }, name: { type: 'string', default: 'pretrain' }, docs: { type: 'string', default: '32' }, fork: { type: 'string' } },
});
const home = path.resolve(values.home!);
const base = stageConfigs('full', 'recall-tuning', { outputDir: path.join(home, 'checkpoints'), backend: 'reference' }).pretrain;
const config = parseConfig(applyOverrides({ ...base, name: values.name, tags: ['recall-tuning'], evalEvery: 0, logEvery: 10 }, positionals), `tuning (${positionals.join(' ')})`);
const T = config.model.context;

const pd = await connect({ embedded: path.join(home, 'store') });
const started = performance.now();
let lastShown = 0;
const result = await train({
  pd,
  config,
  ...(values.fork ? { fork: { run: values.fork } } : {}), // go on from another tuning run's last checkpoint (weights; fresh optimizer)
  log: (line) => console.log(line),
  onStep: (step, loss) => {
    if (performance.now() - lastShown > 30_000) {
      lastShown = performance.now();
      console.log(`  step ${step} loss ${loss.toFixed(3)} ${((performance.now() - started) / 1000).toFixed(0)} s`);
    }
  },
  onEnd: async ({ run, model, step }) => {
    // the eval asks in the training documents' format (values: words or digits)
    const kv = config.data.sources.find((s) => s.generator === 'kv-recall')?.params as { values?: 'words' | 'digits'; layout?: 'key-val' | 'key' } | undefined;
    const recall = recallEval(model, [T, 2 * T], { ...TOY.kv, values: kv?.values ?? TOY.kv.values, layout: kv?.layout ?? TOY.kv.layout, docs: Number(values.docs), seed: TOY.dataSeed + 4 });
    for (const e of evalEvents({ recall }, step)) await run.eval(e);
    const seconds = (performance.now() - started) / 1000;
    const tokens = config.steps * config.batchSize * T;
    console.log(
      `RESULT ${run.id} ${values.name} [${positionals.join(' ')}] tokens ${tokens} train ${seconds.toFixed(0)} s  ` +
        recall.map((r) => `recall@${r.contextLength} shuffled ${r.score.toFixed(1)}% in-order ${r.inOrder?.toFixed(1)}% (n ${r.n})`).join('  '),
    );
  },
});
console.log(`done in ${((performance.now() - started) / 1000).toFixed(0)} s; eval/loss ${result.evalLoss.toFixed(3)}`);
await pd.close();
