-- Metric chunks as bytes, with block summaries (issue 14: charts in time
-- independent of series length).
--
-- 1. steps, vals and times become bytea: 8 bytes a point, big-endian (int8
--    for steps, float8 for values and times; int8send/float8send's layout).
--    Stored out of line uncompressed, a bytea can be read in part:
--    substring() fetches only the toast chunks of the slice it asks for,
--    where an array is always read whole.
-- 2. blocks: a summary of every 64 points of the chunk, in stored order, 40
--    bytes each (first step, last step: int8; min, max, last value: float8;
--    min and max ignore NaN, NaN when the block holds nothing else; the last
--    value is the one at the last step, the later point winning a tie). A
--    chart counts a block that falls inside one bucket by its summary and
--    reads the points of only the blocks at bucket edges.
-- The digest (over the chunk's canonical JSON) is unchanged: the points are.

CREATE FUNCTION pedigree_tmp_int8_bytes(a int8[]) RETURNS bytea LANGUAGE sql IMMUTABLE AS $$
  SELECT coalesce(string_agg(int8send(x), ''::bytea ORDER BY o), ''::bytea) FROM unnest(a) WITH ORDINALITY AS u(x, o)
$$;
CREATE FUNCTION pedigree_tmp_float8_bytes(a float8[]) RETURNS bytea LANGUAGE sql IMMUTABLE AS $$
  SELECT coalesce(string_agg(float8send(x), ''::bytea ORDER BY o), ''::bytea) FROM unnest(a) WITH ORDINALITY AS u(x, o)
$$;
CREATE FUNCTION pedigree_tmp_blocks(steps int8[], vals float8[]) RETURNS bytea LANGUAGE sql IMMUTABLE AS $$
  SELECT coalesce(string_agg(int8send(f) || int8send(l) || float8send(mn) || float8send(mx) || float8send(lv), ''::bytea ORDER BY k), ''::bytea)
  FROM (SELECT (o - 1) / 64 AS k, min(s) AS f, max(s) AS l,
               coalesce(min(v) FILTER (WHERE v <> 'NaN'), 'NaN') AS mn,
               coalesce(max(v) FILTER (WHERE v <> 'NaN'), 'NaN') AS mx,
               (array_agg(v ORDER BY s DESC, o DESC))[1] AS lv
        FROM unnest(steps, vals) WITH ORDINALITY AS u(s, v, o)
        GROUP BY 1) b
$$;

-- ADD COLUMN and ALTER TYPE rewrite rows without firing the row triggers that refuse UPDATE.
ALTER TABLE "metric_chunks" ADD COLUMN "blocks" BYTEA;
ALTER TABLE "metric_chunks" DISABLE TRIGGER "metric_chunks_no_update_delete";
UPDATE "metric_chunks" SET "blocks" = pedigree_tmp_blocks("steps", "vals");
ALTER TABLE "metric_chunks" ENABLE TRIGGER "metric_chunks_no_update_delete";
ALTER TABLE "metric_chunks"
  ALTER COLUMN "blocks" SET NOT NULL,
  ALTER COLUMN "steps" TYPE BYTEA USING pedigree_tmp_int8_bytes("steps"),
  ALTER COLUMN "vals" TYPE BYTEA USING pedigree_tmp_float8_bytes("vals"),
  ALTER COLUMN "times" TYPE BYTEA USING pedigree_tmp_float8_bytes("times");
ALTER TABLE "metric_chunks" ALTER COLUMN "steps" SET STORAGE EXTERNAL;
ALTER TABLE "metric_chunks" ALTER COLUMN "vals" SET STORAGE EXTERNAL;
ALTER TABLE "metric_chunks" ALTER COLUMN "times" SET STORAGE EXTERNAL;
ALTER TABLE "metric_chunks" ALTER COLUMN "blocks" SET STORAGE EXTERNAL;

DROP FUNCTION pedigree_tmp_int8_bytes(int8[]);
DROP FUNCTION pedigree_tmp_float8_bytes(float8[]);
DROP FUNCTION pedigree_tmp_blocks(int8[], float8[]);
