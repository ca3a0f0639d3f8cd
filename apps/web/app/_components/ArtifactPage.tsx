'use client';
import { useQuery } from '@tanstack/react-query';
import Link from 'next/link';
import { useTRPC } from '../_lib/trpc';
import { ErrorBox, Loading } from './bits';
import { latestByName, ReportFigure, reportFormat, ReportText } from './Report';

/** One artifact: its spec and digest, what made it, (for a mix) its components, and (for a report) its figure or text. */
export function ArtifactPage({ artifactId }: { artifactId: string }) {
  const trpc = useTRPC();
  const artifact = useQuery(trpc.artifacts.get.queryOptions({ artifactId }));
  const format = artifact.data ? reportFormat(artifact.data) : null;
  // A markdown report's images are the project's figures, by name.
  const reports = useQuery(trpc.artifacts.list.queryOptions({ project: artifact.data?.projectId ?? '', kind: 'report' }, { enabled: format === 'markdown' }));
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
      {format === 'svg' && <ReportFigure artifact={a} caption={false} />}
      {format === 'markdown' && (
        <section className="reporttext">
          {reports.error && <ErrorBox error={reports.error} />}
          {reports.data && <ReportText artifact={a} figures={latestByName(reports.data).filter((x) => reportFormat(x) === 'svg')} />}
        </section>
      )}
      <h2>Spec</h2>
      <pre>{JSON.stringify(a.spec, null, 2)}</pre>
    </div>
  );
}
