'use client';
import type { ReportFormat } from '@pedigree/api';
import { useQuery } from '@tanstack/react-query';
import Link from 'next/link';
import { Fragment, type ReactNode } from 'react';
import { authHeaders } from '../_lib/auth';
import { useTRPC, type Outputs } from '../_lib/trpc';
import { ErrorBox, Loading } from './bits';

/**
 * A project's report (what `pedigree demo` records: results.md and its SVG
 * figures, artifacts of kind `report`), drawn from the files themselves. The
 * server hands a file over only while its bytes match the SHA-256 recorded
 * (apps/web/app/api/reports/[artifactId]/route.ts); otherwise its reason is shown.
 */

type Artifact = Pick<Outputs['artifacts']['get'], 'id' | 'name' | 'kind' | 'digest' | 'spec'>;

/** Where the route handler serves a report's file. */
const REPORTS_URL = '/api/reports';

export const reportFormat = (a: Pick<Artifact, 'kind' | 'spec'>): ReportFormat | null =>
  a.kind === 'report' && (a.spec.format === 'svg' || a.spec.format === 'markdown') ? a.spec.format : null;

/**
 * A report file's text. Fetched with the key in a header, like every other
 * request: an `<img src>` pointing at the route could not carry one.
 */
function useReportFile(a: Artifact) {
  return useQuery({
    queryKey: ['report-file', a.id, a.digest],
    queryFn: async ({ signal }) => {
      const res = await fetch(`${REPORTS_URL}/${a.id}`, { headers: authHeaders(), signal });
      if (!res.ok) {
        const body = (await res.json().catch(() => null)) as { error?: string } | null;
        throw new Error(body?.error ?? `HTTP ${res.status}`);
      }
      return res.text();
    },
    // A changed or missing file stays so until the demo runs again.
    retry: false,
  });
}

/** One SVG figure, as an `<img>` (an SVG shown as an image runs no script), captioned with its name. */
export function ReportFigure({ artifact, caption = true }: { artifact: Artifact; caption?: boolean }) {
  const file = useReportFile(artifact);
  return (
    <figure className="reportfig" data-report={artifact.name}>
      {file.error && <ErrorBox error={file.error} />}
      {!file.error && file.data === undefined && <Loading what={artifact.name} />}
      {file.data !== undefined && <img src={`data:image/svg+xml;charset=utf-8,${encodeURIComponent(file.data)}`} alt={artifact.name} />}
      {caption && (
        <figcaption className="small">
          <Link href={`/artifacts/${artifact.id}`}>{artifact.name}</Link>
        </figcaption>
      )}
    </figure>
  );
}

/** A markdown report, drawn as a small safe subset (see Markdown); its images are the project's figures of those names. */
export function ReportText({ artifact, figures }: { artifact: Artifact; figures: readonly Artifact[] }) {
  const file = useReportFile(artifact);
  if (file.error) return <ErrorBox error={file.error} />;
  if (file.data === undefined) return <Loading what={artifact.name} />;
  const figure = (target: string) => {
    const f = figures.find((x) => x.name === target);
    return f ? <ReportFigure artifact={f} /> : null;
  };
  return (
    <div className="markdown" data-report={artifact.name}>
      <Markdown text={file.data} figure={figure} />
    </div>
  );
}

/** The latest artifact of each name, in the order they were first recorded (the demo records the same names again on each run). */
export function latestByName<T extends { name: string }>(artifacts: readonly T[]): T[] {
  const latest = new Map<string, T>();
  for (const a of artifacts) {
    latest.delete(a.name);
    latest.set(a.name, a);
  }
  return [...latest.values()];
}

/** The project's report, if it has one: its figures and a link to its text. Nothing at all when there is none. */
export function ProjectReport({ projectId }: { projectId: string }) {
  const trpc = useTRPC();
  const reports = useQuery(trpc.artifacts.list.queryOptions({ project: projectId, kind: 'report' }));
  if (reports.error) return <ErrorBox error={reports.error} />;
  const latest = latestByName(reports.data ?? []);
  const figures = latest.filter((a) => reportFormat(a) === 'svg');
  const texts = latest.filter((a) => reportFormat(a) === 'markdown');
  if (figures.length === 0 && texts.length === 0) return null;
  return (
    <section className="report" aria-label="Report">
      <h2>Report</h2>
      <p className="muted small">
        The project’s report{' '}
        {texts.map((t, i) => (
          <Fragment key={t.id}>
            {i > 0 && ', '}
            <Link href={`/artifacts/${t.id}`}>{t.name}</Link>
          </Fragment>
        ))}
        {texts.length === 0 && '(figures only)'}, shown from its files while they match the SHA-256 recorded.
      </p>
      <div className="reportfigs">
        {figures.map((f) => (
          <ReportFigure key={f.id} artifact={f} />
        ))}
      </div>
    </section>
  );
}

/**
 * The markdown results.md is written in, as React elements (never as HTML):
 * `#`–`###` headings, paragraphs, `-` lists, pipe tables, a line that is only
 * an image (`![alt](name)`: `figure(name)`, else its alt text), and inline
 * `code`, **bold** and http(s) links. Anything else shows as its text.
 */
export function Markdown({ text, figure }: { text: string; figure: (name: string) => ReactNode }) {
  const blocks: ReactNode[] = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; ) {
    const line = lines[i]!;
    const key = blocks.length;
    const heading = /^(#{1,3})\s+(.*)$/.exec(line);
    const image = /^!\[([^\]]*)\]\(([^)\s]+)\)\s*$/.exec(line.trim());
    if (!line.trim()) {
      i++;
    } else if (heading) {
      const H = `h${heading[1]!.length + 1}` as 'h2' | 'h3' | 'h4';
      blocks.push(<H key={key}>{inline(heading[2]!)}</H>);
      i++;
    } else if (image) {
      blocks.push(<Fragment key={key}>{figure(decodeTarget(image[2]!)) ?? <p className="muted">[{image[1]}]</p>}</Fragment>);
      i++;
    } else if (line.startsWith('|')) {
      const rows: string[][] = [];
      for (; i < lines.length && lines[i]!.startsWith('|'); i++) rows.push(cells(lines[i]!));
      const [head, rule, ...body] = rows;
      const ruled = rule?.every((c) => /^:?-+:?$/.test(c));
      blocks.push(
        <div key={key} className="scroll">
          <table>
            {ruled && <thead><tr>{head!.map((c, j) => <th key={j}>{inline(c)}</th>)}</tr></thead>}
            <tbody>
              {(ruled ? body : rows).map((r, k) => (
                <tr key={k}>{r.map((c, j) => <td key={j}>{inline(c)}</td>)}</tr>
              ))}
            </tbody>
          </table>
        </div>,
      );
    } else if (/^[-*]\s/.test(line)) {
      const items: string[] = [];
      for (; i < lines.length && /^[-*]\s/.test(lines[i]!); i++) items.push(lines[i]!.slice(2));
      blocks.push(<ul key={key}>{items.map((t, j) => <li key={j}>{inline(t)}</li>)}</ul>);
    } else {
      const para: string[] = [];
      for (; i < lines.length && lines[i]!.trim() && !/^(#{1,3}\s|\||[-*]\s|!\[)/.test(lines[i]!); i++) para.push(lines[i]!);
      if (para.length === 0) para.push(lines[i++]!);
      blocks.push(<p key={key}>{inline(para.join(' '))}</p>);
    }
  }
  return <>{blocks}</>;
}

const cells = (row: string) => row.trim().replace(/^\|/, '').replace(/\|$/, '').split('|').map((c) => c.trim());

function decodeTarget(target: string): string {
  try {
    return decodeURIComponent(target);
  } catch {
    return target;
  }
}

/** `code`, **bold** and [text](http…) links; everything else is text. */
function inline(text: string): ReactNode[] {
  return text.split(/(`[^`]+`|\*\*[^*]+\*\*|\[[^\]]+\]\([^)\s]+\))/).map((part, i) => {
    if (/^`[^`]+`$/.test(part)) return <code key={i}>{part.slice(1, -1)}</code>;
    if (/^\*\*[^*]+\*\*$/.test(part)) return <b key={i}>{part.slice(2, -2)}</b>;
    const link = /^\[([^\]]+)\]\(([^)\s]+)\)$/.exec(part);
    if (link) return /^https?:\/\//i.test(link[2]!) ? <a key={i} href={link[2]} rel="noopener noreferrer">{link[1]}</a> : <Fragment key={i}>{link[1]}</Fragment>;
    return <Fragment key={i}>{part}</Fragment>;
  });
}
