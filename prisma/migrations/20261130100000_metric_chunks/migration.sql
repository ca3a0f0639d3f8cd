-- Metric storage v2 (issue 14).
--
-- 1. Every point is stored once, as columns: a MetricsLogged event is written
--    as one chunk per metric key (its steps, values and wall times as arrays,
--    in the order they were logged, with their count, step range, min, max
--    and last value). A chunk is part of its event, not a read model: the
--    event's data names each chunk's digest (SHA-256 of its canonical JSON,
--    docs/ledger-verification.md), the event's hash covers that data, and the
--    database refuses UPDATE, DELETE and TRUNCATE of chunks as of events.
--    metric_points (a row per point, a projection) goes away.
-- 2. Appends no longer take one store-wide lock for their whole transaction.
--    Positions are handed out by pedigree_reserve_positions, which holds a
--    lock only while it assigns the transaction its id and the positions, so
--    positions rise with transaction ids; every event row records its
--    transaction id (tx_id), and a reader of "events after position N" reads
--    only rows below the lowest transaction id that may still be appending
--    (running at its snapshot and either marked as an appender or ended
--    since). Such a read is a prefix, in position order, of everything that
--    will ever commit: an event that commits later cannot have a lower
--    position. A transaction that wrote anything before may not append.

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
  "steps"      BIGINT[] NOT NULL,
  "vals"       DOUBLE PRECISION[] NOT NULL,
  "times"      DOUBLE PRECISION[] NOT NULL,
  "digest"     TEXT,
  PRIMARY KEY ("position", "idx")
);
CREATE INDEX "metric_chunks_run_id_key_first_step_idx" ON "metric_chunks" ("run_id", "key", "first_step");
-- Stored out of line uncompressed: float arrays hardly compress, and trying costs every write.
ALTER TABLE "metric_chunks" ALTER COLUMN "steps" SET STORAGE EXTERNAL;
ALTER TABLE "metric_chunks" ALTER COLUMN "vals" SET STORAGE EXTERNAL;
ALTER TABLE "metric_chunks" ALTER COLUMN "times" SET STORAGE EXTERNAL;

CREATE FUNCTION pedigree_chunks_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'pedigree: metric chunks are part of their events and immutable (% refused)', TG_OP
    USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER "metric_chunks_no_update_delete" BEFORE UPDATE OR DELETE ON "metric_chunks"
  FOR EACH ROW EXECUTE FUNCTION pedigree_chunks_immutable();
CREATE TRIGGER "metric_chunks_no_truncate" BEFORE TRUNCATE ON "metric_chunks"
  FOR EACH STATEMENT EXECUTE FUNCTION pedigree_chunks_immutable();

-- Events written before this version carry their points inline (MetricsLogged
-- schema version 1); their chunks are built here from those points and have
-- no digest: verify compares them with the event's own points instead.
INSERT INTO "metric_chunks" ("position", "idx", "project_id", "run_id", "key", "n", "first_step", "last_step", "min", "max", "last_value", "steps", "vals", "times", "digest")
SELECT position, (row_number() OVER (PARTITION BY position ORDER BY first_ord))::int - 1, project_id, run_id, key, n, first_step, last_step, min, max, last_value, steps, vals, times, NULL
FROM (
  SELECT e.position, e.project_id, substr(e.stream_id, 5)::uuid AS run_id, p.pt->>'key' AS key,
         min(p.ord) AS first_ord,
         count(*)::int AS n,
         min((p.pt->>'step')::int8) AS first_step,
         max((p.pt->>'step')::int8) AS last_step,
         coalesce(min((p.pt->>'value')::float8) FILTER (WHERE (p.pt->>'value')::float8 <> 'NaN'), 'NaN') AS min,
         coalesce(max((p.pt->>'value')::float8) FILTER (WHERE (p.pt->>'value')::float8 <> 'NaN'), 'NaN') AS max,
         (array_agg((p.pt->>'value')::float8 ORDER BY (p.pt->>'step')::int8 DESC, p.ord DESC))[1] AS last_value,
         array_agg((p.pt->>'step')::int8 ORDER BY p.ord) AS steps,
         array_agg((p.pt->>'value')::float8 ORDER BY p.ord) AS vals,
         array_agg((p.pt->>'time')::float8 ORDER BY p.ord) AS times
  FROM "events" e CROSS JOIN LATERAL jsonb_array_elements(e.data->'points') WITH ORDINALITY AS p(pt, ord)
  WHERE e.type = 'MetricsLogged' AND e.schema_version = 1
  GROUP BY e.position, e.project_id, e.stream_id, p.pt->>'key'
) c;

DROP TABLE "metric_points";

ALTER TABLE "events" ADD COLUMN "tx_id" xid8;
-- Set after the column exists, so rows already stored keep NULL (ended long ago) and the table is not rewritten.
ALTER TABLE "events" ALTER COLUMN "tx_id" SET DEFAULT pg_current_xact_id();

-- n consecutive positions for the calling transaction, which must not have
-- written anything yet: its transaction id is assigned here, under the same
-- short lock as its positions, so a transaction with a lower id never holds a
-- higher position. The lock is a session lock released before returning
-- (also on error), never held to commit: appends on different streams
-- overlap everywhere else.
CREATE FUNCTION pedigree_reserve_positions(n integer) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
  first_position bigint;
BEGIN
  IF pg_current_xact_id_if_assigned() IS NOT NULL THEN
    RAISE EXCEPTION 'pedigree: events must be the first thing a transaction writes'
      USING ERRCODE = 'object_not_in_prerequisite_state';
  END IF;
  -- Marks the transaction as an appender until it ends (readers look for the mark: see SETTLED in
  -- packages/ledger/src/store.ts); taken before it has an id.
  PERFORM pg_advisory_xact_lock_shared(72490005);
  PERFORM pg_advisory_lock(72490002);
  BEGIN
    PERFORM pg_current_xact_id();
    SELECT min(v) INTO first_position FROM (SELECT nextval('events_position_seq') AS v FROM generate_series(1, n)) s;
  EXCEPTION WHEN OTHERS THEN
    PERFORM pg_advisory_unlock(72490002);
    RAISE;
  END;
  PERFORM pg_advisory_unlock(72490002);
  RETURN first_position;
END $$;

GRANT SELECT, INSERT ON "metric_chunks" TO pedigree_app;
GRANT EXECUTE ON FUNCTION pedigree_reserve_positions(integer) TO pedigree_app;
