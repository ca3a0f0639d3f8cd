import { isTransient, toPedigreeError } from './errors.ts';

export interface RetryPolicy {
  /** Give up after this long (ms). A restarting server usually answers again within seconds. */
  retryForMs: number;
  initialDelayMs: number;
  maxDelayMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { retryForMs: 120_000, initialDelayMs: 100, maxDelayMs: 5_000 };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Calls `fn` until it succeeds, retrying transient failures with backoff and
 * jitter. The caller fixes its event ids before the first attempt, so a retry
 * of a write that did commit is answered as a duplicate, never applied twice.
 */
export async function withRetry<T>(what: string, fn: () => Promise<T>, policy: RetryPolicy, onRetry?: (attempt: number, err: unknown) => void): Promise<T> {
  const deadline = Date.now() + policy.retryForMs;
  let delay = policy.initialDelayMs;
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (!isTransient(err) || Date.now() + delay > deadline) throw toPedigreeError(err, what);
      onRetry?.(attempt, err);
      await sleep(delay * (0.5 + Math.random()));
      delay = Math.min(policy.maxDelayMs, delay * 2);
    }
  }
}
