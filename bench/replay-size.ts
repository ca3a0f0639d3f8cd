/**
 * Replay and verify at size, in bounded memory (issue 13: a store of 12–18M
 * points ran `replay` out of a 4 GB heap; target: 20M points at peak RSS
 * ≤ 1 GB). Builds a PostgreSQL store of N metric points (default 3M, quick
 * 200k, PEDIGREE_BENCH_REPLAY_POINTS=20000000 for the issue's size, a few
 * minutes more), mostly in 50,000-point MetricsLogged events (the largest a
 * client may send; since metric storage v2 each event row holds only its
 * chunks' manifest, the points are in its metric_chunks rows, ~1.5 MB of
 * arrays a key) with 1,000-point ones and small events between, then runs
 * each pass in a child process of its own and prints its peak RSS and
 * throughput:
 *   - read:   the events read in byte-bounded batches, JSON-parsed, nothing
 *             else (the floor any pass pays);
 *   - verify: every hash chain re-hashed, every chunk's digest recomputed;
 *   - replay: every read model truncated and rebuilt, chains and chunks checked;
 * verify and replay each twice, batched by bytes (now) and by count only
 * (5,000 events a batch: the reader before, the baseline).
 * PEDIGREE_BENCH_REPLAY_BASELINE=0 skips the baseline (at 20M points it runs
 * for minutes before its heap runs out); PEDIGREE_BENCH_REPLAY_BATCH_BYTES
 * sets the budget tried.
 *
 * Peak RSS: the child's own process.resourceUsage().maxRSS when it finishes;
 * for a child that dies (out of memory), the highest VmHWM read from
 * /proc/<pid>/status while it ran (Linux), marked ≥.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DEFAULT_BATCH_BYTES, MAX_POINTS_PER_BATCH, streamIds, type NewEvent } from '@pedigree/ledger';
import { openPedigree } from '@pedigree/lineage';
import { copyAppends, fmtInt, fmtMs, fmtRatio, rng, timeIt, withServerDatabase, type BenchContext, type Benchmark, type BulkAppend, type Figure } from './lib.ts';

const POINTS = { quick: 200_000, full: 3_000_000 };
/** PGlite is slower: a smaller store, as extra information. */
const PGLITE_POINTS = { quick: 50_000, full: 1_000_000 };
/** The batch sizes a run logs, over and over: most points in maximal batches, some in small ones. */
const BATCH_CYCLE = [MAX_POINTS_PER_BATCH, 1000, 1000, 1000, 1000, 1000];
const CYCLES_PER_RUN = 18; // ~1M points a run
const TARGET_RSS_BYTES = 1024 ** 3;
const CHILD = path.join(import.meta.dirname, 'replay-size-child.ts');
const ROOT = path.resolve(import.meta.dirname, '..');

const mib = (bytes: number) => `${fmtInt(bytes / 2 ** 20)} MiB`;

/** The history as appends: runs of CYCLES_PER_RUN cycles of metric batches, with an eval and a note after each maximal batch. */
function* history(projectId: string, total: number): Generator<BulkAppend> {
  const rand = rng(11);
  let written = 0;
  for (let r = 0; written < total; r++) {
    const runId = randomUUID();
    const streamId = streamIds.run(runId);
    const append = (...events: NewEvent[]): BulkAppend => ({ streamId, projectId, events });
    yield append(
      { type: 'RunCreated', data: { runId, projectId, name: `big-${r}`, kind: 'pretrain', environment: { gpus: 8 } } },
      { type: 'HyperparametersDeclared', data: { values: { lr: 3e-4, batch: 1024, context: 4096, seed: r } } },
      { type: 'RunStarted', data: {} },
    );
    let step = 0;
    for (let c = 0; c < CYCLES_PER_RUN && written < total; c++) {
      for (const size of BATCH_CYCLE) {
        const n = Math.min(size, total - written);
        if (n === 0) break;
        const points = new Array(n);
        for (let i = 0; i < n; i++) {
          const s = step + (i >> 1); // two keys a step
          const time = 1.7e12 + s * 250;
          points[i] = i % 2 ? { key: 'lr', step: s, value: 3e-4 * (1 - s / 1e8), time } : { key: 'train/loss', step: s, value: 2 + 3 * Math.exp(-s / 1e5) + rand() * 0.05, time };
        }
        step += Math.ceil(n / 2);
        written += n;
        yield append({ type: 'MetricsLogged', data: { points } });
        if (size === MAX_POINTS_PER_BATCH) {
          yield append({ type: 'EvalRecorded', data: { suite: 'held-out', task: 'loss', score: rand(), n: 512, step } }, { type: 'NoteAdded', data: { text: `cycle ${c} done at step ${step}` } });
        }
      }
    }
    yield append({ type: 'RunCompleted', data: {} });
  }
}

interface ChildResult {
  ok: boolean;
  events: number;
  points: number;
  batches: number;
  ms: number;
  /** Peak RSS in bytes. */
  rss: number;
  /** The child died (e.g. out of memory): `rss` is a lower bound, `ms` the time until then. */
  died?: string;
}

/** Highest RSS of a live process so far (Linux /proc), else 0. */
function vmHwm(pid: number): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

function runChild(mode: 'replay' | 'verify' | 'read', store: string, limit: number | 'count'): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, ['--import', 'tsx', CHILD, mode, store, String(limit)], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let polled = 0;
    child.stdout.on('data', (d: Buffer) => (stdout += d));
    child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d).slice(-4000)));
    const poll = setInterval(() => (polled = Math.max(polled, vmHwm(child.pid!))), 100);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearInterval(poll);
      const ms = performance.now() - t0;
      const line = stdout.trim().split('\n').at(-1) ?? '';
      if (code === 0 && line.startsWith('{')) {
        const r = JSON.parse(line) as Omit<ChildResult, 'rss'> & { maxRssBytes: number };
        resolve({ ok: r.ok, events: r.events, points: r.points, batches: r.batches, ms: r.ms, rss: Math.max(r.maxRssBytes, polled) });
      } else {
        const outOfMemory = /JavaScript heap out of memory/.exec(stderr)?.[0];
        const error = /^\w*Error\b.*$/m.exec(stderr)?.[0] ?? stderr.trim().split('\n').at(-1) ?? '';
        const why = outOfMemory ?? (signal ? `killed by ${signal}` : `exit code ${code}: ${error}`);
        resolve({ ok: false, events: 0, points: 0, batches: 0, ms, rss: polled, died: why });
      }
    });
  });
}

/**
 * Runs the passes over one store, each in a child of its own, and logs and
 * returns their figures. The last pass is replay by bytes, so the store is
 * left rebuilt; its metric_series must then count every point.
 */
async function runPasses(ctx: BenchContext, label: string, store: string, expected: { events: number; points: number }, opts: { budget: number; baseline: boolean }): Promise<Figure[]> {
  const figures: Figure[] = [];
  const passes: { mode: 'read' | 'verify' | 'replay'; limit: number | 'count' }[] = [
    { mode: 'read', limit: opts.budget },
    ...(opts.baseline ? [{ mode: 'verify' as const, limit: 'count' as const }] : []),
    { mode: 'verify', limit: opts.budget },
    ...(opts.baseline ? [{ mode: 'replay' as const, limit: 'count' as const }] : []),
    { mode: 'replay', limit: opts.budget },
  ];
  const results = new Map<string, ChildResult>();
  for (const { mode, limit } of passes) {
    const reader = limit === 'count' ? 'by count (5,000 events; baseline)' : `by bytes (${mib(limit)})`;
    const what = `${label}: ${mode}, ${reader}`;
    const r = await runChild(mode, store, limit);
    results.set(`${mode} ${limit === 'count' ? 'count' : 'bytes'}`, r);
    if (r.died) {
      ctx.log(`${label} ${mode.padEnd(6)} ${reader}: DIED after ${fmtMs(r.ms)} (${r.died}); peak RSS ≥ ${mib(r.rss)}`);
      figures.push({ bench: 'replay-size', what, value: `died: ${r.died}`, note: `peak RSS ≥ ${mib(r.rss)} after ${fmtMs(r.ms)}` });
      continue;
    }
    if (!r.ok) throw new Error(`${mode} found a broken chain in a store the benchmark built itself`);
    if (r.events !== expected.events || r.points !== expected.points) {
      throw new Error(`${mode} read ${r.events} events and ${r.points} points, expected ${expected.events} and ${expected.points}`);
    }
    const rate = (n: number) => fmtInt((n * 1000) / r.ms);
    const target = limit === 'count' ? '' : `; target ≤ 1,024 MiB ${r.rss <= TARGET_RSS_BYTES ? 'MET' : 'NOT MET'}`;
    ctx.log(`${label} ${mode.padEnd(6)} ${reader}: peak RSS ${mib(r.rss)}${target}; ${fmtMs(r.ms)}, ${rate(r.events)} events/s, ${rate(r.points)} points/s, ${fmtInt(r.batches)} batches`);
    figures.push({ bench: 'replay-size', what, value: `peak RSS ${mib(r.rss)}`, note: `${rate(r.points)} points/s, ${rate(r.events)} events/s (${fmtMs(r.ms)})${target}` });
  }
  for (const mode of ['verify', 'replay'] as const) {
    const now = results.get(`${mode} bytes`);
    const before = results.get(`${mode} count`);
    if (!now || !before || now.died) continue;
    const rss = `${before.died ? '≥ ' : ''}${fmtRatio(before.rss / now.rss)}`;
    const speed = before.died ? 'the baseline did not finish' : `by bytes runs at ${fmtRatio(before.ms / now.ms)} the baseline's speed`;
    ctx.log(`${label} ${mode}: peak RSS by count / by bytes ${rss}; ${speed}`);
    figures.push({ bench: 'replay-size', what: `${label}: ${mode}, peak RSS baseline / by bytes`, value: rss, note: speed });
  }
  return figures;
}

export const replaySize: Benchmark = {
  name: 'replay-size',
  description: 'peak RSS and throughput of replay and verify over millions of metric points, each in a child process (baseline: batches by count)',
  async run(ctx) {
    const total = Number(process.env.PEDIGREE_BENCH_REPLAY_POINTS ?? (ctx.quick ? POINTS.quick : POINTS.full));
    const pglitePoints = Number(process.env.PEDIGREE_BENCH_REPLAY_PGLITE_POINTS ?? (ctx.quick ? PGLITE_POINTS.quick : PGLITE_POINTS.full));
    const budget = Number(process.env.PEDIGREE_BENCH_REPLAY_BATCH_BYTES ?? DEFAULT_BATCH_BYTES);
    const baseline = process.env.PEDIGREE_BENCH_REPLAY_BASELINE !== '0';
    if (!(total > 0 && budget > 0 && pglitePoints >= 0)) throw new Error('PEDIGREE_BENCH_REPLAY_POINTS, _PGLITE_POINTS and _BATCH_BYTES must be numbers (positive; PGlite 0 skips it)');
    const figures: Figure[] = [];

    await withServerDatabase(async ({ url }) => {
      const pd = await openPedigree({ url }, { migrate: true, role: null /* the bench owns its database: VACUUM ANALYZE */ });
      let events: number;
      try {
        const { projectId } = await pd.tracker.createProject({ name: 'bench-replay-size' });
        const { ms: buildMs, result: written } = await timeIt(() => copyAppends(pd, history(projectId, total)));
        await pd.database.db.query('VACUUM ANALYZE events');
        await pd.database.db.query('VACUUM ANALYZE metric_chunks');
        const [size] = await pd.database.db.query<{ events: number; bytes: number; text: number; chunks: number }>(
          `SELECT count(*)::int8 AS events, (SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('events'))::int8 AS bytes, sum(octet_length(data::text))::int8 AS text,
                  (SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('metric_chunks'))::int8 AS chunks FROM events`,
        );
        events = size!.events;
        ctx.log(
          `PostgreSQL store: ${fmtInt(total)} points in ${fmtInt(events)} events (${fmtInt(written)} written by store.prepare + eventHash + COPY in ${fmtMs(buildMs)}); events table ${mib(size!.bytes)} on disk (${mib(size!.text)} of data as JSON text), metric_chunks ${mib(size!.chunks)}`,
        );
      } finally {
        await pd.close();
      }
      figures.push(...(await runPasses(ctx, 'PostgreSQL', url, { events, points: total }, { budget, baseline })));
      const check = await openPedigree({ url });
      try {
        const [c] = await check.database.db.query<{ stored: number; counted: number }>(
          'SELECT (SELECT coalesce(sum(n), 0)::int8 FROM metric_chunks) AS stored, (SELECT coalesce(sum(count), 0)::int8 FROM metric_series) AS counted',
        );
        if (c!.stored !== total || c!.counted !== total) throw new Error(`after replay: ${c!.stored} points in metric_chunks, ${c!.counted} counted by metric_series, expected ${total}`);
      } finally {
        await check.close();
      }
    });

    // PGlite, in a directory: built through store.append (inline projections), the real write path.
    if (pglitePoints > 0) {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'pedigree-bench-replay-'));
      try {
        const pd = await openPedigree({ dir });
        let events: number;
        try {
          const { projectId } = await pd.tracker.createProject({ name: 'bench-replay-size' });
          const { ms: buildMs } = await timeIt(async () => {
            for (const a of history(projectId, pglitePoints)) await pd.store.append(a.streamId, a.events, { projectId, expectedVersion: 'any' });
          });
          events = await pd.store.lastPosition();
          ctx.log(`PGlite store (${dir}): ${fmtInt(pglitePoints)} points in ${fmtInt(events)} events, through store.append in ${fmtMs(buildMs)}`);
        } finally {
          await pd.close();
        }
        figures.push(...(await runPasses(ctx, 'PGlite', dir, { events, points: pglitePoints }, { budget, baseline })));
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }
    return figures;
  },
};
