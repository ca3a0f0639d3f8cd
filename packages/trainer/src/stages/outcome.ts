import type { StageEvals } from './evals.ts';

/** What a finished stage hands the next one (and the recipe's report): its run, its evals, its checkpoint. */
export interface StageOutcome {
  name: string;
  kind: string;
  runId: string;
  evals: StageEvals;
  /** The checkpoint a later stage starts from. */
  checkpoint?: { artifactId: string; digest: string; path: string; step: number };
  seconds: number;
}
