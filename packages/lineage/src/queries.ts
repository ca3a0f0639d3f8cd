import type { Db, PrismaClient, Queryable } from '@pedigree/db';
import { BLOCK_POINTS, CHUNK_READ_COLUMNS, POINT_BYTES, chunkOfRow, clampDepth, decodeBlocks, decodeFloats, decodeSteps, NotFoundError, ValidationError, type ChunkRow, type Json } from '@pedigree/ledger';
import { z } from 'zod';
import { diffLineage, type DiffOptions, type LineageDiff } from './diff.ts';
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

const toRunView = (r: Awaited<ReturnType<PrismaClient['run']['findFirstOrThrow']>>, metrics: Record<string, number>): RunView => ({
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
  forkedAtStep: num(r.forkedAtStep),
  error: r.error,
  createdAt: r.createdAt,
  startedAt: r.startedAt,
  endedAt: r.endedAt,
  metrics,
  lifecycle: r.lifecycle,
  tagValues: r.tagValues as Record<string, string>,
  killed: r.killed,
});

const uuidOk = (s: string) => z.uuid().safeParse(s).success;
/** BIGINT columns hold steps up to 2^53 − 1: exact as numbers. */
const num = (v: bigint | number | null) => (v === null ? null : Number(v));

/** The read side: typed reads through Prisma, heavy aggregates in SQL. */
export class Lineage {
  constructor(
    readonly db: Db,
    readonly prisma: PrismaClient,
  ) {}

  /** What differs between two runs' lineages (see diff.ts). */
  diff(a: string, b: string, opts: DiffOptions = {}): Promise<LineageDiff> {
    return diffLineage(this, a, b, opts);
  }

  async projects(opts: { lifecycle?: 'active' | 'deleted' | 'all' } = {}) {
    const lifecycle = opts.lifecycle ?? 'all';
    const rows = await this.prisma.project.findMany({ where: lifecycle === 'all' ? {} : { lifecycle }, orderBy: { createdAt: 'asc' } });
    return rows.map(toProjectView);
  }

  async projectByName(name: string) {
    const p = await this.prisma.project.findUnique({ where: { name } });
    if (!p) throw new NotFoundError(`project ${JSON.stringify(name)}`);
    return toProjectView(p);
  }

  async project(projectId: string) {
    if (!uuidOk(projectId)) throw new ValidationError(`project id must be a UUID, got ${JSON.stringify(projectId)}`);
    const p = await this.prisma.project.findUnique({ where: { id: projectId.toLowerCase() } });
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
    const rows = await this.prisma.metricSeries.findMany({ where: { runId: { in: runIds } }, select: { runId: true, key: true, lastValue: true } });
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
    const r = await this.prisma.run.findUnique({ where: { id: runId } });
    if (!r) throw new NotFoundError(`run ${runId}`);
    return toRunView(r, (await this.lastValues([r.id])).get(r.id) ?? {});
  }

  /**
   * What an access check needs to know of a project (by id or name), a run
   * or an artifact: its id and its project; null when there is none.
   */
  async projectRef(idOrName: string): Promise<{ id: string; name: string } | null> {
    const where = uuidOk(idOrName) ? { id: idOrName.toLowerCase() } : { name: idOrName };
    return this.prisma.project.findUnique({ where, select: { id: true, name: true } });
  }

  async runRef(runId: string): Promise<{ id: string; projectId: string; status: string } | null> {
    return uuidOk(runId) ? this.prisma.run.findUnique({ where: { id: runId.toLowerCase() }, select: { id: true, projectId: true, status: true } }) : null;
  }

  async artifactRef(artifactId: string): Promise<{ id: string; projectId: string } | null> {
    return uuidOk(artifactId) ? this.prisma.artifact.findUnique({ where: { id: artifactId.toLowerCase() }, select: { id: true, projectId: true } }) : null;
  }

  /** Runs whose id starts with `prefix` (what people paste from a table). */
  async resolveRunId(prefix: string, opts: { projectId?: string } = {}): Promise<string> {
    if (uuidOk(prefix)) return prefix.toLowerCase();
    if (!/^[0-9a-f-]{4,36}$/i.test(prefix)) throw new ValidationError(`not a run id or id prefix: ${JSON.stringify(prefix)}`);
    // Within one project when asked (an API key's): another project's runs neither match nor make a prefix ambiguous.
    const rows = await this.db.query<{ id: string }>('SELECT id FROM runs WHERE id::text LIKE $1 AND ($2::uuid IS NULL OR project_id = $2::uuid) LIMIT 2', [
      `${prefix.toLowerCase()}%`,
      opts.projectId ?? null,
    ]);
    if (rows.length === 0) throw new NotFoundError(`run ${prefix}`);
    if (rows.length > 1) throw new ValidationError(`run id prefix ${prefix} is ambiguous`);
    return rows[0]!.id;
  }

  async runs(input: ListRunsInput): Promise<{ runs: RunView[]; total: number }> {
    const q = ListRunsInput.parse(input);
    const where = {
      projectId: q.projectId,
      ...(q.lifecycle !== 'all' ? { lifecycle: q.lifecycle } : {}),
      ...(q.kind ? { kind: q.kind } : {}),
      ...(q.status ? { status: q.status } : {}),
      ...(q.tag ? { tags: { has: q.tag } } : {}),
      ...(q.search ? { name: { contains: q.search, mode: 'insensitive' as const } } : {}),
      ...(q.hyperparameters && Object.keys(q.hyperparameters).length
        ? { AND: Object.entries(q.hyperparameters).map(([k, v]) => ({ hyperparameters: { path: [k], equals: v as never } })) }
        : {}),
    };
    const [rows, total] = await Promise.all([
      this.prisma.run.findMany({ where, orderBy: [{ [q.sort]: q.order }, { id: 'asc' }], take: q.limit, skip: q.offset }),
      this.prisma.run.count({ where }),
    ]);
    const metrics = await this.lastValues(rows.map((r) => r.id));
    return { runs: rows.map((r) => toRunView(r, metrics.get(r.id) ?? {})), total };
  }

  async hyperparameterHistory(runId: string): Promise<HyperparameterView[]> {
    const rows = await this.prisma.hyperparameter.findMany({ where: { runId }, orderBy: [{ seq: 'asc' }, { key: 'asc' }] });
    return rows.map((h) => ({ key: h.key, value: clampDepth(h.value as Json), type: h.valueType, step: num(h.step), reason: h.reason, changed: h.step !== null }));
  }

  async artifact(artifactId: string): Promise<ArtifactWithComponents> {
    if (!uuidOk(artifactId)) throw new ValidationError(`artifact id must be a UUID, got ${JSON.stringify(artifactId)}`);
    const a = await this.prisma.artifact.findUnique({ where: { id: artifactId } });
    if (!a) throw new NotFoundError(`artifact ${artifactId}`);
    const components = await this.prisma.datamixComponent.findMany({ where: { datamixId: a.id }, orderBy: { idx: 'asc' } });
    return { ...toArtifactView(a), components: components.map((c) => ({ artifactId: c.artifactId, weight: c.weight, filter: c.filter as Json })) };
  }

  async artifacts(projectId: string, kind?: string): Promise<ArtifactView[]> {
    const rows = await this.prisma.artifact.findMany({ where: { projectId, ...(kind ? { kind } : {}) }, orderBy: { position: 'asc' } });
    return rows.map(toArtifactView);
  }

  async edgesOf(runId: string): Promise<EdgeView[]> {
    const rows = await this.prisma.edge.findMany({ where: { runId }, orderBy: { position: 'asc' } });
    const arts = await this.prisma.artifact.findMany({ where: { id: { in: [...new Set(rows.map((e) => e.artifactId))] } }, select: { id: true, name: true, kind: true } });
    const byId = new Map(arts.map((a) => [a.id, a]));
    return rows.map((e) => ({
      artifactId: e.artifactId,
      direction: e.direction as 'used' | 'produced',
      role: e.role,
      step: num(e.step),
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
    const rows = await this.prisma.metricSeries.findMany({ where: { runId }, orderBy: { key: 'asc' } });
    return rows.map((s) => ({ key: s.key, count: Number(s.count), firstStep: Number(s.firstStep), lastStep: Number(s.lastStep), last: s.lastValue, min: s.min, max: s.max }));
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
      const used = await this.prisma.edge.findMany({ where: { runId: { in: runs }, direction: 'used' }, orderBy: { position: 'asc' } });
      // A parent with no checkpoint between (MLflow's nested runs, OpenLineage's parent facet) is an edge of its own.
      const nested = await this.prisma.run.findMany({ where: { id: { in: runs }, forkedFromRunId: { not: null }, forkedFromArtifactId: null }, select: { id: true, forkedFromRunId: true } });
      const parents: string[] = [];
      for (const r of nested) {
        edges.push({ from: r.forkedFromRunId!, to: r.id, relation: 'parent', role: 'parent' });
        if (!seenRuns.has(r.forkedFromRunId!)) {
          seenRuns.add(r.forkedFromRunId!);
          parents.push(r.forkedFromRunId!);
        }
      }
      let frontier = [...new Set(used.map((e) => e.artifactId))].filter((a) => !seenArtifacts.has(a));
      for (const e of used) edges.push({ from: e.artifactId, to: e.runId, relation: 'used', role: e.role });
      const next: string[] = [...parents];
      while (frontier.length) {
        frontier.forEach((a) => seenArtifacts.add(a));
        const arts = await this.prisma.artifact.findMany({ where: { id: { in: frontier } } });
        for (const a of arts) nodes.set(a.id, { id: a.id, type: 'artifact', kind: a.kind, name: a.name, digest: a.digest });
        const producers = await this.prisma.edge.findMany({ where: { artifactId: { in: frontier }, direction: 'produced' } });
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
        const rs = await this.prisma.run.findMany({ where: { id: { in: next } } });
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
    const heads = await this.db.query<{ position: number; idx: number; n: number; first_step: number }>(
      `SELECT position, idx, n, first_step FROM metric_chunks WHERE run_id = $1 AND key = $2 AND last_step >= $3 AND first_step <= $4 ORDER BY first_step, position, idx`,
      [runId, key, from, to],
    );
    const points: { step: number; value: number; time: number; position: number; ord: number }[] = [];
    for (let i = 0; i < heads.length; ) {
      let j = i;
      for (let read = 0; j < heads.length && (j === i || read + heads[j]!.n <= METRIC_POINTS_PER_READ); j++) read += heads[j]!.n;
      const rows = await this.db.query<ChunkRow>(
        `SELECT ${CHUNK_READ_COLUMNS} FROM unnest($1::int8[], $2::int4[]) AS u(position, idx) JOIN metric_chunks USING (position, idx)`,
        [heads.slice(i, j).map((h) => h.position), heads.slice(i, j).map((h) => h.idx)],
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
    const rows = await this.db.query<{ run_id: string; key: string; step: number; steps: Uint8Array; vals: Uint8Array; times: Uint8Array }>(
      `SELECT s.run_id, s.key, s.last_step AS step, c.steps, c.vals, c.times
       FROM metric_series s JOIN metric_chunks c ON c.run_id = s.run_id AND c.key = s.key AND c.last_step = s.last_step
       WHERE s.run_id = ANY($1::uuid[])
       ORDER BY s.run_id, s.key`,
      [runIds],
    );
    // Descending as PostgreSQL sorts float8: NaN above every number.
    const above = (a: number, b: number) => (Number.isNaN(a) ? !Number.isNaN(b) : a > b);
    const best = new Map<string, { runId: string; key: string; value: number; step: number; time: number }>();
    for (const r of rows) {
      const steps = decodeSteps(r.steps);
      const values = decodeFloats(r.vals);
      const times = decodeFloats(r.times);
      const id = `${r.run_id}\u0000${r.key}`;
      for (let i = 0; i < steps.length; i++) {
        if (steps[i] !== Number(r.step)) continue;
        const b = best.get(id);
        const [value, time] = [values[i]!, times[i]!];
        if (!b || above(time, b.time) || (time === b.time && above(value, b.value))) best.set(id, { runId: r.run_id, key: r.key, value, step: Number(r.step), time });
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
    const edges = await this.prisma.edge.findMany({ where: { runId: { in: runIds }, direction: 'used' }, orderBy: { position: 'asc' } });
    const arts = await this.prisma.artifact.findMany({ where: { id: { in: [...new Set(edges.map((e) => e.artifactId))] }, kind: 'dataset' } });
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
    return this.db.transaction(async (tx) => {
      await tx.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ');
      const [row] = await tx.query<{ p: number | null }>('SELECT max(position) AS p FROM events WHERE stream_id = $1', [`run-${runId}`]);
      return { position: row?.p ?? 0, buckets: await this.metricBuckets(runId, key, opts, tx) };
    });
  }

  /**
   * One metric as `buckets` equal step ranges, each with its exact min, max
   * and last value: a chart drawn from these shows every spike a raw plot would.
   */
  async metricBuckets(runId: string, key: string, opts: { buckets: number; fromStep?: number; toStep?: number }, q: Queryable = this.db): Promise<Bucket[]> {
    if (!Number.isInteger(opts.buckets) || opts.buckets < 1 || opts.buckets > 10_000) throw new ValidationError('buckets must be an integer in 1..10000');
    const [series] = await q.query<{ first_step: number; last_step: number }>('SELECT first_step, last_step FROM metric_series WHERE run_id = $1 AND key = $2', [runId, key]);
    if (!series) return [];
    const from = Math.max(opts.fromStep ?? series.first_step, series.first_step);
    const to = Math.min(opts.toStep ?? series.last_step, series.last_step);
    if (to < from) return [];
    const width = Math.max(1, Math.ceil((to - from + 1) / opts.buckets));
    const bucketOf = (step: number) => Math.floor((step - from) / width);
    const within = (lo: number, hi: number) => lo >= from && hi <= to && bucketOf(lo) === bucketOf(hi);
    const outside = (lo: number, hi: number) => hi < from || lo > to;
    // Three reads, each narrower: a chunk whose steps all fall in one bucket counts by its summary;
    // in a chunk that straddles a bucket edge (or the range's ends), a block of BLOCK_POINTS points
    // that falls in one bucket counts by its block summary; only the blocks that straddle an edge
    // are read point by point, as slices of the chunk's columns (substring reads only those bytes).
    const chunks = await q.query<{ position: number; idx: number; n: number; first_step: number; last_step: number; min: number; max: number; last_value: number }>(
      `SELECT position, idx, n, first_step, last_step, min, max, last_value FROM metric_chunks
       WHERE run_id = $1 AND key = $2 AND last_step >= $3 AND first_step <= $4`,
      [runId, key, from, to],
    );
    const buckets = new Map<number, BucketAcc>();
    const straddling: { position: number; idx: number }[] = [];
    for (const c of chunks) {
      if (within(c.first_step, c.last_step)) addToBucket(buckets, bucketOf(c.first_step), c.n, c.first_step, c.last_step, c.min, c.max, c.last_value, c.position, c.n);
      else straddling.push(c);
    }
    const slices: { position: number; idx: number; k: number; blocks: number }[] = [];
    if (straddling.length) {
      const rows = await q.query<{ position: number; idx: number; n: number; blocks: Uint8Array }>(
        `SELECT m.position, m.idx, m.n, m.blocks FROM unnest($1::int8[], $2::int4[]) AS u(position, idx) JOIN metric_chunks m USING (position, idx)`,
        [straddling.map((c) => c.position), straddling.map((c) => c.idx)],
      );
      for (const row of rows) {
        for (const b of decodeBlocks(row.blocks, row.n)) {
          if (outside(b.firstStep, b.lastStep)) continue;
          if (within(b.firstStep, b.lastStep)) {
            addToBucket(buckets, bucketOf(b.firstStep), b.n, b.firstStep, b.lastStep, b.min, b.max, b.lastValue, row.position, (b.k + 1) * BLOCK_POINTS - 1);
            continue;
          }
          const last = slices.at(-1);
          if (last && last.position === row.position && last.idx === row.idx && last.k + last.blocks === b.k) last.blocks++;
          else slices.push({ position: row.position, idx: row.idx, k: b.k, blocks: 1 });
        }
      }
    }
    if (slices.length) {
      const bytes = BLOCK_POINTS * POINT_BYTES;
      const opened = await q.query<{ position: number; k: number; steps: Uint8Array; vals: Uint8Array }>(
        `SELECT u.position, u.k, substring(m.steps FROM u.k * ${bytes} + 1 FOR u.blocks * ${bytes}) AS steps, substring(m.vals FROM u.k * ${bytes} + 1 FOR u.blocks * ${bytes}) AS vals
         FROM unnest($1::int8[], $2::int4[], $3::int4[], $4::int4[]) AS u(position, idx, k, blocks) JOIN metric_chunks m USING (position, idx)`,
        [slices.map((s) => s.position), slices.map((s) => s.idx), slices.map((s) => s.k), slices.map((s) => s.blocks)],
      );
      for (const row of opened) {
        const steps = decodeSteps(row.steps);
        const values = decodeFloats(row.vals);
        const first = row.k * BLOCK_POINTS;
        for (let i = 0; i < steps.length; i++) {
          const step = steps[i]!;
          if (step < from || step > to) continue;
          const v = values[i]!;
          addToBucket(buckets, bucketOf(step), 1, step, step, v, v, v, row.position, first + i);
        }
      }
    }
    return [...buckets.entries()]
      .sort(([x], [y]) => x - y)
      .map(([, a]) => ({ fromStep: a.fromStep, toStep: a.toStep, count: a.count, min: a.min, max: a.max, last: a.last, lastStep: a.toStep }));
  }
}

function toProjectView(p: Awaited<ReturnType<PrismaClient['project']['findFirstOrThrow']>>): ProjectView {
  return { id: p.id, name: p.name, description: p.description, createdAt: p.createdAt, updatedAt: p.updatedAt ?? p.createdAt, lifecycle: p.lifecycle, tagValues: p.tagValues as Record<string, string> };
}

function toArtifactView(a: Awaited<ReturnType<PrismaClient['artifact']['findFirstOrThrow']>>): ArtifactView {
  return { id: a.id, projectId: a.projectId, kind: a.kind, name: a.name, digest: a.digest, spec: clampDepth(a.spec as Record<string, Json>), producedBy: a.producedBy, createdAt: a.createdAt };
}

interface BucketAcc extends Omit<Bucket, 'lastStep'> {
  /** Which point `last` is: its event's position and its index in the chunk (a later one wins a tie on step). */
  lastPosition: number;
  lastOrd: number;
}

/**
 * Adds a part of a series (a chunk's or a block's summary, or one point) to
 * its bucket: min and max ignore NaN (NaN when a bucket has nothing else); the
 * last value is the one at the highest step, the later event, then the later
 * point, winning a tie.
 */
function addToBucket(buckets: Map<number, BucketAcc>, b: number, n: number, lo: number, hi: number, min: number, max: number, last: number, position: number, ord: number): void {
  const a = buckets.get(b);
  if (!a) {
    buckets.set(b, { fromStep: lo, toStep: hi, count: n, min, max, last, lastPosition: position, lastOrd: ord });
    return;
  }
  a.count += n;
  if (lo < a.fromStep) a.fromStep = lo;
  if (!Number.isNaN(min) && !(min >= a.min)) a.min = min;
  if (!Number.isNaN(max) && !(max <= a.max)) a.max = max;
  if (hi > a.toStep || (hi === a.toStep && (position > a.lastPosition || (position === a.lastPosition && ord > a.lastOrd)))) {
    a.toStep = hi;
    a.last = last;
    a.lastPosition = position;
    a.lastOrd = ord;
  }
}
