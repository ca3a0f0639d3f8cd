/**
 * Which gpu.js mode the trainer's kernels run on, and how tensors live there.
 *
 * Modes, best first (`GPU_MODES`):
 *   headlessgl  GLSL fragment shaders through the `gl` native addon (ANGLE on Mesa llvmpipe here).
 *               Needs `gl` built AND an X display (`DISPLAY`; `xvfb-run -a`, or `startVirtualDisplay()`).
 *   webasm      WebAssembly + f32x4 SIMD on the CPU, synchronous, one thread (gpu.js's worker
 *               threads need `asyncMode`, and did not pay here: bench/matmul.ts).
 *   cpu         gpu.js's transpiled JavaScript: the guaranteed fallback.
 * The default is the best mode that is actually usable here: headlessgl counts only when `gl`
 * loads, a GL context can be created and a tiny kernel returns the right numbers (without a
 * display `gl` returns null silently). `createBackend({ mode })` forces one (a model whose backend
 * is `auto` passes PEDIGREE_GPU_MODE, read by src/env.ts); a forced mode that is not usable is an error, never a silent downgrade. `backend.mode` is the
 * mode actually used: record it with the run.
 *
 * Tensors (`Tensor`) are flat, row-major, float32, and stay where the kernels put them:
 *   - headlessgl: every kernel is `pipeline: true, immutable: true`, so its output is a fresh GL
 *     texture that feeds the next kernel without a readback. Nothing is read back unless asked
 *     (`read`), and textures are freed only explicitly (`release`): the caller owns every tensor a
 *     kernel returns. (Immutable because a cached kernel is reused, e.g. by every layer of a model,
 *     and a mutable one would overwrite its previous output.)
 *   - webasm and cpu: there is no device memory; a kernel's output is a fresh Float32Array.
 *     webasm cannot take texture arguments anyway (it would degrade the kernel to cpu), so
 *     these modes never see one. `read` is free and `release` does nothing, so code written
 *     for headlessgl (read only the loss, release what is dead) runs unchanged.
 * Host Float32Arrays are accepted wherever a Tensor is (gpu.js uploads them per call); use
 * `upload` for anything used more than once (parameters, optimizer state).
 *
 * Kernels are compiled per shape (sizes are `constants`, so loops have constant bounds, which
 * GLSL ES 1.0 requires) and cached on the backend: the first call at a shape costs a compile
 * (GL: ~0.1–0.3 s here), later calls only the run (GL: ~30–60 µs of overhead per call).
 *
 * Memory on headlessgl: an immutable kernel renders each call into a new GL texture, and
 * `release` deletes it; a training step of the tiny transformer does that ~140 times (~30 MB).
 * Mesa allocates texture storage with malloc, and that churn of multi-MB blocks kept RSS
 * ~150 MB higher (freed storage stays in malloc's heap) and made it wander by tens of MB,
 * though no GL object leaked (bench/memory.ts). So released textures are recycled
 * (`TexturePool`): after the first steps a training step allocates no texture storage at all.
 * `stats()` counts what is alive, for leak tests.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import { GPU, type IKernelRunShortcut, type KernelOutput, type Texture } from 'gpu.js';
import type { KernelArray } from './common.ts';

/** The gpu.js modes the trainer supports, best first. */
export const GPU_MODES = ['headlessgl', 'webasm', 'cpu'] as const;
export type GpuMode = (typeof GPU_MODES)[number];

/** A flat float32 tensor where the backend keeps it: a GL texture (headlessgl) or a Float32Array. */
export type Tensor = Float32Array | Texture;

export interface ModeProbe {
  mode: GpuMode;
  available: boolean;
  /** Why not, when not available; what was found, when available. */
  detail: string;
}

const require = createRequire(import.meta.url);
const probes = new Map<GpuMode, ModeProbe>();

/** Whether each mode works in this process (cached: gpu.js caches its own GL check per process too). */
export function probeModes(): ModeProbe[] {
  return GPU_MODES.map(probeMode);
}

/** The usable modes, best first. */
export function availableModes(): GpuMode[] {
  return probeModes().filter((p) => p.available).map((p) => p.mode);
}

export function probeMode(mode: GpuMode): ModeProbe {
  let probe = probes.get(mode);
  if (!probe) {
    probe = { mode, ...(mode === 'headlessgl' ? probeHeadlessGL() : probeByKernel(mode)) };
    probes.set(mode, probe);
  }
  return probe;
}

function probeHeadlessGL(): { available: boolean; detail: string } {
  let createGL: (w: number, h: number, opts?: object) => WebGLRenderingContextLike | null;
  try {
    createGL = require('gl');
  } catch (err) {
    return { available: false, detail: `the gl native addon does not load (${firstLine(err)}); it builds from source at npm install (needs Debian libxi-dev, and allowScripts)` };
  }
  if (!process.env.DISPLAY) return { available: false, detail: 'no X display (DISPLAY unset): run under `xvfb-run -a`, or call startVirtualDisplay() first' };
  const ctx = createGL(1, 1);
  if (!ctx) return { available: false, detail: `gl could not create a context on DISPLAY=${process.env.DISPLAY}` };
  const renderer = `${ctx.getParameter(ctx.RENDERER)} / ${ctx.getParameter(ctx.VERSION)}`;
  ctx.getExtension('STACKGL_destroy_context')?.destroy();
  if (!GPU.isHeadlessGLSupported) return { available: false, detail: `gl works (${renderer}) but gpu.js decided earlier in this process that it does not (it caches its check: probe after setting DISPLAY)` };
  const check = probeByKernel('headlessgl');
  return check.available ? { available: true, detail: `${renderer} on DISPLAY=${process.env.DISPLAY}` } : check;
}

const KERNEL_CLASS: Record<GpuMode, string> = { headlessgl: 'HeadlessGLKernel', webasm: 'WebAssemblyKernel', cpu: 'CPUKernel' };

/** Runs a two-kernel chain and checks the numbers and that gpu.js did not quietly fall back to cpu. */
function probeByKernel(mode: GpuMode): { available: boolean; detail: string } {
  let gpu: GPU | undefined;
  try {
    gpu = new GPU({ mode });
    const settings = { output: [5], pipeline: true, immutable: true, precision: 'single' as const };
    const twice = gpu.createKernel(function (a: KernelArray) {
      return a[this.thread.x] * 2;
    }, settings);
    const inp = new Float32Array([1, -2, 3.5, 0.25, 1e-3]);
    const once = twice(inp) as Tensor;
    const got = toFloat32(twice(once) as Tensor);
    // gpu.js falls back to its cpu kernel quietly (a console warning at most): catch that.
    const ran = (twice as unknown as { kernel: { constructor: { name: string } } }).kernel.constructor.name;
    if (ran !== KERNEL_CLASS[mode]) return { available: false, detail: `gpu.js ran the probe kernel as ${ran}, not ${KERNEL_CLASS[mode]}` };
    const bad = [...got].findIndex((x, i) => x !== inp[i]! * 4);
    if (bad >= 0) return { available: false, detail: `probe kernel gave ${got[bad]} for ${inp[bad]! * 4}` };
    return { available: true, detail: mode === 'webasm' ? 'WebAssembly SIMD, synchronous' : 'JavaScript' };
  } catch (err) {
    return { available: false, detail: firstLine(err) };
  } finally {
    void gpu?.destroy();
  }
}

export interface BackendOptions {
  /** Force a mode (e.g. `readTrainerEnv().gpuMode`, PEDIGREE_GPU_MODE); default: the best available. */
  mode?: GpuMode;
}

/** Picks the mode (the option, else the best available) and creates the backend. */
export function createBackend(opts: BackendOptions = {}): Backend {
  const requested = opts.mode;
  if (requested !== undefined) {
    if (!(GPU_MODES as readonly string[]).includes(requested)) {
      throw new Error(`unknown gpu.js mode "${requested}"; expected one of ${GPU_MODES.join(', ')}`);
    }
    const probe = probeMode(requested as GpuMode);
    if (!probe.available) throw new Error(`gpu.js mode ${requested} was requested but is not usable here: ${probe.detail}`);
    return new Backend(probe.mode, probe.detail);
  }
  const best = probeModes().find((p) => p.available);
  if (!best) throw new Error('no gpu.js mode works here (not even cpu)');
  return new Backend(best.mode, best.detail);
}

/** A cached kernel: call it like the gpu.js kernel it wraps. */
export type KernelRun = (...args: Parameters<IKernelRunShortcut>) => KernelOutput;

/** What a backend holds right now (`Backend.stats()`): flat across training steps, or something leaks. */
export interface BackendStats {
  /** Tensors that kernels (and `upload`) returned and nobody has released yet. */
  liveTensors: number;
  /** Compiled kernels in the cache. */
  kernels: number;
  /** headlessgl: the output-texture pool; null elsewhere (no device memory). */
  textures: TexturePoolStats | null;
}

/** One gpu.js instance in one mode, its compiled kernels, and the tensor helpers that depend on the mode. */
export class Backend {
  readonly gpu: GPU;
  /** True when kernel outputs are device textures (headlessgl): read back with `read`, free with `release`. */
  readonly resident: boolean;
  private readonly kernels = new Map<string, KernelRun>();
  /** Tensors handed to callers and not yet released (counted in `live`). */
  private readonly owned = new WeakSet<object>();
  private live = 0;
  private pool: TexturePool | null = null;

  constructor(
    readonly mode: GpuMode,
    /** What the probe found (renderer, display), for the run's environment record. */
    readonly detail = '',
  ) {
    this.gpu = new GPU({ mode });
    this.resident = mode === 'headlessgl';
  }

  /** The environment facts worth recording with a run. */
  describe(): { gpuMode: GpuMode; detail: string } {
    return { gpuMode: this.mode, detail: this.detail };
  }

  /**
   * The kernel cached under `key`, built by `make` on first use. The key must name everything
   * the kernel is specialised on (op, sizes, flags). Settings every kernel needs are applied here.
   */
  kernel(key: string, make: (gpu: GPU, settings: KernelSettings) => IKernelRunShortcut): KernelRun {
    let run = this.kernels.get(key);
    if (!run) {
      const k = make(this.gpu, { pipeline: true, immutable: true, precision: 'single', tactic: 'precision' });
      run = (...args) => this.runKernel(k, args);
      this.kernels.set(key, run);
    }
    return run;
  }

  /**
   * Runs a kernel: tells the texture pool the output size (gpu.js allocates the output inside
   * the call) and counts an immutable kernel's output as a live tensor. A mutable kernel's
   * output (gemm's scratch) belongs to the kernel and is not counted.
   */
  private runKernel(k: IKernelRunShortcut, args: Parameters<IKernelRunShortcut>): KernelOutput {
    const inner = () => (k as unknown as { kernel?: { texSize?: [number, number]; immutable?: boolean } }).kernel;
    this.pool?.expect(inner()?.texSize ?? null);
    let out: KernelOutput;
    try {
      out = k(...args);
    } finally {
      this.pool?.expect(null);
    }
    if (this.resident && !this.pool) this.pool = TexturePool.attach(this.gpu);
    if (inner()?.immutable !== false && isTensor(out)) this.track(out);
    return out;
  }

  private track<T extends Tensor>(t: T): T {
    if (!this.owned.has(t)) {
      this.owned.add(t);
      this.live++;
    }
    return t;
  }

  /** Copies host data to where kernels want it (a texture on headlessgl; a copy elsewhere). */
  upload(x: Float32Array): Tensor {
    if (!this.resident) return this.track(Float32Array.from(x));
    if (x.length === 0) throw new Error('cannot upload an empty tensor');
    const copy = this.kernel(`upload:${x.length}`, (gpu, s) =>
      gpu.createKernel(function (a: KernelArray) {
        return a[this.thread.x];
      }, { ...s, output: [x.length] }),
    );
    return copy(x) as Tensor;
  }

  /** The values of a tensor as a Float32Array (a readback on headlessgl: call it for what the host needs). */
  read(t: Tensor): Float32Array {
    return toFloat32(t);
  }

  /**
   * Waits until the device has finished the work queued so far (headlessgl: gl.finish(); a
   * no-op elsewhere, where kernels run synchronously). For timing without a readback.
   */
  sync(): void {
    if (this.resident) (this.gpu as unknown as { context?: { finish(): void } }).context?.finish();
  }

  /** Frees device tensors that are no longer needed (no-op for host arrays). Safe to call twice. */
  release(...ts: (Tensor | null | undefined)[]): void {
    for (const t of ts) {
      if (!t) continue;
      if (this.owned.delete(t)) this.live--;
      if (!(t instanceof Float32Array)) t.delete();
    }
  }

  /** The keys of the kernels compiled so far (each op/shape/flag combination is one). */
  compiledKernels(): string[] {
    return [...this.kernels.keys()];
  }

  /** Live tensors, cached kernels and (headlessgl) texture allocations: for leak checks. */
  stats(): BackendStats {
    return { liveTensors: this.live, kernels: this.kernels.size, textures: this.pool?.stats() ?? null };
  }

  destroy(): void {
    this.kernels.clear();
    this.pool?.detach();
    this.pool = null;
    void this.gpu.destroy();
  }
}

function isTensor(x: unknown): x is Tensor {
  return x instanceof Float32Array || (typeof x === 'object' && x !== null && typeof (x as Texture).delete === 'function' && typeof (x as Texture).toArray === 'function');
}

// ---------------------------------------------------------------- headlessgl: texture recycling

export interface TexturePoolStats {
  /** Texture storage allocated so far (texImage2D without data on a texture that had none of that shape). */
  allocated: number;
  /** Outputs that got a released texture back instead of new storage. */
  reused: number;
  /** Released textures waiting to be reused. */
  pooled: number;
}

/** The WebGL calls the pool intercepts (on gpu.js's context object, which every kernel of a GPU shares). */
interface PoolGL {
  TEXTURE_2D: number;
  TEXTURE_BINDING_2D: number;
  createTexture(): object | null;
  deleteTexture(t: object | null): void;
  texImage2D(...args: unknown[]): void;
  getParameter(p: number): unknown;
}

/**
 * Recycles the textures of released kernel outputs, so that a training step stops allocating
 * and freeing texture storage (see the top of this file). It sits on the GL context, below
 * gpu.js: `deleteTexture` of a texture whose storage it saw allocated parks it instead, keyed
 * by size; while a kernel runs (`expect`: its output size), `createTexture` hands a parked
 * texture of that size back, and gpu.js's following `texImage2D(…, null)` (allocate, contents
 * undefined) is skipped when the shape matches: the kernel renders every texel anyway. Any
 * other call goes through unchanged, so a wrong guess only costs an allocation.
 */
class TexturePool {
  /** Parked textures by "w×h". */
  private readonly free = new Map<string, object[]>();
  /** The storage shape of each texture seen allocated: "w×h:internalFormat:format:type". */
  private readonly shape = new WeakMap<object, string>();
  private readonly parked = new WeakSet<object>();
  /** Handed back by createTexture: its next texImage2D(null) of the same shape is a no-op. */
  private readonly reissued = new WeakSet<object>();
  private expected: string | null = null;
  private allocated = 0;
  private reused = 0;
  private pooled = 0;
  private readonly original: Pick<PoolGL, 'createTexture' | 'deleteTexture' | 'texImage2D'>;

  /** Installs a pool on the GPU's GL context (null when it has none yet). */
  static attach(gpu: GPU): TexturePool | null {
    const gl = (gpu as unknown as { context?: PoolGL | null }).context;
    return gl ? new TexturePool(gl) : null;
  }

  private constructor(private readonly gl: PoolGL) {
    const original = { createTexture: gl.createTexture, deleteTexture: gl.deleteTexture, texImage2D: gl.texImage2D };
    this.original = original;
    gl.createTexture = () => {
      const t = this.expected ? this.free.get(this.expected)?.pop() : undefined;
      if (!t) return original.createTexture.call(gl);
      this.parked.delete(t);
      this.pooled--;
      this.reused++;
      this.reissued.add(t);
      return t;
    };
    gl.deleteTexture = (t) => {
      const shape = t ? this.shape.get(t) : undefined;
      if (!t || !shape) return original.deleteTexture.call(gl, t);
      if (this.parked.has(t)) return;
      const size = shape.slice(0, shape.indexOf(':'));
      let list = this.free.get(size);
      if (!list) this.free.set(size, (list = []));
      list.push(t);
      this.parked.add(t);
      this.reissued.delete(t);
      this.pooled++;
    };
    gl.texImage2D = (...args: unknown[]) => {
      // texImage2D(target, level, internalFormat, width, height, border, format, type, pixels)
      if (args.length === 9 && args[0] === gl.TEXTURE_2D && args[1] === 0) {
        const t = gl.getParameter(gl.TEXTURE_BINDING_2D) as object | null;
        if (t) {
          const shape = `${args[3]}x${args[4]}:${args[2]}:${args[6]}:${args[7]}`;
          const wasReissued = this.reissued.delete(t);
          if (args[8] == null) {
            if (wasReissued && this.shape.get(t) === shape) return;
            this.allocated++;
          }
          this.shape.set(t, shape);
        }
      }
      return original.texImage2D.apply(gl, args);
    };
  }

  /** The output size ([w, h] texels) of the kernel about to run, or null after it. */
  expect(texSize: [number, number] | null): void {
    this.expected = texSize ? `${texSize[0]}x${texSize[1]}` : null;
  }

  stats(): TexturePoolStats {
    return { allocated: this.allocated, reused: this.reused, pooled: this.pooled };
  }

  /** Deletes the parked textures and puts the context's methods back. */
  detach(): void {
    const { gl, original } = this;
    Object.assign(gl, original);
    for (const list of this.free.values()) for (const t of list) original.deleteTexture.call(gl, t);
    this.free.clear();
    this.pooled = 0;
  }
}

export interface KernelSettings {
  pipeline: true;
  immutable: true;
  precision: 'single';
  tactic: 'precision';
}

/** A Float32Array view of a tensor's values (reads a texture back). */
export function toFloat32(t: Tensor | number[]): Float32Array {
  if (t instanceof Float32Array) return t;
  if (Array.isArray(t)) return Float32Array.from(t);
  const arr = t.toArray();
  if (arr instanceof Float32Array) return arr;
  throw new Error('expected a flat (1-D) tensor');
}

// ---------------------------------------------------------------- a display for headlessgl

export interface VirtualDisplay {
  /** e.g. ":3" */
  display: string;
  stop(): void;
}

/**
 * Starts `Xvfb` on a free display number (it picks one itself: `-displayfd`) and points this
 * process's DISPLAY at it, so headlessgl works without `xvfb-run`. Resolves null when there is
 * already a DISPLAY, when Xvfb is not installed, or when `gl` cannot load (no point then).
 * Call before the first `probeModes()`/`createBackend()`: gpu.js caches its GL check.
 * The server dies with this process: `-terminate` ends it when the last client (our GL
 * context) disconnects, even if this process is killed, and a normal exit kills it too.
 */
export async function startVirtualDisplay(opts: { timeoutMs?: number } = {}): Promise<VirtualDisplay | null> {
  if (process.env.DISPLAY) return null;
  try {
    require('gl');
  } catch {
    return null;
  }
  let xvfb: ChildProcess;
  try {
    xvfb = spawn('Xvfb', ['-displayfd', '3', '-screen', '0', '16x16x24', '-nolisten', 'tcp', '-terminate'], {
      stdio: ['ignore', 'ignore', 'pipe', 'pipe'],
    });
  } catch {
    return null;
  }
  const number = await new Promise<string | null>((resolve) => {
    let out = '';
    let err = '';
    const timer = setTimeout(() => done(null), opts.timeoutMs ?? 10_000);
    const done = (n: string | null) => {
      clearTimeout(timer);
      resolve(n);
    };
    xvfb.once('error', () => done(null)); // ENOENT: no Xvfb
    xvfb.once('exit', (code, signal) => {
      if (err) process.stderr.write(`Xvfb exited (${code ?? signal}): ${err.slice(-500)}\n`);
      done(null);
    });
    xvfb.stderr?.on('data', (d: Buffer) => (err += d.toString()));
    xvfb.stdio[3]?.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('\n')) done(out.trim());
    });
  });
  // stderr/fd 3 must not keep the event loop alive, nor must the child itself.
  xvfb.stderr?.destroy();
  (xvfb.stdio[3] as { destroy?: () => void } | null)?.destroy?.();
  xvfb.unref();
  if (number === null || !/^\d+$/.test(number)) {
    xvfb.kill();
    return null;
  }
  const stop = () => {
    if (xvfb.exitCode === null && xvfb.signalCode === null) xvfb.kill();
  };
  process.once('exit', stop);
  process.env.DISPLAY = `:${number}`;
  return {
    display: `:${number}`,
    stop() {
      process.removeListener('exit', stop);
      stop();
    },
  };
}

interface WebGLRenderingContextLike {
  RENDERER: number;
  VERSION: number;
  getParameter(p: number): unknown;
  getExtension(name: string): { destroy(): void } | null;
}

function firstLine(err: unknown): string {
  return String((err as Error)?.message ?? err).split('\n')[0]!;
}
