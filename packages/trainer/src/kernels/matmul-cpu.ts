/**
 * Matmul on the CPU, fast: the same contract as `matmulForwardRef` / `matmulBackwardRef`
 * (matmul.ts; inp (BT,C), weight (OC,C), bias (OC), out (BT,OC)) on float32 arrays, in 2 × 4
 * register blocks: every value loaded feeds two or four multiply-adds, and a store into an
 * accumulated gradient carries four, where the reference's inner loops load two values and
 * store one per multiply-add (about 1.6× the throughput of 1 × 4 blocks, 3–4 GFLOP/s against
 * the reference's ~1 here). The gpu.js twins are `matmulForward` / `matmulBackward` (matmul.ts,
 * gemm.ts); all are checked against the same reference (matmul.test.ts). What the reference
 * mode of the transformer runs, and every mode's host-side evaluation.
 *
 * Partial sums run in float64 (JavaScript numbers) and are rounded when stored, so results
 * differ from the reference only by the float32 rounding of a differently ordered sum.
 */

/** out (BT,OC) = inp (BT,C) · weightᵀ + bias: two rows of inp against four of weight at a time. */
export function matmulForwardCpu(out: Float32Array, inp: Float32Array, weight: Float32Array, bias: Float32Array | null, B: number, T: number, C: number, OC: number): void {
  const BT = B * T;
  const O4 = OC - (OC % 4);
  const B2 = BT - (BT % 2);
  let bt = 0;
  for (; bt < B2; bt += 2) {
    const x = bt * C, xb = x + C;
    const y = bt * OC, yb = y + OC;
    let o = 0;
    for (; o < O4; o += 4) {
      const w0 = o * C, w1 = w0 + C, w2 = w1 + C, w3 = w2 + C;
      let s0 = 0, s1 = 0, s2 = 0, s3 = 0, t0 = 0, t1 = 0, t2 = 0, t3 = 0;
      for (let c = 0; c < C; c++) {
        const v = inp[x + c]!, u = inp[xb + c]!;
        const a0 = weight[w0 + c]!, a1 = weight[w1 + c]!, a2 = weight[w2 + c]!, a3 = weight[w3 + c]!;
        s0 += v * a0; s1 += v * a1; s2 += v * a2; s3 += v * a3;
        t0 += u * a0; t1 += u * a1; t2 += u * a2; t3 += u * a3;
      }
      const b0 = bias ? bias[o]! : 0, b1 = bias ? bias[o + 1]! : 0, b2 = bias ? bias[o + 2]! : 0, b3 = bias ? bias[o + 3]! : 0;
      out[y + o] = s0 + b0; out[y + o + 1] = s1 + b1; out[y + o + 2] = s2 + b2; out[y + o + 3] = s3 + b3;
      out[yb + o] = t0 + b0; out[yb + o + 1] = t1 + b1; out[yb + o + 2] = t2 + b2; out[yb + o + 3] = t3 + b3;
    }
    for (; o < OC; o++) {
      const w = o * C;
      let s = 0, t = 0;
      for (let c = 0; c < C; c++) {
        const a = weight[w + c]!;
        s += inp[x + c]! * a;
        t += inp[xb + c]! * a;
      }
      out[y + o] = bias ? s + bias[o]! : s;
      out[yb + o] = bias ? t + bias[o]! : t;
    }
  }
  for (; bt < BT; bt++) {
    const x = bt * C, y = bt * OC;
    for (let o = 0; o < OC; o++) {
      const w = o * C;
      let s = 0;
      for (let c = 0; c < C; c++) s += inp[x + c]! * weight[w + c]!;
      out[y + o] = bias ? s + bias[o]! : s;
    }
  }
}

/** Accumulates, as the reference does: dinp += dout·weight (two rows × four outputs at a time), dweight += doutᵀ·inp (two outputs × four rows), dbias += Σ_bt dout. */
export function matmulBackwardCpu(dinp: Float32Array, dweight: Float32Array, dbias: Float32Array | null, dout: Float32Array, inp: Float32Array, weight: Float32Array, B: number, T: number, C: number, OC: number): void {
  const BT = B * T;
  const O4 = OC - (OC % 4);
  const B2 = BT - (BT % 2);
  let bt = 0;
  for (; bt < B2; bt += 2) {
    const x = bt * C, xb = x + C, y = bt * OC, yb = y + OC;
    let o = 0;
    for (; o < O4; o += 4) {
      const d0 = dout[y + o]!, d1 = dout[y + o + 1]!, d2 = dout[y + o + 2]!, d3 = dout[y + o + 3]!;
      const e0 = dout[yb + o]!, e1 = dout[yb + o + 1]!, e2 = dout[yb + o + 2]!, e3 = dout[yb + o + 3]!;
      const w0 = o * C, w1 = w0 + C, w2 = w1 + C, w3 = w2 + C;
      for (let c = 0; c < C; c++) {
        const a0 = weight[w0 + c]!, a1 = weight[w1 + c]!, a2 = weight[w2 + c]!, a3 = weight[w3 + c]!;
        dinp[x + c] = dinp[x + c]! + (d0 * a0 + d1 * a1 + d2 * a2 + d3 * a3);
        dinp[xb + c] = dinp[xb + c]! + (e0 * a0 + e1 * a1 + e2 * a2 + e3 * a3);
      }
    }
    for (; o < OC; o++) {
      const d = dout[y + o]!, e = dout[yb + o]!, w = o * C;
      for (let c = 0; c < C; c++) {
        const a = weight[w + c]!;
        dinp[x + c] = dinp[x + c]! + d * a;
        dinp[xb + c] = dinp[xb + c]! + e * a;
      }
    }
  }
  for (; bt < BT; bt++) {
    const x = bt * C, y = bt * OC;
    for (let o = 0; o < OC; o++) {
      const d = dout[y + o]!;
      const w = o * C;
      for (let c = 0; c < C; c++) dinp[x + c] = dinp[x + c]! + d * weight[w + c]!;
    }
  }
  const BT4 = BT - (BT % 4);
  const O2 = OC - (OC % 2);
  let o = 0;
  for (; o < O2; o += 2) {
    const w = o * C, wb = w + C;
    let db0 = 0, db1 = 0;
    let t = 0;
    for (; t < BT4; t += 4) {
      const r0 = t * OC + o, r1 = r0 + OC, r2 = r1 + OC, r3 = r2 + OC;
      const d0 = dout[r0]!, d1 = dout[r1]!, d2 = dout[r2]!, d3 = dout[r3]!;
      const e0 = dout[r0 + 1]!, e1 = dout[r1 + 1]!, e2 = dout[r2 + 1]!, e3 = dout[r3 + 1]!;
      db0 += d0 + d1 + d2 + d3; db1 += e0 + e1 + e2 + e3;
      const x0 = t * C, x1 = x0 + C, x2 = x1 + C, x3 = x2 + C;
      for (let c = 0; c < C; c++) {
        const i0 = inp[x0 + c]!, i1 = inp[x1 + c]!, i2 = inp[x2 + c]!, i3 = inp[x3 + c]!;
        dweight[w + c] = dweight[w + c]! + (d0 * i0 + d1 * i1 + d2 * i2 + d3 * i3);
        dweight[wb + c] = dweight[wb + c]! + (e0 * i0 + e1 * i1 + e2 * i2 + e3 * i3);
      }
    }
    for (; t < BT; t++) {
      const d = dout[t * OC + o]!, e = dout[t * OC + o + 1]!, x = t * C;
      db0 += d; db1 += e;
      for (let c = 0; c < C; c++) {
        const i = inp[x + c]!;
        dweight[w + c] = dweight[w + c]! + d * i;
        dweight[wb + c] = dweight[wb + c]! + e * i;
      }
    }
    if (dbias) {
      dbias[o] = dbias[o]! + db0;
      dbias[o + 1] = dbias[o + 1]! + db1;
    }
  }
  for (; o < OC; o++) {
    const w = o * C;
    let db = 0;
    for (let t = 0; t < BT; t++) {
      const d = dout[t * OC + o]!;
      const x = t * C;
      db += d;
      for (let c = 0; c < C; c++) dweight[w + c] = dweight[w + c]! + d * inp[x + c]!;
    }
    if (dbias) dbias[o] = dbias[o]! + db;
  }
}
