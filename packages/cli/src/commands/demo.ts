import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Pedigree as Client } from '@pedigree/client';
import type { RecipeResult, RecipeSize } from '@pedigree/trainer';
import { choiceEnv, choiceOption, UsageError } from '../args.ts';
import type { Command, Context } from '../command.ts';
import { formatDuration } from '../format.ts';
import { freeProjectName } from '../store.ts';
import { progressSink, recordingClient } from './train.ts';

export const DEMO_PROJECT = 'phi4-recipe';
const SIZES = ['ci', 'quick', 'full'] as const;
const BACKENDS = ['auto', 'reference', 'headlessgl', 'webasm', 'cpu'] as const;

export const demoCommand: Command = {
  name: 'demo',
  summary: 'train the Phi-4 recipe at toy scale (pretrain → midtrain → SFT → PTS → DPO, ablations, evals) into a project',
  usage: 'demo [--full] [--project NAME] [--out FILE] [--server URL]',
  description:
    'Replays the Phi-4 recipe (RECIPE.md) with the built-in trainer, every stage a run: pretraining on a Table 5-shaped mix of synthetic sources; midtraining at 4× the context with RoPE base ×25 and lr ÷10 on 30% native long key-value documents + 70% replay; three ablations forked from the same pretraining checkpoint (RoPE base unchanged, concatenated short documents, lr not lowered); SFT on arithmetic; Pivotal Token Search; DPO on its pairs. Each stage records its evals (recall at 1×–8× the pretraining context, short-context loss, arithmetic pass rate). The quick size (default) takes a few minutes; --full (≤ 20 minutes on 2 cores) also writes results.md, the toy measurements next to the report\'s claims. `npm start` records the quick demo into an empty store.',
  options: [
    { name: 'full', type: 'boolean', description: 'the full reproduction; writes results.md (see --out)' },
    { name: 'size', type: 'string', value: 'SIZE', description: 'ci (seconds), quick (default) or full' },
    { name: 'project', type: 'string', value: 'NAME', description: `project to record into (default: ${DEMO_PROJECT}, or the next free ${DEMO_PROJECT}-N)` },
    { name: 'out', type: 'string', value: 'FILE', description: 'where results.md goes (default: ./results.md with --full; none otherwise)' },
    { name: 'checkpoints', type: 'string', value: 'DIR', description: 'where checkpoint files go (default: checkpoints/ in the store\'s directory, or ./checkpoints with --server)' },
    { name: 'backend', type: 'string', value: 'MODE', description: 'reference (default: plain TypeScript, the fastest at these sizes on a CPU; bench/train-step.ts), auto (the best gpu.js mode here), headlessgl, webasm or cpu ($PEDIGREE_DEMO_BACKEND)' },
  ],
  async run(ctx) {
    const full = ctx.options.flag('full');
    const sizeOption = choiceOption(ctx.options, 'size', SIZES);
    if (full && sizeOption && sizeOption !== 'full') throw new UsageError(`--full and --size ${sizeOption} disagree; give one`);
    const size: RecipeSize = full ? 'full' : (sizeOption ?? 'quick');
    const fromEnv = choiceEnv('PEDIGREE_DEMO_BACKEND', ctx.env.demoBackend, BACKENDS);
    const backend = choiceOption(ctx.options, 'backend', BACKENDS) ?? fromEnv ?? 'reference';
    const requested = ctx.options.string('project');
    if (requested !== undefined && !requested.trim()) throw new UsageError('--project needs a name');
    const { server } = ctx;
    const out = ctx.options.string('out') ?? (size === 'full' ? 'results.md' : undefined);
    const checkpoints = ctx.options.string('checkpoints') ?? ('dir' in ctx.target && server === undefined ? path.join(ctx.target.dir, 'checkpoints') : 'checkpoints');

    const say = (line: string) => (ctx.json ? ctx.term.error(line) : ctx.term.line(line));
    const pd = await recordingClient(ctx, say);
    const project = requested ?? freeProjectName(await pd.projects(), DEMO_PROJECT);
    await assertEmpty(pd, project);
    const result = await recordDemo(ctx, pd, { project, size, backend, checkpoints, out, server, say });
    if (ctx.json) return ctx.term.json({ project, size, seconds: Math.round(result.seconds), backend: result.backend, results: out ? path.resolve(out) : null, stages: result.stages.map((s) => ({ name: s.name, kind: s.kind, runId: s.runId, evals: s.evals })) });
  },
};

/** Runs the recipe, prints where to look, writes results.md when asked (and records it as a report artifact). */
export async function recordDemo(
  ctx: Context,
  pd: Client,
  opts: { project: string; size: RecipeSize; backend: (typeof BACKENDS)[number]; checkpoints: string; out?: string; server?: string; say: (line: string) => void },
): Promise<RecipeResult> {
  const trainer = await import('@pedigree/trainer');
  const { say } = opts;
  const result = await trainer.runRecipe({ pd, project: opts.project, size: opts.size, backend: opts.backend, outputDir: opts.checkpoints, progress: progressSink(ctx), log: say });
  say('');
  say(`Recorded the ${opts.size} recipe into project ${opts.project}: ${result.stages.length + 1} runs in ${formatDuration(result.seconds * 1000)} (backend ${result.backend}).`);
  for (const c of trainer.checkClaims(result)) say(`  ${c.held === null ? '·' : c.held ? '✓' : '✗'} ${c.claim}: ${c.toy}`);
  if (opts.out) {
    const markdown = trainer.resultsMarkdown(result);
    const file = path.resolve(opts.out);
    await writeFile(file, markdown);
    await pd.registerArtifact({ project: opts.project, name: path.basename(file), spec: { kind: 'report', format: 'markdown', path: file } });
    say(`Wrote ${file}`);
  }
  const id = (name: string) => result.stages.find((s) => s.name === name)?.runId ?? '';
  if (opts.server) {
    // recorded through a server (`npm start` does): the dashboard is where to look
    say(`Open ${opts.server}/runs/${id('dpo')} (the DPO model's lineage, back to the datasets), or ${opts.server}/diff?a=${id('midtrain')}&b=${id('midtrain-concat')} (what the concatenated-data ablation changed)`);
  } else {
    say(`Next: pedigree runs --project ${opts.project}  ·  pedigree diff ${id('midtrain').slice(0, 8)} ${id('midtrain-concat').slice(0, 8)}  ·  pedigree lineage ${id('dpo').slice(0, 8)}`);
  }
  return result;
}

async function assertEmpty(pd: Client, project: string): Promise<void> {
  if (!(await pd.projects()).some((p) => p.name === project)) return;
  const runs = await pd.runs({ project, limit: 1 });
  if (runs.total > 0) throw new Error(`project ${project} already has ${runs.total} runs; record the demo into a new project (--project NAME)`);
}
