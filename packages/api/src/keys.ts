import { createHash, randomBytes, randomUUID } from 'node:crypto';
import type { Db } from '@pedigree/db';
import { NotFoundError, ValidationError } from '@pedigree/ledger';
import { ProjectionReader } from '@pedigree/lineage';

/**
 * API keys, one project each. Only a SHA-256 of the secret is stored (the key
 * is 32 random bytes, so a slow hash adds nothing); the secret is shown once,
 * at creation. Keys live in a plain table, not in the event log: a credential
 * must be revocable, and a hash of it has no business in an immutable history.
 */
export const KEY_PREFIX = 'pdg_';

export interface ApiKeyView {
  id: string;
  projectId: string;
  name: string;
  /** The first characters of the key, enough to recognise it. */
  hint: string;
  createdAt: Date;
  lastUsedAt: Date | null;
  revokedAt: Date | null;
}

export interface KeyIdentity {
  keyId: string;
  projectId: string;
  name: string;
}

interface KeyRow {
  id: string;
  project_id: string;
  name: string;
  hint: string;
  created_at: Date;
  last_used_at: Date | null;
  revoked_at: Date | null;
}

const hashKey = (key: string) => createHash('sha256').update(key).digest('hex');

const toView = (r: KeyRow): ApiKeyView => ({
  id: r.id,
  projectId: r.project_id,
  name: r.name,
  hint: r.hint,
  createdAt: new Date(r.created_at),
  lastUsedAt: r.last_used_at ? new Date(r.last_used_at) : null,
  revokedAt: r.revoked_at ? new Date(r.revoked_at) : null,
});

export async function createApiKey(db: Db, projectId: string, name: string): Promise<{ key: string } & ApiKeyView> {
  const label = name.trim();
  if (!label || label.length > 100) throw new ValidationError('a key name must be 1 to 100 characters');
  if (!(await new ProjectionReader(db).project(projectId))) throw new NotFoundError(`project ${projectId}`);
  const key = KEY_PREFIX + randomBytes(32).toString('base64url');
  const [row] = await db.query<KeyRow>(
    `INSERT INTO api_keys (id, project_id, name, hint, hash) VALUES ($1, $2, $3, $4, $5)
     RETURNING id, project_id, name, hint, created_at, last_used_at, revoked_at`,
    [randomUUID(), projectId, label, key.slice(0, KEY_PREFIX.length + 6), hashKey(key)],
  );
  return { key, ...toView(row!) };
}

export async function listApiKeys(db: Db, projectId?: string): Promise<ApiKeyView[]> {
  const rows = await db.query<KeyRow>(
    `SELECT id, project_id, name, hint, created_at, last_used_at, revoked_at FROM api_keys
     WHERE ($1::uuid IS NULL OR project_id = $1) ORDER BY created_at, id`,
    [projectId ?? null],
  );
  return rows.map(toView);
}

/** Revokes by id, id prefix (8+ characters) or the key's hint; a revoked key is refused from then on. */
export async function revokeApiKey(db: Db, ref: string): Promise<ApiKeyView> {
  const needle = ref.trim().toLowerCase();
  const matches = await db.query<KeyRow>(
    `SELECT id, project_id, name, hint, created_at, last_used_at, revoked_at FROM api_keys
     WHERE hint = $1 OR (length($2) >= 8 AND id::text LIKE $2 || '%')`,
    [ref.trim(), needle.replace(/[%_\\]/g, '')],
  );
  if (matches.length === 0) throw new NotFoundError(`API key ${ref}`);
  if (matches.length > 1) throw new ValidationError(`${ref} matches ${matches.length} keys; give more of the key id`);
  const [row] = await db.query<KeyRow>(
    `UPDATE api_keys SET revoked_at = COALESCE(revoked_at, now()) WHERE id = $1
     RETURNING id, project_id, name, hint, created_at, last_used_at, revoked_at`,
    [matches[0]!.id],
  );
  return toView(row!);
}

const lastUseWritten = new Map<string, number>();
const LAST_USE_EVERY_MS = 60_000;

/** The identity behind a key, or null when it is unknown or revoked. Checked on every request, so a revocation takes effect at once. */
export async function authenticateApiKey(db: Db, key: string): Promise<KeyIdentity | null> {
  if (!key.startsWith(KEY_PREFIX) || key.length > 200) return null;
  const [row] = await db.query<{ id: string; project_id: string; name: string }>(
    'SELECT id, project_id, name FROM api_keys WHERE hash = $1 AND revoked_at IS NULL',
    [hashKey(key)],
  );
  if (!row) return null;
  const now = Date.now();
  if (now - (lastUseWritten.get(row.id) ?? 0) > LAST_USE_EVERY_MS) {
    lastUseWritten.set(row.id, now);
    await db.query('UPDATE api_keys SET last_used_at = now() WHERE id = $1', [row.id]);
  }
  return { keyId: row.id, projectId: row.project_id, name: row.name };
}

export async function countApiKeys(db: Db): Promise<number> {
  const [row] = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM api_keys WHERE revoked_at IS NULL');
  return row?.n ?? 0;
}
