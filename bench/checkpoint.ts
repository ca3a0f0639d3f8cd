/**
 * Tree heads of the event log (packages/ledger/src/checkpoint.ts): how long
 * `logTreeHead` (the RFC 9162 root of every event, from the hash column), a
 * `checkLogAgainst` (root at the checkpoint's size + root of the whole log +
 * consistency proof, one pass) and an incremental `LogTreeFollower.advance`
 * take, and the heap they need, on PostgreSQL and PGlite; against the
 * baseline of reading the same hash column without hashing anything.
 *
 *   npx tsx bench/checkpoint.ts [--quick]        (1,000,000 events; quick: 100,000)
 *
 * The events are synthetic rows (generate_series, with SHA-256 hashes): the
 * tree reads nothing but position and hash, so their content does not matter.
 * Figures are printed, never asserted.
 */
import { randomBytes } from 'node:crypto';
import postgres from 'postgres';
import { migrate, openPglite, openPostgres, type Db } from '@pedigree/db';
import { checkLogAgainst, eventLeafHashes, logTreeHead, LogTreeFollower, MerkleFrontier } from '@pedigree/ledger';

const quick = process.argv.includes('--quick');
const N = quick ? 100_000 : 1_000_000;
const SERVER_URL = process.env.PEDIGREE_BENCH_DATABASE_URL ?? process.env.PEDIGREE_TEST_DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/test';

const fmt = (ms: number) => (ms < 1000 ? `${ms.toFixed(0)} ms` : `${(ms / 1000).toFixed(2)} s`);
const rate = (n: number, ms: number) => `${Math.round((n / ms) * 1000).toLocaleString('en-US')}/s`;
const heapMb = () => process.memoryUsage().heapUsed / 2 ** 20;

async function timed<T>(label: string, n: number, fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  globalThis.gc?.();
  const heapBefore = heapMb();
  let peak = heapBefore;
  const sampler = setInterval(() => (peak = Math.max(peak, heapMb())), 20);
  const t0 = performance.now();
  const value = await fn();
  const ms = performance.now() - t0;
  clearInterval(sampler);
  peak = Math.max(peak, heapMb());
  console.log(`  ${label.padEnd(58)} ${fmt(ms).padStart(9)}  ${rate(n, ms).padStart(12)}  heap +${(peak - heapBefore).toFixed(0)} MB (sampled)`);
  return { ms, value };
}

async function fill(db: Db, n: number): Promise<void> {
  // Positions with gaps (every 7th skipped), as failed transactions leave them.
  await db.exec(`
    ALTER TABLE events DISABLE TRIGGER USER;
    INSERT INTO events (position, stream_id, stream_version, event_id, project_id, type, schema_version, data, metadata, recorded_at, prev_hash, hash)
    SELECT i + i / 6, 'run-00000000-0000-4000-8000-' || lpad(to_hex(i / 100), 12, '0'), i % 100 + 1,
           ('00000000-0000-4000-8000-' || lpad(to_hex(i), 12, '0'))::uuid, '00000000-0000-4000-8000-000000000000', 'TagAdded', 1,
           '{"tag":"x"}', '{}', now(), repeat('0', 64), encode(sha256(i::text::bytea), 'hex')
    FROM generate_series(1, ${n}) AS s(i);
    ALTER TABLE events ENABLE TRIGGER USER;
    ANALYZE events;`);
}

async function measure(name: string, db: Db): Promise<void> {
  console.log(`${name}: ${N.toLocaleString('en-US')} events`);
  const baseline = await timed('baseline: read position + hash, batches of 10,000', N, async () => {
    let n = 0;
    let after = 0;
    for (;;) {
      const rows = await db.query<{ position: number; hash: string }>('SELECT position, hash FROM events WHERE position > $1 ORDER BY position LIMIT 10000', [after]);
      if (rows.length === 0) return n;
      n += rows.length;
      after = rows[rows.length - 1]!.position;
    }
  });
  const head = await timed('logTreeHead (MTH of every event)', N, () => logTreeHead(db));
  // A checkpoint of the first half, as one taken earlier would be.
  const frontier = new MerkleFrontier();
  let last = 0;
  for await (const h of eventLeafHashes(db, { onLeaf: (p) => (last = p) })) {
    frontier.pushLeafHash(h);
    if (frontier.size === N / 2) break;
  }
  const half = { treeSize: frontier.size, rootHash: frontier.root(), lastPosition: last };
  const check = await timed('checkLogAgainst a checkpoint of half the log', N, () => checkLogAgainst(db, half));
  if (!check.value.ok) throw new Error('the log should extend its own half');
  const follower = new LogTreeFollower();
  await timed('LogTreeFollower.advance from nothing (start-up)', N, () => follower.advance(db));
  const more = 1000;
  await db.exec(`
    INSERT INTO events (position, stream_id, stream_version, event_id, project_id, type, schema_version, data, metadata, recorded_at, prev_hash, hash)
    SELECT 10000000 + i, 'run-10000000-0000-4000-8000-' || lpad(to_hex(i), 12, '0'), 1, gen_random_uuid(), '00000000-0000-4000-8000-000000000000',
           'TagAdded', 1, '{"tag":"y"}', '{}', now(), repeat('0', 64), encode(sha256(('more' || i)::bytea), 'hex')
    FROM generate_series(1, ${more}) AS s(i);`);
  await timed(`LogTreeFollower.advance by ${more} events (a periodic checkpoint)`, more, () => follower.advance(db));
  console.log(`  tree head / baseline read: ×${(head.ms / baseline.ms).toFixed(2)}; proof of ${check.value.consistencyProof!.length} hashes`);
}

async function main(): Promise<void> {
  const t0 = performance.now();
  const frontier = new MerkleFrontier();
  const leaf = randomBytes(32);
  for (let i = 0; i < N; i++) frontier.push(leaf);
  frontier.root();
  const ms = performance.now() - t0;
  console.log(`in memory: ${N.toLocaleString('en-US')} leaves into the frontier in ${fmt(ms)} (${rate(N, ms)}; ~2 SHA-256 per leaf)`);

  const name = `pedigree_bench_${randomBytes(6).toString('hex')}`;
  const admin = postgres(SERVER_URL, { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`CREATE DATABASE ${name}`);
    const u = new URL(SERVER_URL);
    u.pathname = `/${name}`;
    const db = await openPostgres(u.toString());
    try {
      await migrate(db);
      await fill(db, N);
      await measure('PostgreSQL', db);
    } finally {
      await db.close();
    }
  } catch (err) {
    console.log(`PostgreSQL: skipped (${(err as Error).message})`);
  } finally {
    await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).catch(() => {});
    await admin.end();
  }

  const pglite = await openPglite(':memory:');
  try {
    await migrate(pglite);
    await fill(pglite, N);
    await measure('PGlite (in memory)', pglite);
  } finally {
    await pglite.close();
  }
}

await main();
