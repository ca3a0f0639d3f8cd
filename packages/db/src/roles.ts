import { pgErrorCode } from './db.ts';
import { readEnv, type Env } from './env.ts';

/**
 * The role every application connection runs as. It may read and append
 * events but does not own them (prisma/migrations/20261130000000_app_role
 * creates it and grants what the application needs), so the immutability
 * triggers cannot be disabled or dropped from the application's connections.
 * Migrations run as the role that logs in, which stays the owner.
 */
export const APP_ROLE = 'pedigree_app';

/** The role to run as, or null to stay the role that logged in. */
export type DbRole = typeof APP_ROLE | null;

/** APP_ROLE, unless PEDIGREE_DB_ROLE=none. */
export function defaultRole(env: Env = readEnv()): DbRole {
  return env.PEDIGREE_DB_ROLE === 'none' ? null : APP_ROLE;
}

/** A connection that could not take on `role`, said so that an operator can act on it; other errors as they are. */
export function roleRefusal(err: unknown, role: string, location: string): unknown {
  const code = pgErrorCode(err);
  const message = err instanceof Error ? err.message : String(err);
  if (code === '22023' && /role .* does not exist/.test(message)) {
    return new Error(`pedigree: the database role ${role} does not exist at ${location}; run \`pedigree migrate\` as the tables' owner (it creates the role), or set PEDIGREE_DB_ROLE=none to run as the login role`, { cause: err });
  }
  if (code === '42501') {
    return new Error(`pedigree: the login role at ${location} may not act as ${role}; grant it (GRANT ${role} TO <login role>, as a superuser), or set PEDIGREE_DB_ROLE=none to run as the login role`, { cause: err });
  }
  return err;
}
