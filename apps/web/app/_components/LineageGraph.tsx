'use client';
import { Background, Controls, ReactFlow, type CoordinateExtent, type Edge, type Node, type ReactFlowInstance, type Viewport } from '@xyflow/react';
import '@xyflow/react/dist/style.css';
import ELK from 'elkjs/lib/elk-api.js';
import { useEffect, useMemo, useRef, useState } from 'react';
import { formatNumber } from '../_lib/format';
import type { Outputs } from '../_lib/trpc';

type Graph = Outputs['runs']['lineage'];

/** A node's box and its two lines of text, in CSS px at zoom 1. */
const NODE_W = 180;
const NODE_H = 50;
const NAME_PX = 13;
const DETAIL_PX = 12;
/** The smallest text anyone should have to read, in CSS px on screen: the view never zooms out further; a bigger graph is panned instead. */
const LEGIBLE_PX = 11;
const MIN_ZOOM = LEGIBLE_PX / Math.min(NAME_PX, DETAIL_PX);
/** The graph's box: as tall as the graph at its zoom, but at least MIN_BOX_PX and at most this share of the window; the graph sits PAD px inside it. */
const MIN_BOX_PX = 240;
const MAX_BOX_SHARE = 0.7;
const PAD = 16;

/**
 * elkjs is 1.6 MB of JavaScript: it runs in a Web Worker (elk.worker.ts), started on
 * first use, so that neither parsing it nor laying out a graph blocks the page's main
 * thread while the charts beside the graph are drawn.
 */
let elk: { engine: InstanceType<typeof ELK>; failed: Promise<never> } | null = null;
function layoutInWorker(graph: Parameters<InstanceType<typeof ELK>['layout']>[0]) {
  if (!elk) {
    // elkjs's promises never settle when its worker dies (a script that does not load): its error event fails them here.
    let fail: (err: Error) => void = () => {};
    const failed = new Promise<never>((_, reject) => (fail = reject));
    failed.catch(() => (elk = null)); // the next layout starts a new worker
    const engine = new ELK({
      workerFactory: () => {
        const worker = new Worker(new URL('../_lib/elk.worker.ts', import.meta.url));
        worker.addEventListener('error', (e) => fail(new Error(`the layout worker failed${e.message ? `: ${e.message}` : ' to start'}`)));
        return worker;
      },
    });
    elk = { engine, failed };
  }
  return Promise.race([elk.engine.layout(graph), elk.failed]);
}

interface Rect {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
}

interface Layout {
  nodes: Node[];
  edges: Edge[];
  height: number;
  viewport: Viewport;
  extent: CoordinateExtent;
}

/**
 * A run's ancestry, top to bottom: datasets → mixes → runs → checkpoints → runs,
 * the run itself last. Laid out by elkjs (layered), drawn by React Flow; clicking
 * a node opens it. The box grows with the graph and the view never zooms out
 * below legible text: what does not fit is panned to (drag; the page keeps the
 * wheel). The datasets that only feed a mix are folded into it until its
 * "+N datasets" is clicked, except those `changed` names.
 */
export function LineageGraph({ graph, onOpen, changed = [] }: { graph: Graph; onOpen: (node: { id: string; type: 'run' | 'artifact' }) => void; changed?: string[] }) {
  const [layout, setLayout] = useState<Layout | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [unfolded, setUnfolded] = useState<ReadonlySet<string>>(new Set());
  const box = useRef<HTMLDivElement>(null);
  const flow = useRef<ReactFlowInstance | null>(null);
  /** The mix just (un)folded and where it was on screen: the next layout keeps it there and brings its datasets into view. */
  const toggled = useRef<{ mixId: string; at: { x: number; y: number }; zoom: number } | null>(null);
  const changedKey = changed.join();

  const folds = useMemo(() => foldableDatasets(graph, changed), [graph, changedKey]);
  const hidden = useMemo(() => {
    const out = new Set<string>();
    for (const [mixId, datasets] of folds) if (!unfolded.has(mixId)) datasets.forEach((d) => out.add(d));
    for (const [mixId, datasets] of folds) if (unfolded.has(mixId)) datasets.forEach((d) => out.delete(d));
    return out;
  }, [folds, unfolded]);

  const toggle = (mixId: string) => {
    const node = flow.current?.getNode(mixId);
    const view = flow.current?.getViewport();
    if (node && view) toggled.current = { mixId, at: { x: (node.position.x + NODE_W / 2) * view.zoom + view.x, y: (node.position.y + NODE_H / 2) * view.zoom + view.y }, zoom: view.zoom };
    setUnfolded((open) => {
      const next = new Set(open);
      if (!next.delete(mixId)) next.add(mixId);
      return next;
    });
  };

  useEffect(() => {
    let live = true;
    const nodes = graph.nodes.filter((n) => !hidden.has(n.id));
    const edges = graph.edges.filter((e) => !hidden.has(e.from) && !hidden.has(e.to));
    const elkGraph = {
      id: 'root',
      layoutOptions: {
        'elk.algorithm': 'layered',
        'elk.direction': 'DOWN',
        'elk.layered.spacing.nodeNodeBetweenLayers': '44',
        'elk.spacing.nodeNode': '24',
      },
      children: nodes.map((n) => ({ id: n.id, width: NODE_W, height: NODE_H })),
      edges: edges.map((e, i) => ({ id: `e${i}`, sources: [e.from], targets: [e.to] })),
    };
    layoutInWorker(elkGraph)
      .then((laid) => {
        if (!live) return;
        const at = new Map((laid.children ?? []).map((c) => [c.id, { x: c.x ?? 0, y: c.y ?? 0 }]));
        const rectOf = (ids: string[]): Rect => {
          const ps = ids.map((id) => at.get(id) ?? { x: 0, y: 0 });
          return { x0: Math.min(...ps.map((p) => p.x)), y0: Math.min(...ps.map((p) => p.y)), x1: Math.max(...ps.map((p) => p.x)) + NODE_W, y1: Math.max(...ps.map((p) => p.y)) + NODE_H };
        };
        const bounds = rectOf(nodes.map((n) => n.id));
        const width = box.current?.clientWidth ?? 800;
        const maxHeight = Math.max(MIN_BOX_PX, Math.round(window.innerHeight * MAX_BOX_SHARE));
        const last = toggled.current;
        toggled.current = null;
        const zoom = last ? last.zoom : fitZoom(bounds, width, maxHeight);
        const height = clamp((bounds.y1 - bounds.y0) * zoom + 2 * PAD, MIN_BOX_PX, maxHeight);
        const viewport = last
          ? place(bounds, zoom, { width, height }, rectOf([last.mixId, ...(unfolded.has(last.mixId) ? (folds.get(last.mixId) ?? []) : [])]), last.at)
          : place(bounds, zoom, { width, height }, rectOf([graph.root]), { x: width / 2, y: height / 2 });
        const margin = PAD / MIN_ZOOM;
        setLayout({
          height,
          viewport,
          extent: [
            [bounds.x0 - margin, bounds.y0 - margin],
            [bounds.x1 + margin, bounds.y1 + margin],
          ],
          nodes: nodes.map((n) => {
            const folded = folds.get(n.id)?.length ?? 0;
            const open = unfolded.has(n.id);
            return {
              id: n.id,
              position: at.get(n.id) ?? { x: 0, y: 0 },
              data: {
                label: (
                  <div className="lnode-label" title={n.id}>
                    <b>{n.name}</b>
                    <span style={{ fontSize: DETAIL_PX }}>
                      {n.type === 'run' ? `${n.kind} · ${n.status ?? ''}` : n.kind}
                      {folded > 0 && (
                        <>
                          {' · '}
                          <button
                            type="button"
                            className="lnode-fold"
                            aria-expanded={open}
                            title={open ? `fold the datasets back into ${n.name}` : `show the datasets mixed into ${n.name}`}
                            onClick={(e) => {
                              e.stopPropagation(); // the rest of the node opens the mix
                              toggle(n.id);
                            }}
                          >
                            {open ? `hide ${plural(folded, 'dataset')}` : `+${plural(folded, 'dataset')}`}
                          </button>
                        </>
                      )}
                    </span>
                  </div>
                ),
              },
              className: ['lnode', `lnode-${n.type}`, `lnode-${n.kind}`, n.id === graph.root ? 'lnode-root' : '', changed.includes(n.id) ? 'lnode-changed' : ''].join(' '),
              style: { width: NODE_W, height: NODE_H, fontSize: NAME_PX },
              sourcePosition: 'bottom' as never,
              targetPosition: 'top' as never,
              connectable: false,
              draggable: false,
            };
          }),
          edges: edges.map((e, i) => ({
            id: `e${i}`,
            source: e.from,
            target: e.to,
            label: e.relation === 'component' && e.weight !== undefined ? formatNumber(e.weight) : e.role,
            labelStyle: { fontSize: DETAIL_PX },
            className: `ledge-${e.relation}`,
          })),
        });
      })
      .catch((err: unknown) => live && setError(String(err)));
    return () => {
      live = false;
    };
  }, [graph, hidden, unfolded, changedKey]);

  // A new layout of a graph already on screen: move the view to it (a first one is the flow's defaultViewport).
  useEffect(() => {
    if (layout) void flow.current?.setViewport(layout.viewport);
  }, [layout]);

  if (error) return <p className="error">Layout failed: {error}</p>;
  return (
    <div ref={box} className="lineage" data-testid="lineage-graph" style={{ height: layout?.height ?? MIN_BOX_PX }}>
      {layout && (
        <ReactFlow
          nodes={layout.nodes}
          edges={layout.edges}
          defaultViewport={layout.viewport}
          onInit={(instance) => {
            flow.current = instance;
          }}
          minZoom={MIN_ZOOM}
          translateExtent={layout.extent}
          preventScrolling={false}
          colorMode="system"
          nodesConnectable={false}
          proOptions={{ hideAttribution: true }}
          onNodeClick={(_e, node) => {
            const n = graph.nodes.find((x) => x.id === node.id);
            if (n) onOpen({ id: n.id, type: n.type });
          }}
        >
          <Background />
          <Controls showInteractive={false} fitViewOptions={{ minZoom: MIN_ZOOM, maxZoom: 1, padding: PAD }} />
        </ReactFlow>
      )}
    </div>
  );
}

/**
 * The datasets each mix folds away: those that feed nothing but mixes, that
 * no run in the graph produced (folding them would cut the producer off), and
 * that `keep` does not name. A dataset a run uses directly stays in view.
 */
function foldableDatasets(graph: Graph, keep: readonly string[]): Map<string, string[]> {
  const kinds = new Map(graph.nodes.map((n) => [n.id, n.kind]));
  const byMix = new Map<string, Set<string>>();
  for (const n of graph.nodes) {
    if (n.kind !== 'dataset' || keep.includes(n.id) || graph.edges.some((e) => e.to === n.id)) continue;
    const out = graph.edges.filter((e) => e.from === n.id);
    if (!out.length || !out.every((e) => e.relation === 'component' && kinds.get(e.to) === 'datamix')) continue;
    for (const e of out) byMix.set(e.to, (byMix.get(e.to) ?? new Set()).add(n.id));
  }
  return new Map([...byMix].map(([mixId, datasets]) => [mixId, [...datasets]]));
}

/** The zoom at which the whole graph fits the box's width and the tallest box, but never below legible nor above 1. */
function fitZoom(bounds: Rect, width: number, maxHeight: number): number {
  const fit = Math.min((width - 2 * PAD) / (bounds.x1 - bounds.x0), (maxHeight - 2 * PAD) / (bounds.y1 - bounds.y0));
  return clamp(fit, MIN_ZOOM, 1);
}

/**
 * The viewport that shows the graph in a box, per axis: centred where it fits;
 * where it does not, `focus`'s centre at `at` (box px), then shifted to bring
 * all of `focus` in and to leave no more than PAD empty at either end.
 */
function place(bounds: Rect, zoom: number, box: { width: number; height: number }, focus: Rect, at: { x: number; y: number }): Viewport {
  const axis = (lo: number, hi: number, focusLo: number, focusHi: number, size: number, atPx: number) => {
    if ((hi - lo) * zoom <= size - 2 * PAD) return (size - (lo + hi) * zoom) / 2;
    let t = atPx - ((focusLo + focusHi) / 2) * zoom;
    if ((focusHi - focusLo) * zoom <= size - 2 * PAD) t = clamp(t, size - PAD - focusHi * zoom, PAD - focusLo * zoom);
    return clamp(t, size - PAD - hi * zoom, PAD - lo * zoom);
  };
  return {
    x: axis(bounds.x0, bounds.x1, focus.x0, focus.x1, box.width, at.x),
    y: axis(bounds.y0, bounds.y1, focus.y0, focus.y1, box.height, at.y),
    zoom,
  };
}

const clamp = (v: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, v));
const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;
