import type { Db } from '@pedigree/db';
import type { StoredEvent } from './events.ts';
import { NOTIFY_CHANNEL, type EventStore } from './store.ts';

export interface SubscribeOptions {
  /** Deliver events after this position (0: from the beginning). */
  afterPosition?: number;
  projectId?: string;
  streamId?: string;
  batchSize?: number;
  /** Safety net poll, in case a notification is missed (ms). */
  pollMs?: number;
}

export interface Subscription {
  /** Resolves once listening and caught up to the events present at start. */
  readonly ready: Promise<void>;
  /** Position of the last event delivered. */
  readonly position: number;
  close(): Promise<void>;
}

/**
 * Delivers events in global order, each exactly once, starting after a
 * position: catch-up reads, then LISTEN/NOTIFY wakes it (PostgreSQL's, or
 * PGlite's in-process equivalent). It reads only settled events (readAll,
 * see SETTLED), so reading "after the last position seen" never skips one
 * that commits later.
 */
export function subscribe(store: EventStore, onEvents: (events: StoredEvent[]) => void | Promise<void>, opts: SubscribeOptions = {}): Subscription {
  const db: Db = store.db;
  let position = opts.afterPosition ?? 0;
  let closed = false;
  let running = false;
  let again = false;
  let unlisten: (() => Promise<void>) | undefined;
  let timer: NodeJS.Timeout | undefined;

  const drain = async (): Promise<void> => {
    if (running) {
      again = true;
      return;
    }
    running = true;
    try {
      do {
        again = false;
        for (;;) {
          if (closed) return;
          const batch = await store.readAll({ afterPosition: position, limit: opts.batchSize ?? 1000, projectId: opts.projectId, streamId: opts.streamId });
          if (batch.length === 0) break;
          position = batch[batch.length - 1]!.position;
          await onEvents(batch);
        }
      } while (again && !closed);
    } finally {
      running = false;
    }
  };

  const ready = (async () => {
    unlisten = await db.listen(NOTIFY_CHANNEL, () => void drain().catch(() => {}));
    await drain();
    timer = setInterval(() => void drain().catch(() => {}), opts.pollMs ?? 2000);
    timer.unref();
  })();

  return {
    ready,
    get position() {
      return position;
    },
    async close() {
      closed = true;
      if (timer) clearInterval(timer);
      await ready.catch(() => {});
      await unlisten?.();
    },
  };
}
