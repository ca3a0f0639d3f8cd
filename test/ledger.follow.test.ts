/**
 * Following the log while appends overlap (issue 14, item 3).
 *
 * Appends no longer queue on one store-wide lock: each takes its positions
 * (and its transaction id) from pedigree_reserve_positions and then runs
 * alongside appends on other streams. So position 11 can commit while 10 is
 * still open, and a reader that asks for "events after the last position I
 * saw" would, if shown 11 then, move past 10 and never see it. readAll hides
 * every event whose transaction ended after the oldest one still running
 * began (tx_id < pg_snapshot_xmin), which makes each read a prefix, in
 * position order, of everything that will ever commit.
 *
 * How these tests try to break that:
 *  1. Brute force. Eight writers, each on a stream of its own and (on the
 *     server) a connection pool of its own, append small events and batches
 *     of three as fast as they can, so that transactions commit out of
 *     position order all the time; meanwhile a follower loops readAll(after
 *     the last position it saw, 50 at a time) with no pause, and a subscribe()
 *     follower starts at 0. Each must end up with exactly the events in the
 *     table (a plain SELECT, not readAll), each once, positions strictly
 *     increasing: one event skipped or seen twice fails it.
 *  2. Deterministically (server only): a projection that blocks holds append
 *     A open after its event row is written; append B on another stream, on
 *     another connection, must finish while A is open (different streams do
 *     not wait for each other) and gets a higher position, so B is committed
 *     (a plain SELECT sees it) yet readAll — unfiltered and by project — and
 *     a subscription must not return it until A commits; then A, B in order.
 *     An append C on A's stream started meanwhile must wait for A and follow
 *     it in the stream (the per-stream lock keeps the chain a chain).
 *  3. The per-stream rules under parallel appends to ONE stream: racing
 *     appends with expectedVersion 'any' all succeed, with disjoint,
 *     gap-free versions, consecutive positions per append, and a chain that
 *     verifies; racing appends with the same expected version: exactly one
 *     wins, the rest get a ConcurrencyError; identical retries racing on the
 *     same event ids both succeed, one as a duplicate, stored once.
 *
 * PGlite is one connection, so its transactions never overlap: parts 1 and 3
 * run there too (as concurrent promises on the one store), part 2 cannot.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConcurrencyError, EventStore, streamIds, subscribe, type NewEvent, type Projection, type StoredEvent } from '@pedigree/ledger';
import { lineageProjection, type Pedigree } from '@pedigree/lineage';
import postgres from 'postgres';
import { backends, SERVER_URL } from './support/stores.ts';

const WRITERS = 8;

/** Every event in the table, in position order: the ground truth, read without readAll's visibility rule. */
async function allRows(pd: Pedigree): Promise<{ position: number; event_id: string }[]> {
  return pd.database.db.query<{ position: number; event_id: string }>('SELECT position, event_id FROM events ORDER BY position');
}

/** Resolves to `{ value }`, or 'timeout' when `p` has not settled within `ms` (a rejection rejects). */
async function within<T>(p: Promise<T>, ms: number): Promise<{ value: T } | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), ms)));
  try {
    return await Promise.race([p.then((value) => ({ value })), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Checks a follower's view: strictly increasing positions, and exactly the stored events in order. */
function expectSameLog(name: string, seen: readonly StoredEvent[], rows: readonly { position: number; event_id: string }[]) {
  for (let i = 1; i < seen.length; i++) {
    if (seen[i]!.position <= seen[i - 1]!.position) {
      throw new Error(`${name}: position ${seen[i]!.position} came after ${seen[i - 1]!.position}`);
    }
  }
  const seenIds = new Set(seen.map((e) => e.eventId));
  const missed = rows.filter((r) => !seenIds.has(r.event_id));
  if (missed.length) {
    throw new Error(`${name} skipped ${missed.length} committed event(s), e.g. at positions ${missed.slice(0, 10).map((r) => r.position).join(', ')}`);
  }
  expect(seen.map((e) => [e.position, e.eventId])).toEqual(rows.map((r) => [r.position, r.event_id]));
}

for (const { backend, skip } of await backends({ pooler: true })) {
  describe.skipIf(skip)(`following the log on ${backend.name}`, () => {
    const server = backend.name !== 'pglite';
    let pd: Pedigree;
    /** One store per writer: on the server, each a pool of its own (as separate processes would have); on PGlite, the one store. */
    let writerStores: EventStore[];
    let projectId: string;

    beforeAll(async () => {
      pd = await backend.open();
      projectId = (await pd.tracker.createProject({ name: 'follow' })).projectId;
      writerStores = server
        ? await Promise.all(Array.from({ length: WRITERS }, async () => (await backend.reopen!()).store))
        : Array.from({ length: WRITERS }, () => pd.store);
    });
    afterAll(() => backend.dispose());

    const newRun = async (name = 'follow') => {
      const { runId } = await pd.tracker.createRun({ projectId, name, kind: 'custom' });
      return streamIds.run(runId);
    };

    /** Small realistic appends on one run stream: one note or tag, or every seventh time a batch of three. */
    async function writer(store: EventStore, stream: string, appends: number, w: number) {
      const acked: { eventIds: string[]; positions: number[] }[] = [];
      let version = await store.streamVersion(stream);
      for (let i = 0; i < appends; i++) {
        const events: NewEvent[] =
          i % 7 === 0
            ? [
                { type: 'NoteAdded', data: { text: `writer ${w}, append ${i}: starting a batch`, author: `w${w}` } },
                { type: 'TagAdded', data: { tag: `w${w}-batch-${i}` } },
                { type: 'NoteAdded', data: { text: `writer ${w}, append ${i}: end of batch` } },
              ]
            : i % 2 === 0
              ? [{ type: 'NoteAdded', data: { text: `writer ${w}, append ${i}` } }]
              : [{ type: 'TagAdded', data: { tag: `w${w}-${i}` } }];
        // Nobody else writes this stream, so the exact expected version must always hold.
        const res = await store.append(stream, events, { projectId, expectedVersion: version });
        expect(res.duplicate).toBe(false);
        version = res.version;
        acked.push({ eventIds: res.eventIds, positions: res.positions });
      }
      return acked;
    }

    it(`readers never skip: ${WRITERS} writers on separate streams, a readAll follower and a subscriber`, async () => {
      const streams: string[] = [];
      for (let w = 0; w < WRITERS; w++) streams.push(await newRun(`follow-${w}`));
      const per = server ? 200 : 80;

      // The subscriber, from the very beginning.
      const subSeen: StoredEvent[] = [];
      const sub = subscribe(
        pd.store,
        (batch) => {
          subSeen.push(...batch);
        },
        { afterPosition: 0, batchSize: 50, pollMs: 50 },
      );
      await sub.ready;

      // The polling follower: no pause between reads (on PGlite each read still queues behind the writers' transactions).
      const seen: StoredEvent[] = [];
      let last = 0;
      let reads = 0;
      let nonEmpty = 0;
      let target = Number.POSITIVE_INFINITY; // set once the writers are done: the last stored position
      let stop = false;
      const follower = (async () => {
        while (!stop && last < target) {
          const batch = await pd.store.readAll({ afterPosition: last, limit: 50 });
          reads++;
          if (batch.length === 0) {
            if (!server) await sleep(0);
            continue;
          }
          nonEmpty++;
          seen.push(...batch);
          last = batch[batch.length - 1]!.position;
        }
      })();

      let acked: Awaited<ReturnType<typeof writer>>[];
      try {
        acked = await Promise.all(streams.map((s, w) => writer(writerStores[w]!, s, per, w)));
        const rows = await allRows(pd);
        target = rows[rows.length - 1]!.position;
        // Every writer is done and nothing else writes: the follower must reach the end (bounded, so a skip cannot hang it).
        const reached = await within(follower, 60_000);
        if (reached === 'timeout') throw new Error(`the readAll follower is stuck at ${last}; the log ends at ${target}`);
        await expect.poll(() => sub.position, { timeout: 60_000 }).toBe(target);
      } finally {
        stop = true;
        await follower.catch(() => {});
        await sub.close();
      }

      const rows = await allRows(pd);
      expect(rows[rows.length - 1]!.position).toBe(target);
      // Every acknowledged event is stored, where the append said.
      const stored = new Map(rows.map((r) => [r.event_id, r.position]));
      const ackedEvents = acked.flat();
      for (const a of ackedEvents) a.eventIds.forEach((id, i) => expect(stored.get(id)).toBe(a.positions[i]));
      expect(ackedEvents).toHaveLength(WRITERS * per);

      expectSameLog('the readAll follower', seen, rows);
      expectSameLog('the subscriber', subSeen, rows);
      // readAll itself agrees once everything has ended (eventually: any transaction with an id, anywhere on the
      // server — an autovacuum ANALYZE, another database's writer — holds back what it shows while it runs).
      await expect.poll(async () => (await pd.store.readAll({ afterPosition: 0, limit: 1_000_000 })).length, { timeout: 30_000 }).toBe(rows.length);
      expectSameLog('a full readAll', await pd.store.readAll({ afterPosition: 0, limit: 1_000_000 }), rows);

      expect(await pd.verify()).toMatchObject({ ok: true });
      console.log(`[${backend.name}] follow: ${rows.length} events, ${reads} reads (${nonEmpty} non-empty), subscriber at ${sub.position}`);
    });

    it.skipIf(!server)('a long write that is not an append (here, in another database on the server) does not hold followers back', async () => {
      const stream = await newRun('beside-a-long-write');
      // A transaction that holds a transaction id for the whole test, in another database: it can
      // never append to this store, so it must not bound what a follower reads.
      const other = postgres(backend.serverUrl ?? SERVER_URL, { max: 1, onnotice: () => {} });
      try {
        let release!: () => void;
        const released = new Promise<void>((r) => (release = r));
        let started!: () => void;
        const holding = new Promise<void>((r) => (started = r));
        const long = other.begin(async (tx) => {
          await tx`SELECT pg_current_xact_id()`;
          started();
          await released;
        });
        await holding;
        const last = await pd.store.lastPosition();
        const res = await pd.store.append(stream, [{ type: 'NoteAdded', data: { text: 'beside a long write' } }], { projectId, expectedVersion: 'any' });
        // At once, not after the long transaction ends.
        expect((await pd.store.readAll({ afterPosition: last })).map((e) => e.position)).toContain(res.positions[0]);
        expect(await pd.store.lastPosition()).toBeGreaterThanOrEqual(res.positions[0]!);
        release();
        await long;
      } finally {
        await other.end({ timeout: 1 });
      }
    });

    it.skipIf(!server)('a writer reads its own append back at once, while transactions elsewhere on the server come and go', async () => {
      // Transactions in another database that take an id and end a few ms later, all the time. One that began
      // before an append and ends between a read's snapshot and its look at the lock table held that read back
      // (SETTLED cannot tell it did not append): a quarter of these reads missed their own event before
      // readAll and lastPosition asked again in that case.
      const churn = postgres(backend.serverUrl ?? SERVER_URL, { max: 6, onnotice: () => {} });
      let stop = false;
      const churners = Array.from({ length: 6 }, async () => {
        while (!stop) {
          await churn.begin(async (tx) => {
            await tx`SELECT pg_current_xact_id()`;
            await tx`SELECT pg_sleep(${Math.random() * 0.006})`;
          });
        }
      });
      const missed: string[] = [];
      try {
        for (let i = 0; i < 120; i++) {
          const stream = await newRun(`own-${i}`);
          const last = await pd.store.lastPosition();
          const res = await pd.store.append(stream, [{ type: 'TagAdded', data: { tag: `t${i}` } }], { projectId, expectedVersion: 'any' });
          const after = await pd.store.readAll({ afterPosition: last, streamId: stream });
          if (after.map((e) => e.eventId).join() !== res.eventIds.join()) missed.push(`readAll #${i}: ${after.length} events`);
          if ((await pd.store.lastPosition()) < res.positions[0]!) missed.push(`lastPosition #${i}`);
        }
      } finally {
        stop = true;
        await Promise.all(churners);
        await churn.end();
      }
      expect(missed).toEqual([]);
    });

    it.skipIf(!server)('an open append holds up neither an append on another stream nor is it skipped by a reader', async () => {
      const streamA = await newRun('held-open');
      const streamB = await newRun('meanwhile');
      const before = (await allRows(pd)).at(-1)!.position;

      // A's store applies a projection that, on A's event, reports its rows written and waits to be released.
      const aId = randomUUID();
      let reached!: (events: readonly StoredEvent[]) => void;
      const reachedP = new Promise<readonly StoredEvent[]>((r) => (reached = r));
      let release!: () => void;
      const releaseP = new Promise<void>((r) => (release = r));
      const blocker: Projection = {
        name: 'test-blocker',
        tables: [],
        async apply(_tx, events) {
          if (events.some((e) => e.eventId === aId)) {
            reached(events);
            await releaseP;
          }
        },
      };
      const storeA = new EventStore(pd.database.db, [lineageProjection, blocker]);
      const [storeB, storeC, reader] = [writerStores[0]!, writerStores[1]!, writerStores[2]!];

      // A reader that follows the project from `before`.
      const subSeen: StoredEvent[] = [];
      const sub = subscribe(reader, (batch) => void subSeen.push(...batch), { afterPosition: before, projectId, pollMs: 50 });
      await sub.ready;

      const a = storeA.append(streamA, [{ type: 'NoteAdded', eventId: aId, data: { text: 'A: held open inside its transaction' } }], { projectId, expectedVersion: 'any' });
      a.catch(() => {}); // awaited below; this only keeps an early failure from going unhandled
      let c: Promise<unknown> | undefined;
      try {
        const inA = await within(reachedP, 10_000);
        if (inA === 'timeout') throw new Error('append A never reached its projection');
        const aPosition = inA.value[0]!.position;
        expect(aPosition).toBeGreaterThan(before);

        const bId = randomUUID();
        const b = storeB.append(streamB, [{ type: 'NoteAdded', eventId: bId, data: { text: 'B: another stream, meanwhile' } }], { projectId, expectedVersion: 'any' });
        b.catch(() => {});
        const bDone = await within(b, 10_000);
        if (bDone === 'timeout') {
          throw new Error('append B on another stream waited for append A to commit: appends on different streams still serialise');
        }
        const bPosition = bDone.value.positions[0]!;
        expect(bPosition).toBeGreaterThan(aPosition);

        // B is committed: a plain read on another connection sees it …
        expect(await reader.db.query('SELECT position FROM events WHERE event_id = $1', [bId])).toEqual([{ position: bPosition }]);
        // … but a follower must not: taking B now would move it past A, which is still to come.
        expect(await reader.readAll({ afterPosition: before })).toEqual([]);
        expect(await reader.readAll({ afterPosition: before, projectId })).toEqual([]);
        expect(await pd.store.readAll({ afterPosition: before, limit: 1 })).toEqual([]);

        // C on A's stream waits for A (the per-stream lock), whatever it does meanwhile.
        let cSettled = false;
        c = storeC.append(streamA, [{ type: 'TagAdded', data: { tag: 'C-after-A' } }], { projectId, expectedVersion: 'any' });
        c.then(
          () => (cSettled = true),
          () => (cSettled = true),
        );
        await sleep(300); // B's notification has long woken the subscriber
        expect(cSettled).toBe(false);
        expect(subSeen).toEqual([]);
        expect(await reader.readAll({ afterPosition: before })).toEqual([]);

        release();
        const aRes = await a;
        expect(aRes.positions).toEqual([aPosition]);
        const cRes = (await c) as Awaited<typeof a>;
        expect(cRes.version).toBe(aRes.version + 1);
        expect(cRes.positions[0]!).toBeGreaterThan(bPosition);

        // Eventually (see the first test: an unrelated transaction elsewhere on the server may still hold it back a moment).
        await expect.poll(async () => (await reader.readAll({ afterPosition: before })).length, { timeout: 30_000 }).toBe(3);
        const after = await reader.readAll({ afterPosition: before });
        expect(after.map((e) => [e.eventId, e.position])).toEqual([
          [aId, aPosition],
          [bId, bPosition],
          [cRes.eventIds[0], cRes.positions[0]],
        ]);
        await expect.poll(() => subSeen.map((e) => e.position), { timeout: 30_000 }).toEqual([aPosition, bPosition, cRes.positions[0]]);
        expect((await pd.store.readStream(streamA)).map((e) => e.type)).toEqual(['RunCreated', 'NoteAdded', 'TagAdded']);
        expect(await pd.verify()).toMatchObject({ ok: true });
      } finally {
        release();
        await a.catch(() => {});
        await c?.catch(() => {});
        await sub.close();
      }
    });

    it(`the per-stream rules hold under parallel appends to one stream`, async () => {
      const stream = await newRun('one-stream');
      const startVersion = await pd.store.streamVersion(stream);
      const stores = writerStores;

      // Rounds of WRITERS racing appends with 'any': each must succeed, taking its own run of versions.
      const results: { version: number; positions: number[]; n: number }[] = [];
      for (let round = 0; round < 5; round++) {
        const batch = await Promise.all(
          stores.map(async (s, w) => {
            const n = (w % 3) + 1;
            const events: NewEvent[] = Array.from({ length: n }, (_, k) =>
              k % 2 === 0 ? { type: 'TagAdded', data: { tag: `r${round}-w${w}-${k}` } } : { type: 'NoteAdded', data: { text: `round ${round}, writer ${w}, event ${k}` } },
            );
            const res = await s.append(stream, events, { projectId, expectedVersion: 'any' });
            return { version: res.version, positions: res.positions, n };
          }),
        );
        results.push(...batch);
      }
      const versions = results.flatMap((r) => Array.from({ length: r.n }, (_, k) => r.version - r.n + 1 + k)).sort((x, y) => x - y);
      const total = results.reduce((s, r) => s + r.n, 0);
      expect(versions).toEqual(Array.from({ length: total }, (_, i) => startVersion + 1 + i)); // disjoint and gap-free
      for (const r of results) expect(r.positions).toEqual(r.positions.map((_, k) => r.positions[0]! + k)); // consecutive within an append
      const events = await pd.store.readStream(stream);
      expect(events.map((e) => e.streamVersion)).toEqual(events.map((_, i) => i + 1));
      expect(events.map((e) => e.position)).toEqual([...events.map((e) => e.position)].sort((x, y) => x - y));
      expect(await pd.verify({ streamId: stream })).toMatchObject({ ok: true, checked: startVersion + total });

      // Racing appends that all expect the same version: one wins, the others get a typed conflict.
      for (let round = 0; round < 5; round++) {
        const expected = await pd.store.streamVersion(stream);
        const settled = await Promise.allSettled(
          stores.map((s, w) => s.append(stream, [{ type: 'TagAdded', data: { tag: `cas-${round}-${w}` } }], { projectId, expectedVersion: expected })),
        );
        const won = settled.filter((r) => r.status === 'fulfilled');
        expect(won).toHaveLength(1);
        for (const r of settled) if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(ConcurrencyError);
        expect(await pd.store.streamVersion(stream)).toBe(expected + 1);
      }

      // Identical retries racing on the same event ids: both succeed, one as a duplicate; stored once.
      for (let pair = 0; pair < 20; pair++) {
        const ids = [randomUUID(), randomUUID()];
        const events: NewEvent[] = [
          { type: 'NoteAdded', eventId: ids[0], data: { text: `retried note ${pair}` } },
          { type: 'TagAdded', eventId: ids[1], data: { tag: `retried-${pair}` } },
        ];
        const [s1, s2] = [stores[pair % stores.length]!, stores[(pair + 1) % stores.length]!];
        const twins = await Promise.all([
          s1.append(stream, events, { projectId, expectedVersion: 'any' }),
          s2.append(stream, events, { projectId, expectedVersion: 'any' }),
        ]);
        expect(twins.map((r) => r.duplicate).sort()).toEqual([false, true]);
        expect(twins[1]!.positions).toEqual(twins[0]!.positions);
        expect(twins[1]!.version).toBe(twins[0]!.version);
        const [row] = await pd.database.db.query<{ n: number }>('SELECT count(*)::int AS n FROM events WHERE event_id = ANY($1::uuid[])', [ids]);
        expect(row!.n).toBe(2);
      }

      const final = await pd.store.readStream(stream);
      expect(final.map((e) => e.streamVersion)).toEqual(final.map((_, i) => i + 1));
      expect(await pd.verify()).toMatchObject({ ok: true });
    });
  });
}
