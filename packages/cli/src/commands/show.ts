import type { Pedigree as Client } from '@pedigree/client';
import type { Json } from '@pedigree/ledger';
import { getRun } from '../client.ts';
import type { Command } from '../command.ts';
import { formatDuration, formatJson, formatNumber, formatTimestamp, paintStatus, shortId, table, truncateAnsi, type Column } from '../format.ts';
import type { Terminal } from '../terminal.ts';

export const showCommand: Command = {
  name: 'show',
  summary: 'one run: hyperparameters, inputs and outputs, metrics, evals, notes',
  usage: 'show <run>',
  description: 'Everything recorded about one run. Hyperparameters changed during the run are listed with the step they changed at.',
  args: [{ name: 'run' }],
  async run(ctx) {
    const client = await ctx.client();
    const details = await runDetails(client, ctx.args[0]!);
    if (ctx.json) return ctx.term.json(details);
    printRun(ctx.term, details);
  },
};

type RunDetails = Awaited<ReturnType<typeof runDetails>>;

async function runDetails(client: Client, idOrPrefix: string) {
  const run = await getRun(client, idOrPrefix);
  const { api } = client;
  const runId = { runId: run.id };
  const [project, hyperparameters, edges, metrics, evals, notes, forkedFrom, artifactList] = await Promise.all([
    client.call('get project', () => api.projects.get.query({ project: run.projectId })),
    client.call('hyperparameters', () => api.runs.hyperparameters.query(runId)),
    client.call('edges', () => api.runs.edges.query(runId)),
    client.call('metric keys', () => api.metrics.keys.query(runId)),
    client.evals(run.id),
    client.call('notes', () => api.runs.notes.query(runId)),
    run.forkedFromRunId ? client.run(run.forkedFromRunId) : undefined,
    client.call('artifacts', () => api.artifacts.list.query({ project: run.projectId })),
  ]);
  const artifacts = new Map(artifactList.map((a) => [a.id, a]));
  const withArtifact = (e: (typeof edges)[number]) => {
    const a = artifacts.get(e.artifactId);
    return { ...e, name: a?.name ?? null, kind: a?.kind ?? null, producedBy: a?.producedBy ?? null };
  };
  return {
    run,
    project: project?.name ?? null,
    forkedFrom: forkedFrom ? { id: forkedFrom.id, name: forkedFrom.name } : null,
    hyperparameters,
    inputs: edges.filter((e) => e.direction === 'used').map(withArtifact),
    outputs: edges.filter((e) => e.direction === 'produced').map(withArtifact),
    metrics,
    evals,
    notes,
  };
}

function printRun(term: Terminal, d: RunDetails): void {
  const { paint } = term;
  const { run } = d;
  const section = (title: string) => {
    term.line();
    term.line(paint.bold(title));
  };
  const rows = <Row>(items: readonly Row[], columns: readonly Column<Row>[]) => {
    for (const line of table(items, columns, { width: term.width - 2, paint })) term.line(`  ${line}`);
  };

  term.line(`${paint.bold(run.name)}  ${paint.dim(run.kind)}  ${paintStatus(run.status, paint)}`);
  const facts: [string, string][] = [
    ['id', run.id],
    ['project', d.project ?? run.projectId],
    ['created', formatTimestamp(run.createdAt)],
    ...(run.startedAt ? [['started', formatTimestamp(run.startedAt)] as [string, string]] : []),
    ...(run.endedAt ? [['ended', `${formatTimestamp(run.endedAt)}${run.startedAt ? `  (${formatDuration(run.endedAt.getTime() - run.startedAt.getTime())})` : ''}`] as [string, string]] : []),
    ...(d.forkedFrom
      ? [['forked from', `${d.forkedFrom.name} ${shortId(d.forkedFrom.id)}${run.forkedAtStep !== null ? ` at step ${run.forkedAtStep}` : ''}`] as [string, string]]
      : []),
    ...(run.codeVersion ? [['code', run.codeVersion] as [string, string]] : []),
    ...(run.tags.length ? [['tags', run.tags.join(', ')] as [string, string]] : []),
    ...(Object.keys(run.environment).length ? [['environment', formatEnvironment(run.environment)] as [string, string]] : []),
  ];
  for (const [label, value] of facts) term.line(truncateAnsi(`  ${paint.dim(label.padEnd(12))}${value}`, term.width));
  if (run.error) term.line(`  ${paint.dim('error'.padEnd(12))}${paint.red(run.error)}`);

  section('Hyperparameters');
  if (d.hyperparameters.length === 0) term.line(paint.dim('  none declared'));
  else rows(hyperparameterRows(d.hyperparameters), [
      { header: 'KEY', cell: (h) => h.key },
      { header: 'VALUE', cell: (h) => h.value, shrink: true },
      { header: 'CHANGED', cell: (h) => h.changes, shrink: true, paint: (t) => paint.yellow(t) },
    ]);

  section('Inputs and outputs');
  const edges = [...d.inputs.map((e) => ({ ...e, arrow: 'in' })), ...d.outputs.map((e) => ({ ...e, arrow: 'out' }))];
  if (edges.length === 0) term.line(paint.dim('  none'));
  else rows(edges, [
      { header: '', cell: (e) => e.arrow, paint: (t) => paint.dim(t) },
      { header: 'ROLE', cell: (e) => e.role, paint: (t) => paint.magenta(t) },
      { header: 'ARTIFACT', cell: (e) => e.name ?? '?', shrink: true, paint: (t) => paint.cyan(t) },
      { header: 'KIND', cell: (e) => e.kind ?? '?' },
      { header: 'STEP', cell: (e) => (e.step === null ? '' : String(e.step)), align: 'right' },
      { header: 'ID', cell: (e) => shortId(e.artifactId), paint: (t) => paint.dim(t) },
    ]);

  section('Metrics');
  if (d.metrics.length === 0) term.line(paint.dim('  none logged'));
  else rows(d.metrics, [
      { header: 'KEY', cell: (m) => m.key, shrink: true },
      { header: 'POINTS', cell: (m) => String(m.count), align: 'right' },
      { header: 'STEPS', cell: (m) => `${m.firstStep}–${m.lastStep}`, align: 'right' },
      { header: 'LAST', cell: (m) => formatNumber(m.last), align: 'right', paint: (t) => paint.bold(t) },
      { header: 'MIN', cell: (m) => formatNumber(m.min), align: 'right' },
      { header: 'MAX', cell: (m) => formatNumber(m.max), align: 'right' },
    ]);

  if (d.evals.length) {
    section('Evals');
    rows(d.evals, [
      { header: 'SUITE', cell: (e) => e.suite },
      { header: 'TASK', cell: (e) => e.task, shrink: true },
      { header: 'CONTEXT', cell: (e) => (e.contextLength === null ? '' : String(e.contextLength)), align: 'right' },
      { header: 'SCORE', cell: (e) => formatNumber(e.score), align: 'right', paint: (t) => paint.bold(t) },
      { header: 'N', cell: (e) => (e.n === null ? '' : String(e.n)), align: 'right' },
    ]);
  }

  if (d.notes.length) {
    section('Notes');
    for (const n of d.notes) term.line(`  ${paint.dim(`${formatTimestamp(n.createdAt)}${n.author ? ` ${n.author}` : ''}`)}  ${n.text}`);
  }
}

/** One row per key: its declared value, then each mid-run change with the step it took effect. */
function hyperparameterRows(history: { key: string; value: Json; step: number | null; reason: string | null }[]) {
  const byKey = new Map<string, { key: string; value: string; changes: string[] }>();
  for (const h of history) {
    const row = byKey.get(h.key) ?? { key: h.key, value: '', changes: [] };
    byKey.set(h.key, row);
    if (h.step === null) row.value = formatJson(h.value);
    else row.changes.push(`→ ${formatJson(h.value)} at step ${h.step}${h.reason ? ` (${h.reason})` : ''}`);
  }
  return [...byKey.values()].map((r) => ({ ...r, changes: r.changes.join(', ') }));
}

function formatEnvironment(env: Record<string, Json>): string {
  return Object.entries(env)
    .map(([k, v]) => `${k}=${formatJson(v)}`)
    .join(' ');
}
