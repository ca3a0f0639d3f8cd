'use client';
import { useQuery } from '@tanstack/react-query';
import Link from 'next/link';
import { useTRPC } from '../_lib/trpc';
import { ErrorBox, Loading } from './bits';

/** One artifact: its spec and digest, what made it, and (for a mix) its components. */
export function ArtifactPage({ artifactId }: { artifactId: string }) {
  const trpc = useTRPC();
  const artifact = useQuery(trpc.artifacts.get.queryOptions({ artifactId }));
  if (artifact.error) return <ErrorBox error={artifact.error} />;
  if (!artifact.data) return <Loading what="artifact" />;
  const a = artifact.data;
  return (
    <div>
      <h1>{a.name} <span className="muted small">{a.kind}</span></h1>
      <dl className="facts">
        <div><dt>digest</dt><dd><code>{a.digest}</code></dd></div>
        <div><dt>created</dt><dd>{a.createdAt.toLocaleString()}</dd></div>
        {a.producedBy && <div><dt>produced by</dt><dd><Link href={`/runs/${a.producedBy}`}>run {a.producedBy.slice(0, 8)}</Link></dd></div>}
      </dl>
      {a.components.length > 0 && (
        <>
          <h2>Components</h2>
          <ul>
            {a.components.map((c) => (
              <li key={c.artifactId}><Link href={`/artifacts/${c.artifactId}`}>{c.artifactId.slice(0, 8)}</Link> weight {c.weight} {c.filter !== null && <code>{JSON.stringify(c.filter)}</code>}</li>
            ))}
          </ul>
        </>
      )}
      <h2>Spec</h2>
      <pre>{JSON.stringify(a.spec, null, 2)}</pre>
    </div>
  );
}
