'use client';
import { keepPreviousData, useQuery } from '@tanstack/react-query';
import Link from 'next/link';
import { useRouter, useSearchParams } from 'next/navigation';
import { useMemo, useState } from 'react';
import { formatNumber, formatValue, shortId } from '../_lib/format';
import { useTRPC, type Inputs, type RunKind, type RunView } from '../_lib/trpc';
import { ErrorBox, StatusBadge } from './bits';

type Status = NonNullable<Inputs['runs']['list']['status']>;
type Sort = NonNullable<Inputs['runs']['list']['sort']>;
const STATUSES = ['created', 'running', 'completed', 'failed'] as const satisfies readonly Status[];
/** The hyperparameters that tell stages apart, shown first until the user picks columns. */
const PREFERRED_COLUMNS = ['lr', 'context', 'rope_base', 'batch', 'beta', 'epochs'];

/** The keys that appear in the most runs, most frequent first. */
function commonKeys(records: Record<string, unknown>[], n: number): string[] {
  const counts = new Map<string, number>();
  for (const r of records) for (const k of Object.keys(r)) counts.set(k, (counts.get(k) ?? 0) + 1);
  return [...counts.entries()].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])).slice(0, n).map(([k]) => k);
}

/** `kinds`: the run kinds to filter by, the ledger's RUN_KINDS (handed down by the page, which runs on the server). */
export function RunsPage({ kinds }: { kinds: readonly RunKind[] }) {
  const trpc = useTRPC();
  const router = useRouter();
  const params = useSearchParams();
  const projects = useQuery(trpc.projects.list.queryOptions());
  const project = params.get('project') ?? projects.data?.[0]?.name ?? null;

  const [kind, setKind] = useState('');
  const [status, setStatus] = useState<Status | ''>('');
  const [search, setSearch] = useState('');
  const [sort, setSort] = useState<Sort>('createdAt');
  const [order, setOrder] = useState<'asc' | 'desc'>('desc');
  const [selected, setSelected] = useState<string[]>([]);
  const [pickedColumns, setPickedColumns] = useState<string[] | null>(null);

  const runs = useQuery({
    ...trpc.runs.list.queryOptions(
      { project: project ?? '', kind: kind || undefined, status: status || undefined, search: search || undefined, sort, order, limit: 500 },
      { enabled: project !== null, placeholderData: keepPreviousData },
    ),
    // Statuses are live: a running run's row changes while you look.
    refetchInterval: 5_000,
  });

  const rows: RunView[] = runs.data?.runs ?? [];
  const hpKeys = useMemo(() => commonKeys(rows.map((r) => r.hyperparameters), 50), [rows]);
  const columns = pickedColumns ?? [...PREFERRED_COLUMNS.filter((k) => hpKeys.includes(k)), ...hpKeys.filter((k) => !PREFERRED_COLUMNS.includes(k))].slice(0, 4);
  const metricKeys = useMemo(() => commonKeys(rows.map((r) => r.metrics), 3), [rows]);

  const toggleSort = (s: Sort) => {
    if (sort === s) setOrder(order === 'asc' ? 'desc' : 'asc');
    else (setSort(s), setOrder(s === 'createdAt' ? 'desc' : 'asc'));
  };
  const toggleSelected = (id: string) =>
    setSelected((cur) => (cur.includes(id) ? cur.filter((x) => x !== id) : [...cur, id].slice(-2)));
  const arrow = (s: Sort) => (sort === s ? (order === 'asc' ? ' ▲' : ' ▼') : '');

  if (projects.error) return <ErrorBox error={projects.error} />;
  if (projects.data && projects.data.length === 0) return <EmptyStore />;

  return (
    <div>
      <div className="toolbar">
        <h1>Runs</h1>
        <label>
          project{' '}
          <select aria-label="project" value={project ?? ''} onChange={(e) => router.push(`/?project=${encodeURIComponent(e.target.value)}`)}>
            {projects.data?.map((p) => (
              <option key={p.id} value={p.name}>{p.name}</option>
            ))}
          </select>
        </label>
        <input aria-label="search runs" placeholder="search name…" value={search} onChange={(e) => setSearch(e.target.value)} />
        <select aria-label="kind" value={kind} onChange={(e) => setKind(e.target.value)}>
          <option value="">any kind</option>
          {kinds.map((k) => <option key={k}>{k}</option>)}
        </select>
        <select aria-label="status" value={status} onChange={(e) => setStatus(e.target.value as Status | '')}>
          <option value="">any status</option>
          {STATUSES.map((s) => <option key={s}>{s}</option>)}
        </select>
        <details className="columns">
          <summary>columns</summary>
          {hpKeys.map((k) => (
            <label key={k}>
              <input
                type="checkbox"
                checked={columns.includes(k)}
                onChange={() => setPickedColumns(columns.includes(k) ? columns.filter((c) => c !== k) : [...columns, k])}
              />{' '}
              {k}
            </label>
          ))}
        </details>
        <span className="spacer" />
        {runs.data && <span className="muted small">{runs.data.total} run{runs.data.total === 1 ? '' : 's'}</span>}
        <button
          disabled={selected.length !== 2}
          onClick={() => router.push(`/diff?a=${selected[0]}&b=${selected[1]}`)}
          title="select two runs with the checkboxes"
        >
          Diff selected ({selected.length}/2)
        </button>
      </div>
      {runs.error && <ErrorBox error={runs.error} />}
      {runs.data && rows.length === 0 && (
        <div className="empty">
          {search || kind || status ? (
            <p>No run matches these filters.</p>
          ) : (
            <>
              <p>No runs in <b>{project}</b> yet. Log one from your training code with the typed client:</p>
              <pre>{`import { connect } from '@pedigree/client';\nconst pd = await connect({ url: '${typeof window === 'undefined' ? '' : window.location.origin}' });\nconst run = await pd.startRun({ project: '${project}', name: 'pretrain', kind: 'pretrain', hyperparameters: { lr: 3e-4 } });\nrun.log({ 'train/loss': 2.3 }, 0);\nawait run.finish();`}</pre>
            </>
          )}
        </div>
      )}
      {rows.length > 0 && (
        <div className="scroll">
          <table className="runs">
            <thead>
              <tr>
                <th />
                <th className="sortable" onClick={() => toggleSort('name')}>name{arrow('name')}</th>
                <th className="sortable" onClick={() => toggleSort('kind')}>kind{arrow('kind')}</th>
                <th className="sortable" onClick={() => toggleSort('status')}>status{arrow('status')}</th>
                {columns.map((k) => <th key={`hp-${k}`} className="num">{k}</th>)}
                {metricKeys.map((k) => <th key={`m-${k}`} className="num" title="last logged value">{k} <span className="muted">(last)</span></th>)}
                <th>tags</th>
                <th className="sortable" onClick={() => toggleSort('createdAt')}>created{arrow('createdAt')}</th>
              </tr>
            </thead>
            <tbody>
              {rows.map((r) => (
                <tr key={r.id} className={selected.includes(r.id) ? 'selected' : undefined} data-run={r.name}>
                  <td>
                    <input type="checkbox" aria-label={`select ${r.name}`} checked={selected.includes(r.id)} onChange={() => toggleSelected(r.id)} />
                  </td>
                  <td>
                    <Link href={`/runs/${r.id}`}>{r.name}</Link> <span className="muted small">{shortId(r.id)}</span>
                  </td>
                  <td>{r.kind}</td>
                  <td><StatusBadge status={r.status} /></td>
                  {columns.map((k) => <td key={`hp-${k}`} className="num">{formatValue(r.hyperparameters[k])}</td>)}
                  {metricKeys.map((k) => <td key={`m-${k}`} className="num">{r.metrics[k] === undefined ? '—' : formatNumber(r.metrics[k])}</td>)}
                  <td>{r.tags.map((t) => <span key={t} className="tag">{t}</span>)}</td>
                  <td className="muted small">{r.createdAt.toLocaleString()}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </div>
  );
}

function EmptyStore() {
  return (
    <div className="empty">
      <h1>No projects yet</h1>
      <p>This store is empty. Record the Phi-4-shaped sample lineage (stop the server first for an embedded store):</p>
      <pre>npx pedigree sample</pre>
      <p>or log your own runs from a script with <code>@pedigree/client</code> (see the README).</p>
    </div>
  );
}
