import { publicProcedure, procedure, router } from '../trpc.ts';

export const systemRouter = router({
  /** No key needed: is the server up, and what is it serving? */
  health: publicProcedure.query(async ({ ctx }) => ({
    ok: true as const,
    storage: ctx.pedigree.database.db.kind,
    auth: ctx.authMode,
    position: await ctx.pedigree.store.lastPosition(),
  })),

  whoami: procedure.query(({ ctx }) => ({ actor: ctx.actor, projectId: ctx.key?.projectId ?? null, keyId: ctx.key?.keyId ?? null })),
});
