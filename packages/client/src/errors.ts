import { TRPCClientError } from '@trpc/client';

/** What the server said, readable: `BAD_REQUEST: points.0.value: must be a number`. */
export class PedigreeError extends Error {
  constructor(
    message: string,
    /** tRPC error code (BAD_REQUEST, NOT_FOUND, CONFLICT, FORBIDDEN, UNAUTHORIZED, …), or NETWORK. */
    readonly code: string,
    /** HTTP status, when there was a response. */
    readonly httpStatus: number | null,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'PedigreeError';
  }
}

interface ErrorData {
  code?: string;
  httpStatus?: number;
  zodError?: { formErrors: string[]; fieldErrors: Record<string, string[] | undefined> } | null;
}

/** Network trouble, a restarting server, a gateway: worth another try with the same event ids. */
export function isTransient(err: unknown): boolean {
  if (err instanceof PedigreeError) return err.code === 'NETWORK' || (err.httpStatus !== null && (err.httpStatus >= 500 || err.httpStatus === 429));
  if (err instanceof TRPCClientError) {
    const status = (err.data as ErrorData | undefined)?.httpStatus;
    if (status === undefined) return true; // no tRPC response at all: connection refused, reset, a proxy's HTML page
    return status >= 500 || status === 429;
  }
  return err instanceof TypeError; // fetch's "fetch failed"
}

export function toPedigreeError(err: unknown, what: string): PedigreeError {
  if (err instanceof PedigreeError) return err;
  if (err instanceof TRPCClientError) {
    const data = err.data as ErrorData | undefined;
    if (!data?.code) return new PedigreeError(`${what}: cannot reach the server (${err.message})`, 'NETWORK', null, { cause: err });
    const fields = Object.entries(data.zodError?.fieldErrors ?? {}).map(([k, v]) => `${k}: ${(v ?? []).join(', ')}`);
    const detail = [...(data.zodError?.formErrors ?? []), ...fields].join('; ');
    const message = detail && !err.message.includes(detail) ? `${err.message} (${detail})` : err.message;
    return new PedigreeError(`${what}: ${data.code}: ${message.startsWith('[') ? detail || message : message}`, data.code, data.httpStatus ?? null, { cause: err });
  }
  const message = err instanceof Error ? err.message : String(err);
  return new PedigreeError(`${what}: ${message}`, 'NETWORK', null, { cause: err });
}
