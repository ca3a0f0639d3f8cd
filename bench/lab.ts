/**
 * A lab under load (issue 17, item 5): N trainers (default 64), each logging
 * 10 metrics every 100 ms through the typed client and sending them once a
 * second (a 100-point batch), plus M dashboard readers (default 16) opening
 * run pages (runs.list, runs.get, metrics.keys, metrics.chart for 4 keys,
 * then a pause), against the real server (`pedigree start`, over HTTP), in
 * two layouts measured in the same run, one after the other:
 *
 *   single    one PostgreSQL server: `pedigree start --url <primary>`
 *   replicas  primary + 2 streaming replicas + PgBouncer (transaction mode):
 *             `pedigree start --url <pgbouncer>?pgbouncer=true
 *                --direct-url <primary> --read-url <replica1>,<replica2>`
 *
 * Every cluster is started for the layout and removed after it
 * (test/support/clusters.ts: initdb, pg_basebackup -R, pgbouncer, on free
 * loopback ports, fsync off, the same settings in both layouts). The load
 * is open-loop: trainers log on a 100 ms clock whatever the server does, so
 * an overloaded server shows as write latency and a backlog, not as a
 * politely slower trainer.
 *
 * Per layout: sustained points/s acknowledged (after a warm-up), against the
 * offered rate; p50/p99 write latency (a batch's flush until acknowledged,
 * queueing behind earlier batches included); p50/p99 read latency (each
 * request, and per procedure); replica lag (pg_stat_replication on the
 * primary: bytes between pg_current_wal_lsn and each replica's replay_lsn,
 * and replay_lag in ms, sampled every 500 ms); errors by kind; CPU seconds
 * by component (server, primary, replicas, pgbouncer, this process's
 * clients) from /proc; WAL bytes written per point (pg_current_wal_lsn
 * before and after) and the table bytes per stored point
 * (pg_total_relation_size); stored = acknowledged points. Then a storage
 * probe for docs/scale.md's capacity model (storageProbe: bytes, WAL and
 * CPU per point by batch shape, and one replica's replay rate).
 *
 *   npx tsx bench/run.ts [--quick] lab
 *
 * Environment: PEDIGREE_BENCH_LAB_TRAINERS (64; quick 16),
 * PEDIGREE_BENCH_LAB_READERS (16; quick 4), PEDIGREE_BENCH_LAB_SECONDS of
 * load per layout (75; quick 30), PEDIGREE_BENCH_LAB_LAYOUTS
 * (single,replicas; also pooler: PgBouncer only, reads: replicas only; none
 * for the storage probe alone), PEDIGREE_BENCH_LAB_POOL (PgBouncer server connections,
 * 20), PEDIGREE_BENCH_LAB_THINK_MS (a reader's pause between pages, 1000).
 */
import { readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { connect, type Pedigree, type Run } from '@pedigree/client';
import { APP_ROLE } from '@pedigree/db';
import { openPedigree } from '@pedigree/lineage';
import { clustersUnavailable, pgbouncerUnavailable, startPgbouncer, startPrimary, startReplica, withSql, type Bouncer, type Cluster } from '../test/support/clusters.ts';
import { pedigreeCommand, pedigreeServer, type PedigreeServer } from '../test/support/server.ts';
import { POOL_LOGIN } from '../test/support/stores.ts';
import { fmtInt, fmtMs, rng, table, type Benchmark, type Figure } from './lib.ts';
import type postgres from 'postgres';

const METRICS = Array.from({ length: 10 }, (_, i) => `m${i}`);
const STEP_MS = 100;
/** Steps per batch: one request a second per trainer, as the client's default flush interval would send. */
const STEPS_PER_BATCH = 10;
const CHART_KEYS = 4;
const CHART_BUCKETS = 500;
const LAG_SAMPLE_MS = 500;
/** After the load: how long the trainers get to send their backlog before the stored points are counted. */
const DRAIN_LIMIT_MS = 30_000;
const PROJECT = 'lab';
const DB = 'pedigree';
const CLK_TCK = 100;
/** What the ledger stores: the events, their ids and the metric chunks, each the sum of its partitions. */
const LEDGER_TABLES = ['events', 'event_ids', 'metric_chunks'];
const ledgerBytes = (sql: postgres.Sql) =>
  sql`(SELECT sum(pg_total_relation_size(t.relid)) FROM unnest(${LEDGER_TABLES}::regclass[]) AS r(rel), pg_partition_tree(r.rel) AS t)::float8`;

export interface LabOptions {
  trainers: number;
  readers: number;
  seconds: number;
  poolSize: number;
  thinkMs: number;
  log(msg: string): void;
}

interface CpuSeconds {
  machine: number;
  server: number;
  primary: number;
  replicas: number;
  pgbouncer: number;
  clients: number;
}

export interface LabResult {
  layout: LabLayout;
  /** Seconds measured (after the warm-up). */
  seconds: number;
  offered: number;
  sustained: number;
  acked: number;
  stored: number;
  writeP50: number;
  writeP99: number;
  writes: number;
  readP50: number;
  readP99: number;
  reads: number;
  byProcedure: Map<string, number[]>;
  /** Max over replicas per sample; null for one server. */
  lagBytesP50: number | null;
  lagBytesMax: number | null;
  lagMsP50: number | null;
  lagMsMax: number | null;
  errors: Map<string, number>;
  retries: Map<string, number>;
  cpu: CpuSeconds;
  walBytesPerPoint: number;
  tableBytesPerPoint: number;
  tableBytes: Record<string, number>;
  backlogAtEnd: number;
  loadAvg: number;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, Math.max(0, ms)));
const percentile = (sorted: number[], p: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]! : NaN);
const fmtLat = (v: number) => (Number.isNaN(v) ? '—' : fmtMs(v));
const fmtBytes = (b: number) => (b >= 1 << 20 ? `${(b / (1 << 20)).toFixed(1)} MiB` : b >= 1024 ? `${(b / 1024).toFixed(1)} KiB` : `${Math.round(b)} B`);

function errorKind(err: unknown): string {
  const e = err as { code?: unknown; name?: string; message?: string };
  const code = typeof e?.code === 'string' ? e.code : e?.name ?? 'Error';
  return `${code}: ${(e?.message ?? String(err)).split('\n')[0]!.slice(0, 80)}`;
}

// ---------------------------------------------------------------- CPU from /proc

/** utime+stime (and, with children, cutime+cstime) of a process, in seconds; 0 once it is gone. */
function procCpu(pid: number, children = false): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // After the comm: state(0) ppid(1) pgrp(2) … utime(11) stime(12) cutime(13) cstime(14)
    const ticks = Number(f[11]) + Number(f[12]) + (children ? Number(f[13]) + Number(f[14]) : 0);
    return ticks / CLK_TCK;
  } catch {
    return 0;
  }
}

function procs(): { pid: number; ppid: number; pgrp: number; cmd: string[] }[] {
  const out: { pid: number; ppid: number; pgrp: number; cmd: string[] }[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.push({ pid: Number(name), ppid: Number(f[1]), pgrp: Number(f[2]), cmd: readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0').filter(Boolean) });
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** A cluster's CPU: its postmaster with every child it has reaped, plus the live children. */
function clusterCpu(cluster: Cluster, all: ReturnType<typeof procs>): number {
  const pid = Number(readFileSync(path.join(cluster.dir, 'data', 'postmaster.pid'), 'utf8').split('\n')[0]);
  return procCpu(pid, true) + all.filter((p) => p.ppid === pid).reduce((s, p) => s + procCpu(p.pid), 0);
}

/** Busy CPU seconds of the whole machine (all cores), from /proc/stat. */
function machineBusy(): number {
  const [cpu] = readFileSync('/proc/stat', 'utf8').split('\n');
  const v = cpu!.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal
  return (v[0]! + v[1]! + v[2]! + v[5]! + v[6]! + v[7]!) / CLK_TCK;
}

function cpuNow(s: { server?: PedigreeServer; primary: Cluster; replicas: Cluster[]; bouncerPort?: number }): CpuSeconds {
  const all = procs();
  const serverPid = s.server?.pid;
  const server = serverPid ? all.filter((p) => p.pgrp === serverPid).reduce((a, p) => a + procCpu(p.pid), 0) : 0;
  const bouncer = s.bouncerPort
    ? all
        .filter((p) => p.cmd[0]?.endsWith('pgbouncer') && p.cmd[1]?.endsWith('.ini'))
        .filter((p) => {
          try {
            return new RegExp(`^listen_port = ${s.bouncerPort}$`, 'm').test(readFileSync(p.cmd[1]!, 'utf8'));
          } catch {
            return false;
          }
        })
        .reduce((a, p) => a + procCpu(p.pid), 0)
    : 0;
  const usage = process.cpuUsage();
  return {
    machine: machineBusy(),
    server,
    primary: clusterCpu(s.primary, all),
    replicas: s.replicas.reduce((a, r) => a + clusterCpu(r, all), 0),
    pgbouncer: bouncer,
    clients: (usage.user + usage.system) / 1e6,
  };
}

function cpuDelta(a: CpuSeconds, b: CpuSeconds): CpuSeconds {
  return { machine: b.machine - a.machine, server: b.server - a.server, primary: b.primary - a.primary, replicas: b.replicas - a.replicas, pgbouncer: b.pgbouncer - a.pgbouncer, clients: b.clients - a.clients };
}

// ---------------------------------------------------------------- layouts

interface Stack {
  primary: Cluster;
  replicas: Cluster[];
  bouncer?: Bouncer;
  server: PedigreeServer;
  describe: string;
  stop(): Promise<void>;
}

/**
 * What each layout puts between the server and the primary. `single` and
 * `replicas` are the issue's two; `pooler` (PgBouncer only) and `reads`
 * (replicas only, no pooler) are there to tell which part of `replicas`
 * costs what.
 */
const LAYOUTS = {
  single: { pooler: false, replicas: 0 },
  replicas: { pooler: true, replicas: 2 },
  pooler: { pooler: true, replicas: 0 },
  reads: { pooler: false, replicas: 2 },
} as const;
export type LabLayout = keyof typeof LAYOUTS;

/** The clusters of a layout, migrated, with the server started on them. */
async function startStack(layout: LabLayout, opts: LabOptions): Promise<Stack> {
  const shape = LAYOUTS[layout];
  const replicas: Cluster[] = [];
  let bouncer: Bouncer | undefined;
  let server: PedigreeServer | undefined;
  const primary = await startPrimary();
  const stop = async () => {
    if (server?.pid) await server.stop().catch(() => server?.kill());
    await bouncer?.stop().catch(() => {});
    for (const r of replicas) await r.stop().catch(() => {});
    await primary.stop().catch(() => {});
  };
  try {
    await withSql(primary.url(), async (sql) => {
      await sql.unsafe(`CREATE DATABASE ${DB}`);
      // The pooler's login runs as the app role from the start (docs/scale.md).
      await sql.unsafe(`CREATE ROLE ${APP_ROLE} NOLOGIN; CREATE ROLE ${POOL_LOGIN} LOGIN IN ROLE ${APP_ROLE}; ALTER ROLE ${POOL_LOGIN} SET role = ${APP_ROLE}`);
    });
    for (const args of [['migrate'], ['projects', 'create', PROJECT]]) {
      const r = await pedigreeCommand([...args, '--url', primary.url(DB)], { timeoutMs: 180_000 });
      if (r.code !== 0) throw new Error(`pedigree ${args.join(' ')} failed: ${r.stderr || r.stdout}`);
    }
    for (let i = 0; i < shape.replicas; i++) replicas.push(await startReplica(primary));
    if (shape.pooler) bouncer = await startPgbouncer(primary, { serverUser: POOL_LOGIN, poolSize: opts.poolSize, maxClients: 1000 });
    const args = [...(bouncer ? ['--direct-url', primary.url(DB)] : []), ...(replicas.length ? ['--read-url', replicas.map((r) => r.url(DB)).join(',')] : [])];
    server = await pedigreeServer({ url: bouncer ? bouncer.url(DB) : primary.url(DB), auth: 'open', demo: 'none', args });
    const describe = [`primary :${primary.port}`, ...(replicas.length ? [`replicas :${replicas.map((r) => r.port).join(', :')}`] : []), ...(bouncer ? [`pgbouncer :${bouncer.port} (pool ${opts.poolSize})`] : [])].join(', ');
    const info = await server.start();
    if ((info.replicas?.length ?? 0) !== replicas.length) throw new Error(`the server reads from ${JSON.stringify(info.replicas)}, expected ${replicas.length} replicas`);
    return { primary, replicas, bouncer, server, describe, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

// ---------------------------------------------------------------- one layout

export async function runLab(layout: LabLayout, opts: LabOptions): Promise<LabResult> {
  const { log } = opts;
  const t0Setup = performance.now();
  const stack = await startStack(layout, opts);
  const clients: Pedigree[] = [];
  /** Set once the figures are taken: what the clients retry while they are closed is not the load's. */
  let tearingDown = false;
  try {
    log(`${layout}: ${stack.describe}; server ${stack.server.url} up, setup took ${fmtMs(performance.now() - t0Setup)}`);
    const warmupMs = Math.min(10_000, (opts.seconds * 1000) / 6);
    const loadMs = opts.seconds * 1000 + warmupMs;

    let stopping = false;
    let measuring = false;
    let logged = 0;
    let loggedMeasured = 0;
    let ackedMeasured = 0;
    const errors = new Map<string, number>();
    /** Transient failures the client retried (not errors unless the retries ran out). */
    const retries = new Map<string, number>();
    const noteError = (who: string, err: unknown) => {
      const kind = `${who}: ${errorKind(err)}`;
      if (!errors.has(kind)) log(`error (${kind})`);
      errors.set(kind, (errors.get(kind) ?? 0) + 1);
    };
    const writeLat: number[] = [];
    const readLat: number[] = [];
    const byProcedure = new Map<string, number[]>();
    const runIds: string[] = [];
    const runs: Run[] = [];

    const base = { url: stack.server.url, handleSignals: false, batchSize: 10_000, flushIntervalMs: 600_000 } as const;

    // ------------------------------------------------------------ trainers
    const trainer = async (i: number) => {
      const pd = await connect({
        ...base,
        onRetry: (what, _attempt, err) => {
          if (tearingDown) return;
          const kind = `${what}: ${errorKind(err)}`;
          retries.set(kind, (retries.get(kind) ?? 0) + 1);
        },
      });
      clients.push(pd);
      const rand = rng(7000 + i);
      let run = await pd.startRun({ project: PROJECT, name: `trainer-${i}`, kind: 'pretrain', hyperparameters: { lr: 3e-4, trainer: i } });
      runIds.push(run.id);
      runs.push(run);
      // Trainers do not start in step: spread over the first batch period.
      let next = performance.now() + rand() * STEP_MS * STEPS_PER_BATCH;
      for (let step = 0; !stopping; step++) {
        await sleep(next - performance.now());
        next += STEP_MS;
        if (stopping) break;
        const x = step / 1e4;
        const values: Record<string, number> = {};
        for (const [k, key] of METRICS.entries()) values[key] = Math.exp(-x * (k + 1)) + 0.01 * rand();
        try {
          run.log(values, step);
        } catch (err) {
          // A refused batch fails the run's later calls: count it, start a new run, go on.
          noteError('trainer log', err);
          run = await pd.startRun({ project: PROJECT, name: `trainer-${i}-again`, kind: 'pretrain' }).then(
            (again) => {
              runs.push(again);
              runIds.push(again.id);
              return again;
            },
            (e) => {
              noteError('trainer startRun', e);
              return run;
            },
          );
          continue;
        }
        logged += METRICS.length;
        if (measuring) loggedMeasured += METRICS.length;
        if ((step + 1) % STEPS_PER_BATCH === 0) {
          const t = performance.now();
          const inWindow = measuring;
          const points = METRICS.length * STEPS_PER_BATCH;
          // Not awaited: the trainer goes on logging while the batch is in flight (the client sends one at a time per run, in order).
          run.flush().then(
            () => {
              if (inWindow && measuring) {
                writeLat.push(performance.now() - t);
                ackedMeasured += points;
              }
            },
            (err) => noteError('trainer write', err),
          );
        }
      }
    };

    // ------------------------------------------------------------ readers
    const timed = async <T>(what: string, fn: () => Promise<T>): Promise<T | undefined> => {
      const t = performance.now();
      try {
        const r = await fn();
        if (measuring) {
          const ms = performance.now() - t;
          readLat.push(ms);
          const l = byProcedure.get(what) ?? [];
          l.push(ms);
          byProcedure.set(what, l);
        }
        return r;
      } catch (err) {
        noteError(`reader ${what}`, err);
        return undefined;
      }
    };
    const reader = async (i: number) => {
      const pd = await connect({ ...base, retry: { retryForMs: 0 } });
      clients.push(pd);
      const rand = rng(9000 + i);
      await sleep(rand() * opts.thinkMs);
      while (!stopping) {
        await timed('runs.list', () => pd.api.runs.list.query({ project: PROJECT, limit: 100 }));
        const runId = runIds[Math.floor(rand() * runIds.length)];
        if (runId) {
          await timed('runs.get', () => pd.api.runs.get.query({ runId }));
          const keys = await timed('metrics.keys', () => pd.api.metrics.keys.query({ runId }));
          // The run page draws its charts at once.
          await Promise.all((keys ?? []).slice(0, CHART_KEYS).map((k) => timed('metrics.chart', () => pd.api.metrics.chart.query({ runId, key: k.key, buckets: CHART_BUCKETS }))));
        }
        await sleep(opts.thinkMs * (0.5 + rand()));
      }
    };

    // ------------------------------------------------------------ replica lag
    const lagBytes: number[] = [];
    const lagMs: number[] = [];
    let sampling = true;
    const lagSampler = (async () => {
      if (!stack.replicas.length) return;
      await withSql(stack.primary.url(DB), async (sql) => {
        while (sampling) {
          const rows = await sql<{ bytes: number | null; ms: number | null }[]>`
            SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::float8 AS bytes, (extract(epoch FROM replay_lag) * 1000)::float8 AS ms FROM pg_stat_replication`;
          if (measuring && rows.length) {
            lagBytes.push(Math.max(...rows.map((r) => r.bytes ?? 0)));
            lagMs.push(Math.max(...rows.map((r) => r.ms ?? 0)));
          }
          await sleep(LAG_SAMPLE_MS);
        }
      });
    })().catch((err) => noteError('lag sampler', err));

    // ------------------------------------------------------------ the load
    const walAt = async () => (await withSql(stack.primary.url(DB), (sql) => sql<{ lsn: string }[]>`SELECT pg_current_wal_lsn()::text AS lsn`))[0]!.lsn;
    const walBytes = async (from: string, to: string) =>
      (await withSql(stack.primary.url(DB), (sql) => sql<{ d: number }[]>`SELECT pg_wal_lsn_diff(${to}::pg_lsn, ${from}::pg_lsn)::float8 AS d`))[0]!.d;
    log(`${layout}: ${opts.trainers} trainers × ${METRICS.length} metrics every ${STEP_MS} ms (${fmtInt(opts.trainers * METRICS.length * (1000 / STEP_MS))} points/s offered, ${METRICS.length * STEPS_PER_BATCH}-point batches) + ${opts.readers} readers (run page: runs.list, runs.get, metrics.keys, ${CHART_KEYS}× metrics.chart of ${CHART_BUCKETS} buckets; ${opts.thinkMs} ms think time), ${fmtMs(warmupMs)} warm-up + ${opts.seconds} s measured`);
    const load = [
      ...Array.from({ length: opts.trainers }, (_, i) => trainer(i).catch((err) => noteError('trainer connect', err))),
      ...Array.from({ length: opts.readers }, (_, i) => reader(i).catch((err) => noteError('reader connect', err))),
    ];
    const tStart = performance.now();
    await sleep(warmupMs);
    measuring = true;
    const walStart = await walAt();
    const cpuStart = cpuNow({ server: stack.server, primary: stack.primary, replicas: stack.replicas, bouncerPort: stack.bouncer?.port });
    const tMeasure = performance.now();
    const printer = setInterval(() => {
      const t = (performance.now() - tMeasure) / 1000;
      log(`${layout} t=${t.toFixed(0)} s: ${fmtInt(ackedMeasured / t)} points/s acked (offered ${fmtInt(loggedMeasured / t)}), writes p50 ${fmtLat(percentile([...writeLat].sort((a, b) => a - b), 50))}, reads ${readLat.length}, errors ${[...errors.values()].reduce((a, b) => a + b, 0)}, lag ${lagBytes.length ? fmtBytes(lagBytes[lagBytes.length - 1]!) : '—'}, load ${os.loadavg()[0]!.toFixed(1)}`);
    }, 10_000);
    await sleep(tStart + loadMs - performance.now());
    const seconds = (performance.now() - tMeasure) / 1000;
    const cpuEnd = cpuNow({ server: stack.server, primary: stack.primary, replicas: stack.replicas, bouncerPort: stack.bouncer?.port });
    const walEnd = await walAt();
    const loadAvg = os.loadavg()[0]!;
    measuring = false;
    clearInterval(printer);
    const sustained = ackedMeasured / seconds;
    const offered = loggedMeasured / seconds;
    const measuredAcked = ackedMeasured;

    // ------------------------------------------------------------ drain and check
    stopping = true;
    sampling = false;
    await Promise.all(load);
    const backlogAtEnd = logged - runs.reduce((a, r) => a + r.pointsSent, 0);
    const drained = await Promise.race([Promise.all(runs.map((r) => r.finish().catch((err) => noteError('trainer finish', err)))).then(() => true), sleep(DRAIN_LIMIT_MS).then(() => false)]);
    if (!drained) log(`${layout}: trainers did not drain within ${fmtMs(DRAIN_LIMIT_MS)}`);
    await lagSampler;
    const acked = runs.reduce((a, r) => a + r.pointsSent, 0);
    const { stored, sizes } = await withSql(stack.primary.url(DB), async (sql) => {
      const [{ stored }] = (await sql<{ stored: number }[]>`SELECT coalesce(sum(n), 0)::float8 AS stored FROM metric_chunks`) as unknown as [{ stored: number }];
      const rows = await sql<{ name: string; bytes: number }[]>`
        SELECT c.relname AS name, (SELECT sum(pg_total_relation_size(t.relid)) FROM pg_partition_tree(c.oid) t)::float8 AS bytes
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition ORDER BY 2 DESC`; // a partitioned table's size: the sum of its partitions'
      return { stored, sizes: Object.fromEntries(rows.map((r) => [r.name, r.bytes])) };
    });
    // Undrained batches may still commit after the count: then more may be stored than acknowledged, never fewer.
    if (drained ? stored !== acked : stored < acked) noteError('check', new Error(`stored ${stored} points, acknowledged ${acked}`));
    const wal = await walBytes(walStart, walEnd);

    const sort = (l: number[]) => [...l].sort((a, b) => a - b);
    const w = sort(writeLat);
    const r = sort(readLat);
    for (const [k, l] of byProcedure) byProcedure.set(k, sort(l));
    const lb = sort(lagBytes);
    const lm = sort(lagMs);
    const tableBytes = LEDGER_TABLES.reduce((sum, t) => sum + (sizes[t] ?? 0), 0);
    return {
      layout,
      seconds,
      offered,
      sustained,
      acked,
      stored,
      writeP50: percentile(w, 50),
      writeP99: percentile(w, 99),
      writes: w.length,
      readP50: percentile(r, 50),
      readP99: percentile(r, 99),
      reads: r.length,
      byProcedure,
      lagBytesP50: lb.length ? percentile(lb, 50) : null,
      lagBytesMax: lb.length ? lb[lb.length - 1]! : null,
      lagMsP50: lm.length ? percentile(lm, 50) : null,
      lagMsMax: lm.length ? lm[lm.length - 1]! : null,
      errors: new Map(errors), // copies: the teardown may still add to the live maps
      retries: new Map(retries),
      cpu: cpuDelta(cpuStart, cpuEnd),
      walBytesPerPoint: measuredAcked ? wal / measuredAcked : NaN,
      tableBytesPerPoint: stored ? tableBytes / stored : NaN,
      tableBytes: sizes,
      backlogAtEnd,
      loadAvg,
    };
  } finally {
    tearingDown = true;
    await Promise.all(clients.map((c) => Promise.race([c.close().catch(() => {}), sleep(5_000)])));
    await stack.stop();
  }
}

// ---------------------------------------------------------------- storage

export interface StorageShape {
  keys: number;
  steps: number;
  points: number;
  /** Points per second through tracker.logMetrics, one writer, one batch at a time. */
  rate: number;
  walBytesPerPoint: number;
  tableBytesPerPoint: number;
  /** Points per CPU-second: this process (the ledger's validation and chunking, as the server does it) and PostgreSQL. */
  perCpuApp: number;
  perCpuPostgres: number;
}

/**
 * What a point costs by batch shape, for the capacity model (docs/scale.md):
 * a fresh primary with full_page_writes on (as in production; the layouts
 * above run with it off), one writer logging `total` points through
 * `tracker.logMetrics` (the server's own path, without HTTP) in batches of
 * `keys × steps` points; the WAL written (pg_current_wal_lsn before and
 * after), the growth of the ledger's tables (LEDGER_TABLES) with their indexes and TOAST
 * (pg_total_relation_size), and the CPU seconds of this process and of the
 * cluster.
 */
export async function storageProbe(total: number, log: (msg: string) => void): Promise<{ shapes: StorageShape[]; replay: ReplayRate | null }> {
  const shapes = [
    { keys: 10, steps: 10 }, // the lab's trainers: 10 metrics, flushed every second at 10 steps/s
    { keys: 10, steps: 100 }, // the same, flushed every 10 s
    { keys: 10, steps: 1_000 }, // 10,000-point batches (the client's batchSize) over 10 keys
    { keys: 2, steps: 5_000 }, // the ingest bench's shape: 5,000 points per chunk row
  ];
  const primary = await startPrimary();
  let replica: Cluster | undefined;
  const out: StorageShape[] = [];
  let replay: ReplayRate | null = null;
  try {
    await withSql(primary.url(), async (sql) => {
      await sql.unsafe(`CREATE DATABASE ${DB}`);
      await sql.unsafe('ALTER SYSTEM SET full_page_writes = on');
      await sql`SELECT pg_reload_conf()`;
    });
    const pd = await openPedigree({ url: primary.url(DB) }, { migrate: true });
    // A replica whose replay is paused while the shapes are written, then resumed: how fast one
    // replica's startup process replays this WAL (it receives it meanwhile, so replay reads it locally).
    replica = await startReplica(primary);
    await withSql(replica.url(DB), (sql) => sql`SELECT pg_wal_replay_pause()`);
    try {
      const { projectId } = await pd.tracker.createProject({ name: 'storage' });
      const measureNow = async () =>
        withSql(primary.url(DB), async (sql) => {
          await sql`CHECKPOINT`; // every shape starts after a checkpoint, so its first touch of each page pays the full-page image
          const [row] = (await sql<{ lsn: string; bytes: number }[]>`
            SELECT pg_current_wal_lsn()::text AS lsn, ${ledgerBytes(sql)} AS bytes`) as unknown as [{ lsn: string; bytes: number }];
          return row;
        });
      for (const { keys, steps } of shapes) {
        const perBatch = keys * steps;
        const batches = Math.max(1, Math.round(total / perBatch));
        const { runId } = await pd.tracker.createRun({ projectId, name: `${keys}x${steps}`, kind: 'pretrain', start: true });
        const before = await measureNow();
        const cpu0 = { app: process.cpuUsage(), pg: clusterCpu(primary, procs()) };
        const t0 = performance.now();
        for (let b = 0; b < batches; b++) {
          const points = [];
          for (let s = 0; s < steps; s++) {
            const step = b * steps + s;
            for (let k = 0; k < keys; k++) points.push({ key: `m${k}`, step, value: Math.exp(-step / 1e5) * (k + 1) + Math.random() * 1e-3, time: 1.7e12 + step * STEP_MS });
          }
          await pd.tracker.logMetrics(runId, points);
        }
        const ms = performance.now() - t0;
        const app = process.cpuUsage(cpu0.app);
        const pgCpu = clusterCpu(primary, procs()) - cpu0.pg;
        const after = await withSql(primary.url(DB), async (sql) => {
          const [row] = (await sql<{ wal: number; bytes: number }[]>`
            SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), ${before.lsn}::pg_lsn)::float8 AS wal, ${ledgerBytes(sql)} AS bytes`) as unknown as [{ wal: number; bytes: number }];
          return row;
        });
        const n = batches * perBatch;
        const shape: StorageShape = {
          keys,
          steps,
          points: n,
          rate: (n * 1000) / ms,
          walBytesPerPoint: after.wal / n,
          tableBytesPerPoint: (after.bytes - before.bytes) / n,
          perCpuApp: n / ((app.user + app.system) / 1e6),
          perCpuPostgres: pgCpu > 0 ? n / pgCpu : NaN,
        };
        log(
          `storage ${fmtInt(perBatch).padStart(6)}-point batches (${keys} keys × ${steps} steps, ${fmtInt(n)} points): ${fmtInt(shape.rate)} points/s one writer; WAL ${shape.walBytesPerPoint.toFixed(1)} B/point, tables ${shape.tableBytesPerPoint.toFixed(1)} B/point; points per CPU-second: ledger (this process) ${fmtInt(shape.perCpuApp)}, PostgreSQL ${fmtInt(shape.perCpuPostgres)}`,
        );
        out.push(shape);
      }
      replay = await measureReplay(primary, replica, log);
    } finally {
      await pd.close();
    }
  } finally {
    await replica?.stop();
    await primary.stop();
  }
  return { shapes: out, replay };
}

export interface ReplayRate {
  bytes: number;
  seconds: number;
  /** Replica CPU seconds while it replayed (its startup process and the rest of it). */
  cpu: number;
}

/** Resumes the paused replica and times its replay up to the primary's current WAL position. */
async function measureReplay(primary: Cluster, replica: Cluster, log: (msg: string) => void): Promise<ReplayRate | null> {
  const [{ target }] = (await withSql(primary.url(DB), (sql) => sql<{ target: string }[]>`SELECT pg_current_wal_lsn()::text AS target`)) as unknown as [{ target: string }];
  return withSql(replica.url(DB), async (sql) => {
    // Wait until the replica has received everything, so that only replay is timed.
    for (let i = 0; i < 600; i++) {
      const [{ received }] = (await sql<{ received: boolean }[]>`SELECT pg_last_wal_receive_lsn() >= ${target}::pg_lsn AS received`) as unknown as [{ received: boolean }];
      if (received) break;
      await sleep(100);
    }
    const [{ behind }] = (await sql<{ behind: number }[]>`SELECT pg_wal_lsn_diff(${target}::pg_lsn, pg_last_wal_replay_lsn())::float8 AS behind`) as unknown as [{ behind: number }];
    const cpu0 = clusterCpu(replica, procs());
    const t0 = performance.now();
    await sql`SELECT pg_wal_replay_resume()`;
    for (let i = 0; ; i++) {
      const [{ done }] = (await sql<{ done: boolean }[]>`SELECT pg_last_wal_replay_lsn() >= ${target}::pg_lsn AS done`) as unknown as [{ done: boolean }];
      if (done) break;
      if (i > 12_000) {
        log('replay: the replica did not catch up within 120 s');
        return null;
      }
      await sleep(10);
    }
    const seconds = (performance.now() - t0) / 1000;
    const cpu = clusterCpu(replica, procs()) - cpu0;
    log(`replay: one replica replayed ${fmtBytes(behind)} of WAL in ${seconds.toFixed(2)} s (${fmtBytes(behind / seconds)}/s) using ${cpu.toFixed(1)} CPU-s (${fmtBytes(behind / Math.max(cpu, 0.01))} per CPU-second)`);
    return { bytes: behind, seconds, cpu };
  });
}

// ---------------------------------------------------------------- reporting

function report(r: LabResult, log: (msg: string) => void): void {
  const c = r.cpu;
  const perCore = (cpuS: number) => (cpuS > 0 ? fmtInt((r.sustained * r.seconds) / cpuS) : '—');
  log(`${r.layout}: sustained ${fmtInt(r.sustained)} points/s acknowledged of ${fmtInt(r.offered)} offered over ${r.seconds.toFixed(0)} s; ${fmtInt(r.acked)} acknowledged in all, ${fmtInt(r.stored)} stored; backlog when the load stopped ${fmtInt(r.backlogAtEnd)} points`);
  log(`${r.layout}: writes (100-point batch, flush → ack) p50 ${fmtLat(r.writeP50)}, p99 ${fmtLat(r.writeP99)} over ${fmtInt(r.writes)}; reads p50 ${fmtLat(r.readP50)}, p99 ${fmtLat(r.readP99)} over ${fmtInt(r.reads)} (${(r.reads / r.seconds).toFixed(1)}/s)`);
  log(`${r.layout}:   by procedure: ${[...r.byProcedure].map(([k, l]) => `${k} ${l.length}× p50 ${fmtLat(percentile(l, 50))} p99 ${fmtLat(percentile(l, 99))}`).join('; ')}`);
  log(`${r.layout}: replica lag ${r.lagBytesP50 === null ? 'n/a (no replicas)' : `p50 ${fmtBytes(r.lagBytesP50)}, max ${fmtBytes(r.lagBytesMax!)}; replay_lag p50 ${fmtLat(r.lagMsP50!)}, max ${fmtLat(r.lagMsMax!)}`}`);
  log(`${r.layout}: CPU over the window (s, of ${(os.cpus().length * r.seconds).toFixed(0)} available): machine ${c.machine.toFixed(1)}, server ${c.server.toFixed(1)}, primary ${c.primary.toFixed(1)}, replicas ${c.replicas.toFixed(1)}, pgbouncer ${c.pgbouncer.toFixed(1)}, clients (this process) ${c.clients.toFixed(1)}; load average ${r.loadAvg.toFixed(1)}`);
  log(`${r.layout}: points per CPU-second: server ${perCore(c.server)}, primary ${perCore(c.primary)}, server+primary ${perCore(c.server + c.primary)}`);
  log(`${r.layout}: WAL ${r.walBytesPerPoint.toFixed(1)} bytes per acknowledged point; tables (${LEDGER_TABLES.join(' + ')}) ${r.tableBytesPerPoint.toFixed(1)} bytes per stored point (${Object.entries(r.tableBytes).slice(0, 4).map(([k, v]) => `${k} ${fmtBytes(v)}`).join(', ')})`);
  log(`${r.layout}: errors ${r.errors.size ? [...r.errors].map(([k, n]) => `${n}× ${k}`).join('; ') : 'none'}; retried by the client ${r.retries.size ? [...r.retries].map(([k, n]) => `${n}× ${k}`).join('; ') : 'none'}`);
}

function figuresOf(r: LabResult): Figure[] {
  const bench = 'lab';
  const errs = [...r.errors.values()].reduce((a, b) => a + b, 0);
  return [
    { bench, what: `sustained points/s, ${r.layout}`, value: `${fmtInt(r.sustained)} points/s`, note: `offered ${fmtInt(r.offered)}; stored ${r.stored === r.acked ? 'all acknowledged' : `${fmtInt(r.stored)} of ${fmtInt(r.acked)}`}` },
    { bench, what: `write latency (100-point batch), ${r.layout}`, value: `p50 ${fmtLat(r.writeP50)}, p99 ${fmtLat(r.writeP99)}`, note: `${fmtInt(r.writes)} batches` },
    { bench, what: `read latency (run page), ${r.layout}`, value: `p50 ${fmtLat(r.readP50)}, p99 ${fmtLat(r.readP99)}`, note: `${fmtInt(r.reads)} requests` },
    { bench, what: `replica lag, ${r.layout}`, value: r.lagBytesMax === null ? 'n/a' : `max ${fmtBytes(r.lagBytesMax)}, ${fmtLat(r.lagMsMax!)}`, note: r.lagBytesP50 === null ? 'one server' : `p50 ${fmtBytes(r.lagBytesP50)}, ${fmtLat(r.lagMsP50!)}` },
    { bench, what: `CPU s (server / primary / replicas / pgbouncer), ${r.layout}`, value: `${r.cpu.server.toFixed(0)} / ${r.cpu.primary.toFixed(0)} / ${r.cpu.replicas.toFixed(0)} / ${r.cpu.pgbouncer.toFixed(0)}`, note: `of ${(os.cpus().length * r.seconds).toFixed(0)} over ${r.seconds.toFixed(0)} s; machine busy ${r.cpu.machine.toFixed(0)}` },
    { bench, what: `WAL and table bytes per point, ${r.layout}`, value: `${r.walBytesPerPoint.toFixed(0)} / ${r.tableBytesPerPoint.toFixed(0)} B`, note: `${METRICS.length * STEPS_PER_BATCH}-point batches (${STEPS_PER_BATCH} points per chunk row)` },
    { bench, what: `errors, ${r.layout}`, value: String(errs), note: [`${[...r.retries.values()].reduce((a, b) => a + b, 0)} retries`, ...[...r.errors].map(([k, n]) => `${n}× ${k}`)].join('; ').slice(0, 120) },
  ];
}

function intEnv(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name} must be a non-negative number, got ${JSON.stringify(raw)}`);
  return n;
}

export const lab: Benchmark = {
  name: 'lab',
  description: 'a lab: 64 trainers × 10 metrics every 100 ms + 16 dashboard readers over HTTP, against one server and against primary + 2 replicas + PgBouncer (quick: 16 + 4, 30 s each): points/s, write/read p50/p99, replica lag, CPU, errors',
  async run(ctx) {
    const why = pgbouncerUnavailable() ?? clustersUnavailable();
    if (why) throw new Error(`lab needs PostgreSQL clusters of its own: ${why}`);
    const opts: LabOptions = {
      trainers: intEnv('PEDIGREE_BENCH_LAB_TRAINERS', ctx.quick ? 16 : 64),
      readers: intEnv('PEDIGREE_BENCH_LAB_READERS', ctx.quick ? 4 : 16),
      seconds: intEnv('PEDIGREE_BENCH_LAB_SECONDS', ctx.quick ? 30 : 75),
      poolSize: intEnv('PEDIGREE_BENCH_LAB_POOL', 20),
      thinkMs: intEnv('PEDIGREE_BENCH_LAB_THINK_MS', 1000),
      log: ctx.log,
    };
    const layouts = (process.env.PEDIGREE_BENCH_LAB_LAYOUTS ?? 'single,replicas')
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s && s !== 'none') as LabLayout[];
    for (const l of layouts) if (!(l in LAYOUTS)) throw new Error(`PEDIGREE_BENCH_LAB_LAYOUTS: unknown layout ${l} (${Object.keys(LAYOUTS).join(', ')}, none)`);
    ctx.log(`${os.cpus().length} CPUs, load average ${os.loadavg().map((v) => v.toFixed(1)).join(' ')} before; everything (clusters, pooler, server, clients) on this machine, loopback only`);
    const results: LabResult[] = [];
    for (const layout of layouts) {
      const r = await runLab(layout, opts);
      report(r, ctx.log);
      results.push(r);
    }
    const { shapes: storage, replay } = await storageProbe(ctx.quick ? 200_000 : 300_000, ctx.log);
    if (results.length >= 2) {
      const [a, b] = results as [LabResult, LabResult];
      ctx.log(
        `${b.layout} / ${a.layout}: points/s ${(b.sustained / a.sustained).toFixed(2)}×, write p99 ${(b.writeP99 / a.writeP99).toFixed(2)}×, read p50 ${(b.readP50 / a.readP50).toFixed(2)}×, read p99 ${(b.readP99 / a.readP99).toFixed(2)}× (same machine: the replicas share its cores)`,
      );
      ctx.log(table([['layout', 'points/s', 'write p50', 'write p99', 'read p50', 'read p99', 'lag max', 'errors'], ...results.map((r) => [r.layout, fmtInt(r.sustained), fmtLat(r.writeP50), fmtLat(r.writeP99), fmtLat(r.readP50), fmtLat(r.readP99), r.lagBytesMax === null ? '—' : fmtBytes(r.lagBytesMax), String([...r.errors.values()].reduce((x, y) => x + y, 0))])]).replace(/\n/g, '\n[lab] '));
    }
    return [
      ...results.flatMap(figuresOf),
      ...storage.map((s) => ({
        bench: 'lab',
        what: `storage, ${fmtInt(s.keys * s.steps)}-point batches (${s.steps} points/chunk)`,
        value: `${s.tableBytesPerPoint.toFixed(1)} B/point, WAL ${s.walBytesPerPoint.toFixed(1)} B/point`,
        note: `${fmtInt(s.rate)} points/s one writer; per CPU-s: ledger ${fmtInt(s.perCpuApp)}, PostgreSQL ${fmtInt(s.perCpuPostgres)}`,
      })),
      ...(replay ? [{ bench: 'lab', what: 'WAL replay, one replica (paused, then resumed)', value: `${fmtBytes(replay.bytes / replay.seconds)}/s`, note: `${fmtBytes(replay.bytes)} in ${replay.seconds.toFixed(2)} s, ${replay.cpu.toFixed(1)} CPU-s` }] : []),
    ];
  },
};
