-- Partitioning (issue 17): the events table and the metric chunk table are
-- partitioned by HASH of the project id, 16 partitions each, with the same
-- modulus, so partition k of events and partition k of metric_chunks hold
-- exactly the same projects.
--
-- Why by project and not by position range: a project is the unit people
-- move, archive and (later) shard across primaries, and every one of its rows
-- lies in one partition of each table, found from its id alone
-- (satisfies_hash_partition). The dashboard, buckets, diffs and exports ask
-- about one project or one run at a time; with the project id in the query
-- the planner reads one partition. A position range would put a project's
-- history in every partition it lived through and would archive by age, not
-- by project. Why hash and not a partition per project: projects are created
-- by ordinary appends, and creating a partition takes a lock on the whole
-- table; 16 fixed partitions need no DDL at run time, and each can later be
-- split in two (modulus 32, remainders k and k + 16) without touching the
-- others. docs/scale.md sizes them.
--
-- What moves with the partition key:
-- - A partitioned table's unique indexes must contain the key, so the primary
--   key of events becomes (position, project_id), and its two unique indexes
--   (event_id, project_id) and (stream_id, stream_version, project_id).
--   Positions still come from one sequence, so they stay unique.
-- - An event id stays unique across the whole store: event_ids, partitioned
--   by HASH of the event id itself (so its primary key is global), gets a row
--   for every event, in the same statement as the event
--   (packages/ledger/src/store.ts). A retry of an event stored under another
--   project is refused by it, as before.
-- - A stream's versions stay unique: a stream belongs to one project (an
--   append checks the stream's head, in any partition, under the stream's
--   lock), so (stream_id, stream_version, project_id) is (stream_id,
--   stream_version); verify walks every stream's chain across partitions and
--   names a second event at a version.
-- - Immutability: the row triggers are created on the parent and cloned to
--   every partition; TRUNCATE of a partition fires only that partition's
--   statement triggers, so each partition gets its own. The application's
--   role is granted the parent tables only: it reads and appends through
--   them and cannot address a partition.
--
-- Rows already stored are copied into the new tables in one transaction,
-- during which appends wait: the whole store is rewritten once (measured on
-- a PostgreSQL server of this machine kind: 9 s for 200,000 events with a
-- 100-point chunk each, 669 MB).

ALTER TABLE "events" RENAME TO "events_unpartitioned";
ALTER INDEX "events_pkey" RENAME TO "events_unpartitioned_pkey";
ALTER INDEX "events_event_id_key" RENAME TO "events_unpartitioned_event_id_key";
ALTER INDEX "events_stream_id_stream_version_key" RENAME TO "events_unpartitioned_stream_id_stream_version_key";
ALTER INDEX "events_project_id_position_idx" RENAME TO "events_unpartitioned_project_id_position_idx";

CREATE TABLE "events" (
  "position"       BIGINT NOT NULL DEFAULT nextval('events_position_seq'),
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
  "hash"           TEXT NOT NULL,
  "tx_id"          xid8 DEFAULT pg_current_xact_id(),
  CONSTRAINT "events_pkey" PRIMARY KEY ("position", "project_id")
) PARTITION BY HASH ("project_id");
CREATE UNIQUE INDEX "events_event_id_key" ON "events" ("event_id", "project_id");
CREATE UNIQUE INDEX "events_stream_id_stream_version_key" ON "events" ("stream_id", "stream_version", "project_id");
CREATE INDEX "events_project_id_position_idx" ON "events" ("project_id", "position");

ALTER TABLE "metric_chunks" RENAME TO "metric_chunks_unpartitioned";
ALTER INDEX "metric_chunks_pkey" RENAME TO "metric_chunks_unpartitioned_pkey";
ALTER INDEX "metric_chunks_run_id_key_first_step_idx" RENAME TO "metric_chunks_unpartitioned_run_id_key_first_step_idx";

CREATE TABLE "metric_chunks" (
  "position"   BIGINT NOT NULL,
  "idx"        INTEGER NOT NULL,
  "project_id" UUID NOT NULL,
  "run_id"     UUID NOT NULL,
  "key"        TEXT NOT NULL,
  "n"          INTEGER NOT NULL,
  "first_step" BIGINT NOT NULL,
  "last_step"  BIGINT NOT NULL,
  "min"        DOUBLE PRECISION NOT NULL,
  "max"        DOUBLE PRECISION NOT NULL,
  "last_value" DOUBLE PRECISION NOT NULL,
  "steps"      BYTEA NOT NULL,
  "vals"       BYTEA NOT NULL,
  "times"      BYTEA NOT NULL,
  "blocks"     BYTEA NOT NULL,
  "digest"     TEXT,
  "stride"     BIGINT CHECK ("stride" >= 1),
  CONSTRAINT "metric_chunks_pkey" PRIMARY KEY ("position", "idx", "project_id")
) PARTITION BY HASH ("project_id");
CREATE INDEX "metric_chunks_run_id_key_first_step_idx" ON "metric_chunks" ("run_id", "key", "first_step");

CREATE TABLE "event_ids" (
  "event_id"   UUID NOT NULL,
  "project_id" UUID NOT NULL,
  "position"   BIGINT NOT NULL,
  CONSTRAINT "event_ids_pkey" PRIMARY KEY ("event_id")
) PARTITION BY HASH ("event_id");

DO $$
BEGIN
  FOR k IN 0..15 LOOP
    EXECUTE format('CREATE TABLE %I PARTITION OF "events" FOR VALUES WITH (MODULUS 16, REMAINDER %s)', 'events_p' || k, k);
    EXECUTE format('CREATE TABLE %I PARTITION OF "metric_chunks" FOR VALUES WITH (MODULUS 16, REMAINDER %s)', 'metric_chunks_p' || k, k);
    EXECUTE format('CREATE TABLE %I PARTITION OF "event_ids" FOR VALUES WITH (MODULUS 16, REMAINDER %s)', 'event_ids_p' || k, k);
    EXECUTE format('CREATE TRIGGER "events_no_truncate" BEFORE TRUNCATE ON %I FOR EACH STATEMENT EXECUTE FUNCTION pedigree_events_immutable()', 'events_p' || k);
    EXECUTE format('CREATE TRIGGER "metric_chunks_no_truncate" BEFORE TRUNCATE ON %I FOR EACH STATEMENT EXECUTE FUNCTION pedigree_chunks_immutable()', 'metric_chunks_p' || k);
    EXECUTE format('CREATE TRIGGER "event_ids_no_truncate" BEFORE TRUNCATE ON %I FOR EACH STATEMENT EXECUTE FUNCTION pedigree_events_immutable()', 'event_ids_p' || k);
  END LOOP;
END $$;

-- Set on the parents after the partitions exist: it recurses to them.
-- A metric batch's JSONB: lz4 where the server has it, else stored uncompressed (as before).
DO $$
BEGIN
  ALTER TABLE "events" ALTER COLUMN "data" SET COMPRESSION lz4;
EXCEPTION WHEN OTHERS THEN
  ALTER TABLE "events" ALTER COLUMN "data" SET STORAGE EXTERNAL;
END $$;
-- Chunk columns out of line uncompressed: read in part (substring) and hardly compressible.
ALTER TABLE "metric_chunks" ALTER COLUMN "steps" SET STORAGE EXTERNAL;
ALTER TABLE "metric_chunks" ALTER COLUMN "vals" SET STORAGE EXTERNAL;
ALTER TABLE "metric_chunks" ALTER COLUMN "times" SET STORAGE EXTERNAL;
ALTER TABLE "metric_chunks" ALTER COLUMN "blocks" SET STORAGE EXTERNAL;

INSERT INTO "events" ("position", "stream_id", "stream_version", "event_id", "project_id", "type", "schema_version", "data", "metadata", "recorded_at", "prev_hash", "hash", "tx_id")
SELECT "position", "stream_id", "stream_version", "event_id", "project_id", "type", "schema_version", "data", "metadata", "recorded_at", "prev_hash", "hash", "tx_id"
FROM "events_unpartitioned" ORDER BY "position";
INSERT INTO "event_ids" ("event_id", "project_id", "position")
SELECT "event_id", "project_id", "position" FROM "events_unpartitioned";
INSERT INTO "metric_chunks" ("position", "idx", "project_id", "run_id", "key", "n", "first_step", "last_step", "min", "max", "last_value", "steps", "vals", "times", "blocks", "digest", "stride")
SELECT "position", "idx", "project_id", "run_id", "key", "n", "first_step", "last_step", "min", "max", "last_value", "steps", "vals", "times", "blocks", "digest", "stride"
FROM "metric_chunks_unpartitioned" ORDER BY "position", "idx";

-- The sequence goes on with the new table (dropping the old one would drop a sequence it owns).
ALTER SEQUENCE "events_position_seq" OWNED BY "events"."position";
DROP TABLE "events_unpartitioned";
DROP TABLE "metric_chunks_unpartitioned";

-- Row triggers on a partitioned table are cloned to each partition (and to any added later).
CREATE TRIGGER "events_no_update_delete" BEFORE UPDATE OR DELETE ON "events"
  FOR EACH ROW EXECUTE FUNCTION pedigree_events_immutable();
CREATE TRIGGER "events_no_truncate" BEFORE TRUNCATE ON "events"
  FOR EACH STATEMENT EXECUTE FUNCTION pedigree_events_immutable();
CREATE TRIGGER "metric_chunks_no_update_delete" BEFORE UPDATE OR DELETE ON "metric_chunks"
  FOR EACH ROW EXECUTE FUNCTION pedigree_chunks_immutable();
CREATE TRIGGER "metric_chunks_no_truncate" BEFORE TRUNCATE ON "metric_chunks"
  FOR EACH STATEMENT EXECUTE FUNCTION pedigree_chunks_immutable();
CREATE TRIGGER "event_ids_no_update_delete" BEFORE UPDATE OR DELETE ON "event_ids"
  FOR EACH ROW EXECUTE FUNCTION pedigree_events_immutable();
CREATE TRIGGER "event_ids_no_truncate" BEFORE TRUNCATE ON "event_ids"
  FOR EACH STATEMENT EXECUTE FUNCTION pedigree_events_immutable();

GRANT SELECT, INSERT ON "events", "metric_chunks", "event_ids" TO pedigree_app;
