/**
 * The client over HTTP into PostgreSQL: four runs logging concurrently in
 * batches of 10,000 points through the typed client, to the real server
 * (`pedigree start --url …`, Next.js, /api/trpc) in a child process, vs a raw
 * COPY of the same rows into a bare row-per-point table, in the same run.
 * Also the latency of one small log call (one point, one round trip), p50
 * and p99, against a no-op request through the same client and transport
 * (`system.health`), the two interleaved call by call.
 */
import postgres from 'postgres';
import { connect } from '@pedigree/client';
import { pedigreeCommand, pedigreeServer } from '../test/support/server.ts';
import { copyPoints, makeBatches } from './ingest.ts';
import { fmtInt, fmtMs, fmtRate, fmtRatio, inTurn, summarize, targetLine, timeIt, withServerDatabase, type Benchmark, type Figure } from './lib.ts';

const RUNS = 4;
const BATCH = 10_000;
const TARGET = 1.0;
/** One-point logMetrics latency / system.health latency, at p50 and at p99. */
const LATENCY_TARGET = 2;

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;

export const client: Benchmark = {
  name: 'client',
  description: `client over HTTP (real server, ${RUNS} concurrent runs, ${fmtInt(BATCH)}-point batches) into PostgreSQL vs raw COPY; latency of a one-point log call vs a no-op request`,
  async run(ctx) {
    const perRun = ctx.quick ? 20_000 : 100_000;
    const reps = ctx.quick ? 1 : 3;
    const batches = makeBatches(perRun);
    const total = perRun * RUNS;
    const figures: Figure[] = [];
    await withServerDatabase(async ({ url }) => {
      const migrated = await pedigreeCommand(['migrate', '--url', url]);
      if (migrated.code !== 0) throw new Error(`migrate failed: ${migrated.stderr}`);
      await pedigreeCommand(['projects', 'create', 'bench', '--url', url]);
      const key = JSON.parse((await pedigreeCommand(['keys', 'create', '--project', 'bench', '--json', '--url', url])).stdout) as { key: string };
      const sql = postgres(url, { max: 4, onnotice: () => {} });
      await sql`CREATE TABLE metric_copy (run_id uuid NOT NULL, key text NOT NULL, step int8 NOT NULL, value float8 NOT NULL, wall_time float8 NOT NULL)`;
      const server = await pedigreeServer({ url, auth: 'keys' });
      const { ms: startMs } = await timeIt(() => server.start());
      ctx.log(`server up in ${fmtMs(startMs)} at ${server.url}; ${RUNS} runs × ${fmtInt(perRun)} points = ${fmtInt(total)} per repetition, ${reps} repetitions, alternating with COPY`);
      const pd = await connect({ url: server.url, apiKey: key.key, batchSize: BATCH, flushIntervalMs: 10_000, handleSignals: false });
      try {
        const viaClient = async (rep: number) => {
          const runs = await Promise.all(Array.from({ length: RUNS }, (_, i) => pd.startRun({ project: 'bench', name: `r${rep}-${i}`, kind: 'pretrain' })));
          return (
            await timeIt(() =>
              Promise.all(
                runs.map(async (run) => {
                  for (const b of batches) {
                    for (const p of b) run.log({ [p.key]: p.value }, p.step);
                  }
                  await run.flush();
                }),
              ),
            )
          ).ms;
        };
        const viaCopy = async () => (await timeIt(() => Promise.all(Array.from({ length: RUNS }, () => copyPoints(sql, crypto.randomUUID(), batches))))).ms;

        await viaCopy(); // warm both
        const warm = await pd.startRun({ project: 'bench', name: 'warmup', kind: 'pretrain' });
        for (const p of batches[0]!) warm.log({ [p.key]: p.value }, p.step);
        await warm.finish();

        const clientMs: number[] = [];
        const copyMs: number[] = [];
        for (let r = 0; r < reps; r++) {
          await inTurn(
            r,
            async () => copyMs.push(await viaCopy()),
            async () => clientMs.push(await viaClient(r)),
          );
        }
        const [{ stored }] = (await sql<{ stored: number }[]>`SELECT coalesce(sum(n), 0)::int AS stored FROM metric_chunks`) as unknown as [{ stored: number }];
        const expected = total * reps + batches[0]!.length;
        if (stored !== expected) throw new Error(`the server stored ${stored} points, expected ${expected}`);

        const c = summarize(clientMs);
        const k = summarize(copyMs);
        const ratio = k.median / c.median;
        ctx.log(`COPY, ${RUNS} streams       ${fmtRate(total, k.median, 'points')} — [${copyMs.map(fmtMs).join(', ')}]`);
        ctx.log(`client over HTTP        ${fmtRate(total, c.median, 'points')} — [${clientMs.map(fmtMs).join(', ')}]`);
        ctx.log(`client / COPY           ${targetLine(ratio, TARGET, '')}`);

        // One small call: a single point, one request, one round trip; against a no-op request
        // (system.health: no key check, one tiny query) through the same client, interleaved call by call.
        const lat = await pd.startRun({ project: 'bench', name: 'latency', kind: 'pretrain' });
        const n = ctx.quick ? 100 : 500;
        const logSamples: number[] = [];
        const noopSamples: number[] = [];
        for (let i = 0; i < n + 20; i++) {
          const calls = [
            async () => {
              const t0 = performance.now();
              await pd.api.runs.logMetrics.mutate({ runId: lat.id, points: [{ key: 'loss', step: i, value: 1 / (i + 1) }] });
              if (i >= 20) logSamples.push(performance.now() - t0);
            },
            async () => {
              const t0 = performance.now();
              await pd.api.system.health.query();
              if (i >= 20) noopSamples.push(performance.now() - t0);
            },
          ];
          if (i % 2) calls.reverse();
          for (const call of calls) await call();
        }
        logSamples.sort((a, b) => a - b);
        noopSamples.sort((a, b) => a - b);
        const p50 = percentile(logSamples, 50);
        const p99 = percentile(logSamples, 99);
        const h50 = percentile(noopSamples, 50);
        const h99 = percentile(noopSamples, 99);
        const r50 = p50 / h50;
        const r99 = p99 / h99;
        const met = (r: number) => (r <= LATENCY_TARGET ? 'MET' : 'NOT MET');
        ctx.log(`one-point logMetrics    p50 ${fmtMs(p50)}, p99 ${fmtMs(p99)} over ${n} calls`);
        ctx.log(`no-op (system.health)   p50 ${fmtMs(h50)}, p99 ${fmtMs(h99)} over ${n} calls, interleaved`);
        ctx.log(`logMetrics / no-op      p50 ${fmtRatio(r50)} (target ≤ ${LATENCY_TARGET}: ${met(r50)}), p99 ${fmtRatio(r99)} (target ≤ ${LATENCY_TARGET}: ${met(r99)})`);

        figures.push(
          { bench: 'client', what: `COPY into bare table, ${RUNS} streams (baseline)`, value: fmtRate(total, k.median, 'points') },
          { bench: 'client', what: `client over HTTP, ${RUNS} runs, PostgreSQL`, value: fmtRate(total, c.median, 'points') },
          { bench: 'client', what: 'ratio client / COPY', value: fmtRatio(ratio), note: `target ≥ ${TARGET}: ${ratio >= TARGET ? 'MET' : 'NOT MET'}` },
          { bench: 'client', what: 'one-point logMetrics latency', value: `p50 ${fmtMs(p50)}, p99 ${fmtMs(p99)}` },
          { bench: 'client', what: 'no-op request (system.health) latency, baseline', value: `p50 ${fmtMs(h50)}, p99 ${fmtMs(h99)}` },
          { bench: 'client', what: 'ratio logMetrics / no-op latency', value: `p50 ${fmtRatio(r50)}, p99 ${fmtRatio(r99)}`, note: `target ≤ ${LATENCY_TARGET}: p50 ${met(r50)}, p99 ${met(r99)}` },
        );
      } finally {
        await pd.close();
        await server.stop();
        await sql.end();
      }
    });
    return figures;
  },
};
