/**
 * Concurrent appends: small events (one NoteAdded per append) from 8 writers
 * at once, each on a run stream of its own and through a connection of its
 * own (a Pedigree of its own on the same database), vs 1 writer making the
 * same total number of appends, on the PostgreSQL server: the aggregate
 * events/s of each, and their ratio. Appends to different streams take no
 * store-wide lock for their transaction (only pedigree_reserve_positions's
 * moment), so they should overlap.
 *
 * Three ways in, each timed the same way:
 *   - store.append (the target: the ledger's write path, inline projections);
 *   - tracker.addNote (for information: what the API's commands do, which
 *     pass a `check` to append);
 *   - tracker.logMetrics of one point (for information: a small log call).
 * Each: 1 writer and 8 writers alternating, median of 3.
 *
 * Then the same (store.append only) on PGlite in memory, for information:
 * one connection, so 8 writers take turns (expect ≤ 1×).
 */
import { streamIds } from '@pedigree/ledger';
import { openPedigree, type Pedigree } from '@pedigree/lineage';
import { fmtInt, fmtMs, fmtRate, fmtRatio, inTurn, profileLines, profileQueries, summarize, targetLine, timeIt, withServerDatabase, type BenchContext, type Benchmark, type Figure } from './lib.ts';

const WRITERS = 8;
const TARGET = 1.5;
const REPS = 3;
/** Appends in the profiled pass of each way (one writer): where one append's time goes. */
const PROFILED = 50;

type Way = 'store.append' | 'tracker.addNote' | 'tracker.logMetrics';

interface Writer {
  pd: Pedigree;
  projectId: string;
  runId: string;
  /** Appends made so far (steps for logMetrics, note numbers). */
  made: number;
}

async function appendOne(w: Writer, way: Way): Promise<void> {
  const i = w.made++;
  if (way === 'store.append') {
    await w.pd.store.append(streamIds.run(w.runId), [{ type: 'NoteAdded', data: { text: `note ${i}`, author: 'bench' } }], { projectId: w.projectId, expectedVersion: 'any' });
  } else if (way === 'tracker.addNote') {
    await w.pd.tracker.addNote(w.runId, `note ${i}`, 'bench');
  } else {
    await w.pd.tracker.logMetrics(w.runId, [{ key: 'loss', step: i, value: 1 / (i + 1), time: 1.7e12 + i }]);
  }
}

/** `writers` writers at once, `total` appends in all (split evenly); ms from the first to the last. */
async function timed(writers: Writer[], total: number, way: Way): Promise<number> {
  const each = Math.ceil(total / writers.length);
  return (
    await timeIt(() =>
      Promise.all(
        writers.map(async (w) => {
          for (let i = 0; i < each; i++) await appendOne(w, way);
        }),
      ),
    )
  ).ms;
}

interface Comparison {
  way: Way;
  one: number;
  many: number;
  ratio: number;
  oneMs: number[];
  manyMs: number[];
}

/** 1 writer vs WRITERS writers, alternating, REPS times; the same total each time. */
async function compare(ctx: BenchContext, label: string, writers: Writer[], total: number, way: Way): Promise<Comparison> {
  for (const w of writers) for (let i = 0; i < 5; i++) await appendOne(w, way); // warm each connection and plan
  // What autovacuum does as the tables grow (the test server runs without it), before every timed pass: without
  // fresh statistics a plan cached while events was tiny (a sequential scan) stays cached and slows every append.
  const analyze = () => writers[0]!.pd.database.db.query('ANALYZE');
  const oneMs: number[] = [];
  const manyMs: number[] = [];
  for (let r = 0; r < REPS; r++) {
    const one = async () => {
      await analyze();
      oneMs.push(await timed(writers.slice(0, 1), total, way));
    };
    const many = async () => {
      await analyze();
      manyMs.push(await timed(writers, total, way));
    };
    await inTurn(r, one, many);
  }
  const one = summarize(oneMs).median;
  const many = summarize(manyMs).median;
  const ratio = one / many;
  ctx.log(`${label} ${way}: 1 writer  ${fmtRate(total, one, 'events')} [${oneMs.map(fmtMs).join(', ')}]`);
  ctx.log(`${label} ${way}: ${WRITERS} writers ${fmtRate(total, many, 'events')} [${manyMs.map(fmtMs).join(', ')}]`);
  return { way, one, many, ratio, oneMs, manyMs };
}

async function makeWriters(pds: Pedigree[], label: string): Promise<Writer[]> {
  const { projectId } = await pds[0]!.tracker.createProject({ name: `bench-appends-${label}` });
  const writers: Writer[] = [];
  for (const [i, pd] of pds.entries()) {
    const { runId } = await pds[0]!.tracker.createRun({ projectId, name: `writer-${i}`, kind: 'pretrain', start: true });
    writers.push({ pd, projectId, runId, made: 0 });
  }
  return writers;
}

export const appends: Benchmark = {
  name: 'appends',
  description: `small appends: ${WRITERS} writers on separate run streams (a connection each) vs 1 writer, same total, aggregate events/s`,
  async run(ctx) {
    const total = ctx.quick ? 240 : 1600;
    const figures: Figure[] = [];
    ctx.log(`${fmtInt(total)} appends of one small event per repetition (${WRITERS} writers: ${fmtInt(total / WRITERS)} each), ${REPS} repetitions alternating 1 and ${WRITERS} writers`);

    await withServerDatabase(async ({ url }) => {
      const main = await openPedigree({ url }, { migrate: true, role: null /* the bench owns its database */ });
      const pds: Pedigree[] = [main];
      try {
        for (let i = 1; i < WRITERS; i++) pds.push(await openPedigree({ url }, { role: null }));
        const [connections] = await main.database.db.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database()');
        ctx.log(`PostgreSQL: ${WRITERS} stores open on the database (${connections!.n} connections now; each writer appends through its own)`);
        const results: Comparison[] = [];
        for (const way of ['store.append', 'tracker.addNote', 'tracker.logMetrics'] as const) {
          const writers = await makeWriters(pds, way.replace('.', '-'));
          const r = await compare(ctx, 'PostgreSQL', writers, total, way);
          results.push(r);
          const target = way === 'store.append' ? targetLine(r.ratio, TARGET, '×') : `${fmtRatio(r.ratio)} (for information)`;
          ctx.log(`PostgreSQL ${way}: ${WRITERS} writers / 1 writer  ${target}`);
          // What one append costs in round trips: a profiled pass of 1 writer (not part of the figures).
          await main.database.db.query('ANALYZE');
          const profile = profileQueries(writers[0]!.pd.database.db);
          const profiledMs = await timed(writers.slice(0, 1), PROFILED, way).finally(() => profile.stop());
          const statements = [...profile.statements.values()].reduce((sum, x) => sum + x.calls, 0) + 2 * profile.transactions.calls;
          ctx.log(`PostgreSQL ${way}: one append, 1 writer: ${fmtMs(profiledMs / PROFILED)}, ${(statements / PROFILED).toFixed(1)} statements (BEGIN and COMMIT included):`);
          for (const line of profileLines(profile, PROFILED)) ctx.log(`    ${line}`);
        }
        // The log the writers left must still be sound: every chain intact, every event there.
        const verified = await main.verify();
        const [count] = await main.database.db.query<{ n: number }>("SELECT count(*)::int AS n FROM events WHERE type IN ('NoteAdded', 'MetricsLogged')");
        const expected = 3 * (WRITERS * 5 + REPS * 2 * total + PROFILED);
        if (!verified.ok || count!.n !== expected) throw new Error(`after the appends: verify ${JSON.stringify(verified)}; ${count!.n} events, expected ${expected}`);
        ctx.log(`PostgreSQL: verify() ok over ${fmtInt(verified.checked)} events in ${fmtInt(verified.streams)} streams`);
        for (const r of results) {
          const target = r.way === 'store.append';
          figures.push(
            { bench: 'appends', what: `${r.way}, 1 writer (PostgreSQL)${target ? ', baseline' : ', info'}`, value: fmtRate(total, r.one, 'events') },
            { bench: 'appends', what: `${r.way}, ${WRITERS} writers (PostgreSQL)${target ? '' : ', info'}`, value: fmtRate(total, r.many, 'events') },
            {
              bench: 'appends',
              what: `ratio ${WRITERS} writers / 1, ${r.way} (PostgreSQL)${target ? '' : ', info'}`,
              value: fmtRatio(r.ratio),
              note: target ? `target ≥ ${TARGET}×: ${r.ratio >= TARGET ? 'MET' : 'NOT MET'}` : '',
            },
          );
        }
      } finally {
        for (const pd of pds) await pd.close();
      }
    });

    // Embedded mode, for information: one connection, the writers take turns.
    const lite = await openPedigree({ dir: ':memory:' }, { role: null /* ANALYZE needs the owner */ });
    try {
      const writers = await makeWriters(Array.from({ length: WRITERS }, () => lite), 'pglite');
      const r = await compare(ctx, 'PGlite', writers, total, 'store.append');
      ctx.log(`PGlite store.append: ${WRITERS} writers / 1 writer  ${fmtRatio(r.ratio)} (for information: one connection)`);
      figures.push(
        { bench: 'appends', what: 'store.append, 1 writer (PGlite in memory), info', value: fmtRate(total, r.one, 'events') },
        { bench: 'appends', what: `store.append, ${WRITERS} writers (PGlite in memory), info`, value: fmtRate(total, r.many, 'events') },
        { bench: 'appends', what: `ratio ${WRITERS} writers / 1 (PGlite), info`, value: fmtRatio(r.ratio), note: 'one connection: expect ≤ 1×' },
      );
    } finally {
      await lite.close();
    }
    return figures;
  },
};
