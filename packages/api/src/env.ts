import path from 'node:path';
import { defaultHome, readEnv as readStoreEnv } from '@pedigree/db';
import { z } from 'zod';
import { AUTH_MODES, type AuthMode } from './context.ts';

/**
 * The API server's settings from the environment: read and checked here and
 * nowhere else in @pedigree/api (the store's own settings, DATABASE_URL,
 * PEDIGREE_HOME and PEDIGREE_DB_ROLE, are @pedigree/db's env.ts). Whoever
 * serves the API (`pedigree start`, or serverState under `next dev`) reads
 * them once and passes them down to defaultAuthMode and fileStoreSettings.
 * docs/environment.md lists every variable Pedigree reads.
 */
export interface ServerEnv {
  /** PEDIGREE_AUTH; unset: open for the embedded store, keys for a server (defaultAuthMode). */
  auth: AuthMode | undefined;
  /** PEDIGREE_ARTIFACTS_DIR, absolute; unset: next to the store (fileStoreSettings). */
  artifactsDir: string | undefined;
  /** PEDIGREE_MAX_ARTIFACT_BYTES; unset: DEFAULT_MAX_ARTIFACT_BYTES. */
  maxArtifactBytes: number | undefined;
  /** $PEDIGREE_HOME, else ./.pedigree (absolute): where a PostgreSQL server's files go. */
  home: string;
}

const UNITS: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

/** `5368709120`, `512M`, `5GiB`, `2 GB` (binary units: 1G = 1 GiB). */
export function parseByteSize(raw: string, name: string): number {
  const m = /^\s*(\d+)\s*([kmgt]?)(?:i?b)?\s*$/i.exec(raw);
  const n = m ? Number(m[1]) * UNITS[m[2]!.toLowerCase()]! : NaN;
  if (!Number.isSafeInteger(n) || n <= 0) throw new Error(`${name} must be a size in bytes (e.g. 5368709120, 512M, 5GiB), got ${JSON.stringify(raw)}`);
  return n;
}

const ServerEnvSchema = z.object({
  PEDIGREE_AUTH: z.enum(AUTH_MODES, { error: (issue) => `PEDIGREE_AUTH must be open or keys, got ${JSON.stringify(issue.input)}` }).optional(),
  PEDIGREE_ARTIFACTS_DIR: z.string().optional(),
  PEDIGREE_MAX_ARTIFACT_BYTES: z
    .string()
    .transform((raw, ctx) => {
      try {
        return parseByteSize(raw, 'PEDIGREE_MAX_ARTIFACT_BYTES');
      } catch (err) {
        ctx.addIssue({ code: 'custom', message: (err as Error).message });
        return z.NEVER;
      }
    })
    .optional(),
});

/** Reads and checks the server's environment (empty values count as unset); throws naming every bad variable. */
export function readServerEnv(source: NodeJS.ProcessEnv = process.env): ServerEnv {
  const parsed = ServerEnvSchema.safeParse({
    PEDIGREE_AUTH: source.PEDIGREE_AUTH || undefined,
    PEDIGREE_ARTIFACTS_DIR: source.PEDIGREE_ARTIFACTS_DIR || undefined,
    PEDIGREE_MAX_ARTIFACT_BYTES: source.PEDIGREE_MAX_ARTIFACT_BYTES || undefined,
  });
  if (!parsed.success) throw new Error(`pedigree: bad environment: ${parsed.error.issues.map((i) => i.message).join('; ')}`);
  const env = parsed.data;
  return {
    auth: env.PEDIGREE_AUTH,
    artifactsDir: env.PEDIGREE_ARTIFACTS_DIR === undefined ? undefined : path.resolve(env.PEDIGREE_ARTIFACTS_DIR),
    maxArtifactBytes: env.PEDIGREE_MAX_ARTIFACT_BYTES,
    home: defaultHome(readStoreEnv(source)),
  };
}
