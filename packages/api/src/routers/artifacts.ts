import { ARTIFACT_KINDS } from '@pedigree/ledger';
import { z } from 'zod';
import { Digest, EventId, Name, ProjectRef, Uuid } from '../inputs.ts';
import { procedure, router } from '../trpc.ts';

export const artifactsRouter = router({
  /** Registers a dataset, data mix, checkpoint, eval set or report. Content-addressed: registering the same content again returns the same id. */
  register: procedure
    .input(
      z.object({
        project: ProjectRef,
        name: Name,
        spec: z.object({ kind: z.enum(ARTIFACT_KINDS) }).loose(),
        digest: Digest.optional(),
        eventId: EventId,
      }),
    )
    .mutation(async ({ ctx, input }) => {
      const project = await ctx.access.project(input.project);
      return ctx.pedigree.tracker.registerArtifact(
        { projectId: project.id, name: input.name, spec: input.spec as never, digest: input.digest },
        { eventId: input.eventId, metadata: { actor: ctx.actor } },
      );
    }),

  get: procedure.input(z.object({ artifactId: Uuid })).query(async ({ ctx, input }) => {
    const { id } = await ctx.access.artifact(input.artifactId);
    return ctx.pedigree.lineage.artifact(id);
  }),

  list: procedure.input(z.object({ project: ProjectRef, kind: z.enum(ARTIFACT_KINDS).optional() })).query(async ({ ctx, input }) => {
    const project = await ctx.access.project(input.project);
    return ctx.pedigree.lineage.artifacts(project.id, input.kind);
  }),
});
