import { NOTIFY_CHANNEL } from '@pedigree/ledger';
import { recordSampleLineage, type Pedigree } from '@pedigree/lineage';
import { UsageError } from '../args.ts';
import type { Command } from '../command.ts';
import { formatCount, formatDuration, ProgressLine } from '../format.ts';
import { freeProjectName } from '../store.ts';
import type { Terminal } from '../terminal.ts';

export const SAMPLE_PROJECT = 'phi4-toy';

export const sampleCommand: Command = {
  name: 'sample',
  summary: 'record the sample lineage (a Phi-4-shaped recipe at toy scale) into a project',
  usage: 'sample [--project NAME]',
  description: `Records five pretraining datasets and their mix, pretraining, midtraining (and an ablation fork), SFT, DPO and an eval, with synthetic metric curves, through the same commands a trainer uses. The project must be new or empty; without --project the first free name of ${SAMPLE_PROJECT}, ${SAMPLE_PROJECT}-2, … is used.`,
  options: [{ name: 'project', type: 'string', value: 'NAME', description: `project to record into (default: ${SAMPLE_PROJECT}, or the next free ${SAMPLE_PROJECT}-N)` }],
  async run(ctx) {
    const requested = ctx.options.string('project');
    if (requested !== undefined && !requested.trim()) throw new UsageError('--project needs a name');
    const pd = await ctx.openStore({ create: true });
    const project = requested ?? freeProjectName(await pd.lineage.projects(), SAMPLE_PROJECT);
    await assertNoRuns(pd, project);
    const recorded = await recordSampleWithProgress(pd, ctx.term, project, { quiet: ctx.json });
    if (ctx.json) return ctx.term.json(recorded);
    ctx.term.line(`Next: pedigree runs --project ${project}`);
  },
};

/**
 * Records the sample, showing a line that counts events as they commit (the
 * store announces each append on its notification channel).
 */
export async function recordSampleWithProgress(pd: Pedigree, term: Terminal, project: string, opts: { quiet?: boolean } = {}) {
  const say = (text: string) => !opts.quiet && term.line(text);
  say(`Recording the sample lineage into project ${term.paint.bold(project)} (a Phi-4-shaped recipe at toy scale)…`);
  const firstPosition = await pd.store.lastPosition();
  const progress = new ProgressLine(opts.quiet ? null : term.progressStream, '  events recorded:');
  const unlisten = await pd.database.db.listen(NOTIFY_CHANNEL, (position) => progress.update(Number(position) - firstPosition));
  const started = performance.now();
  try {
    const result = await recordSampleLineage(pd, { project });
    const events = (await pd.store.lastPosition()) - firstPosition;
    const ms = performance.now() - started;
    const { total: runs } = await pd.lineage.runs({ projectId: result.projectId, limit: 1 });
    progress.finish();
    say(`Recorded ${formatCount(events)} events (${runs} runs) in ${formatDuration(ms)}.`);
    return { project, events, ms: Math.round(ms), ...result };
  } finally {
    progress.finish();
    await unlisten();
  }
}

/** The sample's checkpoints are content-addressed per project: a second copy in one project would clash halfway. */
async function assertNoRuns(pd: Pedigree, projectName: string): Promise<void> {
  const project = (await pd.lineage.projects()).find((p) => p.name === projectName);
  if (!project) return;
  const { total } = await pd.lineage.runs({ projectId: project.id, limit: 1 });
  if (total > 0) throw new Error(`project ${projectName} already has ${total} runs; record the sample into a new project (--project NAME)`);
}
