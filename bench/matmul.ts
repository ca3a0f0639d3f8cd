/**
 * Matmul throughput of the trainer's kernels. out = A·Bᵀ for square float32 n × n operands
 * (the layout of the trainer's matmul forward: weight (OC, C)), n = 128, 256, 512, 1024,
 * in GFLOP/s (2n³ per product):
 *   - every gpu.js mode this machine has, through `gemm` (packages/trainer/src/kernels/gemm.ts:
 *     the packed, blocked kernel on headlessgl; the portable kernel on webasm and cpu);
 *     headlessgl with its operands already on the device and the result left there (how the
 *     trainer uses it: `sync()` waits for the GPU queue), and once more with the readback;
 *   - webasm's worker threads (`asyncMode`): a bench-local variant of the portable kernel,
 *     since the trainer's kernel API is synchronous;
 *   - the baseline, TensorFlow.js's WebAssembly backend (XNNPACK, SIMD; its threads do not
 *     start in Node, so one thread), given B pre-transposed (its own A·Bᵀ path is ~8× slower),
 *     and a plain TypeScript loop.
 * Each result is checked against a float64 reference (|got − ref| ≤ 1e-4 + 1e-4·|ref|) before
 * it is timed. The ratio printed is the best gpu.js mode over tfjs-wasm, per n (target ≥ 1).
 * Needs no database; headlessgl gets a display from `sharedDisplay()` (Xvfb) when
 * DISPLAY is unset.
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { GPU } from 'gpu.js';
import {
  assertClose,
  Backend,
  gemm,
  matmulForwardRef,
  probeModes,
  type KernelArray,
  type KernelThis,
  type Tensor,
} from '@pedigree/trainer';
import { fmtMs, fmtRatio, rng, summarize, targetLine, type BenchContext, type Benchmark, type Figure } from './lib.ts';
import { sharedDisplay } from './train-step.ts';

const SIZES = { quick: [128, 256], full: [128, 256, 512, 1024] };
const TOL = { atol: 1e-4, rtol: 1e-4 };
/** Each candidate gets about this much timed work per size (at least 1, at most 20 runs), after a warmup. */
const BUDGET_MS = { quick: 300, full: 1500 };

interface Candidate {
  label: string;
  /** Computes out = A·Bᵀ and returns it (checked once, then timed). */
  run(): Promise<Float32Array | null> | Float32Array | null;
  /** Reads the result for the check when `run` leaves it on the device. */
  result?(): Float32Array;
  /** Frees what `run` left behind. */
  cleanup?(): void;
  isGpuJs: boolean;
}

export const matmul: Benchmark = {
  name: 'matmul',
  description: 'matmul GFLOP/s per gpu.js mode vs TensorFlow.js wasm (SIMD) and plain TypeScript',
  async run(ctx: BenchContext): Promise<Figure[]> {
    const sizes = ctx.quick ? SIZES.quick : SIZES.full;
    const budget = ctx.quick ? BUDGET_MS.quick : BUDGET_MS.full;
    await sharedDisplay(); // never stopped: see sharedDisplay
    const probes = probeModes();
    for (const p of probes) ctx.log(`gpu.js ${p.mode}: ${p.available ? `available (${p.detail})` : `NOT available: ${p.detail}`}`);
    const backends = probes.filter((p) => p.available).map((p) => new Backend(p.mode, p.detail));
    await tf.setBackend('wasm');
    await tf.ready();
    ctx.log(`tfjs ${tf.version_core} backend ${tf.getBackend()}: SIMD ${tf.env().getBool('WASM_HAS_SIMD_SUPPORT')}, threads ${tf.env().getBool('WASM_HAS_MULTITHREAD_SUPPORT')}`);

    const figures: Figure[] = [];
    const disposers: (() => void)[] = [];
    try {
      for (const n of sizes) {
        const rand = rng(n);
        const a = Float32Array.from({ length: n * n }, () => rand() * 2 - 1); // (n, n)
        const b = Float32Array.from({ length: n * n }, () => rand() * 2 - 1); // (n, n), used as Bᵀ
        const ref = new Float64Array(n * n); // out[m, j] = Σ_k a[m, k]·b[j, k], in float64
        matmulForwardRef(ref, a, b, null, 1, n, n, n);
        const flops = 2 * n ** 3;
        const candidates = makeCandidates(backends, a, b, n, disposers);
        const rates = new Map<string, number>();
        for (const c of candidates) {
          if (c.label === 'gpu.js cpu' && n > 512 && !ctx.quick) {
            ctx.log(`n=${n} ${c.label}: skipped (about 0.7 GFLOP/s: ~3 s a product)`);
            continue;
          }
          // Warmup (and compile), then the check, then the timed runs.
          const first = await c.run();
          assertClose(`n=${n} ${c.label}`, first ?? c.result!(), ref, TOL);
          c.cleanup?.();
          const t0 = performance.now();
          await c.run();
          c.cleanup?.();
          const once = performance.now() - t0;
          const reps = Math.max(1, Math.min(20, Math.floor(budget / Math.max(once, 0.01))));
          const samples: number[] = [once];
          for (let r = 0; r < reps; r++) {
            const t = performance.now();
            await c.run();
            samples.push(performance.now() - t);
            c.cleanup?.();
          }
          const ms = summarize(samples).median;
          const gflops = flops / ms / 1e6;
          rates.set(c.label, gflops);
          ctx.log(`n=${n} ${c.label.padEnd(30)} ${fmtMs(ms).padStart(8)}  ${gflops.toFixed(2).padStart(6)} GFLOP/s  (median of ${samples.length})`);
          figures.push({ bench: 'matmul', what: `n=${n} ${c.label}`, value: `${gflops.toFixed(2)} GFLOP/s`, note: `median ${fmtMs(ms)}` });
        }
        const tfjs = rates.get('tfjs-wasm (SIMD, 1 thread)');
        const gpuJs = candidates.filter((c) => c.isGpuJs && rates.has(c.label)).map((c) => [c.label, rates.get(c.label)!] as const);
        const best = gpuJs.reduce<readonly [string, number] | null>((x, y) => (!x || y[1] > x[1] ? y : x), null);
        if (tfjs && best) {
          const ratio = best[1] / tfjs;
          ctx.log(`n=${n} best gpu.js: ${best[0]}, ${best[1].toFixed(2)} GFLOP/s = ${targetLine(ratio, 1, ' × tfjs-wasm')}`);
          figures.push({ bench: 'matmul', what: `n=${n} best gpu.js / tfjs-wasm`, value: fmtRatio(ratio), note: `${best[0]}; target ≥ 1: ${ratio >= 1 ? 'MET' : 'NOT MET'}` });
        }
      }
    } finally {
      for (const dispose of disposers) dispose();
      for (const be of backends) be.destroy();
    }
    return figures;
  },
};

function makeCandidates(backends: Backend[], a: Float32Array, b: Float32Array, n: number, disposers: (() => void)[]): Candidate[] {
  const candidates: Candidate[] = [];

  // The plain TypeScript loop: the trainer's reference, llm.c's matmul_forward_naive (float32 output).
  candidates.push({
    label: 'plain TypeScript loop',
    isGpuJs: false,
    run() {
      const out = new Float32Array(n * n);
      matmulForwardRef(out, a, b, null, 1, n, n, n);
      return out;
    },
  });

  // tfjs gets B already transposed, (K, N): its transposeB path is ~8× slower here.
  const ta = tf.tensor2d(a, [n, n]);
  const tbT = tf.tidy(() => tf.transpose(tf.tensor2d(b, [n, n])));
  disposers.push(() => tf.dispose([ta, tbT]));
  candidates.push({
    label: 'tfjs-wasm (SIMD, 1 thread)',
    isGpuJs: false,
    async run() {
      const out = tf.matMul(ta, tbT);
      const data = (await out.data()) as Float32Array;
      out.dispose();
      return data;
    },
  });

  for (const be of backends) {
    if (be.resident) {
      // headlessgl: operands uploaded once (the trainer keeps weights and activations on the device).
      const da = be.upload(a);
      const db = be.upload(b);
      disposers.push(() => be.release(da, db));
      let last: Tensor | null = null;
      candidates.push({
        label: 'gpu.js headlessgl (resident)',
        isGpuJs: true,
        run() {
          last = gemm(be, da, db, n, n, n, { aLayout: 'mk', bLayout: 'nk' });
          be.sync();
          return null;
        },
        result: () => be.read(last!),
        cleanup: () => {
          be.release(last);
          last = null;
        },
      });
      candidates.push({
        label: 'gpu.js headlessgl (+readback)',
        isGpuJs: true,
        run() {
          const out = gemm(be, da, db, n, n, n, { aLayout: 'mk', bLayout: 'nk' });
          const values = be.read(out);
          be.release(out);
          return values;
        },
      });
    } else {
      candidates.push({
        label: `gpu.js ${be.mode}${be.mode === 'webasm' ? ' (sync)' : ''}`,
        isGpuJs: true,
        run: () => be.read(gemm(be, a, b, n, n, n, { aLayout: 'mk', bLayout: 'nk' })),
      });
    }
    if (be.mode === 'webasm') {
      const threaded = webasmThreaded(n, disposers);
      candidates.push({ label: 'gpu.js webasm (asyncMode threads)', isGpuJs: true, run: () => threaded(a, b) });
    }
  }
  return candidates;
}

/**
 * The portable kernel with `asyncMode`: gpu.js splits it over a worker_threads pool (one per
 * core). Bench-only: the trainer's kernels are synchronous.
 */
function webasmThreaded(n: number, disposers: (() => void)[]): (a: Float32Array, b: Float32Array) => Promise<Float32Array> {
  const gpu = new GPU({ mode: 'webasm' });
  disposers.push(() => void gpu.destroy()); // ends the worker pool
  const kernel = gpu.createKernel(
    function (this: KernelThis<{ N: number }>, a: KernelArray, b: KernelArray) {
      const i = this.thread.x;
      const m = Math.floor((i + 0.5) / this.constants.N);
      const j = i - m * this.constants.N;
      let sum = 0;
      for (let k = 0; k < this.constants.N; k++) sum += a[m * this.constants.N + k] * b[j * this.constants.N + k];
      return sum;
    },
    { output: [n * n], constants: { N: n }, precision: 'single', asyncMode: true } as never,
  );
  return async (a, b) => Float32Array.from((await kernel(a, b)) as ArrayLike<number>);
}
