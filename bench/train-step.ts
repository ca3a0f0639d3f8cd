/**
 * One training step (forward + backward + AdamW, global-norm clip 1) of the toy transformer,
 * in tokens/s (B·T tokens a step):
 *   - `TransformerModel` (packages/trainer/src/model/transformer.ts) on every gpu.js mode this machine
 *     has (headlessgl gets a display from `startVirtualDisplay()`), and on its reference path
 *     (plain TypeScript);
 *   - the baseline: the same network written with TensorFlow.js on its WebAssembly backend (SIMD,
 *     one thread in Node): token embedding, pre-LN blocks with causal self-attention with RoPE
 *     (half-split), tanh-GELU MLP, final LN, tied head, softmax cross-entropy; gradients from
 *     `tf.variableGrads`, the same global-norm clip, then `tf.train.adam` plus decoupled weight
 *     decay on the matrices (AdamW).
 * Size (the issue's): 4 layers, d_model 128, 4 heads, context 256, batch 16, vocab 256;
 * --quick: 2 layers, d_model 64, context 64, batch 8. The trainer's kernels keep every tensor at
 * ≤ 2^21 elements (MAX_FLAT): when B·T·V or B·NH·T·T (the attention matrix) is over, the batch
 * is halved until it fits, and the size used is printed.
 * Each path: one warmup step (kernel compilation), then timed steps (a time budget, 2 to 7 of
 * them; one when the warmup step took over 20 s); the figure is the median. At full size
 * gpu.js cpu is skipped (minutes a step). The gpu.js steps end with `sync()` (headlessgl: the GPU queue
 * drained). The ratio printed is the best gpu.js mode over tfjs-wasm (target ≥ 1).
 * Needs no database.
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import {
  Backend,
  MAX_FLAT,
  RECIPE_PRESETS,
  TOY,
  ModelConfigSchema,
  OptimizerConfigSchema,
  probeModes,
  startVirtualDisplay,
  TransformerModel,
  type ModelConfig,
  type OptimizerConfig,
} from '@pedigree/trainer';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fmtInt, fmtMs, fmtRatio, rng, summarize, targetLine, type BenchContext, type Benchmark, type Figure } from './lib.ts';

// tfjs-core's Node bundle registers no gradients (the tfjs union package does, which is not
// installed); its ESM build's registration loads through tsx's require (directory imports).
// The registries are process-global, so the bundle's engine sees them.
createRequire(import.meta.url)('@tensorflow/tfjs-core/dist/register_all_gradients.js');

/**
 * A display for headlessgl, shared by the benchmarks for the rest of the process: started once
 * (`startVirtualDisplay()`), never stopped here (the Xvfb dies with the process). Stopping it
 * between benchmarks is fatal: gpu.js keeps a static GL context from its feature check, and Xlib
 * aborts the process (XIO error) once that context's server is gone. A DISPLAY whose X server is
 * already gone is dropped first, so that a fresh one is started.
 */
export async function sharedDisplay(): Promise<void> {
  const m = /^:(\d+)$/.exec(process.env.DISPLAY ?? '');
  if (m && !existsSync(`/tmp/.X11-unix/X${m[1]}`)) delete process.env.DISPLAY;
  await startVirtualDisplay();
}

export interface StepSize {
  layers: number;
  dModel: number;
  heads: number;
  context: number;
  batch: number;
  vocab: number;
}

export const SIZES: { quick: StepSize; full: StepSize } = {
  quick: { layers: 2, dModel: 64, heads: 4, context: 64, batch: 8, vocab: 256 },
  full: { layers: 4, dModel: 128, heads: 4, context: 256, batch: 16, vocab: 256 },
};
/** Timed work per path after the warmup: at least 2, at most 7 steps. */
const BUDGET_MS = { quick: 2_000, full: 15_000 };

/** The largest batch ≤ size.batch whose tensors fit the kernels' limit (B·T·V and B·NH·T·T ≤ MAX_FLAT), and why it was cut. */
export function fitSize(size: StepSize): { size: StepSize; note: string | null } {
  const over = (b: number) => {
    const why: string[] = [];
    if (b * size.context * size.vocab > MAX_FLAT) why.push(`B·T·V = ${fmtInt(b * size.context * size.vocab)}`);
    if (b * size.heads * size.context ** 2 > MAX_FLAT) why.push(`B·NH·T·T = ${fmtInt(b * size.heads * size.context ** 2)}`);
    return why;
  };
  const first = over(size.batch);
  if (!first.length) return { size, note: null };
  let b = size.batch;
  while (b > 1 && over(b).length) b = Math.floor(b / 2);
  if (over(b).length) throw new Error(`even batch 1 exceeds the kernels' limit of ${fmtInt(MAX_FLAT)} elements (${over(b).join(', ')})`);
  return { size: { ...size, batch: b }, note: `batch ${size.batch} exceeds the kernels' limit of 2^21 = ${fmtInt(MAX_FLAT)} elements (${first.join(', ')}); using batch ${b}` };
}

export function describeSize(s: StepSize): string {
  return `${s.layers} layers, d_model ${s.dModel}, ${s.heads} heads, context ${s.context}, batch ${s.batch}, vocab ${s.vocab}`;
}

export function modelConfig(s: StepSize): ModelConfig {
  return ModelConfigSchema.parse({ arch: 'transformer', vocab: s.vocab, layers: s.layers, dModel: s.dModel, heads: s.heads, context: s.context });
}

/** Random (inputs, targets) batches of token ids. */
export function batches(s: StepSize, seed: number): () => { inputs: Int32Array; targets: Int32Array } {
  const rand = rng(seed);
  const n = s.batch * s.context;
  return () => {
    const inputs = new Int32Array(n);
    const targets = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      inputs[i] = Math.floor(rand() * s.vocab);
      targets[i] = Math.floor(rand() * s.vocab);
    }
    return { inputs, targets };
  };
}

interface Path {
  label: string;
  isGpuJs: boolean;
  /** One full training step; returns the loss. */
  step(inputs: Int32Array, targets: Int32Array): number;
  dispose(): void;
}

export const trainStep: Benchmark = {
  name: 'train-step',
  description: 'transformer training step (fwd+bwd+AdamW) tokens/s per gpu.js mode vs TensorFlow.js wasm and plain TypeScript',
  async run(ctx: BenchContext): Promise<Figure[]> {
    const asked = ctx.quick ? SIZES.quick : SIZES.full;
    const { size, note } = fitSize(asked);
    if (note) ctx.log(`NOTE: ${note}`);
    ctx.log(`size used: ${describeSize(size)} (${fmtInt(size.batch * size.context)} tokens a step)`);
    const budget = ctx.quick ? BUDGET_MS.quick : BUDGET_MS.full;
    await sharedDisplay();
    const probes = probeModes();
    for (const p of probes) ctx.log(`gpu.js ${p.mode}: ${p.available ? `available (${p.detail})` : `NOT available: ${p.detail}`}`);
    await tf.setBackend('wasm');
    await tf.ready();
    ctx.log(`tfjs ${tf.version_core} backend ${tf.getBackend()}: SIMD ${tf.env().getBool('WASM_HAS_SIMD_SUPPORT')}, threads ${tf.env().getBool('WASM_HAS_MULTITHREAD_SUPPORT')}`);

    const config = modelConfig(size);
    const opt = OptimizerConfigSchema.parse({});
    const tokens = size.batch * size.context;
    const figures: Figure[] = [];
    const rates = new Map<string, number>();
    const makers: { label: string; isGpuJs: boolean; make(): Path }[] = [
      ...probes
        .filter((p) => p.available)
        .map((p) => ({ label: `gpu.js ${p.mode}`, isGpuJs: true, make: () => gpuJsPath(new Backend(p.mode, p.detail), config, size, opt) })),
      { label: 'reference, 1 thread', isGpuJs: false, make: () => referencePath(config, size, opt, { threads: 1 }) },
      { label: 'reference, 2 threads', isGpuJs: false, make: () => referencePath(config, size, opt, { threads: 2 }) },
      { label: 'tfjs-wasm (SIMD, 1 thread)', isGpuJs: false, make: () => tfjsPath(size, opt) },
    ];
    {
      for (const m of makers) {
        if (!ctx.quick && m.label === 'gpu.js cpu') {
          ctx.log(`${m.label}: skipped at full size (the slowest path: ~4× the reference's step time at --quick; minutes a step here)`);
          figures.push({ bench: 'train-step', what: m.label, value: 'skipped', note: 'full size: minutes a step' });
          continue;
        }
        let path: Path | null = null;
        try {
          path = m.make();
          const next = batches(size, 42);
          const warm = next();
          const t0 = performance.now();
          const loss0 = path.step(warm.inputs, warm.targets);
          const warmMs = performance.now() - t0;
          if (!Number.isFinite(loss0)) throw new Error(`loss ${loss0} after the first step`);
          const samples: number[] = [];
          let loss = loss0;
          let spent = 0;
          const minReps = warmMs > 20_000 ? 1 : 2; // a path that takes >20 s a step gets one timed step
          while (samples.length < 7 && (samples.length < minReps || spent < budget)) {
            const { inputs, targets } = next();
            const t = performance.now();
            loss = path.step(inputs, targets);
            const ms = performance.now() - t;
            samples.push(ms);
            spent += ms;
          }
          const meas = summarize(samples);
          const rate = (tokens * 1000) / meas.median;
          rates.set(m.label, rate);
          const gflops = stepFlops(size) / meas.median / 1e6;
          ctx.log(
            `${m.label.padEnd(30)} ${fmtInt(rate).padStart(8)} tokens/s  ${gflops.toFixed(2)} GFLOP/s  step ${fmtMs(meas.median)} (min ${fmtMs(meas.min)}, max ${fmtMs(meas.max)}, n=${samples.length}; warmup ${fmtMs(warmMs)}; loss ${loss0.toFixed(3)} → ${loss.toFixed(3)})`,
          );
          figures.push({ bench: 'train-step', what: m.label, value: `${fmtInt(rate)} tokens/s`, note: `${gflops.toFixed(2)} GFLOP/s effective; median step ${fmtMs(meas.median)}, n=${samples.length}` });
        } catch (err) {
          ctx.log(`${m.label}: FAILED: ${(err as Error).message}`);
          figures.push({ bench: 'train-step', what: m.label, value: 'failed', note: (err as Error).message.slice(0, 80) });
        } finally {
          path?.dispose();
        }
      }
      const tfjs = rates.get('tfjs-wasm (SIMD, 1 thread)');
      const best = makers.filter((m) => m.isGpuJs && rates.has(m.label)).map((m) => [m.label, rates.get(m.label)!] as const).reduce<readonly [string, number] | null>((x, y) => (!x || y[1] > x[1] ? y : x), null);
      if (tfjs && best) {
        const ratio = best[1] / tfjs;
        ctx.log(`best gpu.js: ${best[0]}, ${fmtInt(best[1])} tokens/s = ${targetLine(ratio, 1, ' × tfjs-wasm')}`);
        figures.push({ bench: 'train-step', what: 'best gpu.js / tfjs-wasm', value: fmtRatio(ratio), note: `${best[0]}; ${describeSize(size)}; target ≥ 1: ${ratio >= 1 ? 'MET' : 'NOT MET'}` });
      }
      const fastest = [...rates].filter(([label]) => !label.startsWith('tfjs')).reduce<readonly [string, number] | null>((x, y) => (!x || y[1] > x[1] ? y : x), null);
      if (tfjs && fastest) {
        const ratio = fastest[1] / tfjs;
        ctx.log(`best path: ${fastest[0]}, ${fmtInt(fastest[1])} tokens/s = ${targetLine(ratio, 1, ' × tfjs-wasm (1 thread)')}`);
        figures.push({ bench: 'train-step', what: 'best path / tfjs-wasm', value: fmtRatio(ratio), note: `${fastest[0]}; target ≥ 1: ${ratio >= 1 ? 'MET' : 'NOT MET'}` });
      }
    }
    const matmul = tfjsMatmulGflops(512);
    ctx.log(`tfjs-wasm matmul at n = 512: ${matmul.toFixed(2)} GFLOP/s (2n³ flops, median of 5), beside the effective GFLOP/s above (a step counted as 6N + 12·L·T·C flops a token: N the matmul weights, the tied head included)`);
    figures.push({ bench: 'train-step', what: 'tfjs-wasm matmul n=512', value: `${matmul.toFixed(2)} GFLOP/s`, note: 'what the same machine does on one big matmul, for scale' });
    figures.push(...recipeSize(ctx, opt));
    return figures;
  },
};

/** Flops of one training step, the usual count: 6N + 12·L·T·C a token (N: the matmul weights, tied head included). */
export function stepFlops(s: StepSize): number {
  const N = s.layers * 12 * s.dModel * s.dModel + s.vocab * s.dModel;
  return s.batch * s.context * (6 * N + 12 * s.layers * s.context * s.dModel);
}

/** tf.matMul of two n×n matrices on the wasm backend, GFLOP/s (median of 5 after one warmup). */
function tfjsMatmulGflops(n: number): number {
  const a = tf.randomNormal([n, n]);
  const b = tf.randomNormal([n, n]);
  const times: number[] = [];
  for (let i = 0; i < 6; i++) {
    const t0 = performance.now();
    const c = tf.matMul(a, b);
    c.dataSync();
    const ms = performance.now() - t0;
    c.dispose();
    if (i > 0) times.push(ms);
  }
  a.dispose();
  b.dispose();
  return (2 * n ** 3) / summarize(times).median / 1e6;
}

/**
 * The `demo --full` pretraining size (RECIPE_PRESETS.full, TOY): the reference mode as it was
 * before issue 15's speed-up (reference matmuls, one thread) against today's (CPU matmuls, one and
 * two threads), in turns, several rounds; the target is ≥ 3× in tokens/s.
 */
function recipeSize(ctx: BenchContext, opt: OptimizerConfig): Figure[] {
  const preset = RECIPE_PRESETS.full;
  const size: StepSize = { ...preset.model, context: TOY.pretrainContext, batch: preset.pretrain.batch };
  ctx.log(`--full pretraining size: ${describeSize(size)}`);
  const config = modelConfig(size);
  const paths = [
    { label: 'before (reference matmuls, 1 thread)', path: referencePath(config, size, opt, { threads: 1, matmul: 'reference' }) },
    { label: 'CPU matmuls, 1 thread', path: referencePath(config, size, opt, { threads: 1 }) },
    { label: 'CPU matmuls, 2 threads', path: referencePath(config, size, opt, { threads: 2 }) },
  ];
  const next = batches(size, 7);
  const samples = paths.map(() => [] as number[]);
  for (const p of paths) p.path.step(next().inputs, next().targets); // warmup
  const rounds = ctx.quick ? 3 : 6;
  for (let r = 0; r < rounds; r++) {
    paths.forEach((p, i) => {
      const { inputs, targets } = next();
      const t0 = performance.now();
      for (let k = 0; k < 3; k++) p.path.step(inputs, targets);
      samples[i]!.push((performance.now() - t0) / 3);
    });
  }
  const tokens = size.batch * size.context;
  const rates = samples.map((s) => (tokens * 1000) / summarize(s).median);
  const figures: Figure[] = [];
  paths.forEach((p, i) => {
    ctx.log(`  ${p.label.padEnd(38)} ${fmtInt(rates[i]!).padStart(8)} tokens/s  ${(stepFlops(size) / summarize(samples[i]!).median / 1e6).toFixed(2)} GFLOP/s  (median step ${fmtMs(summarize(samples[i]!).median)}, ${rounds} rounds of 3 steps, in turns)`);
    figures.push({ bench: 'train-step', what: `--full pretraining size: ${p.label}`, value: `${fmtInt(rates[i]!)} tokens/s`, note: `median step ${fmtMs(summarize(samples[i]!).median)}` });
    p.path.dispose();
  });
  const ratio = rates[2]! / rates[0]!;
  ctx.log(`  today / before: ${targetLine(ratio, 3, '')}`);
  figures.push({ bench: 'train-step', what: '--full pretraining size: today / before', value: fmtRatio(ratio), note: `2 threads, CPU matmuls vs reference matmuls, 1 thread; target ≥ 3: ${ratio >= 3 ? 'MET' : 'NOT MET'}` });
  return figures;
}

function gpuJsPath(be: Backend, config: ModelConfig, size: StepSize, opt: OptimizerConfig): Path {
  const model = new TransformerModel(config, { backend: be });
  let t = 0;
  return {
    label: `gpu.js ${be.mode}`,
    isGpuJs: true,
    step(inputs, targets) {
      const loss = model.forwardBackward(inputs, targets, size.batch, size.context);
      model.step(opt.lr, ++t, opt);
      be.sync();
      return loss;
    },
    dispose() {
      model.destroy();
      be.destroy();
    },
  };
}

function referencePath(config: ModelConfig, size: StepSize, opt: OptimizerConfig, how: { threads: 1 | 2; matmul?: 'cpu' | 'reference' }): Path {
  const model = new TransformerModel(config, { mode: 'reference', ...how });
  let t = 0;
  return {
    label: 'reference',
    isGpuJs: false,
    step(inputs, targets) {
      const loss = model.forwardBackward(inputs, targets, size.batch, size.context);
      model.step(opt.lr, ++t, opt);
      return loss;
    },
    dispose() {},
  };
}

// ---------------------------------------------------------------- the tfjs baseline

let tfjsModels = 0;

/**
 * The same network in TensorFlow.js. Matrices are stored input-major, (C, OC), so that every
 * product is a plain A·B (tfjs-wasm's A·Bᵀ path is much slower); the tied head is lnf · wteᵀ.
 */
function tfjsPath(s: StepSize, opt: OptimizerConfig): Path {
  const { batch: B, context: T, dModel: C, heads: NH, vocab: V, layers: L } = s;
  const HS = C / NH;
  const half = HS / 2;
  const id = `tfstep${tfjsModels++}`;
  const vars: tf.Variable[] = [];
  const decays = new Set<string>();
  let seed = 1337;
  const param = (name: string, shape: number[], init: 'normal' | 'residual' | 'zeros' | 'ones'): tf.Variable => {
    const value = tf.tidy(() =>
      init === 'zeros' ? tf.zeros(shape) : init === 'ones' ? tf.ones(shape) : tf.randomNormal(shape, 0, init === 'normal' ? 0.02 : 0.02 / Math.sqrt(2 * L), 'float32', seed++),
    );
    const v = tf.variable(value, true, `${id}.${name}`);
    value.dispose();
    vars.push(v);
    if (shape.length > 1) decays.add(v.name);
    return v;
  };
  const wte = param('wte', [V, C], 'normal');
  const blocks = Array.from({ length: L }, (_, l) => ({
    ln1w: param(`h${l}.ln1w`, [C], 'ones'),
    ln1b: param(`h${l}.ln1b`, [C], 'zeros'),
    qkvw: param(`h${l}.qkvw`, [C, 3 * C], 'normal'),
    qkvb: param(`h${l}.qkvb`, [3 * C], 'zeros'),
    attprojw: param(`h${l}.attprojw`, [C, C], 'residual'),
    attprojb: param(`h${l}.attprojb`, [C], 'zeros'),
    ln2w: param(`h${l}.ln2w`, [C], 'ones'),
    ln2b: param(`h${l}.ln2b`, [C], 'zeros'),
    fcw: param(`h${l}.fcw`, [C, 4 * C], 'normal'),
    fcb: param(`h${l}.fcb`, [4 * C], 'zeros'),
    fcprojw: param(`h${l}.fcprojw`, [4 * C, C], 'residual'),
    fcprojb: param(`h${l}.fcprojb`, [C], 'zeros'),
  }));
  const lnfw = param('lnfw', [C], 'ones');
  const lnfb = param('lnfb', [C], 'zeros');

  // Constants: RoPE cos/sin (T, HS/2) as in packages/trainer/src/kernels/rope.ts, and the causal mask (T, T).
  const cosv = new Float32Array(T * half);
  const sinv = new Float32Array(T * half);
  const ropeBase = 500; // ModelConfig's default, as TransformerModel uses
  for (let t = 0; t < T; t++) {
    for (let i = 0; i < half; i++) {
      const theta = t * ropeBase ** ((-2 * i) / HS);
      cosv[t * half + i] = Math.cos(theta);
      sinv[t * half + i] = Math.sin(theta);
    }
  }
  const maskv = new Float32Array(T * T);
  for (let i = 0; i < T; i++) for (let j = i + 1; j < T; j++) maskv[i * T + j] = -1e9;
  const cos = tf.tensor2d(cosv, [T, half]);
  const sin = tf.tensor2d(sinv, [T, half]);
  const mask = tf.tensor2d(maskv, [T, T]);
  const scale = tf.scalar(1 / Math.sqrt(HS));

  const layernorm = (x: tf.Tensor, w: tf.Variable, b: tf.Variable): tf.Tensor2D => {
    const { mean, variance } = tf.moments(x, -1, true);
    return tf.add(tf.mul(tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, 1e-5))), w), b) as tf.Tensor2D;
  };
  const gelu = (x: tf.Tensor): tf.Tensor => tf.mul(tf.mul(x, 0.5), tf.add(1, tf.tanh(tf.mul(tf.add(x, tf.mul(tf.pow(x, 3), 0.044715)), Math.sqrt(2 / Math.PI)))));
  // x (B·NH, T, HS): the half-split rotation.
  const rope = (x: tf.Tensor3D): tf.Tensor3D => {
    const x1 = tf.slice(x, [0, 0, 0], [-1, -1, half]);
    const x2 = tf.slice(x, [0, 0, half], [-1, -1, half]);
    return tf.concat([tf.sub(tf.mul(x1, cos), tf.mul(x2, sin)), tf.add(tf.mul(x2, cos), tf.mul(x1, sin))], 2) as tf.Tensor3D;
  };

  const lossFn = (onehotIn: tf.Tensor2D, onehot: tf.Tensor2D): tf.Scalar => {
    let x = tf.matMul(onehotIn, wte); // (BT, C): the embedding as one-hot · wte (tfjs-wasm has no UnsortedSegmentSum, gather's gradient)
    for (const w of blocks) {
      const h = layernorm(x, w.ln1w, w.ln1b);
      const qkv = tf.add(tf.matMul(h, w.qkvw), w.qkvb); // (BT, 3C)
      const heads = tf.transpose(tf.reshape(qkv, [B, T, 3, NH, HS]), [2, 0, 3, 1, 4]); // (3, B, NH, T, HS)
      const [q, k, v] = tf.unstack(heads).map((t) => tf.reshape(t, [B * NH, T, HS]) as tf.Tensor3D);
      const scores = tf.add(tf.mul(tf.matMul(rope(q!), rope(k!), false, true), scale), mask); // (B·NH, T, T)
      const y = tf.matMul(tf.softmax(scores), v!); // (B·NH, T, HS)
      const atty = tf.reshape(tf.transpose(tf.reshape(y, [B, NH, T, HS]), [0, 2, 1, 3]), [B * T, C]);
      const x2 = tf.add(x, tf.add(tf.matMul(atty, w.attprojw), w.attprojb));
      const h2 = layernorm(x2 as tf.Tensor2D, w.ln2w, w.ln2b);
      const f = gelu(tf.add(tf.matMul(h2, w.fcw), w.fcb)) as tf.Tensor2D;
      x = tf.add(x2, tf.add(tf.matMul(f, w.fcprojw), w.fcprojb));
    }
    const logits = tf.matMul(layernorm(x, lnfw, lnfb), wte, false, true); // (BT, V), tied head
    return tf.neg(tf.mean(tf.sum(tf.mul(onehot, tf.logSoftmax(logits)), 1))) as tf.Scalar;
  };

  const adam = tf.train.adam(opt.lr, opt.beta1, opt.beta2, opt.eps);
  const decayed = vars.filter((v) => decays.has(v.name));
  return {
    label: 'tfjs',
    isGpuJs: false,
    step(inputs, targets) {
      const inp = tf.tidy(() => tf.cast(tf.oneHot(tf.tensor1d(inputs, 'int32'), V), 'float32') as tf.Tensor2D);
      const onehot = tf.tidy(() => tf.cast(tf.oneHot(tf.tensor1d(targets, 'int32'), V), 'float32') as tf.Tensor2D);
      const { value, grads } = tf.variableGrads(() => lossFn(inp, onehot), vars);
      tf.tidy(() => {
        // global-norm clip, as the trainer's step does
        const norm = tf.sqrt(tf.addN(Object.values(grads).map((g) => tf.sum(tf.square(g)))));
        const clip = tf.minimum(1, tf.div(opt.gradClip, tf.add(norm, 1e-6)));
        const clipped: tf.NamedTensorMap = {};
        for (const [name, g] of Object.entries(grads)) clipped[name] = tf.mul(g, clip);
        // AdamW: decoupled decay on the matrices, then Adam
        for (const v of decayed) v.assign(tf.mul(v, 1 - opt.lr * opt.weightDecay));
        adam.applyGradients(clipped as Parameters<typeof adam.applyGradients>[0]); // keyed by variable name, as applyGradients wants
      });
      const loss = value.dataSync()[0]!;
      tf.dispose([inp, onehot, value, ...Object.values(grads)]);
      return loss;
    },
    dispose() {
      adam.dispose();
      tf.dispose([cos, sin, mask, scale, ...vars]);
    },
  };
}
