import type { Pedigree, RunView } from '@pedigree/lineage';
import type { Command } from '../command.ts';
import { formatCount, shortId } from '../format.ts';
import { describeStore, listRuns, projectNames } from '../store.ts';
import { printLineageTree } from './lineage.ts';
import { printRunsTable } from './runs.ts';
import { recordSampleWithProgress, SAMPLE_PROJECT } from './sample.ts';

const RUNS_SHOWN = 10;

export const startCommand: Command = {
  name: 'start',
  summary: 'open the store (creating it, with a sample, when empty) and take a tour',
  usage: 'start',
  description:
    'Opens the store (the embedded one unless --url or DATABASE_URL names a server), applies pending migrations, and on an empty store records the sample lineage. Then shows the runs, the lineage of the latest training run, and commands to try next.',
  async run(ctx) {
    const pd = await ctx.openStore({ migrate: true, create: true });
    const store = describeStore(pd.database.db);
    const { term } = ctx;
    const { paint } = term;
    if (!ctx.json) term.line(`${paint.bold('Pedigree')}  ${paint.dim('store:')} ${store}`);

    const empty = (await pd.store.lastPosition()) === 0;
    const recorded = empty ? await recordSampleWithProgress(pd, term, SAMPLE_PROJECT, { quiet: ctx.json }) : null;
    const events = await pd.store.lastPosition();
    const { runs, total } = await listRuns(pd, undefined, { limit: RUNS_SHOWN });
    const featured = await latestTrainingRun(pd, runs);

    if (ctx.json) {
      return term.json({ store, kind: pd.database.db.kind, recordedSample: Boolean(recorded), events, runs, lineage: featured ? await pd.lineage.ancestry(featured.id) : null });
    }
    if (!recorded) term.line(`The store holds ${formatCount(events)} events; nothing recorded.`);

    term.line();
    if (runs.length === 0) {
      term.line('No runs yet. Record a sample with `pedigree sample`, or log from a trainer.');
    } else {
      term.line(paint.bold(`Runs${total > runs.length ? ` (newest ${runs.length} of ${total})` : ''}`));
      const names = await projectNames(pd);
      printRunsTable(term, runs, { projectNames: names.size > 1 ? names : undefined });
    }
    if (featured) {
      term.line();
      term.line(paint.bold(`Lineage of ${featured.name} (${shortId(featured.id)})`));
      printLineageTree(term, await pd.lineage.ancestry(featured.id));
    }

    term.line();
    term.line(paint.dim('Dashboard: not built yet; this version of `pedigree start` prints the tour above and exits.'));
    term.line();
    term.line(paint.bold('Try next'));
    const run = featured ? shortId(featured.id) : '<run>';
    const tips: [string, string][] = [
      ['npx pedigree runs', 'every run (--project, --kind, --status, --tag, --json)'],
      [`npx pedigree show ${run}`, 'one run: hyperparameters, inputs, metrics, evals'],
      [`npx pedigree lineage ${run}`, 'where a model came from, back to its datasets'],
      [`npx pedigree events ${run}`, "the run's audit log, hash-chained"],
      ['npx pedigree verify', 'check every hash chain'],
      ['npx pedigree replay', 'rebuild the read models from the events'],
      ['npx pedigree --help', 'everything else'],
    ];
    const widest = Math.max(...tips.map(([c]) => c.length));
    for (const [command, what] of tips) term.line(`  ${paint.cyan(command.padEnd(widest))}  ${paint.dim(what)}`);
  },
};

/** The newest run that trains (evals have the shortest lineage, and the least to show). */
async function latestTrainingRun(pd: Pedigree, newest: RunView[]): Promise<RunView | undefined> {
  const shown = newest.find((r) => r.kind !== 'eval');
  if (shown) return shown;
  const projects = await pd.lineage.projects();
  const candidates = await Promise.all(
    projects.map(async (p) => (await pd.lineage.runs({ projectId: p.id, limit: 1000 })).runs.find((r) => r.kind !== 'eval')),
  );
  return candidates.filter((r) => r !== undefined).sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime())[0];
}
