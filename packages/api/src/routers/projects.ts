import { MAX_DESCRIPTION } from '@pedigree/ledger';
import { z } from 'zod';
import { EventId, Name, ProjectRef } from '../inputs.ts';
import { procedure, router } from '../trpc.ts';

export const projectsRouter = router({
  list: procedure.query(async ({ ctx }) => {
    const visible = await ctx.access.projectIds();
    const all = await ctx.pedigree.lineage.projects();
    return visible === 'all' ? all : all.filter((p) => visible.includes(p.id));
  }),

  get: procedure.input(z.object({ project: ProjectRef })).query(async ({ ctx, input }) => {
    const { id } = await ctx.access.project(input.project);
    const all = await ctx.pedigree.lineage.projects();
    return all.find((p) => p.id === id)!;
  }),

  create: procedure
    .input(z.object({ name: Name, description: z.string().max(MAX_DESCRIPTION).optional(), eventId: EventId }))
    .mutation(async ({ ctx, input }) => {
      ctx.access.mayCreateProjects();
      const { projectId, duplicate } = await ctx.pedigree.tracker.createProject(
        { name: input.name, description: input.description },
        { eventId: input.eventId, metadata: { actor: ctx.actor } },
      );
      return { projectId, duplicate };
    }),

  /** The project with this name, created when missing (open mode), or checked against the key. */
  ensure: procedure.input(z.object({ name: Name })).mutation(async ({ ctx, input }) => {
    if (ctx.key) return { projectId: (await ctx.access.project(input.name)).id };
    return { projectId: await ctx.pedigree.tracker.ensureProject(input.name) };
  }),
});
