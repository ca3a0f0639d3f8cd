import type { Json } from '@pedigree/ledger';
import type { ArtifactView, Pedigree, RunView } from '@pedigree/lineage';
import { datasetDigest } from './ingest.ts';
import { CUSTOM_FACETS, facet, PRODUCER, RUN_EVENT_SCHEMA_URL, STANDARD_FACETS, USAGE_FACET_KEY, type OpenLineageEventType } from './spec.ts';
import type { DatasetRef } from './wire.ts';

/**
 * A project's lineage as OpenLineage 2-0-2 RunEvents, read through the lineage
 * queries only: each run's START (at its start, else its creation) and its
 * COMPLETE, FAIL or ABORT (at its end; a run still going gets a RUNNING as of
 * the export). Jobs are the project's runs; datasets are the artifacts the runs
 * used (START and the end) and produced (the end). What OpenLineage has no
 * facet for travels in Pedigree's own facets (spec.ts, docs/openlineage.md).
 *
 * A run that came in through OpenLineage goes out as it came: its producer's
 * run id and job, its datasets' namespaces, names and versions.
 */

export interface OpenLineageFacet {
  _producer: string;
  _schemaURL: string;
  [field: string]: unknown;
}
type Facets = Record<string, OpenLineageFacet>;

export interface OpenLineageDataset {
  namespace: string;
  name: string;
  facets?: Facets;
  inputFacets?: Facets;
  outputFacets?: Facets;
}

export interface OpenLineageJob {
  namespace: string;
  name: string;
  facets?: Facets;
}

export interface OpenLineageRunEvent {
  eventType: OpenLineageEventType;
  eventTime: string;
  producer: string;
  schemaURL: string;
  run: { runId: string; facets: Facets };
  job: OpenLineageJob;
  inputs: OpenLineageDataset[];
  outputs: OpenLineageDataset[];
}

export interface ExportOptions {
  /** Project ids, or every active project. */
  projects: readonly string[] | 'all';
  /** The time a RUNNING event is stamped with (default: now). */
  now?: Date;
}

const PAGE = 1000;
const shortId = (id: string) => id.slice(0, 8);
const time = (ms: number) => new Date(ms).toISOString();
/** Objects without the keys whose value is undefined or null (JSON would carry nulls, facet schemas type their fields). */
const defined = <T extends Record<string, unknown>>(o: T) => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined && v !== null)) as T;
const record = (v: unknown): Record<string, unknown> | null => (v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : null);

/** Where datasets of a Pedigree project live, as an OpenLineage dataset namespace. */
export const datasetNamespace = (projectName: string) => `pedigree://${encodeURIComponent(projectName)}`;

/** The producer's run id and job of a run that came through OpenLineage (ingest.ts records them in its environment). */
function openLineageOrigin(run: RunView): { runId: string; job: { namespace: string; name: string } } | null {
  const origin = record(run.environment.openlineage);
  const job = record(origin?.job);
  if (run.kind !== 'data' || typeof origin?.runId !== 'string' || typeof job?.namespace !== 'string' || typeof job.name !== 'string') return null;
  return { runId: origin.runId, job: { namespace: job.namespace, name: job.name } };
}

/** A dataset that came through OpenLineage: its identity is what its digest was made from. */
function openLineageDataset(a: ArtifactView): DatasetRef | null {
  const p = record(a.spec.params);
  if (a.kind !== 'dataset' || typeof p?.namespace !== 'string' || typeof p.name !== 'string') return null;
  const ref = { namespace: p.namespace, name: p.name, version: typeof p.version === 'string' ? p.version : null };
  return datasetDigest(ref) === a.digest ? ref : null;
}

async function allRuns(pd: Pedigree, projectId: string): Promise<RunView[]> {
  const out: RunView[] = [];
  for (let offset = 0; ; offset += PAGE) {
    const page = await pd.lineage.runs({ projectId, sort: 'createdAt', order: 'asc', limit: PAGE, offset });
    out.push(...page.runs);
    if (page.runs.length < PAGE) return out;
  }
}

/** Every event of one project, in time order. */
async function projectEvents(pd: Pedigree, projectId: string, now: Date): Promise<OpenLineageRunEvent[]> {
  const project = await pd.lineage.project(projectId);
  const runs = await allRuns(pd, projectId);
  const artifacts = new Map((await pd.lineage.artifacts(projectId)).map((a) => [a.id, a]));
  const components = new Map<string, Awaited<ReturnType<Pedigree['lineage']['artifact']>>['components']>();
  for (const a of artifacts.values()) if (a.kind === 'datamix') components.set(a.id, (await pd.lineage.artifact(a.id)).components);

  // Runs outside the export (a deleted parent) are still named the same way.
  const known = new Map(runs.map((r) => [r.id, r]));
  const runById = async (id: string): Promise<RunView> => {
    const cached = known.get(id);
    if (cached) return cached;
    const run = await pd.lineage.run(id);
    known.set(id, run);
    return run;
  };
  const nameCount = new Map<string, number>();
  for (const r of runs) nameCount.set(r.name, (nameCount.get(r.name) ?? 0) + 1);
  const exported = new Set(runs.map((r) => r.id));

  /** A job per run: its name, made unique within the project with the short run id when several runs share it. */
  const jobOf = (run: RunView): { namespace: string; name: string } => {
    const origin = openLineageOrigin(run);
    if (origin) return origin.job;
    const shared = (nameCount.get(run.name) ?? 0) > (exported.has(run.id) ? 1 : 0);
    return { namespace: project.name, name: shared ? `${run.name} [${shortId(run.id)}]` : run.name };
  };
  const runIdOf = (run: RunView) => openLineageOrigin(run)?.runId ?? run.id;

  const identity = (a: ArtifactView) => {
    const ol = openLineageDataset(a);
    return ol
      ? { namespace: ol.namespace, name: ol.name, version: ol.version }
      : { namespace: datasetNamespace(project.name), name: `${a.kind}/${a.name}`, version: a.digest };
  };

  const datasetFacets = (a: ArtifactView): Facets => {
    const id = identity(a);
    const { components: _, ...spec } = a.spec;
    const facets: Facets = {};
    if (id.version !== null) facets.version = facet(STANDARD_FACETS.version, { datasetVersion: id.version });
    if (a.kind === 'checkpoint' || a.kind === 'file') facets.datasetType = facet(STANDARD_FACETS.datasetType, { datasetType: a.kind === 'checkpoint' ? 'MODEL' : 'FILE' });
    facets.pedigree_artifact = facet(CUSTOM_FACETS.pedigree_artifact, { artifactId: a.id, kind: a.kind, name: a.name, digest: a.digest, spec });
    const mix = components.get(a.id);
    if (mix) {
      facets.pedigree_datamix = facet(CUSTOM_FACETS.pedigree_datamix, {
        components: mix.map((c) => {
          const component = artifacts.get(c.artifactId);
          const cid = component ? identity(component) : null;
          return defined({ artifactId: c.artifactId, namespace: cid?.namespace, name: cid?.name, version: cid?.version, weight: c.weight, filter: c.filter });
        }),
      });
    }
    return facets;
  };

  const events: { at: number; seq: number; event: OpenLineageRunEvent }[] = [];
  for (const run of runs) {
    const edges = await pd.lineage.edgesOf(run.id);
    const datasets = (direction: 'used' | 'produced'): OpenLineageDataset[] => {
      const byArtifact = new Map<string, { roles: string[]; step: number | null }>();
      for (const e of edges) {
        if (e.direction !== direction) continue;
        const usage = byArtifact.get(e.artifactId) ?? { roles: [], step: e.step };
        if (!usage.roles.includes(e.role)) usage.roles.push(e.role);
        byArtifact.set(e.artifactId, usage);
      }
      return [...byArtifact].flatMap(([artifactId, usage]) => {
        const a = artifacts.get(artifactId);
        if (!a) return [];
        const { namespace, name } = identity(a);
        const usageFacet = facet(direction === 'used' ? CUSTOM_FACETS.pedigree_usage_input : CUSTOM_FACETS.pedigree_usage_output, defined({ roles: usage.roles, step: usage.step }));
        return [{ namespace, name, facets: datasetFacets(a), [direction === 'used' ? 'inputFacets' : 'outputFacets']: { [USAGE_FACET_KEY]: usageFacet } }];
      });
    };

    const runFacets: Facets = {
      pedigree_run: facet(
        CUSTOM_FACETS.pedigree_run,
        defined({
          runId: run.id,
          projectId: run.projectId,
          project: project.name,
          name: run.name,
          kind: run.kind,
          status: run.status,
          codeVersion: run.codeVersion,
          environment: run.environment,
          tags: run.tags,
          tagValues: run.tagValues,
          forkedFromArtifactId: run.forkedFromArtifactId,
          forkedAtStep: run.forkedAtStep,
        }),
      ),
    };
    const history = await pd.lineage.hyperparameterHistory(run.id);
    if (Object.keys(run.hyperparameters).length || history.length) {
      runFacets.pedigree_hyperparameters = facet(CUSTOM_FACETS.pedigree_hyperparameters, {
        values: run.hyperparameters,
        changes: history.filter((h) => h.changed).map((h) => defined({ key: h.key, value: h.value as Json, step: h.step, reason: h.reason })),
      });
    }
    if (run.forkedFromRunId) {
      const parent = await runById(run.forkedFromRunId);
      let root = parent;
      for (let hops = 0; root.forkedFromRunId && hops < 1000; hops++) root = await runById(root.forkedFromRunId);
      runFacets.parent = facet(STANDARD_FACETS.parent, {
        run: { runId: runIdOf(parent) },
        job: jobOf(parent),
        ...(root.id !== parent.id ? { root: { run: { runId: runIdOf(root) }, job: jobOf(root) } } : {}),
      });
    }
    const evals = await pd.lineage.evals(run.id);
    const endFacets: Facets = { ...runFacets };
    if (evals.length) {
      endFacets.pedigree_evals = facet(CUSTOM_FACETS.pedigree_evals, {
        results: evals.map((e) => defined({ suite: e.suite, task: e.task, contextLength: e.contextLength, score: e.score, n: e.n, step: e.step })),
      });
    }

    const job: OpenLineageJob = jobOf(run);
    if (!openLineageOrigin(run)) job.facets = { jobType: facet(STANDARD_FACETS.jobType, { processingType: 'BATCH', integration: 'PEDIGREE', jobType: run.kind.toUpperCase() }) };
    const base = { producer: PRODUCER, schemaURL: RUN_EVENT_SCHEMA_URL, job };
    const inputs = datasets('used');
    const end = run.endedAt?.getTime() ?? null;
    // A run reported ended before its start was known (an OpenLineage COMPLETE before its START) starts no later than it ended.
    let start = (run.startedAt ?? run.createdAt).getTime();
    if (end !== null && start > end) start = end;
    if (run.status === 'running') start = Math.min(start, now.getTime());
    const push = (at: number, event: Omit<OpenLineageRunEvent, 'producer' | 'schemaURL' | 'job' | 'eventTime'>) =>
      events.push({ at, seq: events.length, event: { eventType: event.eventType, eventTime: time(at), ...base, run: event.run, inputs: event.inputs, outputs: event.outputs } });

    push(start, { eventType: 'START', run: { runId: runIdOf(run), facets: runFacets }, inputs, outputs: [] });
    switch (run.status) {
      case 'completed':
        push(end ?? start, { eventType: 'COMPLETE', run: { runId: runIdOf(run), facets: endFacets }, inputs, outputs: datasets('produced') });
        break;
      case 'failed':
        push(end ?? start, {
          eventType: run.killed ? 'ABORT' : 'FAIL',
          // The error's language is not recorded; the facet requires one.
          run: { runId: runIdOf(run), facets: { ...endFacets, errorMessage: facet(STANDARD_FACETS.errorMessage, { message: run.error ?? 'failed', programmingLanguage: 'unknown' }) } },
          inputs,
          outputs: datasets('produced'),
        });
        break;
      case 'running':
        push(now.getTime(), { eventType: 'RUNNING', run: { runId: runIdOf(run), facets: endFacets }, inputs, outputs: datasets('produced') });
        break;
      default:
        // created, never started: its START (at creation) is all there is.
        break;
    }
  }
  return events.sort((a, b) => a.at - b.at || a.seq - b.seq).map((e) => e.event);
}

/** The events of these projects, a project at a time (in creation order), each project's in time order. */
export async function* exportOpenLineage(pd: Pedigree, opts: ExportOptions): AsyncGenerator<OpenLineageRunEvent> {
  const now = opts.now ?? new Date();
  const ids = opts.projects === 'all' ? (await pd.lineage.projects({ lifecycle: 'active' })).map((p) => p.id) : opts.projects;
  for (const id of ids) yield* await projectEvents(pd, id, now);
}
