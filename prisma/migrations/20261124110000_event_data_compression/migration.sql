-- A metric batch is one large JSONB value (about 0.8 MB per 10,000 points).
-- PostgreSQL's default pglz compression of it costs more than the rest of
-- the insert (measured: ~60 of ~75 ms per batch). lz4 where the server has
-- it (PostgreSQL 14+ built with lz4); otherwise (PGlite) store it
-- uncompressed: faster to write, larger on disk.
DO $$
BEGIN
  ALTER TABLE events ALTER COLUMN data SET COMPRESSION lz4;
EXCEPTION WHEN OTHERS THEN
  ALTER TABLE events ALTER COLUMN data SET STORAGE EXTERNAL;
END $$;
