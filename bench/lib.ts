/**
 * Shared helpers for the benchmarks: timing (warmup + median of N), number
 * formatting, a plain-text table, and a fresh database on the PostgreSQL
 * server per benchmark (dropped afterwards).
 *
 * Benchmarks print figures; they never assert on time.
 */
import { randomBytes } from 'node:crypto';
import { appendFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import postgres from 'postgres';
import { postgresOf, type Db, type Queryable } from '@pedigree/db';
import { eventHash, GENESIS_HASH, type NewEvent, type StoredEvent } from '@pedigree/ledger';
import type { Pedigree } from '@pedigree/lineage';
import { probeServer } from '../test/support/stores.ts';

export const SERVER_URL = process.env.PEDIGREE_BENCH_DATABASE_URL ?? process.env.PEDIGREE_TEST_DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/test';

export interface BenchContext {
  quick: boolean;
  /** Prints a line prefixed with the benchmark's name. */
  log(msg: string): void;
}

/** One line of the final summary. */
export interface Figure {
  bench: string;
  what: string;
  value: string;
  note?: string;
}

export interface Benchmark {
  name: string;
  description: string;
  run(ctx: BenchContext): Promise<Figure[]>;
}

// ---------------------------------------------------------------- databases

/** A database of its own on the server (a copy of test/support/stores.ts's logic); returns its URL. */
export async function createServerDatabase(prefix = 'pedigree_bench'): Promise<{ url: string; name: string; drop(): Promise<void> }> {
  const name = `${prefix}_${randomBytes(6).toString('hex')}`;
  const admin = postgres(SERVER_URL, { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const u = new URL(SERVER_URL);
  u.pathname = `/${name}`;
  return {
    url: u.toString(),
    name,
    async drop() {
      const a = postgres(SERVER_URL, { max: 1, onnotice: () => {} });
      try {
        await a.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await a.end();
      }
    },
  };
}

/** null when the server answers, else why not. */
export function serverUnavailable(): Promise<string | null> {
  return probeServer(SERVER_URL);
}

/** Runs `fn` with a fresh server database, dropping it afterwards whatever happens. */
export async function withServerDatabase<T>(fn: (db: { url: string; name: string }) => Promise<T>): Promise<T> {
  const db = await createServerDatabase();
  try {
    return await fn(db);
  } finally {
    await db.drop().catch((err) => console.error(`could not drop ${db.name}: ${(err as Error).message}`));
  }
}

// ---------------------------------------------------------------- histories

/** One append, as a benchmark's history proposes it. */
export interface BulkAppend {
  streamId: string;
  projectId: string;
  events: NewEvent[];
}

/** COPY text format: escape backslash and the characters that end a field or a row. */
function copyText(v: string): string {
  return /[\\\t\n\r]/.test(v) ? v.replace(/\\/g, '\\\\').replace(/\t/g, '\\t').replace(/\n/g, '\\n').replace(/\r/g, '\\r') : v;
}

/** The columns copyAppends writes, in order (tx_id is left to its default). */
export const COPY_EVENT_COLUMNS = 'position, stream_id, stream_version, event_id, project_id, type, schema_version, data, metadata, recorded_at, prev_hash, hash';
export const COPY_CHUNK_COLUMNS = 'position, idx, project_id, run_id, key, n, first_step, last_step, min, max, last_value, steps, vals, times, blocks, digest, stride';

/** A segment of COPY text is sent once it holds this many characters (events and chunks together). */
const SEGMENT_CHARS = 8 << 20;

/**
 * Writes appends as the rows EventStore.append would insert (the same
 * validation, chunking and canonical JSON via store.prepare, the same hash
 * chain via eventHash, each stream continuing from its head): the events
 * rows, and for a MetricsLogged event (schema v2) its metric_chunks rows,
 * streamed with COPY in segments of a few MB (each segment: one COPY into
 * events, then one into metric_chunks). A history far faster than append's
 * INSERTs per event. Positions are taken here, from the events sequence (one
 * nextval, then setval past the last one written): the benchmark owns its
 * database, nothing else appends meanwhile. No projections (replay builds
 * them). Holds one segment and one head per stream. With `tee`, the COPY text
 * sent is also appended to those two files (for a baseline that loads the
 * same rows). Returns the events written.
 */
export async function copyAppends(pd: Pedigree, appends: Iterable<BulkAppend>, opts: { tee?: { events: string; chunks: string } } = {}): Promise<number> {
  const sql = postgresOf(pd.database.db);
  if (!sql) throw new Error('copyAppends needs a PostgreSQL server store');
  const heads = new Map<string, { version: number; hash: string }>();
  for (const [streamId, version, hash] of (await pd.database.db.query<{ stream_id: string; stream_version: number; hash: string }>(
    'SELECT DISTINCT ON (stream_id) stream_id, stream_version, hash FROM events ORDER BY stream_id, stream_version DESC',
  )).map((r) => [r.stream_id, r.stream_version, r.hash] as const)) {
    heads.set(streamId, { version, hash });
  }
  const [{ next }] = (await sql<{ next: string }[]>`SELECT nextval('events_position_seq')::text AS next`) as unknown as [{ next: string }];
  let position = Number(next);
  let written = 0;
  const send = async (events: string, chunks: string) => {
    if (opts.tee) {
      appendFileSync(opts.tee.events, events);
      appendFileSync(opts.tee.chunks, chunks);
    }
    if (events) await pipeline(Readable.from([events]), await sql.unsafe(`COPY events (${COPY_EVENT_COLUMNS}) FROM STDIN`).writable());
    if (chunks) await pipeline(Readable.from([chunks]), await sql.unsafe(`COPY metric_chunks (${COPY_CHUNK_COLUMNS}) FROM STDIN`).writable());
  };
  let events = '';
  let chunks = '';
  try {
    for (const { streamId, projectId, events: proposed } of appends) {
      const prepared = pd.store.prepare(proposed);
      const recordedAt = new Date();
      const at = recordedAt.toISOString();
      const head = heads.get(streamId) ?? { version: 0, hash: GENESIS_HASH };
      const runId = streamId.startsWith('run-') ? streamId.slice(4) : null;
      for (const p of prepared) {
        const base = { streamId, streamVersion: head.version + 1, eventId: p.eventId, projectId, type: p.type, schemaVersion: p.schemaVersion, data: p.data, metadata: p.metadata, recordedAt };
        const hash = eventHash(head.hash, base as Omit<StoredEvent, 'position' | 'prevHash' | 'hash'>, p.dataJson);
        events += `${position}\t${streamId}\t${base.streamVersion}\t${p.eventId}\t${projectId}\t${p.type}\t${p.schemaVersion}\t${copyText(p.dataJson)}\t${copyText(p.metadataJson)}\t${at}\t${head.hash}\t${hash}\n`;
        if (p.chunks) {
          if (!runId) throw new Error(`metrics belong to a run stream, not ${streamId}`);
          p.chunks.forEach((c, idx) => {
            chunks += `${position}\t${idx}\t${projectId}\t${runId}\t${copyText(c.key)}\t${c.n}\t${c.firstStep}\t${c.lastStep}\t${c.min}\t${c.max}\t${c.lastValue}\t\\\\x${c.columns.steps.toString('hex')}\t\\\\x${c.columns.vals.toString('hex')}\t\\\\x${c.columns.times.toString('hex')}\t\\\\x${c.columns.blocks.toString('hex')}\t${c.digest}\t${c.stride ?? '\\N'}\n`;
          });
        }
        head.version = base.streamVersion;
        head.hash = hash;
        position++;
        written++;
        if (events.length + chunks.length > SEGMENT_CHARS) {
          await send(events, chunks);
          events = '';
          chunks = '';
        }
      }
      heads.set(streamId, head);
    }
    await send(events, chunks);
  } finally {
    // The next append (and the next copyAppends) continues after the last position written.
    await sql`SELECT setval('events_position_seq', ${Math.max(position - 1, Number(next))})`;
  }
  return written;
}

// ---------------------------------------------------------------- timing

/**
 * Runs `a` then `b` on even repetitions and `b` then `a` on odd ones: the
 * target and its baseline take turns going first, so neither always gets the
 * warmer (or the busier) machine.
 */
export async function inTurn(rep: number, a: () => Promise<unknown>, b: () => Promise<unknown>): Promise<void> {
  const [first, second] = rep % 2 === 0 ? [a, b] : [b, a];
  await first();
  await second();
}

export async function timeIt<T>(fn: () => Promise<T> | T): Promise<{ ms: number; result: T }> {
  const t0 = performance.now();
  const result = await fn();
  return { ms: performance.now() - t0, result };
}

export interface Measurement {
  /** Median of the timed repetitions, ms. */
  median: number;
  min: number;
  max: number;
  samples: number[];
}

/** Warmup runs (not timed), then `reps` timed runs; the median is the figure. */
export async function measure(fn: () => Promise<unknown> | unknown, opts: { reps?: number; warmup?: number } = {}): Promise<Measurement> {
  for (let i = 0; i < (opts.warmup ?? 1); i++) await fn();
  const samples: number[] = [];
  for (let i = 0; i < (opts.reps ?? 5); i++) samples.push((await timeIt(fn)).ms);
  return summarize(samples);
}

export function summarize(samples: number[]): Measurement {
  const s = [...samples].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  const median = s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
  return { median, min: s[0]!, max: s[s.length - 1]!, samples };
}

// ---------------------------------------------------------------- formatting

export function fmtInt(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

export function fmtMs(ms: number): string {
  if (ms >= 10_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms >= 1000) return `${(ms / 1000).toFixed(2)} s`;
  if (ms >= 10) return `${ms.toFixed(0)} ms`;
  return `${ms.toFixed(2)} ms`;
}

export function fmtRate(count: number, ms: number, unit: string): string {
  return `${fmtInt((count * 1000) / ms)} ${unit}/s`;
}

export function fmtRatio(r: number): string {
  return r >= 10 ? `${r.toFixed(1)}×` : `${r.toFixed(2)}×`;
}

/** "median 1.23 s (min 1.20 s, max 1.30 s, n=5)" */
export function fmtMeasurement(m: Measurement): string {
  return `${fmtMs(m.median)} (min ${fmtMs(m.min)}, max ${fmtMs(m.max)}, n=${m.samples.length})`;
}

export function targetLine(ratio: number, target: number, what: string): string {
  return `${fmtRatio(ratio)} (target ≥ ${target}${what}: ${ratio >= target ? 'MET' : 'NOT MET'})`;
}

/** A plain-text table; the first row is the header. */
export function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  const line = (r: string[]) => r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c]!))).join('  ');
  return [line(rows[0]!), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.slice(1).map(line)].join('\n');
}

/** Deterministic pseudo-random numbers in [0, 1) (mulberry32), so runs are comparable. */
export { mulberry32 as rng } from '../packages/trainer/src/rng.ts';

// ---------------------------------------------------------------- profiling

/** Time spent per SQL statement (by its first words), and in transactions, while a profile is on. */
export interface QueryProfile {
  /** Per statement label: calls and total ms (awaiting the driver: round trip and server time). */
  statements: Map<string, { calls: number; ms: number }>;
  /** Transactions begun, and their total ms from BEGIN to COMMIT returning. */
  transactions: { calls: number; ms: number };
  stop(): void;
}

const label = (text: string) => text.replace(/\s+/g, ' ').trim().slice(0, 56);

/**
 * Wraps a Db's query and transaction (in place: the store and tracker hold
 * the same object) to time every statement. For a breakdown of where a
 * write's time goes; the wrappers cost microseconds a statement.
 */
export function profileQueries(db: Db): QueryProfile {
  const statements = new Map<string, { calls: number; ms: number }>();
  const transactions = { calls: 0, ms: 0 };
  const timed = (q: Queryable): Queryable['query'] =>
    async function query<T extends object>(text: string, params?: readonly unknown[]) {
      const t0 = performance.now();
      try {
        return await q.query<T>(text, params);
      } finally {
        const s = statements.get(label(text)) ?? { calls: 0, ms: 0 };
        s.calls++;
        s.ms += performance.now() - t0;
        statements.set(label(text), s);
      }
    };
  const original = { query: db.query, transaction: db.transaction };
  const mutable = db as { -readonly [K in keyof Db]: Db[K] };
  mutable.query = timed({ query: original.query.bind(db) });
  mutable.transaction = async function transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
    const t0 = performance.now();
    try {
      return await original.transaction.call(db, (tx: Queryable) => fn({ query: timed(tx) })) as T;
    } finally {
      transactions.calls++;
      transactions.ms += performance.now() - t0;
    }
  };
  return {
    statements,
    transactions,
    stop() {
      mutable.query = original.query;
      mutable.transaction = original.transaction;
    },
  };
}

/** "12.3 ms INSERT INTO events … (1 call)" lines, largest first, per `per` units (e.g. per batch). */
export function profileLines(p: QueryProfile, per: number): string[] {
  return [...p.statements]
    .sort((a, b) => b[1].ms - a[1].ms)
    .map(([text, s]) => `${fmtMs(s.ms / per).padStart(9)}  ${(s.calls / per).toFixed(s.calls % per ? 2 : 0).padStart(4)}×  ${text}`);
}
