import type { Queryable } from '@pedigree/db';
import { rebuildLineageTables } from './rebuild.ts';
import { addPoint, emptySummary, metricNumber, type Projection, type Summary, type StoredEvent, type StoredEventOf } from '@pedigree/ledger';

/** Tables rebuilt from events by `replay()`. */
export const LINEAGE_TABLES = ['projects', 'runs', 'hyperparameters', 'artifacts', 'datamix_components', 'edges', 'metric_series', 'evals', 'notes', 'run_files'] as const;

/** The lineage read models: one evolve step per event type, metric batches in bulk. */
export const lineageProjection: Projection = {
  name: 'lineage',
  tables: LINEAGE_TABLES,
  async apply(tx, events) {
    let metrics: StoredEventOf<'MetricsLogged'>[] = [];
    for (const e of events) {
      if (e.type === 'MetricsLogged') {
        metrics.push(e);
        continue;
      }
      if (metrics.length) {
        await applyMetrics(tx, metrics);
        metrics = [];
      }
      await applyOne(tx, e);
    }
    if (metrics.length) await applyMetrics(tx, metrics);
  },
  // Replay rebuilds every table set-based from the whole log (rebuild.ts), not event by event.
  rebuild: (tx) => rebuildLineageTables(tx),
};

const touchRun = 'UPDATE runs SET last_position = $2 WHERE id = $1';

async function applyOne(tx: Queryable, e: StoredEvent): Promise<void> {
  const runId = e.streamId.startsWith('run-') ? e.streamId.slice(4) : null;
  switch (e.type) {
    case 'ProjectCreated':
      await tx.query('INSERT INTO projects (id, name, description, created_at, position) VALUES ($1, $2, $3, $4, $5)', [
        e.data.projectId,
        e.data.name,
        e.data.description ?? null,
        e.recordedAt,
        e.position,
      ]);
      return;
    case 'RunCreated':
      await tx.query(
        `INSERT INTO runs (id, project_id, name, kind, status, code_version, environment, created_at, last_position)
         VALUES ($1, $2, $3, $4, 'created', $5, $6::jsonb, $7, $8)`,
        [e.data.runId, e.projectId, e.data.name, e.data.kind, e.data.codeVersion ?? null, JSON.stringify(e.data.environment), e.recordedAt, e.position],
      );
      return;
    case 'RunForked':
      await tx.query('UPDATE runs SET forked_from_run_id = $2, forked_from_artifact_id = $3, forked_at_step = $4, last_position = $5 WHERE id = $1', [
        runId,
        e.data.fromRunId,
        e.data.fromArtifactId ?? null,
        e.data.step ?? null,
        e.position,
      ]);
      return;
    case 'HyperparametersDeclared': {
      const keys = Object.keys(e.data.values);
      if (keys.length) {
        await tx.query(
          `INSERT INTO hyperparameters (project_id, run_id, key, seq, step, value, value_type, position)
           SELECT $1, $2, k, $3, NULL, v, jsonb_typeof(v), $4 FROM jsonb_each($5::jsonb) AS j(k, v)`,
          [e.projectId, runId, e.streamVersion, e.position, JSON.stringify(e.data.values)],
        );
      }
      await tx.query('UPDATE runs SET hyperparameters = hyperparameters || $2::jsonb, last_position = $3 WHERE id = $1', [runId, JSON.stringify(e.data.values), e.position]);
      return;
    }
    case 'HyperparameterChanged':
      await tx.query(
        `INSERT INTO hyperparameters (project_id, run_id, key, seq, step, value, value_type, reason, position)
         VALUES ($1, $2, $3, $4, $5, $6::jsonb, jsonb_typeof($6::jsonb), $7, $8)`,
        [e.projectId, runId, e.data.key, e.streamVersion, e.data.step, JSON.stringify(e.data.value), e.data.reason ?? null, e.position],
      );
      await tx.query('UPDATE runs SET hyperparameters = hyperparameters || jsonb_build_object($2::text, $3::jsonb), last_position = $4 WHERE id = $1', [
        runId,
        e.data.key,
        JSON.stringify(e.data.value),
        e.position,
      ]);
      return;
    case 'InputUsed':
    case 'OutputProduced': {
      const direction = e.type === 'InputUsed' ? 'used' : 'produced';
      await tx.query(
        `INSERT INTO edges (project_id, run_id, artifact_id, direction, role, step, position) VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT DO NOTHING`,
        [e.projectId, runId, e.data.artifactId, direction, e.data.role, e.data.step ?? null, e.position],
      );
      if (direction === 'produced') await tx.query('UPDATE artifacts SET produced_by = $2 WHERE id = $1 AND produced_by IS NULL', [e.data.artifactId, runId]);
      await tx.query(touchRun, [runId, e.position]);
      return;
    }
    case 'ProjectRenamed':
      await tx.query('UPDATE projects SET name = $2, updated_at = $3 WHERE id = $1', [e.projectId, e.data.name, e.recordedAt]);
      return;
    case 'ProjectDeleted':
    case 'ProjectRestored':
      await tx.query('UPDATE projects SET lifecycle = $2, updated_at = $3 WHERE id = $1', [e.projectId, e.type === 'ProjectDeleted' ? 'deleted' : 'active', e.recordedAt]);
      return;
    case 'ProjectTagSet':
      await tx.query('UPDATE projects SET tag_values = tag_values || jsonb_build_object($2::text, $3::text), updated_at = $4 WHERE id = $1', [
        e.projectId,
        e.data.key,
        e.data.value,
        e.recordedAt,
      ]);
      return;
    case 'RunStarted':
      await tx.query(`UPDATE runs SET status = 'running', started_at = $2, ended_at = NULL, last_position = $3 WHERE id = $1`, [runId, reportedTime(e.data.at, e.recordedAt), e.position]);
      return;
    case 'RunRenamed':
      await tx.query('UPDATE runs SET name = $2, last_position = $3 WHERE id = $1', [runId, e.data.name, e.position]);
      return;
    case 'RunDeleted':
    case 'RunRestored':
      await tx.query('UPDATE runs SET lifecycle = $2, last_position = $3 WHERE id = $1', [runId, e.type === 'RunDeleted' ? 'deleted' : 'active', e.position]);
      return;
    case 'TagSet':
      await tx.query('UPDATE runs SET tag_values = tag_values || jsonb_build_object($2::text, $3::text), last_position = $4 WHERE id = $1', [runId, e.data.key, e.data.value, e.position]);
      return;
    case 'TagRemoved':
      await tx.query('UPDATE runs SET tag_values = tag_values - $2::text, last_position = $3 WHERE id = $1', [runId, e.data.key, e.position]);
      return;
    case 'FileUploaded':
      await insertArtifact(tx, e.data.artifactId, e.projectId, e.data.path, e.data.digest, { kind: 'file', path: e.data.path, bytes: e.data.bytes }, runId, e.recordedAt, e.position);
      await tx.query(
        `INSERT INTO edges (project_id, run_id, artifact_id, direction, role, step, position) VALUES ($1, $2, $3, 'produced', 'file', NULL, $4)
         ON CONFLICT DO NOTHING`,
        [e.projectId, runId, e.data.artifactId, e.position],
      );
      await tx.query(
        `INSERT INTO run_files (project_id, run_id, path, artifact_id, digest, bytes, position) VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (run_id, path) DO UPDATE SET artifact_id = excluded.artifact_id, digest = excluded.digest, bytes = excluded.bytes, position = excluded.position`,
        [e.projectId, runId, e.data.path, e.data.artifactId, e.data.digest, e.data.bytes, e.position],
      );
      await tx.query(touchRun, [runId, e.position]);
      return;
    case 'LineageEventReceived':
      await tx.query(touchRun, [runId, e.position]);
      return;
    case 'CheckpointSaved':
      await insertArtifact(tx, e.data.artifactId, e.projectId, e.data.name, e.data.digest, e.data.spec, runId, e.recordedAt, e.position);
      await tx.query(
        `INSERT INTO edges (project_id, run_id, artifact_id, direction, role, step, position) VALUES ($1, $2, $3, 'produced', 'checkpoint', $4, $5)
         ON CONFLICT DO NOTHING`,
        [e.projectId, runId, e.data.artifactId, e.data.step, e.position],
      );
      await tx.query(
        `UPDATE runs SET summary = jsonb_set(summary, '{checkpoints}', to_jsonb(coalesce((summary->>'checkpoints')::int, 0) + 1)), last_position = $2 WHERE id = $1`,
        [runId, e.position],
      );
      return;
    case 'EvalRecorded':
      await tx.query(
        `INSERT INTO evals (project_id, run_id, seq, suite, task, context_length, score, n, step, position) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
        [e.projectId, runId, e.streamVersion, e.data.suite, e.data.task, e.data.contextLength ?? null, e.data.score, e.data.n ?? null, e.data.step ?? null, e.position],
      );
      await tx.query(
        `UPDATE runs SET summary = jsonb_set(summary, '{evals}', to_jsonb(coalesce((summary->>'evals')::int, 0) + 1)), last_position = $2 WHERE id = $1`,
        [runId, e.position],
      );
      return;
    case 'RunCompleted':
      await tx.query(`UPDATE runs SET status = 'completed', ended_at = $2, error = NULL, killed = false, last_position = $3 WHERE id = $1`, [runId, reportedTime(e.data.at, e.recordedAt), e.position]);
      return;
    case 'RunFailed':
      await tx.query(`UPDATE runs SET status = 'failed', ended_at = $2, error = $3, killed = $4, last_position = $5 WHERE id = $1`, [
        runId,
        reportedTime(e.data.at, e.recordedAt),
        e.data.error,
        e.data.killed ?? false,
        e.position,
      ]);
      return;
    case 'ArtifactRegistered':
      await insertArtifact(tx, e.data.artifactId, e.projectId, e.data.name, e.data.digest, e.data.spec, null, e.recordedAt, e.position);
      if (e.data.spec.kind === 'datamix') {
        const c = e.data.spec.components;
        await tx.query(
          `INSERT INTO datamix_components (project_id, datamix_id, idx, artifact_id, weight, filter)
           SELECT $1, $2, i - 1, a, w, f FROM unnest($3::uuid[], $4::float8[], $5::jsonb[]) WITH ORDINALITY AS u(a, w, f, i)`,
          [e.projectId, e.data.artifactId, c.map((x) => x.artifactId), c.map((x) => x.weight), c.map((x) => JSON.stringify(x.filter ?? {}))],
        );
      }
      return;
    case 'TagAdded':
      await tx.query(`UPDATE runs SET tags = CASE WHEN $2 = ANY(tags) THEN tags ELSE array_append(tags, $2) END, last_position = $3 WHERE id = $1`, [
        runId,
        e.data.tag,
        e.position,
      ]);
      return;
    case 'NoteAdded':
      await tx.query('INSERT INTO notes (project_id, run_id, seq, text, author, created_at, position) VALUES ($1, $2, $3, $4, $5, $6, $7)', [
        e.projectId,
        runId,
        e.streamVersion,
        e.data.text,
        e.data.author ?? null,
        e.recordedAt,
        e.position,
      ]);
      await tx.query(touchRun, [runId, e.position]);
      return;
    case 'MetricsLogged':
      await applyMetrics(tx, [e]);
      return;
    default: {
      const never: never = e;
      throw new Error(`lineage projection: unhandled event ${(never as StoredEvent).type}`);
    }
  }
}

/** The time a client reported for a start or an end, else when the event was recorded. */
function reportedTime(at: number | undefined, recordedAt: Date): Date {
  return at === undefined ? recordedAt : new Date(at);
}

async function insertArtifact(tx: Queryable, id: string, projectId: string, name: string, digest: string, spec: unknown, producedBy: string | null, at: Date, position: number) {
  await tx.query(
    `INSERT INTO artifacts (id, project_id, kind, name, digest, spec, produced_by, created_at, position)
     VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9) ON CONFLICT DO NOTHING`,
    [id, projectId, (spec as { kind: string }).kind, name, digest, JSON.stringify(spec), producedBy, at, position],
  );
}

interface SeriesAcc extends Summary {
  projectId: string;
  runId: string;
  key: string;
}

/** Consecutive MetricsLogged events' series summaries, in one upsert (their points are in their chunks already). */
async function applyMetrics(tx: Queryable, events: StoredEventOf<'MetricsLogged'>[]): Promise<void> {
  const series = new Map<string, Map<string, SeriesAcc>>(); // by run, then key
  const runTotals = new Map<string, { position: number; points: number }>();
  for (const e of events) {
    const runId = e.streamId.slice(4);
    const total = runTotals.get(runId) ?? { position: 0, points: 0 };
    runTotals.set(runId, { position: e.position, points: total.points + e.data.points.length });
    let keys = series.get(runId);
    if (!keys) series.set(runId, (keys = new Map()));
    for (const p of e.data.points) {
      let s = keys.get(p.key);
      if (!s) keys.set(p.key, (s = { projectId: e.projectId, runId, key: p.key, ...emptySummary() }));
      addPoint(s, p.step, metricNumber(p.value));
    }
  }
  const acc = [...series.values()].flatMap((keys) => [...keys.values()]);
  const totals = [...runTotals];
  // One round trip: the series (NaN min/max means "no finite value yet": the CASEs keep NaN from winning
  // GREATEST), and each run's point count and last position (a data-modifying CTE runs unreferenced).
  await tx.query(
    `WITH series AS (
       INSERT INTO metric_series AS m (project_id, run_id, key, count, first_step, last_step, last_value, min, max)
       SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::int8[], $5::int8[], $6::int8[], $7::float8[], $8::float8[], $9::float8[])
       ON CONFLICT (run_id, key) DO UPDATE SET
         count = m.count + excluded.count,
         first_step = LEAST(m.first_step, excluded.first_step),
         last_value = CASE WHEN excluded.last_step >= m.last_step THEN excluded.last_value ELSE m.last_value END,
         last_step = GREATEST(m.last_step, excluded.last_step),
         min = CASE WHEN m.min = 'NaN' THEN excluded.min WHEN excluded.min = 'NaN' THEN m.min ELSE LEAST(m.min, excluded.min) END,
         max = CASE WHEN m.max = 'NaN' THEN excluded.max WHEN excluded.max = 'NaN' THEN m.max ELSE GREATEST(m.max, excluded.max) END)
     UPDATE runs SET summary = jsonb_set(summary, '{points}', to_jsonb(coalesce((summary->>'points')::int8, 0) + u.points)), last_position = u.position
     FROM unnest($10::uuid[], $11::int8[], $12::int8[]) AS u(id, position, points) WHERE runs.id = u.id`,
    [
      acc.map((s) => s.projectId),
      acc.map((s) => s.runId),
      acc.map((s) => s.key),
      acc.map((s) => s.n),
      acc.map((s) => s.firstStep),
      acc.map((s) => s.lastStep),
      acc.map((s) => s.lastValue),
      acc.map((s) => s.min),
      acc.map((s) => s.max),
      totals.map(([runId]) => runId),
      totals.map(([, t]) => t.position),
      totals.map(([, t]) => t.points),
    ],
  );
}
