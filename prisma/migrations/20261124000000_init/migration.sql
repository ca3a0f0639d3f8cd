-- Pedigree: events (source of truth) and the projections derived from them.
-- Must stay in step with prisma/schema.prisma (test/schema-matches-prisma.test.ts).

CREATE TABLE "events" (
  "position"       BIGSERIAL PRIMARY KEY,
  "stream_id"      TEXT NOT NULL,
  "stream_version" INTEGER NOT NULL,
  "event_id"       UUID NOT NULL,
  "project_id"     UUID NOT NULL,
  "type"           TEXT NOT NULL,
  "schema_version" INTEGER NOT NULL,
  "data"           JSONB NOT NULL,
  "metadata"       JSONB NOT NULL,
  "recorded_at"    TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
  "prev_hash"      TEXT NOT NULL,
  "hash"           TEXT NOT NULL
);
CREATE UNIQUE INDEX "events_event_id_key" ON "events" ("event_id");
CREATE UNIQUE INDEX "events_stream_id_stream_version_key" ON "events" ("stream_id", "stream_version");
CREATE INDEX "events_project_id_position_idx" ON "events" ("project_id", "position");

-- Immutability lives in the database, not in application code.
CREATE FUNCTION pedigree_events_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'pedigree: events are immutable (% refused)', TG_OP
    USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER "events_no_update_delete" BEFORE UPDATE OR DELETE ON "events"
  FOR EACH ROW EXECUTE FUNCTION pedigree_events_immutable();
CREATE TRIGGER "events_no_truncate" BEFORE TRUNCATE ON "events"
  FOR EACH STATEMENT EXECUTE FUNCTION pedigree_events_immutable();

CREATE TABLE "projects" (
  "id"          UUID PRIMARY KEY,
  "name"        TEXT NOT NULL,
  "description" TEXT,
  "created_at"  TIMESTAMPTZ(3) NOT NULL,
  "position"    BIGINT NOT NULL
);
CREATE UNIQUE INDEX "projects_name_key" ON "projects" ("name");

CREATE TABLE "runs" (
  "id"                      UUID PRIMARY KEY,
  "project_id"              UUID NOT NULL,
  "name"                    TEXT NOT NULL,
  "kind"                    TEXT NOT NULL,
  "status"                  TEXT NOT NULL,
  "code_version"            TEXT,
  "environment"             JSONB NOT NULL DEFAULT '{}',
  "hyperparameters"         JSONB NOT NULL DEFAULT '{}',
  "summary"                 JSONB NOT NULL DEFAULT '{}',
  "tags"                    TEXT[] NOT NULL DEFAULT ARRAY[]::TEXT[],
  "forked_from_run_id"      UUID,
  "forked_from_artifact_id" UUID,
  "forked_at_step"          INTEGER,
  "error"                   TEXT,
  "created_at"              TIMESTAMPTZ(3) NOT NULL,
  "started_at"              TIMESTAMPTZ(3),
  "ended_at"                TIMESTAMPTZ(3),
  "last_position"           BIGINT NOT NULL
);
CREATE INDEX "runs_project_id_created_at_idx" ON "runs" ("project_id", "created_at");
CREATE INDEX "runs_project_id_kind_status_idx" ON "runs" ("project_id", "kind", "status");

CREATE TABLE "hyperparameters" (
  "project_id" UUID NOT NULL,
  "run_id"     UUID NOT NULL,
  "key"        TEXT NOT NULL,
  "seq"        INTEGER NOT NULL,
  "step"       INTEGER,
  "value"      JSONB NOT NULL,
  "value_type" TEXT NOT NULL,
  "reason"     TEXT,
  "position"   BIGINT NOT NULL,
  PRIMARY KEY ("run_id", "key", "seq")
);
CREATE INDEX "hyperparameters_project_id_key_idx" ON "hyperparameters" ("project_id", "key");

CREATE TABLE "artifacts" (
  "id"          UUID PRIMARY KEY,
  "project_id"  UUID NOT NULL,
  "kind"        TEXT NOT NULL,
  "name"        TEXT NOT NULL,
  "digest"      TEXT NOT NULL,
  "spec"        JSONB NOT NULL,
  "produced_by" UUID,
  "created_at"  TIMESTAMPTZ(3) NOT NULL,
  "position"    BIGINT NOT NULL
);
CREATE UNIQUE INDEX "artifacts_project_id_kind_digest_key" ON "artifacts" ("project_id", "kind", "digest");
CREATE INDEX "artifacts_project_id_kind_name_idx" ON "artifacts" ("project_id", "kind", "name");

CREATE TABLE "datamix_components" (
  "project_id"  UUID NOT NULL,
  "datamix_id"  UUID NOT NULL,
  "idx"         INTEGER NOT NULL,
  "artifact_id" UUID NOT NULL,
  "weight"      DOUBLE PRECISION NOT NULL,
  "filter"      JSONB NOT NULL DEFAULT '{}',
  PRIMARY KEY ("datamix_id", "idx")
);
CREATE INDEX "datamix_components_artifact_id_idx" ON "datamix_components" ("artifact_id");

CREATE TABLE "edges" (
  "project_id"  UUID NOT NULL,
  "run_id"      UUID NOT NULL,
  "artifact_id" UUID NOT NULL,
  "direction"   TEXT NOT NULL,
  "role"        TEXT NOT NULL,
  "step"        INTEGER,
  "position"    BIGINT NOT NULL,
  PRIMARY KEY ("run_id", "artifact_id", "direction", "role")
);
CREATE INDEX "edges_artifact_id_direction_idx" ON "edges" ("artifact_id", "direction");

CREATE TABLE "metric_points" (
  "project_id" UUID NOT NULL,
  "run_id"     UUID NOT NULL,
  "key"        TEXT NOT NULL,
  "step"       BIGINT NOT NULL,
  "value"      DOUBLE PRECISION NOT NULL,
  "wall_time"  DOUBLE PRECISION NOT NULL,
  "position"   BIGINT NOT NULL,
  "idx"        INTEGER NOT NULL,
  PRIMARY KEY ("run_id", "key", "step", "position", "idx")
);

CREATE TABLE "metric_series" (
  "project_id" UUID NOT NULL,
  "run_id"     UUID NOT NULL,
  "key"        TEXT NOT NULL,
  "count"      BIGINT NOT NULL,
  "first_step" BIGINT NOT NULL,
  "last_step"  BIGINT NOT NULL,
  "last_value" DOUBLE PRECISION NOT NULL,
  "min"        DOUBLE PRECISION NOT NULL,
  "max"        DOUBLE PRECISION NOT NULL,
  PRIMARY KEY ("run_id", "key")
);

CREATE TABLE "evals" (
  "project_id"     UUID NOT NULL,
  "run_id"         UUID NOT NULL,
  "seq"            INTEGER NOT NULL,
  "suite"          TEXT NOT NULL,
  "task"           TEXT NOT NULL,
  "context_length" INTEGER,
  "score"          DOUBLE PRECISION NOT NULL,
  "n"              INTEGER,
  "step"           INTEGER,
  "position"       BIGINT NOT NULL,
  PRIMARY KEY ("run_id", "seq")
);

CREATE TABLE "notes" (
  "project_id" UUID NOT NULL,
  "run_id"     UUID NOT NULL,
  "seq"        INTEGER NOT NULL,
  "text"       TEXT NOT NULL,
  "author"     TEXT,
  "created_at" TIMESTAMPTZ(3) NOT NULL,
  "position"   BIGINT NOT NULL,
  PRIMARY KEY ("run_id", "seq")
);
