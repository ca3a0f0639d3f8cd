/**
 * Runs the benchmarks and prints their figures, then a summary table.
 *
 *   npx tsx bench/run.ts [--quick] [name …]
 *   npm run bench -- [--quick] [name …]
 *
 * Names filter by substring (`ingest`, `client`, `buckets`, `appends`, `replay`, `replay-size`, `diff`, `matmul`, `web`, `train-step`, `memory`, `soak`, `lab`). --quick uses
 * small sizes (a smoke test of the benchmarks themselves, not a measurement).
 * Figures are printed, never asserted; the exit status is non-zero only when
 * a benchmark could not run (an error, or no PostgreSQL server).
 */
import os from 'node:os';
import { appends } from './appends.ts';
import { buckets } from './buckets.ts';
import { client } from './client.ts';
import { diff } from './diff.ts';
import { ingest } from './ingest.ts';
import { lab } from './lab.ts';
import { matmul } from './matmul.ts';
import { memory } from './memory.ts';
import { fmtMs, SERVER_URL, serverUnavailable, table, timeIt, type Benchmark, type Figure } from './lib.ts';
import { replay } from './replay.ts';
import { replaySize } from './replay-size.ts';
import { soak } from './soak.ts';
import { trainStep } from './train-step.ts';
import { web } from './web.ts';

const ALL: Benchmark[] = [ingest, client, buckets, appends, replay, replaySize, diff, matmul, web, trainStep, memory, soak, lab];

const args = process.argv.slice(2);
const unknown = args.filter((a) => a.startsWith('-') && a !== '--quick' && a !== '--help' && a !== '-h');
if (args.includes('--help') || args.includes('-h') || unknown.length) {
  if (unknown.length) console.error(`unknown option ${unknown.join(' ')}`);
  console.log(`usage: tsx bench/run.ts [--quick] [name …]\n\nbenchmarks:\n${ALL.map((b) => `  ${b.name.padEnd(8)} ${b.description}`).join('\n')}`);
  process.exit(unknown.length ? 2 : 0);
}
const quick = args.includes('--quick');
const filters = args.filter((a) => !a.startsWith('-'));
const selected = filters.length ? ALL.filter((b) => filters.some((f) => b.name.includes(f))) : ALL;
if (selected.length === 0) {
  console.error(`no benchmark matches ${filters.join(', ')} (have: ${ALL.map((b) => b.name).join(', ')})`);
  process.exit(2);
}

const why = await serverUnavailable();
if (why) {
  console.error(`bench: ${why}\nThe benchmarks measure against a PostgreSQL server; set PEDIGREE_BENCH_DATABASE_URL (or PEDIGREE_TEST_DATABASE_URL).`);
  process.exit(1);
}

console.log(
  `pedigree benchmarks${quick ? ' (--quick: small sizes, smoke test)' : ''} — node ${process.version}, ${os.cpus().length} CPUs (${os.cpus()[0]?.model.trim()}), server ${new URL(SERVER_URL).host}`,
);
console.log('Figures are medians of repeated runs where stated; the machine is shared and noisy, so compare ratios, not absolute rates.\n');

const figures: Figure[] = [];
const failed: string[] = [];
const { ms: totalMs } = await timeIt(async () => {
  for (const b of selected) {
    console.log(`== ${b.name}: ${b.description}`);
    const { ms } = await timeIt(async () => {
      try {
        figures.push(...(await b.run({ quick, log: (msg) => console.log(`[${b.name}] ${msg}`) })));
      } catch (err) {
        failed.push(b.name);
        console.error(`[${b.name}] FAILED: ${(err as Error).stack ?? err}`);
      }
    });
    console.log(`== ${b.name} done in ${fmtMs(ms)}\n`);
  }
});

console.log(`Summary${quick ? ' (--quick)' : ''}`);
console.log(table([['benchmark', 'figure', 'value', 'note'], ...figures.map((f) => [f.bench, f.what, f.value, f.note ?? ''])]));
console.log(`\nall benchmarks took ${fmtMs(totalMs)}${failed.length ? `; FAILED: ${failed.join(', ')}` : ''}`);
process.exit(failed.length ? 1 : 0);
