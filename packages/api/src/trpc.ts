import { findUnstorableString } from '@pedigree/ledger';
import { initTRPC, TRPCError } from '@trpc/server';
import superjson from 'superjson';
import { z, ZodError } from 'zod';
import { type Access, accessFor } from './access.ts';
import type { Context } from './context.ts';
import { ledgerCodeOf, ledgerIssuesOf, toTRPCError } from './errors.ts';

const t = initTRPC.context<Context>().create({
  transformer: superjson,
  errorFormatter({ shape, error }) {
    const zodError = error.cause instanceof ZodError ? z.flattenError(error.cause) : null;
    const message =
      error.cause instanceof ZodError
        ? `invalid input: ${error.cause.issues.map((i) => (i.path.length ? `${i.path.join('.')}: ${i.message}` : i.message)).join('; ')}`
        : shape.message;
    return {
      ...shape,
      message,
      data: {
        ...shape.data,
        stack: undefined,
        zodError,
        ledgerCode: ledgerCodeOf(error),
        issues: ledgerIssuesOf(error),
      },
    };
  },
  sse: {
    ping: { enabled: true, intervalMs: 5_000 },
    client: { reconnectAfterInactivityMs: 15_000 },
  },
});

export const router = t.router;
export const createCallerFactory = t.createCallerFactory;

/** Maps whatever the ledger or lineage raised to a tRPC error, in one place. */
const mapErrors = t.middleware(async ({ next }) => {
  const result = await next();
  if (!result.ok && !(result.error.cause instanceof ZodError) && result.error.code === 'INTERNAL_SERVER_ERROR' && result.error.cause) {
    const mapped = toTRPCError(result.error.cause);
    if (mapped.code !== 'INTERNAL_SERVER_ERROR') return { ...result, error: mapped };
  }
  return result;
});

/** NUL and unpaired surrogates cannot be stored or compared by PostgreSQL: refused in reads as in writes, naming the field. */
const refuseUnstorableStrings = t.middleware(async ({ getRawInput, next }) => {
  const bad = findUnstorableString(await getRawInput());
  if (bad) throw new TRPCError({ code: 'BAD_REQUEST', message: `invalid input: ${bad.path.replace(/^json\.?/, '') || 'input'}: ${bad.message}` });
  return next();
});

/** Needs no project: health checks. */
export const publicProcedure = t.procedure.use(mapErrors).use(refuseUnstorableStrings);

/** Every other procedure: `ctx.access` checks each project, run and artifact against the caller's key. */
export const procedure = publicProcedure.use(({ ctx, next }) => {
  if (ctx.authError) throw ctx.authError;
  return next({ ctx: { ...ctx, access: accessFor(ctx) as Access } });
});

export { TRPCError };
