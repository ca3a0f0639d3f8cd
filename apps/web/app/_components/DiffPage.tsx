'use client';
import { useQuery } from '@tanstack/react-query';
import Link from 'next/link';
import { useRouter, useSearchParams } from 'next/navigation';
import { useState } from 'react';
import { formatNumber, formatValue, shortId } from '../_lib/format';
import { useTRPC, type LineageDiff } from '../_lib/trpc';
import { ErrorBox, Loading, StatusBadge } from './bits';
import { LineageGraph } from './LineageGraph';
import { MetricChart } from './MetricChart';

type Stage = LineageDiff['stages'][number];
type StageRef = LineageDiff['a'];

const RunLink = ({ r }: { r: StageRef | null }) =>
  r ? <Link href={`/runs/${r.runId}`}>{r.name} <span className="muted small">{shortId(r.runId)}</span></Link> : <span className="muted">—</span>;

/** The lineage diff of two runs: where they part, and stage by stage what differs. */
export function DiffPage() {
  const trpc = useTRPC();
  const params = useSearchParams();
  const a = params.get('a');
  const b = params.get('b');
  const [showAll, setShowAll] = useState(false);
  const diff = useQuery(trpc.lineage.diff.queryOptions({ a: a ?? '', b: b ?? '', showAll }, { enabled: Boolean(a && b) }));
  const keysA = useQuery(trpc.metrics.keys.queryOptions({ runId: a ?? '' }, { enabled: Boolean(a) }));
  const keysB = useQuery(trpc.metrics.keys.queryOptions({ runId: b ?? '' }, { enabled: Boolean(b) }));
  const graphA = useQuery(trpc.runs.lineage.queryOptions({ runId: a ?? '' }, { enabled: Boolean(a) }));
  const graphB = useQuery(trpc.runs.lineage.queryOptions({ runId: b ?? '' }, { enabled: Boolean(b) }));
  const router = useRouter();
  const open = (n: { id: string; type: 'run' | 'artifact' }) => router.push(n.type === 'run' ? `/runs/${n.id}` : `/artifacts/${n.id}`);

  if (!a || !b) return <div className="empty"><h1>Diff</h1><p>Pick two runs on the <Link href="/">runs page</Link> (tick two checkboxes, then “Diff selected”).</p></div>;
  if (diff.error) return <ErrorBox error={diff.error} />;
  if (!diff.data) return <Loading what="diff" />;
  const d = diff.data;
  const sharedKeys = (keysA.data ?? []).map((k) => k.key).filter((k) => keysB.data?.some((x) => x.key === k));

  return (
    <div>
      <h1>Diff</h1>
      <dl className="facts">
        <div><dt>a</dt><dd><RunLink r={d.a} /> · {d.a.kind}</dd></div>
        <div><dt>b</dt><dd><RunLink r={d.b} /> · {d.b.kind}</dd></div>
        <div><dt>common ancestor</dt><dd>{d.commonAncestor ? <>{d.commonAncestor.type === 'run' ? <Link href={`/runs/${d.commonAncestor.id}`}>{d.commonAncestor.name}</Link> : <Link href={`/artifacts/${d.commonAncestor.id}`}>{d.commonAncestor.name}</Link>} <span className="muted small">({d.commonAncestor.type === d.commonAncestor.kind ? d.commonAncestor.type : `${d.commonAncestor.type} · ${d.commonAncestor.kind}`})</span></> : 'none'}</dd></div>
      </dl>
      {d.identical ? (
        <p className="ok">The two lineages are identical.</p>
      ) : (
        d.firstDivergence && (
          <p className="divergence" data-testid="first-divergence">
            First divergence: <b>a</b> <RunLink r={d.firstDivergence.a} /> vs <b>b</b> <RunLink r={d.firstDivergence.b} />
          </p>
        )
      )}
      <label className="small">
        <input type="checkbox" checked={showAll} onChange={(e) => setShowAll(e.target.checked)} /> show all stages and values
      </label>
      {!showAll && d.collapsed > 0 && <p className="muted small">{d.collapsed} shared or identical stage{d.collapsed > 1 ? 's' : ''} folded.</p>}

      <section>
        <h2>Lineages</h2>
        <p className="muted small">Changed runs and artifacts are outlined in amber (a stage that differs, an input that points elsewhere, a mix component added, removed or changed).</p>
        <div className="dagpair">
          {([['a', d.a, graphA], ['b', d.b, graphB]] as const).map(([side, ref, g]) => (
            <div key={side} data-testid={`lineage-${side}`} className="dagside">
              <h3><b>{side}</b> <RunLink r={ref} /></h3>
              {g.error && <ErrorBox error={g.error} />}
              {g.data && <LineageGraph graph={g.data} onOpen={open} changed={changedNodes(d, side, g.data.nodes)} />}
            </div>
          ))}
        </div>
      </section>

      <table className="stages">
        <thead><tr><th>stage</th><th>status</th><th>a</th><th>b</th></tr></thead>
        <tbody>
          {d.stages.map((s, i) => (
            <tr key={i} className={isDivergence(d, s) ? 'diverges' : undefined}>
              <td>{s.kind}</td><td><span className={`stage-${s.status}`}>{s.status}</span></td><td><RunLink r={s.a} /></td><td><RunLink r={s.b} /></td>
            </tr>
          ))}
        </tbody>
      </table>

      {d.stages.filter((s) => showAll || !s.collapsed).map((s, i) => <StageDetail key={i} stage={s} highlight={isDivergence(d, s)} />)}

      <section>
        <h2>Metrics, overlaid</h2>
        {sharedKeys.length === 0 && <p className="muted">The two runs share no metric.</p>}
        <div className="charts">
          {sharedKeys.slice(0, 4).map((k) => (
            <MetricChart key={k} metricKey={k} series={[{ runId: d.a.runId, label: `a ${d.a.name}` }, { runId: d.b.runId, label: `b ${d.b.name}` }]} />
          ))}
        </div>
      </section>
    </div>
  );
}

/**
 * The nodes of one side's lineage graph that the diff says differ: runs of
 * stages that changed (or exist on one side only), inputs that point at other
 * content, and mix components added, removed or changed (matched by name).
 */
export function changedNodes(d: LineageDiff, side: 'a' | 'b', nodes: { id: string; name: string; type: string }[]): string[] {
  const ids = new Set<string>();
  for (const s of d.stages) {
    if (s.status === 'shared' || s.status === 'identical') continue;
    const run = s[side];
    if (run) ids.add(run.runId);
    for (const inp of s.inputs) {
      const art = inp[side];
      if (art) ids.add(art.id);
      for (const c of inp.components) {
        if ((side === 'a' && c.change === 'added') || (side === 'b' && c.change === 'removed')) continue;
        for (const n of nodes) if (n.type === 'artifact' && n.name === c.name) ids.add(n.id);
      }
    }
  }
  return [...ids].filter((id) => nodes.some((n) => n.id === id));
}

const isDivergence = (d: LineageDiff, s: Stage) =>
  d.firstDivergence !== null && ((s.a !== null && s.a.runId === d.firstDivergence.a?.runId) || (s.b !== null && s.b.runId === d.firstDivergence.b?.runId));

function StageDetail({ stage: s, highlight }: { stage: Stage; highlight: boolean }) {
  return (
    <section className={`stage ${highlight ? 'diverges' : ''}`} data-stage={s.kind}>
      <h2>
        {s.kind} <span className={`stage-${s.status}`}>{s.status}</span> <span className="small"><RunLink r={s.a} /> → <RunLink r={s.b} /></span>
        {s.a && <StatusBadge status={s.a.status} />}
      </h2>
      {s.hyperparameters.length > 0 && (
        <>
          <h3>Hyperparameters</h3>
          <table className="hpdiff">
            <thead><tr><th>key</th><th className="num">a</th><th className="num">b</th><th className="num">change</th></tr></thead>
            <tbody>
              {s.hyperparameters.map((h) => (
                <tr key={h.path} className={`change-${h.change}`}>
                  <td>{h.path}</td>
                  <td className="num">{h.change === 'added' ? '—' : formatValue(h.a)}</td>
                  <td className="num">{h.change === 'removed' ? '—' : formatValue(h.b)}</td>
                  <td className="num">{h.change === 'changed' && h.relative !== undefined ? `×${formatNumber(h.relative)}` : h.change}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
      {s.midRunChanges && (
        <p className="small">
          Mid-run changes: a {s.midRunChanges.a.map((c) => `${c.key}=${formatValue(c.value)}@${c.step}`).join(', ') || 'none'}; b{' '}
          {s.midRunChanges.b.map((c) => `${c.key}=${formatValue(c.value)}@${c.step}`).join(', ') || 'none'}
        </p>
      )}
      {s.codeVersion && <p className="small">Code version: <code>{s.codeVersion.a ?? '—'}</code> → <code>{s.codeVersion.b ?? '—'}</code></p>}
      {s.inputs.map((inp) => (
        <div key={inp.role} className="inputdiff">
          <h3>Input {inp.role}: {inp.a?.name ?? '—'} → {inp.b?.name ?? '—'} <span className="muted small">{inp.change}</span></h3>
          {inp.components.length > 0 && (
            <table className="mixdiff">
              <thead><tr><th>component</th><th>change</th><th className="num">weight a</th><th className="num">weight b</th><th>filter / content</th></tr></thead>
              <tbody>
                {inp.components.map((c) => (
                  <tr key={c.name} className={`change-${c.change}`} data-component={c.name}>
                    <td>{c.change === 'added' ? '+ ' : c.change === 'removed' ? '− ' : ''}{c.name}</td>
                    <td>{c.change}</td>
                    <td className="num">{c.weight.a === null ? '—' : formatNumber(c.weight.a)}</td>
                    <td className="num">{c.weight.b === null ? '—' : formatNumber(c.weight.b)}</td>
                    <td className="small">
                      {c.filter.map((f) => `${f.path} ${f.change}`).join(', ')}
                      {c.digest && ` digest ${c.digest.a.slice(0, 12)} → ${c.digest.b.slice(0, 12)}`}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
          {inp.spec.length > 0 && <p className="small">spec: {inp.spec.map((v) => `${v.path} ${v.change}`).join(', ')}</p>}
        </div>
      ))}
      {s.metrics.length > 0 && (
        <>
          <h3>Metrics (last; b − a)</h3>
          <table>
            <thead><tr><th>metric</th><th className="num">a</th><th className="num">b</th><th className="num">b − a</th></tr></thead>
            <tbody>
              {s.metrics.map((m) => (
                <tr key={m.key}>
                  <td>{m.key}</td>
                  <td className="num">{m.a ? formatNumber(m.a.last) : '—'}</td>
                  <td className="num">{m.b ? formatNumber(m.b.last) : '—'}</td>
                  <td className="num">{m.delta === null ? '—' : formatNumber(m.delta)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
      {s.evals.length > 0 && (
        <>
          <h3>Evals</h3>
          <table>
            <thead><tr><th>suite / task</th><th className="num">ctx</th><th className="num">a</th><th className="num">b</th><th className="num">b − a</th></tr></thead>
            <tbody>
              {s.evals.map((e, i) => (
                <tr key={i}><td>{e.suite} / {e.task}</td><td className="num">{e.contextLength ?? '—'}</td><td className="num">{e.a === null ? '—' : formatNumber(e.a)}</td><td className="num">{e.b === null ? '—' : formatNumber(e.b)}</td><td className="num">{e.delta === null ? '—' : formatNumber(e.delta)}</td></tr>
              ))}
            </tbody>
          </table>
        </>
      )}
    </section>
  );
}
