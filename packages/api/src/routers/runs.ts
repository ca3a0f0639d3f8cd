import { MAX_ERROR, MAX_KEY, MAX_NAME, MAX_NOTE, MAX_PATH, MAX_REASON, ValidationError, type Json } from '@pedigree/ledger';
import { unpackPoints } from '@pedigree/ledger/packed';
import { ListRunsInput } from '@pedigree/lineage';
import { z } from 'zod';
import { Digest, EventId, InputRefs, JsonRecord, MetricBatch, Name, PackedBatch, ProjectRef, RunKind, RunRef, Step, Tags, Uuid } from '../inputs.ts';
import { procedure, router } from '../trpc.ts';
import { watchRun } from '../watch.ts';

const RunId = z.object({ runId: RunRef });
const Write = z.object({ runId: RunRef, eventId: EventId });
const SORTS = ['createdAt', 'name', 'kind', 'status'] as const;

const meta = (ctx: { actor: string }) => ({ actor: ctx.actor });

export const runsRouter = router({
  // ---- writes -------------------------------------------------------------
  create: procedure
    .input(
      z.object({
        project: ProjectRef,
        runId: Uuid.optional(),
        name: Name,
        kind: RunKind,
        codeVersion: z.string().max(MAX_NAME).optional(),
        environment: JsonRecord.optional(),
        hyperparameters: JsonRecord.optional(),
        inputs: InputRefs.optional(),
        tags: Tags.optional(),
        start: z.boolean().optional(),
        eventId: EventId,
      }),
    )
    .mutation(async ({ ctx, input }) => {
      const project = await ctx.access.project(input.project);
      const { project: _p, eventId, ...rest } = input;
      const res = await ctx.pedigree.tracker.createRun(
        { ...rest, projectId: project.id, environment: rest.environment as Record<string, Json>, hyperparameters: rest.hyperparameters as Record<string, Json> },
        { eventId, metadata: meta(ctx) },
      );
      return { runId: res.runId, version: res.version, duplicate: res.duplicate };
    }),

  /** A new run from a run (and usually one of its checkpoints), with changes. */
  fork: procedure
    .input(
      z.object({
        fromRunId: RunRef,
        runId: Uuid.optional(),
        name: Name,
        kind: RunKind.optional(),
        checkpointId: Uuid.optional(),
        step: Step.optional(),
        hyperparameters: JsonRecord.optional(),
        inheritHyperparameters: z.boolean().optional(),
        inputs: InputRefs.optional(),
        tags: Tags.optional(),
        codeVersion: z.string().max(MAX_NAME).optional(),
        environment: JsonRecord.optional(),
        start: z.boolean().optional(),
        eventId: EventId,
      }),
    )
    .mutation(async ({ ctx, input }) => {
      const parent = await ctx.access.run(input.fromRunId);
      if (input.checkpointId) await ctx.access.artifact(input.checkpointId);
      const { fromRunId: _f, eventId, ...rest } = input;
      const res = await ctx.pedigree.tracker.forkRun(
        parent.id,
        { ...rest, hyperparameters: rest.hyperparameters as Record<string, Json>, environment: rest.environment as Record<string, Json> },
        { eventId, metadata: meta(ctx) },
      );
      return { runId: res.runId, version: res.version, duplicate: res.duplicate };
    }),

  start: procedure.input(Write).mutation(async ({ ctx, input }) => {
    const run = await ctx.access.run(input.runId);
    return ctx.pedigree.tracker.startRun(run.id, { eventId: input.eventId, metadata: meta(ctx) });
  }),

  declareHyperparameters: procedure.input(Write.extend({ values: JsonRecord })).mutation(async ({ ctx, input }) => {
    const run = await ctx.access.run(input.runId);
    return ctx.pedigree.tracker.declareHyperparameters(run.id, input.values as Record<string, Json>, { eventId: input.eventId, metadata: meta(ctx) });
  }),

  changeHyperparameter: procedure
    .input(Write.extend({ key: z.string().min(1).max(MAX_KEY), value: z.unknown(), step: Step, reason: z.string().max(MAX_REASON).optional() }))
    .mutation(async ({ ctx, input }) => {
      const run = await ctx.access.run(input.runId);
      return ctx.pedigree.tracker.changeHyperparameter(
        run.id,
        { key: input.key, value: input.value as Json, step: input.step, reason: input.reason },
        { eventId: input.eventId, metadata: meta(ctx) },
      );
    }),

  useInput: procedure.input(Write.extend({ artifactId: Uuid, role: z.string().min(1).max(MAX_KEY), step: Step.optional() })).mutation(async ({ ctx, input }) => {
    const run = await ctx.access.run(input.runId);
    await ctx.access.artifact(input.artifactId);
    return ctx.pedigree.tracker.useInput(run.id, { artifactId: input.artifactId, role: input.role, step: input.step }, { eventId: input.eventId, metadata: meta(ctx) });
  }),

  produceOutput: procedure.input(Write.extend({ artifactId: Uuid, role: z.string().min(1).max(MAX_KEY), step: Step.optional() })).mutation(async ({ ctx, input }) => {
    const run = await ctx.access.run(input.runId);
    await ctx.access.artifact(input.artifactId);
    return ctx.pedigree.tracker.produceOutput(run.id, { artifactId: input.artifactId, role: input.role, step: input.step }, { eventId: input.eventId, metadata: meta(ctx) });
  }),

  /**
   * A batch of points (up to 50,000 per call), one event: as `points` (objects) or as `columns`
   * (packed, what the typed client sends), not both. Retrying with the same eventId never duplicates.
   */
  logMetrics: procedure.input(Write.extend({ points: MetricBatch.optional(), columns: PackedBatch.optional(), allowNonFinite: z.boolean().optional() })).mutation(async ({ ctx, input }) => {
    if ((input.points === undefined) === (input.columns === undefined)) throw new ValidationError('logMetrics takes points or columns: send exactly one of them');
    const run = await ctx.access.run(input.runId);
    const points = input.points ?? unpackPoints(input.columns!);
    const res = await ctx.pedigree.tracker.logMetrics(run.id, points, { eventId: input.eventId, metadata: meta(ctx), allowNonFinite: input.allowNonFinite });
    return { version: res.version, position: res.positions[0] ?? null, duplicate: res.duplicate, points: points.length };
  }),

  saveCheckpoint: procedure
    .input(
      Write.extend({
        step: Step,
        digest: Digest.min(1),
        name: z.string().min(1).max(MAX_NAME).optional(),
        manifest: z.record(z.string().max(MAX_KEY), z.array(z.number().int().nonnegative()).max(16)).optional(),
        path: z.string().max(MAX_PATH).optional(),
        bytes: z.number().int().nonnegative().optional(),
      }),
    )
    .mutation(async ({ ctx, input }) => {
      const run = await ctx.access.run(input.runId);
      const { runId: _r, eventId, ...checkpoint } = input;
      const res = await ctx.pedigree.tracker.saveCheckpoint(run.id, checkpoint, { eventId, metadata: meta(ctx) });
      return { artifactId: res.artifactId, version: res.version, duplicate: res.duplicate };
    }),

  recordEval: procedure
    .input(
      Write.extend({
        // Named like runs (MAX_NAME): shorter than the ledger takes them, as keys (MAX_KEY).
        suite: z.string().min(1).max(MAX_NAME),
        task: z.string().min(1).max(MAX_NAME),
        contextLength: z.number().int().positive().optional(),
        score: z.number(),
        n: z.number().int().nonnegative().optional(),
        step: Step.optional(),
      }),
    )
    .mutation(async ({ ctx, input }) => {
      const run = await ctx.access.run(input.runId);
      const { runId: _r, eventId, ...e } = input;
      return ctx.pedigree.tracker.recordEval(run.id, e, { eventId, metadata: meta(ctx) });
    }),

  complete: procedure.input(Write).mutation(async ({ ctx, input }) => {
    const run = await ctx.access.run(input.runId);
    return ctx.pedigree.tracker.completeRun(run.id, { eventId: input.eventId, metadata: meta(ctx) });
  }),

  fail: procedure.input(Write.extend({ error: z.string().min(1).max(MAX_ERROR) })).mutation(async ({ ctx, input }) => {
    const run = await ctx.access.run(input.runId);
    return ctx.pedigree.tracker.failRun(run.id, input.error, { eventId: input.eventId, metadata: meta(ctx) });
  }),

  tag: procedure.input(Write.extend({ tag: z.string().min(1).max(MAX_KEY) })).mutation(async ({ ctx, input }) => {
    const run = await ctx.access.run(input.runId);
    return ctx.pedigree.tracker.addTag(run.id, input.tag, { eventId: input.eventId, metadata: meta(ctx) });
  }),

  note: procedure.input(Write.extend({ text: z.string().min(1).max(MAX_NOTE), author: z.string().max(MAX_NAME).optional() })).mutation(async ({ ctx, input }) => {
    const run = await ctx.access.run(input.runId);
    return ctx.pedigree.tracker.addNote(run.id, input.text, input.author, { eventId: input.eventId, metadata: meta(ctx) });
  }),

  // ---- reads --------------------------------------------------------------
  get: procedure.input(RunId).query(async ({ ctx, input }) => {
    const run = await ctx.access.run(input.runId);
    return ctx.pedigree.lineage.run(run.id);
  }),

  list: procedure
    .input(
      z.object({
        project: ProjectRef,
        kind: z.string().max(50).optional(),
        status: z.enum(['created', 'running', 'completed', 'failed']).optional(),
        tag: z.string().max(MAX_KEY).optional(),
        search: ListRunsInput.shape.search,
        hyperparameters: JsonRecord.optional(),
        sort: z.enum(SORTS).optional(),
        order: z.enum(['asc', 'desc']).optional(),
        limit: ListRunsInput.shape.limit.unwrap().optional(),
        offset: z.number().int().min(0).optional(),
      }),
    )
    .query(async ({ ctx, input }) => {
      const project = await ctx.access.project(input.project);
      const { project: _p, ...filters } = input;
      return ctx.pedigree.lineage.runs({ ...filters, projectId: project.id });
    }),

  hyperparameters: procedure.input(RunId).query(async ({ ctx, input }) => ctx.pedigree.lineage.hyperparameterHistory((await ctx.access.run(input.runId)).id)),

  /** The run's ancestry over used/produced edges, back to datasets. */
  lineage: procedure.input(RunId.extend({ maxDepth: z.number().int().min(1).max(100).optional() })).query(async ({ ctx, input }) => {
    const run = await ctx.access.run(input.runId);
    return ctx.pedigree.lineage.ancestry(run.id, { maxDepth: input.maxDepth });
  }),

  edges: procedure.input(RunId).query(async ({ ctx, input }) => ctx.pedigree.lineage.edgesOf((await ctx.access.run(input.runId)).id)),
  evals: procedure.input(RunId).query(async ({ ctx, input }) => ctx.pedigree.lineage.evals((await ctx.access.run(input.runId)).id)),
  notes: procedure.input(RunId).query(async ({ ctx, input }) => ctx.pedigree.lineage.notes((await ctx.access.run(input.runId)).id)),

  /** Live: the run's new metric points and status changes. Resumable: pass the last event id seen (tRPC does on reconnect). */
  watch: procedure.input(RunId.extend({ lastEventId: z.string().regex(/^\d+$/).nullish() })).subscription(async function* ({ ctx, input, signal }) {
    const run = await ctx.access.run(input.runId);
    yield* watchRun(ctx.pedigree, run.id, Number(input.lastEventId ?? 0), signal);
  }),
});
