import type { Json } from '@pedigree/ledger';

/**
 * What the read models answer, as plain types: `Lineage` (queries.ts) returns
 * them, and the diff (diff.ts) reads them through its narrow `DiffReader`.
 */

export interface RunView {
  id: string;
  projectId: string;
  name: string;
  kind: string;
  status: string;
  codeVersion: string | null;
  environment: Record<string, Json>;
  hyperparameters: Record<string, Json>;
  summary: { points?: number; checkpoints?: number; evals?: number };
  tags: string[];
  forkedFromRunId: string | null;
  forkedFromArtifactId: string | null;
  forkedAtStep: number | null;
  error: string | null;
  createdAt: Date;
  startedAt: Date | null;
  endedAt: Date | null;
  /** Last value of each metric. */
  metrics: Record<string, number>;
  /** active | deleted */
  lifecycle: string;
  /** Key–value tags (MLflow's); `tags` are plain labels. */
  tagValues: Record<string, string>;
  /** Failed because it was stopped from outside (MLflow's KILLED). */
  killed: boolean;
}

export interface ArtifactView {
  id: string;
  projectId: string;
  kind: string;
  name: string;
  digest: string;
  spec: Record<string, Json>;
  producedBy: string | null;
  createdAt: Date;
}

export interface LineageNode {
  id: string;
  type: 'run' | 'artifact';
  kind: string;
  name: string;
  status?: string;
  digest?: string;
}

export interface LineageEdge {
  /**
   * Edges point the way data flows: artifact → run for "used", run → artifact
   * for "produced", component → mix for "component", and parent run → run for
   * "parent" (a nested run, or a fork that names no checkpoint).
   */
  from: string;
  to: string;
  relation: 'used' | 'produced' | 'component' | 'parent';
  role: string;
  weight?: number;
}

export interface LineageGraph {
  root: string;
  nodes: LineageNode[];
  edges: LineageEdge[];
}

export interface Bucket {
  fromStep: number;
  toStep: number;
  count: number;
  min: number;
  max: number;
  last: number;
  lastStep: number;
}

export interface ProjectView {
  id: string;
  name: string;
  description: string | null;
  createdAt: Date;
  updatedAt: Date;
  lifecycle: string;
  tagValues: Record<string, string>;
}

export interface ArtifactWithComponents extends ArtifactView {
  /** A data mix's components, in order (empty for other kinds). */
  components: { artifactId: string; weight: number; filter: Json }[];
}

export interface HyperparameterView {
  key: string;
  value: Json;
  type: string;
  /** Null for a declared value; the step for a change. */
  step: number | null;
  reason: string | null;
  changed: boolean;
}

export interface EdgeView {
  artifactId: string;
  direction: 'used' | 'produced';
  role: string;
  step: number | null;
  /** The artifact's name and kind, for display. */
  name: string | null;
  kind: string | null;
}

export interface EvalView {
  suite: string;
  task: string;
  contextLength: number | null;
  score: number;
  n: number | null;
  step: number | null;
}

/** A (run, metric) series' summary: what charts' keys, summaries and diffs read instead of points. */
export interface MetricKeyView {
  key: string;
  count: number;
  firstStep: number;
  lastStep: number;
  last: number;
  min: number;
  max: number;
}
