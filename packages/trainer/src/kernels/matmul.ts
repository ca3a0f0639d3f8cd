/**
 * Matmul with fused bias: out = inp · weightᵀ + bias (llm.c's layout: weight is (OC, C), so
 * both operands of every dot product are contiguous along C).
 *
 * Shapes: B = batch, T = time, C = input channels, OC = output channels.
 *   inp (B,T,C), weight (OC,C), bias (OC), out (B,T,OC).
 *
 * GELU fusion, where it pays (see gelu.ts):
 *   - forward epilogue `gelu: true`: out = gelu(inp·wᵀ + b) without a second pass. For
 *     evaluation only: training's backward needs the pre-activation, so it keeps gelu separate.
 *   - backward epilogue `inputGeluOf: h`: when this matmul's input was gelu(h) (the MLP's
 *     projection), return dh = (dout·w) ⊙ gelu'(h) instead of d(inp): saves a pass and a tensor.
 *
 * The fast kernels (`matmulForward` and the dinp/dweight parts of `matmulBackward`) go through
 * `gemm.ts`, which picks the best formulation per mode (packed vec4 on headlessgl, plain on webasm/cpu).
 */
import type { Backend, Tensor } from './backend.ts';
import { checkFlatSize, type Floats, type KernelThis, type KernelArray } from './common.ts';
import { GELU_SCALE } from './gelu.ts';
import { gemm, type GemmEpilogue } from './gemm.ts';

export function matmulForwardRef(
  out: Floats /* (B,T,OC) */,
  inp: Floats /* (B,T,C) */,
  weight: Floats /* (OC,C) */,
  bias: Floats | null /* (OC) */,
  B: number,
  T: number,
  C: number,
  OC: number,
): void {
  for (let bt = 0; bt < B * T; bt++) {
    for (let o = 0; o < OC; o++) {
      let sum = bias ? bias[o]! : 0;
      for (let c = 0; c < C; c++) sum += inp[bt * C + c]! * weight[o * C + c]!;
      out[bt * OC + o] = sum;
    }
  }
}

/** Accumulates: dinp += dout·weight, dweight += doutᵀ·inp, dbias += Σ_bt dout. */
export function matmulBackwardRef(
  dinp: Floats /* (B,T,C) */,
  dweight: Floats /* (OC,C) */,
  dbias: Floats | null /* (OC) */,
  dout: Floats /* (B,T,OC) */,
  inp: Floats /* (B,T,C) */,
  weight: Floats /* (OC,C) */,
  B: number,
  T: number,
  C: number,
  OC: number,
): void {
  for (let bt = 0; bt < B * T; bt++) {
    for (let o = 0; o < OC; o++) {
      const d = dout[bt * OC + o]!;
      for (let c = 0; c < C; c++) {
        dinp[bt * C + c]! += weight[o * C + c]! * d;
        dweight[o * C + c]! += inp[bt * C + c]! * d;
      }
      if (dbias) dbias[o]! += d;
    }
  }
}

export interface MatmulForwardOptions {
  /** Apply GELU to the output (evaluation: the pre-activation is not kept). */
  gelu?: boolean;
}

/** inp (B,T,C), weight (OC,C), bias (OC) | null → out (B,T,OC) */
export function matmulForward(
  be: Backend,
  inp: Tensor,
  weight: Tensor,
  bias: Tensor | null,
  B: number,
  T: number,
  C: number,
  OC: number,
  opts: MatmulForwardOptions = {},
): Tensor {
  // out[bt,o] = Σ_c inp[bt,c]·weight[o,c]: gemm with A = inp (M=BT rows, K=C), Bᵀ = weight (N=OC rows, K=C).
  const epilogue: GemmEpilogue = opts.gelu ? 'gelu' : 'none';
  return gemm(be, inp, weight, B * T, OC, C, { aLayout: 'mk', bLayout: 'nk', bias, epilogue });
}

export interface MatmulBackwardOptions {
  /** Whether the forward had a bias (then dbias is returned). Default true. */
  bias?: boolean;
  /** This matmul's input was gelu(h): return dh instead of d(inp). h (B,T,C). */
  inputGeluOf?: Tensor;
  /** Skip dinp (the first layer's input needs none). */
  skipDinp?: boolean;
}

export interface MatmulGrads {
  dinp: Tensor | null /* (B,T,C) */;
  dweight: Tensor /* (OC,C) */;
  dbias: Tensor | null /* (OC) */;
}

/** dout (B,T,OC), inp (B,T,C), weight (OC,C) → fresh dinp, dweight, dbias. */
export function matmulBackward(
  be: Backend,
  dout: Tensor,
  inp: Tensor,
  weight: Tensor,
  B: number,
  T: number,
  C: number,
  OC: number,
  opts: MatmulBackwardOptions = {},
): MatmulGrads {
  const BT = B * T;
  // dinp[bt,c] = Σ_o dout[bt,o]·weight[o,c]: A = dout (M=BT, K=OC), B = weight laid out (K=OC, N=C).
  const dinp = opts.skipDinp
    ? null
    : gemm(be, dout, weight, BT, C, OC, { aLayout: 'mk', bLayout: 'kn', epilogue: opts.inputGeluOf ? 'geluGrad' : 'none', epilogueArg: opts.inputGeluOf });
  // dweight[o,c] = Σ_bt dout[bt,o]·inp[bt,c]: A = dout laid out (K=BT, M=OC), B = inp laid out (K=BT, N=C).
  const dweight = gemm(be, dout, inp, OC, C, BT, { aLayout: 'km', bLayout: 'kn' });
  const dbias = opts.bias === false ? null : columnSum(be, dout, BT, OC);
  return { dinp, dweight, dbias };
}

/** x (R, N) → Σ_r x[r, :] (N): the bias gradient. */
export function columnSum(be: Backend, x: Tensor, R: number, N: number): Tensor {
  checkFlatSize('columnSum', R * N);
  const k = be.kernel(`colsum:${R}:${N}`, (gpu, s) =>
    gpu.createKernel(function (this: KernelThis<{ R: number; N: number }>, x: KernelArray) {
      let sum = 0;
      for (let r = 0; r < this.constants.R; r++) sum += x[r * this.constants.N + this.thread.x];
      return sum;
    }, { ...s, output: [N], constants: { R, N } }),
  );
  return k(x) as Tensor;
}

export { GELU_SCALE };
