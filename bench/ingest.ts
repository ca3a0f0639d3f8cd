/**
 * Ingestion: metric points through the ledger (tracker.logMetrics: one
 * MetricsLogged event per 10,000-point batch, validated, chunked (one
 * metric_chunks row per key: steps, values and times as arrays, with their
 * digest), hashed, stored, and projected into metric_series in the same
 * transaction) vs a raw COPY of the same rows into a bare row-per-point
 * table with postgres.js: the fastest way to put rows into PostgreSQL, as
 * the baseline. Also where a batch's time goes (statement by statement).
 */
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Writable } from 'node:stream';
import { postgresOf } from '@pedigree/db';
import { POINT_BYTES, sha256Hex } from '@pedigree/ledger';
import { openPedigree, type MetricPointInput, type Pedigree } from '@pedigree/lineage';
import { fmtInt, fmtMs, fmtRate, fmtRatio, inTurn, measure, profileLines, profileQueries, rng, summarize, targetLine, timeIt, withServerDatabase, type Benchmark, type Figure } from './lib.ts';

const BATCH = 10_000;
const KEYS = ['train/loss', 'lr'] as const;
const TARGET = 1.0;

/** `total` points over two keys, in batches of BATCH (each batch: BATCH/2 steps × 2 keys). */
export function makeBatches(total: number, seed = 1): MetricPointInput[][] {
  const rand = rng(seed);
  const t0 = Date.UTC(2025, 0, 1);
  const steps = Math.ceil(total / KEYS.length);
  const batches: MetricPointInput[][] = [];
  let cur: MetricPointInput[] = [];
  for (let s = 0; s < steps; s++) {
    const loss = 2 + 3 * Math.exp(-s / (steps / 5)) + (rand() - 0.5) * 0.1;
    const lr = 3e-4 * Math.min(1, (s + 1) / 2000) * (1 - s / steps);
    for (const [k, value] of [
      [KEYS[0], loss],
      [KEYS[1], lr],
    ] as const) {
      cur.push({ key: k, step: s, value, time: t0 + s * 250 });
      if (cur.length === BATCH) {
        batches.push(cur);
        cur = [];
      }
    }
  }
  if (cur.length) batches.push(cur);
  return batches;
}

/**
 * The baseline: the points as rows of a bare table `metric_copy`, by COPY FROM STDIN. Rows are
 * formatted as COPY text inside the timed region (the ledger's JSON encoding is timed too).
 */
/** What copyPoints needs of a postgres.js `sql` (any copy of the driver). */
type CopySql = (strings: TemplateStringsArray) => { writable(): Promise<Writable> };

export async function copyPoints(sql: CopySql, runId: string, batches: MetricPointInput[][]): Promise<void> {
  const writable = await sql`COPY metric_copy (run_id, key, step, value, wall_time) FROM STDIN`.writable();
  async function* chunks() {
    for (const b of batches) {
      let s = '';
      for (const p of b) s += `${runId}\t${p.key}\t${p.step}\t${p.value}\t${p.time}\n`;
      yield s;
    }
  }
  await pipeline(Readable.from(chunks()), writable);
}

async function ledgerIngest(pd: Pedigree, projectId: string, batches: MetricPointInput[][], name: string): Promise<number> {
  const { runId } = await pd.tracker.createRun({ projectId, name, kind: 'pretrain', start: true });
  const { ms } = await timeIt(async () => {
    for (const b of batches) await pd.tracker.logMetrics(runId, b);
  });
  return ms;
}

export const ingest: Benchmark = {
  name: 'ingest',
  description: 'metric points: ledger (logMetrics, 10k-point MetricsLogged batches stored as chunks, projections) vs raw COPY into a bare row-per-point table',
  async run(ctx) {
    const total = ctx.quick ? 50_000 : 500_000;
    const reps = 3;
    const batches = makeBatches(total);
    const n = batches.reduce((s, b) => s + b.length, 0);
    ctx.log(`${fmtInt(n)} points over ${KEYS.length} keys, ${batches.length} batches of ≤ ${fmtInt(BATCH)}; ${reps} repetitions each, alternating, one fresh run per ledger repetition`);

    const figures: Figure[] = [];
    await withServerDatabase(async ({ url }) => {
      const pd = await openPedigree({ url }, { migrate: true, role: null /* the bench owns its database: baseline tables, VACUUM */ });
      try {
        const sql = postgresOf(pd.database.db)!;
        await sql`CREATE TABLE metric_copy (run_id uuid NOT NULL, key text NOT NULL, step int8 NOT NULL, value float8 NOT NULL, wall_time float8 NOT NULL)`;
        const { projectId } = await pd.tracker.createProject({ name: 'bench-ingest' });

        const copyOnce = (runId: string) => copyPoints(sql, runId, batches);

        // Warm both paths (connections, plans, JIT of the JS) on one batch.
        await copyOnce(crypto.randomUUID());
        await ledgerIngest(pd, projectId, batches.slice(0, 1), 'warmup');
        await sql`TRUNCATE metric_copy`;

        const copyMs: number[] = [];
        const ledgerMs: number[] = [];
        for (let r = 0; r < reps; r++) {
          const doCopy = async () => copyMs.push((await timeIt(() => copyOnce(crypto.randomUUID()))).ms);
          const doLedger = async () => ledgerMs.push(await ledgerIngest(pd, projectId, batches, `ingest-${r}`));
          await inTurn(r, doCopy, doLedger);
        }
        const [{ copied, stored }] = (await sql<{ copied: number; stored: number }[]>`
          SELECT (SELECT count(*)::int FROM metric_copy) AS copied, (SELECT coalesce(sum(n), 0)::int FROM metric_chunks) AS stored`) as unknown as [{ copied: number; stored: number }];
        if (copied !== n * reps) throw new Error(`COPY stored ${copied} rows, expected ${n * reps}`);
        if (stored !== n * reps + batches[0]!.length) throw new Error(`the ledger stored ${stored} points, expected ${n * reps + batches[0]!.length}`);

        const copy = summarize(copyMs);
        const ledger = summarize(ledgerMs);
        const copyRate = (n * 1000) / copy.median;
        const ledgerRate = (n * 1000) / ledger.median;
        const ratio = ledgerRate / copyRate;
        ctx.log(`COPY (bare table)      ${fmtRate(n, copy.median, 'points')} — median ${fmtMs(copy.median)} [${copyMs.map(fmtMs).join(', ')}]`);
        ctx.log(`ledger (PostgreSQL)    ${fmtRate(n, ledger.median, 'points')} — median ${fmtMs(ledger.median)} [${ledgerMs.map(fmtMs).join(', ')}]`);
        ctx.log(`ledger / COPY          ${targetLine(ratio, TARGET, '')}`);

        // Where the ledger's time goes, per 10k-point batch: the JS before the transaction (validation,
        // chunking, digests, canonical JSON), and each statement's round trip, profiled over one more pass.
        const one = batches[0]!;
        const prep = await measure(() => pd.store.prepare([{ type: 'MetricsLogged', data: { points: one.map((p) => ({ ...p, time: p.time! })) } }]), { reps: 5, warmup: 2 });
        const [prepared] = pd.store.prepare([{ type: 'MetricsLogged', data: { points: one.map((p) => ({ ...p, time: p.time! })) } }]);
        const digestBytes = prepared!.chunks!.reduce((s, c) => s + 3 * POINT_BYTES * c.n, 0);
        const hash = await measure(() => sha256Hex(prepared!.dataJson), { reps: 5, warmup: 2 });
        const profile = profileQueries(pd.database.db);
        let profiledMs: number;
        try {
          profiledMs = await ledgerIngest(pd, projectId, batches, 'ingest-profiled');
        } finally {
          profile.stop();
        }
        const perBatch = ledger.median / batches.length;
        const inTx = profile.transactions.ms / batches.length;
        const inStatements = [...profile.statements.values()].reduce((s, x) => s + x.ms, 0) / batches.length;
        ctx.log(
          `per ${fmtInt(BATCH)}-point batch: ${fmtMs(perBatch)} in all (median pass); store.prepare (validate, chunk, encode and SHA-256 ${fmtInt(digestBytes / 1024)} KiB of chunk columns, canonicalise) ${fmtMs(prep.median)}; SHA-256 of the ${fmtInt(prepared!.dataJson.length)}-byte manifest ${fmtMs(hash.median)}`,
        );
        ctx.log(
          `profiled pass (${fmtMs(profiledMs / batches.length)} a batch): the transaction ${fmtMs(inTx)} (its statements ${fmtMs(inStatements)}, the rest JS between them and BEGIN/COMMIT); per batch, by statement:`,
        );
        for (const line of profileLines(profile, batches.length)) ctx.log(`  ${line}`);

        figures.push(
          { bench: 'ingest', what: 'COPY into bare table (PostgreSQL), baseline', value: fmtRate(n, copy.median, 'points') },
          { bench: 'ingest', what: 'ledger logMetrics (PostgreSQL)', value: fmtRate(n, ledger.median, 'points') },
          { bench: 'ingest', what: 'ratio ledger / COPY', value: fmtRatio(ratio), note: `target ≥ ${TARGET}: ${ratio >= TARGET ? 'MET' : 'NOT MET'}` },
        );
      } finally {
        await pd.close();
      }
    });

    // Embedded mode, for information: the same ledger path on PGlite in memory.
    const { ms: openMs, result: lite } = await timeIt(() => openPedigree({ dir: ':memory:' }));
    try {
      const { projectId } = await lite.tracker.createProject({ name: 'bench-ingest' });
      await ledgerIngest(lite, projectId, batches.slice(0, 1), 'warmup');
      const ms = await ledgerIngest(lite, projectId, batches, 'ingest');
      ctx.log(`ledger (PGlite, in memory) ${fmtRate(n, ms, 'points')} — ${fmtMs(ms)}, one run (opening the store took ${fmtMs(openMs)})`);
      figures.push({ bench: 'ingest', what: 'ledger logMetrics (PGlite in memory), info', value: fmtRate(n, ms, 'points') });
    } finally {
      await lite.close();
    }
    return figures;
  },
};
