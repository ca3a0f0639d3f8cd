import type { Queryable } from '@pedigree/db';

/**
 * The lineage read models rebuilt from the whole log in set-based
 * statements, one (or two) per table, for `replay`: what `lineageProjection`
 * builds event by event, as the state after the last event. Each rule below
 * is the fold of projection.ts's per-event statements; tests compare the two
 * row for row (test/lineage.contract.test.ts, whose "rebuilds every event type"
 * case must exercise each event type; test/replay.bounded.test.ts;
 * test/upgrade.v1.test.ts). Runs inside replay's transaction, after its TRUNCATE.
 *
 * Times the client reported (`at`, ms since the epoch) are added to the
 * epoch as an interval: exact to the millisecond, as a JS Date is.
 */
const reported = (e: string) => `coalesce(timestamptz 'epoch' + (${e}.data->>'at')::int8 * interval '1 millisecond', ${e}.recorded_at)`;
const runOf = (e: string) => `substr(${e}.stream_id, 5)::uuid`;

const STATEMENTS: string[] = [
  // Projects, then their renames, lifecycle and tags: the latest event of each kind wins.
  `INSERT INTO projects (id, name, description, created_at, position)
   SELECT (data->>'projectId')::uuid, data->>'name', data->>'description', recorded_at, position
   FROM events WHERE type = 'ProjectCreated' ORDER BY position`,
  `UPDATE projects p SET
     name = coalesce(x.name, p.name),
     lifecycle = coalesce(x.lifecycle, p.lifecycle),
     tag_values = p.tag_values || coalesce(x.tags, '{}'),
     updated_at = x.updated_at
   FROM (
     SELECT project_id,
            (array_agg(data->>'name' ORDER BY position DESC) FILTER (WHERE type = 'ProjectRenamed'))[1] AS name,
            (array_agg(CASE type WHEN 'ProjectDeleted' THEN 'deleted' ELSE 'active' END ORDER BY position DESC) FILTER (WHERE type IN ('ProjectDeleted', 'ProjectRestored')))[1] AS lifecycle,
            jsonb_object_agg(data->>'key', to_jsonb(data->>'value') ORDER BY position) FILTER (WHERE type = 'ProjectTagSet') AS tags,
            (array_agg(recorded_at ORDER BY position DESC))[1] AS updated_at
     FROM events WHERE type IN ('ProjectRenamed', 'ProjectDeleted', 'ProjectRestored', 'ProjectTagSet')
     GROUP BY project_id
   ) x WHERE p.id = x.project_id`,

  // Runs as created, then every later event's effect on its row, folded per run.
  `INSERT INTO runs (id, project_id, name, kind, status, code_version, environment, created_at, last_position)
   SELECT (data->>'runId')::uuid, project_id, data->>'name', data->>'kind', 'created', data->>'codeVersion', data->'environment', recorded_at, position
   FROM events WHERE type = 'RunCreated' ORDER BY position`,
  `UPDATE runs r SET
     name = coalesce(x.name, r.name),
     status = coalesce(x.status, r.status),
     started_at = x.started_at,
     ended_at = CASE WHEN x.status IN ('completed', 'failed') THEN x.ended_at END,
     error = x.error,
     killed = coalesce(x.killed, false),
     lifecycle = coalesce(x.lifecycle, r.lifecycle),
     forked_from_run_id = x.forked_from_run_id,
     forked_from_artifact_id = x.forked_from_artifact_id,
     forked_at_step = x.forked_at_step,
     summary = r.summary || jsonb_strip_nulls(jsonb_build_object('checkpoints', x.checkpoints, 'evals', x.evals)),
     last_position = x.last_position
   FROM (
     SELECT ${runOf('e')} AS run_id,
            max(e.position) AS last_position,
            (array_agg(e.data->>'name' ORDER BY e.position DESC) FILTER (WHERE e.type = 'RunRenamed'))[1] AS name,
            (array_agg(CASE e.type WHEN 'RunStarted' THEN 'running' WHEN 'RunCompleted' THEN 'completed' ELSE 'failed' END ORDER BY e.position DESC)
               FILTER (WHERE e.type IN ('RunStarted', 'RunCompleted', 'RunFailed')))[1] AS status,
            (array_agg(${reported('e')} ORDER BY e.position DESC) FILTER (WHERE e.type = 'RunStarted'))[1] AS started_at,
            (array_agg(${reported('e')} ORDER BY e.position DESC) FILTER (WHERE e.type IN ('RunCompleted', 'RunFailed')))[1] AS ended_at,
            (array_agg(CASE e.type WHEN 'RunFailed' THEN e.data->>'error' END ORDER BY e.position DESC) FILTER (WHERE e.type IN ('RunCompleted', 'RunFailed')))[1] AS error,
            (array_agg(CASE e.type WHEN 'RunFailed' THEN coalesce((e.data->>'killed')::boolean, false) ELSE false END ORDER BY e.position DESC)
               FILTER (WHERE e.type IN ('RunCompleted', 'RunFailed')))[1] AS killed,
            (array_agg(CASE e.type WHEN 'RunDeleted' THEN 'deleted' ELSE 'active' END ORDER BY e.position DESC) FILTER (WHERE e.type IN ('RunDeleted', 'RunRestored')))[1] AS lifecycle,
            (array_agg((e.data->>'fromRunId')::uuid ORDER BY e.position DESC) FILTER (WHERE e.type = 'RunForked'))[1] AS forked_from_run_id,
            (array_agg((e.data->>'fromArtifactId')::uuid ORDER BY e.position DESC) FILTER (WHERE e.type = 'RunForked'))[1] AS forked_from_artifact_id,
            (array_agg((e.data->>'step')::int8 ORDER BY e.position DESC) FILTER (WHERE e.type = 'RunForked'))[1] AS forked_at_step,
            nullif(count(*) FILTER (WHERE e.type = 'CheckpointSaved'), 0) AS checkpoints,
            nullif(count(*) FILTER (WHERE e.type = 'EvalRecorded'), 0) AS evals
     FROM events e WHERE e.stream_id LIKE 'run-%' AND e.type <> 'RunCreated'
     GROUP BY e.stream_id
   ) x WHERE r.id = x.run_id`,
  // Hyperparameters (each key's latest value), tag values (each key's latest set, unless removed after),
  // labels (in the order first added).
  `UPDATE runs r SET hyperparameters = r.hyperparameters || x.values
   FROM (
     SELECT run_id, jsonb_object_agg(k, v ORDER BY position) AS values FROM (
       SELECT ${runOf('e')} AS run_id, j.k, j.v, e.position FROM events e CROSS JOIN LATERAL jsonb_each(e.data->'values') AS j(k, v) WHERE e.type = 'HyperparametersDeclared'
       UNION ALL
       SELECT ${runOf('e')}, e.data->>'key', e.data->'value', e.position FROM events e WHERE e.type = 'HyperparameterChanged'
     ) h GROUP BY run_id
   ) x WHERE r.id = x.run_id`,
  `UPDATE runs r SET tag_values = r.tag_values || x.tags
   FROM (
     SELECT run_id, jsonb_object_agg(key, to_jsonb(value)) AS tags FROM (
       SELECT DISTINCT ON (e.stream_id, e.data->>'key') ${runOf('e')} AS run_id, e.data->>'key' AS key, e.data->>'value' AS value, e.type
       FROM events e WHERE e.type IN ('TagSet', 'TagRemoved')
       ORDER BY e.stream_id, e.data->>'key', e.position DESC
     ) t WHERE type = 'TagSet' GROUP BY run_id
   ) x WHERE r.id = x.run_id`,
  `UPDATE runs r SET tags = x.tags
   FROM (
     SELECT run_id, array_agg(tag ORDER BY first) AS tags FROM (
       SELECT ${runOf('e')} AS run_id, e.data->>'tag' AS tag, min(e.position) AS first FROM events e WHERE e.type = 'TagAdded' GROUP BY 1, 2
     ) t GROUP BY run_id
   ) x WHERE r.id = x.run_id`,

  `INSERT INTO hyperparameters (project_id, run_id, key, seq, step, value, value_type, reason, position)
   SELECT e.project_id, ${runOf('e')}, j.k, e.stream_version, NULL, j.v, jsonb_typeof(j.v), NULL, e.position
   FROM events e CROSS JOIN LATERAL jsonb_each(e.data->'values') AS j(k, v) WHERE e.type = 'HyperparametersDeclared'
   UNION ALL
   SELECT e.project_id, ${runOf('e')}, e.data->>'key', e.stream_version, (e.data->>'step')::int8, e.data->'value', jsonb_typeof(e.data->'value'), e.data->>'reason', e.position
   FROM events e WHERE e.type = 'HyperparameterChanged'`,

  // Artifacts: the first event naming one creates it; a run that produced it first is its producer.
  `INSERT INTO artifacts (id, project_id, kind, name, digest, spec, produced_by, created_at, position)
   SELECT (data->>'artifactId')::uuid, project_id, spec->>'kind', name, data->>'digest', spec, producer, recorded_at, position FROM (
     SELECT e.*, e.data->'spec' AS spec, e.data->>'name' AS name, NULL::uuid AS producer FROM events e WHERE e.type = 'ArtifactRegistered'
     UNION ALL
     SELECT e.*, e.data->'spec', e.data->>'name', ${runOf('e')} FROM events e WHERE e.type = 'CheckpointSaved'
     UNION ALL
     SELECT e.*, jsonb_build_object('kind', 'file', 'path', e.data->'path', 'bytes', e.data->'bytes'), e.data->>'path', ${runOf('e')} FROM events e WHERE e.type = 'FileUploaded'
   ) a ORDER BY position
   ON CONFLICT DO NOTHING`,
  `UPDATE artifacts a SET produced_by = x.run_id
   FROM (SELECT DISTINCT ON ((data->>'artifactId')::uuid) (data->>'artifactId')::uuid AS id, ${runOf('events')} AS run_id
         FROM events WHERE type = 'OutputProduced' ORDER BY (data->>'artifactId')::uuid, position) x
   WHERE a.id = x.id AND a.produced_by IS NULL`,
  `INSERT INTO datamix_components (project_id, datamix_id, idx, artifact_id, weight, filter)
   SELECT e.project_id, (e.data->>'artifactId')::uuid, c.i - 1, (c.v->>'artifactId')::uuid, (c.v->>'weight')::float8, coalesce(c.v->'filter', '{}')
   FROM events e CROSS JOIN LATERAL jsonb_array_elements(e.data->'spec'->'components') WITH ORDINALITY AS c(v, i)
   WHERE e.type = 'ArtifactRegistered' AND e.data->'spec'->>'kind' = 'datamix'`,

  // Edges: the first event naming one (run, artifact, direction, role) keeps its step and position.
  `INSERT INTO edges (project_id, run_id, artifact_id, direction, role, step, position)
   SELECT project_id, ${runOf('e')}, (data->>'artifactId')::uuid,
          CASE type WHEN 'InputUsed' THEN 'used' ELSE 'produced' END,
          CASE type WHEN 'FileUploaded' THEN 'file' WHEN 'CheckpointSaved' THEN 'checkpoint' ELSE data->>'role' END,
          CASE type WHEN 'FileUploaded' THEN NULL ELSE (data->>'step')::int8 END, position
   FROM events e WHERE type IN ('InputUsed', 'OutputProduced', 'FileUploaded', 'CheckpointSaved') ORDER BY position
   ON CONFLICT DO NOTHING`,
  `INSERT INTO run_files (project_id, run_id, path, artifact_id, digest, bytes, position)
   SELECT DISTINCT ON (e.stream_id, e.data->>'path') e.project_id, ${runOf('e')}, e.data->>'path', (e.data->>'artifactId')::uuid, e.data->>'digest', (e.data->>'bytes')::int8, e.position
   FROM events e WHERE e.type = 'FileUploaded' ORDER BY e.stream_id, e.data->>'path', e.position DESC`,
  `INSERT INTO evals (project_id, run_id, seq, suite, task, context_length, score, n, step, position)
   SELECT project_id, ${runOf('e')}, stream_version, data->>'suite', data->>'task', (data->>'contextLength')::int8, (data->>'score')::float8, (data->>'n')::int8, (data->>'step')::int8, position
   FROM events e WHERE type = 'EvalRecorded'`,
  `INSERT INTO notes (project_id, run_id, seq, text, author, created_at, position)
   SELECT project_id, ${runOf('e')}, stream_version, data->>'text', data->>'author', recorded_at, position
   FROM events e WHERE type = 'NoteAdded'`,
];

export async function rebuildLineageTables(tx: Queryable): Promise<void> {
  for (const statement of STATEMENTS) await tx.query(statement);
  await rebuildMetricSeries(tx);
}

/**
 * metric_series and each run's point count from the chunks' own summaries,
 * set-based, as `applyMetrics` keeps them event by event: the last value is
 * the one at the highest step, the later event winning a tie.
 */
async function rebuildMetricSeries(tx: Queryable): Promise<void> {
  await tx.query(
    `INSERT INTO metric_series (project_id, run_id, key, count, first_step, last_step, last_value, min, max)
     SELECT project_id, run_id, key, sum(n)::int8, min(first_step), max(last_step),
            (array_agg(last_value ORDER BY last_step DESC, position DESC))[1],
            coalesce(min(min) FILTER (WHERE min <> 'NaN'), 'NaN'), coalesce(max(max) FILTER (WHERE max <> 'NaN'), 'NaN')
     FROM metric_chunks GROUP BY project_id, run_id, key`,
  );
  await tx.query(
    `UPDATE runs r SET summary = jsonb_set(r.summary, '{points}', to_jsonb(c.points))
     FROM (SELECT run_id, sum(n)::int8 AS points FROM metric_chunks GROUP BY run_id) c
     WHERE r.id = c.run_id`,
  );
}
