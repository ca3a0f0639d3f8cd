import { statSync } from 'node:fs';
import path from 'node:path';
import type { Pedigree as Client } from '@pedigree/client';
import { defaultHome } from '@pedigree/db';
import type { RecipeEstimate, RecipeResult, RecipeSize, WrittenReport } from '@pedigree/trainer';
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
  usage: 'demo [--full] [--project NAME] [--out FILE|DIR] [--server URL]',
  description:
    'Replays the Phi-4 recipe (arXiv 2412.08905; docs/trainer.md) with the built-in trainer, every stage a run: pretraining on a Table 5-shaped mix of synthetic sources; midtraining at 4× the context with RoPE base ×25 and lr ÷10 on 30% native long key-value documents + 70% replay; three ablations forked from the same pretraining checkpoint (RoPE base unchanged, concatenated short documents, lr not lowered); SFT on arithmetic; Pivotal Token Search; DPO on its pairs. Each stage records its evals (recall at 1×–8× the pretraining context, short-context loss, arithmetic pass rate). Before it starts it prints how long it expects to take (a training step timed at each stage\'s shape, times the steps planned), then a progress bar per stage and its evals. The quick size (default) takes under 2 minutes on 2 cores; --full about 10 (at most 20). At the end it writes results.md (the toy measurements next to the report\'s claims) and its figures (recall against context length for every stage, the SFT and PTS-DPO pass rates with ±2 SE error bars, as SVG) into results/<project>/ in the store\'s directory, or where --out says; with --server or a PostgreSQL store there is no store directory here, so they go beside the --checkpoints directory when one is given, else into $PEDIGREE_HOME or ./.pedigree. The last line printed is results.md\'s path. Each file is registered in the project as a `report` artifact (its path, the SHA-256 of its bytes). `npm start` records the quick demo into an empty store.',
  options: [
    { name: 'full', type: 'boolean', description: 'the full reproduction (about 10 minutes on 2 cores)' },
    { name: 'size', type: 'string', value: 'SIZE', description: 'ci (seconds), quick (default) or full' },
    { name: 'project', type: 'string', value: 'NAME', description: `project to record into (default: ${DEMO_PROJECT}, or the next free ${DEMO_PROJECT}-N)` },
    { name: 'out', type: 'string', value: 'FILE|DIR', description: 'where results.md goes, its figures beside it (a directory: DIR/results.md; default: results/<project>/results.md in the store\'s directory; with --server, beside --checkpoints DIR, else in $PEDIGREE_HOME or ./.pedigree)' },
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
    const outOption = ctx.options.string('out');
    if (outOption !== undefined && !outOption.trim()) throw new UsageError('--out needs a file or a directory');
    const checkpointsOption = ctx.options.string('checkpoints');
    const checkpoints = checkpointsOption ?? ('dir' in ctx.target && server === undefined ? path.join(ctx.target.dir, 'checkpoints') : 'checkpoints');

    const say = (line: string) => (ctx.json ? ctx.term.error(line) : ctx.term.line(line));
    const pd = await recordingClient(ctx, say);
    const project = requested ?? freeProjectName(await pd.projects(), DEMO_PROJECT);
    await assertEmpty(pd, project);
    const out = resultsFile(ctx, { out: outOption, checkpoints: checkpointsOption, project });
    const { result, estimate, report } = await recordDemo(ctx, pd, { project, size, backend, checkpoints, out, server, say });
    if (ctx.json) {
      const expected = new Map(estimate.stages.map((s) => [s.name, s.seconds]));
      return ctx.term.json({
        project,
        size,
        seconds: Math.round(result.seconds),
        expectedSeconds: Math.round(estimate.seconds),
        backend: result.backend,
        results: report.report.path,
        figures: report.figures.map((f) => f.path),
        reportArtifactId: report.reportArtifactId,
        figureArtifactIds: report.figureArtifactIds,
        stages: result.stages.map((s) => ({ name: s.name, kind: s.kind, runId: s.runId, seconds: round1(s.seconds), expectedSeconds: round1(expected.get(s.name) ?? NaN), evals: s.evals })),
      });
    }
  },
};

const round1 = (x: number) => (Number.isFinite(x) ? Math.round(x * 10) / 10 : null);

/**
 * Where results.md goes: --out (a directory, when it ends in / or is one:
 * DIR/results.md); else results/<project>/results.md in the store's
 * directory (the embedded store, or the one `pedigree start` serves). With
 * --server or a PostgreSQL store there is none here: beside the
 * --checkpoints directory when one is given (`pedigree start` gives its
 * store's when it records the demo), else in $PEDIGREE_HOME or ./.pedigree.
 */
export function resultsFile(ctx: Pick<Context, 'clientTarget'>, opts: { out?: string; checkpoints?: string; project: string }): string {
  if (opts.out !== undefined) {
    const isDir = /[/\\]$/.test(opts.out) || (statSync(opts.out, { throwIfNoEntry: false })?.isDirectory() ?? false);
    return path.resolve(isDir ? path.join(opts.out, 'results.md') : opts.out);
  }
  const where = ctx.clientTarget();
  const storeDir = where.kind === 'server' ? where.serving?.dir : 'dir' in where.store ? where.store.dir : undefined;
  const home = storeDir ?? (opts.checkpoints !== undefined ? path.dirname(path.resolve(opts.checkpoints)) : defaultHome());
  // a project's name may hold anything: the directory gets a tame copy of it
  const folder = opts.project.replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^\.+$/, 'project').slice(0, 100) || 'project';
  return path.resolve(home, 'results', folder, 'results.md');
}

type DemoReport = WrittenReport & { reportArtifactId: string; figureArtifactIds: string[] };

/**
 * Says how long the recipe should take, runs it (a progress bar per stage),
 * says how long it took against that, writes results.md and its figures to
 * `out` (registered as report artifacts), and prints where to look, the
 * results' path last.
 */
export async function recordDemo(
  ctx: Context,
  pd: Client,
  opts: { project: string; size: RecipeSize; backend: (typeof BACKENDS)[number]; checkpoints: string; out: string; server?: string; say: (line: string) => void },
): Promise<{ result: RecipeResult; estimate: RecipeEstimate; report: DemoReport }> {
  const trainer = await import('@pedigree/trainer');
  const { say } = opts;
  const estimate = trainer.estimateRecipe(trainer.planRecipe(opts.size), trainer.measureThroughput(opts.size, opts.backend));
  say(`Expected: ${trainer.describeDuration(estimate.seconds)} (${describeEstimate(estimate)})`);
  const expected = Object.fromEntries(estimate.stages.map((s) => [s.name, s.seconds]));
  const result = await trainer.runRecipe({ pd, project: opts.project, size: opts.size, backend: opts.backend, outputDir: opts.checkpoints, progress: progressSink(ctx), log: say, expected });
  say('');
  say(`Recorded the ${opts.size} recipe into project ${opts.project}: ${result.stages.length + 1} runs in ${formatDuration(result.seconds * 1000)} (backend ${result.backend}); expected ${trainer.describeDuration(estimate.seconds)}.`);
  const actual = new Map<string, number>(result.stages.map((s) => [s.name, s.seconds]));
  if (result.pts) actual.set('pts', result.pts.seconds);
  say(`  by stage, took / expected: ${estimate.stages.map((s) => `${s.name} ${seconds(actual.get(s.name))} / ${seconds(s.seconds)}`).join(' · ')}`);
  for (const c of trainer.checkClaims(result)) say(`  ${c.held === null ? '·' : c.held ? '✓' : '✗'} ${c.claim}: ${c.toy}`);
  const written = await trainer.writeReport(result, opts.out);
  const report = { ...written, ...(await trainer.recordReport(pd, opts.project, written)) };
  const id = (name: string) => result.stages.find((s) => s.name === name)?.runId ?? '';
  if (opts.server) {
    // recorded through a server (`npm start` does): the dashboard is where to look
    say(`Open ${opts.server}/runs/${id('dpo')} (the DPO model's lineage, back to the datasets), or ${opts.server}/diff?a=${id('midtrain')}&b=${id('midtrain-concat')} (what the concatenated-data ablation changed)`);
  } else {
    say(`Next: pedigree runs --project ${opts.project}  ·  pedigree diff ${id('midtrain').slice(0, 8)} ${id('midtrain-concat').slice(0, 8)}  ·  pedigree lineage ${id('dpo').slice(0, 8)}`);
  }
  say(`Figures: ${report.figures.map((f) => f.name).join(', ')} (beside results.md; each file recorded as a report artifact of project ${opts.project})`);
  say(`Results: ${report.report.path}`);
  return { result, estimate, report };
}

const seconds = (s: number | undefined) => (s === undefined ? '—' : `${Math.round(s)}s`);

/** "pretrain 7m 30s · midtrain and 3 ablations 1m 23s · SFT 50.4 s · PTS and DPO 6.1 s, evals included; a training step of 8×64 tokens takes 160 ms here now, backend …" */
function describeEstimate(e: RecipeEstimate): string {
  const groups = new Map<string, number>();
  const ablations = e.stages.filter((s) => s.name.startsWith('midtrain-')).length;
  for (const s of e.stages) {
    const group = s.name === 'midtrain' || s.name.startsWith('midtrain-') ? `midtrain${ablations ? ` and ${ablations} ablation${ablations > 1 ? 's' : ''}` : ''}` : s.name === 'pts' || s.name === 'dpo' ? 'PTS and DPO' : s.name === 'sft' ? 'SFT' : s.name;
    groups.set(group, (groups.get(group) ?? 0) + s.seconds);
  }
  const [shape, step] = Object.entries(e.throughput.stepSeconds)[0] ?? ['', NaN];
  const parts = [...groups].map(([g, s]) => `${g} ${formatDuration(s * 1000)}`).join(' · ');
  return `${parts}, evals included; a training step of ${shape.replace('x', '×')} tokens takes ${formatDuration(step * 1000)} here now, backend ${e.throughput.backend}`;
}

async function assertEmpty(pd: Client, project: string): Promise<void> {
  if (!(await pd.projects()).some((p) => p.name === project)) return;
  const runs = await pd.runs({ project, limit: 1 });
  if (runs.total > 0) throw new Error(`project ${project} already has ${runs.total} runs; record the demo into a new project (--project NAME)`);
}
