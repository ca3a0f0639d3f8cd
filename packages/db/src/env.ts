import path from 'node:path';
import { z } from 'zod';

// The one place Pedigree reads its environment.
const EnvSchema = z.object({
  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'DATABASE_URL must start with postgres:// or postgresql://')
    .optional(),
  PEDIGREE_HOME: z.string().min(1).optional(),
  // The role the application's connections run as: pedigree_app (the default), or none to stay the login role.
  PEDIGREE_DB_ROLE: z.enum(['pedigree_app', 'none']).optional(),
});

export type Env = z.infer<typeof EnvSchema>;

export function readEnv(source: NodeJS.ProcessEnv = process.env): Env {
  const parsed = EnvSchema.safeParse({
    DATABASE_URL: source.DATABASE_URL || undefined,
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
