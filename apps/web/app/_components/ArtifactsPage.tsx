'use client';
import { useQueries, useQuery } from '@tanstack/react-query';
import Link from 'next/link';
import { useRouter, useSearchParams } from 'next/navigation';
import { useMemo, useState } from 'react';
import { shortId } from '../_lib/format';
import { useTRPC, type ArtifactKind, type Outputs } from '../_lib/trpc';
import { ErrorBox, Loading } from './bits';

type Artifact = Outputs['artifacts']['list'][number];
type Use = { runId: string; runName: string; runKind: string; direction: 'used' | 'produced'; role: string; step: number | null };

/**
 * Datasets and data mixes of a project: digests, counts, length histograms, and the runs that used or produced each.
 * `allKinds`: the artifact kinds to choose from (the ledger's ARTIFACT_KINDS, less some: handed down by the page, which runs on the server).
 */
export function ArtifactsPage({ allKinds }: { allKinds: readonly ArtifactKind[] }) {
  const trpc = useTRPC();
  const router = useRouter();
  const params = useSearchParams();
  const projects = useQuery(trpc.projects.list.queryOptions());
  const project = params.get('project') ?? projects.data?.[0]?.name ?? null;
  const [kinds, setKinds] = useState<string[]>(['dataset', 'datamix']);
  const artifacts = useQuery(trpc.artifacts.list.queryOptions({ project: project ?? '' }, { enabled: project !== null }));
  const runs = useQuery(trpc.runs.list.queryOptions({ project: project ?? '', limit: 1000 }, { enabled: project !== null }));
  // Where each artifact was used: the edges of every run of the project (one batched request).
  const edges = useQueries({ queries: (runs.data?.runs ?? []).map((r) => trpc.runs.edges.queryOptions({ runId: r.id })) });
  const uses = useMemo(() => {
    const by = new Map<string, Use[]>();
    (runs.data?.runs ?? []).forEach((r, i) => {
      for (const e of edges[i]?.data ?? []) {
        const list = by.get(e.artifactId) ?? [];
        list.push({ runId: r.id, runName: r.name, runKind: r.kind, direction: e.direction, role: e.role, step: e.step });
        by.set(e.artifactId, list);
      }
    });
    return by;
    // keyed on when each query last updated: the query results are new objects on every render
  }, [runs.data, edges.map((e) => e.dataUpdatedAt).join()]);

  if (projects.error) return <ErrorBox error={projects.error} />;
  if (projects.data && projects.data.length === 0)
    return <div className="empty"><h1>Artifacts</h1><p>No projects yet. Record the sample lineage with <code>npx pedigree sample</code>, or register a dataset from your training code.</p></div>;
  if (artifacts.error) return <ErrorBox error={artifacts.error} />;
  if (!artifacts.data) return <Loading what="artifacts" />;
  const names = new Map(artifacts.data.map((a) => [a.id, a.name]));
  // Datasets reach runs through mixes: each artifact's mixes, with its weight there.
  const inMixes = new Map<string, { mixId: string; weight: number }[]>();
  for (const m of artifacts.data) {
    const comps = (m.spec as { components?: { artifactId: string; weight: number }[] }).components;
    if (m.kind === 'datamix' && Array.isArray(comps)) for (const c of comps) inMixes.set(c.artifactId, [...(inMixes.get(c.artifactId) ?? []), { mixId: m.id, weight: c.weight }]);
  }
  const shown = artifacts.data.filter((a) => kinds.includes(a.kind));

  return (
    <div>
      <div className="toolbar">
        <h1>Artifacts</h1>
        <label>
          project{' '}
          <select aria-label="project" value={project ?? ''} onChange={(e) => router.push(`/artifacts?project=${encodeURIComponent(e.target.value)}`)}>
            {projects.data?.map((p) => <option key={p.id} value={p.name}>{p.name}</option>)}
          </select>
        </label>
        {allKinds.map((k) => (
          <label key={k} className="small">
            <input type="checkbox" checked={kinds.includes(k)} onChange={(e) => setKinds((cur) => (e.target.checked ? [...cur, k] : cur.filter((x) => x !== k)))} /> {k}
            <span className="muted"> ({artifacts.data.filter((a) => a.kind === k).length})</span>
          </label>
        ))}
      </div>
      {shown.length === 0 && <p className="muted">No artifacts of these kinds in <b>{project}</b>. Datasets and mixes appear once a run registers them (<code>pd.registerArtifact</code>, or <code>pedigree train</code>).</p>}
      {shown.length > 0 && (
        <table className="artifacts">
          <thead>
            <tr><th>name</th><th>kind</th><th>digest</th><th className="num">docs</th><th className="num">tokens</th><th>lengths / components</th><th>used by · produced by</th></tr>
          </thead>
          <tbody>
            {shown.map((a) => (
              <ArtifactRow key={a.id} a={a} uses={uses.get(a.id) ?? []} mixes={inMixes.get(a.id) ?? []} names={names} loadingUses={runs.isPending || edges.some((e) => e.isPending)} />
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}

function ArtifactRow({ a, uses, mixes, names, loadingUses }: { a: Artifact; uses: Use[]; mixes: { mixId: string; weight: number }[]; names: Map<string, string>; loadingUses: boolean }) {
  const spec = a.spec as Record<string, unknown>;
  const hist = Array.isArray(spec.lengthHistogram) ? (spec.lengthHistogram as { upTo: number; count: number }[]) : null;
  const components = Array.isArray(spec.components) ? (spec.components as { artifactId: string; weight: number }[]) : null;
  const num = (v: unknown) => (typeof v === 'number' ? v.toLocaleString('en-US') : '—');
  return (
    <tr data-artifact={a.name} data-kind={a.kind}>
      <td><Link href={`/artifacts/${a.id}`}>{a.name}</Link></td>
      <td>{a.kind}</td>
      <td><code className="hash" title={a.digest}>{a.digest.slice(0, 19)}…</code></td>
      <td className="num">{num(spec.docs)}</td>
      <td className="num">{num(spec.tokens)}</td>
      <td>
        {hist && hist.length > 0 ? (
          <Histogram bins={hist} />
        ) : components ? (
          <span className="small">{components.map((c) => `${names.get(c.artifactId) ?? shortId(c.artifactId)} ${(c.weight * 100).toFixed(0)}%`).join(' · ')}</span>
        ) : (
          <span className="muted small">{typeof spec.source === 'string' ? spec.source : '—'}</span>
        )}
      </td>
      <td>
        <div className="uses">
        {uses.length === 0 && mixes.length === 0 && <span className="muted small">{loadingUses ? '…' : 'not used by a run'}</span>}
        {mixes.map((m) => (
          <span key={m.mixId} className="use" data-direction="component">
            <span className="muted small">in</span> <Link href={`/artifacts/${m.mixId}`}>{names.get(m.mixId) ?? shortId(m.mixId)}</Link> <span className="muted small">at {(m.weight * 100).toFixed(0)}%</span>
          </span>
        ))}
        {uses.map((u, i) => (
          <span key={i} className="use" data-direction={u.direction}>
            <Link href={`/runs/${u.runId}`}>{u.runName}</Link> <span className="muted small">{u.direction === 'produced' ? 'produced' : 'used'} as {u.role}{u.step !== null ? ` @${u.step}` : ''}</span>
          </span>
        ))}
        </div>
      </td>
    </tr>
  );
}

/** Document lengths in power-of-two bins, drawn small (SVG bars; hover for the counts). */
function Histogram({ bins }: { bins: { upTo: number; count: number }[] }) {
  const max = Math.max(1, ...bins.map((b) => b.count));
  const W = 140;
  const H = 32;
  const w = W / bins.length;
  const total = bins.reduce((n, b) => n + b.count, 0);
  return (
    <svg className="hist" width={W} height={H + 12} role="img" aria-label={`length histogram: ${bins.map((b) => `≤${b.upTo}: ${b.count}`).join(', ')}`}>
      {bins.map((b, i) => {
        const h = Math.max(b.count ? 1 : 0, (b.count / max) * H);
        return (
          <rect key={b.upTo} x={i * w + 0.5} y={H - h} width={Math.max(1, w - 1)} height={h} fill="var(--accent)">
            <title>{`≤ ${b.upTo} tokens: ${b.count} docs (${((b.count / Math.max(1, total)) * 100).toFixed(1)}%)`}</title>
          </rect>
        );
      })}
      <text x={0} y={H + 10} fontSize={9} fill="currentColor">≤{bins[0]!.upTo}</text>
      <text x={W} y={H + 10} fontSize={9} fill="currentColor" textAnchor="end">≤{bins[bins.length - 1]!.upTo}</text>
    </svg>
  );
}
