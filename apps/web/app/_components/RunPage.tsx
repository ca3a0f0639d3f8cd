'use client';
import { useQueries, useQuery, useQueryClient } from '@tanstack/react-query';
import { useSubscription } from '@trpc/tanstack-react-query';
import Link from 'next/link';
import { useRouter } from 'next/navigation';
import { useMemo, useRef, useState } from 'react';
import { formatDuration, formatNumber, formatValue, shortId } from '../_lib/format';
import { useTRPC, type Outputs, type RunUpdate } from '../_lib/trpc';
import { ErrorBox, Loading, StatusBadge } from './bits';
import { DataMix } from './DataMix';
import { LineageGraph } from './LineageGraph';
import { MetricChart, type ChartSeries, type LiveMetrics, type StepMarker } from './MetricChart';
import { ProjectReport } from './Report';

/** Live metric points held for folding into the charts before they are read again instead. */
const LIVE_POINTS_HELD = 200_000;

/** What a live update makes the page read again: what it cannot be drawn from. */
type Refetched = 'run' | 'keys' | 'evals' | 'outputs' | 'charts';

export function RunPage({ runId }: { runId: string }) {
  const trpc = useTRPC();
  const router = useRouter();
  const [tab, setTab] = useState<'overview' | 'events'>('overview');
  const run = useQuery(trpc.runs.get.queryOptions({ runId }));
  const lineage = useQuery(trpc.runs.lineage.queryOptions({ runId }));
  const hps = useQuery(trpc.runs.hyperparameters.queryOptions({ runId }));
  const keys = useQuery(trpc.metrics.keys.queryOptions({ runId }));
  const evals = useQuery(trpc.runs.evals.queryOptions({ runId }));
  const edges = useQuery(trpc.runs.edges.queryOptions({ runId }));
  // Where the log stood when the page opened: the live subscription starts after it.
  const [startPosition] = useState(() => ({ value: null as number | null }));
  const health = useQuery(trpc.system.health.queryOptions(undefined, { staleTime: Infinity }));
  if (startPosition.value === null && health.data) startPosition.value = health.data.position;

  const live = run.data?.status === 'running' || run.data?.status === 'created';
  const queryClient = useQueryClient();
  // What live updates carry is drawn from them: metric points are folded into the charts (see
  // MetricChart), a new key adds its chart; only what they cannot give is refetched (the run's
  // status, evals, checkpoints and lineage), at most every 500 ms since updates come in bursts.
  const [liveMetrics, setLiveMetrics] = useState<LiveMetrics>({ runId, updates: [] });
  const stale = useRef(new Set<Refetched>());
  const pendingRefresh = useRef<ReturnType<typeof setTimeout> | null>(null);
  const refresh = (what: Refetched) => {
    stale.current.add(what);
    if (pendingRefresh.current) return;
    pendingRefresh.current = setTimeout(() => {
      pendingRefresh.current = null;
      const filters = {
        run: [trpc.runs.get.queryFilter({ runId })],
        keys: [trpc.metrics.keys.queryFilter({ runId })],
        evals: [trpc.runs.evals.queryFilter({ runId })],
        outputs: [trpc.runs.lineage.queryFilter({ runId }), trpc.runs.edges.queryFilter({ runId })],
        charts: [trpc.metrics.chart.pathFilter()],
      };
      for (const w of stale.current) for (const filter of filters[w]) void queryClient.invalidateQueries(filter);
      stale.current.clear();
    }, 500);
  };
  const onUpdate = ({ data: u }: { data: RunUpdate }) => {
    switch (u.type) {
      case 'metrics': {
        const known = new Set((queryClient.getQueryData(trpc.metrics.keys.queryKey({ runId })) ?? []).map((k) => k.key));
        if (u.points.some((p) => !known.has(p.key))) refresh('keys');
        setLiveMetrics((cur) => {
          const held = cur.updates.reduce((n, x) => n + x.points.length, 0);
          if (held + u.points.length <= LIVE_POINTS_HELD) return { runId, updates: [...cur.updates, { position: u.position, points: u.points }] };
          // Held long enough: the charts read again (their answers include these points).
          refresh('charts');
          return { runId, updates: [] };
        });
        return;
      }
      case 'status':
        refresh('run');
        return;
      case 'eval':
        refresh('evals');
        return;
      case 'checkpoint':
        refresh('outputs');
        return;
    }
  };
  const watch = useSubscription(
    trpc.runs.watch.subscriptionOptions(
      { runId, lastEventId: String(startPosition.value ?? 0) },
      { enabled: live && startPosition.value !== null, onData: onUpdate },
    ),
  );

  const names = useMemo(() => new Map((lineage.data?.nodes ?? []).map((n) => [n.id, n.name])), [lineage.data]);
  if (run.error) return <ErrorBox error={run.error} />;
  if (!run.data) return <Loading what="run" />;
  const r = run.data;
  const mixes = (lineage.data?.edges ?? []).filter((e) => e.to === runId && e.relation === 'used' && lineage.data?.nodes.find((n) => n.id === e.from)?.kind === 'datamix');
  const outputs = (edges.data ?? []).filter((e) => e.direction === 'produced');
  const changes = (hps.data ?? []).filter((h) => h.changed);
  const markers = changes.map((h) => ({ step: h.step ?? 0, label: `${h.key}=${formatValue(h.value)}` }));

  return (
    <div>
      <header className="runhead">
        <h1>
          {r.name} <StatusBadge status={r.status} />
          {live && <span className={`live ${watch.status === 'pending' ? 'on' : ''}`} title={`live updates: ${watch.status}`}>● live</span>}
        </h1>
        <dl className="facts">
          <div><dt>kind</dt><dd>{r.kind}</dd></div>
          <div><dt>id</dt><dd><code>{shortId(r.id)}</code></dd></div>
          <div><dt>duration</dt><dd>{formatDuration(r.startedAt, r.endedAt)}</dd></div>
          <div><dt>code</dt><dd><code>{r.codeVersion ?? '—'}</code></dd></div>
          <div><dt>environment</dt><dd>{Object.keys(r.environment).length ? Object.entries(r.environment).map(([k, v]) => `${k}: ${formatValue(v)}`).join(', ') : '—'}</dd></div>
          {r.forkedFromRunId && (
            <div><dt>forked from</dt><dd><Link href={`/runs/${r.forkedFromRunId}`}>{names.get(r.forkedFromRunId) ?? shortId(r.forkedFromRunId)}</Link>{r.forkedAtStep !== null ? ` @ step ${r.forkedAtStep}` : ''}</dd></div>
          )}
          {r.tags.length > 0 && <div><dt>tags</dt><dd>{r.tags.map((t) => <span key={t} className="tag">{t}</span>)}</dd></div>}
          {Object.keys(r.tagValues).length > 0 && (
            <div>
              <dt>tag values</dt>
              <dd>{Object.entries(r.tagValues).map(([k, v]) => <span key={k} className="tag" title={v}>{k}={v.length > 40 ? `${v.slice(0, 40)}…` : v}</span>)}</dd>
            </div>
          )}
          {r.lifecycle === 'deleted' && <div><dt>lifecycle</dt><dd>deleted (hidden from listings; restorable)</dd></div>}
        </dl>
        {r.error && <div className="errorbox">failed: {r.error}</div>}
      </header>

      <div className="tabs" role="tablist">
        <button role="tab" aria-selected={tab === 'overview'} onClick={() => setTab('overview')}>Overview</button>
        <button role="tab" aria-selected={tab === 'events'} onClick={() => setTab('events')}>Event log</button>
      </div>

      {tab === 'events' ? (
        <EventLog runId={runId} />
      ) : (
        <>
          <section>
            <h2>Lineage</h2>
            {lineage.error && <ErrorBox error={lineage.error} />}
            {lineage.data && (
              <LineageGraph graph={lineage.data} onOpen={(n) => router.push(n.type === 'run' ? `/runs/${n.id}` : `/artifacts/${n.id}`)} />
            )}
          </section>

          <div className="cols">
            <section>
              <h2>Hyperparameters</h2>
              {hps.data && hps.data.length === 0 && <p className="muted">None declared (pass <code>hyperparameters</code> to <code>startRun</code>).</p>}
              {hps.data && hps.data.length > 0 && (
                <table className="hps">
                  <thead><tr><th>key</th><th className="num">value</th><th>changed mid-run</th></tr></thead>
                  <tbody>
                    {hps.data.filter((h) => !h.changed).map((h) => (
                      <tr key={h.key} data-hp={h.key}>
                        <td>{h.key}</td>
                        <td className="num">{formatValue(h.value)}</td>
                        <td>
                          {changes.filter((c) => c.key === h.key).map((c) => (
                            <span key={`${c.step}`} className="change">→ {formatValue(c.value)} at step {c.step}{c.reason ? ` (${c.reason})` : ''}</span>
                          ))}
                        </td>
                      </tr>
                    ))}
                    {changes.filter((c) => !hps.data.some((h) => !h.changed && h.key === c.key)).map((c) => (
                      <tr key={`${c.key}-${c.step}`}>
                        <td>{c.key}</td><td className="num">—</td>
                        <td><span className="change">→ {formatValue(c.value)} at step {c.step}{c.reason ? ` (${c.reason})` : ''}</span></td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              )}
            </section>
            <section>
              <h2>Data mix</h2>
              {mixes.length === 0 && <p className="muted">This run used no data mix.</p>}
              {mixes.map((e) => <DataMix key={e.from} mixId={e.from} role={e.role} names={names} />)}
            </section>
          </div>

          <Metrics run={r} lineage={lineage.data} keys={keys.data} markers={markers} live={live} liveMetrics={liveMetrics.runId === r.id ? liveMetrics : undefined} />

          <div className="cols">
            <section>
              <h2>Evals</h2>
              {evals.data && evals.data.length === 0 && <p className="muted">No evals recorded. Log them with <code>run.eval({'{'} suite, task, contextLength, score {'}'})</code>.</p>}
              {evals.data && evals.data.length > 0 && <EvalTable evals={evals.data} />}
            </section>
            <section>
              <h2>Checkpoints and outputs</h2>
              {edges.data && outputs.length === 0 && <p className="muted">None saved. Save one with <code>run.checkpoint(…)</code>.</p>}
              <ul>
                {outputs.map((e) => (
                  <li key={e.artifactId}>
                    <Link href={`/artifacts/${e.artifactId}`}>{e.name ?? shortId(e.artifactId)}</Link> <span className="muted small">{e.kind && e.kind !== e.role ? `${e.kind} · ` : ''}{e.role}{e.step !== null ? ` at step ${e.step}` : ''}</span>
                  </li>
                ))}
              </ul>
            </section>
          </div>

          <ProjectReport projectId={r.projectId} />
        </>
      )}
    </div>
  );
}

type Graph = Outputs['runs']['lineage'];
type Run = Outputs['runs']['get'];

/**
 * The run's stage chain from the lineage graph, root first: each run's single
 * parent is the run that produced the checkpoint it used (pretrain → midtrain → sft …).
 */
export function stageChain(graph: Graph | undefined, runId: string): string[] {
  if (!graph) return [runId];
  const chain = [runId];
  const seen = new Set(chain);
  for (let cur = runId; ; ) {
    const inputs = graph.edges.filter((e) => e.to === cur && e.relation === 'used').map((e) => e.from);
    const parents = [
      ...new Set(
        graph.edges
          .filter((e) => e.relation === 'produced' && inputs.includes(e.to) && graph.nodes.find((n) => n.id === e.to)?.kind === 'checkpoint')
          .map((e) => e.from),
      ),
    ];
    if (parents.length !== 1 || seen.has(parents[0]!)) return chain;
    cur = parents[0]!;
    seen.add(cur);
    chain.unshift(cur);
  }
}

/**
 * The metric charts: this run alone, or end to end across its ancestor stages
 * (each stage shifted to start where its parent forked, boundaries marked),
 * with other runs of the project overlaid on demand.
 */
function Metrics({ run: r, lineage, keys, markers, live, liveMetrics }: { run: Run; lineage: Graph | undefined; keys: Outputs['metrics']['keys'] | undefined; markers: StepMarker[]; live: boolean; liveMetrics?: LiveMetrics }) {
  const trpc = useTRPC();
  const chainIds = useMemo(() => stageChain(lineage, r.id), [lineage, r.id]);
  // A shareable view: ?overlay=<run id>,<run id>… and ?stages=1 (end to end). Read on the first
  // render (this part is drawn only in the browser, once the run has loaded), so that every
  // overlaid series is asked for in the same request as the run's own.
  const [endToEnd, setEndToEnd] = useState(() => urlParam('stages') === '1');
  const [overlayIds, setOverlayIds] = useState<string[]>(() => (urlParam('overlay') ?? '').split(',').filter((x) => x.length >= 4));
  const [picking, setPicking] = useState(false);
  const e2e = endToEnd && chainIds.length > 1;
  const chainRuns = useQueries({ queries: chainIds.map((id) => trpc.runs.get.queryOptions({ runId: id }, { enabled: e2e })) });
  const chainKeys = useQueries({ queries: chainIds.map((id) => trpc.metrics.keys.queryOptions({ runId: id }, { enabled: e2e })) });
  const others = useQuery(trpc.runs.list.queryOptions({ project: r.projectId, limit: 200 }, { enabled: picking || overlayIds.length > 0 }));

  // Where each stage starts on the end-to-end axis: its parent's start plus the fork step (or the parent's last step + 1).
  const offsets = new Map<string, number>();
  if (e2e) {
    let at = 0;
    chainIds.forEach((id, i) => {
      if (i > 0) {
        const prevLast = Math.max(-1, ...(chainKeys[i - 1]?.data ?? []).map((k) => k.lastStep));
        const forkedAt = chainRuns[i]?.data?.forkedAtStep;
        at += forkedAt ?? prevLast + 1;
      }
      offsets.set(id, at);
    });
  }
  const ready = !e2e || (chainRuns.every((q) => q.data) && chainKeys.every((q) => q.data));
  const nameOf = (id: string) => chainRuns[chainIds.indexOf(id)]?.data?.name ?? others.data?.runs.find((x) => x.id === id)?.name ?? shortId(id);

  const overlayOffset = (o: { forkedFromRunId: string | null; forkedAtStep: number | null; kind: string }) => {
    if (!e2e) return 0;
    if (o.forkedFromRunId && offsets.has(o.forkedFromRunId)) {
      // Forked from a stage of the chain: it starts where that stage forked it (or where that stage ended).
      const parentEnd = Math.max(-1, ...(chainKeys[chainIds.indexOf(o.forkedFromRunId)]?.data ?? []).map((k) => k.lastStep)) + 1;
      return offsets.get(o.forkedFromRunId)! + (o.forkedAtStep ?? parentEnd);
    }
    const sameKind = chainIds.find((id) => chainRuns[chainIds.indexOf(id)]?.data?.kind === o.kind);
    return sameKind ? offsets.get(sameKind)! : 0;
  };
  const series: ChartSeries[] = [
    ...(e2e ? chainIds.map((id) => ({ runId: id, label: nameOf(id), offset: offsets.get(id) ?? 0 })) : [{ runId: r.id, label: r.name }]),
    ...overlayIds
      .filter((id) => !(e2e && chainIds.includes(id)))
      .map((id) => {
        const o = others.data?.runs.find((x) => x.id === id);
        return { runId: id, label: o?.name ?? shortId(id), offset: o ? overlayOffset(o) : 0 };
      }),
  ];
  const allMarkers: StepMarker[] = e2e
    ? [...chainIds.map((id) => ({ step: offsets.get(id) ?? 0, label: nameOf(id), kind: 'stage' as const })), ...markers.map((m) => ({ ...m, step: m.step + (offsets.get(r.id) ?? 0) }))]
    : markers;

  return (
    <section>
      <h2>Metrics</h2>
      <div className="toolbar small">
        {chainIds.length > 1 && (
          <label>
            <input type="checkbox" checked={endToEnd} onChange={(e) => setEndToEnd(e.target.checked)} /> end to end across stages ({chainIds.length} stages)
          </label>
        )}
        <button onClick={() => setPicking(!picking)} aria-expanded={picking}>Overlay runs{overlayIds.length ? ` (${overlayIds.length})` : ''}…</button>
        {overlayIds.length > 0 && <button className="link" onClick={() => setOverlayIds([])}>clear overlays</button>}
      </div>
      {picking && (
        <div className="overlaypick" role="group" aria-label="runs to overlay">
          {others.error && <ErrorBox error={others.error} />}
          {others.data?.runs
            .filter((o) => o.id !== r.id)
            .map((o) => (
              <label key={o.id} className="small">
                <input type="checkbox" aria-label={`overlay ${o.name}`} checked={overlayIds.includes(o.id)} onChange={(e) => setOverlayIds((cur) => (e.target.checked ? [...cur, o.id] : cur.filter((x) => x !== o.id)))} /> {o.name}{' '}
                <span className="muted">{o.kind}</span>
              </label>
            ))}
        </div>
      )}
      {keys && keys.length === 0 && <p className="muted">No metrics logged{live ? ' yet — they appear here live' : ''}.</p>}
      {!ready && <Loading what="stages" />}
      {ready && (
        <div className="charts">
          {keys?.map((k) => <MetricChart key={k.key} series={series} metricKey={k.key} markers={allMarkers} live={liveMetrics} />)}
        </div>
      )}
    </section>
  );
}

const urlParam = (name: string) => (typeof window === 'undefined' ? null : new URLSearchParams(window.location.search).get(name));

type Evals = { suite: string; task: string; contextLength: number | null; score: number; n: number | null }[];

/** Task × context length, one table per suite. */
function EvalTable({ evals }: { evals: Evals }) {
  const lengths = [...new Set(evals.map((e) => e.contextLength))].sort((a, b) => (a ?? 0) - (b ?? 0));
  const rows = [...new Set(evals.map((e) => `${e.suite}\u0000${e.task}`))];
  return (
    <table className="evals">
      <thead>
        <tr><th>suite / task</th>{lengths.map((l) => <th key={String(l)} className="num">{l === null ? 'score' : `ctx ${l}`}</th>)}</tr>
      </thead>
      <tbody>
        {rows.map((row) => {
          const [suite, task] = row.split('\u0000');
          return (
            <tr key={row}>
              <td>{suite} / {task}</td>
              {lengths.map((l) => {
                const e = evals.findLast((x) => x.suite === suite && x.task === task && x.contextLength === l);
                return <td key={String(l)} className="num">{e ? formatNumber(e.score) : '—'}</td>;
              })}
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}

function EventLog({ runId }: { runId: string }) {
  const trpc = useTRPC();
  const events = useQuery(trpc.events.stream.queryOptions({ runId }));
  if (events.error) return <ErrorBox error={events.error} />;
  if (!events.data) return <Loading what="events" />;
  const list = events.data.events;
  return (
    <section>
      <p className="muted small">
        Stream <code>{events.data.streamId}</code>, {list.length} events. Each event's hash covers the previous hash: a link is shown as ✓ when
        this event's <code>prev_hash</code> equals the hash before it (<code>npx pedigree verify</code> recomputes every hash).
      </p>
      <div className="scroll">
        <table className="events">
          <thead><tr><th className="num">#</th><th className="num">position</th><th>type</th><th>recorded</th><th>actor</th><th>hash</th><th>link</th></tr></thead>
          <tbody>
            {list.map((e, i) => {
              const linked = i === 0 ? e.streamVersion === 1 || e.prevHash === list[i - 1]?.hash : e.prevHash === list[i - 1]?.hash;
              return (
                <tr key={e.eventId}>
                  <td className="num">{e.streamVersion}</td>
                  <td className="num">{e.position}</td>
                  <td>{e.type}</td>
                  <td className="small">{e.recordedAt.toLocaleString()}</td>
                  <td className="small">{String(e.metadata.actor ?? '')}</td>
                  <td><code className="hash" title={e.hash}>{e.hash.slice(0, 16)}…</code></td>
                  <td>{linked ? '✓' : '✗'}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
    </section>
  );
}
