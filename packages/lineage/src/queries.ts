import type { Db, PrismaClient, Queryable } from '@pedigree/db';
import { CHUNK_READ_COLUMNS, chunkOfRow, clampDepth, NotFoundError, ValidationError, type ChunkRow, type Json } from '@pedigree/ledger';
import { z } from 'zod';
import { metricBuckets, metricChart, type BucketOptions } from './buckets.ts';
import { diffLineage, type DiffOptions, type LineageDiff } from './diff.ts';
import { ProjectionReader, type ArtifactRecord, type ProjectRecord, type RunRecord } from './reader.ts';
import type { ArtifactView, ArtifactWithComponents, Bucket, EdgeView, EvalView, HyperparameterView, LineageEdge, LineageGraph, LineageNode, MetricKeyView, ProjectView, RunView } from './views.ts';

export type { ArtifactView, ArtifactWithComponents, Bucket, EdgeView, EvalView, HyperparameterView, LineageEdge, LineageGraph, LineageNode, MetricKeyView, ProjectView, RunView } from './views.ts';

/** Most points metricPoints reads per query. */
const METRIC_POINTS_PER_READ = 250_000;

export const ListRunsInput = z.object({
  projectId: z.uuid(),
  kind: z.string().optional(),
  status: z.enum(['created', 'running', 'completed', 'failed']).optional(),
  tag: z.string().optional(),
  search: z.string().max(200).optional(),
  /** Exact match on hyperparameters: { lr: 0.001 } */
  hyperparameters: z.record(z.string(), z.unknown()).optional(),
  sort: z.enum(['createdAt', 'name', 'kind', 'status']).default('createdAt'),
  order: z.enum(['asc', 'desc']).default('desc'),
  limit: z.number().int().min(1).max(1000).default(50),
  offset: z.number().int().min(0).default(0),
  /** Deleted runs are hidden unless asked for. */
  lifecycle: z.enum(['active', 'deleted', 'all']).default('active'),
});
export type ListRunsInput = z.input<typeof ListRunsInput>;

const toRunView = (r: RunRecord, metrics: Record<string, number>): RunView => ({
  id: r.id,
  projectId: r.projectId,
  name: r.name,
  kind: r.kind,
  status: r.status,
  codeVersion: r.codeVersion,
  environment: clampDepth(r.environment as Record<string, Json>),
  hyperparameters: clampDepth(r.hyperparameters as Record<string, Json>),
  summary: r.summary as RunView['summary'],
  tags: r.tags,
  forkedFromRunId: r.forkedFromRunId,
  forkedFromArtifactId: r.forkedFromArtifactId,
  forkedAtStep: r.forkedAtStep,
  error: r.error,
  createdAt: r.createdAt,
  startedAt: r.startedAt,
  endedAt: r.endedAt,
  metrics,
  lifecycle: r.lifecycle,
  tagValues: r.tagValues,
  killed: r.killed,
});

const uuidOk = (s: string) => z.uuid().safeParse(s).success;
/** BIGINT columns hold steps up to 2^53 − 1: exact as numbers. */
const num = (v: bigint | number | null) => (v === null ? null : Number(v));

/**
 * The read side, one door to every read model. Each table has one read path
 * (test/read-paths.test.ts): the tables the commands check (projects, runs,
 * artifacts, edges) are read in SQL through `ProjectionReader` (reader.ts),
 * which the commands' checks use too; metric series in SQL, there and in
 * buckets.ts; the tables only this class reads, through Prisma.
 */
export class Lineage {
  private readonly reader: ProjectionReader;

  constructor(
    readonly db: Db,
    readonly prisma: PrismaClient,
  ) {
    this.reader = new ProjectionReader(db);
  }

  /** What differs between two runs' lineages (see diff.ts). */
  diff(a: string, b: string, opts: DiffOptions = {}): Promise<LineageDiff> {
    return diffLineage(this, a, b, opts);
  }

  async projects(opts: { lifecycle?: 'active' | 'deleted' | 'all' } = {}) {
    const rows = await this.reader.projects(opts.lifecycle ?? 'all');
    return rows.map(toProjectView);
  }

  async projectByName(name: string) {
    const p = await this.reader.projectNamed(name);
    if (!p) throw new NotFoundError(`project ${JSON.stringify(name)}`);
    return toProjectView(p);
  }

  async project(projectId: string) {
    if (!uuidOk(projectId)) throw new ValidationError(`project id must be a UUID, got ${JSON.stringify(projectId)}`);
    const p = await this.reader.project(projectId.toLowerCase());
    if (!p) throw new NotFoundError(`project ${projectId}`);
    return toProjectView(p);
  }

  /** The latest upload per path of a run's files, in path order. */
  async runFiles(runId: string, opts: { under?: string } = {}) {
    const rows = await this.prisma.runFile.findMany({
      where: { runId, ...(opts.under ? { path: { startsWith: `${opts.under.replace(/\/+$/, '')}/` } } : {}) },
      orderBy: { path: 'asc' },
    });
    return rows.map((f) => ({ path: f.path, artifactId: f.artifactId, digest: f.digest, bytes: Number(f.bytes) }));
  }

  private async lastValues(runIds: string[]): Promise<Map<string, Record<string, number>>> {
    const rows = await this.reader.lastValues(runIds);
    const out = new Map<string, Record<string, number>>();
    for (const r of rows) {
      const m = out.get(r.runId) ?? {};
      m[r.key] = r.lastValue;
      out.set(r.runId, m);
    }
    return out;
  }

  async run(runId: string): Promise<RunView> {
    if (!uuidOk(runId)) throw new ValidationError(`run id must be a UUID, got ${JSON.stringify(runId)}`);
    const r = await this.reader.run(runId);
    if (!r) throw new NotFoundError(`run ${runId}`);
    return toRunView(r, (await this.lastValues([r.id])).get(r.id) ?? {});
  }

  /**
   * What an access check needs to know of a project (by id or name), a run
   * or an artifact: its id and its project; null when there is none.
   */
  async projectRef(idOrName: string): Promise<{ id: string; name: string } | null> {
    const p = uuidOk(idOrName) ? await this.reader.project(idOrName.toLowerCase()) : await this.reader.projectNamed(idOrName);
    return p ? { id: p.id, name: p.name } : null;
  }

  async runRef(runId: string): Promise<{ id: string; projectId: string; status: string } | null> {
    const r = uuidOk(runId) ? await this.reader.runState(runId.toLowerCase()) : undefined;
    return r ? { id: r.id, projectId: r.projectId, status: r.status } : null;
  }

  async artifactRef(artifactId: string): Promise<{ id: string; projectId: string } | null> {
    const a = uuidOk(artifactId) ? await this.reader.artifact(artifactId.toLowerCase()) : undefined;
    return a ? { id: a.id, projectId: a.projectId } : null;
  }

  /** Runs whose id starts with `prefix` (what people paste from a table). */
  async resolveRunId(prefix: string, opts: { projectId?: string } = {}): Promise<string> {
    if (uuidOk(prefix)) return prefix.toLowerCase();
    if (!/^[0-9a-f-]{4,36}$/i.test(prefix)) throw new ValidationError(`not a run id or id prefix: ${JSON.stringify(prefix)}`);
    // Within one project when asked (an API key's): another project's runs neither match nor make a prefix ambiguous.
    const ids = await this.reader.runIdsStartingWith(prefix.toLowerCase(), opts.projectId ?? null);
    if (ids.length === 0) throw new NotFoundError(`run ${prefix}`);
    if (ids.length > 1) throw new ValidationError(`run id prefix ${prefix} is ambiguous`);
    return ids[0]!;
  }

  async runs(input: ListRunsInput): Promise<{ runs: RunView[]; total: number }> {
    const q = ListRunsInput.parse(input);
    const unset = Object.entries(q.hyperparameters ?? {}).find(([, v]) => v === undefined);
    if (unset) throw new ValidationError(`hyperparameters.${unset[0]} has no value to match`);
    const { rows, total } = await this.reader.listRuns(q);
    const metrics = await this.lastValues(rows.map((r) => r.id));
    return { runs: rows.map((r) => toRunView(r, metrics.get(r.id) ?? {})), total };
  }

  async hyperparameterHistory(runId: string): Promise<HyperparameterView[]> {
    const rows = await this.prisma.hyperparameter.findMany({ where: { runId }, orderBy: [{ seq: 'asc' }, { key: 'asc' }] });
    return rows.map((h) => ({ key: h.key, value: clampDepth(h.value as Json), type: h.valueType, step: num(h.step), reason: h.reason, changed: h.step !== null }));
  }

  async artifact(artifactId: string): Promise<ArtifactWithComponents> {
    if (!uuidOk(artifactId)) throw new ValidationError(`artifact id must be a UUID, got ${JSON.stringify(artifactId)}`);
    const a = await this.reader.artifact(artifactId);
    if (!a) throw new NotFoundError(`artifact ${artifactId}`);
    const components = await this.prisma.datamixComponent.findMany({ where: { datamixId: a.id }, orderBy: { idx: 'asc' } });
    return { ...toArtifactView(a), components: components.map((c) => ({ artifactId: c.artifactId, weight: c.weight, filter: c.filter as Json })) };
  }

  async artifacts(projectId: string, kind?: string): Promise<ArtifactView[]> {
    const rows = await this.reader.artifactsOf(projectId, kind);
    return rows.map(toArtifactView);
  }

  async edgesOf(runId: string): Promise<EdgeView[]> {
    const rows = await this.reader.edgesOf(runId);
    const arts = await this.reader.artifactsWithIds([...new Set(rows.map((e) => e.artifactId))]);
    const byId = new Map(arts.map((a) => [a.id, a]));
    return rows.map((e) => ({
      artifactId: e.artifactId,
      direction: e.direction,
      role: e.role,
      step: e.step,
      /** The artifact's name and kind, for display. */
      name: byId.get(e.artifactId)?.name ?? null,
      kind: byId.get(e.artifactId)?.kind ?? null,
    }));
  }

  async evals(runId: string): Promise<EvalView[]> {
    const rows = await this.prisma.evalResult.findMany({ where: { runId }, orderBy: { seq: 'asc' } });
    return rows.map((e) => ({ suite: e.suite, task: e.task, contextLength: num(e.contextLength), score: e.score, n: num(e.n), step: num(e.step) }));
  }

  async notes(runId: string) {
    const rows = await this.prisma.note.findMany({ where: { runId }, orderBy: { seq: 'asc' } });
    return rows.map((n) => ({ text: n.text, author: n.author, createdAt: n.createdAt }));
  }

  async metricKeys(runId: string): Promise<MetricKeyView[]> {
    const rows = await this.reader.seriesOf(runId);
    return rows.map((s) => ({ key: s.key, count: s.count, firstStep: s.firstStep, lastStep: s.lastStep, last: s.lastValue, min: s.min, max: s.max }));
  }

  /**
   * A run's ancestry back to datasets: the artifacts it used, the runs that
   * produced them, their inputs, and the components of every data mix.
   */
  async ancestry(runId: string, opts: { maxDepth?: number } = {}): Promise<LineageGraph> {
    const root = await this.run(runId);
    const nodes = new Map<string, LineageNode>([[root.id, { id: root.id, type: 'run', kind: root.kind, name: root.name, status: root.status }]]);
    const edges: LineageEdge[] = [];
    let runs = [root.id];
    const seenRuns = new Set(runs);
    const seenArtifacts = new Set<string>();
    for (let depth = 0; runs.length && depth < (opts.maxDepth ?? 100); depth++) {
      const used = await this.reader.usedBy(runs);
      // A parent with no checkpoint between (MLflow's nested runs, OpenLineage's parent facet) is an edge of its own.
      const nested = await this.reader.nestedRuns(runs);
      const parents: string[] = [];
      for (const r of nested) {
        edges.push({ from: r.forkedFromRunId, to: r.id, relation: 'parent', role: 'parent' });
        if (!seenRuns.has(r.forkedFromRunId)) {
          seenRuns.add(r.forkedFromRunId);
          parents.push(r.forkedFromRunId);
        }
      }
      let frontier = [...new Set(used.map((e) => e.artifactId))].filter((a) => !seenArtifacts.has(a));
      for (const e of used) edges.push({ from: e.artifactId, to: e.runId, relation: 'used', role: e.role });
      const next: string[] = [...parents];
      while (frontier.length) {
        frontier.forEach((a) => seenArtifacts.add(a));
        const arts = await this.reader.artifactsWithIds(frontier);
        for (const a of arts) nodes.set(a.id, { id: a.id, type: 'artifact', kind: a.kind, name: a.name, digest: a.digest });
        const producers = await this.reader.producersOf(frontier);
        for (const p of producers) {
          edges.push({ from: p.runId, to: p.artifactId, relation: 'produced', role: p.role });
          if (!seenRuns.has(p.runId)) {
            seenRuns.add(p.runId);
            next.push(p.runId);
          }
        }
        const comps = await this.prisma.datamixComponent.findMany({ where: { datamixId: { in: frontier } }, orderBy: [{ datamixId: 'asc' }, { idx: 'asc' }] });
        for (const c of comps) edges.push({ from: c.artifactId, to: c.datamixId, relation: 'component', role: 'component', weight: c.weight });
        frontier = [...new Set(comps.map((c) => c.artifactId))].filter((a) => !seenArtifacts.has(a));
      }
      if (next.length) {
        const rs = await this.reader.runsWithIds(next);
        for (const r of rs) nodes.set(r.id, { id: r.id, type: 'run', kind: r.kind, name: r.name, status: r.status });
      }
      runs = next;
    }
    return { root: root.id, nodes: [...nodes.values()], edges };
  }

  /**
   * Raw points of one metric in step order (a step logged twice: in the
   * order logged), `offset` and `limit` applied to that order. Chunks are
   * read in order of their first step, a bounded number of points at a
   * time, and reading stops once the page is complete: no chunk not yet
   * read can hold a step below the next one's first step.
   */
  async metricPoints(runId: string, key: string, range: { fromStep?: number; toStep?: number; limit?: number; offset?: number } = {}) {
    const from = range.fromStep ?? 0;
    const to = range.toStep ?? Number.MAX_SAFE_INTEGER;
    const offset = range.offset ?? 0;
    const end = offset + (range.limit ?? 10_000_000);
    // The heads name the run's project: each read of the points then opens one partition of metric_chunks.
    const heads = await this.db.query<{ project_id: string; position: number; idx: number; n: number; first_step: number }>(
      `SELECT project_id, position, idx, n, first_step FROM metric_chunks WHERE run_id = $1 AND key = $2 AND last_step >= $3 AND first_step <= $4 ORDER BY first_step, position, idx`,
      [runId, key, from, to],
    );
    const points: { step: number; value: number; time: number; position: number; ord: number }[] = [];
    for (let i = 0; i < heads.length; ) {
      let j = i;
      for (let read = 0; j < heads.length && (j === i || read + heads[j]!.n <= METRIC_POINTS_PER_READ); j++) read += heads[j]!.n;
      const rows = await this.db.query<ChunkRow>(
        `SELECT ${CHUNK_READ_COLUMNS} FROM unnest($1::int8[], $2::int4[]) AS u(position, idx)
         JOIN metric_chunks USING (position, idx) WHERE project_id = $3::uuid`,
        [heads.slice(i, j).map((h) => h.position), heads.slice(i, j).map((h) => h.idx), heads[i]!.project_id],
      );
      for (const row of rows) {
        const c = chunkOfRow(row);
        for (let k = 0; k < c.steps.length; k++) {
          const step = c.steps[k]!;
          if (step >= from && step <= to) points.push({ step, value: c.values[k]!, time: c.times[k]!, position: row.position, ord: k });
        }
      }
      i = j;
      if (i < heads.length) {
        const settled = heads[i]!.first_step; // every point below it is read
        if (points.filter((p) => p.step < settled).length >= end) break;
      }
    }
    const before = (x: (typeof points)[number], y: (typeof points)[number]) => x.step - y.step || x.position - y.position || x.ord - y.ord;
    let sorted = true;
    for (let k = 1; k < points.length && sorted; k++) sorted = before(points[k - 1]!, points[k]!) < 0;
    if (!sorted) points.sort(before);
    return points.slice(offset, end).map((p) => ({ step: p.step, value: p.value, time: p.time }));
  }

  /**
   * The latest point of every metric of these runs, as MLflow defines it: the
   * highest step, then the latest wall time, then the larger value. Reads the
   * summaries and, per series, the chunks that end at its last step.
   */
  async latestMetrics(runIds: string[]): Promise<Map<string, { key: string; value: number; step: number; time: number }[]>> {
    const out = new Map<string, { key: string; value: number; step: number; time: number }[]>();
    if (runIds.length === 0) return out;
    // The chunks that hold a series' last step (usually one), read whole; the points at that step compared here.
    const rows = await this.reader.lastStepChunks(runIds);
    // Descending as PostgreSQL sorts float8: NaN above every number.
    const above = (a: number, b: number) => (Number.isNaN(a) ? !Number.isNaN(b) : a > b);
    const best = new Map<string, { runId: string; key: string; value: number; step: number; time: number }>();
    for (const r of rows) {
      const { steps, values, times } = chunkOfRow(r);
      const id = `${r.runId}\u0000${r.key}`;
      for (let i = 0; i < steps.length; i++) {
        if (steps[i] !== Number(r.step)) continue;
        const b = best.get(id);
        const [value, time] = [values[i]!, times[i]!];
        if (!b || above(time, b.time) || (time === b.time && above(value, b.value))) best.set(id, { runId: r.runId, key: r.key, value, step: Number(r.step), time });
      }
    }
    for (const b of best.values()) {
      const list = out.get(b.runId) ?? [];
      list.push({ key: b.key, value: b.value, step: b.step, time: b.time });
      out.set(b.runId, list);
    }
    return out;
  }

  /** The datasets each run used, with their roles (MLflow's run inputs). */
  async datasetInputs(runIds: string[]): Promise<Map<string, { role: string; artifact: ArtifactView }[]>> {
    const out = new Map<string, { role: string; artifact: ArtifactView }[]>();
    if (runIds.length === 0) return out;
    const edges = await this.reader.usedBy(runIds);
    const arts = await this.reader.artifactsWithIds([...new Set(edges.map((e) => e.artifactId))], 'dataset');
    const byId = new Map(arts.map((a) => [a.id, toArtifactView(a)]));
    for (const e of edges) {
      const artifact = byId.get(e.artifactId);
      if (!artifact) continue;
      const list = out.get(e.runId) ?? [];
      list.push({ role: e.role, artifact });
      out.set(e.runId, list);
    }
    return out;
  }

  /**
   * A chart's buckets (metricBuckets) and the position of the run's last
   * event they reflect, read in one snapshot: a live view folds in exactly the
   * points of the events after it (appends to one stream commit in position
   * order, so the snapshot holds every event of the run up to that position).
   */
  async metricChart(runId: string, key: string, opts: { buckets: number; fromStep?: number; toStep?: number }): Promise<{ position: number; buckets: Bucket[] }> {
    return metricChart(this.db, runId, key, opts);
  }

  /** One metric as `buckets` equal step ranges, each with its exact count, min, max and last value (see buckets.ts). */
  metricBuckets(runId: string, key: string, opts: BucketOptions, q: Queryable = this.db): Promise<Bucket[]> {
    return metricBuckets(q, runId, key, opts);
  }
}

function toProjectView(p: ProjectRecord): ProjectView {
  return { id: p.id, name: p.name, description: p.description, createdAt: p.createdAt, updatedAt: p.updatedAt ?? p.createdAt, lifecycle: p.lifecycle, tagValues: p.tagValues };
}

function toArtifactView(a: ArtifactRecord): ArtifactView {
  return { id: a.id, projectId: a.projectId, kind: a.kind, name: a.name, digest: a.digest, spec: clampDepth(a.spec as Record<string, Json>), producedBy: a.producedBy, createdAt: a.createdAt };
}

