/**
 * The driver seam. Everything above packages/db talks SQL through `Db`, so the
 * ledger and projections run unchanged on embedded PGlite and on a PostgreSQL
 * server. Conventions both drivers follow: int8 comes back as a JS number,
 * jsonb as parsed JSON, timestamptz as Date; pass jsonb parameters as JSON text.
 */
export type Row = object;

export interface Queryable {
  query<T extends Row = Row>(text: string, params?: readonly unknown[]): Promise<T[]>;
}

export type DbKind = 'pglite' | 'postgres';

export interface Db extends Queryable {
  readonly kind: DbKind;
  /** Human-readable location: a directory, ':memory:' or a URL without password. */
  readonly location: string;
  /** All or nothing: `fn`'s queries run in one transaction. */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  /** Runs a script of several statements (migrations). */
  exec(script: string): Promise<void>;
  listen(channel: string, onPayload: (payload: string) => void): Promise<() => Promise<void>>;
  close(): Promise<void>;
}

/** A Postgres error as both drivers report it. */
export interface PgError {
  code?: string;
  constraint?: string;
  constraint_name?: string;
  message: string;
}

export function pgErrorCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err ? String((err as PgError).code) : undefined;
}

export function pgConstraint(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const e = err as PgError;
  return e.constraint ?? e.constraint_name;
}
