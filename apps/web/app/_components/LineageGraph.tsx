'use client';
import { Background, Controls, ReactFlow, type Edge, type Node } from '@xyflow/react';
import '@xyflow/react/dist/style.css';
import type { ELK as Elk } from 'elkjs/lib/elk.bundled.js';
import { useEffect, useState } from 'react';
import { formatNumber } from '../_lib/format';
import type { Outputs } from '../_lib/trpc';

type Graph = Outputs['runs']['lineage'];
const NODE_W = 170;
const NODE_H = 46;
/**
 * elkjs is 1.6 MB of JavaScript: loaded on first use, after the page is interactive,
 * so that it delays neither hydration nor the page's first queries (the charts).
 */
let elkLoading: Promise<Elk> | null = null;
const loadElk = () => (elkLoading ??= import('elkjs/lib/elk.bundled.js').then((m) => new m.default()));

/**
 * A run's ancestry, left to right: datasets → mixes → runs → checkpoints → runs.
 * Laid out by elkjs (layered), drawn by React Flow; clicking a node opens it.
 */
export function LineageGraph({ graph, onOpen, changed = [] }: { graph: Graph; onOpen: (node: { id: string; type: 'run' | 'artifact' }) => void; changed?: string[] }) {
  const [layout, setLayout] = useState<{ nodes: Node[]; edges: Edge[] } | null>(null);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    let live = true;
    const elkGraph = {
      id: 'root',
      layoutOptions: {
        'elk.algorithm': 'layered',
        'elk.direction': 'RIGHT',
        'elk.layered.spacing.nodeNodeBetweenLayers': '50',
        'elk.spacing.nodeNode': '18',
      },
      children: graph.nodes.map((n) => ({ id: n.id, width: NODE_W, height: NODE_H })),
      edges: graph.edges.map((e, i) => ({ id: `e${i}`, sources: [e.from], targets: [e.to] })),
    };
    loadElk()
      .then((elk) => elk.layout(elkGraph))
      .then((laid) => {
        if (!live) return;
        const at = new Map((laid.children ?? []).map((c) => [c.id, { x: c.x ?? 0, y: c.y ?? 0 }]));
        setLayout({
          nodes: graph.nodes.map((n) => ({
            id: n.id,
            position: at.get(n.id) ?? { x: 0, y: 0 },
            data: {
              label: (
                <div className="lnode-label" title={n.id}>
                  <b>{n.name}</b>
                  <span>{n.type === 'run' ? `${n.kind} · ${n.status ?? ''}` : n.kind}</span>
                </div>
              ),
            },
            className: ['lnode', `lnode-${n.type}`, `lnode-${n.kind}`, n.id === graph.root ? 'lnode-root' : '', changed.includes(n.id) ? 'lnode-changed' : ''].join(' '),
            style: { width: NODE_W, height: NODE_H },
            sourcePosition: 'right' as never,
            targetPosition: 'left' as never,
            connectable: false,
            draggable: false,
          })),
          edges: graph.edges.map((e, i) => ({
            id: `e${i}`,
            source: e.from,
            target: e.to,
            label: e.relation === 'component' && e.weight !== undefined ? formatNumber(e.weight) : e.role,
            className: `ledge-${e.relation}`,
          })),
        });
      })
      .catch((err: unknown) => live && setError(String(err)));
    return () => {
      live = false;
    };
  }, [graph, changed.join()]);

  if (error) return <p className="error">Layout failed: {error}</p>;
  return (
    <div className="lineage" data-testid="lineage-graph">
      {layout && (
        <ReactFlow
          nodes={layout.nodes}
          edges={layout.edges}
          fitView
          fitViewOptions={{ maxZoom: 1 }}
          colorMode="system"
          nodesConnectable={false}
          proOptions={{ hideAttribution: true }}
          onNodeClick={(_e, node) => {
            const n = graph.nodes.find((x) => x.id === node.id);
            if (n) onOpen({ id: n.id, type: n.type });
          }}
          minZoom={0.2}
        >
          <Background />
          <Controls showInteractive={false} />
        </ReactFlow>
      )}
    </div>
  );
}
