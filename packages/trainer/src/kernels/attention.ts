/**
 * Causal multi-head self-attention with RoPE on queries and keys (rope.ts), no positional
 * table anywhere, so sequences longer than the training length work as they are.
 *
 *   q, k, v = split(inp);  q, k = rope(q), rope(k)
 *   preatt[t,s] = q_t·k_s / √HS  (s ≤ t);  att = softmax_s(preatt);  out_t = Σ_s att[t,s]·v_s
 *
 * Shapes: B = batch, T = time, C = channels, NH = heads, HS = head size = C/NH.
 *   inp (B,T,3C) = [q | k | v] per position, each (NH,HS) (the fused QKV matmul's output);
 *   out (B,T,C); preatt, att (B,NH,T,T) (only s ≤ t is meaningful; the rest is 0);
 *   qkvr (3,B,NH,T,HS): rotated q, rotated k and v, head-major (what the GPU forward keeps for
 *   the backward).
 */
import type { Backend, Tensor } from './backend.ts';
import { checkFlatSize, type Floats, type KernelThis, type KernelArray } from './common.ts';
import { ropeBackwardRef, ropeForwardRef, ropeTable, type RopeOptions } from './rope.ts';

// ---------------------------------------------------------------- reference

/** Splits inp (B,T,3C) into q, k, v (B,T,NH,HS) each, and rotates q and k. */
function splitRotate(inp: Floats, B: number, T: number, C: number, NH: number, rope: RopeOptions) {
  const HS = C / NH;
  const q = new Float64Array(B * T * C);
  const k = new Float64Array(B * T * C);
  const v = new Float64Array(B * T * C);
  for (let bt = 0; bt < B * T; bt++) {
    for (let c = 0; c < C; c++) {
      q[bt * C + c] = inp[bt * 3 * C + c]!;
      k[bt * C + c] = inp[bt * 3 * C + C + c]!;
      v[bt * C + c] = inp[bt * 3 * C + 2 * C + c]!;
    }
  }
  const qr = new Float64Array(B * T * C);
  const kr = new Float64Array(B * T * C);
  ropeForwardRef(qr, q, B, T, NH, HS, rope);
  ropeForwardRef(kr, k, B, T, NH, HS, rope);
  return { qr, kr, v, HS };
}

export function attentionForwardRef(
  out: Floats /* (B,T,C) */,
  preatt: Floats /* (B,NH,T,T) */,
  att: Floats /* (B,NH,T,T) */,
  inp: Floats /* (B,T,3C) */,
  B: number,
  T: number,
  C: number,
  NH: number,
  rope: RopeOptions = {},
): void {
  const { qr, kr, v, HS } = splitRotate(inp, B, T, C, NH, rope);
  const scale = 1 / Math.sqrt(HS);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < NH; h++) {
      for (let t = 0; t < T; t++) {
        const row = ((b * NH + h) * T + t) * T;
        const qo = (b * T + t) * C + h * HS;
        let max = -Infinity;
        for (let s = 0; s < T; s++) {
          if (s > t) {
            preatt[row + s] = 0;
            continue;
          }
          const ko = (b * T + s) * C + h * HS;
          let dot = 0;
          for (let d = 0; d < HS; d++) dot += qr[qo + d]! * kr[ko + d]!;
          preatt[row + s] = dot * scale;
          max = Math.max(max, dot * scale);
        }
        let sum = 0;
        for (let s = 0; s <= t; s++) sum += Math.exp(preatt[row + s]! - max);
        for (let s = 0; s < T; s++) att[row + s] = s <= t ? Math.exp(preatt[row + s]! - max) / sum : 0;
        for (let d = 0; d < HS; d++) {
          let acc = 0;
          for (let s = 0; s <= t; s++) acc += att[row + s]! * v[(b * T + s) * C + h * HS + d]!;
          out[qo + d] = acc;
        }
      }
    }
  }
}

/** Accumulates into dinp (B,T,3C); q, k and v are recomputed from inp. */
export function attentionBackwardRef(
  dinp: Floats /* (B,T,3C) */,
  dout: Floats /* (B,T,C) */,
  inp: Floats /* (B,T,3C) */,
  att: Floats /* (B,NH,T,T) */,
  B: number,
  T: number,
  C: number,
  NH: number,
  rope: RopeOptions = {},
): void {
  const { qr, kr, v, HS } = splitRotate(inp, B, T, C, NH, rope);
  const scale = 1 / Math.sqrt(HS);
  const dqr = new Float64Array(B * T * C);
  const dkr = new Float64Array(B * T * C);
  const dv = new Float64Array(B * T * C);
  const datt = new Float64Array(T);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < NH; h++) {
      for (let t = 0; t < T; t++) {
        const row = ((b * NH + h) * T + t) * T;
        const to = (b * T + t) * C + h * HS;
        // out_t = Σ_s att[t,s]·v_s
        let rowDot = 0;
        for (let s = 0; s <= t; s++) {
          const so = (b * T + s) * C + h * HS;
          let d1 = 0;
          for (let d = 0; d < HS; d++) {
            d1 += dout[to + d]! * v[so + d]!;
            dv[so + d]! += att[row + s]! * dout[to + d]!;
          }
          datt[s] = d1;
          rowDot += att[row + s]! * d1;
        }
        // softmax backward, then preatt = q·k·scale
        for (let s = 0; s <= t; s++) {
          const dpre = att[row + s]! * (datt[s]! - rowDot) * scale;
          const so = (b * T + s) * C + h * HS;
          for (let d = 0; d < HS; d++) {
            dqr[to + d]! += dpre * kr[so + d]!;
            dkr[so + d]! += dpre * qr[to + d]!;
          }
        }
      }
    }
  }
  const dq = new Float64Array(B * T * C);
  const dk = new Float64Array(B * T * C);
  ropeBackwardRef(dq, dqr, B, T, NH, HS, rope);
  ropeBackwardRef(dk, dkr, B, T, NH, HS, rope);
  for (let bt = 0; bt < B * T; bt++) {
    for (let c = 0; c < C; c++) {
      dinp[bt * 3 * C + c]! += dq[bt * C + c]!;
      dinp[bt * 3 * C + C + c]! += dk[bt * C + c]!;
      dinp[bt * 3 * C + 2 * C + c]! += dv[bt * C + c]!;
    }
  }
}

// ---------------------------------------------------------------- kernels

type AttConstants = { B: number; T: number; C: number; NH: number; HS: number; HALF: number; SCALE: number };
type K = KernelThis<AttConstants>;

export interface AttentionOutputs {
  out: Tensor /* (B,T,C) */;
  att: Tensor /* (B,NH,T,T) */;
  qkvr: Tensor /* (3,B,NH,T,HS) */;
}

function attConstants(B: number, T: number, C: number, NH: number): AttConstants {
  if (C % NH !== 0) throw new Error(`attention: C = ${C} is not a multiple of NH = ${NH}`);
  const HS = C / NH;
  if (HS % 2 !== 0) throw new Error(`attention: RoPE needs an even head size, got ${HS}`);
  checkFlatSize('attention', Math.max(3 * B * T * C, B * NH * T * T));
  return { B, T, C, NH, HS, HALF: HS / 2, SCALE: 1 / Math.sqrt(HS) };
}

/** inp (B,T,3C) → out (B,T,C), and att and qkvr for the backward (release them after it). */
export function attentionForward(be: Backend, inp: Tensor, B: number, T: number, C: number, NH: number, rope: RopeOptions = {}): AttentionOutputs {
  const k = attConstants(B, T, C, NH);
  const shape = `${B}:${T}:${C}:${NH}`;
  const settings = { constants: k };

  // (3,B,NH,T,HS): q and k rotated by the table, v copied.
  const ropeK = be.kernel(`att.rope:${shape}`, (gpu, s) =>
    gpu.createKernel(function (this: K, inp: KernelArray, table: KernelArray) {
      const i = this.thread.x;
      const r1 = Math.floor((i + 0.5) / this.constants.HS);
      const d = i - r1 * this.constants.HS;
      const r2 = Math.floor((r1 + 0.5) / this.constants.T);
      const t = r1 - r2 * this.constants.T;
      const r3 = Math.floor((r2 + 0.5) / this.constants.NH);
      const h = r2 - r3 * this.constants.NH;
      const part = Math.floor((r3 + 0.5) / this.constants.B);
      const b = r3 - part * this.constants.B;
      const base = (b * this.constants.T + t) * 3 * this.constants.C + part * this.constants.C + h * this.constants.HS;
      const x = inp[base + d];
      if (part > 1) return x;
      let j = d;
      let sign = 1;
      let partner = d + this.constants.HALF;
      if (d >= this.constants.HALF) {
        j = d - this.constants.HALF;
        sign = -1;
        partner = j;
      }
      const cos = table[t * this.constants.HS + j];
      const sin = table[t * this.constants.HS + this.constants.HALF + j];
      // first half: x·cos − x[j+HALF]·sin; second half: x·cos + x[j]·sin
      return x * cos - sign * inp[base + partner] * sin;
    }, { ...s, ...settings, output: [3 * B * T * C] }),
  );
  // (B,NH,T,T): scaled scores, 0 above the diagonal.
  const preattK = be.kernel(`att.pre:${shape}`, (gpu, s) =>
    gpu.createKernel(function (this: K, qkvr: KernelArray) {
      const i = this.thread.x;
      const r1 = Math.floor((i + 0.5) / this.constants.T);
      const sPos = i - r1 * this.constants.T;
      const bh = Math.floor((r1 + 0.5) / this.constants.T);
      const t = r1 - bh * this.constants.T;
      if (sPos > t) return 0;
      const qo = (bh * this.constants.T + t) * this.constants.HS;
      const ko = ((this.constants.B * this.constants.NH + bh) * this.constants.T + sPos) * this.constants.HS;
      let dot = 0;
      for (let d = 0; d < this.constants.HS; d++) dot += qkvr[qo + d] * qkvr[ko + d];
      return dot * this.constants.SCALE;
    }, { ...s, ...settings, output: [B * NH * T * T] }),
  );
  // (B,NH,T): logsumexp of each row's first t+1 scores.
  const lseK = be.kernel(`att.lse:${shape}`, (gpu, s) =>
    gpu.createKernel(function (this: K, preatt: KernelArray) {
      const r = this.thread.x;
      const bh = Math.floor((r + 0.5) / this.constants.T);
      const t = r - bh * this.constants.T;
      let max = -3.0e38;
      for (let s1 = 0; s1 < this.constants.T; s1++) {
        if (s1 > t) break;
        max = Math.max(max, preatt[r * this.constants.T + s1]);
      }
      let sum = 0;
      for (let s2 = 0; s2 < this.constants.T; s2++) {
        if (s2 > t) break;
        sum += Math.exp(preatt[r * this.constants.T + s2] - max);
      }
      return max + Math.log(sum);
    }, { ...s, ...settings, output: [B * NH * T] }),
  );
  const attK = be.kernel(`att.att:${shape}`, (gpu, s) =>
    gpu.createKernel(function (this: K, preatt: KernelArray, lse: KernelArray) {
      const i = this.thread.x;
      const r = Math.floor((i + 0.5) / this.constants.T);
      const sPos = i - r * this.constants.T;
      const t = r - Math.floor((r + 0.5) / this.constants.T) * this.constants.T;
      if (sPos > t) return 0;
      return Math.exp(preatt[i] - lse[r]);
    }, { ...s, ...settings, output: [B * NH * T * T] }),
  );
  // (B,T,C): out[b,t,h·HS+d] = Σ_{s≤t} att[b,h,t,s]·v[b,h,s,d]
  const outK = be.kernel(`att.out:${shape}`, (gpu, s) =>
    gpu.createKernel(function (this: K, att: KernelArray, qkvr: KernelArray) {
      const i = this.thread.x;
      const bt = Math.floor((i + 0.5) / this.constants.C);
      const c = i - bt * this.constants.C;
      const b = Math.floor((bt + 0.5) / this.constants.T);
      const t = bt - b * this.constants.T;
      const h = Math.floor((c + 0.5) / this.constants.HS);
      const d = c - h * this.constants.HS;
      const bh = b * this.constants.NH + h;
      const row = (bh * this.constants.T + t) * this.constants.T;
      const vo = (2 * this.constants.B * this.constants.NH + bh) * this.constants.T * this.constants.HS + d;
      let acc = 0;
      for (let s1 = 0; s1 < this.constants.T; s1++) {
        if (s1 > t) break;
        acc += att[row + s1] * qkvr[vo + s1 * this.constants.HS];
      }
      return acc;
    }, { ...s, ...settings, output: [B * T * C] }),
  );

  const qkvr = ropeK(inp, ropeTable(T, k.HS, rope)) as Tensor;
  const preatt = preattK(qkvr) as Tensor;
  const lse = lseK(preatt) as Tensor;
  const att = attK(preatt, lse) as Tensor;
  be.release(preatt, lse);
  const out = outK(att, qkvr) as Tensor;
  return { out, att, qkvr };
}

/** dout (B,T,C), with the forward's att and qkvr → dinp (B,T,3C), fresh. */
export function attentionBackward(
  be: Backend,
  dout: Tensor,
  qkvr: Tensor,
  att: Tensor,
  B: number,
  T: number,
  C: number,
  NH: number,
  rope: RopeOptions = {},
): Tensor {
  const k = attConstants(B, T, C, NH);
  const shape = `${B}:${T}:${C}:${NH}`;
  const settings = { constants: k };

  // (B,NH,T,T): datt[t,s] = dout_t·v_s (s ≤ t)
  const dattK = be.kernel(`att.bwd.datt:${shape}`, (gpu, s) =>
    gpu.createKernel(function (this: K, dout: KernelArray, qkvr: KernelArray) {
      const i = this.thread.x;
      const r1 = Math.floor((i + 0.5) / this.constants.T);
      const sPos = i - r1 * this.constants.T;
      const bh = Math.floor((r1 + 0.5) / this.constants.T);
      const t = r1 - bh * this.constants.T;
      if (sPos > t) return 0;
      const b = Math.floor((bh + 0.5) / this.constants.NH);
      const h = bh - b * this.constants.NH;
      const dOff = (b * this.constants.T + t) * this.constants.C + h * this.constants.HS;
      const vOff = ((2 * this.constants.B * this.constants.NH + bh) * this.constants.T + sPos) * this.constants.HS;
      let dot = 0;
      for (let d = 0; d < this.constants.HS; d++) dot += dout[dOff + d] * qkvr[vOff + d];
      return dot;
    }, { ...s, ...settings, output: [B * NH * T * T] }),
  );
  // (B,NH,T): Σ_s att·datt, the softmax backward's row term.
  const rowK = be.kernel(`att.bwd.row:${shape}`, (gpu, s) =>
    gpu.createKernel(function (this: K, att: KernelArray, datt: KernelArray) {
      const r = this.thread.x;
      let sum = 0;
      for (let s1 = 0; s1 < this.constants.T; s1++) sum += att[r * this.constants.T + s1] * datt[r * this.constants.T + s1];
      return sum;
    }, { ...s, ...settings, output: [B * NH * T] }),
  );
  // (B,NH,T,T): the softmax backward, dpre = att·(datt − row) (the scale is applied in dqkvr).
  // Its own pass, so that dqkvr's inner loops fetch one operand instead of three: dqkvr was a
  // third of a training step of the tiny transformer on headlessgl.
  const dpreK = be.kernel(`att.bwd.dpre:${shape}`, (gpu, s) =>
    gpu.createKernel(function (this: K, att: KernelArray, datt: KernelArray, row: KernelArray) {
      const i = this.thread.x;
      const r = Math.floor((i + 0.5) / this.constants.T);
      return att[i] * (datt[i] - row[r]);
    }, { ...s, ...settings, output: [B * NH * T * T] }),
  );
  // (3,B,NH,T,HS): d(rotated q), d(rotated k), dv.
  const dqkvrK = be.kernel(`att.bwd.dqkvr:${shape}`, (gpu, s) =>
    gpu.createKernel(function (this: K, att: KernelArray, dpre: KernelArray, qkvr: KernelArray, dout: KernelArray) {
      const i = this.thread.x;
      const r1 = Math.floor((i + 0.5) / this.constants.HS);
      const d = i - r1 * this.constants.HS;
      const r2 = Math.floor((r1 + 0.5) / this.constants.T);
      const t = r1 - r2 * this.constants.T;
      const part = Math.floor((r2 + 0.5) / (this.constants.B * this.constants.NH));
      const bh = r2 - part * this.constants.B * this.constants.NH;
      const TT = this.constants.T * this.constants.T;
      const kBase = (this.constants.B * this.constants.NH + bh) * this.constants.T * this.constants.HS + d;
      const qBase = bh * this.constants.T * this.constants.HS + d;
      let acc = 0;
      if (part === 0) {
        // dq_t = scale·Σ_{s≤t} dpre[t,s]·k_s
        const rowT = bh * TT + t * this.constants.T;
        for (let s1 = 0; s1 < this.constants.T; s1++) {
          if (s1 > t) break;
          acc += dpre[rowT + s1] * qkvr[kBase + s1 * this.constants.HS];
        }
        acc = acc * this.constants.SCALE;
      } else {
        // t is the key/value position here: sum over the queries t2 ≥ t that see it.
        const b = Math.floor((bh + 0.5) / this.constants.NH);
        const h = bh - b * this.constants.NH;
        for (let j = 0; j < this.constants.T; j++) {
          const t2 = t + j;
          if (t2 >= this.constants.T) break;
          const e = bh * TT + t2 * this.constants.T + t;
          if (part === 1) {
            acc += dpre[e] * qkvr[qBase + t2 * this.constants.HS];
          } else {
            acc += att[e] * dout[(b * this.constants.T + t2) * this.constants.C + h * this.constants.HS + d];
          }
        }
        if (part === 1) acc = acc * this.constants.SCALE;
      }
      return acc;
    }, { ...s, ...settings, output: [3 * B * T * C] }),
  );
  // (B,T,3C): un-rotate dq and dk (rotation by −θ), place dv.
  const assembleK = be.kernel(`att.bwd.assemble:${shape}`, (gpu, s) =>
    gpu.createKernel(function (this: K, dqkvr: KernelArray, table: KernelArray) {
      const i = this.thread.x;
      const bt = Math.floor((i + 0.5) / (3 * this.constants.C));
      const j3 = i - bt * 3 * this.constants.C;
      const part = Math.floor((j3 + 0.5) / this.constants.C);
      const c = j3 - part * this.constants.C;
      const b = Math.floor((bt + 0.5) / this.constants.T);
      const t = bt - b * this.constants.T;
      const h = Math.floor((c + 0.5) / this.constants.HS);
      const d = c - h * this.constants.HS;
      const base = ((part * this.constants.B + b) * this.constants.NH + h) * this.constants.T * this.constants.HS + t * this.constants.HS;
      const g = dqkvr[base + d];
      if (part > 1) return g;
      let jj = d;
      let sign = 1;
      let partner = d + this.constants.HALF;
      if (d >= this.constants.HALF) {
        jj = d - this.constants.HALF;
        sign = -1;
        partner = jj;
      }
      const cos = table[t * this.constants.HS + jj];
      const sin = table[t * this.constants.HS + this.constants.HALF + jj];
      // first half: g·cos + g[j+HALF]·sin; second half: g·cos − g[j]·sin
      return g * cos + sign * dqkvr[base + partner] * sin;
    }, { ...s, ...settings, output: [3 * B * T * C] }),
  );

  const datt = dattK(dout, qkvr) as Tensor;
  const row = rowK(att, datt) as Tensor;
  const dpre = dpreK(att, datt, row) as Tensor;
  be.release(datt, row);
  const dqkvr = dqkvrK(att, dpre, qkvr, dout) as Tensor;
  be.release(dpre);
  const dinp = assembleK(dqkvr, ropeTable(T, k.HS, rope)) as Tensor;
  be.release(dqkvr);
  return dinp;
}
