import { randomUUID } from 'node:crypto';
import type { Queryable } from '@pedigree/db';
import {
  ArtifactSpecSchema,
  canonicalJson,
  chunkOrder,
  EVENT_COLUMNS,
  MAX_POINTS_PER_BATCH,
  isNonFinite,
  metricJson,
  NotFoundError,
  streamIds,
  readEvents,
  ValidationError,
  WEIGHT_TOLERANCE,
  zodIssues,
  type AppendResult,
  type ArtifactSpec,
  type EventMetadata,
  type EventRow,
  type EventStore,
  type Json,
  type NewEvent,
  type RunKind,
} from '@pedigree/ledger';
import { z } from 'zod';
import { contentDigest, eventIds, nameUuid } from './ids.ts';
import { ProjectionReader, type RunState } from './reader.ts';

/** What every command may carry: an id to make a retry idempotent, and who is acting. */
export interface CommandOptions {
  eventId?: string;
  metadata?: EventMetadata;
  /** Optimistic concurrency on the run's stream; omitted: append after whatever is there. */
  expectedVersion?: number;
  /**
   * Accept the write on a run that has ended (completed or failed), as MLflow
   * does: metrics, parameters and tags may follow a run's end. Deleted runs
   * refuse writes whatever this says.
   */
  evenIfEnded?: boolean;
}

export interface InputRef {
  artifactId: string;
  role: string;
}

export interface CreateRunInput {
  projectId: string;
  runId?: string;
  name: string;
  kind: RunKind;
  codeVersion?: string;
  environment?: Record<string, Json>;
  hyperparameters?: Record<string, Json>;
  inputs?: InputRef[];
  tags?: string[];
  /** Key–value tags (MLflow's); `tags` are plain labels. */
  tagValues?: Record<string, string>;
  /** Fork: the parent run, and the checkpoint the new run starts from. */
  forkOf?: { runId: string; artifactId?: string; step?: number };
  start?: boolean;
  /** With `start`: the start time the client reports (ms since the epoch). */
  startedAt?: number;
}

export interface MetricPointInput {
  key: string;
  step: number;
  value: number;
  /** ms since the epoch; defaults to now. */
  time?: number;
}

export interface RegisterArtifactInput {
  projectId: string;
  name: string;
  spec: ArtifactSpec | z.input<typeof ArtifactSpecSchema>;
  /** Content digest; computed from the spec when omitted. */
  digest?: string;
}

function parse<T extends z.ZodType>(schema: T, value: unknown, what: string): z.infer<T> {
  const r = schema.safeParse(value);
  if (!r.success) throw new ValidationError(`invalid ${what}`, zodIssues(r.error));
  return r.data;
}

const UuidSchema = z.uuid();
function uuid(value: unknown, what: string): string {
  if (!UuidSchema.safeParse(value).success) throw new ValidationError(`${what} must be a UUID, got ${JSON.stringify(value)}`);
  return String(value).toLowerCase();
}

/** The projection tables as `q` sees them: the append's transaction in a check, else the pool. */
const read = (q: Queryable) => new ProjectionReader(q);

/**
 * The write side: each command validates its input, reads the state it needs,
 * decides the events, and appends them. Checks run inside the append's
 * transaction: those that read other streams under the store-wide check
 * lock, those that read only the run's own row under its stream's lock, so
 * they cannot race. Every read of the read models goes through
 * `ProjectionReader` (reader.ts), the tables' one read path.
 */
export class Tracker {
  /**
   * Each run's project, once read: a run never changes project, so a batch of
   * points to a run seen before skips one round trip before its transaction
   * (which reads the run again, under the stream's lock, for its status).
   * Bounded: cleared when it reaches RUN_PROJECTS_CACHED runs.
   */
  private readonly runProjects = new Map<string, string>();

  constructor(readonly store: EventStore) {}

  private get db() {
    return this.store.db;
  }

  async createProject(input: { name: string; description?: string; projectId?: string }, opts: CommandOptions = {}): Promise<{ projectId: string } & AppendResult> {
    const projectId = input.projectId ? uuid(input.projectId, 'projectId') : nameUuid('project', input.name);
    const [ev] = eventIds(opts.eventId, 1);
    const clash = async (q: Queryable) => {
      if (await read(q).projectClashing(input.name, projectId)) throw new ValidationError(`a project named ${JSON.stringify(input.name)} already exists`);
    };
    if (!opts.eventId) await clash(this.db);
    const res = await this.store.append(
      streamIds.project(projectId),
      [{ type: 'ProjectCreated', eventId: ev, data: { projectId, name: input.name, description: input.description } }],
      {
        projectId,
        expectedVersion: 0,
        metadata: opts.metadata,
        check: clash,
      },
    );
    return { projectId, ...res };
  }

  /** The project with this name, created if missing. */
  async ensureProject(name: string): Promise<string> {
    const row = await read(this.db).projectNamed(name);
    if (row) return row.id;
    try {
      return (await this.createProject({ name })).projectId;
    } catch (err) {
      const again = await read(this.db).projectNamed(name);
      if (again) return again.id;
      throw err;
    }
  }

  async registerArtifact(input: RegisterArtifactInput, opts: CommandOptions = {}): Promise<{ artifactId: string; digest: string; existed: boolean }> {
    const projectId = uuid(input.projectId, 'projectId');
    const spec = parse(ArtifactSpecSchema, input.spec, 'artifact spec');
    const digest = input.digest ?? contentDigest({ name: input.name, spec });
    const artifactId = nameUuid('artifact', projectId, spec.kind, digest);
    if (spec.kind === 'datamix') {
      checkWeights(spec.components.map((c) => c.weight));
      const twice = spec.components.map((c) => c.artifactId.toLowerCase()).find((id, i, all) => all.indexOf(id) !== i);
      if (twice) throw new ValidationError(`data mix lists artifact ${twice} twice: give each component once, with its whole weight`);
    }
    if (await read(this.db).artifact(artifactId)) return { artifactId, digest, existed: true };
    const [ev] = eventIds(opts.eventId, 1);
    const res = await this.store.append(
      streamIds.artifact(artifactId),
      [{ type: 'ArtifactRegistered', eventId: ev, data: { artifactId, projectId, name: input.name, digest, spec } }],
      {
        projectId,
        expectedVersion: opts.eventId ? 'any' : 0,
        metadata: opts.metadata,
        check: async (tx) => {
          await assertProject(tx, projectId);
          if (spec.kind === 'datamix') {
            const ids = spec.components.map((c) => c.artifactId);
            const rows = await read(tx).artifactKindsIn(projectId, ids);
            const found = new Map(rows.map((r) => [r.id, r.kind]));
            for (const id of ids) {
              if (!found.has(id)) throw new NotFoundError(`data mix component ${id} (in this project)`);
              if (!['dataset', 'datamix'].includes(found.get(id)!)) throw new ValidationError(`data mix component ${id} is a ${found.get(id)}, not a dataset or data mix`);
            }
          }
        },
      },
    );
    return { artifactId, digest, existed: res.duplicate };
  }

  async createRun(input: CreateRunInput, opts: CommandOptions = {}): Promise<{ runId: string } & AppendResult> {
    const projectId = uuid(input.projectId, 'projectId');
    const runId = input.runId ? uuid(input.runId, 'runId') : randomUUID();
    const events: NewEvent[] = [
      { type: 'RunCreated', data: { runId, projectId, name: input.name, kind: input.kind, codeVersion: input.codeVersion, environment: input.environment ?? {} } },
    ];
    const inputs = [...(input.inputs ?? [])];
    if (input.forkOf) {
      const fromRunId = uuid(input.forkOf.runId, 'forkOf.runId');
      events.push({ type: 'RunForked', data: { fromRunId, fromArtifactId: input.forkOf.artifactId, step: input.forkOf.step } });
      if (input.forkOf.artifactId) inputs.unshift({ artifactId: input.forkOf.artifactId, role: 'init' });
    }
    if (input.hyperparameters && Object.keys(input.hyperparameters).length) {
      events.push({ type: 'HyperparametersDeclared', data: { values: input.hyperparameters } });
    }
    for (const i of inputs) events.push({ type: 'InputUsed', data: { artifactId: i.artifactId, role: i.role } });
    for (const tag of new Set(input.tags ?? [])) events.push({ type: 'TagAdded', data: { tag } });
    for (const [key, value] of Object.entries(input.tagValues ?? {})) events.push({ type: 'TagSet', data: { key, value } });
    if (input.start) events.push({ type: 'RunStarted', data: { at: input.startedAt } });
    const ids = eventIds(opts.eventId, events.length);
    const res = await this.store.append(
      streamIds.run(runId),
      events.map((e, i) => ({ ...e, eventId: ids[i] }) as NewEvent),
      {
        projectId,
        expectedVersion: opts.eventId ? 'any' : 0,
        metadata: opts.metadata,
        check: async (tx) => {
          await assertProject(tx, projectId);
          if (await read(tx).runState(runId)) throw new ValidationError(`run ${runId} already exists`);
          if (input.forkOf) {
            const parent = await getRunRow(tx, input.forkOf.runId);
            if (parent.projectId !== projectId) throw new ValidationError('a run can only be forked within its project');
          }
          await assertArtifacts(tx, projectId, inputs.map((i) => i.artifactId));
        },
      },
    );
    return { runId, ...res };
  }

  /** A new run that starts from `fromRunId` (and, usually, one of its checkpoints), with changes. */
  async forkRun(
    fromRunId: string,
    input: Omit<CreateRunInput, 'projectId' | 'forkOf' | 'kind'> & { kind?: RunKind; checkpointId?: string; step?: number; inheritHyperparameters?: boolean },
    opts: CommandOptions = {},
  ): Promise<{ runId: string } & AppendResult> {
    const parent = await getRunRow(this.db, fromRunId);
    const p = await read(this.db).run(parent.id);
    if (input.checkpointId) {
      if (!(await read(this.db).hasEdge(parent.id, uuid(input.checkpointId, 'checkpointId'), 'produced'))) throw new ValidationError(`artifact ${input.checkpointId} was not produced by run ${parent.id}`);
    }
    return this.createRun(
      {
        ...input,
        projectId: parent.projectId,
        kind: input.kind ?? (p!.kind as RunKind),
        hyperparameters: input.inheritHyperparameters === false ? input.hyperparameters : { ...p!.hyperparameters, ...input.hyperparameters },
        forkOf: { runId: parent.id, artifactId: input.checkpointId, step: input.step },
      },
      opts,
    );
  }

  /** `at`: the start time the client reports (ms); `reopen`: a run that ended runs again (MLflow's resume). */
  async startRun(runId: string, opts: CommandOptions & { at?: number; reopen?: boolean } = {}) {
    return this.onRun(runId, [{ type: 'RunStarted', data: { at: opts.at } }], opts, { allow: opts.reopen ? ['created', 'completed', 'failed'] : ['created'], verb: 'start' });
  }

  async declareHyperparameters(runId: string, values: Record<string, Json>, opts: CommandOptions = {}) {
    return this.onRun(runId, [{ type: 'HyperparametersDeclared', data: { values } }], opts, { allow: ['created', 'running'], verb: 'declare hyperparameters of' });
  }

  /**
   * Declares values that may never change afterwards (MLflow's params): a key
   * logged again with the same value is accepted and stores nothing; with a
   * different value it is refused. Returns null when nothing was new.
   */
  async declareHyperparametersOnce(runId: string, values: Record<string, Json>, opts: CommandOptions = {}): Promise<AppendResult | null> {
    const id = uuid(runId, 'runId');
    const changed = async (q: Queryable) => {
      const stored = await read(q).runHyperparameters(id);
      const fresh: Record<string, Json> = {};
      for (const [key, value] of Object.entries(values)) {
        const before = stored?.[key];
        if (before === undefined) fresh[key] = value;
        else if (canonicalJson(before) !== canonicalJson(value)) {
          throw new ValidationError(
            `changing a parameter's value is not allowed: ${JSON.stringify(key)} was logged as ${JSON.stringify(before)} for run ${id}; attempted ${JSON.stringify(value)}`,
          );
        }
      }
      return fresh;
    };
    const fresh = await changed(this.db);
    if (Object.keys(fresh).length === 0) return null;
    return this.onRun(id, [{ type: 'HyperparametersDeclared', data: { values: fresh } }], opts, {
      allow: ['created', 'running'],
      verb: 'declare hyperparameters of',
      check: async (tx) => {
        await changed(tx); // a racing writer of another value loses here
      },
    });
  }

  async changeHyperparameter(runId: string, change: { key: string; value: Json; step: number; reason?: string }, opts: CommandOptions = {}) {
    return this.onRun(runId, [{ type: 'HyperparameterChanged', data: change }], opts, { allow: ['created', 'running'], verb: 'change hyperparameters of' });
  }

  async useInput(runId: string, input: InputRef & { step?: number }, opts: CommandOptions = {}) {
    const artifactId = uuid(input.artifactId, 'artifactId');
    return this.onRun(runId, [{ type: 'InputUsed', data: { artifactId, role: input.role, step: input.step } }], opts, {
      allow: ['created', 'running'],
      verb: 'add inputs to',
      check: async (tx, run) => {
        await assertArtifacts(tx, run.projectId, [artifactId]);
        // A cycle: the artifact descends from this run (made by it, or by a run downstream of it).
        const producer = await read(tx).downstreamProducer(run.id, artifactId);
        if (producer) throw new ValidationError(`using artifact ${artifactId} in run ${run.id} would create a cycle (it was produced by run ${producer}, downstream of this run)`);
      },
    });
  }

  async produceOutput(runId: string, output: InputRef & { step?: number }, opts: CommandOptions = {}) {
    const artifactId = uuid(output.artifactId, 'artifactId');
    return this.onRun(runId, [{ type: 'OutputProduced', data: { artifactId, role: output.role, step: output.step } }], opts, {
      allow: ['created', 'running'],
      verb: 'add outputs to',
      check: async (tx, run) => {
        await assertArtifacts(tx, run.projectId, [artifactId]);
        if (await read(tx).hasEdge(run.id, artifactId, 'used')) throw new ValidationError(`run ${run.id} cannot produce artifact ${artifactId}: it already uses it (a cycle)`);
        const made = await read(tx).artifact(artifactId);
        if (made?.producedBy && made.producedBy !== run.id) throw new ValidationError(`artifact ${artifactId} was already produced by run ${made.producedBy}`);
      },
    });
  }

  /**
   * Logs a batch of points. Non-finite values are refused unless `allowNonFinite`
   * (then stored as NaN/±Infinity). Steps are non-negative integers.
   */
  async logMetrics(runId: string, points: readonly MetricPointInput[], opts: CommandOptions & { allowNonFinite?: boolean; now?: number } = {}) {
    if (!Array.isArray(points) || points.length === 0) throw new ValidationError('logMetrics needs at least one point');
    if (points.length > MAX_POINTS_PER_BATCH) throw new ValidationError(`at most ${MAX_POINTS_PER_BATCH} points per batch, got ${points.length}`);
    const now = opts.now ?? Date.now();
    // A retry (same event id) of a batch that left `time` to the server must propose the same event:
    // take the times the first attempt was stored with.
    const firstTimes = opts.eventId && points.some((p) => p?.time === undefined) ? await this.storedPointTimes(opts.eventId, points.map((p) => p?.key)) : null;
    // Points whose time the server fills: a racing twin of this request fills other times, and is still the same event.
    const filled = new Set<number>();
    const out = points.map((p, i) => {
      if (typeof p !== 'object' || p === null) throw new ValidationError(`points[${i}] must be an object`);
      if ((typeof p.value === 'number' ? !Number.isFinite(p.value) : isNonFinite(p.value)) && !opts.allowNonFinite) {
        throw new ValidationError(`points[${i}].value is ${p.value}: metric values must be finite (pass allowNonFinite to log NaN/Infinity)`);
      }
      // As events carry it: NaN/±Infinity as strings, and no -0 (JSON has none: stored as 0 from the start, so every read agrees).
      const value = typeof p.value === 'number' ? metricJson(p.value) : p.value;
      if (p.time === undefined) filled.add(i);
      return { key: p.key, step: p.step, value, time: p.time ?? firstTimes?.[i] ?? now };
    });
    const sameEvent = (_index: number, stored: unknown) => {
      const was = (stored as { points?: { key: string; step: number; value: unknown; time: number }[] }).points;
      const order = chunkOrder(out.map((p) => p.key)); // the order the store reads a batch back in
      return (
        Array.isArray(was) &&
        was.length === out.length &&
        was.every((w, j) => {
          const i = order[j]!;
          return w.key === out[i]!.key && w.step === out[i]!.step && canonicalJson(w.value as Json) === canonicalJson(out[i]!.value) && (filled.has(i) || w.time === out[i]!.time);
        })
      );
    };
    try {
      return await this.onRun(runId, [{ type: 'MetricsLogged', data: { points: out } }], opts, { allow: ['created', 'running'], verb: 'log metrics to', sameEvent: filled.size ? sameEvent : undefined });
    } catch (err) {
      // The ledger checks every point (once, on the way in); its issues are named as the caller sent them.
      const prefix = 'events[0].data.';
      if (err instanceof ValidationError && err.issues.length && err.issues.every((i) => i.path.startsWith(prefix))) {
        throw new ValidationError('invalid metric points', err.issues.map((i) => ({ ...i, path: i.path.slice(prefix.length) })));
      }
      throw err;
    }
  }

  async saveCheckpoint(
    runId: string,
    input: { name?: string; step: number; digest: string; manifest?: Record<string, number[]>; path?: string; bytes?: number },
    opts: CommandOptions = {},
  ): Promise<AppendResult & { artifactId: string }> {
    const run = await getRunRow(this.db, runId);
    const artifactId = nameUuid('artifact', run.projectId, 'checkpoint', input.digest);
    const spec = { kind: 'checkpoint' as const, manifest: input.manifest ?? {}, path: input.path, bytes: input.bytes };
    const res = await this.onRun(
      run.id,
      [{ type: 'CheckpointSaved', data: { artifactId, name: input.name ?? `checkpoint@${input.step}`, digest: input.digest, step: input.step, spec } }],
      opts,
      {
        allow: ['created', 'running'],
        verb: 'save checkpoints of',
        check: async (tx) => {
          const made = await read(tx).artifact(artifactId);
          if (made && made.producedBy !== run.id) throw new ValidationError(`checkpoint ${input.digest} was already saved by another run (${made.producedBy})`);
        },
      },
    );
    return { ...res, artifactId };
  }

  async recordEval(runId: string, e: { suite: string; task: string; contextLength?: number; score: number; n?: number; step?: number }, opts: CommandOptions = {}) {
    return this.onRun(runId, [{ type: 'EvalRecorded', data: e }], opts, { verb: 'record evals of' });
  }

  /** `at`: the end time the client reports (ms since the epoch). */
  async completeRun(runId: string, opts: CommandOptions & { at?: number } = {}) {
    return this.onRun(runId, [{ type: 'RunCompleted', data: { at: opts.at } }], opts, { allow: ['created', 'running'], verb: 'complete' });
  }

  /** `killed`: stopped from outside rather than by its own error (MLflow's KILLED). */
  async failRun(runId: string, error: string, opts: CommandOptions & { at?: number; killed?: boolean } = {}) {
    return this.onRun(runId, [{ type: 'RunFailed', data: { error, at: opts.at, killed: opts.killed || undefined } }], opts, { allow: ['created', 'running'], verb: 'fail' });
  }

  async renameRun(runId: string, name: string, opts: CommandOptions = {}) {
    return this.onRun(runId, [{ type: 'RunRenamed', data: { name } }], { ...opts, evenIfEnded: true }, { verb: 'rename' });
  }

  /** Hides the run from default listings; nothing is removed, and `restoreRun` brings it back. */
  async deleteRun(runId: string, opts: CommandOptions = {}) {
    return this.onRun(runId, [{ type: 'RunDeleted', data: {} }], opts, { verb: 'delete', lifecycle: 'active' });
  }

  async restoreRun(runId: string, opts: CommandOptions = {}) {
    return this.onRun(runId, [{ type: 'RunRestored', data: {} }], opts, { verb: 'restore', lifecycle: 'deleted' });
  }

  /** A key–value tag; setting a key again replaces its value. */
  async setTag(runId: string, key: string, value: string, opts: CommandOptions = {}) {
    return this.onRun(runId, [{ type: 'TagSet', data: { key, value } }], opts, { verb: 'tag' });
  }

  async removeTag(runId: string, key: string, opts: CommandOptions = {}) {
    return this.onRun(runId, [{ type: 'TagRemoved', data: { key } }], opts, {
      verb: 'untag',
      check: async (tx, run) => {
        if (!(await read(tx).runHasTag(run.id, key))) throw new NotFoundError(`tag ${JSON.stringify(key)} on run ${run.id}`);
      },
    });
  }

  /** A file the run uploaded (its bytes are stored by the caller, by digest): an artifact of kind `file` the run produced. */
  async recordFile(runId: string, file: { path: string; digest: string; bytes: number }, opts: CommandOptions = {}): Promise<AppendResult & { artifactId: string }> {
    const run = await getRunRow(this.db, runId);
    const artifactId = nameUuid('artifact', run.projectId, 'file', file.digest);
    const res = await this.onRun(run.id, [{ type: 'FileUploaded', data: { artifactId, path: file.path, digest: file.digest, bytes: file.bytes } }], { ...opts, evenIfEnded: true }, { verb: 'upload files to' });
    return { ...res, artifactId };
  }

  /** Renames a project; names stay unique. */
  async renameProject(projectId: string, name: string, opts: CommandOptions = {}) {
    return this.onProject(projectId, [{ type: 'ProjectRenamed', data: { name } }], opts, async (tx, id) => {
      const holder = await read(tx).projectNamed(name);
      if (holder && holder.id !== id) throw new ValidationError(`a project named ${JSON.stringify(name)} already exists`);
    });
  }

  async deleteProject(projectId: string, opts: CommandOptions = {}) {
    return this.onProject(projectId, [{ type: 'ProjectDeleted', data: {} }], opts, lifecycleIs('project', 'active', 'delete'));
  }

  async restoreProject(projectId: string, opts: CommandOptions = {}) {
    return this.onProject(projectId, [{ type: 'ProjectRestored', data: {} }], opts, lifecycleIs('project', 'deleted', 'restore'));
  }

  async setProjectTag(projectId: string, key: string, value: string, opts: CommandOptions = {}) {
    return this.onProject(projectId, [{ type: 'ProjectTagSet', data: { key, value } }], opts);
  }

  /** Events a caller has already decided on, appended to a run's stream with the usual checks (the OpenLineage adapter). */
  async appendToRun(runId: string, events: NewEvent[], opts: CommandOptions = {}) {
    return this.onRun(runId, events, { ...opts, evenIfEnded: true }, { verb: 'record on' });
  }

  private async onProject(projectId: string, events: NewEvent[], opts: CommandOptions, check?: (tx: Queryable, id: string) => Promise<void>): Promise<AppendResult> {
    const id = uuid(projectId, 'projectId');
    const ids = eventIds(opts.eventId, events.length);
    return this.store.append(
      streamIds.project(id),
      events.map((e, i) => ({ ...e, eventId: ids[i] }) as NewEvent),
      {
        projectId: id,
        expectedVersion: opts.expectedVersion ?? 'any',
        metadata: opts.metadata,
        check: async (tx) => {
          await assertProject(tx, id);
          await check?.(tx, id);
        },
      },
    );
  }

  async addTag(runId: string, tag: string, opts: CommandOptions = {}) {
    return this.onRun(runId, [{ type: 'TagAdded', data: { tag } }], opts, { verb: 'tag' });
  }

  async addNote(runId: string, text: string, author?: string, opts: CommandOptions = {}) {
    return this.onRun(runId, [{ type: 'NoteAdded', data: { text, author } }], opts, { verb: 'annotate' });
  }

  /** The point times a stored batch was given, in the order of `keys` (the batch as proposed). */
  private async storedPointTimes(eventId: string, keys: unknown[]): Promise<number[] | null> {
    const rows = await this.db.query<EventRow>(`SELECT ${EVENT_COLUMNS} FROM events WHERE event_id = $1 AND type = 'MetricsLogged'`, [uuid(eventId, 'eventId')]);
    const [event] = await readEvents(this.db, rows);
    if (!event || event.type !== 'MetricsLogged') return null;
    const stored = event.data.points;
    const order = event.schemaVersion >= 2 ? chunkOrder(keys.map(String)) : stored.map((_, i) => i);
    const times: number[] = [];
    order.forEach((i, j) => (times[i] = stored[j]?.time ?? 0));
    return times;
  }

  /** Appends to an existing run's stream, checking its state inside the transaction. */
  private async onRun(
    runId: string,
    events: NewEvent[],
    opts: CommandOptions,
    rule: { allow?: string[]; verb: string; lifecycle?: 'active' | 'deleted'; check?: (tx: Queryable, run: RunState) => Promise<void>; sameEvent?: (index: number, storedData: unknown) => boolean },
  ): Promise<AppendResult> {
    const id = uuid(runId, 'runId');
    let projectId = this.runProjects.get(id);
    if (projectId === undefined) {
      projectId = (await getRunRow(this.db, id)).projectId;
      if (this.runProjects.size >= RUN_PROJECTS_CACHED) this.runProjects.clear();
      this.runProjects.set(id, projectId);
    }
    const ids = eventIds(opts.eventId, events.length);
    return this.store.append(
      streamIds.run(id),
      events.map((e, i) => ({ ...e, eventId: ids[i] }) as NewEvent),
      {
        projectId,
        expectedVersion: opts.expectedVersion ?? 'any',
        metadata: opts.metadata,
        sameEvent: rule.sameEvent,
        // The run's own row is written only by its own stream's events: the stream's lock covers it.
        checkReadsOtherStreams: rule.check !== undefined,
        check: async (tx) => {
          const current = await getRunRow(tx, id);
          const lifecycle = rule.lifecycle ?? 'active';
          if (current.lifecycle !== lifecycle) throw new ValidationError(`cannot ${rule.verb} run ${id}: it is ${current.lifecycle === 'deleted' ? 'deleted (restore it first)' : 'not deleted'}`);
          const ended = current.status === 'completed' || current.status === 'failed';
          if (rule.allow && !rule.allow.includes(current.status) && !(opts.evenIfEnded && ended && rule.allow.includes('running'))) {
            throw new ValidationError(`cannot ${rule.verb} run ${id}: it is ${current.status}`);
          }
          await rule.check?.(tx, current);
        },
      },
    );
  }
}

const RUN_PROJECTS_CACHED = 10_000;

export function checkWeights(weights: number[]): void {
  const sum = weights.reduce((a, b) => a + b, 0);
  if (Math.abs(sum - 1) > WEIGHT_TOLERANCE) {
    throw new ValidationError(`data mix weights must sum to 1 (±${WEIGHT_TOLERANCE}), they sum to ${sum}`);
  }
}

async function getRunRow(q: Queryable, runId: string): Promise<RunState> {
  const id = uuid(runId, 'runId');
  const row = await read(q).runState(id);
  if (!row) throw new NotFoundError(`run ${id}`);
  return row;
}

function lifecycleIs(what: 'project', lifecycle: 'active' | 'deleted', verb: string) {
  return async (tx: Queryable, id: string) => {
    const row = await read(tx).project(id);
    if (row && row.lifecycle !== lifecycle) throw new ValidationError(`cannot ${verb} ${what} ${id}: it is ${row.lifecycle === 'deleted' ? 'already deleted' : 'not deleted'}`);
  };
}

async function assertProject(q: Queryable, projectId: string): Promise<void> {
  if (!(await read(q).project(projectId))) throw new NotFoundError(`project ${projectId}`);
}

async function assertArtifacts(q: Queryable, projectId: string, ids: string[]): Promise<void> {
  if (ids.length === 0) return;
  const rows = await read(q).artifactKindsIn(projectId, ids.map((i) => uuid(i, 'artifactId')));
  const found = new Set(rows.map((r) => r.id));
  for (const id of ids) if (!found.has(id.toLowerCase())) throw new NotFoundError(`artifact ${id} (in this project)`);
}
