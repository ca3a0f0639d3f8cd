/**
 * AdamW (decoupled weight decay, bias-corrected moments), as llm.c's adamw_update:
 *   g  = grad · gradScale                     (gradScale: the global-norm clip, clip.ts)
 *   m  = β1·m + (1 − β1)·g;   v = β2·v + (1 − β2)·g²
 *   m̂ = m / (1 − β1^step);   v̂ = v / (1 − β2^step)      (step counts from 1)
 *   param −= lr · (m̂ / (√v̂ + eps) + weightDecay · param)
 *
 * Shapes: N = the parameter tensor's size; param, grad, m, v (N).
 * The hyperparameters travel as a small array argument, so a learning-rate schedule does not
 * recompile anything.
 */
import type { Backend, Tensor } from './backend.ts';
import { checkFlatSize, type Floats, type KernelArray } from './common.ts';

export interface AdamWConfig {
  lr: number;
  /** Default 0.9. */
  beta1?: number;
  /** Default 0.95 (nanoGPT's, better than 0.999 for transformers). */
  beta2?: number;
  /** Default 1e-8. */
  eps?: number;
  /** Decoupled weight decay; default 0 (give 0 to biases and norms, ~0.1 to matrices). */
  weightDecay?: number;
}

function resolve(cfg: AdamWConfig) {
  return { lr: cfg.lr, beta1: cfg.beta1 ?? 0.9, beta2: cfg.beta2 ?? 0.95, eps: cfg.eps ?? 1e-8, weightDecay: cfg.weightDecay ?? 0 };
}

/** Updates params, m and v in place. */
export function adamwRef(params: Floats, grads: Floats, m: Floats, v: Floats, N: number, step: number, cfg: AdamWConfig, gradScale = 1): void {
  if (!(step >= 1)) throw new Error(`AdamW step counts from 1, got ${step}`);
  const { lr, beta1, beta2, eps, weightDecay } = resolve(cfg);
  const bc1 = 1 - beta1 ** step;
  const bc2 = 1 - beta2 ** step;
  for (let i = 0; i < N; i++) {
    const g = grads[i]! * gradScale;
    m[i] = beta1 * m[i]! + (1 - beta1) * g;
    v[i] = beta2 * v[i]! + (1 - beta2) * g * g;
    const mHat = m[i]! / bc1;
    const vHat = v[i]! / bc2;
    params[i]! -= lr * (mHat / (Math.sqrt(vHat) + eps) + weightDecay * params[i]!);
  }
}

export interface AdamWState {
  param: Tensor /* (N) */;
  m: Tensor /* (N) */;
  v: Tensor /* (N) */;
}

/**
 * One step for one parameter tensor → the new param, m and v (fresh tensors: release the old
 * ones, e.g. `be.release(old.param, old.m, old.v)`, once nothing reads them).
 */
export function adamwUpdate(be: Backend, state: AdamWState, grad: Tensor, N: number, step: number, cfg: AdamWConfig, gradScale = 1): AdamWState {
  if (!(step >= 1)) throw new Error(`AdamW step counts from 1, got ${step}`);
  checkFlatSize('adamwUpdate', N);
  const { lr, beta1, beta2, eps, weightDecay } = resolve(cfg);
  // hyper: [lr, β1, β2, eps, weightDecay, 1 − β1^step, 1 − β2^step, gradScale]
  const hyper = Float32Array.of(lr, beta1, beta2, eps, weightDecay, 1 - beta1 ** step, 1 - beta2 ** step, gradScale);
  const mK = be.kernel(`adamw.m:${N}`, (gpu, s) =>
    gpu.createKernel(function (m: KernelArray, g: KernelArray, h: KernelArray) {
      return h[1] * m[this.thread.x] + (1 - h[1]) * g[this.thread.x] * h[7];
    }, { ...s, output: [N] }),
  );
  const vK = be.kernel(`adamw.v:${N}`, (gpu, s) =>
    gpu.createKernel(function (v: KernelArray, g: KernelArray, h: KernelArray) {
      const gs = g[this.thread.x] * h[7];
      return h[2] * v[this.thread.x] + (1 - h[2]) * gs * gs;
    }, { ...s, output: [N] }),
  );
  const pK = be.kernel(`adamw.p:${N}`, (gpu, s) =>
    gpu.createKernel(function (p: KernelArray, m: KernelArray, v: KernelArray, h: KernelArray) {
      const mHat = m[this.thread.x] / h[5];
      const vHat = v[this.thread.x] / h[6];
      const x = p[this.thread.x];
      return x - h[0] * (mHat / (Math.sqrt(vHat) + h[3]) + h[4] * x);
    }, { ...s, output: [N] }),
  );
  const m = mK(state.m, grad, hyper) as Tensor;
  const v = vK(state.v, grad, hyper) as Tensor;
  const param = pK(state.param, m, v, hyper) as Tensor;
  return { param, m, v };
}
