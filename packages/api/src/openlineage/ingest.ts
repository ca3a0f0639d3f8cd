import { MAX_ERROR, MAX_NAME, ValidationError, type EventMetadata, type Json, type NewEvent } from '@pedigree/ledger';
import { contentDigest, nameUuid, type Pedigree, type RunView } from '@pedigree/lineage';
import type { DatasetRef, ParsedRunEvent } from './wire.ts';

/**
 * An OpenLineage RunEvent from another producer (Airflow, Spark, dbt, …) as
 * Pedigree commands: the job's run becomes a run of kind `data`, its datasets
 * become `dataset` artifacts (matched by namespace + name + version), inputs
 * and outputs become edges, and the raw event is kept on the run's stream
 * (LineageEventReceived, hash-chained like every event). So a dataset's
 * upstream pipeline shows in the lineage of every run that uses it.
 *
 * Idempotent: the event's ledger ids derive from (runId, eventType,
 * eventTime), so a re-sent event is stored once. Events may come in any order:
 * whichever arrives first creates the run; a START after the run ended is
 * only recorded.
 */

export interface IngestResult {
  /** The Pedigree run the OpenLineage run maps to. */
  runId: string;
  projectId: string;
  /** True when the run did not exist before this event. */
  created: boolean;
  /** True when this very event was stored already (a re-send): nothing was written. */
  duplicate: boolean;
  /** Ledger events appended for it on the run's stream. */
  events: number;
}

/** The Pedigree run of an OpenLineage run: the same producer run id always maps to the same run, per project. */
export const pedigreeRunId = (projectId: string, openLineageRunId: string) => nameUuid('openlineage', projectId, openLineageRunId);

/** A dataset's digest: its identity (namespace, name, version), so the same dataset is the same artifact wherever it is seen. */
export const datasetDigest = (d: DatasetRef) => contentDigest({ namespace: d.namespace, name: d.name, version: d.version });

/** Edge roles of OpenLineage's inputs and outputs. */
export const INPUT_ROLE = 'input';
export const OUTPUT_ROLE = 'output';

/** Names Pedigree keeps (MAX_NAME characters): a long one keeps its end, the part that tells tables and files apart. */
function fitName(name: string): string {
  const trimmed = name.trim();
  return trimmed.length <= MAX_NAME ? trimmed : `…${trimmed.slice(trimmed.length - (MAX_NAME - 1))}`;
}

/** What the run's stream records about where it came from. */
function environmentOf(e: ParsedRunEvent): Record<string, Json> {
  return { openlineage: { runId: e.runId, job: { namespace: e.job.namespace, name: e.job.name }, producer: e.producer } };
}

async function findRun(pd: Pedigree, runId: string): Promise<RunView | null> {
  try {
    return await pd.lineage.run(runId);
  } catch (err) {
    if ((err as { code?: string }).code === 'NOT_FOUND') return null;
    throw err;
  }
}

/** The parent facet's run, when it is known in this project: a run that came through OpenLineage, or a Pedigree run named by its own id (as the export writes it). */
async function parentRun(pd: Pedigree, projectId: string, e: ParsedRunEvent, self: string): Promise<string | null> {
  if (!e.parent) return null;
  for (const candidate of [pedigreeRunId(projectId, e.parent.runId), e.parent.runId]) {
    if (candidate === self) continue;
    const run = await findRun(pd, candidate);
    if (run && run.projectId === projectId) return run.id;
  }
  return null;
}

const datasetKey = (d: DatasetRef) => JSON.stringify([d.namespace, d.name, d.version]);
function unique(datasets: DatasetRef[]): DatasetRef[] {
  const seen = new Map<string, DatasetRef>();
  for (const d of datasets) if (!seen.has(datasetKey(d))) seen.set(datasetKey(d), d);
  return [...seen.values()];
}

/** Registers the event's datasets (content-addressed: a dataset seen before is the same artifact); artifact id by dataset key. */
async function registerDatasets(pd: Pedigree, projectId: string, datasets: DatasetRef[], metadata: EventMetadata): Promise<Map<string, string>> {
  const ids = new Map<string, string>();
  for (const d of datasets) {
    const digest = datasetDigest(d);
    const { artifactId } = await pd.tracker.registerArtifact(
      {
        projectId,
        name: fitName(`${d.namespace}/${d.name}`),
        spec: { kind: 'dataset', source: fitName(d.namespace), params: { namespace: d.namespace, name: d.name, ...(d.version !== null ? { version: d.version } : {}) } },
        digest,
      },
      // The same id for every registration of this dataset: two producers racing to register it store it once.
      { eventId: nameUuid('openlineage-dataset', projectId, digest), metadata },
    );
    ids.set(datasetKey(d), artifactId);
  }
  return ids;
}

/** The state change an event asks for, given where the run is: START after the end, or a second end, is only recorded. */
function lifecycleEvents(e: ParsedRunEvent, run: RunView): NewEvent[] {
  const ended = run.status === 'completed' || run.status === 'failed';
  switch (e.eventType) {
    case 'START':
    case 'RUNNING':
      if (run.status === 'created') return [{ type: 'RunStarted', data: { at: e.at } }];
      // A START that arrives after a RUNNING still tells when the run began.
      if (e.eventType === 'START' && run.status === 'running' && run.startedAt && e.at < run.startedAt.getTime()) return [{ type: 'RunStarted', data: { at: e.at } }];
      return [];
    case 'COMPLETE':
      return ended ? [] : [{ type: 'RunCompleted', data: { at: e.at } }];
    case 'FAIL':
    case 'ABORT': {
      if (ended) return [];
      const error = (e.errorMessage ?? (e.eventType === 'ABORT' ? `aborted (OpenLineage ABORT from ${e.producer})` : `failed (OpenLineage FAIL from ${e.producer})`)).slice(0, MAX_ERROR);
      return [{ type: 'RunFailed', data: { error, at: e.at, killed: e.eventType === 'ABORT' || undefined } }];
    }
    case 'OTHER':
    case null:
      return [];
    default: {
      const unknown: never = e.eventType;
      throw new Error(`unhandled OpenLineage event type ${String(unknown)}`);
    }
  }
}

export async function ingestRunEvent(pd: Pedigree, projectId: string, e: ParsedRunEvent, opts: { actor: string }): Promise<IngestResult> {
  const runId = pedigreeRunId(projectId, e.runId);
  // The event's identity: a re-send (same runId, eventType, eventTime) proposes the same ledger ids.
  const eventId = nameUuid('openlineage-event', projectId, e.runId, e.eventType ?? '', e.eventTime);
  const metadata: EventMetadata = { actor: opts.actor, client: 'openlineage' };

  let run = await findRun(pd, runId);
  if (run) {
    if (run.projectId !== projectId) throw new ValidationError(`run ${runId} belongs to another project`);
    if (await pd.store.hasEvent(eventId)) return { runId, projectId, created: false, duplicate: true, events: 0 };
    if (run.lifecycle === 'deleted') throw new ValidationError(`run ${runId} (OpenLineage run ${e.runId}) is deleted in Pedigree; restore it to record more of it`);
  }

  const inputs = unique(e.inputs);
  const outputs = unique(e.outputs);
  const artifacts = await registerDatasets(pd, projectId, unique([...inputs, ...outputs]), metadata);
  const artifactOf = (d: DatasetRef) => artifacts.get(datasetKey(d))!;
  const parent = await parentRun(pd, projectId, e, runId);

  let created = false;
  if (!run) {
    try {
      const res = await pd.tracker.createRun(
        { projectId, runId, name: fitName(e.job.name) || `openlineage-${e.runId.slice(0, 8)}`, kind: 'data', environment: environmentOf(e), forkOf: parent ? { runId: parent } : undefined },
        { eventId: nameUuid(eventId, 'run'), metadata },
      );
      created = !res.duplicate; // a duplicate: the same event, sent twice at once, created it
    } catch (err) {
      // Another event of the same run created it first: carry on with that run.
      if (!(await findRun(pd, runId))) throw err;
    }
    run = (await findRun(pd, runId))!;
  }

  const edges = await pd.lineage.edgesOf(runId);
  const has = (artifactId: string, direction: 'used' | 'produced', role: string) => edges.some((x) => x.artifactId === artifactId && x.direction === direction && x.role === role);
  // An edge that would make the run its own ancestor (a job that writes the very dataset it reads, unversioned) is left out: the first one stands.
  const inputIds = new Set(inputs.map(artifactOf).filter((id) => !edges.some((x) => x.artifactId === id && x.direction === 'produced')));
  const events: NewEvent[] = [{ type: 'LineageEventReceived', data: { format: 'openlineage', eventType: e.eventType ?? '', eventTime: e.eventTime, event: e.raw } }];
  // A parent that became known after the run was created (it reported later).
  if (parent && !run.forkedFromRunId) events.push({ type: 'RunForked', data: { fromRunId: parent } });
  for (const id of inputIds) if (!has(id, 'used', INPUT_ROLE)) events.push({ type: 'InputUsed', data: { artifactId: id, role: INPUT_ROLE } });
  for (const d of outputs) {
    const id = artifactOf(d);
    if (inputIds.has(id) || edges.some((x) => x.artifactId === id && x.direction === 'used')) continue;
    if (!has(id, 'produced', OUTPUT_ROLE)) events.push({ type: 'OutputProduced', data: { artifactId: id, role: OUTPUT_ROLE } });
  }
  events.push(...lifecycleEvents(e, run));
  const res = await pd.tracker.appendToRun(runId, events, { eventId, metadata });
  return { runId, projectId, created, duplicate: res.duplicate, events: res.duplicate ? 0 : events.length };
}
