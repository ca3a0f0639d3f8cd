import { issueTicket } from '../tickets.ts';
import { publicProcedure, procedure, router } from '../trpc.ts';

export const systemRouter = router({
  /** No key needed: is the server up, and what is it serving? */
  health: publicProcedure.query(async ({ ctx }) => ({
    ok: true as const,
    storage: ctx.pedigree.database.db.kind,
    auth: ctx.authMode,
    position: await ctx.pedigree.store.lastPosition(),
  })),

  /**
   * A short-lived ticket that opens live updates (subscriptions) for this
   * request's key, so the key itself never travels in a URL. Null in open
   * mode without a key: subscriptions need nothing then.
   */
  ticket: procedure.mutation(({ ctx }) => (ctx.key ? issueTicket(ctx.key) : { ticket: null, expiresAt: null })),

  whoami: procedure.query(({ ctx }) => ({ actor: ctx.actor, projectId: ctx.key?.projectId ?? null, keyId: ctx.key?.keyId ?? null })),
});
