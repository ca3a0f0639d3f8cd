/**
 * Peak RSS of a training run of the tiny transformer (2 layers, d_model 64, 4 heads, context 64,
 * batch 8, vocab 256) on the best gpu.js mode (`createBackend()`'s pick: PEDIGREE_GPU_MODE, else
 * the best usable here; headlessgl gets a display from `startVirtualDisplay()`): 2,000 steps
 * (--quick: 300) of forward + backward + AdamW on random batches, `TransformerModel` driven
 * directly (no store). `process.memoryUsage().rss` is sampled every 100 steps, after a full
 * GC; printed: the samples, the peak, and the growth from step 200 to the end (MB, and per
 * 1,000 steps), and `Backend.stats()` at step 200 and at the end (live tensors, compiled
 * kernels, GL texture allocations). A run that leaks textures or buffers grows steadily; one
 * that does not stays flat (within a few MB of noise from the JS heap). Needs no database.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { createBackend, OptimizerConfigSchema, readTrainerEnv, TransformerModel, type BackendStats } from '@pedigree/trainer';
import { fmtMs, type BenchContext, type Benchmark, type Figure } from './lib.ts';
import { batches, describeSize, sharedDisplay, modelConfig, SIZES } from './train-step.ts';

const STEPS = { quick: 300, full: 2_000 };
const EVERY = 100;
const FROM = 200;
/** Growth over the run (from step 200) under which RSS counts as flat, MB per 1,000 steps. */
const FLAT_MB_PER_1000 = 5;

const mb = (bytes: number) => bytes / (1024 * 1024);

/**
 * V8's full collection, run before each sample: a heap that V8 has simply not collected yet (it
 * grows lazily while the heap is far from its limit) would otherwise read as a leak.
 */
function fullGc(): () => void {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

function describeStats(s: BackendStats): string {
  const tex = s.textures ? `, textures allocated ${s.textures.allocated} (reused ${s.textures.reused}, pooled ${s.textures.pooled})` : '';
  return `${s.liveTensors} live tensors, ${s.kernels} kernels${tex}`;
}

export const memory: Benchmark = {
  name: 'memory',
  description: 'RSS over a 2,000-step training run of the tiny transformer on the best gpu.js mode (leak check)',
  async run(ctx: BenchContext): Promise<Figure[]> {
    const steps = ctx.quick ? STEPS.quick : STEPS.full;
    const size = SIZES.quick;
    await sharedDisplay();
    const be = createBackend({ mode: readTrainerEnv().gpuMode });
    const model = new TransformerModel(modelConfig(size), { backend: be });
    const opt = OptimizerConfigSchema.parse({});
    const next = batches(size, 7);
    ctx.log(`${model.backend} (${be.detail}); ${describeSize(size)}; ${steps} steps, RSS sampled every ${EVERY}`);
    const samples: { step: number; rss: number; heap: number; stats: BackendStats }[] = [];
    const gc = fullGc();
    const sample = (step: number) => {
      gc();
      const m = process.memoryUsage();
      samples.push({ step, rss: m.rss, heap: m.heapUsed, stats: be.stats() });
    };
    let first = NaN;
    let loss = NaN;
    const t0 = performance.now();
    try {
      sample(0);
      for (let t = 1; t <= steps; t++) {
        const { inputs, targets } = next();
        loss = model.forwardBackward(inputs, targets, size.batch, size.context);
        if (t === 1) first = loss;
        model.step(opt.lr, t, opt);
        if (t % EVERY === 0) sample(t);
      }
      be.sync();
    } finally {
      model.destroy();
      be.destroy();
    }
    const ms = performance.now() - t0;
    ctx.log(`${steps} steps in ${fmtMs(ms)} (${fmtMs(ms / steps)} a step); loss ${first.toFixed(3)} → ${loss.toFixed(3)}`);
    ctx.log(`RSS MB by step: ${samples.map((s) => `${s.step}: ${mb(s.rss).toFixed(1)}`).join(', ')}`);
    ctx.log(`heap used MB by step: ${samples.map((s) => `${s.step}: ${mb(s.heap).toFixed(1)}`).join(', ')}`);
    const peak = Math.max(...samples.map((s) => s.rss));
    const from = samples.find((s) => s.step === FROM) ?? samples[0]!;
    const end = samples[samples.length - 1]!;
    // What the backend holds (the leak's usual suspects), at step FROM and at the end: equal when nothing leaks.
    ctx.log(`backend at step ${from.step}: ${describeStats(from.stats)}; at step ${end.step}: ${describeStats(end.stats)}`);
    const growth = mb(end.rss - from.rss);
    const per1000 = end.step > from.step ? (growth * 1000) / (end.step - from.step) : NaN;
    // Only growth counts: RSS that falls (malloc handing memory back to the system) leaks nothing.
    const flat = per1000 <= FLAT_MB_PER_1000;
    ctx.log(
      `peak RSS ${mb(peak).toFixed(1)} MB; growth step ${from.step} → ${end.step}: ${growth.toFixed(1)} MB (${per1000.toFixed(1)} MB per 1,000 steps): ` +
        (flat ? `flat (grows under ${FLAT_MB_PER_1000} MB/1,000 steps: no leaked textures/buffers)` : `NOT flat (over ${FLAT_MB_PER_1000} MB/1,000 steps: something leaks)`),
    );
    return [
      { bench: 'memory', what: `peak RSS, ${steps} steps (${model.backend})`, value: `${mb(peak).toFixed(1)} MB` },
      {
        bench: 'memory',
        what: `RSS growth step ${from.step} → ${end.step}`,
        value: `${growth.toFixed(1)} MB`,
        note: `${per1000.toFixed(1)} MB / 1,000 steps: ${flat ? 'flat' : 'NOT flat'}`,
      },
    ];
  },
};
