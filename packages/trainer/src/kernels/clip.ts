/**
 * Global-norm gradient clipping: norm = √(Σ over every gradient tensor of Σ g²); when it
 * exceeds maxNorm, every gradient is scaled by maxNorm/norm. The scale is not applied by a pass
 * of its own: it goes to `adamwUpdate(…, gradScale)`, which multiplies as it reads.
 *
 * Shapes: N = a gradient tensor's size. On the device each tensor is reduced to ≈√N partial
 * sums (one thread per chunk of ≈√N elements); those are read back and added in float64 on the
 * host, which also hands the norm to the training loop for logging.
 */
import type { Backend, Tensor } from './backend.ts';
import { checkFlatSize, type Floats, type KernelThis, type KernelArray } from './common.ts';

export function sumOfSquaresRef(x: Floats, N: number): number {
  let s = 0;
  for (let i = 0; i < N; i++) s += x[i]! * x[i]!;
  return s;
}

export function globalNormRef(grads: Floats[]): number {
  return Math.sqrt(grads.reduce((s, g) => s + sumOfSquaresRef(g, g.length), 0));
}

/** The factor that brings the norm down to maxNorm (1 when it is already below). */
export function clipScale(norm: number, maxNorm: number): number {
  if (!(maxNorm > 0)) return 1; // clipping off
  return norm > maxNorm ? maxNorm / (norm + 1e-6) : 1;
}

/** Σ x² of a tensor (partial sums on the device, the rest on the host in float64). */
export function sumOfSquares(be: Backend, x: Tensor, N: number): number {
  checkFlatSize('sumOfSquares', N);
  const chunk = Math.max(16, Math.ceil(Math.sqrt(N)));
  const parts = Math.ceil(N / chunk);
  const k = be.kernel(`sumsq:${N}`, (gpu, s) =>
    gpu.createKernel(function (this: KernelThis<{ N: number; CHUNK: number }>, x: KernelArray) {
      let sum = 0;
      for (let j = 0; j < this.constants.CHUNK; j++) {
        const i = this.thread.x * this.constants.CHUNK + j;
        if (i >= this.constants.N) break;
        sum += x[i] * x[i];
      }
      return sum;
    }, { ...s, output: [parts], constants: { N, CHUNK: chunk } }),
  );
  const partial = k(x) as Tensor;
  const values = be.read(partial);
  be.release(partial);
  let total = 0;
  for (const p of values) total += p;
  return total;
}

/** √(Σ over the tensors of Σ g²). */
export function globalNorm(be: Backend, grads: { tensor: Tensor; size: number }[]): number {
  let total = 0;
  for (const g of grads) total += sumOfSquares(be, g.tensor, g.size);
  return Math.sqrt(total);
}

/** The global norm and the scale to pass to adamwUpdate as gradScale. */
export function clipGradients(be: Backend, grads: { tensor: Tensor; size: number }[], maxNorm: number): { norm: number; scale: number } {
  const norm = globalNorm(be, grads);
  return { norm, scale: clipScale(norm, maxNorm) };
}
