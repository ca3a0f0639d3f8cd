-- The MLflow tracking API and OpenLineage (issue 12): runs and projects have
-- a lifecycle (deleted ones are hidden, never removed), runs carry key–value
-- tags beside their labels, and the files a run uploads are listed by path.
ALTER TABLE "projects" ADD COLUMN "lifecycle" TEXT NOT NULL DEFAULT 'active';
ALTER TABLE "projects" ADD COLUMN "tag_values" JSONB NOT NULL DEFAULT '{}';
ALTER TABLE "projects" ADD COLUMN "updated_at" TIMESTAMPTZ(3);

ALTER TABLE "runs" ADD COLUMN "lifecycle" TEXT NOT NULL DEFAULT 'active';
ALTER TABLE "runs" ADD COLUMN "tag_values" JSONB NOT NULL DEFAULT '{}';
ALTER TABLE "runs" ADD COLUMN "killed" BOOLEAN NOT NULL DEFAULT false;
CREATE INDEX "runs_project_id_lifecycle_idx" ON "runs" ("project_id", "lifecycle");

-- Files a run uploaded, the latest per path (every upload stays in the events).
CREATE TABLE "run_files" (
  "project_id"  UUID NOT NULL,
  "run_id"      UUID NOT NULL,
  "path"        TEXT NOT NULL,
  "artifact_id" UUID NOT NULL,
  "digest"      TEXT NOT NULL,
  "bytes"       BIGINT NOT NULL,
  "position"    BIGINT NOT NULL,
  PRIMARY KEY ("run_id", "path")
);

