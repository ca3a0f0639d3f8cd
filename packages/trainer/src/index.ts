/**
 * @pedigree/trainer's public face: what the CLI, the cross-package tests and
 * the benchmarks use, by name. Everything else stays inside the package.
 *
 *   kernels/  gpu.js backend and kernels, each beside its plain reference
 *   data/     seeded corpus generators and data mixes
 *   model/    the transformer, the bigram reference, checkpoints, sampling
 *   stages/   train (pretrain, midtrain, SFT), PTS, DPO, evals, progress
 *   recipe/   the Phi-4 recipe at toy scale, its presets and its report
 *   config.ts, rng.ts, env.ts: the typed config, the seeded randomness and the environment, shared by the rooms
 *
 * Rooms import downwards only (recipe → stages → model → data → kernels);
 * test/architecture.test.ts holds them to it.
 */

// the typed config
export {
  applyOverrides,
  BACKEND_MODES,
  ConfigError,
  loadConfig,
  ModelConfigSchema,
  OptimizerConfigSchema,
  parseConfig,
  splitAssignments,
  type ModelConfig,
  type OptimizerConfig,
  type TrainConfig,
} from './config.ts';
export { mulberry32 } from './rng.ts';
// the environment, read once (PEDIGREE_GPU_MODE)
export { readTrainerEnv, type TrainerEnv } from './env.ts';

// kernels (the benchmarks time them against their references)
export { Backend, createBackend, probeModes, startVirtualDisplay, type BackendStats, type Tensor } from './kernels/backend.ts';
export { MAX_FLAT, type KernelArray, type KernelThis } from './kernels/common.ts';
export { gemm } from './kernels/gemm.ts';
export { matmulForwardRef } from './kernels/matmul.ts';
export { assertClose } from './kernels/validate.ts';

// model
export { loadCheckpoint } from './model/checkpoint.ts';
export { TransformerModel } from './model/transformer.ts';

// stages
export { loadPairs } from './stages/posttrain.ts';
export type { ProgressSink } from './stages/progress.ts';
export { train, type TrainOptions, type TrainResult } from './stages/train.ts';
export { evalEvents, recallEval, type RecallResult } from './stages/evals.ts';

// the recipe
export { RECIPE_PRESETS, TOY, type RecipeSize } from './recipe/presets.ts';
export { runRecipe, stageConfigs, type RecipeOptions, type RecipeResult } from './recipe/recipe.ts';
export { checkClaims, resultsMarkdown } from './recipe/results.ts';
export { recordReport, writeReport, type RecordedReport, type ReportFile, type WrittenReport } from './recipe/report.ts';
export { describeDuration, estimateRecipe, measureThroughput, planRecipe, type RecipeEstimate } from './recipe/estimate.ts';
