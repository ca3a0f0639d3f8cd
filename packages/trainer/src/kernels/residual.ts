/**
 * Residual connection: out = inp1 + inp2. Its backward hands dout to both inputs unchanged,
 * so on the device there is nothing to compute; `residualForward` is also the kernel that
 * accumulates gradients (a tensor used twice, e.g. tied embeddings: dwte = d₁ + d₂).
 *
 * Shapes: N = any number of elements (usually B·T·C).
 */
import type { Backend, Tensor } from './backend.ts';
import { checkFlatSize, type Floats, type KernelArray } from './common.ts';

export function residualForwardRef(out: Floats /* (N) */, inp1: Floats /* (N) */, inp2: Floats /* (N) */, N: number): void {
  for (let i = 0; i < N; i++) out[i] = inp1[i]! + inp2[i]!;
}

/** Accumulates dout into both. */
export function residualBackwardRef(dinp1: Floats /* (N) */, dinp2: Floats /* (N) */, dout: Floats /* (N) */, N: number): void {
  for (let i = 0; i < N; i++) {
    dinp1[i]! += dout[i]!;
    dinp2[i]! += dout[i]!;
  }
}

/** inp1 (N) + inp2 (N) → out (N) */
export function residualForward(be: Backend, inp1: Tensor, inp2: Tensor, N: number): Tensor {
  checkFlatSize('residualForward', N);
  const k = be.kernel(`add:${N}`, (gpu, s) =>
    gpu.createKernel(function (a: KernelArray, b: KernelArray) {
      return a[this.thread.x] + b[this.thread.x];
    }, { ...s, output: [N] }),
  );
  return k(inp1, inp2) as Tensor;
}
