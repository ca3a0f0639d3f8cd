import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { createApiKey, defaultAuthMode, installServer, ReadRouting, TRPC_ENDPOINT, uninstallServer, type AuthMode } from '@pedigree/api';
import { defaultHome, defaultReadUrls, readEnv, redact, splitUrls, stripQuery } from '@pedigree/db';
import type { Pedigree, RunView } from '@pedigree/lineage';
import { choiceEnv, choiceOption, intOption, UsageError, type ParsedArgs } from '../args.ts';
import type { CliEnv } from '../env.ts';
import type { Command, Context } from '../command.ts';
import { CHECKPOINT_START_OPTIONS, checkpointStartSettings, startCheckpointing } from './checkpoint.ts';
import { formatCount, shortId } from '../format.ts';
import { DEFAULT_HOST, DEFAULT_PORT, isLoopbackAddress, listen, markServing, untilStopSignal } from '../server.ts';
import { describeStore, listRuns, projectNames } from '../store.ts';
import { DEMO_PROJECT } from './demo.ts';
import { printLineageTree } from './lineage.ts';
import { printRunsTable } from './runs.ts';
import { recordSampleWithProgress, SAMPLE_PROJECT } from './sample.ts';

const RUNS_SHOWN = 10;
const AUTH_MODES = ['open', 'keys'] as const;
/** What an empty store gets: the recipe trained for real (its sizes), the synthetic sample, or nothing. */
const DEMO_MODES = ['quick', 'full', 'ci', 'sample', 'none'] as const;
type DemoMode = (typeof DEMO_MODES)[number];
const PEDIGREE_BIN = path.resolve(import.meta.dirname, '../../bin/pedigree.mjs');
/** On stop, a demo still training gets this long to fail its open runs through the server. */
const DEMO_STOP_MS = 15_000;

export const startCommand: Command = {
  name: 'start',
  summary: 'open the store (creating it, with a sample, when empty), take a tour, and serve the API and web app',
  usage: 'start [--port N] [--host H] [--auth open|keys] [--demo quick|full|sample|none] [--read-url URL[,URL…]] [--direct-url URL]',
  description: `Opens the store (the embedded one unless --url or DATABASE_URL names a server), applies pending migrations, shows the runs and the lineage of the latest training run, then serves the web app and the tRPC API (${TRPC_ENDPOINT}) from this process until Ctrl-C (SIGINT) or SIGTERM, which closes the store cleanly. On an empty store it records the quick demo (\`pedigree demo\`: the Phi-4 recipe at toy scale, trained for real in a child process while the dashboard shows it live), or what --demo says. With --json, prints one line of JSON ({url, store, auth, …}) once it is listening.`,
  options: [
    { name: 'port', type: 'string', value: 'N', description: `port to listen on (default: $PEDIGREE_PORT, else ${DEFAULT_PORT}; 0 picks a free one)` },
    { name: 'host', type: 'string', value: 'H', description: `address to listen on (default: ${DEFAULT_HOST}, this machine only)` },
    { name: 'auth', type: 'string', value: 'MODE', description: 'open (no API key needed) or keys (default: open for the embedded store, keys for a server; $PEDIGREE_AUTH)' },
    { name: 'demo', type: 'string', value: 'MODE', description: 'what an empty store gets: quick (default; the trained recipe, a few minutes), full, sample (synthetic curves, instant) or none ($PEDIGREE_DEMO)' },
    { name: 'read-url', type: 'string', value: 'URL[,URL…]', description: 'streaming replicas of the --url server that serve the API\'s reads; writes, and reads that must see the caller\'s own writes, go to the primary ($PEDIGREE_READ_URLS; docs/scale.md)' },
    { name: 'direct-url', type: 'string', value: 'URL', description: 'the primary itself when --url is a pooler (`?pgbouncer=true`): migrations and live updates (LISTEN) go there ($PEDIGREE_DIRECT_URL)' },
    ...CHECKPOINT_START_OPTIONS,
  ],
  async run(ctx) {
    const { host, port, auth, demo } = serveOptions(ctx.options, ctx.env);
    const { readUrls, directUrl } = scaleOptions(ctx);
    const checkpointSettings = checkpointStartSettings(ctx);
    const { term } = ctx;
    // From here on, Ctrl-C means a clean stop (once startup is done), never a store closed mid-write.
    const stopSignal = untilStopSignal();
    // The port first: if it is taken, fail before this process touches the store.
    const web = await listen({ host, port });
    let pd: Pedigree | undefined;
    let releaseStore = () => {};
    let demoChild: DemoChild | null = null;
    let checkpoints: ReturnType<typeof startCheckpointing> = null;
    let reads: ReadRouting | undefined;
    try {
      pd = await ctx.openStore({ migrate: true, create: true, directUrl });
      const { db } = pd.database;
      if (readUrls.length) reads = await ReadRouting.open(pd, readUrls);
      if (db.kind === 'pglite') releaseStore = markServing(db.location, { pid: process.pid, url: web.url });
      const tour = await showTour(ctx, pd, demo);
      const authMode = auth ?? defaultAuthMode(db.kind);
      if (authMode === 'open') {
        // Anyone who reaches an open server reads and writes every project: this machine only.
        if (!isLoopbackAddress(host)) throw new UsageError(`refusing to serve with --auth open on ${host}, which other machines can reach; serve with --auth keys (and create keys: pedigree keys create --project P), or listen on 127.0.0.1`);
        web.onlyLoopbackHosts();
      }
      installServer({ pedigree: pd, authMode, reads });
      await web.serveApp();
      const recordDemo = tour.empty && demo !== 'sample' && demo !== 'none' ? demo : null;

      if (ctx.json) {
        const { store, recordedSample, events } = tour;
        const replicas = reads?.locations ?? [];
        term.line(JSON.stringify({ url: web.url, api: `${web.url}${TRPC_ENDPOINT}`, port: web.port, store, kind: db.kind, auth: authMode, recordedSample, demo: recordDemo, events, pid: process.pid, replicas }));
      } else {
        term.line(`${term.paint.bold('Pedigree is serving')} ${term.paint.cyan(web.url)}  (API: ${TRPC_ENDPOINT}, store: ${tour.store}, auth: ${authMode})`);
        if (reads) term.line(`Reads from ${reads.size === 1 ? 'a replica' : `${reads.size} replicas`}: ${reads.locations.join(', ')}`);
        term.line(term.paint.dim('Press Ctrl-C to stop; the store is closed cleanly.'));
      }
      checkpoints = startCheckpointing(ctx, pd, checkpointSettings);
      if (recordDemo) demoChild = await startDemo(ctx, pd, { size: recordDemo, url: web.url, authMode });

      const signal = await stopSignal;
      if (!ctx.json) term.line(`Stopping (${signal})…`);
    } finally {
      await demoChild?.stop();
      await web.close();
      uninstallServer();
      await checkpoints?.stop();
      await reads?.close();
      // Closed here rather than by the dispatcher, so that the store is flushed before the note saying it is in use goes.
      await pd?.close();
      releaseStore();
    }
    if (!ctx.json) term.line('Stopped.');
  },
};

function serveOptions(options: ParsedArgs, env: CliEnv): { host: string; port: number; auth: AuthMode | undefined; demo: DemoMode } {
  const host = options.string('host') ?? DEFAULT_HOST;
  if (!host) throw new UsageError('--host needs an address');
  const fromEnv = env.port;
  const port = intOption(options, 'port', { min: 0, max: 65535 }) ?? (fromEnv ? portFromEnv(fromEnv) : DEFAULT_PORT);
  const demoEnv = choiceEnv('PEDIGREE_DEMO', env.demo, DEMO_MODES);
  const demo = choiceOption(options, 'demo', DEMO_MODES) ?? demoEnv ?? 'quick';
  return { host, port, auth: choiceOption(options, 'auth', AUTH_MODES), demo };
}

/** --read-url (else PEDIGREE_READ_URLS) and --direct-url (else PEDIGREE_DIRECT_URL): replicas and the primary behind a pooler, for a server store only. */
function scaleOptions(ctx: Context): { readUrls: string[]; directUrl: string | undefined } {
  const flag = ctx.options.string('read-url');
  const readUrls = flag !== undefined ? splitUrls(flag) : defaultReadUrls();
  const directUrl = ctx.options.string('direct-url') ?? readEnv().PEDIGREE_DIRECT_URL;
  for (const [what, url] of [...readUrls.map((u) => ['--read-url', u] as const), ...(directUrl !== undefined ? [['--direct-url', directUrl] as const] : [])]) {
    if (!/^postgres(ql)?:\/\//.test(url)) throw new UsageError(`${what} must be postgres:// or postgresql:// URLs, got ${JSON.stringify(redact(stripQuery(url)))}`);
  }
  if (flag !== undefined && readUrls.length === 0) throw new UsageError('--read-url needs at least one URL');
  if ((readUrls.length || directUrl) && !('url' in ctx.target)) throw new UsageError('--read-url and --direct-url are for a PostgreSQL server store: give --url (or DATABASE_URL) too');
  return { readUrls, directUrl };
}

interface DemoChild {
  /** Interrupts the demo if it is still training (its runs are marked failed through the server), and waits for it. */
  stop(): Promise<void>;
}

/**
 * Records the demo recipe in a child process (\`pedigree demo --server\`),
 * through this server: training never blocks the requests this process
 * answers, and the dashboard shows the runs as they train. In keys mode it
 * gets a key of its own for the demo project.
 */
async function startDemo(ctx: Context, pd: Pedigree, opts: { size: 'quick' | 'full' | 'ci'; url: string; authMode: AuthMode }): Promise<DemoChild> {
  const { term } = ctx;
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.PEDIGREE_API_KEY;
  if (opts.authMode === 'keys') {
    const projectId = await pd.tracker.ensureProject(DEMO_PROJECT);
    env.PEDIGREE_API_KEY = (await createApiKey(pd.database.db, projectId, 'demo')).key;
  }
  const { db } = pd.database;
  const checkpoints = path.join(db.kind === 'pglite' ? db.location : defaultHome(), 'checkpoints');
  const args = [PEDIGREE_BIN, 'demo', '--server', opts.url, '--size', opts.size, '--project', DEMO_PROJECT, '--checkpoints', checkpoints];
  if (!ctx.json) {
    term.line();
    term.line(`${term.paint.bold('Recording the demo')}: the Phi-4 recipe at toy scale (${opts.size}), trained now; watch it at ${term.paint.cyan(opts.url)}`);
  }
  // --json: stdout carries only the serving line, so the demo's output goes to stderr
  const child: ChildProcess = spawn(process.execPath, args, { env, stdio: ['ignore', ctx.json ? 'pipe' : 'inherit', 'inherit'] });
  child.stdout?.pipe(process.stderr);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  child.once('error', (err) => term.error(`pedigree: the demo did not start: ${err.message}`));
  void exited.then((code) => {
    if (code !== 0 && code !== null && code !== 130 && code !== 143) term.error(`pedigree: the demo stopped with exit code ${code}; the server goes on (run \`pedigree demo\` to try again)`);
  });
  return {
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGINT');
      const timer = setTimeout(() => child.kill('SIGKILL'), DEMO_STOP_MS);
      await exited;
      clearTimeout(timer);
    },
  };
}

function portFromEnv(raw: string): number {
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || n > 65535) throw new UsageError(`PEDIGREE_PORT must be a port number from 0 to 65535, got ${JSON.stringify(raw)}`);
  return n;
}


/** Prints what the store holds (recording the sample into an empty one); in JSON mode, only gathers the figures. */
async function showTour(ctx: Context, pd: Pedigree, demo: DemoMode): Promise<{ store: string; recordedSample: boolean; events: number; empty: boolean }> {
  const store = describeStore(pd.database.db);
  const { term } = ctx;
  const { paint } = term;
  if (!ctx.json) term.line(`${paint.bold('Pedigree')}  ${paint.dim('store:')} ${store}`);

  const empty = (await pd.store.lastPosition()) === 0;
  const recorded = empty && demo === 'sample' ? await recordSampleWithProgress(pd, term, SAMPLE_PROJECT, { quiet: ctx.json }) : null;
  const events = await pd.store.lastPosition();
  const summary = { store, recordedSample: Boolean(recorded), events, empty };
  if (ctx.json) return summary;
  if (!empty) term.line(`The store holds ${formatCount(events)} events; nothing recorded.`);

  const { runs, total } = await listRuns(pd, undefined, { limit: RUNS_SHOWN });
  const featured = await latestTrainingRun(pd, runs);
  term.line();
  if (runs.length === 0) {
    term.line(empty && demo !== 'none' ? 'No runs yet: the demo records them once the server is up.' : 'No runs yet. Train the toy recipe with `pedigree demo`, or log from a trainer.');
  } else {
    term.line(paint.bold(`Runs${total > runs.length ? ` (newest ${runs.length} of ${total})` : ''}`));
    const names = await projectNames(pd);
    printRunsTable(term, runs, { projectNames: names.size > 1 ? names : undefined });
  }
  if (featured) {
    term.line();
    term.line(paint.bold(`Lineage of ${featured.name} (${shortId(featured.id)})`));
    printLineageTree(term, await pd.lineage.ancestry(featured.id));
  }

  term.line();
  // PGlite opens a data directory in one process at a time: this one, while it serves.
  term.line(paint.bold(pd.database.db.kind === 'pglite' ? 'Try next (once the server is stopped)' : 'Try next (in another terminal)'));
  const run = featured ? shortId(featured.id) : '<run>';
  const tips: [string, string][] = [
    ['npx pedigree runs', 'every run (--project, --kind, --status, --tag, --json)'],
    [`npx pedigree show ${run}`, 'one run: hyperparameters, inputs, metrics, evals'],
    [`npx pedigree lineage ${run}`, 'where a model came from, back to its datasets'],
    [`npx pedigree events ${run}`, "the run's audit log, hash-chained"],
    ['npx pedigree verify', 'check every hash chain'],
    ['npx pedigree replay', 'rebuild the read models from the events'],
    ['npx pedigree --help', 'everything else'],
  ];
  const widest = Math.max(...tips.map(([c]) => c.length));
  for (const [command, what] of tips) term.line(`  ${paint.cyan(command.padEnd(widest))}  ${paint.dim(what)}`);
  term.line();
  return summary;
}

/** The newest run that trains (evals have the shortest lineage, and the least to show). */
async function latestTrainingRun(pd: Pedigree, newest: RunView[]): Promise<RunView | undefined> {
  const shown = newest.find((r) => r.kind !== 'eval');
  if (shown) return shown;
  const projects = await pd.lineage.projects();
  const candidates = await Promise.all(
    projects.map(async (p) => (await pd.lineage.runs({ projectId: p.id, limit: 1000 })).runs.find((r) => r.kind !== 'eval')),
  );
  return candidates.filter((r) => r !== undefined).sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime())[0];
}
