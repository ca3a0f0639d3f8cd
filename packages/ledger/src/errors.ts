/** Every error the ledger and lineage raise on purpose. Transports map `code` to their own statuses. */
export type LedgerErrorCode = 'CONFLICT' | 'NOT_FOUND' | 'INVALID' | 'IDEMPOTENCY_MISMATCH' | 'TOO_LARGE';

export class LedgerError extends Error {
  constructor(
    readonly code: LedgerErrorCode,
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/** The stream moved on since the caller read it. Safe to re-read and retry. */
export class ConcurrencyError extends LedgerError {
  constructor(
    readonly streamId: string,
    readonly expectedVersion: number,
    readonly actualVersion: number,
  ) {
    super('CONFLICT', `stream ${streamId} is at version ${actualVersion}, expected ${expectedVersion}`);
  }
}

export class NotFoundError extends LedgerError {
  constructor(what: string) {
    super('NOT_FOUND', `${what} not found`);
  }
}

export interface Issue {
  path: string;
  message: string;
}

export class ValidationError extends LedgerError {
  constructor(
    message: string,
    readonly issues: Issue[] = [],
  ) {
    super('INVALID', issues.length ? `${message}: ${issues.map((i) => (i.path ? `${i.path}: ${i.message}` : i.message)).join('; ')}` : message, issues);
  }
}

/** An event id was reused for a different event. */
export class IdempotencyError extends LedgerError {
  constructor(message: string) {
    super('IDEMPOTENCY_MISMATCH', message);
  }
}

export class TooLargeError extends LedgerError {
  constructor(message: string) {
    super('TOO_LARGE', message);
  }
}
