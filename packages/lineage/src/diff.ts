import { ValidationError, type Json } from '@pedigree/ledger';
import type { ArtifactView, ArtifactWithComponents, EdgeView, EvalView, HyperparameterView, MetricKeyView, RunView } from './views.ts';

/** What the diff reads (the read models' summaries, never raw points); `Lineage` is one. */
export interface DiffReader {
  run(runId: string): Promise<RunView>;
  artifact(artifactId: string): Promise<ArtifactWithComponents>;
  edgesOf(runId: string): Promise<EdgeView[]>;
  hyperparameterHistory(runId: string): Promise<HyperparameterView[]>;
  metricKeys(runId: string): Promise<MetricKeyView[]>;
  evals(runId: string): Promise<EvalView[]>;
  resolveRunId(idOrPrefix: string): Promise<string>;
}

/**
 * What exactly differs between two runs' lineages.
 *
 * Each run's ancestry is read as a chain of stages, root first: the run, the
 * run that produced the checkpoint it started from, and so on back to a run
 * that started from data alone (pretrain → midtrain → sft → dpo → eval). The
 * two chains share a prefix (the same runs) up to the common ancestor; after
 * it, stages are aligned by kind, in order (a longest common subsequence), so
 * a stage only one side has shows as added or removed. Each aligned pair is
 * compared on what went in (hyperparameters, mid-run changes, code version,
 * environment, inputs, data mixes component by component) and on what came out
 * (metric summaries, evals). Nothing here reads raw metric points: summaries
 * come from the projections.
 */

export type ValueChange =
  | { path: string; change: 'added'; b: Json }
  | { path: string; change: 'removed'; a: Json }
  | { path: string; change: 'changed'; a: Json; b: Json; delta?: number; relative?: number };

export interface StageRef {
  runId: string;
  name: string;
  kind: string;
  status: string;
}

export interface ArtifactRef {
  id: string;
  name: string;
  kind: string;
  digest: string;
}

export interface ComponentDiff {
  /** The component's dataset (or nested mix), matched across the two mixes by name. */
  name: string;
  change: 'added' | 'removed' | 'changed';
  weight: { a: number | null; b: number | null; delta: number | null };
  filter: ValueChange[];
  /** Same name, different content (e.g. regenerated with another seed). */
  digest: { a: string; b: string } | null;
  /** What changed in the dataset's spec when its digest did (params, counts). */
  spec: ValueChange[];
}

export interface InputDiff {
  role: string;
  change: 'added' | 'removed' | 'changed';
  a: ArtifactRef | null;
  b: ArtifactRef | null;
  /** Spec differences when the same role points at different content. */
  spec: ValueChange[];
  /** For data mixes: component by component. */
  components: ComponentDiff[];
}

export interface MetricSummary {
  last: number;
  min: number;
  max: number;
  count: number;
  lastStep: number;
}

export interface MetricDiff {
  key: string;
  a: MetricSummary | null;
  b: MetricSummary | null;
  /** b.last − a.last */
  delta: number | null;
}

export interface EvalDiff {
  suite: string;
  task: string;
  contextLength: number | null;
  a: number | null;
  b: number | null;
  delta: number | null;
}

export interface HyperparameterChangeAt {
  key: string;
  value: Json;
  step: number;
  reason: string | null;
}

export interface StageDiff {
  kind: string;
  /**
   * shared: the same run on both sides (up to the common ancestor).
   * identical: two runs, nothing differs. changed: something does.
   * added: only b has this stage; removed: only a has it.
   */
  status: 'shared' | 'identical' | 'changed' | 'added' | 'removed';
  a: StageRef | null;
  b: StageRef | null;
  /** Folded away in the report (shared and identical stages, unless showAll). */
  collapsed: boolean;
  hyperparameters: ValueChange[];
  /** Hyperparameters changed mid-run (at a step), when the two runs' histories differ. */
  midRunChanges: { a: HyperparameterChangeAt[]; b: HyperparameterChangeAt[] } | null;
  codeVersion: { a: string | null; b: string | null } | null;
  environment: ValueChange[];
  inputs: InputDiff[];
  metrics: MetricDiff[];
  evals: EvalDiff[];
}

export interface LineageDiff {
  a: StageRef;
  b: StageRef;
  /** Nothing differs between the two lineages (config nor outcome). */
  identical: boolean;
  /** The last thing both lineages share: a run, or the checkpoint both started from. */
  commonAncestor: { type: 'run' | 'checkpoint'; id: string; name: string; kind: string } | null;
  /** The first stage on each side that is not shared or identical. */
  firstDivergence: { a: StageRef | null; b: StageRef | null } | null;
  /** Root first. */
  stages: StageDiff[];
  /** How many stages were folded away (see showAll). */
  collapsed: number;
}

export interface DiffOptions {
  /** Report every stage and every value, not only what changed. */
  showAll?: boolean;
}

/** Environment keys that say where a run ran, not how: listed with showAll only, never a change. */
const VOLATILE_ENVIRONMENT = new Set(['host', 'hostname', 'runtime', 'client', 'platform', 'pid', 'user']);

interface Stage {
  run: RunView;
  /** The checkpoint it started from (produced by the previous stage), if any. */
  init: ArtifactView | null;
}

/** A run's chain of stages, root first: follow the checkpoint each started from back to its producer. */
async function stagesOf(lineage: DiffReader, runId: string): Promise<Stage[]> {
  const chain: Stage[] = [];
  const seen = new Set<string>();
  let current: string | null = runId;
  while (current && !seen.has(current)) {
    seen.add(current);
    const run = await lineage.run(current);
    const used = (await lineage.edgesOf(run.id)).filter((e) => e.direction === 'used');
    let init: ArtifactView | null = null;
    let parent: string | null = null;
    // Prefer the declared init checkpoint, then any checkpoint another run produced (an eval's "model").
    for (const e of [...used.filter((u) => u.role === 'init'), ...used.filter((u) => u.role !== 'init')]) {
      const art = await lineage.artifact(e.artifactId);
      if (art.kind === 'checkpoint' && art.producedBy) {
        init = art;
        parent = art.producedBy;
        break;
      }
    }
    parent ??= run.forkedFromRunId;
    chain.unshift({ run, init });
    current = parent;
  }
  return chain;
}

const isObject = (v: unknown): v is Record<string, Json> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Every difference between two JSON values, by path (`a.b[2].c`); numbers with their delta. */
export function diffValues(a: Json | undefined, b: Json | undefined, path = ''): ValueChange[] {
  if (a === undefined && b === undefined) return [];
  if (a === undefined) return [{ path, change: 'added', b: b! }];
  if (b === undefined) return [{ path, change: 'removed', a }];
  if (isObject(a) && isObject(b)) {
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
    return keys.flatMap((k) => diffValues(a[k], b[k], path ? `${path}.${k}` : k));
  }
  if (Array.isArray(a) && Array.isArray(b)) {
    const n = Math.max(a.length, b.length);
    return Array.from({ length: n }, (_, i) => diffValues(a[i], b[i], `${path}[${i}]`)).flat();
  }
  if (a === b || (typeof a === 'number' && typeof b === 'number' && Number.isNaN(a) && Number.isNaN(b))) return [];
  if (typeof a === 'number' && typeof b === 'number') {
    const delta = b - a;
    return [{ path, change: 'changed', a, b, delta, ...(a !== 0 ? { relative: delta / Math.abs(a) } : {}) }];
  }
  return [{ path, change: 'changed', a, b }];
}

const ref = (s: Stage): StageRef => ({ runId: s.run.id, name: s.run.name, kind: s.run.kind, status: s.run.status });
const artifactRef = (a: ArtifactView): ArtifactRef => ({ id: a.id, name: a.name, kind: a.kind, digest: a.digest });

/** Longest common subsequence of the two stage lists by kind: the aligned pairs, in order. */
function alignByKind(a: Stage[], b: Stage[]): [Stage | null, Stage | null][] {
  const n = a.length;
  const m = b.length;
  const L = Array.from({ length: n + 1 }, () => new Array<number>(m + 1).fill(0));
  for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--) L[i]![j] = a[i]!.run.kind === b[j]!.run.kind ? L[i + 1]![j + 1]! + 1 : Math.max(L[i + 1]![j]!, L[i]![j + 1]!);
  const out: [Stage | null, Stage | null][] = [];
  let i = 0;
  let j = 0;
  while (i < n && j < m) {
    if (a[i]!.run.kind === b[j]!.run.kind) out.push([a[i++]!, b[j++]!]);
    else if (L[i + 1]![j]! >= L[i]![j + 1]!) out.push([a[i++]!, null]);
    else out.push([null, b[j++]!]);
  }
  while (i < n) out.push([a[i++]!, null]);
  while (j < m) out.push([null, b[j++]!]);
  return out;
}

/** The stage's own inputs by role, leaving out the checkpoint it started from (that is the chain itself). */
async function inputsOf(lineage: DiffReader, stage: Stage): Promise<Map<string, ArtifactView[]>> {
  const byRole = new Map<string, ArtifactView[]>();
  for (const e of await lineage.edgesOf(stage.run.id)) {
    if (e.direction !== 'used' || e.artifactId === stage.init?.id) continue;
    const list = byRole.get(e.role) ?? [];
    list.push(await lineage.artifact(e.artifactId));
    byRole.set(e.role, list);
  }
  return byRole;
}

async function diffMix(lineage: DiffReader, a: ArtifactView, b: ArtifactView, depth = 0): Promise<ComponentDiff[]> {
  const components = async (mix: ArtifactView) => {
    const { components: cs } = await lineage.artifact(mix.id);
    return new Map(await Promise.all(cs.map(async (c) => [(await lineage.artifact(c.artifactId)).name, { ...c, artifact: await lineage.artifact(c.artifactId) }] as const)));
  };
  const ca = await components(a);
  const cb = await components(b);
  const out: ComponentDiff[] = [];
  for (const name of [...new Set([...ca.keys(), ...cb.keys()])]) {
    const x = ca.get(name);
    const y = cb.get(name);
    const filter = diffValues((x?.filter ?? {}) as Json, (y?.filter ?? {}) as Json);
    const digest = x && y && x.artifact.digest !== y.artifact.digest ? { a: x.artifact.digest, b: y.artifact.digest } : null;
    const spec = digest ? diffValues(x!.artifact.spec as Json, y!.artifact.spec as Json).filter((c) => c.path !== 'components' && !c.path.startsWith('components')) : [];
    const weightChanged = x && y ? x.weight !== y.weight : true;
    if (!x || !y || weightChanged || filter.length || digest) {
      out.push({
        name,
        change: !x ? 'added' : !y ? 'removed' : 'changed',
        weight: { a: x?.weight ?? null, b: y?.weight ?? null, delta: x && y ? y.weight - x.weight : null },
        filter,
        digest,
        spec,
      });
    }
    // A nested mix whose content changed: its own components, prefixed with its name.
    if (digest && depth < 3 && x!.artifact.kind === 'datamix' && y!.artifact.kind === 'datamix') {
      for (const inner of await diffMix(lineage, x!.artifact, y!.artifact, depth + 1)) out.push({ ...inner, name: `${name} / ${inner.name}` });
    }
  }
  return out;
}

async function diffInputs(lineage: DiffReader, a: Stage | null, b: Stage | null): Promise<InputDiff[]> {
  const ia = a ? await inputsOf(lineage, a) : new Map<string, ArtifactView[]>();
  const ib = b ? await inputsOf(lineage, b) : new Map<string, ArtifactView[]>();
  const out: InputDiff[] = [];
  for (const role of [...new Set([...ia.keys(), ...ib.keys()])].sort()) {
    const xs = ia.get(role) ?? [];
    const ys = ib.get(role) ?? [];
    // Several artifacts in one role: matched by name, then in order.
    const ysByName = new Map(ys.map((y) => [y.name, y]));
    const used = new Set<string>();
    const pairs: [ArtifactView | null, ArtifactView | null][] = xs.map((x) => {
      const y = ysByName.get(x.name);
      if (y) used.add(y.id);
      return [x, y ?? null];
    });
    const rest = ys.filter((y) => !used.has(y.id));
    for (const p of pairs) if (!p[1] && rest.length) p[1] = rest.shift()!;
    for (const y of rest) pairs.push([null, y]);
    for (const [x, y] of pairs) {
      if (x && y && x.digest === y.digest) continue;
      const components = x && y && x.kind === 'datamix' && y.kind === 'datamix' ? await diffMix(lineage, x, y) : [];
      out.push({
        role,
        change: !x ? 'added' : !y ? 'removed' : 'changed',
        a: x ? artifactRef(x) : null,
        b: y ? artifactRef(y) : null,
        spec: x && y && x.kind !== 'datamix' ? diffValues(x.spec as Json, y.spec as Json) : [],
        components,
      });
    }
  }
  return out;
}

async function metricSummaries(lineage: DiffReader, runId: string): Promise<Map<string, MetricSummary>> {
  return new Map((await lineage.metricKeys(runId)).map((m) => [m.key, { last: m.last, min: m.min, max: m.max, count: m.count, lastStep: m.lastStep }]));
}

async function diffOutcomes(lineage: DiffReader, a: Stage | null, b: Stage | null, showAll: boolean): Promise<{ metrics: MetricDiff[]; evals: EvalDiff[] }> {
  const ma = a ? await metricSummaries(lineage, a.run.id) : new Map<string, MetricSummary>();
  const mb = b ? await metricSummaries(lineage, b.run.id) : new Map<string, MetricSummary>();
  const metrics: MetricDiff[] = [];
  for (const key of [...new Set([...ma.keys(), ...mb.keys()])].sort()) {
    const x = ma.get(key) ?? null;
    const y = mb.get(key) ?? null;
    const same = x && y && x.last === y.last && x.min === y.min && x.max === y.max && x.count === y.count;
    if (same && !showAll) continue;
    metrics.push({ key, a: x, b: y, delta: x && y ? y.last - x.last : null });
  }
  const evalKey = (e: { suite: string; task: string; contextLength: number | null }) => `${e.suite}\u0000${e.task}\u0000${e.contextLength ?? ''}`;
  const ea = new Map((a ? await lineage.evals(a.run.id) : []).map((e) => [evalKey(e), e]));
  const eb = new Map((b ? await lineage.evals(b.run.id) : []).map((e) => [evalKey(e), e]));
  const evals: EvalDiff[] = [];
  for (const k of [...new Set([...ea.keys(), ...eb.keys()])].sort()) {
    const x = ea.get(k);
    const y = eb.get(k);
    if (x && y && x.score === y.score && !showAll) continue;
    const e = (x ?? y)!;
    evals.push({ suite: e.suite, task: e.task, contextLength: e.contextLength, a: x?.score ?? null, b: y?.score ?? null, delta: x && y ? y.score - x.score : null });
  }
  return { metrics, evals };
}

async function midRun(lineage: DiffReader, runId: string): Promise<HyperparameterChangeAt[]> {
  return (await lineage.hyperparameterHistory(runId)).filter((h) => h.changed).map((h) => ({ key: h.key, value: h.value, step: h.step!, reason: h.reason }));
}

async function diffStage(lineage: DiffReader, a: Stage | null, b: Stage | null, showAll: boolean): Promise<StageDiff> {
  const kind = (a ?? b)!.run.kind;
  const hyperparameters = diffValues((a?.run.hyperparameters ?? {}) as Json, (b?.run.hyperparameters ?? {}) as Json);
  const changesA = a ? await midRun(lineage, a.run.id) : [];
  const changesB = b ? await midRun(lineage, b.run.id) : [];
  const midRunChanges = JSON.stringify(changesA) !== JSON.stringify(changesB) || (showAll && (changesA.length || changesB.length)) ? { a: changesA, b: changesB } : null;
  const codeA = a?.run.codeVersion ?? null;
  const codeB = b?.run.codeVersion ?? null;
  const environmentAll = diffValues((a?.run.environment ?? {}) as Json, (b?.run.environment ?? {}) as Json);
  const environment = showAll ? environmentAll : environmentAll.filter((c) => !VOLATILE_ENVIRONMENT.has(c.path.split(/[.[]/)[0]!));
  const inputs = await diffInputs(lineage, a, b);
  const { metrics, evals } = await diffOutcomes(lineage, a, b, showAll);
  const configChanged =
    hyperparameters.length > 0 ||
    JSON.stringify(changesA) !== JSON.stringify(changesB) ||
    codeA !== codeB ||
    environmentAll.some((c) => !VOLATILE_ENVIRONMENT.has(c.path.split(/[.[]/)[0]!)) ||
    inputs.length > 0;
  const outcomeChanged = metrics.some((m) => !m.a || !m.b || m.delta !== 0 || m.a.count !== m.b.count || m.a.min !== m.b.min || m.a.max !== m.b.max) || evals.some((e) => e.delta !== 0);
  const status: StageDiff['status'] = !a ? 'added' : !b ? 'removed' : configChanged || outcomeChanged ? 'changed' : 'identical';
  const collapsed = status === 'identical' && !showAll;
  return {
    kind,
    status,
    a: a ? ref(a) : null,
    b: b ? ref(b) : null,
    collapsed,
    hyperparameters: collapsed ? [] : hyperparameters,
    midRunChanges: collapsed ? null : midRunChanges,
    codeVersion: !collapsed && (codeA !== codeB || showAll) ? { a: codeA, b: codeB } : null,
    environment: collapsed ? [] : environment,
    inputs: collapsed ? [] : inputs,
    metrics: collapsed ? [] : metrics,
    evals: collapsed ? [] : evals,
  };
}

const sharedStage = (s: Stage, showAll: boolean): StageDiff => ({
  kind: s.run.kind,
  status: 'shared',
  a: ref(s),
  b: ref(s),
  collapsed: !showAll,
  hyperparameters: [],
  midRunChanges: null,
  codeVersion: null,
  environment: [],
  inputs: [],
  metrics: [],
  evals: [],
});

export async function diffLineage(lineage: DiffReader, runA: string, runB: string, opts: DiffOptions = {}): Promise<LineageDiff> {
  const showAll = opts.showAll ?? false;
  const [idA, idB] = [await lineage.resolveRunId(runA), await lineage.resolveRunId(runB)];
  const [chainA, chainB] = [await stagesOf(lineage, idA), await stagesOf(lineage, idB)];
  if (!chainA.length || !chainB.length) throw new ValidationError('a run has no lineage to compare');

  let k = 0;
  while (k < chainA.length && k < chainB.length && chainA[k]!.run.id === chainB[k]!.run.id) k++;
  const restA = chainA.slice(k);
  const restB = chainB.slice(k);

  let commonAncestor: LineageDiff['commonAncestor'] = null;
  if (k > 0) {
    const last = chainA[k - 1]!.run;
    commonAncestor = { type: 'run', id: last.id, name: last.name, kind: last.kind };
  }
  // Both sides started from the same checkpoint: that is the closer common ancestor.
  const initA = restA[0]?.init;
  const initB = restB[0]?.init;
  if (initA && initB && initA.id === initB.id) commonAncestor = { type: 'checkpoint', id: initA.id, name: initA.name, kind: initA.kind };

  const stages: StageDiff[] = chainA.slice(0, k).map((s) => sharedStage(s, showAll));
  for (const [x, y] of alignByKind(restA, restB)) stages.push(await diffStage(lineage, x, y, showAll));

  const divergent = stages.find((s) => s.status !== 'shared' && s.status !== 'identical');
  const firstDivergence = divergent
    ? {
        a: stages.find((s) => s.status !== 'shared' && s.status !== 'identical' && s.a)?.a ?? null,
        b: stages.find((s) => s.status !== 'shared' && s.status !== 'identical' && s.b)?.b ?? null,
      }
    : null;
  return {
    a: ref(chainA[chainA.length - 1]!),
    b: ref(chainB[chainB.length - 1]!),
    identical: !divergent,
    commonAncestor,
    firstDivergence,
    stages,
    collapsed: stages.filter((s) => s.collapsed).length,
  };
}
