import path from 'node:path';
import { defaultTarget, type Db, type StoreTarget } from '@pedigree/db';
import type { ListRunsInput, Pedigree, RunView } from '@pedigree/lineage';
import { UsageError } from './args.ts';

/** `base`, or the first of `base-2`, `base-3`, … that no project is named yet. */
export function freeProjectName(projects: readonly { name: string }[], base: string): string {
  const taken = new Set(projects.map((p) => p.name));
  if (!taken.has(base)) return base;
  for (let n = 2; ; n++) if (!taken.has(`${base}-${n}`)) return `${base}-${n}`;
}

/** --url, else --home, else the environment (DATABASE_URL, then $PEDIGREE_HOME or ./.pedigree). */
export function targetFrom(flags: { home?: string; url?: string }): StoreTarget {
  if (flags.home !== undefined && flags.url !== undefined) throw new UsageError('--home and --url name two different stores; give one');
  if (flags.url !== undefined) {
    if (!/^postgres(ql)?:\/\//.test(flags.url)) throw new UsageError(`--url must start with postgres:// or postgresql://`);
    return { url: flags.url };
  }
  if (flags.home !== undefined) {
    if (!flags.home) throw new UsageError('--home needs a directory');
    return { dir: path.resolve(flags.home) };
  }
  return defaultTarget();
}

export function describeStore(db: Db): string {
  return db.kind === 'pglite' ? `embedded PGlite store in ${db.location}` : `PostgreSQL at ${db.location}`;
}

export async function projectNames(pd: Pedigree): Promise<Map<string, string>> {
  return new Map((await pd.lineage.projects()).map((p) => [p.id, p.name]));
}

/** What `pedigree runs` filters by. */
export type RunFilter = Pick<ListRunsInput, 'kind' | 'status' | 'tag'> & { limit: number };

/**
 * Runs of one project, or of every project when none is named: the lineage
 * queries are per project, so the newest of each are merged (newestFirst).
 * `pedigree start` shows them from its own handle; the user commands read
 * through the client (client.ts).
 */
export async function listRuns(pd: Pedigree, projectName: string | undefined, filter: RunFilter): Promise<{ runs: RunView[]; total: number }> {
  const projects = projectName ? [await pd.lineage.projectByName(projectName)] : await pd.lineage.projects();
  const pages = await Promise.all(projects.map((p) => pd.lineage.runs({ ...filter, projectId: p.id })));
  return newestFirst(pages, filter.limit);
}

/** Pages of runs, one per project, merged: the newest `limit` of them, and how many there are in all. */
export function newestFirst<Run extends { id: string; createdAt: Date }>(pages: readonly { runs: Run[]; total: number }[], limit: number): { runs: Run[]; total: number } {
  const runs = pages
    .flatMap((p) => p.runs)
    .sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime() || a.id.localeCompare(b.id))
    .slice(0, limit);
  return { runs, total: pages.reduce((n, p) => n + p.total, 0) };
}
