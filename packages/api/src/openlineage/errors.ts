import { TRPCError } from '@trpc/server';
import { CLOSE_AFTER } from '../errors.ts';

/**
 * The OpenLineage endpoints' one error shape: an HTTP status and
 * `{ "error": "…", "field": "run.runId" }`, where `field` names the part of
 * the event at fault (null when it is the request as a whole).
 */
export class OpenLineageError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly field: string | null = null,
  ) {
    super(message);
  }
}

export const badField = (field: string, message: string) => new OpenLineageError(400, message, field);

const FROM_TRPC: Partial<Record<TRPCError['code'], number>> = {
  BAD_REQUEST: 400,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  CONFLICT: 409,
  PAYLOAD_TOO_LARGE: 413,
};

/** Ledger codes, matched by `code` (the web bundle has its own copy of the ledger's classes). */
const FROM_LEDGER: Record<string, number> = {
  INVALID: 400,
  NOT_FOUND: 404,
  CONFLICT: 409,
  IDEMPOTENCY_MISMATCH: 409,
  TOO_LARGE: 413,
};

/** Whatever a handler threw, as a status and message; anything unexpected is a 500 (logged by the caller). */
export function toOpenLineageError(err: unknown): OpenLineageError {
  if (err instanceof OpenLineageError) return err;
  if (err instanceof TRPCError) {
    const status = FROM_TRPC[err.code];
    if (status) return new OpenLineageError(status, err.message);
    if (err.cause) return toOpenLineageError(err.cause);
  }
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'string' && code in FROM_LEDGER) return new OpenLineageError(FROM_LEDGER[code]!, err.message);
  }
  return new OpenLineageError(500, err instanceof Error ? err.message : String(err));
}

export function errorResponse(err: OpenLineageError): Response {
  return Response.json({ error: err.message, field: err.field }, { status: err.status, headers: err.status === 413 ? CLOSE_AFTER : undefined });
}
