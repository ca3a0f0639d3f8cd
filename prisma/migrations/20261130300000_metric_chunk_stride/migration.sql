-- A chunk's stride (issue 14: charts in time independent of series length).
--
-- stride = s when the chunk's steps are first_step, first_step + s,
-- first_step + 2s, … in stored order (s >= 1; a chunk of one point has
-- stride 1), else NULL. A chart then knows every point's step from its index
-- and reads only the values of the blocks at bucket edges, not their steps.
-- Derived from the points like the summaries (verify checks it); not covered
-- by the digest. Chunks already stored get theirs computed here.

ALTER TABLE "metric_chunks" ADD COLUMN "stride" BIGINT CHECK ("stride" >= 1);

ALTER TABLE "metric_chunks" DISABLE TRIGGER "metric_chunks_no_update_delete";
UPDATE "metric_chunks" c SET "stride" = s.stride
FROM (
  SELECT position, idx, CASE WHEN n = 1 THEN 1 ELSE (last_step - first_step) / (n - 1) END AS stride
  FROM "metric_chunks"
  WHERE n = 1 OR (last_step > first_step AND (last_step - first_step) % (n - 1) = 0)
) s
WHERE c.position = s.position AND c.idx = s.idx
  AND c.steps = (SELECT string_agg(int8send(c.first_step + g * s.stride), ''::bytea ORDER BY g) FROM generate_series(0, c.n - 1) AS g);
ALTER TABLE "metric_chunks" ENABLE TRIGGER "metric_chunks_no_update_delete";
