import path from 'node:path';
import { z } from 'zod';

// The one place Pedigree reads its environment.
const EnvSchema = z.object({
  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'DATABASE_URL must start with postgres:// or postgresql://')
    .optional(),
  // The primary itself when DATABASE_URL is a pooler: migrations and LISTEN go there.
  PEDIGREE_DIRECT_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'PEDIGREE_DIRECT_URL must start with postgres:// or postgresql://')
    .optional(),
  // Streaming replicas that serve reads, comma-separated (the server only: see @pedigree/api's ReadRouting).
  PEDIGREE_READ_URLS: z
    .string()
    .regex(/^postgres(ql)?:\/\/[^,]+(,\s*postgres(ql)?:\/\/[^,]+)*$/, 'PEDIGREE_READ_URLS must be postgres:// or postgresql:// URLs, comma-separated')
    .optional(),
  PEDIGREE_HOME: z.string().min(1).optional(),
  // The role the application's connections run as: pedigree_app (the default), or none to stay the login role.
  PEDIGREE_DB_ROLE: z.enum(['pedigree_app', 'none']).optional(),
});

export type Env = z.infer<typeof EnvSchema>;

export function readEnv(source: NodeJS.ProcessEnv = process.env): Env {
  const parsed = EnvSchema.safeParse({
    DATABASE_URL: source.DATABASE_URL || undefined,
    PEDIGREE_DIRECT_URL: source.PEDIGREE_DIRECT_URL || undefined,
    PEDIGREE_READ_URLS: source.PEDIGREE_READ_URLS || undefined,
    PEDIGREE_HOME: source.PEDIGREE_HOME || undefined,
    PEDIGREE_DB_ROLE: source.PEDIGREE_DB_ROLE || undefined,
  });
  if (!parsed.success) {
    throw new Error(`pedigree: bad environment: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  }
  return parsed.data;
}

/** Where the embedded store lives: $PEDIGREE_HOME, else ./.pedigree. */
export function defaultHome(env: Env = readEnv()): string {
  return path.resolve(env.PEDIGREE_HOME ?? '.pedigree');
}

/** PEDIGREE_READ_URLS as a list (empty when unset). */
export function defaultReadUrls(env: Env = readEnv()): string[] {
  return splitUrls(env.PEDIGREE_READ_URLS ?? '');
}

/** `a,b, c` → [a, b, c]: a list of URLs as a flag or variable gives it. */
export function splitUrls(list: string): string[] {
  return list
    .split(',')
    .map((u) => u.trim())
    .filter(Boolean);
}
