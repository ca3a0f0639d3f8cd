import { openDatabase, type Database, type Db, type OpenOptions, type StoreTarget } from '@pedigree/db';

/** Where the embedded store lives by default ($PEDIGREE_HOME, else ./.pedigree): for those that open a store through lineage. */
export { defaultHome } from '@pedigree/db';
import { EventStore, rebuildProjections, subscribe, verifyChain, type RebuildOptions, type StoredEvent, type SubscribeOptions, type VerifyOptions } from '@pedigree/ledger';
import { Tracker } from './commands.ts';
import { lineageProjection } from './projection.ts';
import { Lineage } from './queries.ts';

export * from './commands.ts';
export * from './diff.ts';
export * from './ids.ts';
export * from './projection.ts';
export * from './queries.ts';
export { ProjectionReader } from './reader.ts';
export { recordSampleLineage } from './sample.ts';

/** Everything a process needs to write and read one store. */
export interface Pedigree {
  database: Database;
  store: EventStore;
  tracker: Tracker;
  lineage: Lineage;
  /** Rebuilds every projection from the events, checking every hash chain as it reads (see rebuildProjections). */
  replay(opts?: RebuildOptions): ReturnType<typeof rebuildProjections>;
  verify(opts?: VerifyOptions): ReturnType<typeof verifyChain>;
  subscribe(onEvents: (events: StoredEvent[]) => void | Promise<void>, opts?: SubscribeOptions): ReturnType<typeof subscribe>;
  close(): Promise<void>;
}

export async function openPedigree(target?: StoreTarget, opts: OpenOptions = {}): Promise<Pedigree> {
  const database = await openDatabase(target, opts);
  const store = new EventStore(database.db, [lineageProjection]);
  return {
    database,
    store,
    tracker: new Tracker(store),
    lineage: new Lineage(database.db, database.prisma),
    replay: (o) => rebuildProjections(store, o),
    verify: (o) => verifyChain(database.db, o),
    subscribe: (fn, o) => subscribe(store, fn, o),
    close: () => database.close(),
  };
}

/**
 * `pd` with its reads on `replica`, a streaming replica of its database: the
 * lineage queries, the log's reads and subscriptions go there; the tracker
 * (writes, and the reads their checks make) stays on pd's. `db` stands in
 * for the replica's own connections in the log's store (one that LISTENs on
 * the primary: a replica sends no notifications).
 */
export function withReads(pd: Pedigree, replica: Database, db: Db = replica.db): Pedigree {
  const store = new EventStore(db, [lineageProjection]);
  return { ...pd, store, lineage: new Lineage(replica.db, replica.prisma), subscribe: (fn, o) => subscribe(store, fn, o) };
}
