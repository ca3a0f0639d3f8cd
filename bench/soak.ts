/**
 * Soak: the real server (`pedigree start`, in a child process of its own
 * process group) under 4 writers logging metric points as fast as the typed
 * client takes them, plus one "dashboard" reader doing what the run page
 * does over the API (runs.list, runs.get, metrics.keys, metrics.buckets and a
 * live runs.watch per writer's run), for a bounded time (default 10 minutes).
 *
 * Every 30 s (10 s when the soak is shorter than 5 minutes) it prints the
 * server's RSS (VmRSS of the node process that holds the store: the child
 * itself, which runs the CLI in-process), points/s acknowledged since the last
 * line, the reader's requests/s and latency, and the errors so far. At the end:
 * the RSS slope after warm-up (least squares over RSS sampled every 5 s after
 * the first 2 minutes, or after the first third when shorter), in MB/min,
 * against the target (< 5 MB/min), and for information the same slope over
 * each minute's lowest sample (the floor between collections); total and mean
 * points/s; the reader's latency per procedure; errors; and a check that the
 * server stored (metrics.keys counts) and the live subscriptions delivered
 * exactly the acknowledged points.
 *
 *   npx tsx bench/soak.ts [--minutes N] [--store postgres|pglite|both] [--quick]
 *   npx tsx bench/run.ts soak            # 10 minutes on PostgreSQL
 *   npx tsx bench/run.ts --quick soak    # 1 minute
 *
 * Environment: PEDIGREE_SOAK_MINUTES (wins over --quick; --minutes wins over
 * it), PEDIGREE_SOAK_STORE=postgres|pglite|both (default postgres; pglite is
 * the embedded store in a temporary home, as `npm start` uses).
 *
 * It stops by itself; on error, SIGINT or SIGTERM it stops the writers, kills
 * the server's process group and drops its database (or removes the
 * temporary home). A second Ctrl-C (2 s or more after the first) kills the
 * server at once and exits. Should this process die without cleaning up
 * (SIGKILL: tsx's CLI sends one when its child is slow to acknowledge Ctrl-C),
 * a watchdog process (bench/soak-guard.mjs) kills the server and removes the
 * store.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { connect, type Pedigree, type Run } from '@pedigree/client';
import { pedigreeCommand, pedigreeServer, type PedigreeServer } from '../test/support/server.ts';
import { createServerDatabase, fmtInt, fmtMs, rng, SERVER_URL, serverUnavailable, table, type Benchmark, type Figure } from './lib.ts';

const WRITERS = 4;
const KEYS = ['loss', 'accuracy', 'lr', 'grad_norm'] as const;
/** Points per batch (the client's default) and per flush: one batch in flight per writer, each flush waits for its acknowledgement. */
const BATCH = 10_000;
const STEPS_PER_FLUSH = BATCH / KEYS.length;
const BUCKETS = 500;
/** The run page refreshes at most every 500 ms after a live update. */
const READER_PAUSE_MS = 500;
const RSS_SAMPLE_MS = 5_000;
const WARMUP_MS = 120_000;
const TARGET_MB_PER_MIN = 5;
const PROJECT = 'soak';
/** After the deadline: how long the writers get to flush and finish, the watches to catch up. */
const DRAIN_LIMIT_MS = 150_000;
const WATCH_CATCHUP_MS = 20_000;

export type SoakStore = 'postgres' | 'pglite';

export interface SoakOptions {
  minutes: number;
  store: SoakStore;
  log(msg: string): void;
}

export interface SoakResult {
  store: SoakStore;
  /** Wall time the load ran, ms. */
  ms: number;
  interrupted: boolean;
  rssStartMb: number;
  rssEndMb: number;
  rssPeakMb: number;
  /** MB/min after warm-up, null when too few samples. */
  slope: number | null;
  slopeSamples: number;
  /**
   * The same over the lowest sample of each window (a minute, shorter when the
   * soak is): the floor between collections, less swayed by where in the GC
   * sawtooth the samples fall. Extra information; the target is judged on `slope`.
   */
  floorSlope: number | null;
  warmupMs: number;
  points: number;
  /** Acknowledged points per second until the deadline. */
  rate: number;
  stored: number | null;
  watchPoints: number;
  writerErrors: number;
  writerRetries: number;
  readerRequests: number;
  readerErrors: number;
  watchErrors: number;
  readerP50: number;
  readerP99: number;
  bucketsP50: number;
  bucketsP99: number;
  errorSamples: string[];
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(resolve, ms);
    signal?.addEventListener(
      'abort',
      () => {
        clearTimeout(t);
        resolve();
      },
      { once: true },
    );
  });

const percentile = (sorted: number[], p: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]! : NaN);
const mb = (kb: number) => kb / 1024;
const fmtMb = (v: number) => `${v.toFixed(1)} MB`;
const fmtLat = (v: number) => (Number.isNaN(v) ? '—' : fmtMs(v));

/** VmRSS of a process in kB, or null once it is gone. */
function rssKb(pid: number): number | null {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** Least-squares slope of y over x. */
export function slopeOf(xs: number[], ys: number[]): number | null {
  const n = xs.length;
  if (n < 3) return null;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (xs[i]! - mx) * (ys[i]! - my);
    den += (xs[i]! - mx) ** 2;
  }
  return den === 0 ? null : num / den;
}

function message(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split('\n')[0]!.slice(0, 300);
}

/**
 * A watchdog in a process (group) of its own (bench/soak-guard.mjs) that
 * kills the server's process group and removes the store if this process dies
 * without cleaning up: tsx's CLI SIGKILLs its child when the child does not
 * acknowledge Ctrl-C within 30 ms, which on a loaded machine is common, and
 * SIGKILL runs no handler. It learns what to remove over a pipe; `done` (after
 * a clean stop) lets it go without doing anything.
 */
function startGuard(): { tell(line: string): void; release(): void } {
  const child = spawn(process.execPath, [path.join(import.meta.dirname, 'soak-guard.mjs')], { detached: true, stdio: ['pipe', 'ignore', 'ignore'] });
  child.on('error', () => {});
  child.stdin!.on('error', () => {});
  child.unref();
  (child.stdin as unknown as { unref(): void }).unref();
  return {
    tell: (line) => void child.stdin!.write(`${line}\n`),
    release: () => child.stdin!.end('done\n'),
  };
}

/** The store the server serves, created and prepared (migrated, a project, an API key), and how to remove it. */
async function prepareStore(store: SoakStore, log: (msg: string) => void, guard: ReturnType<typeof startGuard>): Promise<{ flag: { url: string } | { home: string }; apiKey: string; describe: string; remove(): Promise<void> }> {
  const run = async (args: string[]) => {
    const r = await pedigreeCommand(args, { timeoutMs: 180_000 });
    if (r.code !== 0) throw new Error(`pedigree ${args.join(' ')} failed (${r.code}): ${r.stderr || r.stdout}`);
    return r.stdout;
  };
  if (store === 'postgres') {
    guard.tell(`admin ${SERVER_URL}`);
    const db = await createServerDatabase('pedigree_soak');
    guard.tell(`db ${db.name}`);
    try {
      const at = ['--url', db.url];
      await run(['migrate', ...at]);
      await run(['projects', 'create', PROJECT, ...at]);
      const { key } = JSON.parse(await run(['keys', 'create', '--project', PROJECT, '--json', ...at])) as { key: string };
      return { flag: { url: db.url }, apiKey: key, describe: `PostgreSQL database ${db.name}`, remove: () => db.drop() };
    } catch (err) {
      await db.drop().catch((e) => log(`could not drop ${db.name}: ${message(e)}`));
      throw err;
    }
  }
  const home = await mkdtemp(path.join(os.tmpdir(), 'pedigree-soak-'));
  guard.tell(`home ${home}`);
  try {
    const at = ['--home', home];
    await run(['migrate', ...at]);
    await run(['projects', 'create', PROJECT, ...at]);
    const { key } = JSON.parse(await run(['keys', 'create', '--project', PROJECT, '--json', ...at])) as { key: string };
    return { flag: { home }, apiKey: key, describe: `embedded store (PGlite) in ${home}`, remove: () => rm(home, { recursive: true, force: true }) };
  } catch (err) {
    await rm(home, { recursive: true, force: true });
    throw err;
  }
}

/** Runs one soak against a fresh store and returns its figures; always removes the server and the store. */
export async function runSoak(opts: SoakOptions): Promise<SoakResult> {
  const { log } = opts;
  const durationMs = Math.max(0.1, opts.minutes) * 60_000;
  const warmupMs = Math.min(WARMUP_MS, durationMs / 3);
  const printEveryMs = durationMs < 5 * 60_000 ? 10_000 : 30_000;

  // Ctrl-C / SIGTERM: stop early and clean up; a second one kills the server now.
  const stop = new AbortController();
  let interrupted = false;
  let server: PedigreeServer | undefined;
  let firstSignalAt = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    // tsx's CLI sends the signal again when the first is not acknowledged within 30 ms: the same Ctrl-C.
    if (interrupted && Date.now() - firstSignalAt < 2_000) return;
    if (interrupted) {
      log(`${signal} again: killing the server's process group and exiting`);
      server?.kill();
      process.exit(130);
    }
    interrupted = true;
    firstSignalAt = Date.now();
    log(`${signal}: stopping the soak early, cleaning up (again to kill at once)`);
    stop.abort();
  };
  const onExit = () => server?.kill();
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('exit', onExit);

  const guard = startGuard();
  const store = await prepareStore(opts.store, log, guard).catch((err) => {
    guard.release();
    throw err;
  });
  const clients: Pedigree[] = [];
  try {
    server = await pedigreeServer({ ...store.flag, auth: 'keys', demo: 'none' });
    const t0Start = performance.now();
    const starting = server.start();
    if (server.pid) guard.tell(`pgid ${server.pid}`); // start() has spawned it by now
    const info = await starting;
    const pid = info.pid;
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
    if (pid !== server.pid) throw new Error(`the server says it is pid ${pid}, but the child started is ${server.pid}`);
    if (!cmdline.some((a) => a.endsWith('pedigree.mjs')) || !cmdline.includes('start')) throw new Error(`pid ${pid} is not pedigree start: ${cmdline.join(' ')}`);
    log(`server up in ${fmtMs(performance.now() - t0Start)} at ${server.url}, pid ${pid} (${path.basename(cmdline[0]!)} … ${cmdline.slice(2).join(' ').replace(/--url \S+/, '--url …')}), ${store.describe}, auth keys`);
    log(
      `${WRITERS} writers (${KEYS.length} keys per step, ${fmtInt(BATCH)}-point batches, flush after each) + 1 reader (runs.list, runs.get, metrics.keys, metrics.buckets ×${BUCKETS} per key per writer run, ${READER_PAUSE_MS} ms between rounds; runs.watch on each writer run) for ${opts.minutes} min; RSS sampled every ${RSS_SAMPLE_MS / 1000} s, slope after ${fmtMs(warmupMs)}`,
    );

    // ---------------------------------------------------------------- state
    let points = 0;
    let writerErrors = 0;
    let writerRetries = 0;
    let readerRequests = 0;
    let readerErrors = 0;
    let watchErrors = 0;
    let watchPoints = 0;
    const errorSamples: string[] = [];
    const noteError = (who: string, err: unknown) => {
      if (errorSamples.length < 10) errorSamples.push(`${who}: ${message(err)}`);
      log(`error (${who}): ${message(err)}`);
    };
    /** Acknowledged points per run, and what its watch delivered. */
    const acked = new Map<string, number>();
    const watched = new Map<string, number>();
    /** Each writer's current run. */
    const current: (string | undefined)[] = Array.from({ length: WRITERS }, () => undefined);
    const latencies: number[] = [];
    const byProcedure = new Map<string, number[]>();
    let intervalLatencies: number[] = [];
    let loadDone = false;

    const connectOpts = { url: server.url, apiKey: store.apiKey, batchSize: BATCH, flushIntervalMs: 60_000, handleSignals: false } as const;
    const reader = await connect({ ...connectOpts });
    clients.push(reader);
    const watches: { close(): void }[] = [];
    const watchRun = (runId: string) => {
      watched.set(runId, 0);
      watches.push(
        reader.watch(runId, {
          onUpdate: (u) => {
            if (u.type !== 'metrics') return;
            watched.set(runId, (watched.get(runId) ?? 0) + u.points.length);
            watchPoints += u.points.length;
          },
          onError: (err) => {
            watchErrors++;
            noteError('watch', err);
          },
        }),
      );
    };

    // ---------------------------------------------------------------- writers
    const writer = async (i: number) => {
      const pd = await connect({ ...connectOpts, onRetry: (what, attempt, err) => {
        writerRetries++;
        if (attempt === 1) log(`writer ${i}: retrying ${what}: ${message(err)}`);
      } });
      clients.push(pd);
      const rand = rng(1000 + i);
      for (let gen = 0; !stop.signal.aborted; gen++) {
        let run: Run;
        try {
          run = await pd.startRun({ project: PROJECT, name: `writer-${i}${gen ? `-restart-${gen}` : ''}`, kind: 'pretrain', hyperparameters: { lr: 3e-4, batch: 256, writer: i } });
        } catch (err) {
          writerErrors++;
          noteError(`writer ${i} startRun`, err);
          await sleep(1_000, stop.signal);
          continue;
        }
        current[i] = run.id;
        acked.set(run.id, 0);
        watchRun(run.id);
        let counted = 0;
        const count = () => {
          points += run.pointsSent - counted;
          counted = run.pointsSent;
          acked.set(run.id, counted);
        };
        try {
          for (let step = 0; !stop.signal.aborted; ) {
            for (let s = 0; s < STEPS_PER_FLUSH; s++, step++) {
              const x = step / 1e6;
              run.log({ loss: 2 * Math.exp(-x) + 0.05 * rand(), accuracy: 1 - Math.exp(-x) - 0.01 * rand(), lr: 3e-4 / (1 + x), grad_norm: 1 + rand() }, step);
            }
            await run.flush();
            count();
          }
          await run.finish();
          count();
          return;
        } catch (err) {
          count();
          writerErrors++;
          noteError(`writer ${i}`, err);
          await sleep(1_000, stop.signal);
        }
      }
    };

    // ---------------------------------------------------------------- reader
    const timed = async <T>(what: string, fn: () => Promise<T>): Promise<T | undefined> => {
      const t0 = performance.now();
      try {
        const r = await fn();
        const ms = performance.now() - t0;
        readerRequests++;
        latencies.push(ms);
        intervalLatencies.push(ms);
        const l = byProcedure.get(what) ?? [];
        l.push(ms);
        byProcedure.set(what, l);
        return r;
      } catch (err) {
        readerRequests++;
        readerErrors++;
        noteError(`reader ${what}`, err);
        return undefined;
      }
    };
    const readerLoop = async () => {
      const api = reader.api;
      while (!loadDone) {
        await timed('runs.list', () => api.runs.list.query({ project: PROJECT, limit: 500 }));
        for (const runId of current) {
          if (!runId || loadDone) continue;
          await timed('runs.get', () => api.runs.get.query({ runId }));
          const keys = await timed('metrics.keys', () => api.metrics.keys.query({ runId }));
          for (const k of keys ?? []) await timed('metrics.buckets', () => api.metrics.buckets.query({ runId, key: k.key, buckets: BUCKETS }));
        }
        await sleep(READER_PAUSE_MS);
      }
    };

    // ---------------------------------------------------------------- sampling
    const samples: { t: number; kb: number }[] = [];
    const t0 = performance.now();
    const first = rssKb(pid);
    if (first === null) throw new Error(`cannot read /proc/${pid}/status`);
    samples.push({ t: 0, kb: first });
    log(`t=0 s: server RSS ${fmtMb(mb(first))} before load; machine load average ${os.loadavg()[0]!.toFixed(1)} on ${os.cpus().length} CPUs`);
    let last = { t: 0, points: 0, requests: 0, watched: 0 };
    const sampler = setInterval(() => {
      const kb = rssKb(pid);
      if (kb !== null) samples.push({ t: performance.now() - t0, kb });
    }, RSS_SAMPLE_MS);
    const printer = setInterval(() => {
      const t = performance.now() - t0;
      const kb = rssKb(pid);
      const dt = (t - last.t) / 1000;
      const lat = [...intervalLatencies].sort((a, b) => a - b);
      intervalLatencies = [];
      log(
        `t=${(t / 1000).toFixed(0).padStart(4)} s  server RSS ${kb === null ? 'gone' : fmtMb(mb(kb)).padStart(9)}  ${fmtInt((points - last.points) / dt).padStart(7)} points/s  reader ${((readerRequests - last.requests) / dt).toFixed(1)} req/s (p50 ${fmtLat(percentile(lat, 50))}, p99 ${fmtLat(percentile(lat, 99))})  live ${fmtInt((watchPoints - last.watched) / dt)} points/s  errors w${writerErrors}/r${readerErrors}/s${watchErrors}, retries ${writerRetries}  bench RSS ${fmtMb(mb(process.memoryUsage().rss / 1024))}  load ${os.loadavg()[0]!.toFixed(1)}`,
      );
      last = { t, points, requests: readerRequests, watched: watchPoints };
    }, printEveryMs);

    // ---------------------------------------------------------------- the load
    const writers = Array.from({ length: WRITERS }, (_, i) =>
      writer(i).catch((err) => {
        writerErrors++;
        noteError(`writer ${i} connect`, err);
      }),
    );
    const readerDone = readerLoop();
    await sleep(durationMs, stop.signal);
    const loadMs = performance.now() - t0;
    const pointsAtDeadline = points;
    stop.abort();
    loadDone = true;
    clearInterval(printer);
    log(`load stopped after ${fmtMs(loadMs)}${interrupted ? ' (interrupted)' : ''}; writers flushing and finishing their runs`);
    const drained = await Promise.race([Promise.all(writers).then(() => true), sleep(DRAIN_LIMIT_MS).then(() => false)]);
    if (!drained) log(`writers did not finish within ${fmtMs(DRAIN_LIMIT_MS)}; going on without them`);
    await Promise.race([readerDone, sleep(60_000)]);
    clearInterval(sampler);
    const endKb = rssKb(pid) ?? samples[samples.length - 1]!.kb;

    // The live subscriptions should deliver every acknowledged point, each once.
    const catchupUntil = performance.now() + (interrupted ? 2_000 : WATCH_CATCHUP_MS);
    const totalAcked = () => [...acked.values()].reduce((a, b) => a + b, 0);
    while (watchPoints < totalAcked() && performance.now() < catchupUntil) await sleep(200);
    for (const w of watches) w.close();

    // What the server stored for each run (its series counts), against what was acknowledged.
    let stored: number | null = 0;
    for (const runId of acked.keys()) {
      try {
        const keys = await reader.api.metrics.keys.query({ runId });
        stored += keys.reduce((a, k) => a + k.count, 0);
      } catch (err) {
        noteError('final count', err);
        stored = null;
        break;
      }
    }

    // ---------------------------------------------------------------- figures
    const after = samples.filter((s) => s.t >= warmupMs);
    const slope = slopeOf(
      after.map((s) => s.t / 60_000),
      after.map((s) => mb(s.kb)),
    );
    const windowMs = Math.max(2 * RSS_SAMPLE_MS, Math.min(60_000, (loadMs - warmupMs) / 6));
    const floors = new Map<number, { t: number; kb: number }>();
    for (const s of after) {
      const w = Math.floor((s.t - warmupMs) / windowMs);
      if (!floors.has(w) || s.kb < floors.get(w)!.kb) floors.set(w, s);
    }
    const floorSlope = slopeOf(
      [...floors.values()].map((s) => s.t / 60_000),
      [...floors.values()].map((s) => mb(s.kb)),
    );
    latencies.sort((a, b) => a - b);
    for (const l of byProcedure.values()) l.sort((a, b) => a - b);
    const bucketLatencies = byProcedure.get('metrics.buckets') ?? [];
    const result: SoakResult = {
      store: opts.store,
      ms: loadMs,
      interrupted,
      rssStartMb: mb(first),
      rssEndMb: mb(endKb),
      rssPeakMb: mb(Math.max(...samples.map((s) => s.kb), endKb)),
      slope,
      slopeSamples: after.length,
      floorSlope,
      warmupMs,
      points: totalAcked(),
      rate: (pointsAtDeadline * 1000) / loadMs,
      stored,
      watchPoints,
      writerErrors,
      writerRetries,
      readerRequests,
      readerErrors,
      watchErrors,
      readerP50: percentile(latencies, 50),
      readerP99: percentile(latencies, 99),
      bucketsP50: percentile(bucketLatencies, 50),
      bucketsP99: percentile(bucketLatencies, 99),
      errorSamples,
    };
    log(
      `server RSS ${fmtMb(result.rssStartMb)} at start, ${fmtMb(result.rssEndMb)} at end, peak ${fmtMb(result.rssPeakMb)}; slope after ${fmtMs(warmupMs)} ${slope === null ? 'n/a (too few samples)' : `${slope.toFixed(2)} MB/min over ${after.length} samples (target < ${TARGET_MB_PER_MIN} MB/min: ${slope < TARGET_MB_PER_MIN ? 'MET' : 'NOT MET'})`}; slope of the ${fmtMs(windowMs)} minima ${floorSlope === null ? 'n/a' : `${floorSlope.toFixed(2)} MB/min over ${floors.size} windows`}`,
    );
    log(`points acknowledged ${fmtInt(result.points)} (mean ${fmtInt(result.rate)} points/s until the deadline), stored ${stored === null ? '?' : fmtInt(stored)}${stored !== null && stored !== result.points ? ' — MISMATCH' : ''}, delivered live ${fmtInt(watchPoints)}${watchPoints !== result.points ? ` — ${watchPoints < result.points ? 'short' : 'MORE than acknowledged'} by ${fmtInt(Math.abs(result.points - watchPoints))}` : ''}`);
    log(
      `reader ${fmtInt(readerRequests)} requests (${(readerRequests / (loadMs / 1000)).toFixed(1)}/s), p50 ${fmtLat(result.readerP50)}, p99 ${fmtLat(result.readerP99)}; metrics.buckets p50 ${fmtLat(result.bucketsP50)}, p99 ${fmtLat(result.bucketsP99)}`,
    );
    log(`  by procedure: ${[...byProcedure].map(([what, l]) => `${what} ${fmtInt(l.length)}× p50 ${fmtLat(percentile(l, 50))} p99 ${fmtLat(percentile(l, 99))}`).join('; ')}`);
    log(`errors: writers ${writerErrors} (after retries; ${writerRetries} retries), reader ${readerErrors}, live ${watchErrors}${errorSamples.length ? `\n  ${errorSamples.join('\n  ')}` : ''}`);
    return result;
  } finally {
    await Promise.all(clients.map((c) => Promise.race([c.close().catch(() => {}), sleep(10_000)])));
    if (server?.pid) {
      const stopped = await server.stop().catch((err) => {
        log(`stopping the server: ${message(err)}`);
        server?.kill();
        return null;
      });
      if (stopped && (stopped.code !== 0 || stopped.leftover)) log(`server exited with code ${stopped.code}, signal ${stopped.signal}${stopped.leftover ? ', processes left over (killed)' : ''}\n${stopped.stderr.slice(-2000)}`);
    }
    await store.remove().then(
      () => guard.release(), // else the guard tries again
      (err) => log(`could not remove the store (${store.describe}): ${message(err)}`),
    );
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    process.off('exit', onExit);
  }
}

function minutesFrom(quick: boolean, arg?: string): number {
  const raw = arg ?? process.env.PEDIGREE_SOAK_MINUTES;
  if (raw !== undefined && raw !== '') {
    const m = Number(raw);
    if (!Number.isFinite(m) || m <= 0) throw new Error(`soak minutes must be a positive number, got ${JSON.stringify(raw)}`);
    return m;
  }
  return quick ? 1 : 10;
}

function storesFrom(value: string | undefined): SoakStore[] {
  const v = value ?? 'postgres';
  if (v === 'both') return ['postgres', 'pglite'];
  if (v === 'postgres' || v === 'pglite') return [v];
  throw new Error(`PEDIGREE_SOAK_STORE / --store must be postgres, pglite or both, got ${JSON.stringify(v)}`);
}

function figuresOf(r: SoakResult): Figure[] {
  const bench = 'soak';
  const where = r.store === 'postgres' ? 'PostgreSQL' : 'PGlite';
  const ok = r.slope !== null && r.slope < TARGET_MB_PER_MIN;
  return [
    {
      bench,
      what: `server RSS slope after warm-up, ${where}`,
      value: r.slope === null ? 'n/a' : `${r.slope.toFixed(2)} MB/min`,
      note: `target < ${TARGET_MB_PER_MIN} MB/min: ${r.slope === null ? 'too few samples' : ok ? 'MET' : 'NOT MET'}; RSS ${r.rssStartMb.toFixed(0)} → ${r.rssEndMb.toFixed(0)} MB (peak ${r.rssPeakMb.toFixed(0)}) over ${fmtMs(r.ms)}; slope of the minima ${r.floorSlope === null ? 'n/a' : `${r.floorSlope.toFixed(2)} MB/min`}${r.interrupted ? ', interrupted' : ''}`,
    },
    {
      bench,
      what: `points acknowledged, ${WRITERS} writers, ${where}`,
      value: `${fmtInt(r.rate)} points/s`,
      note: `${fmtInt(r.points)} in all; stored ${r.stored === null ? '?' : r.stored === r.points ? 'all' : fmtInt(r.stored)}; live ${r.watchPoints === r.points ? 'all' : fmtInt(r.watchPoints)}`,
    },
    { bench, what: `dashboard reader latency, ${where}`, value: `p50 ${fmtLat(r.readerP50)}, p99 ${fmtLat(r.readerP99)}`, note: `${fmtInt(r.readerRequests)} requests; buckets p50 ${fmtLat(r.bucketsP50)}, p99 ${fmtLat(r.bucketsP99)}` },
    { bench, what: `errors, ${where}`, value: String(r.writerErrors + r.readerErrors + r.watchErrors), note: `writers ${r.writerErrors} (${r.writerRetries} retries), reader ${r.readerErrors}, live ${r.watchErrors}` },
  ];
}

export const soak: Benchmark = {
  name: 'soak',
  description: `${WRITERS} writers at full rate + a dashboard reader against the real server for 10 min (quick: 1; $PEDIGREE_SOAK_MINUTES): server RSS every 30 s, slope after warm-up (target < ${TARGET_MB_PER_MIN} MB/min), points/s, errors`,
  async run(ctx) {
    const minutes = minutesFrom(ctx.quick);
    const figures: Figure[] = [];
    for (const store of storesFrom(process.env.PEDIGREE_SOAK_STORE)) {
      const r = await runSoak({ minutes, store, log: ctx.log });
      figures.push(...figuresOf(r));
      if (r.interrupted) {
        console.log(table([['benchmark', 'figure', 'value', 'note'], ...figures.map((f) => [f.bench, f.what, f.value, f.note ?? ''])]));
        process.exit(130);
      }
    }
    return figures;
  },
};

// Run on its own: npx tsx bench/soak.ts [--minutes N] [--store postgres|pglite|both] [--quick]
if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  const args = process.argv.slice(2);
  const value = (name: string) => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : args.find((a) => a.startsWith(`${name}=`))?.slice(name.length + 1);
  };
  if (args.includes('--help') || args.includes('-h')) {
    console.log('usage: tsx bench/soak.ts [--minutes N] [--store postgres|pglite|both] [--quick]\n\n' + soak.description);
    process.exit(0);
  }
  const quick = args.includes('--quick');
  const minutes = minutesFrom(quick, value('--minutes'));
  const stores = storesFrom(value('--store') ?? process.env.PEDIGREE_SOAK_STORE);
  if (stores.includes('postgres')) {
    const why = await serverUnavailable();
    if (why) {
      console.error(`soak: ${why}\nSet PEDIGREE_BENCH_DATABASE_URL, or run with --store pglite.`);
      process.exit(1);
    }
  }
  const figures: Figure[] = [];
  let failed = false;
  let interrupted = false;
  for (const store of stores) {
    try {
      const r = await runSoak({ minutes, store, log: (msg) => console.log(`[soak] ${msg}`) });
      figures.push(...figuresOf(r));
      if (r.interrupted) {
        interrupted = true;
        break;
      }
    } catch (err) {
      failed = true;
      console.error(`[soak] FAILED (${store}): ${(err as Error).stack ?? err}`);
    }
  }
  if (figures.length) console.log(`\n${table([['benchmark', 'figure', 'value', 'note'], ...figures.map((f) => [f.bench, f.what, f.value, f.note ?? ''])])}`);
  process.exit(interrupted ? 130 : failed ? 1 : 0);
}
