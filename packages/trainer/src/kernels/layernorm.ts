/**
 * LayerNorm over channels: out = (x − mean)·rstd·weight + bias, rstd = 1/√(var + 1e-5).
 *
 * Shapes: B = batch, T = time, C = channels.
 *   inp (B,T,C), weight (C), bias (C), out (B,T,C), mean (B,T), rstd (B,T).
 */
import type { Backend, Tensor } from './backend.ts';
import { checkFlatSize, type Floats, type KernelThis, type KernelArray } from './common.ts';

export const LAYERNORM_EPS = 1e-5;

export function layernormForwardRef(
  out: Floats /* (B,T,C) */,
  mean: Floats /* (B,T) */,
  rstd: Floats /* (B,T) */,
  inp: Floats /* (B,T,C) */,
  weight: Floats /* (C) */,
  bias: Floats /* (C) */,
  B: number,
  T: number,
  C: number,
): void {
  for (let bt = 0; bt < B * T; bt++) {
    const x = inp.subarray(bt * C, (bt + 1) * C);
    let m = 0;
    for (let c = 0; c < C; c++) m += x[c]!;
    m /= C;
    let v = 0;
    for (let c = 0; c < C; c++) v += (x[c]! - m) ** 2;
    v /= C;
    const s = 1 / Math.sqrt(v + LAYERNORM_EPS);
    for (let c = 0; c < C; c++) out[bt * C + c] = (x[c]! - m) * s * weight[c]! + bias[c]!;
    mean[bt] = m;
    rstd[bt] = s;
  }
}

/** Accumulates into dinp, dweight, dbias (llm.c layernorm_backward). */
export function layernormBackwardRef(
  dinp: Floats /* (B,T,C) */,
  dweight: Floats /* (C) */,
  dbias: Floats /* (C) */,
  dout: Floats /* (B,T,C) */,
  inp: Floats /* (B,T,C) */,
  weight: Floats /* (C) */,
  mean: Floats /* (B,T) */,
  rstd: Floats /* (B,T) */,
  B: number,
  T: number,
  C: number,
): void {
  for (let bt = 0; bt < B * T; bt++) {
    const m = mean[bt]!;
    const s = rstd[bt]!;
    let dnormMean = 0;
    let dnormNormMean = 0;
    for (let c = 0; c < C; c++) {
      const norm = (inp[bt * C + c]! - m) * s;
      const dnorm = weight[c]! * dout[bt * C + c]!;
      dnormMean += dnorm;
      dnormNormMean += dnorm * norm;
    }
    dnormMean /= C;
    dnormNormMean /= C;
    for (let c = 0; c < C; c++) {
      const norm = (inp[bt * C + c]! - m) * s;
      const dnorm = weight[c]! * dout[bt * C + c]!;
      dbias[c]! += dout[bt * C + c]!;
      dweight[c]! += norm * dout[bt * C + c]!;
      dinp[bt * C + c]! += (dnorm - dnormMean - norm * dnormNormMean) * s;
    }
  }
}

type K = KernelThis<{ C: number; BT: number; EPS: number }>;

export interface LayernormOutputs {
  out: Tensor /* (B,T,C) */;
  mean: Tensor /* (B,T) */;
  rstd: Tensor /* (B,T) */;
}

export function layernormForward(be: Backend, inp: Tensor, weight: Tensor, bias: Tensor, B: number, T: number, C: number): LayernormOutputs {
  const BT = B * T;
  checkFlatSize('layernormForward', BT * C);
  const constants = { C, BT, EPS: LAYERNORM_EPS };
  const meanK = be.kernel(`ln.mean:${BT}:${C}`, (gpu, s) =>
    gpu.createKernel(function (this: K, inp: KernelArray) {
      let sum = 0;
      for (let c = 0; c < this.constants.C; c++) sum += inp[this.thread.x * this.constants.C + c];
      return sum / this.constants.C;
    }, { ...s, output: [BT], constants }),
  );
  // Two passes over the row (mean, then squared deviations): as exact as the reference.
  const rstdK = be.kernel(`ln.rstd:${BT}:${C}`, (gpu, s) =>
    gpu.createKernel(function (this: K, inp: KernelArray, mean: KernelArray) {
      const m = mean[this.thread.x];
      let v = 0;
      for (let c = 0; c < this.constants.C; c++) {
        const d = inp[this.thread.x * this.constants.C + c] - m;
        v += d * d;
      }
      return 1 / Math.sqrt(v / this.constants.C + this.constants.EPS);
    }, { ...s, output: [BT], constants }),
  );
  const outK = be.kernel(`ln.out:${BT}:${C}`, (gpu, s) =>
    gpu.createKernel(function (this: K, inp: KernelArray, mean: KernelArray, rstd: KernelArray, weight: KernelArray, bias: KernelArray) {
      const i = this.thread.x;
      const bt = Math.floor((i + 0.5) / this.constants.C);
      const c = i - bt * this.constants.C;
      return (inp[i] - mean[bt]) * rstd[bt] * weight[c] + bias[c];
    }, { ...s, output: [BT * C], constants }),
  );
  const mean = meanK(inp) as Tensor;
  const rstd = rstdK(inp, mean) as Tensor;
  const out = outK(inp, mean, rstd, weight, bias) as Tensor;
  return { out, mean, rstd };
}

export interface LayernormGrads {
  dinp: Tensor /* (B,T,C) */;
  dweight: Tensor /* (C) */;
  dbias: Tensor /* (C) */;
}

export function layernormBackward(
  be: Backend,
  dout: Tensor,
  inp: Tensor,
  weight: Tensor,
  mean: Tensor,
  rstd: Tensor,
  B: number,
  T: number,
  C: number,
): LayernormGrads {
  const BT = B * T;
  checkFlatSize('layernormBackward', BT * C);
  const constants = { C, BT, EPS: LAYERNORM_EPS };
  // Per row: mean of dnorm (first BT entries) and of dnorm·norm (next BT), dnorm = weight·dout.
  const rowK = be.kernel(`ln.bwd.row:${BT}:${C}`, (gpu, s) =>
    gpu.createKernel(function (this: K, dout: KernelArray, inp: KernelArray, weight: KernelArray, mean: KernelArray, rstd: KernelArray) {
      const i = this.thread.x;
      const second = i >= this.constants.BT ? 1 : 0;
      const bt = i - second * this.constants.BT;
      const m = mean[bt];
      const r = rstd[bt];
      let sum = 0;
      for (let c = 0; c < this.constants.C; c++) {
        const dnorm = weight[c] * dout[bt * this.constants.C + c];
        if (second > 0) {
          sum += dnorm * (inp[bt * this.constants.C + c] - m) * r;
        } else {
          sum += dnorm;
        }
      }
      return sum / this.constants.C;
    }, { ...s, output: [2 * BT], constants }),
  );
  const dinpK = be.kernel(`ln.bwd.dinp:${BT}:${C}`, (gpu, s) =>
    gpu.createKernel(function (this: K, dout: KernelArray, inp: KernelArray, weight: KernelArray, mean: KernelArray, rstd: KernelArray, row: KernelArray) {
      const i = this.thread.x;
      const bt = Math.floor((i + 0.5) / this.constants.C);
      const c = i - bt * this.constants.C;
      const r = rstd[bt];
      const norm = (inp[i] - mean[bt]) * r;
      return (weight[c] * dout[i] - row[bt] - norm * row[this.constants.BT + bt]) * r;
    }, { ...s, output: [BT * C], constants }),
  );
  const dweightK = be.kernel(`ln.bwd.dweight:${BT}:${C}`, (gpu, s) =>
    gpu.createKernel(function (this: K, dout: KernelArray, inp: KernelArray, mean: KernelArray, rstd: KernelArray) {
      let sum = 0;
      for (let bt = 0; bt < this.constants.BT; bt++) {
        const i = bt * this.constants.C + this.thread.x;
        sum += dout[i] * (inp[i] - mean[bt]) * rstd[bt];
      }
      return sum;
    }, { ...s, output: [C], constants }),
  );
  const dbiasK = be.kernel(`ln.bwd.dbias:${BT}:${C}`, (gpu, s) =>
    gpu.createKernel(function (this: K, dout: KernelArray) {
      let sum = 0;
      for (let bt = 0; bt < this.constants.BT; bt++) sum += dout[bt * this.constants.C + this.thread.x];
      return sum;
    }, { ...s, output: [C], constants }),
  );
  const row = rowK(dout, inp, weight, mean, rstd) as Tensor;
  const dinp = dinpK(dout, inp, weight, mean, rstd, row) as Tensor;
  be.release(row);
  const dweight = dweightK(dout, inp, mean, rstd) as Tensor;
  const dbias = dbiasK(dout) as Tensor;
  return { dinp, dweight, dbias };
}
