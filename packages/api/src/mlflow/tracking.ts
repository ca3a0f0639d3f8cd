import { createHash } from 'node:crypto';
import { canonicalJson, MAX_KEY, MAX_NAME, MAX_POINTS_PER_BATCH, MAX_TAG_VALUE, metricJson, RUN_KINDS, type Json, type RunKind } from '@pedigree/ledger';
import { nameUuid, type ProjectView, type RunView } from '@pedigree/lineage';
import type { Access } from '../access.ts';
import type { Context } from '../context.ts';
import { listRunArtifacts } from './artifacts.ts';
import { runOf } from './lookup.ts';
import { invalid, MlflowError, notFound } from './errors.ts';
import { decodePageToken, encodePageToken, matches, parseFilter, parseOrderBy, sortBy, type Searchable } from './search.ts';
import { keyValues, list, metricValue, optionalInt, optionalString, requiredString, viewType, type Body, type Call, type KeyValue } from './wire.ts';

/**
 * MLflow's tracking REST API (mlflow/protos/service.proto) over Pedigree's
 * commands and queries: experiments are projects, runs are runs, params are
 * hyperparameters (immutable once logged), tags are key–value tags, metrics
 * take the same write path as tRPC's `runs.logMetrics`. Nothing is removed:
 * deleting is an event and restoring another.
 */

type Handler = (call: Call) => Promise<Body>;

/** The experiment an MLflow client uses when it names none. With a key: the key's project. */
export const DEFAULT_EXPERIMENT_ID = '0';
export const DEFAULT_EXPERIMENT_NAME = 'Default';
/**
 * MLflow's own limits, kept where the ledger has none of its own (MLflow's
 * mlflow/utils/validation.py: MAX_EXPERIMENTS_LISTED_PER_PAGE,
 * MAX_PARAM_VAL_LENGTH). MLflow's key and tag-value limits are the ledger's
 * too (MAX_ENTITY_KEY_LENGTH 250: MAX_KEY; MAX_TAG_VAL_LENGTH 8000:
 * MAX_TAG_VALUE); experiment and run names are Pedigree's (MAX_NAME, shorter
 * than MLflow's 500).
 */
const MLFLOW_MAX_RESULTS = 50_000;
const MLFLOW_MAX_PARAM_VALUE = 6000;
const RUN_STATUSES = ['RUNNING', 'SCHEDULED', 'FINISHED', 'FAILED', 'KILLED'] as const;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const meta = (call: Call) => ({ actor: call.ctx.actor });

/** Event ids from the request's content: a client's retry of the same request proposes the same events. */
function requestId(...parts: unknown[]): string {
  return nameUuid('mlflow', createHash('sha256').update(canonicalJson(parts as Json)).digest('hex'));
}

// ---- experiments --------------------------------------------------------------

async function experimentProject(call: Call, ref: string | undefined): Promise<ProjectView> {
  const { pedigree } = call.ctx;
  const id = ref ?? DEFAULT_EXPERIMENT_ID;
  if (id === DEFAULT_EXPERIMENT_ID) {
    if (call.ctx.key) return pedigree.lineage.project(call.ctx.key.projectId);
    return pedigree.lineage.project(await pedigree.tracker.ensureProject(DEFAULT_EXPERIMENT_NAME));
  }
  if (!UUID.test(id)) throw notFound(`No Experiment with id=${id} exists`);
  try {
    const row = await call.access.project(id.toLowerCase());
    return await pedigree.lineage.project(row.id);
  } catch (err) {
    if ((err as { code?: string }).code === 'NOT_FOUND') throw notFound(`No Experiment with id=${id} exists`);
    throw err;
  }
}

const ms = (d: Date | null | undefined) => (d ? new Date(d).getTime() : undefined);

export function experimentView(p: ProjectView): Body {
  return {
    experiment_id: p.id,
    name: p.name,
    artifact_location: `mlflow-artifacts:/${p.id}`,
    lifecycle_stage: p.lifecycle,
    creation_time: ms(p.createdAt),
    last_update_time: ms(p.updatedAt),
    tags: Object.entries(p.tagValues).map(([key, value]) => ({ key, value })),
  };
}

const experimentSearchable = (p: ProjectView): Searchable => ({
  attribute: (k) => (k === 'name' ? p.name : k === 'creation_time' ? ms(p.createdAt) : k === 'last_update_time' ? ms(p.updatedAt) : k === 'experiment_id' ? p.id : undefined),
  tag: (k) => p.tagValues[k],
});

const experiments: Record<string, Handler> = {
  async 'experiments/get-by-name'(call) {
    const name = requiredString(call.body, 'experiment_name');
    const all = await call.ctx.pedigree.lineage.projects();
    const p = all.find((x) => x.name === name);
    // With a key, another project's experiment and a missing one get the same answer.
    if (call.ctx.key && p?.id !== call.ctx.key.projectId) throw new MlflowError('PERMISSION_DENIED', `experiment ${JSON.stringify(name)} not found in this API key's project`);
    if (!p) throw notFound(`Could not find experiment with name '${name}'`);
    return { experiment: experimentView(p) };
  },

  async 'experiments/get'(call) {
    return { experiment: experimentView(await experimentProject(call, requiredString(call.body, 'experiment_id'))) };
  },

  async 'experiments/create'(call) {
    const name = requiredString(call.body, 'name', MAX_NAME).trim();
    if (!name) throw invalid(`Missing value for required parameter 'name'.`);
    const tags = keyValues(call.body, 'tags');
    call.access.mayCreateProjects();
    const { pedigree } = call.ctx;
    const existing = (await pedigree.lineage.projects()).find((p) => p.name === name);
    if (existing) {
      throw new MlflowError('RESOURCE_ALREADY_EXISTS', `Experiment '${name}' already exists${existing.lifecycle === 'deleted' ? ' in deleted state; restore it (experiments/restore) or choose another name' : ''}.`);
    }
    let projectId: string;
    try {
      ({ projectId } = await pedigree.tracker.createProject({ name }, { metadata: meta(call) }));
    } catch (err) {
      if (/already exists/.test((err as Error).message)) throw new MlflowError('RESOURCE_ALREADY_EXISTS', `Experiment '${name}' already exists.`);
      throw err;
    }
    for (const t of tags) await pedigree.tracker.setProjectTag(projectId, t.key, t.value, { metadata: meta(call) });
    return { experiment_id: projectId };
  },

  async 'experiments/search'(call) {
    const maxResults = optionalInt(call.body, 'max_results', { min: 1 }) ?? 1000;
    if (maxResults > MLFLOW_MAX_RESULTS) throw invalid(`Invalid value ${maxResults} for parameter 'max_results' supplied. It must be at most ${MLFLOW_MAX_RESULTS}.`);
    const view = viewType(call.body, 'view_type');
    const clauses = parseFilter(optionalString(call.body, 'filter'), { defaultEntity: 'attribute' });
    const order = parseOrderBy(list(call.body, 'order_by').map(String), { defaultEntity: 'attribute' });
    const offset = decodePageToken(optionalString(call.body, 'page_token'));
    const visible = await call.access.projectIds();
    let all = (await call.ctx.pedigree.lineage.projects({ lifecycle: view })).filter((p) => visible === 'all' || visible.includes(p.id));
    all = all.filter((p) => matches(experimentSearchable(p), clauses));
    const items = all.map((p) => Object.assign(experimentSearchable(p), { p }));
    sortBy(items, order.length ? order : [{ entity: 'attribute', key: 'creation_time', ascending: false }], (a, b) => (a.p.id < b.p.id ? -1 : 1));
    const page = items.slice(offset, offset + maxResults);
    return { experiments: page.map((i) => experimentView(i.p)), ...(offset + maxResults < items.length ? { next_page_token: encodePageToken(offset + maxResults) } : {}) };
  },

  /** MLflow 1.x's listing, removed from MLflow 2's server; older clients (and the npm `mlflow` package) still call it. */
  async 'experiments/list'(call) {
    return experiments['experiments/search']!({ ...call, body: { view_type: call.body.view_type, max_results: MLFLOW_MAX_RESULTS } });
  },

  async 'experiments/update'(call) {
    const p = await experimentProject(call, requiredString(call.body, 'experiment_id'));
    const name = optionalString(call.body, 'new_name', MAX_NAME)?.trim();
    if (!name || name === p.name) return {};
    if (p.lifecycle !== 'active') throw invalid('Cannot rename a non-active experiment.');
    const clash = (await call.ctx.pedigree.lineage.projects()).find((x) => x.name === name);
    if (clash) throw new MlflowError('RESOURCE_ALREADY_EXISTS', `Experiment '${name}' already exists.`);
    await call.ctx.pedigree.tracker.renameProject(p.id, name, { metadata: meta(call) });
    return {};
  },

  async 'experiments/delete'(call) {
    const p = await experimentProject(call, requiredString(call.body, 'experiment_id'));
    if (p.lifecycle !== 'deleted') await call.ctx.pedigree.tracker.deleteProject(p.id, { metadata: meta(call) });
    return {};
  },

  async 'experiments/restore'(call) {
    const p = await experimentProject(call, requiredString(call.body, 'experiment_id'));
    if (p.lifecycle !== 'active') await call.ctx.pedigree.tracker.restoreProject(p.id, { metadata: meta(call) });
    return {};
  },

  async 'experiments/set-experiment-tag'(call) {
    const p = await experimentProject(call, requiredString(call.body, 'experiment_id'));
    const key = requiredString(call.body, 'key', MAX_KEY);
    const value = optionalString(call.body, 'value', MAX_TAG_VALUE) ?? '';
    if (p.tagValues[key] !== value) await call.ctx.pedigree.tracker.setProjectTag(p.id, key, value, { metadata: meta(call) });
    return {};
  },
};

// ---- runs -----------------------------------------------------------------------

function status(run: RunView): (typeof RUN_STATUSES)[number] {
  switch (run.status) {
    case 'created':
      return 'SCHEDULED';
    case 'running':
      return 'RUNNING';
    case 'completed':
      return 'FINISHED';
    default:
      return run.killed ? 'KILLED' : 'FAILED';
  }
}

function runInfo(run: RunView): Body {
  return {
    run_id: run.id,
    run_uuid: run.id,
    run_name: run.name,
    experiment_id: run.projectId,
    user_id: run.tagValues['mlflow.user'] ?? '',
    status: status(run),
    start_time: ms(run.startedAt ?? run.createdAt),
    ...(run.endedAt ? { end_time: ms(run.endedAt) } : {}),
    artifact_uri: `mlflow-artifacts:/${run.projectId}/${run.id}/artifacts`,
    lifecycle_stage: run.lifecycle,
  };
}

/** Params as MLflow sees them: strings (a value logged from elsewhere as JSON is shown as JSON). */
const paramString = (v: Json): string => (typeof v === 'string' ? v : JSON.stringify(v));

function runTags(run: RunView): KeyValue[] {
  const tags = Object.entries(run.tagValues).map(([key, value]) => ({ key, value }));
  tags.push({ key: 'mlflow.runName', value: run.name });
  for (const label of run.tags) if (!(label in run.tagValues)) tags.push({ key: label, value: '' });
  return tags;
}

interface RunExtras {
  metrics: { key: string; value: number; step: number; time: number }[];
  datasets: { role: string; artifact: { name: string; digest: string; spec: Record<string, Json> } }[];
}

async function extras(call: Call, runIds: string[], withDatasets = true): Promise<Map<string, RunExtras>> {
  const { lineage } = call.ctx.pedigree;
  const [metrics, datasets] = await Promise.all([lineage.latestMetrics(runIds), withDatasets ? lineage.datasetInputs(runIds) : new Map()]);
  return new Map(runIds.map((id) => [id, { metrics: metrics.get(id) ?? [], datasets: datasets.get(id) ?? [] }]));
}

function datasetView(d: RunExtras['datasets'][number]): Body {
  const params = (d.artifact.spec.params ?? {}) as Record<string, Json>;
  const str = (k: string) => (typeof params[k] === 'string' ? (params[k] as string) : undefined);
  return {
    tags: [{ key: 'mlflow.data.context', value: d.role }],
    dataset: {
      name: d.artifact.name,
      digest: str('digest') ?? d.artifact.digest.slice('sha256:'.length, 'sha256:'.length + 8),
      source_type: str('source_type') ?? String(d.artifact.spec.source ?? ''),
      source: str('source') ?? '',
      ...(str('schema') ? { schema: str('schema') } : {}),
      ...(str('profile') ? { profile: str('profile') } : {}),
    },
  };
}

function runView(run: RunView, x: RunExtras): Body {
  return {
    info: runInfo(run),
    data: {
      metrics: x.metrics.map((m) => ({ key: m.key, value: metricJson(m.value), timestamp: Math.round(m.time), step: m.step })),
      params: Object.entries(run.hyperparameters).map(([key, value]) => ({ key, value: paramString(value) })),
      tags: runTags(run),
    },
    inputs: { dataset_inputs: x.datasets.map(datasetView) },
  };
}

async function fullRun(call: Call, run: RunView): Promise<Body> {
  return runView(run, (await extras(call, [run.id])).get(run.id)!);
}

const ADJECTIVES = ['amber', 'bold', 'brisk', 'calm', 'clever', 'dapper', 'eager', 'gentle', 'keen', 'lucid', 'nimble', 'quiet', 'rare', 'sleek', 'steady', 'swift', 'tidy', 'vivid', 'wise', 'zesty'];
const NOUNS = ['badger', 'crane', 'dove', 'eel', 'finch', 'fox', 'gull', 'hare', 'heron', 'ibis', 'lark', 'lynx', 'mole', 'newt', 'otter', 'owl', 'quail', 'robin', 'seal', 'wren'];

/** A readable name for a run created without one (MLflow names them too), fixed by the request's id. */
function generatedName(seed: string): string {
  const h = createHash('sha256').update(seed).digest();
  return `${ADJECTIVES[h[0]! % ADJECTIVES.length]}-${NOUNS[h[1]! % NOUNS.length]}-${h.readUInt16BE(2) % 1000}`;
}

interface MetricIn {
  key: string;
  value: number;
  step: number;
  time?: number;
}

function parseMetric(m: unknown, where: string): MetricIn {
  if (!m || typeof m !== 'object') throw invalid(`${where} must be an object with key, value, timestamp and step`);
  const o = m as Body;
  const key = requiredString(o, 'key', MAX_KEY);
  if (o.value === undefined || o.value === null) throw invalid(`Missing value for required parameter '${where}.value'.`);
  const value = metricValue(o.value, `${where}.value`);
  const step = optionalInt(o, 'step') ?? 0;
  if (step < 0) throw invalid(`${where}.step must be 0 or more (Pedigree's steps are non-negative), got ${step}`);
  const time = optionalInt(o, 'timestamp', { min: 0 });
  return { key, value, step, time };
}

function parseParams(body: Body, field: string): KeyValue[] {
  const params = keyValues(body, field);
  for (const p of params) if (p.value.length > MLFLOW_MAX_PARAM_VALUE) throw invalid(`Param value '${p.value.slice(0, 50)}…' had length ${p.value.length}, which exceeded length limit of ${MLFLOW_MAX_PARAM_VALUE}`);
  const seen = new Map<string, string>();
  for (const p of params) {
    if (seen.has(p.key) && seen.get(p.key) !== p.value) throw invalid(`Duplicate parameter keys with different values: ${JSON.stringify(p.key)}`);
    seen.set(p.key, p.value);
  }
  return params;
}

/** The write path every MLflow logging call shares (MLflow's log_metric, log_param and set_tag are log_batch too). */
async function logBatch(call: Call, run: RunView, batch: { metrics: MetricIn[]; params: KeyValue[]; tags: KeyValue[] }, id: string): Promise<void> {
  const { tracker } = call.ctx.pedigree;
  const opts = (part: string) => ({ eventId: nameUuid(id, part), metadata: meta(call), evenIfEnded: true });
  if (run.lifecycle === 'deleted') throw invalid(`The run ${run.id} must be in the 'active' state. Current state is deleted.`);
  if (batch.params.length) {
    await tracker.declareHyperparametersOnce(run.id, Object.fromEntries(batch.params.map((p) => [p.key, p.value])), opts('params'));
  }
  for (const [i, t] of batch.tags.entries()) await setTag(call, run, t, opts(`tag-${i}`));
  const now = Date.now();
  const points = batch.metrics.map((m) => ({ key: m.key, step: m.step, value: m.value, time: m.time ?? now }));
  for (let i = 0; i < points.length; i += MAX_POINTS_PER_BATCH) {
    await tracker.logMetrics(run.id, points.slice(i, i + MAX_POINTS_PER_BATCH), { ...opts(`metrics-${i / MAX_POINTS_PER_BATCH}`), allowNonFinite: true });
  }
}

async function setTag(call: Call, run: RunView, tag: KeyValue, opts: { eventId: string; metadata: { actor: string }; evenIfEnded?: boolean }): Promise<void> {
  const { tracker } = call.ctx.pedigree;
  if (tag.value.length > MAX_TAG_VALUE) throw invalid(`Tag value for ${JSON.stringify(tag.key)} had length ${tag.value.length}, which exceeded length limit of ${MAX_TAG_VALUE}`);
  if (tag.key === 'mlflow.runName') {
    if (tag.value && tag.value !== run.name) await tracker.renameRun(run.id, tag.value, opts);
    return;
  }
  if (run.tagValues[tag.key] !== tag.value) await tracker.setTag(run.id, tag.key, tag.value, opts);
}

function runSearchable(run: RunView, x: RunExtras): Searchable {
  const metrics = new Map(x.metrics.map((m) => [m.key, m.value]));
  const tags = new Map(runTags(run).map((t) => [t.key, t.value]));
  const info = runInfo(run);
  return {
    attribute: (k) => {
      switch (k) {
        case 'run_id':
        case 'run_uuid':
        case 'id':
          return run.id;
        case 'run_name':
        case 'name':
        case '`Run name`':
          return run.name;
        case 'status':
          return info.status as string;
        case 'user_id':
          return info.user_id as string;
        case 'start_time':
        case 'created':
        case 'Created':
          return info.start_time as number;
        case 'end_time':
          return (info.end_time as number | undefined) ?? null;
        case 'artifact_uri':
          return info.artifact_uri as string;
        case 'lifecycle_stage':
          return run.lifecycle;
        case 'experiment_id':
          return run.projectId;
        default:
          throw invalid(`Invalid attribute key '${k}' specified. Valid keys are run_id, run_name, status, user_id, start_time, end_time, artifact_uri, lifecycle_stage`);
      }
    },
    metric: (k) => metrics.get(k),
    param: (k) => (k in run.hyperparameters ? paramString(run.hyperparameters[k]!) : undefined),
    tag: (k) => tags.get(k),
    datasets: () =>
      x.datasets.map((d) => {
        const v = datasetView(d).dataset as { name: string; digest: string };
        return { name: v.name, digest: v.digest, context: d.role };
      }),
  };
}

function requireStatus(v: string | undefined): (typeof RUN_STATUSES)[number] | undefined {
  if (v === undefined || v === '') return undefined;
  const s = v.toUpperCase();
  if (!(RUN_STATUSES as readonly string[]).includes(s)) throw invalid(`Invalid value ${JSON.stringify(v)} for parameter 'status': one of ${RUN_STATUSES.join(', ')}`);
  return s as (typeof RUN_STATUSES)[number];
}

const runs: Record<string, Handler> = {
  async 'runs/create'(call) {
    const project = await experimentProject(call, optionalString(call.body, 'experiment_id'));
    if (project.lifecycle !== 'active') throw invalid(`Could not create run under non-active experiment with ID ${project.id}.`);
    const tags = keyValues(call.body, 'tags');
    for (const t of tags) if (t.value.length > MAX_TAG_VALUE) throw invalid(`Tag value for ${JSON.stringify(t.key)} exceeded length limit of ${MAX_TAG_VALUE}`);
    const tagMap = new Map(tags.map((t) => [t.key, t.value]));
    const runName = optionalString(call.body, 'run_name', MAX_NAME);
    const tagName = tagMap.get('mlflow.runName');
    if (runName && tagName && runName !== tagName) {
      throw invalid(`Both 'run_name' argument and 'mlflow.runName' tag are specified, but with different values (run_name='${runName}', mlflow.runName='${tagName}').`);
    }
    const startTime = optionalInt(call.body, 'start_time', { min: 0 });
    const id = requestId('runs/create', project.id, call.body);
    const runId = nameUuid('mlflow-run', id);
    const name = runName || tagName || generatedName(id);
    const kindTag = tagMap.get('pedigree.kind');
    const kind = kindTag && (RUN_KINDS as readonly string[]).includes(kindTag) ? (kindTag as RunKind) : 'custom';
    // A nested run (mlflow.parentRunId) is a stage after its parent: forked from it, in the same project.
    const parentRef = tagMap.get('mlflow.parentRunId');
    let forkOf: { runId: string } | undefined;
    if (parentRef) {
      const parent = await runOf(call, parentRef).catch(() => null);
      if (parent && parent.projectId === project.id) forkOf = { runId: parent.id };
    }
    const user = tagMap.get('mlflow.user') ?? optionalString(call.body, 'user_id');
    const tagValues = Object.fromEntries(tags.filter((t) => t.key !== 'mlflow.runName').map((t) => [t.key, t.value]));
    if (user && !tagValues['mlflow.user']) tagValues['mlflow.user'] = user;
    await call.ctx.pedigree.tracker.createRun(
      {
        projectId: project.id,
        runId,
        name,
        kind,
        codeVersion: tagMap.get('mlflow.source.git.commit')?.slice(0, MAX_NAME),
        environment: { client: 'mlflow', ...(tagMap.has('mlflow.source.name') ? { source: tagMap.get('mlflow.source.name')! } : {}) },
        tagValues,
        forkOf,
        start: true,
        startedAt: startTime,
      },
      { eventId: id, metadata: meta(call) },
    );
    return { run: await fullRun(call, await call.ctx.pedigree.lineage.run(runId)) };
  },

  async 'runs/get'(call) {
    return { run: await fullRun(call, await runOf(call)) };
  },

  async 'runs/update'(call) {
    let run = await runOf(call);
    const { tracker, lineage } = call.ctx.pedigree;
    const wanted = requireStatus(optionalString(call.body, 'status'));
    const endTime = optionalInt(call.body, 'end_time', { min: 0 });
    const name = optionalString(call.body, 'run_name', MAX_NAME);
    const id = requestId('runs/update', run.id, call.body);
    const opts = (part: string) => ({ eventId: nameUuid(id, part), metadata: meta(call) });
    if (run.lifecycle === 'deleted') throw invalid(`The run ${run.id} must be in the 'active' state. Current state is deleted.`);
    if (name && name !== run.name) await tracker.renameRun(run.id, name, opts('name'));
    const current = status(run);
    if (wanted && wanted !== current) {
      const ended = run.status === 'completed' || run.status === 'failed';
      if (wanted === 'RUNNING' || (ended && wanted !== 'SCHEDULED')) {
        // MLflow lets a run that ended run again (a resumed run) or end differently: each is an event.
        if (run.status !== 'running') await tracker.startRun(run.id, { ...opts('start'), reopen: true });
      }
      if (wanted === 'FINISHED') await tracker.completeRun(run.id, { ...opts('end'), at: endTime });
      else if (wanted === 'FAILED' || wanted === 'KILLED') {
        await tracker.failRun(run.id, wanted === 'KILLED' ? 'killed (MLflow status KILLED)' : 'failed (MLflow status FAILED)', { ...opts('end'), at: endTime, killed: wanted === 'KILLED' });
      }
    }
    run = await lineage.run(run.id);
    return { run_info: runInfo(run) };
  },

  async 'runs/delete'(call) {
    const run = await runOf(call);
    if (run.lifecycle !== 'deleted') await call.ctx.pedigree.tracker.deleteRun(run.id, { metadata: meta(call) });
    return {};
  },

  async 'runs/restore'(call) {
    const run = await runOf(call);
    if (run.lifecycle !== 'active') await call.ctx.pedigree.tracker.restoreRun(run.id, { metadata: meta(call) });
    return {};
  },

  async 'runs/set-tag'(call) {
    const run = await runOf(call);
    const tag = { key: requiredString(call.body, 'key', MAX_KEY), value: optionalString(call.body, 'value') ?? '' };
    await logBatch(call, run, { metrics: [], params: [], tags: [tag] }, requestId('runs/set-tag', run.id, call.body));
    return {};
  },

  async 'runs/delete-tag'(call) {
    const run = await runOf(call);
    const key = requiredString(call.body, 'key', MAX_KEY);
    if (run.lifecycle === 'deleted') throw invalid(`The run ${run.id} must be in the 'active' state. Current state is deleted.`);
    if (!(key in run.tagValues)) throw notFound(`No tag with name: ${key} in run with id ${run.id}`);
    await call.ctx.pedigree.tracker.removeTag(run.id, key, { metadata: meta(call) });
    return {};
  },

  async 'runs/log-metric'(call) {
    const run = await runOf(call);
    const metric = parseMetric(call.body, 'metric');
    if (metric.time === undefined) throw invalid(`Missing value for required parameter 'timestamp'.`);
    await logBatch(call, run, { metrics: [metric], params: [], tags: [] }, requestId('runs/log-metric', run.id, call.body));
    return {};
  },

  async 'runs/log-parameter'(call) {
    const run = await runOf(call);
    const [param] = parseParams({ params: [{ key: call.body.key, value: call.body.value }] }, 'params');
    await logBatch(call, run, { metrics: [], params: [param!], tags: [] }, requestId('runs/log-parameter', run.id, call.body));
    return {};
  },

  async 'runs/log-batch'(call) {
    const run = await runOf(call);
    const metrics = list(call.body, 'metrics').map((m, i) => parseMetric(m, `metrics[${i}]`));
    const params = parseParams(call.body, 'params');
    const tags = keyValues(call.body, 'tags');
    await logBatch(call, run, { metrics, params, tags }, requestId('runs/log-batch', run.id, call.body));
    return {};
  },

  async 'runs/log-inputs'(call) {
    const run = await runOf(call);
    if (run.lifecycle === 'deleted') throw invalid(`The run ${run.id} must be in the 'active' state. Current state is deleted.`);
    const id = requestId('runs/log-inputs', run.id, call.body);
    const { tracker } = call.ctx.pedigree;
    for (const [i, input] of list(call.body, 'datasets').entries()) {
      const o = (input ?? {}) as Body;
      const d = (o.dataset ?? null) as Body | null;
      if (!d || typeof d !== 'object') throw invalid(`datasets[${i}].dataset is required`);
      const name = requiredString(d, 'name', MAX_NAME);
      const digest = requiredString(d, 'digest', 200);
      const sourceType = requiredString(d, 'source_type', MAX_NAME);
      const source = requiredString(d, 'source', 100_000);
      const schema = optionalString(d, 'schema', 1_000_000);
      const profile = optionalString(d, 'profile', 100_000);
      const context = keyValues(o, 'tags').find((t) => t.key === 'mlflow.data.context')?.value || 'input';
      const artifact = await tracker.registerArtifact(
        {
          projectId: run.projectId,
          name,
          spec: { kind: 'dataset', source: sourceType, params: { digest, source_type: sourceType, source, ...(schema ? { schema } : {}), ...(profile ? { profile } : {}) } },
        },
        { eventId: nameUuid(id, `dataset-${i}`), metadata: meta(call) },
      );
      const used = await call.ctx.pedigree.lineage.edgesOf(run.id);
      if (used.some((e) => e.artifactId === artifact.artifactId && e.direction === 'used' && e.role === context)) continue;
      await tracker.useInput(run.id, { artifactId: artifact.artifactId, role: context }, { eventId: nameUuid(id, `input-${i}`), metadata: meta(call), evenIfEnded: true });
    }
    return {};
  },

  async 'runs/search'(call) {
    const maxResults = optionalInt(call.body, 'max_results', { min: 1 }) ?? 1000;
    if (maxResults > MLFLOW_MAX_RESULTS) throw invalid(`Invalid value ${maxResults} for parameter 'max_results' supplied. It must be at most ${MLFLOW_MAX_RESULTS}.`);
    const view = viewType(call.body, 'run_view_type');
    const ids = list(call.body, 'experiment_ids').map(String);
    if (ids.length === 0) ids.push(DEFAULT_EXPERIMENT_ID);
    const clauses = parseFilter(optionalString(call.body, 'filter'));
    const order = parseOrderBy(list(call.body, 'order_by').map(String));
    const offset = decodePageToken(optionalString(call.body, 'page_token'));
    const { lineage } = call.ctx.pedigree;
    const found: RunView[] = [];
    for (const ref of new Set(ids)) {
      const project = await experimentProject(call, ref);
      for (let skip = 0; ; skip += 1000) {
        const { runs: page } = await lineage.runs({ projectId: project.id, lifecycle: view, limit: 1000, offset: skip });
        found.push(...page);
        if (page.length < 1000) break;
      }
    }
    const x = await extras(call, found.map((r) => r.id));
    const items = found.map((r) => Object.assign(runSearchable(r, x.get(r.id)!), { run: r })).filter((s) => matches(s, clauses));
    sortBy(items, [...order, { entity: 'attribute', key: 'start_time', ascending: false }], (a, b) => (a.run.id < b.run.id ? -1 : 1));
    const page = items.slice(offset, offset + maxResults);
    return {
      runs: page.map((s) => runView(s.run, x.get(s.run.id)!)),
      ...(offset + maxResults < items.length ? { next_page_token: encodePageToken(offset + maxResults) } : {}),
    };
  },

  'artifacts/list': listRunArtifacts,

  async 'metrics/get-history'(call) {
    const run = await runOf(call);
    const key = requiredString(call.body, 'metric_key', MAX_KEY);
    const maxResults = optionalInt(call.body, 'max_results', { min: 1 });
    const offset = decodePageToken(optionalString(call.body, 'page_token'));
    const points = await call.ctx.pedigree.lineage.metricPoints(run.id, key, { offset, ...(maxResults ? { limit: maxResults + 1 } : {}) });
    const more = maxResults !== undefined && points.length > maxResults;
    const page = more ? points.slice(0, maxResults) : points;
    return {
      metrics: page.map((p) => ({ key, value: metricJson(p.value), timestamp: Math.round(p.time), step: Number(p.step) })),
      ...(more ? { next_page_token: encodePageToken(offset + maxResults!) } : {}),
    };
  },
};

/** Every tracking endpoint: path under /api/2.0/mlflow/, the methods MLflow's server takes for it, and its handler. */
export const TRACKING_ENDPOINTS: Record<string, { methods: readonly string[]; handler: Handler }> = Object.fromEntries(
  Object.entries({ ...experiments, ...runs }).map(([path, handler]) => [
    path,
    {
      methods: ['experiments/get-by-name', 'experiments/get', 'experiments/list', 'runs/get', 'metrics/get-history', 'artifacts/list'].includes(path) ? ['GET'] : path.endsWith('/search') ? ['POST', 'GET'] : ['POST'],
      handler,
    },
  ]),
);
