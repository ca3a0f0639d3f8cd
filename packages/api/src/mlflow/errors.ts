import { TRPCError } from '@trpc/server';
import { isDataException } from '../errors.ts';

/**
 * MLflow's error codes and the HTTP statuses its server sends with them
 * (mlflow/protos/databricks.proto, mlflow/server/handlers.py). Clients branch
 * on these: `set_experiment` creates an experiment on RESOURCE_DOES_NOT_EXIST,
 * and the Python client retries 429 and 5xx, never 4xx.
 */
export const MLFLOW_STATUS = {
  INVALID_PARAMETER_VALUE: 400,
  BAD_REQUEST: 400,
  MALFORMED_REQUEST: 400,
  INVALID_STATE: 400,
  RESOURCE_ALREADY_EXISTS: 400,
  UNAUTHENTICATED: 401,
  PERMISSION_DENIED: 403,
  RESOURCE_DOES_NOT_EXIST: 404,
  ENDPOINT_NOT_FOUND: 404,
  REQUEST_LIMIT_EXCEEDED: 429,
  INTERNAL_ERROR: 500,
} as const;
export type MlflowErrorCode = keyof typeof MLFLOW_STATUS;

export class MlflowError extends Error {
  constructor(
    readonly code: MlflowErrorCode,
    message: string,
    /** Overrides the code's usual status (413 for a body over the limit). */
    readonly status: number = MLFLOW_STATUS[code],
  ) {
    super(message);
  }
}

export const invalid = (message: string) => new MlflowError('INVALID_PARAMETER_VALUE', message);
export const notFound = (message: string) => new MlflowError('RESOURCE_DOES_NOT_EXIST', message);

const FROM_TRPC: Partial<Record<TRPCError['code'], MlflowErrorCode>> = {
  BAD_REQUEST: 'INVALID_PARAMETER_VALUE',
  UNAUTHORIZED: 'UNAUTHENTICATED',
  FORBIDDEN: 'PERMISSION_DENIED',
  NOT_FOUND: 'RESOURCE_DOES_NOT_EXIST',
};

/** Ledger codes (matched by `code`: the web bundle has its own copy of the ledger's classes). */
const FROM_LEDGER: Record<string, MlflowErrorCode> = {
  INVALID: 'INVALID_PARAMETER_VALUE',
  NOT_FOUND: 'RESOURCE_DOES_NOT_EXIST',
  IDEMPOTENCY_MISMATCH: 'INVALID_STATE',
  CONFLICT: 'INVALID_STATE',
  TOO_LARGE: 'INVALID_PARAMETER_VALUE',
};

/** Whatever a handler threw, as MLflow's error (unknown errors are INTERNAL_ERROR, and logged by the caller). */
export function toMlflowError(err: unknown): MlflowError {
  if (err instanceof MlflowError) return err;
  if (err instanceof TRPCError) {
    const code = FROM_TRPC[err.code];
    if (code) return new MlflowError(code, err.message);
    if (err.cause) return toMlflowError(err.cause);
  }
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'string' && code in FROM_LEDGER) return new MlflowError(FROM_LEDGER[code]!, err.message);
    if (isDataException(err)) return new MlflowError('INVALID_PARAMETER_VALUE', `invalid input: ${err.message}`);
  }
  return new MlflowError('INTERNAL_ERROR', err instanceof Error ? err.message : String(err));
}
