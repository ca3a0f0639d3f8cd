-- Steps are integers up to 2^53 − 1 in the ledger (as metric steps already
-- are, in BIGINT columns); these INTEGER columns refused a step ≥ 2^31 with a
-- 500 from the projection. Widened, they hold whatever the ledger accepts.
ALTER TABLE "hyperparameters" ALTER COLUMN "step" TYPE BIGINT;
ALTER TABLE "edges" ALTER COLUMN "step" TYPE BIGINT;
ALTER TABLE "evals" ALTER COLUMN "context_length" TYPE BIGINT;
ALTER TABLE "evals" ALTER COLUMN "n" TYPE BIGINT;
ALTER TABLE "evals" ALTER COLUMN "step" TYPE BIGINT;
ALTER TABLE "runs" ALTER COLUMN "forked_at_step" TYPE BIGINT;
