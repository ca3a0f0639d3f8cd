import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pgErrorCode, type Db } from './db.ts';

export const MIGRATIONS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../prisma/migrations');

export interface Migration {
  name: string;
  sql: string;
  checksum: string;
}

export function loadMigrations(dir = MIGRATIONS_DIR): Migration[] {
  return readdirSync(dir, { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .map((d) => d.name)
    .sort()
    .map((name) => {
      const sql = readFileSync(path.join(dir, name, 'migration.sql'), 'utf8');
      return { name, sql, checksum: createHash('sha256').update(sql).digest('hex') };
    });
}

export interface MigrateResult {
  applied: string[];
  alreadyApplied: string[];
}

/**
 * Applies pending migrations, each in its own transaction, under an advisory
 * lock so two processes starting at once do not race. A migration whose file
 * changed after it was applied is an error, never silently re-run.
 */
export async function migrate(db: Db, migrations = loadMigrations()): Promise<MigrateResult> {
  // Looked up first: CREATE … IF NOT EXISTS needs the right to create even when the table is there,
  // and a role that is not the owner (the application's) may still check that nothing is pending.
  const [bookkeeping] = await db.query<{ t: string | null }>(`SELECT to_regclass('_pedigree_migrations')::text AS t`);
  if (!bookkeeping?.t) {
    await db.exec(`CREATE TABLE IF NOT EXISTS "_pedigree_migrations" (
      "name" TEXT PRIMARY KEY, "checksum" TEXT NOT NULL,
      "applied_at" TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP)`);
  }
  const applied: string[] = [];
  const alreadyApplied: string[] = [];
  for (const m of migrations) {
    await db.transaction(async (tx) => {
      await tx.query('SELECT pg_advisory_xact_lock(72490001)');
      const [row] = await tx.query<{ checksum: string }>('SELECT checksum FROM "_pedigree_migrations" WHERE name = $1', [m.name]);
      if (row) {
        if (row.checksum !== m.checksum) {
          throw new Error(`pedigree: migration ${m.name} was changed after it was applied (checksum differs); add a new migration instead`);
        }
        alreadyApplied.push(m.name);
        return;
      }
      // Multi-statement scripts go through the simple-query protocol.
      try {
        for (const statement of splitStatements(m.sql)) await tx.query(statement);
      } catch (err) {
        if (pgErrorCode(err) !== '42501') throw err;
        const { message, hint } = err as { message?: string; hint?: string };
        throw new Error(`pedigree: migration ${m.name} was refused: ${message ?? String(err)}${hint ? ` (${hint})` : ''}; migrations run as the tables' owner: run \`pedigree migrate\` with the owner's URL (--url or DATABASE_URL)`, { cause: err });
      }
      await tx.query('INSERT INTO "_pedigree_migrations" (name, checksum) VALUES ($1, $2)', [m.name, m.checksum]);
      applied.push(m.name);
    });
  }
  return { applied, alreadyApplied };
}

/** Splits a SQL script on top-level semicolons, keeping $$-quoted bodies and comments intact. */
export function splitStatements(script: string): string[] {
  const out: string[] = [];
  let cur = '';
  let i = 0;
  let dollar: string | null = null;
  let quote = false;
  while (i < script.length) {
    const ch = script[i]!;
    if (dollar) {
      if (script.startsWith(dollar, i)) {
        cur += dollar;
        i += dollar.length;
        dollar = null;
      } else cur += script[i++];
      continue;
    }
    if (quote) {
      cur += ch;
      i++;
      if (ch === "'") quote = false;
      continue;
    }
    if (ch === '-' && script[i + 1] === '-') {
      const end = script.indexOf('\n', i);
      i = end < 0 ? script.length : end + 1;
      cur += '\n';
      continue;
    }
    if (ch === "'") {
      quote = true;
      cur += ch;
      i++;
      continue;
    }
    if (ch === '$') {
      const m = /^\$[A-Za-z_]*\$/.exec(script.slice(i));
      if (m) {
        dollar = m[0];
        cur += dollar;
        i += dollar.length;
        continue;
      }
    }
    if (ch === ';') {
      if (cur.trim()) out.push(cur.trim());
      cur = '';
      i++;
      continue;
    }
    cur += ch;
    i++;
  }
  if (cur.trim()) out.push(cur.trim());
  return out;
}
