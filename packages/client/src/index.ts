import { randomUUID } from 'node:crypto';
import os from 'node:os';
import type { RouterInputs, RunUpdate } from '@pedigree/api';
import { MAX_POINTS_PER_BATCH } from '@pedigree/ledger/vocabulary';
import { connectDefaults } from './env.ts';
import { PedigreeError, toPedigreeError } from './errors.ts';
import { DEFAULT_RETRY, withRetry, type RetryPolicy } from './retry.ts';
import { Run, type ClientCore } from './run.ts';
import { CLIENT_NAME, embeddedApi, remoteApi, type Api } from './transport.ts';

export { PedigreeError, isTransient } from './errors.ts';
export { Run, type CheckpointInput, type EvalInput } from './run.ts';
export type { RetryPolicy } from './retry.ts';
export type { Api } from './transport.ts';
export type { RouterInputs, RouterOutputs, RunUpdate } from '@pedigree/api';
/** The ledger's vocabulary (run and artifact kinds, the data-filter schema, the weight tolerance, NaN/±Infinity spelled out), for code that reports through the client. */
export { ARTIFACT_KINDS, DataFilter, isNonFinite, metricJson, metricNumber, NON_FINITE, RUN_KINDS, WEIGHT_TOLERANCE, type ArtifactKind, type MetricValueJson } from '@pedigree/ledger/vocabulary';

type CreateRun = RouterInputs['runs']['create'];
type ForkRun = RouterInputs['runs']['fork'];

/** What a run is (pretrain, midtrain, sft, …): the ledger's RUN_KINDS. */
export type RunKind = CreateRun['kind'];

export interface ConnectOptions {
  /** A Pedigree server, e.g. http://127.0.0.1:4400 (default: $PEDIGREE_URL). */
  url?: string;
  /** The project's API key (default: $PEDIGREE_API_KEY). Not needed by an open local server. */
  apiKey?: string;
  /**
   * Write straight to a store from this process instead, no server: a directory (`true`: $PEDIGREE_HOME
   * or ./.pedigree) for the embedded store, or a postgresql:// URL (migrated, see `pedigree migrate`).
   */
  embedded?: string | true;
  /** Points per request (default 10,000; the server takes up to 50,000). */
  batchSize?: number;
  /** Longest a logged point waits in the buffer (ms, default 1,000). */
  flushIntervalMs?: number;
  /** Send NaN and ±Infinity instead of refusing them. */
  allowNonFinite?: boolean;
  retry?: Partial<RetryPolicy>;
  /** Called when a background batch fails for good (it is also thrown by the next flush/finish). */
  onError?: (err: PedigreeError) => void;
  /** Called before each retry of a transient failure. */
  onRetry?: (what: string, attempt: number, err: unknown) => void;
  /**
   * On SIGINT/SIGTERM: flush open runs, mark them failed ("interrupted by SIGINT"), close, exit
   * (130/143). Default true in Node; false in Deno (a notebook kernel's interrupt is a SIGINT).
   * Pass false to handle signals yourself (then call `run.fail()` / `pd.close()`).
   */
  handleSignals?: boolean;
}

/** `runs.create`'s input, by project name (created when missing) and without the ids the client fixes itself. */
export interface StartRunInput {
  /** The project's name; created when missing. */
  project: string;
  name: CreateRun['name'];
  kind: RunKind;
  hyperparameters?: CreateRun['hyperparameters'];
  /** Artifacts the run reads: `{ artifactId, role }` (roles: init, train-mix, eval-set, pairs, …). */
  inputs?: CreateRun['inputs'];
  tags?: CreateRun['tags'];
  codeVersion?: CreateRun['codeVersion'];
  /** Merged over what the client records itself (host, platform, runtime). */
  environment?: CreateRun['environment'];
  /** Start from another run (and one of its checkpoints), inheriting its hyperparameters unless told otherwise (`runs.fork`). */
  forkOf?: { runId: ForkRun['fromRunId'] } & Pick<ForkRun, 'checkpointId' | 'step' | 'inheritHyperparameters'>;
}

/** `artifacts.register`'s input, by project name (created when missing): a dataset, data mix, checkpoint, eval set, report… */
export type ArtifactInput = Omit<RouterInputs['artifacts']['register'], 'eventId'>;

/** What Run needs from its client. */

function environment(): Record<string, unknown> {
  const deno = (globalThis as { Deno?: { version?: { deno?: string } } }).Deno;
  return {
    host: os.hostname(),
    platform: `${process.platform}-${process.arch}`,
    runtime: deno?.version?.deno ? `deno ${deno.version.deno}` : `node ${process.versions.node}`,
    client: CLIENT_NAME,
  };
}

/**
 * A connection to a Pedigree store: over HTTP to a server, or embedded.
 *
 * ```ts
 * const pd = await connect({ url: 'http://127.0.0.1:4400', apiKey });
 * const run = await pd.startRun({ project: 'demo', name: 'pretrain', kind: 'pretrain', hyperparameters: { lr: 3e-4 } });
 * for (let step = 0; step < 100; step++) run.log({ loss: 1 / (step + 1) }, step);
 * await run.finish();
 * ```
 */
export class Pedigree implements ClientCore {
  readonly options: ClientCore['options'];
  private readonly retry: RetryPolicy;
  private readonly open = new Set<Run>();
  private readonly offSignals: () => void;

  constructor(
    /** The typed tRPC client, for anything this class does not wrap. */
    readonly api: Api,
    private readonly connectOptions: ConnectOptions,
    private readonly onClose: () => Promise<void> = async () => {},
  ) {
    this.options = {
      batchSize: Math.min(MAX_POINTS_PER_BATCH, Math.max(1, connectOptions.batchSize ?? 10_000)),
      flushIntervalMs: connectOptions.flushIntervalMs ?? 1_000,
      allowNonFinite: connectOptions.allowNonFinite,
      onError: connectOptions.onError,
    };
    this.retry = { ...DEFAULT_RETRY, ...connectOptions.retry };
    const inDeno = typeof (globalThis as { Deno?: unknown }).Deno !== 'undefined';
    this.offSignals = (connectOptions.handleSignals ?? !inDeno) ? this.handleSignals() : () => {};
  }

  call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    return withRetry(what, fn, this.retry, (attempt, err) => this.connectOptions.onRetry?.(what, attempt, err));
  }

  forget(run: Run): void {
    this.open.delete(run);
  }

  /** Creates (or finds, by name) a project. */
  async project(name: string): Promise<{ projectId: string }> {
    return this.call('project', () => this.api.projects.ensure.mutate({ name }));
  }

  async projects() {
    return this.call('list projects', () => this.api.projects.list.query());
  }

  /** Registers a dataset, data mix, eval set… (creating the project when missing, as startRun does). Content-addressed: the same content twice gives the same id. */
  async registerArtifact(input: ArtifactInput): Promise<{ artifactId: string; digest: string }> {
    const { projectId } = await this.project(input.project);
    const eventId = randomUUID();
    const res = await this.call('register artifact', () => this.api.artifacts.register.mutate({ ...input, project: projectId, eventId }));
    return { artifactId: res.artifactId, digest: res.digest };
  }

  /** Creates and starts a run; log to it, then `finish()`. */
  async startRun(input: StartRunInput): Promise<Run> {
    const runId = randomUUID();
    const eventId = randomUUID();
    const env = { ...environment(), ...input.environment };
    let projectId: string;
    if (input.forkOf) {
      const { forkOf, project: _p, environment: _e, ...rest } = input;
      await this.call('fork run', () =>
        this.api.runs.fork.mutate({
          ...rest,
          fromRunId: forkOf.runId,
          checkpointId: forkOf.checkpointId,
          step: forkOf.step,
          inheritHyperparameters: forkOf.inheritHyperparameters,
          environment: env,
          runId,
          eventId,
          start: true,
        }),
      );
      projectId = (await this.run(runId)).projectId;
    } else {
      ({ projectId } = await this.project(input.project));
      await this.call('start run', () =>
        this.api.runs.create.mutate({
          project: projectId,
          runId,
          name: input.name,
          kind: input.kind,
          hyperparameters: input.hyperparameters,
          inputs: input.inputs,
          tags: input.tags,
          codeVersion: input.codeVersion,
          environment: env,
          start: true,
          eventId,
        }),
      );
    }
    const run = new Run(this, runId, input.name, projectId);
    this.open.add(run);
    return run;
  }

  /** A handle on an existing run (e.g. to go on after a crash). It must still be created or running. */
  async resumeRun(runId: string): Promise<Run> {
    const view = await this.run(runId);
    if (view.status === 'completed' || view.status === 'failed') throw new PedigreeError(`run ${view.name} is ${view.status}; fork it instead`, 'BAD_REQUEST', null);
    if (view.status === 'created') {
      const eventId = randomUUID();
      await this.call('start run', () => this.api.runs.start.mutate({ runId: view.id, eventId }));
    }
    const run = new Run(this, view.id, view.name, view.projectId);
    this.open.add(run);
    return run;
  }

  // ---- reads ----------------------------------------------------------------
  run(runId: string) {
    return this.call('get run', () => this.api.runs.get.query({ runId }));
  }

  runs(input: RouterInputs['runs']['list']) {
    return this.call('list runs', () => this.api.runs.list.query(input));
  }

  /** The run's ancestry: runs and artifacts back to the datasets. */
  lineage(runId: string, maxDepth?: number) {
    return this.call('lineage', () => this.api.runs.lineage.query({ runId, maxDepth }));
  }

  /** What exactly differs between two runs' lineages (common ancestor, first divergence, stage by stage). */
  diff(a: string, b: string, opts: { showAll?: boolean } = {}) {
    return this.call('diff', () => this.api.lineage.diff.query({ a, b, showAll: opts.showAll }));
  }

  /** A metric's raw points (`limit` default 10,000), or `buckets` of min/max/last for a chart. */
  metrics(runId: string, key: string, opts: Omit<RouterInputs['metrics']['points'], 'runId' | 'key'> = {}) {
    return this.call('metrics', () => this.api.metrics.points.query({ runId, key, ...opts }));
  }

  metricBuckets(runId: string, key: string, buckets: number, opts: Omit<RouterInputs['metrics']['buckets'], 'runId' | 'key' | 'buckets'> = {}) {
    return this.call('metric buckets', () => this.api.metrics.buckets.query({ runId, key, buckets, ...opts }));
  }

  evals(runId: string) {
    return this.call('evals', () => this.api.runs.evals.query({ runId }));
  }

  /** The run's audit log: every event, with its hash-chain link. */
  events(runId: string, opts: Omit<Extract<RouterInputs['events']['stream'], { runId: string }>, 'runId'> = {}) {
    return this.call('events', () => this.api.events.stream.query({ runId, ...opts }));
  }

  /**
   * Live updates of a run (new metric points, status changes, checkpoints,
   * evals), each once and in order; reconnects resume after the last one seen.
   * Pass `lastEventId` to start after an update you already have.
   */
  watch(runId: string, handlers: { onUpdate: (u: RunUpdate) => void; onError?: (err: PedigreeError) => void; onStarted?: () => void }, opts: { lastEventId?: string } = {}): { close(): void } {
    const sub = this.api.runs.watch.subscribe(
      { runId, lastEventId: opts.lastEventId ?? null },
      {
        onStarted: handlers.onStarted,
        onData: (envelope) => handlers.onUpdate(envelope.data),
        onError: (err) => handlers.onError?.(toPedigreeError(err, 'watch')),
      },
    );
    return { close: () => sub.unsubscribe() };
  }

  /** Flushes every open run. */
  async flush(): Promise<void> {
    await Promise.all([...this.open].map((r) => r.flush()));
  }

  /** Flushes, then closes the connection (and the embedded store). Runs not finished stay running. */
  async close(): Promise<void> {
    try {
      await this.flush();
    } finally {
      this.offSignals();
      await this.onClose();
    }
  }

  private handleSignals(): () => void {
    if (typeof process?.on !== 'function') return () => {};
    let handling = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (handling) process.exit(signal === 'SIGINT' ? 130 : 143); // a second Ctrl-C: now
      handling = true;
      const runs = [...this.open];
      void Promise.race([
        Promise.all(runs.map((r) => r.fail(`interrupted by ${signal}`).catch(() => {}))).then(() => this.onClose().catch(() => {})),
        new Promise((r) => setTimeout(r, 10_000)),
      ]).then(() => process.exit(signal === 'SIGINT' ? 130 : 143));
    };
    try {
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
    } catch {
      return () => {};
    }
    return () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    };
  }
}

/** Connects to a server (`url`), or opens a local store (`embedded`). */
export async function connect(opts: ConnectOptions = {}): Promise<Pedigree> {
  if (opts.embedded !== undefined && opts.url) throw new PedigreeError('connect: give either url or embedded, not both', 'BAD_REQUEST', null);
  if (opts.embedded !== undefined) {
    const { api, close } = await embeddedApi(opts.embedded === true ? undefined : opts.embedded);
    return new Pedigree(api, opts, close);
  }
  const env = connectDefaults();
  const url = opts.url ?? env.url;
  if (!url) throw new PedigreeError('connect: no server: pass { url } (or set PEDIGREE_URL), or { embedded: dir } for a local store', 'BAD_REQUEST', null);
  if (!/^https?:\/\//.test(url)) throw new PedigreeError(`connect: url must start with http:// or https://, got ${JSON.stringify(url)}`, 'BAD_REQUEST', null);
  const api = await remoteApi(url, opts.apiKey ?? env.apiKey);
  const pd = new Pedigree(api, opts);
  // Fail now, with a clear reason (no server, a bad key), rather than at the first log call.
  await withRetry('connect', () => api.system.whoami.query(), { ...DEFAULT_RETRY, retryForMs: 5_000, ...opts.retry }).catch(async (err) => {
    await pd.close();
    throw err;
  });
  return pd;
}
