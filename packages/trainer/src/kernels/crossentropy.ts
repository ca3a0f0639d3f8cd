/**
 * Softmax + cross-entropy over the vocabulary, per position.
 *   forward:  probs = softmax(logits), losses[bt] = −log probs[bt, target[bt]]
 *   backward: dlogits = (probs − onehot(target)) · dlosses[bt]
 * A target < 0 marks a position to ignore (padding): loss 0, gradient 0.
 *
 * Shapes: B = batch, T = time, V = vocab.
 *   logits (B,T,V), targets (B,T) (host Int32Array), probs (B,T,V), losses (B,T),
 *   dlosses (B,T) or one number for all positions (the mean loss over N counted positions: 1/N).
 *
 * The loss is computed as logsumexp(logits) − logits[target] (not −log of a float32 prob that
 * may underflow to 0); probs = exp(logits − logsumexp).
 */
import type { Backend, Tensor } from './backend.ts';
import { checkFlatSize, idsToFloat, type Floats, type KernelThis, type KernelArray } from './common.ts';

export function crossEntropyForwardRef(
  losses: Floats /* (B,T) */,
  probs: Floats /* (B,T,V) */,
  logits: Floats /* (B,T,V) */,
  targets: Int32Array /* (B,T) */,
  B: number,
  T: number,
  V: number,
): void {
  for (let bt = 0; bt < B * T; bt++) {
    const row = logits.subarray(bt * V, (bt + 1) * V);
    let max = -Infinity;
    for (let v = 0; v < V; v++) max = Math.max(max, row[v]!);
    let sum = 0;
    for (let v = 0; v < V; v++) sum += Math.exp(row[v]! - max);
    const lse = max + Math.log(sum);
    for (let v = 0; v < V; v++) probs[bt * V + v] = Math.exp(row[v]! - lse);
    const target = targets[bt]!;
    losses[bt] = target < 0 ? 0 : lse - row[target]!;
  }
}

/** Accumulates: dlogits += (probs − onehot(target))·dloss. */
export function crossEntropyBackwardRef(
  dlogits: Floats /* (B,T,V) */,
  dlosses: Floats | number /* (B,T) */,
  probs: Floats /* (B,T,V) */,
  targets: Int32Array /* (B,T) */,
  B: number,
  T: number,
  V: number,
): void {
  for (let bt = 0; bt < B * T; bt++) {
    const target = targets[bt]!;
    if (target < 0) continue;
    const dloss = typeof dlosses === 'number' ? dlosses : dlosses[bt]!;
    for (let v = 0; v < V; v++) dlogits[bt * V + v]! += (probs[bt * V + v]! - (v === target ? 1 : 0)) * dloss;
  }
}

/** Mean of the losses over the positions that count (target ≥ 0), in float64. */
export function meanLoss(losses: ArrayLike<number>, targets: Int32Array): number {
  let sum = 0;
  let n = 0;
  for (let i = 0; i < losses.length; i++) {
    if (targets[i]! < 0) continue;
    sum += losses[i]!;
    n++;
  }
  return n ? sum / n : 0;
}

type K = KernelThis<{ V: number }>;

export interface CrossEntropyOutputs {
  losses: Tensor /* (B,T) */;
  probs: Tensor /* (B,T,V) */;
}

/** logits (B,T,V), targets (B,T) → per-position losses and probs (read back only the losses). */
export function crossEntropyForward(be: Backend, logits: Tensor, targets: Int32Array, B: number, T: number, V: number): CrossEntropyOutputs {
  const BT = B * T;
  if (targets.length !== BT) throw new Error(`crossEntropyForward: ${targets.length} targets for B·T = ${BT}`);
  checkFlatSize('crossEntropyForward', BT * V);
  const lseK = be.kernel(`ce.lse:${BT}:${V}`, (gpu, s) =>
    gpu.createKernel(function (this: K, logits: KernelArray) {
      const base = this.thread.x * this.constants.V;
      let max = -3.0e38;
      for (let v = 0; v < this.constants.V; v++) max = Math.max(max, logits[base + v]);
      let sum = 0;
      for (let w = 0; w < this.constants.V; w++) sum += Math.exp(logits[base + w] - max);
      return max + Math.log(sum);
    }, { ...s, output: [BT], constants: { V } }),
  );
  const probsK = be.kernel(`ce.probs:${BT}:${V}`, (gpu, s) =>
    gpu.createKernel(function (this: K, logits: KernelArray, lse: KernelArray) {
      const bt = Math.floor((this.thread.x + 0.5) / this.constants.V);
      return Math.exp(logits[this.thread.x] - lse[bt]);
    }, { ...s, output: [BT * V], constants: { V } }),
  );
  const lossK = be.kernel(`ce.loss:${BT}:${V}`, (gpu, s) =>
    gpu.createKernel(function (this: K, logits: KernelArray, lse: KernelArray, targets: KernelArray) {
      const target = targets[this.thread.x];
      if (target < 0) return 0;
      return lse[this.thread.x] - logits[this.thread.x * this.constants.V + target];
    }, { ...s, output: [BT], constants: { V } }),
  );
  const lse = lseK(logits) as Tensor;
  const probs = probsK(logits, lse) as Tensor;
  const losses = lossK(logits, lse, idsToFloat(targets)) as Tensor;
  be.release(lse);
  return { losses, probs };
}

/** probs (B,T,V), targets (B,T), dlosses (B,T) or a number → dlogits (B,T,V), fresh. */
export function crossEntropyBackward(
  be: Backend,
  probs: Tensor,
  targets: Int32Array,
  dlosses: Float32Array | number,
  B: number,
  T: number,
  V: number,
): Tensor {
  const BT = B * T;
  if (targets.length !== BT) throw new Error(`crossEntropyBackward: ${targets.length} targets for B·T = ${BT}`);
  checkFlatSize('crossEntropyBackward', BT * V);
  const d = typeof dlosses === 'number' ? new Float32Array(BT).fill(dlosses) : dlosses;
  const k = be.kernel(`ce.bwd:${BT}:${V}`, (gpu, s) =>
    gpu.createKernel(function (this: K, probs: KernelArray, targets: KernelArray, dlosses: KernelArray) {
      const bt = Math.floor((this.thread.x + 0.5) / this.constants.V);
      const v = this.thread.x - bt * this.constants.V;
      const target = targets[bt];
      if (target < 0) return 0;
      let indicator = 0;
      if (v === target) indicator = 1;
      return (probs[this.thread.x] - indicator) * dlosses[bt];
    }, { ...s, output: [BT * V], constants: { V } }),
  );
  return k(probs, idsToFloat(targets), d) as Tensor;
}
