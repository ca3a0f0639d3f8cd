import type { Queryable } from '@pedigree/db';
import { CHUNK_POINT_COLUMNS, type Json } from '@pedigree/ledger';
import type { ArtifactView, RunView } from './views.ts';

/**
 * The one read path of the projection tables that the commands check:
 * projects, runs, artifacts and edges. Every read of them is a method here, in
 * SQL, over whatever it is given: a command's append transaction (its checks
 * must see what that transaction sees, under its locks, which Prisma's own
 * connection cannot) or the pool, for `Lineage`. metric_series is read in SQL
 * too, here and in buckets.ts (a chart reads it with its chunks, inside its
 * own snapshot). The other projection tables (hyperparameters,
 * datamix_components, evals, notes, run_files) are read only by `Lineage`,
 * through Prisma. test/read-paths.test.ts holds every table to its one path.
 */
export class ProjectionReader {
  constructor(private readonly q: Queryable) {}

  // Projects

  async projects(lifecycle: 'active' | 'deleted' | 'all'): Promise<ProjectRecord[]> {
    return lifecycle === 'all'
      ? this.q.query<ProjectRecord>(`SELECT ${PROJECT_COLUMNS} FROM projects ORDER BY created_at ASC`)
      : this.q.query<ProjectRecord>(`SELECT ${PROJECT_COLUMNS} FROM projects WHERE lifecycle = $1 ORDER BY created_at ASC`, [lifecycle]);
  }

  async project(id: string): Promise<ProjectRecord | undefined> {
    const [row] = await this.q.query<ProjectRecord>(`SELECT ${PROJECT_COLUMNS} FROM projects WHERE id = $1`, [id]);
    return row;
  }

  async projectNamed(name: string): Promise<ProjectRecord | undefined> {
    const [row] = await this.q.query<ProjectRecord>(`SELECT ${PROJECT_COLUMNS} FROM projects WHERE name = $1`, [name]);
    return row;
  }

  /** A project that holds this name or this id already (what a new project may not clash with). */
  async projectClashing(name: string, id: string): Promise<{ id: string } | undefined> {
    const [row] = await this.q.query<{ id: string }>('SELECT id FROM projects WHERE name = $1 OR id = $2', [name, id]);
    return row;
  }

  // Runs

  async run(id: string): Promise<RunRecord | undefined> {
    const [row] = await this.q.query<RunRecord>(`SELECT ${RUN_COLUMNS} FROM runs WHERE id = $1`, [id]);
    return row;
  }

  /** What a command checks of a run before it appends to it (a run's whole row is wider). */
  async runState(id: string): Promise<RunState | undefined> {
    const [row] = await this.q.query<RunState>('SELECT id, project_id AS "projectId", status, lifecycle FROM runs WHERE id = $1', [id]);
    return row;
  }

  async runHyperparameters(id: string): Promise<Record<string, Json> | undefined> {
    const [row] = await this.q.query<{ hyperparameters: Record<string, Json> }>('SELECT hyperparameters FROM runs WHERE id = $1', [id]);
    return row?.hyperparameters;
  }

  /** Whether the run has a key–value tag `key`; undefined when there is no such run. */
  async runHasTag(id: string, key: string): Promise<boolean | undefined> {
    const [row] = await this.q.query<{ has: boolean }>('SELECT tag_values ? $2 AS has FROM runs WHERE id = $1', [id, key]);
    return row?.has;
  }

  /** Ids of runs that start with `prefix` (lowercase), within one project when given: two at most, enough to tell one from several. */
  async runIdsStartingWith(prefix: string, projectId: string | null): Promise<string[]> {
    const rows = await this.q.query<{ id: string }>('SELECT id FROM runs WHERE id::text LIKE $1 AND ($2::uuid IS NULL OR project_id = $2::uuid) LIMIT 2', [
      `${prefix}%`,
      projectId,
    ]);
    return rows.map((r) => r.id);
  }

  /** One page of a project's runs and how many match in all (see ListRunsInput in queries.ts). */
  async listRuns(f: RunListing): Promise<{ rows: RunRecord[]; total: number }> {
    const params: unknown[] = [f.projectId];
    const where = ['project_id = $1'];
    const param = (v: unknown) => `$${params.push(v)}`;
    if (f.lifecycle !== 'all') where.push(`lifecycle = ${param(f.lifecycle)}`);
    if (f.kind) where.push(`kind = ${param(f.kind)}`);
    if (f.status) where.push(`status = ${param(f.status)}`);
    if (f.tag) where.push(`tags @> ${param([f.tag])}::text[]`);
    // As written, `%` and `_` in the search are wildcards.
    if (f.search) where.push(`name ILIKE ('%' || ${param(f.search)} || '%')`);
    for (const [key, value] of Object.entries(f.hyperparameters ?? {})) {
      where.push(`(hyperparameters #> ARRAY[${param(key)}]::text[]) = ${param(JSON.stringify(value))}::jsonb`);
    }
    const filter = where.join(' AND ');
    const page = params.length;
    const [rows, [count]] = await Promise.all([
      this.q.query<RunRecord>(`SELECT ${RUN_COLUMNS} FROM runs WHERE ${filter} ORDER BY ${SORT_COLUMNS[f.sort]} ${f.order === 'asc' ? 'ASC' : 'DESC'}, id ASC LIMIT $${page + 1} OFFSET $${page + 2}`, [
        ...params,
        f.limit,
        f.offset,
      ]),
      this.q.query<{ n: number }>(`SELECT count(*)::int8 AS n FROM runs WHERE ${filter}`, params),
    ]);
    return { rows, total: Number(count?.n ?? 0) };
  }

  async runsWithIds(ids: string[]): Promise<RunRecord[]> {
    return this.q.query<RunRecord>(`SELECT ${RUN_COLUMNS} FROM runs WHERE id = ANY($1::uuid[])`, [ids]);
  }

  /** Of these runs, those with a parent run and no checkpoint between them (MLflow's nested runs, OpenLineage's parent facet). */
  async nestedRuns(ids: string[]): Promise<{ id: string; forkedFromRunId: string }[]> {
    return this.q.query<{ id: string; forkedFromRunId: string }>(
      'SELECT id, forked_from_run_id AS "forkedFromRunId" FROM runs WHERE id = ANY($1::uuid[]) AND forked_from_run_id IS NOT NULL AND forked_from_artifact_id IS NULL',
      [ids],
    );
  }

  // Artifacts

  async artifact(id: string): Promise<ArtifactRecord | undefined> {
    const [row] = await this.q.query<ArtifactRecord>(`SELECT ${ARTIFACT_COLUMNS} FROM artifacts WHERE id = $1`, [id]);
    return row;
  }

  /** A project's artifacts (of one kind when given), in the order they were registered. */
  async artifactsOf(projectId: string, kind?: string): Promise<ArtifactRecord[]> {
    return kind
      ? this.q.query<ArtifactRecord>(`SELECT ${ARTIFACT_COLUMNS} FROM artifacts WHERE project_id = $1 AND kind = $2 ORDER BY position ASC`, [projectId, kind])
      : this.q.query<ArtifactRecord>(`SELECT ${ARTIFACT_COLUMNS} FROM artifacts WHERE project_id = $1 ORDER BY position ASC`, [projectId]);
  }

  /** The artifacts with these ids (of one kind when given), in no particular order. */
  async artifactsWithIds(ids: string[], kind?: string): Promise<ArtifactRecord[]> {
    return kind
      ? this.q.query<ArtifactRecord>(`SELECT ${ARTIFACT_COLUMNS} FROM artifacts WHERE id = ANY($1::uuid[]) AND kind = $2`, [ids, kind])
      : this.q.query<ArtifactRecord>(`SELECT ${ARTIFACT_COLUMNS} FROM artifacts WHERE id = ANY($1::uuid[])`, [ids]);
  }

  /** Which of these artifacts are in the project, with their kinds. */
  async artifactKindsIn(projectId: string, ids: string[]): Promise<{ id: string; kind: string }[]> {
    return this.q.query<{ id: string; kind: string }>('SELECT id, kind FROM artifacts WHERE id = ANY($1::uuid[]) AND project_id = $2', [ids, projectId]);
  }

  // Edges

  /** A run's edges, in the order they were recorded. */
  async edgesOf(runId: string): Promise<EdgeRecord[]> {
    return this.q.query<EdgeRecord>(`SELECT ${EDGE_COLUMNS} FROM edges WHERE run_id = $1 ORDER BY position ASC`, [runId]);
  }

  /** What these runs used, in the order it was recorded. */
  async usedBy(runIds: string[]): Promise<EdgeRecord[]> {
    return this.q.query<EdgeRecord>(`SELECT ${EDGE_COLUMNS} FROM edges WHERE run_id = ANY($1::uuid[]) AND direction = 'used' ORDER BY position ASC`, [runIds]);
  }

  /** The runs that produced these artifacts, in no particular order. */
  async producersOf(artifactIds: string[]): Promise<EdgeRecord[]> {
    return this.q.query<EdgeRecord>(`SELECT ${EDGE_COLUMNS} FROM edges WHERE artifact_id = ANY($1::uuid[]) AND direction = 'produced'`, [artifactIds]);
  }

  async hasEdge(runId: string, artifactId: string, direction: 'used' | 'produced'): Promise<boolean> {
    const [row] = await this.q.query('SELECT 1 FROM edges WHERE run_id = $1 AND artifact_id = $2 AND direction = $3', [runId, artifactId, direction]);
    return row !== undefined;
  }

  /** A run downstream of `runId` (itself included) that produced `artifactId`: using it in `runId` would close a cycle. */
  async downstreamProducer(runId: string, artifactId: string): Promise<string | undefined> {
    const [row] = await this.q.query<{ run_id: string }>(
      `WITH RECURSIVE downstream(run_id) AS (
         SELECT $1::uuid
         UNION
         SELECT u.run_id FROM downstream d
           JOIN edges p ON p.run_id = d.run_id AND p.direction = 'produced'
           JOIN edges u ON u.artifact_id = p.artifact_id AND u.direction = 'used')
       SELECT d.run_id FROM downstream d JOIN edges p ON p.run_id = d.run_id AND p.direction = 'produced' AND p.artifact_id = $2 LIMIT 1`,
      [runId, artifactId],
    );
    return row?.run_id;
  }

  // Metric series (one row per run and key)

  /** The last value of every metric of these runs, in no particular order. */
  async lastValues(runIds: string[]): Promise<{ runId: string; key: string; lastValue: number }[]> {
    return this.q.query<{ runId: string; key: string; lastValue: number }>('SELECT run_id AS "runId", key, last_value AS "lastValue" FROM metric_series WHERE run_id = ANY($1::uuid[])', [runIds]);
  }

  /** A run's series, by key. */
  async seriesOf(runId: string): Promise<SeriesRecord[]> {
    return this.q.query<SeriesRecord>(
      'SELECT key, count, first_step AS "firstStep", last_step AS "lastStep", last_value AS "lastValue", min, max FROM metric_series WHERE run_id = $1 ORDER BY key ASC',
      [runId],
    );
  }

  /** Per series of these runs, the chunks that hold its last step (usually one), whole, by run and key. */
  async lastStepChunks(runIds: string[]): Promise<LastStepChunk[]> {
    return this.q.query<LastStepChunk>(
      `SELECT s.run_id AS "runId", s.key, s.last_step AS step, ${CHUNK_POINT_COLUMNS}
       FROM metric_series s JOIN metric_chunks c ON c.project_id = s.project_id AND c.run_id = s.run_id AND c.key = s.key AND c.last_step = s.last_step
       WHERE s.run_id = ANY($1::uuid[])
       ORDER BY s.run_id, s.key`,
      [runIds],
    );
  }
}

export interface ProjectRecord {
  id: string;
  name: string;
  description: string | null;
  createdAt: Date;
  updatedAt: Date | null;
  lifecycle: string;
  tagValues: Record<string, string>;
}

/** A runs row as the reader returns it: a RunView before its last metric values are joined (and its JSON clamped). */
export type RunRecord = Omit<RunView, 'summary' | 'metrics'> & { summary: Record<string, Json> };

export interface RunState {
  id: string;
  projectId: string;
  status: string;
  lifecycle: string;
}

/** An artifacts row as the reader returns it: the view's fields (the view clamps the spec's depth). */
export type ArtifactRecord = ArtifactView;

export interface EdgeRecord {
  runId: string;
  artifactId: string;
  direction: 'used' | 'produced';
  role: string;
  step: number | null;
}

export interface SeriesRecord {
  key: string;
  count: number;
  firstStep: number;
  lastStep: number;
  lastValue: number;
  min: number;
  max: number;
}

export interface LastStepChunk {
  runId: string;
  key: string;
  /** The series' last step. */
  step: number;
  /** The columns as base64 (CHUNK_POINT_COLUMNS in @pedigree/ledger). */
  steps: string;
  vals: string;
  times: string;
}

/** A listing of runs as queries.ts's ListRunsInput parses it. */
export interface RunListing {
  projectId: string;
  lifecycle: 'active' | 'deleted' | 'all';
  kind?: string;
  status?: string;
  tag?: string;
  search?: string;
  /** Exact match on each key's value. */
  hyperparameters?: Record<string, unknown>;
  sort: keyof typeof SORT_COLUMNS;
  order: 'asc' | 'desc';
  limit: number;
  offset: number;
}

const SORT_COLUMNS = { createdAt: 'created_at', name: 'name', kind: 'kind', status: 'status' } as const;

const PROJECT_COLUMNS = 'id, name, description, created_at AS "createdAt", updated_at AS "updatedAt", lifecycle, tag_values AS "tagValues"';
const RUN_COLUMNS = `id, project_id AS "projectId", name, kind, status, code_version AS "codeVersion", environment, hyperparameters, summary, tags,
  forked_from_run_id AS "forkedFromRunId", forked_from_artifact_id AS "forkedFromArtifactId", forked_at_step AS "forkedAtStep", error,
  created_at AS "createdAt", started_at AS "startedAt", ended_at AS "endedAt", lifecycle, tag_values AS "tagValues", killed`;
const ARTIFACT_COLUMNS = 'id, project_id AS "projectId", kind, name, digest, spec, produced_by AS "producedBy", created_at AS "createdAt"';
const EDGE_COLUMNS = 'run_id AS "runId", artifact_id AS "artifactId", direction, role, step';
