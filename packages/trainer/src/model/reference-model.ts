import type { ModelConfig, OptimizerConfig } from '../config.ts';
import { Rng } from '../rng.ts';
import { adamwState, type Model, type NamedTensor } from './model.ts';

/**
 * The reference model: a bigram with a low-rank factorisation (token
 * embedding, then a linear layer to the vocabulary, then softmax), in plain
 * TypeScript with its own forward/backward and AdamW, llm.c style. It sees one
 * token of context, so it learns the synthetic language's transitions and
 * nothing long-range; it exists to make the training loop, checkpoints,
 * resume and fork real and testable before the gpu.js transformer lands.
 *
 * Legend: B = batch, T = time, C = channels (dModel), V = vocab, BT = B·T positions.
 *
 *   h      = wte[inputs]            (BT, C)
 *   logits = h · wlmᵀ + blm         (BT, V)
 *   loss   = mean cross-entropy(softmax(logits), targets)
 */

// ---------------------------------------------------------------- ops

/** out[bt, :] = wte[inp[bt], :] */
function encoderForward(out: Float32Array, inp: Int32Array, wte: Float32Array, BT: number, C: number): void {
  for (let bt = 0; bt < BT; bt++) out.set(wte.subarray(inp[bt]! * C, inp[bt]! * C + C), bt * C);
}

/** dwte[inp[bt], :] += dout[bt, :] */
function encoderBackward(dwte: Float32Array, dout: Float32Array, inp: Int32Array, BT: number, C: number): void {
  for (let bt = 0; bt < BT; bt++) {
    const row = inp[bt]! * C;
    for (let c = 0; c < C; c++) dwte[row + c]! += dout[bt * C + c]!;
  }
}

/** out (BT, OC) = inp (BT, C) · weightᵀ (C, OC) + bias (OC) */
function matmulForward(out: Float32Array, inp: Float32Array, weight: Float32Array, bias: Float32Array, BT: number, C: number, OC: number): void {
  for (let bt = 0; bt < BT; bt++) {
    const x = bt * C;
    for (let o = 0; o < OC; o++) {
      const w = o * C;
      let sum = bias[o]!;
      for (let c = 0; c < C; c++) sum += inp[x + c]! * weight[w + c]!;
      out[bt * OC + o] = sum;
    }
  }
}

/** dinp (BT, C) = dout · weight; dweight (OC, C) += doutᵀ · inp; dbias (OC) += Σ_bt dout */
function matmulBackward(
  dinp: Float32Array,
  dweight: Float32Array,
  dbias: Float32Array,
  dout: Float32Array,
  inp: Float32Array,
  weight: Float32Array,
  BT: number,
  C: number,
  OC: number,
): void {
  dinp.fill(0, 0, BT * C);
  for (let bt = 0; bt < BT; bt++) {
    const x = bt * C;
    for (let o = 0; o < OC; o++) {
      const d = dout[bt * OC + o]!;
      if (d === 0) continue;
      const w = o * C;
      for (let c = 0; c < C; c++) {
        dinp[x + c]! += d * weight[w + c]!;
        dweight[w + c]! += d * inp[x + c]!;
      }
      dbias[o]! += d;
    }
  }
}

/** Softmax of each row of logits (BT, V), in place into probs; returns the mean cross-entropy against targets. */
function softmaxCrossEntropyForward(probs: Float32Array, targets: Int32Array, BT: number, V: number): number {
  let loss = 0;
  for (let bt = 0; bt < BT; bt++) {
    const row = bt * V;
    let max = -Infinity;
    for (let v = 0; v < V; v++) max = Math.max(max, probs[row + v]!);
    let sum = 0;
    for (let v = 0; v < V; v++) {
      const e = Math.exp(probs[row + v]! - max);
      probs[row + v] = e;
      sum += e;
    }
    for (let v = 0; v < V; v++) probs[row + v]! /= sum;
    loss -= Math.log(Math.max(probs[row + targets[bt]!]!, 1e-30));
  }
  return loss / BT;
}

/** dlogits (BT, V) = (probs − onehot(targets)) / BT, in place over probs. */
function softmaxCrossEntropyBackward(probs: Float32Array, targets: Int32Array, BT: number, V: number): void {
  const scale = 1 / BT;
  for (let bt = 0; bt < BT; bt++) {
    const row = bt * V;
    probs[row + targets[bt]!]! -= 1;
    for (let v = 0; v < V; v++) probs[row + v]! *= scale;
  }
}

/** One AdamW update of a tensor (decoupled weight decay; bias-corrected moments, t from 1). */
function adamwUpdate(param: Float32Array, grad: Float32Array, m: Float32Array, v: Float32Array, lr: number, t: number, o: OptimizerConfig, weightDecay: number): void {
  const c1 = 1 - o.beta1 ** t;
  const c2 = 1 - o.beta2 ** t;
  for (let i = 0; i < param.length; i++) {
    const g = grad[i]!;
    const mi = (m[i] = o.beta1 * m[i]! + (1 - o.beta1) * g);
    const vi = (v[i] = o.beta2 * v[i]! + (1 - o.beta2) * g * g);
    param[i]! -= lr * (mi / c1 / (Math.sqrt(vi / c2) + o.eps) + weightDecay * param[i]!);
  }
}

// ---------------------------------------------------------------- model

interface Slot {
  tensor: NamedTensor;
  grad: Float32Array;
  m: Float32Array;
  v: Float32Array;
  /** Matrices decay, vectors (biases) do not (nanoGPT's split). */
  decays: boolean;
}

export class BigramModel implements Model {
  readonly backend = 'reference (TypeScript)';
  private readonly slots: Slot[];
  private readonly V: number;
  private readonly C: number;
  // activations, sized for the last BT seen
  private BT = 0;
  private h = new Float32Array(0); // (BT, C)
  private probs = new Float32Array(0); // (BT, V): logits, then probabilities, then dlogits
  private dh = new Float32Array(0); // (BT, C)

  constructor(readonly config: ModelConfig) {
    const { vocab: V, dModel: C } = config;
    this.V = V;
    this.C = C;
    const rng = new Rng(config.seed);
    const normal = (n: number, std: number) => Float32Array.from({ length: n }, () => rng.normal() * std);
    const slot = (name: string, shape: number[], data: Float32Array): Slot => ({
      tensor: { name, shape, data },
      grad: new Float32Array(data.length),
      m: new Float32Array(data.length),
      v: new Float32Array(data.length),
      decays: shape.length > 1,
    });
    this.slots = [
      slot('wte', [V, C], normal(V * C, 0.5)), // (V, C) token embedding
      slot('wlm', [V, C], normal(V * C, 0.02)), // (V, C) output projection, llm.c's (OC, C) layout
      slot('blm', [V], new Float32Array(V)), // (V)
    ];
  }

  parameters(): NamedTensor[] {
    return this.slots.map((s) => s.tensor);
  }

  optimizerState(): NamedTensor[] {
    return adamwState(this.slots);
  }

  /** The accumulated gradients, named like the parameters (for the gradient check). */
  gradients(): NamedTensor[] {
    return this.slots.map((s) => ({ name: s.tensor.name, shape: s.tensor.shape, data: s.grad }));
  }

  private get wte() {
    return this.slots[0]!;
  }
  private get wlm() {
    return this.slots[1]!;
  }
  private get blm() {
    return this.slots[2]!;
  }

  private forward(inputs: Int32Array, targets: Int32Array, B: number, T: number): number {
    const BT = B * T;
    if (inputs.length !== BT || targets.length !== BT) throw new Error(`inputs and targets must hold B·T = ${BT} tokens, got ${inputs.length} and ${targets.length}`);
    if (BT !== this.BT) {
      this.BT = BT;
      this.h = new Float32Array(BT * this.C);
      this.probs = new Float32Array(BT * this.V);
      this.dh = new Float32Array(BT * this.C);
    }
    for (let i = 0; i < BT; i++) {
      if (inputs[i]! < 0 || inputs[i]! >= this.V || targets[i]! < 0 || targets[i]! >= this.V) throw new Error(`token out of the vocabulary (V = ${this.V}) at position ${i}`);
    }
    encoderForward(this.h, inputs, this.wte.tensor.data, BT, this.C); // (BT, C)
    matmulForward(this.probs, this.h, this.wlm.tensor.data, this.blm.tensor.data, BT, this.C, this.V); // (BT, V) logits
    return softmaxCrossEntropyForward(this.probs, targets, BT, this.V); // probs in place
  }

  forwardBackward(inputs: Int32Array, targets: Int32Array, B: number, T: number, weights?: Float32Array): number {
    if (weights) throw new Error('the bigram reference model takes no loss weights (use the transformer)');
    const loss = this.forward(inputs, targets, B, T);
    const BT = B * T;
    softmaxCrossEntropyBackward(this.probs, targets, BT, this.V); // (BT, V) dlogits
    matmulBackward(this.dh, this.wlm.grad, this.blm.grad, this.probs, this.h, this.wlm.tensor.data, BT, this.C, this.V);
    encoderBackward(this.wte.grad, this.dh, inputs, BT, this.C);
    return loss;
  }

  evaluate(inputs: Int32Array, targets: Int32Array, B: number, T: number): number {
    return this.forward(inputs, targets, B, T);
  }

  step(lr: number, t: number, optimizer: OptimizerConfig): number {
    let sq = 0;
    for (const s of this.slots) for (let i = 0; i < s.grad.length; i++) sq += s.grad[i]! * s.grad[i]!;
    const norm = Math.sqrt(sq);
    const scale = optimizer.gradClip > 0 && norm > optimizer.gradClip ? optimizer.gradClip / norm : 1;
    for (const s of this.slots) {
      if (scale !== 1) for (let i = 0; i < s.grad.length; i++) s.grad[i]! *= scale;
      adamwUpdate(s.tensor.data, s.grad, s.m, s.v, lr, t, optimizer, s.decays ? optimizer.weightDecay : 0);
      s.grad.fill(0);
    }
    return norm;
  }
}
