/**
 * Replay and verify over a large history of many runs, each one stream of
 * ~100 realistic small events. Times:
 *   - read: every event in global order through store.readAll (the baseline:
 *     what any pass over the log costs before doing anything with it);
 *   - replay(): check every chain and chunk, then truncate the read models
 *     and rebuild them from the events; and replay({ check: false }), the
 *     rebuild alone;
 *   - verify(): re-hash every stream's chain (and the metric chunks' digests);
 *   - COPY of the same rows (the events rows, and for the MetricsLogged ones
 *     their metric_chunks rows) into bare copies of the two tables: the rate
 *     PostgreSQL takes rows at, printed beside replay's (target: replay
 *     ≥ 50,000 events/s);
 * and checks that replay rebuilds exactly the read models that the inline
 * projections wrote.
 *
 * Building the history: the first runs go through EventStore.append (the
 * real write path, inline projections included; its rate is printed), but
 * append costs one INSERT round trip per event, so a million events that way
 * would take longer than the whole benchmark budget. The rest is written with
 * the ledger's own pieces — store.prepare() (validation, chunking, canonical
 * JSON) and eventHash() (the chain) — as the same rows append would insert
 * (events, and metric_chunks for the MetricsLogged ones), streamed with COPY.
 * verify() over the whole log checks that those rows are exactly what append
 * would have written.
 */
import { randomUUID } from 'node:crypto';
import { createReadStream, mkdtempSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import postgres from 'postgres';
import { streamIds, type NewEvent } from '@pedigree/ledger';
import { LINEAGE_TABLES, openPedigree, type Pedigree } from '@pedigree/lineage';
import { COPY_CHUNK_COLUMNS, COPY_EVENT_COLUMNS, copyAppends, fmtInt, fmtMs, fmtRate, fmtRatio, profileLines, profileQueries, rng, timeIt, withServerDatabase, type Benchmark, type BulkAppend, type Figure } from './lib.ts';

const EVENTS_PER_RUN = 100;
/** Runs (of EVENTS_PER_RUN events) built through store.append, one append per run; the rest is bulk-written. */
const APPEND_RUNS = { quick: 50, full: 200 };
/** replay's events/s, at least. */
const TARGET = 50_000;

/** One run's stream: created, declared, started, ~83 small metric batches with evals, notes, a tag and an LR change in between, completed. */
function runEvents(projectId: string, runId: string, i: number, rand: () => number): NewEvent[] {
  const events: NewEvent[] = [
    { type: 'RunCreated', data: { runId, projectId, name: `sweep-${i}`, kind: i % 5 === 0 ? 'sft' : 'pretrain', codeVersion: 'git:3f2a9c1', environment: { host: `node-${i % 16}`, gpus: 8 } } },
    {
      type: 'HyperparametersDeclared',
      data: { values: { lr: 3e-4 * (1 + (i % 7)), batch: 256, context: 128, rope_base: 500, layers: 2, d_model: 64, seed: i, schedule: 'warmup+cosine' } },
    },
    { type: 'TagAdded', data: { tag: `sweep-${i % 10}` } },
    { type: 'RunStarted', data: {} },
  ];
  let step = 0;
  const body = EVENTS_PER_RUN - events.length - 1;
  for (let j = 0; j < body; j++) {
    if (j % 10 === 9) {
      events.push({ type: 'EvalRecorded', data: { suite: 'kv-recall', task: 'exact-match', contextLength: 128 << (j % 4), score: rand(), n: 64, step } });
    } else if (j === 30 || j === 70) {
      events.push({ type: 'NoteAdded', data: { text: `checked samples at step ${step}: loss curve looks fine`, author: 'bench' } });
    } else if (j === 50) {
      events.push({ type: 'HyperparameterChanged', data: { key: 'lr', value: 1e-4, step, reason: 'plateau' } });
    } else if (j === 80) {
      events.push({ type: 'TagAdded', data: { tag: 'long' } });
    } else {
      const points = [];
      for (let k = 0; k < 2; k++, step += 10) {
        points.push({ key: 'train/loss', step, value: 2 + 3 * Math.exp(-step / 500) + rand() * 0.05, time: 1.7e12 + step * 1000 });
        points.push({ key: 'lr', step, value: 3e-4 * (1 - step / 2000), time: 1.7e12 + step * 1000 });
      }
      events.push({ type: 'MetricsLogged', data: { points } });
    }
  }
  events.push({ type: 'RunCompleted', data: {} });
  return events;
}

/** Runs [from, to) as appends of one run's whole stream each, for copyAppends. */
function* bulkRuns(projectId: string, from: number, to: number, rand: () => number): Generator<BulkAppend> {
  for (let i = from; i < to; i++) {
    const runId = randomUUID();
    yield { streamId: streamIds.run(runId), projectId, events: runEvents(projectId, runId, i, rand) };
  }
}

/**
 * A fingerprint of the read models of some runs (and of the tables that are
 * not per run): row count and an order-independent sum of row hashes per table.
 */
async function fingerprint(pd: Pedigree, runIds: string[]): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const t of LINEAGE_TABLES) {
    const where = t === 'runs' ? 'WHERE id = ANY($1::uuid[])' : ['projects', 'artifacts', 'datamix_components'].includes(t) ? '' : 'WHERE run_id = ANY($1::uuid[])';
    const [row] = await pd.database.db.query<{ f: string }>(
      `SELECT count(*)::text || ' rows, Σhash ' || coalesce(sum(hashtext(t::text)::int8), 0)::text AS f FROM "${t}" t ${where}`,
      where ? [runIds] : [],
    );
    out[t] = row!.f;
  }
  return out;
}

/**
 * The rows replay reads, loaded the fastest way PostgreSQL takes rows: the
 * COPY text the history's bulk part was written with (events rows, and the
 * MetricsLogged events' metric_chunks rows; saved to files while building),
 * timed with COPY FROM into bare copies of the two tables (same columns and
 * storage; no keys, indexes or triggers). The bare tables are dropped
 * afterwards. (Not dumped with COPY TO: postgres.js's COPY TO streams stall
 * now and then, the server waiting in ClientWrite; porsager/postgres#499, #917.)
 */
async function copyBaseline(url: string, files: { events: string; chunks: string }): Promise<{ ms: number; eventsMs: number; chunksMs: number; events: number; chunks: number; bytes: number }> {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    await sql.unsafe('CREATE TABLE bench_events_bare (LIKE events INCLUDING STORAGE INCLUDING COMPRESSION)');
    await sql.unsafe('CREATE TABLE bench_chunks_bare (LIKE metric_chunks INCLUDING STORAGE INCLUDING COMPRESSION)');
    await sql.unsafe('CHECKPOINT'); // the build's own writes are not the baseline's to pay for
    const load = async (table: string, columns: string, file: string) =>
      (await timeIt(async () => pipeline(createReadStream(file, { highWaterMark: 1 << 20 }), await sql.unsafe(`COPY ${table} (${columns}) FROM STDIN`).writable()))).ms;
    const eventsMs = await load('bench_events_bare', COPY_EVENT_COLUMNS, files.events);
    const chunksMs = await load('bench_chunks_bare', COPY_CHUNK_COLUMNS, files.chunks);
    const [row] = (await sql.unsafe('SELECT (SELECT count(*)::int FROM bench_events_bare) AS events, (SELECT count(*)::int FROM bench_chunks_bare) AS chunks')) as unknown as [
      { events: number; chunks: number },
    ];
    return { ms: eventsMs + chunksMs, eventsMs, chunksMs, events: row.events, chunks: row.chunks, bytes: statSync(files.events).size + statSync(files.chunks).size };
  } finally {
    await sql.unsafe('DROP TABLE IF EXISTS bench_events_bare, bench_chunks_bare').catch(() => {});
    await sql.end();
  }
}

export const replay: Benchmark = {
  name: 'replay',
  description: 'replay() and verify() over a large history (baselines: reading every event; COPY of the same rows)',
  async run(ctx) {
    const total = ctx.quick ? 50_000 : 1_000_000;
    const runs = Math.ceil(total / EVENTS_PER_RUN);
    const n = runs * EVENTS_PER_RUN;
    const appendRuns = Math.min(runs, ctx.quick ? APPEND_RUNS.quick : APPEND_RUNS.full);
    const figures: Figure[] = [];

    const dir = mkdtempSync(path.join(os.tmpdir(), 'pedigree-bench-replay-copy-'));
    const copyFiles = { events: path.join(dir, 'events.copy'), chunks: path.join(dir, 'chunks.copy') };
    await withServerDatabase(async ({ url }) => {
      const pd = await openPedigree({ url }, { migrate: true, role: null /* the bench owns its database: baseline tables, VACUUM */ });
      try {
        const { projectId } = await pd.tracker.createProject({ name: 'bench-replay' });
        const rand = rng(7);
        const mix = new Map<string, number>();
        for (const e of runEvents(projectId, randomUUID(), 0, rand)) mix.set(e.type, (mix.get(e.type) ?? 0) + 1);
        ctx.log(`history: ${fmtInt(n)} events = ${fmtInt(runs)} runs × ${EVENTS_PER_RUN} events; per run: ${[...mix].map(([t, c]) => `${c} ${t}`).join(', ')}`);

        // ---- build, part 1: the real write path
        const appended: string[] = [];
        const { ms: appendMs } = await timeIt(async () => {
          for (let i = 0; i < appendRuns; i++) {
            const runId = randomUUID();
            await pd.store.append(streamIds.run(runId), runEvents(projectId, runId, i, rand), { projectId, expectedVersion: 'any' });
            appended.push(runId);
          }
        });
        const appendedEvents = appendRuns * EVENTS_PER_RUN;
        const appendRate = (appendedEvents * 1000) / appendMs;
        ctx.log(
          `build 1/2: ${fmtInt(appendedEvents)} events through store.append (${appendRuns} appends of ${EVENTS_PER_RUN}, inline projections) in ${fmtMs(appendMs)}: ${fmtRate(appendedEvents, appendMs, 'events')} — ${fmtInt(n)} events at that rate would take ${fmtMs((n * 1000) / appendRate)}`,
        );
        // ---- build, part 2: the same rows, bulk
        const { ms: bulkMs } = await timeIt(() => copyAppends(pd, bulkRuns(projectId, appendRuns, runs, rand), { tee: copyFiles }));
        const stored = (await pd.store.lastPosition()) - 1; // the ProjectCreated event came first
        if (stored !== n) throw new Error(`built ${stored} events, expected ${n}`);
        const bulkEvents = n - appendedEvents;
        const buildMs = appendMs + bulkMs;
        ctx.log(`build 2/2: ${fmtInt(bulkEvents)} events via store.prepare + eventHash + COPY in ${fmtMs(bulkMs)} (${fmtRate(bulkEvents, bulkMs, 'events')})`);
        ctx.log(`built the history in ${fmtMs(buildMs)} in all`);
        await pd.database.db.query('VACUUM ANALYZE');
        const inline = await fingerprint(pd, appended);
        const all = n + 1;

        // ---- baseline: read every event in global order, 5000 per query as replay and verify do
        const { ms: readMs } = await timeIt(async () => {
          let after = 0;
          let count = 0;
          for (;;) {
            const events = await pd.store.readAll({ afterPosition: after, limit: 5000 });
            if (events.length === 0) break;
            after = events[events.length - 1]!.position;
            count += events.length;
          }
          if (count !== all) throw new Error(`read ${count} events, expected ${all}`);
        });
        ctx.log(`read all (store.readAll, baseline) ${fmtRate(all, readMs, 'events')} — ${fmtMs(readMs)}`);

        // ---- replay
        // Profiled (each statement's time, summed by statement: microseconds of overhead a statement), to show where replay's time goes.
        const profile = profileQueries(pd.database.db);
        const { ms: replayMs, result: replayed } = await timeIt(() => pd.replay()).finally(() => profile.stop());
        if (replayed.events !== all) throw new Error(`replay saw ${replayed.events} events, expected ${all}`);
        const rebuilt = await fingerprint(pd, appended);
        const diff = Object.keys(inline).filter((t) => inline[t] !== rebuilt[t]);
        const same = diff.length === 0 ? 'identical to the inline ones' : `DIFFER in ${diff.map((t) => `${t} (${inline[t]} → ${rebuilt[t]})`).join(', ')}`;
        const [counts] = await pd.database.db.query<{ runs: number; points: number; series: number; counted: number }>(
          `SELECT (SELECT count(*)::int FROM runs) AS runs, (SELECT coalesce(sum(n), 0)::int8 FROM metric_chunks) AS points,
                  (SELECT count(*)::int FROM metric_series) AS series, (SELECT coalesce(sum(count), 0)::int8 FROM metric_series) AS counted`,
        );
        const perRunPoints = 4 * (mix.get('MetricsLogged') ?? 0);
        const c = counts!;
        if (c.runs !== runs || c.points !== runs * perRunPoints || c.series !== runs * 2 || c.counted !== c.points) {
          throw new Error(`after replay: ${c.runs} runs, ${c.points} points stored, ${c.series} series counting ${c.counted}; expected ${runs}, ${runs * perRunPoints}, ${runs * 2}, ${runs * perRunPoints}`);
        }
        ctx.log(`replay()                          ${fmtRate(all, replayMs, 'events')} — ${fmtMs(replayMs)}; read models of the appended runs ${same}`);
        const inStatements = [...profile.statements.values()].reduce((sum, x) => sum + x.ms, 0);
        ctx.log(`replay's time by statement (total, calls; ${fmtMs(inStatements)} of ${fmtMs(replayMs)} awaiting statements, the rest JS):`);
        for (const line of profileLines(profile, 1).slice(0, 12)) ctx.log(`  ${line}`);

        // ---- replay without the checks: only the rebuild (replay({ check: false }), `pedigree replay --skip-checks`)
        const profileUnchecked = profileQueries(pd.database.db);
        const { ms: uncheckedMs, result: unchecked } = await timeIt(() => pd.replay({ check: false })).finally(() => profileUnchecked.stop());
        if (unchecked.events !== all || unchecked.checked) throw new Error(`unchecked replay: ${JSON.stringify(unchecked)}`);
        const rebuiltUnchecked = await fingerprint(pd, appended);
        const diffUnchecked = Object.keys(inline).filter((t) => inline[t] !== rebuiltUnchecked[t]);
        ctx.log(
          `replay({ check: false })          ${fmtRate(all, uncheckedMs, 'events')} — ${fmtMs(uncheckedMs)} (held the lock ${fmtMs(unchecked.lockedMs ?? 0)}); read models ${diffUnchecked.length ? `DIFFER in ${diffUnchecked.join(', ')}` : 'identical to the inline ones'}`,
        );
        ctx.log(`replay({ check: false })'s time by statement:`);
        for (const line of profileLines(profileUnchecked, 1).slice(0, 8)) ctx.log(`  ${line}`);

        // ---- verify
        const { ms: verifyMs, result: verified } = await timeIt(() => pd.verify());
        if (!verified.ok || verified.checked !== all) throw new Error(`verify: ${JSON.stringify(verified)}`);
        ctx.log(`verify()                          ${fmtRate(all, verifyMs, 'events')} — ${fmtMs(verifyMs)}; ${fmtInt(verified.checked)} events in ${fmtInt(verified.streams)} streams, chain ok`);
        // ---- baseline: COPY of the same rows (events; chunks of the MetricsLogged ones) into bare tables
        const copy = await copyBaseline(url, copyFiles);
        const copyRows = copy.events + copy.chunks;
        const replayRate = (all * 1000) / replayMs;
        const copyEventRate = (copy.events * 1000) / copy.ms;
        ctx.log(
          `COPY of the same rows (baseline)  ${fmtRate(copyRows, copy.ms, 'rows')} — ${fmtMs(copy.ms)} for the bulk part's ${fmtInt(copy.events)} events rows (${fmtMs(copy.eventsMs)}) + ${fmtInt(copy.chunks)} metric_chunks rows (${fmtMs(copy.chunksMs)}), ${fmtInt(copy.bytes / 2 ** 20)} MiB of COPY text; that is ${fmtRate(copy.events, copy.ms, 'events')}`,
        );
        ctx.log(`replay() ${fmtRate(all, replayMs, 'events')} beside COPY's ${fmtRate(copyRows, copy.ms, 'rows')} (${fmtRate(copy.events, copy.ms, 'events')}): replay / COPY ${fmtRatio(replayRate / copyEventRate)} in events/s`);
        const uncheckedRate = (all * 1000) / uncheckedMs;
        ctx.log(`replay() target ≥ ${fmtInt(TARGET)} events/s: ${fmtInt(replayRate)} events/s, ${replayRate >= TARGET ? 'MET' : 'NOT MET'} (checking every chain and chunk first, as verify() does at ${fmtRate(all, verifyMs, 'events')})`);
        ctx.log(
          `replay({ check: false }) target ≥ ${fmtInt(TARGET)} events/s: ${fmtInt(uncheckedRate)} events/s, ${uncheckedRate >= TARGET ? 'MET' : 'NOT MET'}; ${fmtRatio(uncheckedRate / copyEventRate)} of COPY's events/s`,
        );
        ctx.log(`ratios to the bare read: replay ${fmtRatio(readMs / replayMs)}, verify ${fmtRatio(readMs / verifyMs)}; replay / append ${fmtRatio(replayMs > 0 ? (all * 1000) / replayMs / appendRate : 0)}`);

        figures.push(
          { bench: 'replay', what: `store.append, ${fmtInt(appendedEvents)} events (inline projections)`, value: fmtRate(appendedEvents, appendMs, 'events'), note: `${fmtInt(n)} at this rate: ${fmtMs((n * 1000) / appendRate)}` },
          { bench: 'replay', what: `build history: ${fmtInt(n)} events`, value: fmtMs(buildMs), note: `append part ${fmtMs(appendMs)}, bulk part ${fmtMs(bulkMs)}` },
          { bench: 'replay', what: 'read all events (readAll), baseline', value: fmtRate(all, readMs, 'events'), note: fmtMs(readMs) },
          {
            bench: 'replay',
            what: 'COPY of the same rows into bare tables, baseline',
            value: fmtRate(copyRows, copy.ms, 'rows'),
            note: `${fmtInt(copy.events)} events + ${fmtInt(copy.chunks)} chunks in ${fmtMs(copy.ms)} (${fmtRate(copy.events, copy.ms, 'events')})`,
          },
          {
            bench: 'replay',
            what: 'replay()',
            value: fmtRate(all, replayMs, 'events'),
            note: `target ≥ ${fmtInt(TARGET)}: ${replayRate >= TARGET ? 'MET' : 'NOT MET'}; ${fmtMs(replayMs)}; ${fmtRatio(replayRate / copyEventRate)} of COPY's events/s; ${diff.length ? 'read models DIFFER' : 'read models identical'}`,
          },
          {
            bench: 'replay',
            what: 'replay({ check: false }) (rebuild only)',
            value: fmtRate(all, uncheckedMs, 'events'),
            note: `target ≥ ${fmtInt(TARGET)}: ${uncheckedRate >= TARGET ? 'MET' : 'NOT MET'}; ${fmtMs(uncheckedMs)}; ${fmtRatio(uncheckedRate / copyEventRate)} of COPY's events/s; ${diffUnchecked.length ? 'read models DIFFER' : 'read models identical'}`,
          },
          { bench: 'replay', what: 'verify()', value: fmtRate(all, verifyMs, 'events'), note: `${fmtMs(verifyMs)}; ${fmtRatio(readMs / verifyMs)} of read rate` },
        );
      } finally {
        await pd.close();
      }
    }).finally(() => rmSync(dir, { recursive: true, force: true }));
    return figures;
  },
};
