'use client';
import { useQuery } from '@tanstack/react-query';
import Link from 'next/link';
import { formatValue } from '../_lib/format';
import { useTRPC } from '../_lib/trpc';

const COLORS = ['#2563eb', '#16a34a', '#ea580c', '#9333ea', '#0891b2', '#ca8a04', '#db2777', '#64748b'];

/** A data mix: one row per component (weight, filter) and a stacked bar of the weights. */
export function DataMix({ mixId, role, names }: { mixId: string; role: string; names: Map<string, string> }) {
  const trpc = useTRPC();
  const mix = useQuery(trpc.artifacts.get.queryOptions({ artifactId: mixId }));
  if (mix.error) return <p className="error">{mix.error.message}</p>;
  if (!mix.data) return null;
  const components = mix.data.components;
  return (
    <div className="datamix">
      <h3>
        <Link href={`/artifacts/${mixId}`}>{mix.data.name}</Link> <span className="muted small">{role} · {mix.data.digest.slice(0, 19)}</span>
      </h3>
      <div className="mixbar" aria-label="data mix weights">
        {components.map((c, i) => (
          <span
            key={c.artifactId}
            style={{ width: `${c.weight * 100}%`, background: COLORS[i % COLORS.length] }}
            title={`${names.get(c.artifactId) ?? c.artifactId}: ${(c.weight * 100).toFixed(1)}%`}
          >
            {c.weight >= 0.08 ? `${(c.weight * 100).toFixed(0)}%` : ''}
          </span>
        ))}
      </div>
      <table>
        <thead>
          <tr><th /><th>component</th><th className="num">weight</th><th>filter</th></tr>
        </thead>
        <tbody>
          {components.map((c, i) => (
            <tr key={c.artifactId}>
              <td><span className="swatch" style={{ background: COLORS[i % COLORS.length] }} /></td>
              <td><Link href={`/artifacts/${c.artifactId}`}>{names.get(c.artifactId) ?? c.artifactId.slice(0, 8)}</Link></td>
              <td className="num">{(c.weight * 100).toFixed(1)}%</td>
              <td><code>{c.filter === null ? '—' : formatValue(c.filter)}</code></td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
