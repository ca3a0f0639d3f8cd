import type { Json } from '@pedigree/ledger';
import type { LineageDiff, StageDiff, StageRef, ValueChange } from '@pedigree/lineage';
import { getRun } from '../client.ts';
import type { Command } from '../command.ts';
import { formatJson, formatNumber, shortId, truncateAnsi, type Paint } from '../format.ts';
import type { Terminal } from '../terminal.ts';

export const diffCommand: Command = {
  name: 'diff',
  summary: "what exactly differs between two runs' lineages",
  usage: 'diff <a> <b> [--all]',
  description:
    'Walks both runs back to their datasets, finds the common ancestor (a shared run, or the checkpoint both started from) and the first divergence, aligns the stages by kind, and for each pair shows what differs: hyperparameters (with the change of numbers), mid-run changes, code version, environment, inputs and data mixes component by component (weights, filters, regenerated datasets), then metric summaries and evals side by side (b − a). Stages that are shared or identical are folded away unless --all. --json prints the whole diff.',
  options: [{ name: 'all', type: 'boolean', description: 'show shared and identical stages, and unchanged metrics and evals' }],
  args: [{ name: 'a' }, { name: 'b' }],
  async run(ctx) {
    const client = await ctx.client();
    const [a, b] = [await getRun(client, ctx.args[0]!), await getRun(client, ctx.args[1]!)];
    const diff = await client.diff(a.id, b.id, { showAll: ctx.options.flag('all') });
    if (ctx.json) return ctx.term.json(diff);
    printDiff(ctx.term, diff);
  },
};

const stageName = (s: StageRef | null, paint: Paint) => (s ? `${paint.bold(s.name)} ${paint.dim(`(${s.kind}, ${shortId(s.runId)})`)}` : paint.dim('—'));
const value = (v: Json | undefined) => (v === undefined ? '—' : formatJson(v));
const signed = (n: number) => (n > 0 ? `+${formatNumber(n)}` : formatNumber(n));

function change(c: ValueChange, paint: Paint): string {
  if (c.change === 'added') return `${paint.green('+')} ${c.path || '(value)'}: ${paint.green(value(c.b))}`;
  if (c.change === 'removed') return `${paint.red('-')} ${c.path || '(value)'}: ${paint.red(value(c.a))}`;
  const rel = c.relative !== undefined && Number.isFinite(c.relative) ? ` (${c.relative >= 0 ? '+' : ''}${(c.relative * 100).toFixed(Math.abs(c.relative) < 0.1 ? 1 : 0)}%)` : '';
  const times = typeof c.a === 'number' && typeof c.b === 'number' && c.a !== 0 && Math.abs(c.b / c.a) >= 2 ? ` ×${formatNumber(c.b / c.a)}` : typeof c.a === 'number' && typeof c.b === 'number' && c.b !== 0 && Math.abs(c.a / c.b) >= 2 ? ` ÷${formatNumber(c.a / c.b)}` : '';
  return `${paint.yellow('~')} ${c.path || '(value)'}: ${paint.red(value(c.a))} → ${paint.green(value(c.b))}${paint.dim(times || rel)}`;
}

export function printDiff(term: Terminal, diff: LineageDiff): void {
  const { paint } = term;
  const out = (text = '', indent = 0) => term.line(truncateAnsi(`${' '.repeat(indent)}${text}`, term.width));
  out(`${paint.bold('a')} ${stageName(diff.a, paint)}   ${paint.bold('b')} ${stageName(diff.b, paint)}`);
  if (diff.identical) {
    out(paint.green(diff.a.runId === diff.b.runId ? 'The same run: nothing differs.' : 'Nothing differs: same lineage, same configuration, same results.'));
    return;
  }
  const ca = diff.commonAncestor;
  out(ca ? `common ancestor: ${paint.cyan(ca.name)} ${paint.dim(`(${ca.type === 'run' ? `${ca.kind} run` : 'checkpoint'}, ${shortId(ca.id)})`)}` : paint.yellow('no common ancestor: the two lineages share no run or checkpoint'));
  if (diff.firstDivergence) out(`first divergence: a ${stageName(diff.firstDivergence.a, paint)}, b ${stageName(diff.firstDivergence.b, paint)}`);
  const folded = diff.stages.filter((s) => s.collapsed);
  if (folded.length) out(paint.dim(`${folded.length} stage${folded.length > 1 ? 's' : ''} shared or identical (${folded.map((s) => s.kind).join(' → ')}), folded; --all shows them`));
  for (const stage of diff.stages) if (!stage.collapsed) printStage(stage, out, paint);
}

function printStage(s: StageDiff, out: (t?: string, indent?: number) => void, paint: Paint): void {
  out();
  const label =
    s.status === 'added' ? paint.green('only in b') : s.status === 'removed' ? paint.red('only in a') : s.status === 'changed' ? paint.yellow('changed') : paint.dim(s.status);
  out(`${paint.bold(s.kind)}  ${label}   a ${stageName(s.a, paint)}   b ${stageName(s.b, paint)}`);
  if (s.status === 'added' || s.status === 'removed') return;
  if (s.hyperparameters.length) {
    out('hyperparameters', 2);
    for (const c of s.hyperparameters) out(change(c, paint), 4);
  }
  if (s.midRunChanges) {
    out('changed mid-run', 2);
    const fmt = (cs: { key: string; value: Json; step: number; reason: string | null }[]) => (cs.length ? cs.map((c) => `${c.key}=${value(c.value)} at step ${c.step}${c.reason ? ` (${c.reason})` : ''}`).join(', ') : 'nothing');
    out(`a: ${fmt(s.midRunChanges.a)}`, 4);
    out(`b: ${fmt(s.midRunChanges.b)}`, 4);
  }
  if (s.codeVersion) out(`code version: ${paint.red(s.codeVersion.a ?? '—')} → ${paint.green(s.codeVersion.b ?? '—')}`, 2);
  if (s.environment.length) {
    out('environment', 2);
    for (const c of s.environment) out(change(c, paint), 4);
  }
  for (const i of s.inputs) {
    const name = (r: { name: string; digest: string } | null) => (r ? `${r.name} ${paint.dim(r.digest.slice(7, 15))}` : '—');
    out(`input ${paint.magenta(i.role)}: ${i.change === 'added' ? paint.green(`+ ${name(i.b)}`) : i.change === 'removed' ? paint.red(`- ${name(i.a)}`) : `${name(i.a)} → ${name(i.b)}`}`, 2);
    for (const c of i.spec) out(change(c, paint), 4);
    for (const c of i.components) {
      const w = c.weight;
      const weight = w.a !== null && w.b !== null ? (w.a === w.b ? `weight ${formatNumber(w.a)}` : `weight ${formatNumber(w.a)} → ${formatNumber(w.b)}`) : `weight ${formatNumber((w.a ?? w.b)!)}`;
      const mark = c.change === 'added' ? paint.green('+') : c.change === 'removed' ? paint.red('-') : paint.yellow('~');
      // A component on one side only: its filter as it is; on both: what changed in it.
      const filter = c.change !== 'changed' && c.filter.length ? `  filter ${formatJson(Object.fromEntries(c.filter.map((f) => [f.path, f.change === 'removed' ? f.a : f.change === 'added' ? f.b : f.b])))}` : '';
      out(`${mark} ${paint.cyan(c.name)}  ${weight}${filter}${c.digest ? paint.yellow(`  content changed ${c.digest.a.slice(7, 15)} → ${c.digest.b.slice(7, 15)}`) : ''}`, 4);
      if (c.change === 'changed') for (const f of c.filter) out(change({ ...f, path: `filter.${f.path}` } as ValueChange, paint), 6);
      for (const f of c.spec) out(change(f, paint), 6);
    }
  }
  if (s.metrics.length) {
    out('metrics (last, min, max; b − a on last)', 2);
    const width = Math.max(...s.metrics.map((m) => m.key.length));
    const sum = (m: { last: number; min: number; max: number } | null) => (m ? `${formatNumber(m.last)} [${formatNumber(m.min)}, ${formatNumber(m.max)}]` : '—');
    for (const m of s.metrics) out(`${m.key.padEnd(width)}  a ${sum(m.a)}   b ${sum(m.b)}${m.delta !== null ? `   ${paint.dim(signed(m.delta))}` : ''}`, 4);
  }
  if (s.evals.length) {
    out('evals (b − a)', 2);
    for (const e of s.evals) {
      const what = `${e.suite}/${e.task}${e.contextLength ? ` @${e.contextLength}` : ''}`;
      out(`${what}  a ${e.a === null ? '—' : formatNumber(e.a)}   b ${e.b === null ? '—' : formatNumber(e.b)}${e.delta !== null ? `   ${e.delta >= 0 ? paint.green(signed(e.delta)) : paint.red(signed(e.delta))}` : ''}`, 4);
    }
  }
}
