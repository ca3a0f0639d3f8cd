import { RUN_KINDS } from '@pedigree/ledger';
import type { RunView } from '@pedigree/lineage';
import { choiceOption, intOption } from '../args.ts';
import type { Command } from '../command.ts';
import { formatAgo, formatJson, formatNumber, paintStatus, shortId, table, type Column } from '../format.ts';
import { listRuns, projectNames } from '../client.ts';
import type { Terminal } from '../terminal.ts';

export const RUN_STATUSES = ['created', 'running', 'completed', 'failed'] as const;
const DEFAULT_LIMIT = 50;

export const runsCommand: Command = {
  name: 'runs',
  summary: 'list runs, newest first',
  usage: 'runs [--project NAME] [--kind K] [--status S] [--tag T] [--limit N]',
  description: 'Lists runs of one project, or of every project. The ID column is the first 8 characters of the run id: enough for `show`, `events` and `lineage`.',
  options: [
    { name: 'project', type: 'string', value: 'NAME', description: 'only this project' },
    { name: 'kind', type: 'string', value: 'K', description: `only runs of this kind (${RUN_KINDS.join(', ')})` },
    { name: 'status', type: 'string', value: 'S', description: `only runs in this status (${RUN_STATUSES.join(', ')})` },
    { name: 'tag', type: 'string', value: 'T', description: 'only runs with this tag' },
    { name: 'limit', type: 'string', value: 'N', description: `at most N runs (default ${DEFAULT_LIMIT})` },
  ],
  async run(ctx) {
    const filter = {
      kind: choiceOption(ctx.options, 'kind', RUN_KINDS),
      status: choiceOption(ctx.options, 'status', RUN_STATUSES),
      tag: ctx.options.string('tag'),
      limit: intOption(ctx.options, 'limit', { min: 1, max: 1000 }) ?? DEFAULT_LIMIT,
    };
    const client = await ctx.client();
    const { runs, total } = await listRuns(client, ctx.options.string('project'), filter);
    if (ctx.json) return ctx.term.json(runs);
    if (runs.length === 0) {
      ctx.term.line(total === 0 && !filter.kind && !filter.status && !filter.tag ? 'No runs yet. Record a sample with `pedigree sample`.' : 'No runs match.');
      return;
    }
    const names = await projectNames(client);
    printRunsTable(ctx.term, runs, { projectNames: names.size > 1 ? names : undefined });
    if (total > runs.length) ctx.term.line(ctx.term.paint.dim(`${runs.length} of ${total} runs (--limit N for more)`));
  },
};

/** Hyperparameters worth a column, most telling first. */
const HYPERPARAMETER_PREFERENCE = ['lr', 'learning_rate', 'context', 'context_length', 'rope_base', 'batch', 'batch_size', 'epochs', 'beta', 'seed'];
const HYPERPARAMETERS_SHOWN = 3;

/**
 * The few hyperparameter keys that tell these runs apart: keys whose value
 * differs between them (all keys for a single run), preferred keys first.
 */
export function keyHyperparameters(runs: readonly RunView[]): string[] {
  const keys = [...new Set(runs.flatMap((r) => Object.keys(r.hyperparameters)))];
  const varying = runs.length < 2 ? keys : keys.filter((k) => new Set(runs.map((r) => JSON.stringify(r.hyperparameters[k] ?? null))).size > 1);
  const rank = (k: string) => {
    const i = HYPERPARAMETER_PREFERENCE.indexOf(k);
    return i < 0 ? HYPERPARAMETER_PREFERENCE.length : i;
  };
  return varying.sort((a, b) => rank(a) - rank(b) || a.localeCompare(b)).slice(0, HYPERPARAMETERS_SHOWN);
}

export function printRunsTable(term: Terminal, runs: readonly RunView[], opts: { projectNames?: Map<string, string> } = {}): void {
  const { paint } = term;
  const hpKeys = keyHyperparameters(runs);
  const columns: Column<RunView>[] = [
    { header: 'ID', cell: (r) => shortId(r.id), paint: (t) => paint.yellow(t) },
    ...(opts.projectNames ? [{ header: 'PROJECT', cell: (r: RunView) => opts.projectNames!.get(r.projectId) ?? shortId(r.projectId), shrink: true }] : []),
    { header: 'NAME', cell: (r) => r.name, shrink: true, paint: (t) => paint.bold(t) },
    { header: 'KIND', cell: (r) => r.kind },
    { header: 'STATUS', cell: (r) => r.status, paint: (t) => paintStatus(t, paint) },
    {
      header: 'HYPERPARAMETERS',
      cell: (r) =>
        hpKeys
          .filter((k) => k in r.hyperparameters)
          .map((k) => `${k}=${formatJson(r.hyperparameters[k])}`)
          .join(' '),
      shrink: true,
    },
    { header: 'TRAIN/LOSS', cell: (r) => (r.metrics['train/loss'] === undefined ? '' : formatNumber(r.metrics['train/loss'])), align: 'right' },
    { header: 'CREATED', cell: (r) => formatAgo(r.createdAt), paint: (t) => paint.dim(t) },
  ];
  for (const line of table(runs, columns, { width: term.width, paint })) term.line(line);
}
