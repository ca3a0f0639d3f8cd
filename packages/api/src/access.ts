import { TRPCError } from '@trpc/server';
import type { Context } from './context.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export interface ProjectRow {
  id: string;
  name: string;
}

export interface RunRow {
  id: string;
  projectId: string;
  status: string;
}

/**
 * Resolves what a request names (a project by id or name, a run by id or
 * prefix, an artifact, a stream) and refuses anything outside the caller's
 * project. Every procedure that touches data goes through here.
 */
export interface Access {
  /** The project's id; with a key, only the key's project. */
  project(ref: string): Promise<ProjectRow>;
  /** The projects the caller may see. */
  projectIds(): Promise<string[] | 'all'>;
  run(ref: string): Promise<RunRow>;
  artifact(id: string): Promise<{ id: string; projectId: string }>;
  /** A stream id (`run-…`, `artifact-…`, `project-…`), checked. */
  stream(streamId: string): Promise<{ streamId: string; projectId: string }>;
  /** Creating projects: open mode only (a key is bound to one project). */
  mayCreateProjects(): void;
}

export function accessFor(ctx: Context): Access {
  const lineage = ctx.pedigree.lineage;
  /**
   * With a key, whatever is outside its project is answered exactly as what
   * does not exist at all (same status, same message, naming only what the
   * caller sent): a key learns nothing of other projects' names, ids or streams.
   */
  const outside = (what: string, ref: string) => new TRPCError({ code: 'FORBIDDEN', message: `${what} ${JSON.stringify(ref)} not found in this API key's project` });
  const missing = (what: string, ref: string) => (ctx.key ? outside(what, ref) : new TRPCError({ code: 'NOT_FOUND', message: `${what} ${JSON.stringify(ref)} not found` }));
  const allowed = (projectId: string, what: string, ref: string) => {
    if (ctx.key && ctx.key.projectId !== projectId) throw outside(what, ref);
  };
  const access: Access = {
    async project(ref) {
      const row = await lineage.projectRef(ref);
      if (!row) throw missing('project', ref);
      allowed(row.id, 'project', ref);
      return row;
    },
    async projectIds() {
      return ctx.key ? [ctx.key.projectId] : 'all';
    },
    async run(ref) {
      let id: string;
      try {
        id = await ctx.pedigree.lineage.resolveRunId(ref, { projectId: ctx.key?.projectId });
      } catch (err) {
        if ((err as { code?: string }).code === 'NOT_FOUND') throw missing('run', ref);
        throw err;
      }
      const row = await lineage.runRef(id);
      if (!row) throw missing('run', ref);
      allowed(row.projectId, 'run', ref);
      return row;
    },
    async artifact(id) {
      if (!UUID.test(id)) throw new TRPCError({ code: 'BAD_REQUEST', message: `artifactId must be a UUID, got ${JSON.stringify(id)}` });
      const row = await lineage.artifactRef(id);
      if (!row) throw missing('artifact', id);
      allowed(row.projectId, 'artifact', id);
      return row;
    },
    async stream(streamId) {
      const m = /^(run|artifact|project)-(.+)$/.exec(streamId);
      if (!m || !UUID.test(m[2]!)) throw new TRPCError({ code: 'BAD_REQUEST', message: `not a stream id: ${JSON.stringify(streamId)} (expected run-<uuid>, artifact-<uuid> or project-<uuid>)` });
      const id = m[2]!.toLowerCase();
      const projectId = m[1] === 'run' ? (await access.run(id)).projectId : m[1] === 'artifact' ? (await access.artifact(id)).projectId : (await access.project(id)).id;
      return { streamId: `${m[1]}-${id}`, projectId };
    },
    mayCreateProjects() {
      if (ctx.key) throw new TRPCError({ code: 'FORBIDDEN', message: 'an API key is bound to one project and cannot create projects; create them with the CLI (`pedigree projects create`) or an open local server' });
    },
  };
  return access;
}
