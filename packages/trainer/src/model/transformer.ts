import type { ModelConfig, OptimizerConfig } from '../config.ts';
import { readTrainerEnv } from '../env.ts';
import { adamwRef, adamwUpdate, type AdamWConfig } from '../kernels/adamw.ts';
import { attentionBackward, attentionBackwardRef, attentionForward, attentionForwardRef } from '../kernels/attention.ts';
import { createBackend, type Backend, type GpuMode, type Tensor } from '../kernels/backend.ts';
import { clipGradients, clipScale, globalNormRef } from '../kernels/clip.ts';
import type { Floats } from '../kernels/common.ts';
import { crossEntropyBackward, crossEntropyBackwardRef, crossEntropyForward, crossEntropyForwardRef, meanLoss } from '../kernels/crossentropy.ts';
import { embeddingBackward, embeddingBackwardRef, embeddingForward, embeddingForwardRef } from '../kernels/embedding.ts';
import { geluBackwardRef, geluForward, geluForwardRef } from '../kernels/gelu.ts';
import { layernormBackward, layernormBackwardRef, layernormForward, layernormForwardRef } from '../kernels/layernorm.ts';
import { matmulBackward, matmulBackwardRef, matmulForward, matmulForwardRef } from '../kernels/matmul.ts';
import { matmulBackwardCpu, matmulForwardCpu } from '../kernels/matmul-cpu.ts';
import { partWorker } from './parallel.ts';
import { residualForward, residualForwardRef } from '../kernels/residual.ts';
import type { RopeOptions } from '../kernels/rope.ts';
import { Rng } from '../rng.ts';
import { adamwState, type Model, type NamedTensor } from './model.ts';

/**
 * A decoder-only GPT-2-style transformer (llm.c's train_gpt2.c, with RoPE instead of a learned
 * position table), implementing `Model` on two execution paths that share one parameter layout:
 *
 *   reference  every op through the plain `*Ref` functions of src/kernels on host arrays
 *              (float32 for training; float64 for the gradient check, `transformerLossRef`).
 *   gpu.js     the kernels on a `Backend`; parameters, gradients, AdamW moments and activations
 *              stay where the kernels put them (GL textures on headlessgl); per step only the
 *              per-position losses and the clip's partial sums come back. The host copies behind
 *              `parameters()` / `optimizerState()` are refreshed only by `syncToHost()` (a save)
 *              and pushed to the device by `syncFromHost()` (a load).
 *
 * The network, per block l (pre-LN):
 *   x      = wte[inputs]                                    (B,T,C)   no position table: RoPE in attention
 *   ln1    = layernorm(x; ln1w, ln1b)                       (B,T,C)
 *   qkv    = ln1 · qkvwᵀ + qkvb                             (B,T,3C)
 *   atty   = causal attention(qkv) with RoPE(ropeBase)      (B,T,C)
 *   x2     = x + atty · attprojwᵀ + attprojb                (B,T,C)
 *   ln2    = layernorm(x2; ln2w, ln2b)                      (B,T,C)
 *   fch    = ln2 · fcwᵀ + fcb                               (B,T,4C)
 *   x      = x2 + gelu(fch) · fcprojwᵀ + fcprojb            (B,T,C)
 * then lnf = layernorm(x; lnfw, lnfb) (B,T,C), logits = lnf · wteᵀ (B,T,V): the LM head is TIED to
 * the token embedding (GPT-2), so wte's gradient is the sum of the head's and the embedding's.
 *
 * Init (GPT-2): matrices N(0, 0.02), the two residual projections (attprojw, fcprojw) N(0, 0.02/√(2·L)),
 * biases 0, layernorm weights 1; drawn from `config.seed` in the fixed parameter order below.
 *
 * Legend: B = batch, T = time, C = channels (dModel), V = vocab, L = layers, NH = heads,
 * HS = head size (C/NH), BT = B·T.
 */

// ---------------------------------------------------------------- parameter layout

/** One block's parameters (llm.c names; matrices are (OC, C)). */
export interface BlockParams<F> {
  ln1w: F; // (C)
  ln1b: F; // (C)
  qkvw: F; // (3C, C)
  qkvb: F; // (3C)
  attprojw: F; // (C, C)
  attprojb: F; // (C)
  ln2w: F; // (C)
  ln2b: F; // (C)
  fcw: F; // (4C, C)
  fcb: F; // (4C)
  fcprojw: F; // (C, 4C)
  fcprojb: F; // (C)
}

export interface TransformerParams<F> {
  wte: F; // (V, C): token embedding and (tied) LM head
  blocks: BlockParams<F>[]; // L of them
  lnfw: F; // (C)
  lnfb: F; // (C)
}

type BlockKey = keyof BlockParams<unknown>;
const BLOCK_KEYS: BlockKey[] = ['ln1w', 'ln1b', 'qkvw', 'qkvb', 'attprojw', 'attprojb', 'ln2w', 'ln2b', 'fcw', 'fcb', 'fcprojw', 'fcprojb'];

interface ParamSpec {
  name: string;
  shape: number[];
  init: 'normal' | 'residual' | 'zeros' | 'ones';
  get: <F>(p: TransformerParams<F>) => F;
  set: <F>(p: TransformerParams<F>, x: F) => void;
}

/** Every parameter tensor, in the fixed order of checkpoints, init draws and `parameters()`. */
export function parameterSpecs(config: Pick<ModelConfig, 'vocab' | 'dModel' | 'layers'>): ParamSpec[] {
  const { vocab: V, dModel: C, layers: L } = config;
  const blockShape: Record<BlockKey, number[]> = {
    ln1w: [C], ln1b: [C], qkvw: [3 * C, C], qkvb: [3 * C], attprojw: [C, C], attprojb: [C],
    ln2w: [C], ln2b: [C], fcw: [4 * C, C], fcb: [4 * C], fcprojw: [C, 4 * C], fcprojb: [C],
  };
  const blockInit = (k: BlockKey): ParamSpec['init'] =>
    k === 'ln1w' || k === 'ln2w' ? 'ones' : k === 'attprojw' || k === 'fcprojw' ? 'residual' : blockShape[k].length > 1 ? 'normal' : 'zeros';
  const specs: ParamSpec[] = [{ name: 'wte', shape: [V, C], init: 'normal', get: (p) => p.wte, set: (p, x) => (p.wte = x) }];
  for (let l = 0; l < L; l++) {
    for (const k of BLOCK_KEYS) {
      specs.push({ name: `h${l}.${k}`, shape: blockShape[k], init: blockInit(k), get: (p) => p.blocks[l]![k], set: (p, x) => (p.blocks[l]![k] = x) });
    }
  }
  specs.push({ name: 'lnfw', shape: [C], init: 'ones', get: (p) => p.lnfw, set: (p, x) => (p.lnfw = x) });
  specs.push({ name: 'lnfb', shape: [C], init: 'zeros', get: (p) => p.lnfb, set: (p, x) => (p.lnfb = x) });
  return specs;
}

/** Builds a params structure whose tensors come from `make(spec)`. */
export function buildParams<F>(specs: ParamSpec[], layers: number, make: (spec: ParamSpec, index: number) => F): TransformerParams<F> {
  const p = { wte: undefined, blocks: Array.from({ length: layers }, () => ({})), lnfw: undefined, lnfb: undefined } as unknown as TransformerParams<F>;
  specs.forEach((s, i) => s.set(p, make(s, i)));
  return p;
}

/** GPT-2 initialisation from the seed, as host float32 arrays in spec order. */
export function initialWeights(config: ModelConfig): Float32Array[] {
  const rng = new Rng(config.seed);
  const residualStd = 0.02 / Math.sqrt(2 * config.layers);
  return parameterSpecs(config).map((s) => {
    const n = s.shape.reduce((a, b) => a * b, 1);
    const x = new Float32Array(n);
    if (s.init === 'ones') x.fill(1);
    else if (s.init !== 'zeros') {
      const std = s.init === 'residual' ? residualStd : 0.02;
      for (let i = 0; i < n; i++) x[i] = rng.normal() * std;
    }
    return x;
  });
}

// ---------------------------------------------------------------- reference path

interface Dims {
  B: number;
  T: number;
  C: number;
  V: number;
  NH: number;
  rope: RopeOptions;
}

function checkTokens(inputs: Int32Array, targets: Int32Array | null, B: number, T: number, V: number): void {
  const BT = B * T;
  if (inputs.length !== BT || (targets && targets.length !== BT)) {
    throw new Error(`inputs and targets must hold B·T = ${BT} tokens, got ${inputs.length} and ${targets?.length}`);
  }
  for (let i = 0; i < BT; i++) {
    if (inputs[i]! < 0 || inputs[i]! >= V || (targets && targets[i]! >= V)) throw new Error(`token out of the vocabulary (V = ${V}) at position ${i}`);
  }
}

/** A block's activations, kept from the forward for the backward. */
interface BlockActs<F> {
  x: F; // (BT,C) block input
  ln1: F; // (BT,C)
  ln1Mean: F; // (BT)
  ln1Rstd: F; // (BT)
  qkv: F; // (BT,3C)
  att: F; // (B,NH,T,T)
  atty: F; // (BT,C)
  x2: F; // (BT,C) after the attention residual
  ln2: F; // (BT,C)
  ln2Mean: F; // (BT)
  ln2Rstd: F; // (BT)
  fch: F; // (BT,4C) pre-GELU
  fchGelu: F; // (BT,4C)
}

/** The matmuls the host-side forward and backward run (the bulk of their time). */
export interface MatmulOps<F extends Floats> {
  matmulForwardRef(out: F, inp: F, weight: F, bias: F | null, B: number, T: number, C: number, OC: number): void;
  matmulBackwardRef(dinp: F, dweight: F, dbias: F | null, dout: F, inp: F, weight: F, B: number, T: number, C: number, OC: number): void;
}

/** The reference matmuls (any float array: the gradient check runs in float64). */
export const REFERENCE_MATMUL: MatmulOps<Floats> = { matmulForwardRef, matmulBackwardRef };
/** The fast CPU matmuls (float32), each checked against the reference (matmul.test.ts): what the reference mode and host-side evaluation run. */
export const CPU_MATMUL: MatmulOps<Float32Array> = { matmulForwardRef: matmulForwardCpu, matmulBackwardRef: matmulBackwardCpu };

/**
 * Reference forward (and, when `grads` is given, backward accumulating into it) of the mean
 * cross-entropy over the positions with target ≥ 0. Works on float32 or float64 arrays alike
 * (`alloc` decides the activations' type). Returns the loss and the logits (BT,V).
 */
export function transformerLossRef<F extends Floats>(
  params: TransformerParams<F>,
  inputs: Int32Array, // (B,T)
  targets: Int32Array | null, // (B,T); null: logits only
  dims: Dims,
  alloc: (n: number) => F,
  grads?: TransformerParams<F>,
  weights?: Floats, // (B,T) the gradient of each position's loss (DPO's signed weights); default 1/N over the N counted positions
  ops: MatmulOps<F> = REFERENCE_MATMUL,
): { loss: number; logits: F } {
  const { matmulForwardRef, matmulBackwardRef } = ops;
  const { B, T, C, V, NH, rope } = dims;
  const BT = B * T;
  const acts: BlockActs<F>[] = [];
  let x = alloc(BT * C); // (BT,C)
  embeddingForwardRef(x, inputs, params.wte, B, T, C);
  for (const w of params.blocks) {
    const a: BlockActs<F> = {
      x,
      ln1: alloc(BT * C),
      ln1Mean: alloc(BT),
      ln1Rstd: alloc(BT),
      qkv: alloc(BT * 3 * C),
      att: alloc(B * NH * T * T),
      atty: alloc(BT * C),
      x2: alloc(BT * C),
      ln2: alloc(BT * C),
      ln2Mean: alloc(BT),
      ln2Rstd: alloc(BT),
      fch: alloc(BT * 4 * C),
      fchGelu: alloc(BT * 4 * C),
    };
    const preatt = alloc(B * NH * T * T); // (B,NH,T,T) not needed by the backward
    const proj = alloc(BT * C); // (BT,C) attention projection, then MLP projection
    layernormForwardRef(a.ln1, a.ln1Mean, a.ln1Rstd, x, w.ln1w, w.ln1b, B, T, C);
    matmulForwardRef(a.qkv, a.ln1, w.qkvw, w.qkvb, B, T, C, 3 * C);
    attentionForwardRef(a.atty, preatt, a.att, a.qkv, B, T, C, NH, rope);
    matmulForwardRef(proj, a.atty, w.attprojw, w.attprojb, B, T, C, C);
    residualForwardRef(a.x2, x, proj, BT * C);
    layernormForwardRef(a.ln2, a.ln2Mean, a.ln2Rstd, a.x2, w.ln2w, w.ln2b, B, T, C);
    matmulForwardRef(a.fch, a.ln2, w.fcw, w.fcb, B, T, C, 4 * C);
    geluForwardRef(a.fchGelu, a.fch, BT * 4 * C);
    matmulForwardRef(proj, a.fchGelu, w.fcprojw, w.fcprojb, B, T, 4 * C, C);
    x = alloc(BT * C);
    residualForwardRef(x, a.x2, proj, BT * C);
    acts.push(a);
  }
  const lnf = alloc(BT * C); // (BT,C)
  const lnfMean = alloc(BT);
  const lnfRstd = alloc(BT);
  layernormForwardRef(lnf, lnfMean, lnfRstd, x, params.lnfw, params.lnfb, B, T, C);
  const logits = alloc(BT * V); // (BT,V) tied head: lnf · wteᵀ
  matmulForwardRef(logits, lnf, params.wte, null, B, T, C, V);
  if (!targets) return { loss: NaN, logits };
  const losses = alloc(BT); // (BT)
  const probs = alloc(BT * V); // (BT,V)
  crossEntropyForwardRef(losses, probs, logits, targets, B, T, V);
  const loss = meanLoss(losses, targets);
  if (!grads) return { loss, logits };

  // ---- backward: every *BackwardRef accumulates, so activation grads start at zero
  const counted = targets.reduce((n, t) => n + (t >= 0 ? 1 : 0), 0);
  const dlogits = alloc(BT * V); // (BT,V)
  crossEntropyBackwardRef(dlogits, weights ?? (counted ? 1 / counted : 0), probs, targets, B, T, V);
  const dlnf = alloc(BT * C); // (BT,C)
  matmulBackwardRef(dlnf, grads.wte, null, dlogits, lnf, params.wte, B, T, C, V);
  let dx = alloc(BT * C); // (BT,C) gradient of the residual stream
  layernormBackwardRef(dx, grads.lnfw, grads.lnfb, dlnf, x, params.lnfw, lnfMean, lnfRstd, B, T, C);
  for (let l = params.blocks.length - 1; l >= 0; l--) {
    const w = params.blocks[l]!;
    const g = grads.blocks[l]!;
    const a = acts[l]!;
    // x_out = x2 + proj(gelu(fch)): dx flows to x2 unchanged and into the MLP
    const dfchGelu = alloc(BT * 4 * C); // (BT,4C)
    matmulBackwardRef(dfchGelu, g.fcprojw, g.fcprojb, dx, a.fchGelu, w.fcprojw, B, T, 4 * C, C);
    const dfch = alloc(BT * 4 * C); // (BT,4C)
    geluBackwardRef(dfch, a.fch, dfchGelu, BT * 4 * C);
    const dln2 = alloc(BT * C); // (BT,C)
    matmulBackwardRef(dln2, g.fcw, g.fcb, dfch, a.ln2, w.fcw, B, T, C, 4 * C);
    const dx2 = dx; // (BT,C) += the MLP branch's
    layernormBackwardRef(dx2, g.ln2w, g.ln2b, dln2, a.x2, w.ln2w, a.ln2Mean, a.ln2Rstd, B, T, C);
    // x2 = x + proj(attention): likewise
    const datty = alloc(BT * C); // (BT,C)
    matmulBackwardRef(datty, g.attprojw, g.attprojb, dx2, a.atty, w.attprojw, B, T, C, C);
    const dqkv = alloc(BT * 3 * C); // (BT,3C)
    attentionBackwardRef(dqkv, datty, a.qkv, a.att, B, T, C, NH, rope);
    const dln1 = alloc(BT * C); // (BT,C)
    matmulBackwardRef(dln1, g.qkvw, g.qkvb, dqkv, a.ln1, w.qkvw, B, T, C, 3 * C);
    layernormBackwardRef(dx2, g.ln1w, g.ln1b, dln1, a.x, w.ln1w, a.ln1Mean, a.ln1Rstd, B, T, C);
    dx = dx2;
  }
  embeddingBackwardRef(grads.wte, dx, inputs, B, T, C);
  return { loss, logits };
}

// ---------------------------------------------------------------- the model

export type TransformerBackendMode = 'auto' | 'reference' | GpuMode;

export interface TransformerOptions {
  /** `reference`: plain TypeScript; a gpu.js mode forces it; `auto` (default): PEDIGREE_GPU_MODE (src/env.ts), else `createBackend()`'s pick, the best mode usable here. */
  mode?: TransformerBackendMode;
  /** Run on this backend instead of creating one (tests share backends); overrides `mode`. */
  backend?: Backend;
  /**
   * Reference mode: 2 splits each training batch in half between this thread and a worker thread
   * (parallel.ts), using two cores; 1 computes it all here. Only the rounding of the gradients'
   * sum differs. Default: PEDIGREE_TRAIN_THREADS (src/env.ts), else 2 on a machine with two cores.
   */
  threads?: 1 | 2;
  /** The host matmuls of the reference mode: `cpu` (default, matmul-cpu.ts) or `reference` (matmul.ts's, as before they were written: bench/train-step's baseline). */
  matmul?: 'cpu' | 'reference';
}

interface Slot {
  tensor: NamedTensor; // host copy of the parameter
  m: Float32Array; // host copy of AdamW's first moment
  v: Float32Array; // host copy of AdamW's second moment
  /** Matrices decay; biases and layernorm gains do not (nanoGPT's split). */
  decays: boolean;
}

/** Device-side state of one parameter on the gpu.js path. */
interface DeviceSlot {
  param: Tensor;
  m: Tensor;
  v: Tensor;
  grad: Tensor | null; // null: zero
}

export class TransformerModel implements Model {
  readonly backend: string;
  private readonly slots: Slot[];
  private readonly specs: ParamSpec[];
  private readonly dims: Omit<Dims, 'B' | 'T'>;
  // reference path: host gradients, in spec order
  private readonly grads: Float32Array[] | null = null;
  private readonly threads: 1 | 2 = 1;
  private readonly matmul: MatmulOps<Float32Array> = CPU_MATMUL;
  // gpu.js path
  private readonly be: Backend | null = null;
  private readonly ownsBackend: boolean = false;
  private dev: DeviceSlot[] = [];

  constructor(
    readonly config: ModelConfig,
    opts: TransformerOptions = {},
  ) {
    const { vocab: V, dModel: C, heads: NH } = config;
    if (C % NH !== 0) throw new Error(`dModel ${C} must be a multiple of heads ${NH}`);
    if ((C / NH) % 2 !== 0) throw new Error(`RoPE needs an even head size: dModel/heads = ${C / NH}`);
    this.dims = { C, V, NH, rope: { base: config.ropeBase } };
    this.specs = parameterSpecs(config);
    const init = initialWeights(config);
    this.slots = this.specs.map((s, i) => ({
      tensor: { name: s.name, shape: s.shape, data: init[i]! },
      m: new Float32Array(init[i]!.length),
      v: new Float32Array(init[i]!.length),
      decays: s.shape.length > 1,
    }));
    const mode = opts.backend ? opts.backend.mode : (opts.mode ?? 'auto');
    if (mode === 'reference') {
      this.threads = opts.threads ?? readTrainerEnv().threads;
      if (opts.matmul === 'reference') this.matmul = REFERENCE_MATMUL;
      this.backend = this.threads > 1 ? `reference (TypeScript, ${this.threads} threads)` : 'reference (TypeScript)';
      this.grads = this.slots.map((s) => new Float32Array(s.tensor.data.length));
    } else {
      this.be = opts.backend ?? createBackend({ mode: mode === 'auto' ? readTrainerEnv().gpuMode : mode });
      this.ownsBackend = !opts.backend;
      this.backend = `gpu.js ${this.be.mode}`;
      this.syncFromHost();
    }
  }

  parameters(): NamedTensor[] {
    return this.slots.map((s) => s.tensor);
  }

  optimizerState(): NamedTensor[] {
    return adamwState(this.slots);
  }

  /** The accumulated gradients, named like the parameters (read back from the device on the gpu.js path; zeros when none). */
  gradients(): NamedTensor[] {
    return this.slots.map((s, i) => {
      let data: Float32Array;
      if (this.grads) data = this.grads[i]!;
      else {
        const g = this.dev[i]!.grad;
        data = g ? Float32Array.from(this.be!.read(g)) : new Float32Array(s.tensor.data.length);
      }
      return { name: s.tensor.name, shape: s.tensor.shape, data };
    });
  }

  syncFromHost(): void {
    const be = this.be;
    if (!be) return;
    for (const d of this.dev) be.release(d.param, d.m, d.v, d.grad);
    this.dev = this.slots.map((s) => ({ param: be.upload(s.tensor.data), m: be.upload(s.m), v: be.upload(s.v), grad: null }));
  }

  syncToHost(): void {
    const be = this.be;
    if (!be) return;
    this.slots.forEach((s, i) => {
      const d = this.dev[i]!;
      s.tensor.data.set(be.read(d.param));
      s.m.set(be.read(d.m));
      s.v.set(be.read(d.v));
    });
  }

  forwardBackward(inputs: Int32Array, targets: Int32Array, B: number, T: number, weights?: Float32Array): number {
    checkTokens(inputs, targets, B, T, this.dims.V);
    if (weights && weights.length !== B * T) throw new Error(`weights must hold B·T = ${B * T} numbers, got ${weights.length}`);
    if (this.be) return this.runDevice(inputs, targets, B, T, true, weights).loss;
    const params = this.hostParams(this.slots.map((s) => s.tensor.data));
    const grads = this.hostParams(this.grads!);
    if (this.threads === 1 || B < 2) return transformerLossRef(params, inputs, targets, { ...this.dims, B, T }, (n) => new Float32Array(n), grads, weights, this.matmul).loss;
    // Two halves of the batch at once: the worker's rows after ours. Each position's loss
    // gradient is what the whole batch gives it (1/N over all N counted positions by default).
    const counted = targets.reduce((n, t) => n + (t >= 0 ? 1 : 0), 0);
    const w = weights ?? targets.reduce((a, t, i) => ((a[i] = t >= 0 ? 1 / counted : 0), a), new Float32Array(B * T));
    const mineB = Math.ceil(B / 2);
    const cut = mineB * T;
    const worker = partWorker();
    const { vocab, dModel, heads, layers, ropeBase } = this.config;
    const matmul = this.matmul === CPU_MATMUL ? 'cpu' : 'reference';
    worker.start({ model: { vocab, dModel, heads, layers, ropeBase }, matmul, params: this.slots.map((s) => s.tensor.data), inputs: inputs.slice(cut), targets: targets.slice(cut), weights: w.slice(cut), B: B - mineB, T });
    const mine = transformerLossRef(params, inputs.subarray(0, cut), targets.subarray(0, cut), { ...this.dims, B: mineB, T }, (n) => new Float32Array(n), grads, w.subarray(0, cut), this.matmul);
    const theirs = worker.wait();
    theirs.grads.forEach((g, i) => {
      const into = this.grads![i]!;
      for (let j = 0; j < g.length; j++) into[j] = into[j]! + g[j]!;
    });
    const mineCounted = counted - theirs.counted;
    return ((mineCounted ? mine.loss * mineCounted : 0) + (theirs.counted ? theirs.loss * theirs.counted : 0)) / counted;
  }

  evaluate(inputs: Int32Array, targets: Int32Array, B: number, T: number): number {
    checkTokens(inputs, targets, B, T, this.dims.V);
    if (this.be) return this.runDevice(inputs, targets, B, T, false).loss;
    return transformerLossRef(this.hostParams(this.slots.map((s) => s.tensor.data)), inputs, targets, { ...this.dims, B, T }, (n) => new Float32Array(n), undefined, undefined, CPU_MATMUL).loss;
  }

  /** Logits (B,T,V) for any T (RoPE: no table limits the length), without touching the gradients. */
  logits(inputs: Int32Array, B: number, T: number): Float32Array {
    checkTokens(inputs, null, B, T, this.dims.V);
    if (this.be) return this.runDevice(inputs, null, B, T, false).logits!;
    return transformerLossRef(this.hostParams(this.slots.map((s) => s.tensor.data)), inputs, null, { ...this.dims, B, T }, (n) => new Float32Array(n), undefined, undefined, CPU_MATMUL).logits;
  }

  step(lr: number, t: number, optimizer: OptimizerConfig): number {
    const cfg = (s: Slot): AdamWConfig => ({ lr, beta1: optimizer.beta1, beta2: optimizer.beta2, eps: optimizer.eps, weightDecay: s.decays ? optimizer.weightDecay : 0 });
    if (!this.be) {
      const grads = this.grads!;
      const norm = globalNormRef(grads);
      const scale = clipScale(norm, optimizer.gradClip);
      this.slots.forEach((s, i) => {
        adamwRef(s.tensor.data, grads[i]!, s.m, s.v, s.tensor.data.length, t, cfg(s), scale);
        grads[i]!.fill(0);
      });
      return norm;
    }
    const be = this.be;
    const present = this.dev.map((d, i) => ({ tensor: d.grad, size: this.slots[i]!.tensor.data.length })).filter((g): g is { tensor: Tensor; size: number } => g.tensor !== null);
    const { norm, scale } = clipGradients(be, present, optimizer.gradClip);
    this.dev.forEach((d, i) => {
      const s = this.slots[i]!;
      const N = s.tensor.data.length;
      const grad = d.grad ?? new Float32Array(N); // a parameter no batch reached: AdamW still decays it
      const next = adamwUpdate(be, { param: d.param, m: d.m, v: d.v }, grad, N, t, cfg(s), scale);
      be.release(d.param, d.m, d.v, d.grad);
      this.dev[i] = { ...next, grad: null };
    });
    return norm;
  }

  /** Frees the device tensors (and the backend, when the model created it). */
  destroy(): void {
    if (!this.be) return;
    for (const d of this.dev) this.be.release(d.param, d.m, d.v, d.grad);
    this.dev = [];
    if (this.ownsBackend) this.be.destroy();
  }

  private hostParams<F>(arrays: F[]): TransformerParams<F> {
    return buildParams(this.specs, this.config.layers, (_, i) => arrays[i]!);
  }

  /**
   * The gpu.js forward (and backward when `train`): every intermediate is released before
   * returning; gradients accumulate into the device slots. Reads back only the per-position
   * losses (and the logits when there are no targets).
   */
  private runDevice(inputs: Int32Array, targets: Int32Array | null, B: number, T: number, train: boolean, weights?: Float32Array): { loss: number; logits: Float32Array | null } {
    const be = this.be!;
    const { C, V, NH, rope } = this.dims;
    const BT = B * T;
    const p = buildParams(this.specs, this.config.layers, (_, i) => this.dev[i]!.param);
    const dead: Tensor[] = []; // everything this call creates and does not hand to a slot
    const keep = <X extends Tensor>(t: X): X => (dead.push(t), t);
    try {
      const acts: { x: Tensor; ln1: ReturnType<typeof layernormForward>; qkv: Tensor; att: Tensor; qkvr: Tensor; atty: Tensor; x2: Tensor; ln2: ReturnType<typeof layernormForward>; fch: Tensor; fchGelu: Tensor }[] = [];
      let x = keep(embeddingForward(be, inputs, p.wte, B, T, C)); // (BT,C)
      for (const w of p.blocks) {
        const ln1 = layernormForward(be, x, w.ln1w, w.ln1b, B, T, C); // (BT,C), mean/rstd (BT)
        keep(ln1.out), keep(ln1.mean), keep(ln1.rstd);
        const qkv = keep(matmulForward(be, ln1.out, w.qkvw, w.qkvb, B, T, C, 3 * C)); // (BT,3C)
        const attn = attentionForward(be, qkv, B, T, C, NH, rope); // out (BT,C), att (B,NH,T,T), qkvr (3,B,NH,T,HS)
        keep(attn.out), keep(attn.att), keep(attn.qkvr);
        const proj = keep(matmulForward(be, attn.out, w.attprojw, w.attprojb, B, T, C, C)); // (BT,C)
        const x2 = keep(residualForward(be, x, proj, BT * C)); // (BT,C)
        const ln2 = layernormForward(be, x2, w.ln2w, w.ln2b, B, T, C);
        keep(ln2.out), keep(ln2.mean), keep(ln2.rstd);
        const fch = keep(matmulForward(be, ln2.out, w.fcw, w.fcb, B, T, C, 4 * C)); // (BT,4C)
        const fchGelu = keep(geluForward(be, fch, BT * 4 * C)); // (BT,4C)
        const mlp = keep(matmulForward(be, fchGelu, w.fcprojw, w.fcprojb, B, T, 4 * C, C)); // (BT,C)
        acts.push({ x, ln1, qkv, att: attn.att, qkvr: attn.qkvr, atty: attn.out, x2, ln2, fch, fchGelu });
        x = keep(residualForward(be, x2, mlp, BT * C)); // (BT,C)
      }
      const lnf = layernormForward(be, x, p.lnfw, p.lnfb, B, T, C); // (BT,C)
      keep(lnf.out), keep(lnf.mean), keep(lnf.rstd);
      const logits = keep(matmulForward(be, lnf.out, p.wte, null, B, T, C, V)); // (BT,V)
      if (!targets) return { loss: NaN, logits: Float32Array.from(be.read(logits)) };
      const ce = crossEntropyForward(be, logits, targets, B, T, V); // losses (BT), probs (BT,V)
      keep(ce.losses), keep(ce.probs);
      const loss = meanLoss(be.read(ce.losses), targets);
      if (!train) return { loss, logits: null };

      // ---- backward
      const counted = targets.reduce((n, t) => n + (t >= 0 ? 1 : 0), 0);
      const dlogits = keep(crossEntropyBackward(be, ce.probs, targets, weights ?? (counted ? 1 / counted : 0), B, T, V)); // (BT,V)
      const head = matmulBackward(be, dlogits, lnf.out, p.wte, B, T, C, V, { bias: false }); // dlnf (BT,C), dwte (V,C)
      keep(head.dinp!);
      const dwteHead = head.dweight;
      const lnfG = layernormBackward(be, head.dinp!, x, p.lnfw, lnf.mean, lnf.rstd, B, T, C);
      this.accumulate(this.specs.length - 2, lnfG.dweight);
      this.accumulate(this.specs.length - 1, lnfG.dbias);
      let dx = keep(lnfG.dinp); // (BT,C)
      const base = (l: number) => 1 + l * BLOCK_KEYS.length;
      const slot = (l: number, k: BlockKey) => base(l) + BLOCK_KEYS.indexOf(k);
      for (let l = p.blocks.length - 1; l >= 0; l--) {
        const w = p.blocks[l]!;
        const a = acts[l]!;
        // MLP: the projection's backward returns d(fch) directly (fused GELU gradient)
        const proj2 = matmulBackward(be, dx, a.fchGelu, w.fcprojw, B, T, 4 * C, C, { inputGeluOf: a.fch }); // dfch (BT,4C)
        keep(proj2.dinp!);
        this.accumulate(slot(l, 'fcprojw'), proj2.dweight);
        this.accumulate(slot(l, 'fcprojb'), proj2.dbias!);
        const fc = matmulBackward(be, proj2.dinp!, a.ln2.out, w.fcw, B, T, C, 4 * C); // dln2 (BT,C)
        keep(fc.dinp!);
        this.accumulate(slot(l, 'fcw'), fc.dweight);
        this.accumulate(slot(l, 'fcb'), fc.dbias!);
        const ln2G = layernormBackward(be, fc.dinp!, a.x2, w.ln2w, a.ln2.mean, a.ln2.rstd, B, T, C);
        keep(ln2G.dinp);
        this.accumulate(slot(l, 'ln2w'), ln2G.dweight);
        this.accumulate(slot(l, 'ln2b'), ln2G.dbias);
        const dx2 = keep(residualForward(be, dx, ln2G.dinp, BT * C)); // (BT,C)
        // attention
        const ap = matmulBackward(be, dx2, a.atty, w.attprojw, B, T, C, C); // datty (BT,C)
        keep(ap.dinp!);
        this.accumulate(slot(l, 'attprojw'), ap.dweight);
        this.accumulate(slot(l, 'attprojb'), ap.dbias!);
        const dqkv = keep(attentionBackward(be, ap.dinp!, a.qkvr, a.att, B, T, C, NH, rope)); // (BT,3C)
        const qk = matmulBackward(be, dqkv, a.ln1.out, w.qkvw, B, T, C, 3 * C); // dln1 (BT,C)
        keep(qk.dinp!);
        this.accumulate(slot(l, 'qkvw'), qk.dweight);
        this.accumulate(slot(l, 'qkvb'), qk.dbias!);
        const ln1G = layernormBackward(be, qk.dinp!, a.x, w.ln1w, a.ln1.mean, a.ln1.rstd, B, T, C);
        keep(ln1G.dinp);
        this.accumulate(slot(l, 'ln1w'), ln1G.dweight);
        this.accumulate(slot(l, 'ln1b'), ln1G.dbias);
        dx = keep(residualForward(be, dx2, ln1G.dinp, BT * C));
      }
      const dwteEmb = embeddingBackward(be, dx, inputs, B, T, C, V); // (V,C)
      this.accumulate(0, dwteHead);
      this.accumulate(0, dwteEmb);
      return { loss, logits: null };
    } finally {
      be.release(...dead);
    }
  }

  /** grad[i] += g on the device (takes ownership of g). */
  private accumulate(i: number, g: Tensor): void {
    const be = this.be!;
    const d = this.dev[i]!;
    if (!d.grad) {
      d.grad = g;
      return;
    }
    const sum = residualForward(be, d.grad, g, this.slots[i]!.tensor.data.length);
    be.release(d.grad, g);
    d.grad = sum;
  }
}
