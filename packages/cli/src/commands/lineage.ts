import type { LineageEdge, LineageGraph, LineageNode } from '@pedigree/lineage';
import { getRun } from '../client.ts';
import type { Command } from '../command.ts';
import { renderTree, shortId, truncateAnsi, type Paint, type TreeNode } from '../format.ts';
import type { Terminal } from '../terminal.ts';

export const lineageCommand: Command = {
  name: 'lineage',
  summary: "a run's ancestry as a tree, back to its datasets",
  usage: 'lineage <run>',
  description:
    'Draws where a run came from: the artifacts it used (with their roles), the runs that produced them, their inputs in turn, and the components of every data mix with their weights. A subtree already drawn is not repeated. --json prints the graph as nodes and edges.',
  args: [{ name: 'run' }],
  async run(ctx) {
    const client = await ctx.client();
    const run = await getRun(client, ctx.args[0]!);
    const graph = await client.lineage(run.id);
    if (ctx.json) return ctx.term.json(graph);
    printLineageTree(ctx.term, graph);
  },
};

export function printLineageTree(term: Terminal, graph: LineageGraph): void {
  for (const line of renderTree(lineageTree(graph, term.paint), term.paint)) term.line(truncateAnsi(line, term.width));
}

/**
 * The ancestry graph as a tree rooted at the run: a run's children are the
 * artifacts it used; an artifact's children are the run that produced it and,
 * for a data mix, its components.
 */
export function lineageTree(graph: LineageGraph, paint: Paint): TreeNode {
  const nodes = new Map(graph.nodes.map((n) => [n.id, n]));
  const into = new Map<string, LineageEdge[]>();
  const seenEdges = new Set<string>();
  for (const e of graph.edges) {
    const key = `${e.from}>${e.to}>${e.relation}>${e.role}`;
    if (seenEdges.has(key)) continue;
    seenEdges.add(key);
    into.set(e.to, [...(into.get(e.to) ?? []), e]);
  }
  const expanded = new Set<string>();

  const runLabel = (n: LineageNode) => `${paint.bold(n.name)}  ${paint.dim(`${n.kind} · ${n.status ?? '?'} · ${shortId(n.id)}`)}`;
  const artifactLabel = (n: LineageNode) => `${paint.cyan(n.name)}  ${paint.dim(`${n.kind} · ${shortId(n.id)}`)}`;

  const build = (id: string, label: (n: LineageNode) => string): TreeNode => {
    const node = nodes.get(id);
    if (!node) return { label: paint.dim(`${shortId(id)} (not in the graph)`), children: [] };
    const edges = into.get(id) ?? [];
    // Shared ancestry (the pretraining mix under both pretrain and midtrain) is drawn once.
    if (expanded.has(id) && edges.length) return { label: `${label(node)}  ${paint.dim('(shown above)')}`, children: [] };
    expanded.add(id);
    const children = edges.map((e): TreeNode => {
      switch (e.relation) {
        case 'used':
          return build(e.from, (n) => `${paint.magenta(e.role)}  ${artifactLabel(n)}`);
        case 'produced':
          return build(e.from, (n) => `${paint.dim('made by')} ${runLabel(n)}`);
        case 'component':
          return build(e.from, (n) => `${formatWeight(e.weight)}  ${artifactLabel(n)}`);
        case 'parent':
          return build(e.from, (n) => `${paint.dim('nested in')} ${runLabel(n)}`);
        default: {
          const unknown: never = e.relation;
          throw new Error(`unknown lineage relation ${String(unknown)}`);
        }
      }
    });
    return { label: label(node), children };
  };
  return build(graph.root, runLabel);
}

const formatWeight = (w: number | undefined) => (w === undefined ? '?' : `${+(w * 100).toFixed(1)}%`.padStart(3));
