import type { TrainConfig } from '../config.ts';

/**
 * The learning rate at `step` (0-based; the update that makes step + 1):
 * linear warmup to `lr` over `warmupSteps`, then linear (or cosine) decay to
 * `minLr` at the last step, as Phi-4 pretrains (the Phi-4 report, arXiv
 * 2412.08905, §3: linear warmup + linear decay).
 */
export function getLr(step: number, cfg: Pick<TrainConfig, 'optimizer' | 'steps'>): number {
  const { lr, minLr, warmupSteps, decay } = cfg.optimizer;
  if (step < warmupSteps) return (lr * (step + 1)) / warmupSteps;
  const decaySteps = cfg.steps - 1 - warmupSteps;
  if (decaySteps <= 0) return lr;
  const progress = Math.min(1, (step - warmupSteps) / decaySteps); // 0 right after warmup, 1 at the last step
  const coefficient = decay === 'cosine' ? 0.5 * (1 + Math.cos(Math.PI * progress)) : 1 - progress;
  return minLr + coefficient * (lr - minLr);
}
