import { TRPCError, type TRPC_ERROR_CODE_KEY } from '@trpc/server';

/**
 * The one place domain errors become transport errors. Matched by `code`, not
 * by class: the Next.js server bundles its own copy of the ledger, so an error
 * raised by the CLI's copy is not an `instanceof` of the bundled class.
 */
const LEDGER_TO_TRPC: Record<string, TRPC_ERROR_CODE_KEY> = {
  CONFLICT: 'CONFLICT',
  IDEMPOTENCY_MISMATCH: 'CONFLICT',
  NOT_FOUND: 'NOT_FOUND',
  INVALID: 'BAD_REQUEST',
  TOO_LARGE: 'PAYLOAD_TOO_LARGE',
};

interface LedgerLike {
  code: string;
  message: string;
  details?: unknown;
}

function isLedgerError(err: unknown): err is LedgerLike {
  return err instanceof Error && typeof (err as { code?: unknown }).code === 'string' && (err as unknown as { code: string }).code in LEDGER_TO_TRPC;
}

/**
 * PostgreSQL's "data exception" class (SQLSTATE 22…: a value out of a
 * column's range, a byte sequence it cannot store) can only come from what a
 * client sent, never from a fault of the server: a 400, not a 500. Input is
 * validated before it gets there; this is the net under that.
 */
export function isDataException(err: unknown): boolean {
  const code = typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined;
  return typeof code === 'string' && /^22[0-9A-Z]{3}$/.test(code);
}

export function toTRPCError(err: unknown): TRPCError {
  if (err instanceof TRPCError) return err;
  if (isLedgerError(err)) return new TRPCError({ code: LEDGER_TO_TRPC[err.code]!, message: err.message, cause: err });
  if (isDataException(err)) return new TRPCError({ code: 'BAD_REQUEST', message: `invalid input: ${(err as Error).message}`, cause: err });
  return new TRPCError({ code: 'INTERNAL_SERVER_ERROR', message: err instanceof Error ? err.message : String(err), cause: err });
}

/** The ledger's own error code, when the error came from it (shown to clients as `data.ledgerCode`). */
export function ledgerCodeOf(err: unknown): string | null {
  const cause = err instanceof TRPCError ? err.cause : err;
  return isLedgerError(cause) ? cause.code : null;
}

/** Field-level issues the ledger attached to a validation error. */
export function ledgerIssuesOf(err: unknown): { path: string; message: string }[] | null {
  const cause = err instanceof TRPCError ? err.cause : err;
  return isLedgerError(cause) && Array.isArray(cause.details) ? (cause.details as { path: string; message: string }[]) : null;
}

/**
 * After a 413 the rest of the body is unread: on a kept-alive connection the
 * next request would be parsed from the middle of it. The connection closes
 * once the answer is sent.
 */
export const CLOSE_AFTER: Record<string, string> = { connection: 'close' };
