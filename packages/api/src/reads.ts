/**
 * Read-your-writes over streaming replicas, by position. Every write's
 * response carries the highest position it appended (POSITION_HEADER); a
 * read that sends a position back (MIN_POSITION_HEADER) is served by a
 * replica only once that position is settled there, else, after a bounded
 * wait, by the primary. docs/scale.md says why and how.
 */

import { openDatabase, type Database, type Db, type DbRole } from '@pedigree/db';
import type { AppendResult, EventStore } from '@pedigree/ledger';
import { Tracker, withReads, type Pedigree } from '@pedigree/lineage';
import { MIN_POSITION_HEADER, POSITION_HEADER } from './headers.ts';

export { MIN_POSITION_HEADER, POSITION_HEADER };

/** How long a read carrying a position waits for a replica before the primary serves it. */
export const DEFAULT_READ_WAIT_MS = 1000;
const POLL_MS = 10;

export interface ReadRoutingOptions {
  /** The role the replicas' connections run as (as the primary's: see @pedigree/db roles.ts). */
  role?: DbRole;
  /** Default DEFAULT_READ_WAIT_MS. */
  waitMs?: number;
}

interface Replica {
  database: Database;
  /** The ledger over the replica: reads, and subscriptions woken by the primary's notifications. */
  store: EventStore;
  /** The primary's Pedigree with its reads (lineage, store, subscribe) on this replica; writes stay on the primary. */
  view: Pedigree;
  /** The highest position seen settled here: positions only ever settle, so a read at or below it need not ask. */
  settled: number;
}

/** Where reads went, counted (the tests read them). */
export interface ReadStats {
  /** Reads served by a replica. */
  replica: number;
  /** Reads that carried a position no replica had within the wait: served by the primary. */
  fellBack: number;
}

/**
 * A primary for appends and streaming replicas for reads: the queries of
 * the API (dashboard, reads, search, metric buckets, diff) go to a replica,
 * round robin; writes, and the reads inside a write (its checks), to the
 * primary. Subscriptions follow the primary's notifications (replicas send
 * none) and read from a replica, once it has the notified position.
 *
 * "Settled" is the ledger's own: the replica's `lastPosition()` (the highest
 * position its snapshot shows with every lower position that will ever
 * commit), so a read at position P sees every event at or below P: the
 * write that returned P, and every other write of the caller that returned
 * a lower position, concurrent ones included. A replica shows a primary's running transactions as running, so
 * while one that began before P's write is still open on the primary, P is
 * not settled on a replica and the read falls back after the wait.
 */
export class ReadRouting {
  readonly stats: ReadStats = { replica: 0, fellBack: 0 };
  private next = 0;

  private constructor(
    readonly primary: Pedigree,
    private readonly replicas: Replica[],
    private readonly waitMs: number,
  ) {}

  /** Opens a pool (and a Prisma client) on each replica; they must be replicas of the primary's database, migrated as it is. */
  static async open(primary: Pedigree, urls: readonly string[], opts: ReadRoutingOptions = {}): Promise<ReadRouting> {
    const waitMs = opts.waitMs ?? DEFAULT_READ_WAIT_MS;
    const replicas: Replica[] = [];
    try {
      for (const url of urls) replicas.push(replicaOf(primary, await openDatabase({ url }, opts.role === undefined ? {} : { role: opts.role }), waitMs));
    } catch (err) {
      await Promise.all(replicas.map((r) => r.database.close().catch(() => {})));
      throw err;
    }
    return new ReadRouting(primary, replicas, waitMs);
  }

  get size(): number {
    return this.replicas.length;
  }

  /** Where replicas are (no passwords). */
  get locations(): string[] {
    return this.replicas.map((r) => r.database.db.location);
  }

  /**
   * The Pedigree a read runs on: the next replica; with `minPosition`, the
   * first replica that has it settled within the wait, else the primary.
   */
  async forRead(minPosition = 0): Promise<Pedigree> {
    if (this.replicas.length === 0) return this.primary;
    const start = this.next++ % this.replicas.length;
    const order = [...this.replicas.slice(start), ...this.replicas.slice(0, start)];
    if (minPosition <= 0) {
      this.stats.replica++;
      return order[0]!.view;
    }
    const deadline = Date.now() + this.waitMs;
    for (;;) {
      for (const r of order) {
        if (await hasSettled(r, minPosition)) {
          this.stats.replica++;
          return r.view;
        }
      }
      if (Date.now() >= deadline) break;
      await sleep(Math.min(POLL_MS, Math.max(0, deadline - Date.now())));
    }
    this.stats.fellBack++;
    return this.primary;
  }

  async close(): Promise<void> {
    await Promise.all(this.replicas.map((r) => r.database.close()));
  }
}

/** Whether `position` is settled on the replica; a replica that does not answer has not. */
async function hasSettled(r: Replica, position: number): Promise<boolean> {
  if (r.settled >= position) return true;
  try {
    r.settled = Math.max(r.settled, await r.store.lastPosition());
  } catch {
    return false;
  }
  return r.settled >= position;
}

/** Waits, up to `waitMs`, until `position` is settled on the replica. */
async function untilSettled(r: Replica, position: number, waitMs: number): Promise<void> {
  const deadline = Date.now() + waitMs;
  while (!(await hasSettled(r, position)) && Date.now() < deadline) await sleep(POLL_MS);
}

function replicaOf(primary: Pedigree, database: Database, waitMs: number): Replica {
  // A replica sends no notifications: listen on the primary, and pass one on once the replica has its position (the payload).
  const db: Db = {
    ...database.db,
    listen: (channel, onPayload) => primary.database.db.listen(channel, (payload) => void untilSettled(replica, Number(payload) || 0, waitMs).then(() => onPayload(payload))),
  };
  const view = withReads(primary, database, db);
  const replica: Replica = { database, store: view.store, view, settled: 0 };
  return replica;
}

/**
 * The primary's Pedigree for one write request, whose tracker notes the
 * highest position it appends in `written`: what the response reports
 * (POSITION_HEADER). A retried write reports its events' stored positions.
 */
export function recordingWrites(primary: Pedigree, written: { position: number }): Pedigree {
  const store = Object.create(primary.store) as EventStore;
  store.append = async (...args: Parameters<EventStore['append']>): Promise<AppendResult> => {
    const res = await primary.store.append(...args);
    written.position = Math.max(written.position, ...res.positions);
    return res;
  };
  return { ...primary, tracker: new Tracker(store) };
}

/** The position a request asks its read to include (MIN_POSITION_HEADER), 0 when none or not a position. */
export function minPositionOf(headers: Headers): number {
  const raw = headers.get(MIN_POSITION_HEADER);
  return raw && /^\d{1,15}$/.test(raw.trim()) ? Number(raw.trim()) : 0;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
