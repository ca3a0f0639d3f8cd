import type { Pedigree as Client } from '@pedigree/client';
import { streamIds, type StoredEvent } from '@pedigree/ledger';
import { getRun } from '../client.ts';
import type { Command } from '../command.ts';
import { formatJson, formatNumber, formatTimestamp, shortId, table } from '../format.ts';

/** The most events.stream answers per call. */
const PAGE = 10_000;

export const eventsCommand: Command = {
  name: 'events',
  summary: "a run's audit log: every event of its stream, hash-chained",
  usage: 'events <run>',
  description:
    "The run's stream as stored: version, event type, time recorded, the first characters of its hash, and what it said. Each event's hash covers the previous one's, which `pedigree verify` checks. --json prints the events whole.",
  args: [{ name: 'run' }],
  async run(ctx) {
    const client = await ctx.client();
    const run = await getRun(client, ctx.args[0]!);
    const events = await wholeStream(client, run.id);
    if (ctx.json) return ctx.term.json(events);
    const artifacts = await client.call('artifacts', () => client.api.artifacts.list.query({ project: run.projectId }));
    const artifactNames = new Map(artifacts.map((a) => [a.id, a.name]));
    const { paint } = ctx.term;
    ctx.term.line(`${paint.bold(run.name)}  ${paint.dim(`stream ${streamIds.run(run.id)} · ${events.length} events`)}`);
    const lines = table(
      events,
      [
        { header: 'V', cell: (e) => String(e.streamVersion), align: 'right' },
        { header: 'TYPE', cell: (e) => e.type, paint: (t) => paint.bold(t) },
        { header: 'RECORDED', cell: (e) => formatTimestamp(e.recordedAt, { ms: true }), paint: (t) => paint.dim(t) },
        { header: 'HASH', cell: (e) => e.hash.slice(0, 10), paint: (t) => paint.yellow(t) },
        { header: 'DATA', cell: (e) => summarizeEvent(e, (id) => artifactNames.get(id) ?? shortId(id)), shrink: true },
      ],
      { width: ctx.term.width, paint },
    );
    for (const line of lines) ctx.term.line(line);
  },
};

/** Every event of the run's stream, oldest first, a page at a time. */
async function wholeStream(client: Client, runId: string): Promise<StoredEvent[]> {
  const events: StoredEvent[] = [];
  for (;;) {
    const page = await client.events(runId, { fromVersion: events.length + 1, limit: PAGE });
    events.push(...(page.events as StoredEvent[]));
    if (page.events.length < PAGE) return events;
  }
}

const MAX_LISTED = 4;
const listed = (items: string[]) => (items.length > MAX_LISTED ? `${items.slice(0, MAX_LISTED).join(', ')}, … (${items.length})` : items.join(', '));

/** What an event said, in a few words. */
export function summarizeEvent(e: StoredEvent, artifactName: (id: string) => string): string {
  switch (e.type) {
    case 'ProjectCreated':
      return e.data.name;
    case 'RunCreated':
      return `${e.data.name} (${e.data.kind})${e.data.codeVersion ? ` code ${e.data.codeVersion}` : ''}`;
    case 'RunForked':
      return `from run ${shortId(e.data.fromRunId)}${e.data.fromArtifactId ? ` at ${artifactName(e.data.fromArtifactId)}` : ''}${e.data.step !== undefined ? ` step ${e.data.step}` : ''}`;
    case 'HyperparametersDeclared':
      return listed(Object.entries(e.data.values).map(([k, v]) => `${k}=${formatJson(v)}`));
    case 'HyperparameterChanged':
      return `${e.data.key}=${formatJson(e.data.value)} at step ${e.data.step}${e.data.reason ? ` (${e.data.reason})` : ''}`;
    case 'InputUsed':
      return `${e.data.role} ← ${artifactName(e.data.artifactId)}`;
    case 'OutputProduced':
      return `${e.data.role} → ${artifactName(e.data.artifactId)}`;
    case 'RunStarted':
    case 'RunCompleted':
      return e.data.at !== undefined ? `at ${new Date(e.data.at).toISOString()} (reported)` : '';
    case 'RunRenamed':
    case 'ProjectRenamed':
      return `→ ${e.data.name}`;
    case 'RunDeleted':
    case 'RunRestored':
    case 'ProjectDeleted':
    case 'ProjectRestored':
      return '';
    case 'TagSet':
    case 'ProjectTagSet':
      return `${e.data.key}=${JSON.stringify(e.data.value.length > 60 ? `${e.data.value.slice(0, 60)}…` : e.data.value)}`;
    case 'TagRemoved':
      return e.data.key;
    case 'FileUploaded':
      return `${e.data.path} (${e.data.bytes} bytes) ${e.data.digest.slice(0, 19)}`;
    case 'LineageEventReceived':
      return `OpenLineage ${e.data.eventType} at ${e.data.eventTime}`;
    case 'MetricsLogged': {
      const steps = e.data.points.map((p) => p.step);
      const first = steps.reduce((a, b) => Math.min(a, b));
      const last = steps.reduce((a, b) => Math.max(a, b));
      return `${e.data.points.length} points of ${listed([...new Set(e.data.points.map((p) => p.key))])}, steps ${first}–${last}`;
    }
    case 'CheckpointSaved':
      return `${e.data.name} at step ${e.data.step} ${e.data.digest.slice(0, 19)}`;
    case 'EvalRecorded':
      return `${e.data.suite}/${e.data.task}${e.data.contextLength ? ` @${e.data.contextLength}` : ''} = ${formatNumber(e.data.score)}${e.data.n !== undefined ? ` (n=${e.data.n})` : ''}`;
    case 'RunFailed':
      return `${e.data.killed ? 'killed: ' : ''}${e.data.error}`;
    case 'ArtifactRegistered':
      return `${e.data.name} (${e.data.spec.kind})`;
    case 'TagAdded':
      return e.data.tag;
    case 'NoteAdded':
      return e.data.text;
    default: {
      const unknown: never = e;
      return JSON.stringify((unknown as StoredEvent).data);
    }
  }
}
