import path from 'node:path';
import { z } from 'zod';

// The one place Pedigree reads its environment.
const EnvSchema = z.object({
  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'DATABASE_URL must start with postgres:// or postgresql://')
    .optional(),
  PEDIGREE_HOME: z.string().min(1).optional(),
});

export type Env = z.infer<typeof EnvSchema>;

export function readEnv(source: NodeJS.ProcessEnv = process.env): Env {
  const parsed = EnvSchema.safeParse({
    DATABASE_URL: source.DATABASE_URL || undefined,
    PEDIGREE_HOME: source.PEDIGREE_HOME || undefined,
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
