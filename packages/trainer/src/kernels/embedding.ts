/**
 * Token embedding: out[b,t,:] = wte[inp[b,t], :]. There is no positional table: positions
 * enter through RoPE inside attention (attention.ts), so any sequence length works.
 *
 * Shapes: B = batch, T = time, C = channels, V = vocab.
 *   inp (B,T) token ids (host Int32Array), wte (V,C), out (B,T,C).
 *
 * The token ids always come from the host (the data loader), so the backward's scatter-add
 * (dwte[inp[bt]] += dout[bt]) is turned into a gather on the host side: positions grouped by
 * token (`tokenGroups`), and one thread per dwte element sums its token's positions.
 */
import type { Backend, Tensor } from './backend.ts';
import { checkFlatSize, idsToFloat, type Floats, type KernelThis, type KernelArray } from './common.ts';

export function embeddingForwardRef(out: Floats /* (B,T,C) */, inp: Int32Array /* (B,T) */, wte: Floats /* (V,C) */, B: number, T: number, C: number): void {
  for (let bt = 0; bt < B * T; bt++) {
    const ix = inp[bt]!;
    for (let c = 0; c < C; c++) out[bt * C + c] = wte[ix * C + c]!;
  }
}

/** Accumulates: dwte[inp[b,t], :] += dout[b,t,:]. */
export function embeddingBackwardRef(dwte: Floats /* (V,C) */, dout: Floats /* (B,T,C) */, inp: Int32Array /* (B,T) */, B: number, T: number, C: number): void {
  for (let bt = 0; bt < B * T; bt++) {
    const ix = inp[bt]!;
    for (let c = 0; c < C; c++) dwte[ix * C + c]! += dout[bt * C + c]!;
  }
}

/**
 * Positions grouped by token: token v's positions are order[start[v] .. start[v+1]).
 * A counting sort, O(B·T + V).
 */
export function tokenGroups(inp: Int32Array, V: number): { start: Float32Array /* (V+1) */; order: Float32Array /* (B·T) */ } {
  const start = new Float32Array(V + 1);
  for (const ix of inp) {
    if (ix < 0 || ix >= V || !Number.isInteger(ix)) throw new Error(`token id ${ix} outside the vocabulary [0, ${V})`);
    start[ix + 1]!++;
  }
  for (let v = 0; v < V; v++) start[v + 1]! += start[v]!;
  const next = Float32Array.from(start);
  const order = new Float32Array(inp.length);
  inp.forEach((ix, bt) => (order[next[ix]!++] = bt));
  return { start, order };
}

type K = KernelThis<{ C: number; BT: number }>;

/** inp (B,T) ids, wte (V,C) → out (B,T,C) */
export function embeddingForward(be: Backend, inp: Int32Array, wte: Tensor, B: number, T: number, C: number): Tensor {
  const BT = B * T;
  if (inp.length !== BT) throw new Error(`embeddingForward: ${inp.length} token ids for B·T = ${BT}`);
  checkFlatSize('embeddingForward', BT * C);
  const k = be.kernel(`emb.fwd:${BT}:${C}`, (gpu, s) =>
    gpu.createKernel(function (this: K, ids: KernelArray, wte: KernelArray) {
      const i = this.thread.x;
      const bt = Math.floor((i + 0.5) / this.constants.C);
      const c = i - bt * this.constants.C;
      return wte[ids[bt] * this.constants.C + c];
    }, { ...s, output: [BT * C], constants: { C, BT } }),
  );
  return k(idsToFloat(inp), wte) as Tensor;
}

/** dout (B,T,C), inp (B,T) ids → dwte (V,C), fresh (zero for tokens that do not occur). */
export function embeddingBackward(be: Backend, dout: Tensor, inp: Int32Array, B: number, T: number, C: number, V: number): Tensor {
  const BT = B * T;
  if (inp.length !== BT) throw new Error(`embeddingBackward: ${inp.length} token ids for B·T = ${BT}`);
  checkFlatSize('embeddingBackward', V * C);
  const { start, order } = tokenGroups(inp, V);
  const k = be.kernel(`emb.bwd:${BT}:${C}:${V}`, (gpu, s) =>
    gpu.createKernel(function (this: K, dout: KernelArray, start: KernelArray, order: KernelArray) {
      const i = this.thread.x;
      const v = Math.floor((i + 0.5) / this.constants.C);
      const c = i - v * this.constants.C;
      const first = start[v];
      const count = start[v + 1] - first;
      let sum = 0;
      for (let j = 0; j < this.constants.BT; j++) {
        if (j >= count) break;
        sum += dout[order[first + j] * this.constants.C + c];
      }
      return sum;
    }, { ...s, output: [V * C], constants: { C, BT } }),
  );
  return k(dout, start, order) as Tensor;
}
