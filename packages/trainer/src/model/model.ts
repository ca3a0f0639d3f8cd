import type { ModelConfig, OptimizerConfig } from '../config.ts';

/**
 * What the training loop needs from a model. The plain-TypeScript bigram
 * (reference-model.ts) implements it today; the gpu.js transformer
 * implements the same interface, and the loop, checkpoints, resume and fork
 * work for both unchanged.
 *
 * Legend: B = batch, T = time (context), C = channels (dModel), V = vocab.
 */
export interface NamedTensor {
  name: string;
  shape: number[];
  data: Float32Array; // row-major, prod(shape) elements
}

export interface Model {
  readonly config: ModelConfig;
  /** What runs the kernels, for the run's environment: "reference (TypeScript)", "gpu.js gpu", "gpu.js cpu". */
  readonly backend: string;
  /**
   * The learnable weights, in a fixed order, as views onto the model's own
   * memory: a checkpoint is saved from them, and a load writes into them and
   * then calls `syncFromHost()`.
   */
  parameters(): NamedTensor[];
  /** Optimizer state (AdamW first and second moments), likewise views; saved with the weights so that a resume continues exactly. */
  optimizerState(): NamedTensor[];
  /** After parameters() / optimizerState() were written to on the host (a load): copy them to wherever the kernels read them. Optional. */
  syncFromHost?(): void;
  /** Before parameters() / optimizerState() are read on the host (a save): bring them back from the device. Optional. */
  syncToHost?(): void;
  /**
   * Forward and backward over one batch: inputs and targets are (B, T) token
   * ids; returns the mean cross-entropy loss and leaves the gradients
   * accumulated for `step`. `weights` (B,T), where a model supports them,
   * replace each counted position's gradient scale 1/N (SFT masks with
   * target −1; DPO passes signed weights).
   */
  forwardBackward(inputs: Int32Array, targets: Int32Array, B: number, T: number, weights?: Float32Array): number;
  /** Logits (B,T,V) without touching the gradients; for sampling and evals. Optional: the bigram has none. */
  logits?(inputs: Int32Array, B: number, T: number): Float32Array;
  /** Mean cross-entropy over (B, T) without touching the gradients (held-out loss). */
  evaluate(inputs: Int32Array, targets: Int32Array, B: number, T: number): number;
  /**
   * One AdamW update with learning rate `lr`; `t` counts updates from 1 (bias
   * correction). Clips the gradient to `gradClip` global norm first, zeroes
   * the gradients after. Returns the gradient's norm before clipping.
   */
  step(lr: number, t: number, optimizer: OptimizerConfig): number;
  /** Frees what the model holds on a device (GL textures). Optional. */
  destroy?(): void;
}

/** AdamW's moments of each parameter, named as checkpoints store them (`adamw.m.<name>`, `adamw.v.<name>`). */
export function adamwState(slots: readonly { tensor: NamedTensor; m: Float32Array; v: Float32Array }[]): NamedTensor[] {
  return slots.flatMap((s) => [
    { name: `adamw.m.${s.tensor.name}`, shape: s.tensor.shape, data: s.m },
    { name: `adamw.v.${s.tensor.name}`, shape: s.tensor.shape, data: s.v },
  ]);
}

export function parameterCount(model: Pick<Model, 'parameters'>): number {
  return model.parameters().reduce((n, p) => n + p.data.length, 0);
}
