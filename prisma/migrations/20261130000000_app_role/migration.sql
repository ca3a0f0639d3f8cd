-- The application's role (issue 13). Every connection the application opens
-- runs as pedigree_app (packages/db: a startup parameter on a server, SET ROLE
-- in the embedded store), which may read and append events but does not own
-- them: ALTER TABLE … DISABLE TRIGGER, DROP TRIGGER, ALTER … OWNER TO and
-- CREATE OR REPLACE of the guard function all need ownership, and UPDATE,
-- DELETE and TRUNCATE of events are not granted at all. Migrations run as the
-- role that logs in to apply them, which stays the owner of every table.
--
-- Roles belong to the server, not to one database: one pedigree_app serves
-- every Pedigree database on a server, and this migration, run in several
-- databases at once, may race to create it.
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pedigree_app') THEN
    CREATE ROLE pedigree_app NOLOGIN;
  END IF;
EXCEPTION
  WHEN duplicate_object OR unique_violation THEN
    NULL; -- another database's migration created it meanwhile
  WHEN insufficient_privilege THEN
    RAISE EXCEPTION 'pedigree: the role pedigree_app does not exist, and % may not create it', current_user
      USING ERRCODE = 'insufficient_privilege',
            HINT = 'Create it once as a superuser (CREATE ROLE pedigree_app NOLOGIN), then run pedigree migrate again.';
END $$;

-- An owner that logs in for the application too must be able to switch to
-- the role (a superuser always can). Membership gives the owner nothing it
-- lacks; the reverse, the role being a member of the owner, must never be.
-- A deployment where the application logs in as a role of its own (a member
-- of pedigree_app) does not need this, so a refusal here is not an error.
-- From PostgreSQL 16 membership alone (a CREATEROLE creator's own ADMIN grant)
-- does not allow SET ROLE; the SET option does.
DO $$
BEGIN
  IF NOT pg_has_role(current_user, 'pedigree_app',
                     CASE WHEN current_setting('server_version_num')::int >= 160000 THEN 'SET' ELSE 'MEMBER' END) THEN
    GRANT pedigree_app TO CURRENT_USER;
  END IF;
EXCEPTION WHEN insufficient_privilege THEN
  RAISE NOTICE 'pedigree: % is not a member of pedigree_app; the application must log in as a role that is (or set PEDIGREE_DB_ROLE=none)', current_user;
END $$;

-- The log: read and append, nothing else. USAGE on the sequence allows
-- nextval (an INSERT's position), not setval.
GRANT SELECT, INSERT ON "events" TO pedigree_app;
GRANT USAGE ON SEQUENCE "events_position_seq" TO pedigree_app;

-- The projections are derived and rebuilt from the events: replay truncates
-- and refills them.
GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON
  "projects", "runs", "hyperparameters", "artifacts", "datamix_components", "edges",
  "metric_points", "metric_series", "evals", "notes", "run_files"
  TO pedigree_app;

-- Keys are created, revoked (an UPDATE) and stamped with their last use;
-- never deleted.
GRANT SELECT, INSERT, UPDATE ON "api_keys" TO pedigree_app;

-- Opening a server store checks that no migration is pending.
GRANT SELECT ON "_pedigree_migrations" TO pedigree_app;
