/**
 * GELU, tanh approximation (GPT-2's): gelu(x) = ½·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
 *
 * Shapes: N = any number of elements (usually B·T·4C). The matmul kernels can fuse
 * GELU as a forward epilogue (`matmulForward(…, { gelu: true })`, for evaluation) and its
 * gradient as a backward epilogue (`matmulBackward(…, { inputGeluOf })`); these stand-alone
 * kernels are for training's forward, which must keep the pre-activation.
 *
 * In float32 the kernels use ½(1 + tanh u) = σ(2u) = 1/(1 + e^{−2u}) and ½·sech²u = 2/(e^{2u} + 2 + e^{−2u}):
 * no cancellation in either tail (1 − tanh² loses every digit once tanh rounds to ±1) and no
 * NaN when e^{±2u} overflows to ∞ (a naive (e^u − e^−u)/(e^u + e^−u) gives ∞/∞).
 */
import type { Backend, Tensor } from './backend.ts';
import { checkFlatSize, type Floats, type KernelThis, type KernelArray } from './common.ts';

export const GELU_SCALE = Math.sqrt(2 / Math.PI);

export function geluForwardRef(out: Floats /* (N) */, inp: Floats /* (N) */, N: number): void {
  for (let i = 0; i < N; i++) {
    const x = inp[i]!;
    const u = GELU_SCALE * (x + 0.044715 * x * x * x);
    out[i] = 0.5 * x * (1 + Math.tanh(u));
  }
}

/** dinp += dout · gelu'(inp) */
export function geluBackwardRef(dinp: Floats /* (N) */, inp: Floats /* (N) */, dout: Floats /* (N) */, N: number): void {
  for (let i = 0; i < N; i++) {
    const x = inp[i]!;
    const u = GELU_SCALE * (x + 0.044715 * x * x * x);
    const th = Math.tanh(u);
    const sech2 = 1 - th * th;
    const grad = 0.5 * (1 + th) + 0.5 * x * sech2 * GELU_SCALE * (1 + 3 * 0.044715 * x * x);
    dinp[i]! += grad * dout[i]!;
  }
}

type K = KernelThis<{ S: number }>;

/** (N) → gelu (N) */
export function geluForward(be: Backend, inp: Tensor, N: number): Tensor {
  checkFlatSize('geluForward', N);
  const k = be.kernel(`gelu.fwd:${N}`, (gpu, s) =>
    gpu.createKernel(function (this: K, inp: KernelArray) {
      const x = inp[this.thread.x];
      const u = this.constants.S * (x + 0.044715 * x * x * x);
      const e = Math.exp(2 * u);
      return x / (1 + 1 / e);
    }, { ...s, output: [N], constants: { S: GELU_SCALE } }),
  );
  return k(inp) as Tensor;
}

/** dout (N), inp (N) → dinp (N) = dout · gelu'(inp) */
export function geluBackward(be: Backend, inp: Tensor, dout: Tensor, N: number): Tensor {
  checkFlatSize('geluBackward', N);
  const k = be.kernel(`gelu.bwd:${N}`, (gpu, s) =>
    gpu.createKernel(function (this: K, inp: KernelArray, dout: KernelArray) {
      const x = inp[this.thread.x];
      const u = this.constants.S * (x + 0.044715 * x * x * x);
      const e = Math.exp(2 * u);
      const grad = 1 / (1 + 1 / e) + (2 * x * this.constants.S * (1 + 3 * 0.044715 * x * x)) / (e + 2 + 1 / e);
      return grad * dout[this.thread.x];
    }, { ...s, output: [N], constants: { S: GELU_SCALE } }),
  );
  return k(inp, dout) as Tensor;
}
