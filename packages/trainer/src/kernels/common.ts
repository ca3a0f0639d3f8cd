/**
 * What every kernel file shares: the float array type of the references, and the kernel
 * helpers that keep one source valid in all three gpu.js modes.
 *
 * Shapes, everywhere in src/kernels: B = batch, T = time, C = channels, V = vocab,
 * NH = heads, HS = head size (C = NH·HS), OC = output channels. Tensors are flat and
 * row-major: "(B,T,C)" means index (b·T + t)·C + c.
 */
import type { IKernelFunctionThis } from 'gpu.js';

/**
 * The references run on float32 (what the kernels are checked against) or float64 (what
 * the finite-difference gradient checks use, so that truncation, not rounding, dominates).
 */
export type Floats = Float32Array | Float64Array;

/** `this` inside a gpu.js kernel whose sizes are constants. */
export type KernelThis<K extends Record<string, number>> = IKernelFunctionThis<K>;

/**
 * Kernels are 1-D (one thread per flat output element) and recover (row, col) with
 * `Math.floor((i + 0.5) / n)`: the +0.5 keeps the exact quotient at least 0.5/n away from an
 * integer, so the floor is right as long as the division's error, k ulps of a quotient below
 * i/n, stays under 0.5/n, i.e. for i < 2^22/k. A correctly rounded division (WebAssembly,
 * JavaScript, llvmpipe's fdiv) has k ≤ 1; 2^21 leaves room for k = 2.
 */
export const MAX_FLAT = 1 << 21;

export function checkFlatSize(op: string, n: number): void {
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${op}: bad size ${n}`);
  if (n > MAX_FLAT) throw new Error(`${op}: ${n} elements is above the ${MAX_FLAT} a 1-D kernel indexes exactly`);
}

/** Token ids as the float array gpu.js uploads (ids < 2^24 are exact in float32). */
export function idsToFloat(ids: Int32Array | ArrayLike<number>): Float32Array {
  return Float32Array.from(ids as ArrayLike<number>);
}

/**
 * An array argument as a kernel body sees it. gpu.js transpiles the body (to GLSL, WebAssembly
 * or JavaScript) and every index is in range by construction, so reads are typed loosely
 * rather than carry noUncheckedIndexedAccess's `| undefined` (a `!` on every read).
 */
// biome-ignore lint/suspicious/noExplicitAny: see above
export type KernelArray = any[];
