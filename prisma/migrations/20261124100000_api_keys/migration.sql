-- API keys, one project each. Not a projection of events: a credential must be
-- revocable, and its hash has no place in the immutable log. Only the SHA-256
-- of the key is stored. No foreign key to projects: replay truncates and
-- rebuilds the projections, keys must survive that.
CREATE TABLE api_keys (
  id           uuid PRIMARY KEY,
  project_id   uuid NOT NULL,
  name         text NOT NULL,
  hint         text NOT NULL,
  hash         text NOT NULL,
  created_at   timestamptz(3) NOT NULL DEFAULT now(),
  last_used_at timestamptz(3),
  revoked_at   timestamptz(3)
);
CREATE UNIQUE INDEX api_keys_hash_key ON api_keys (hash);
CREATE INDEX api_keys_project_id_idx ON api_keys (project_id);
