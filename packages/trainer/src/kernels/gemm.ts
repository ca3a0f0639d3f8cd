/**
 * The one general matrix product behind matmul's forward and backward:
 *   out[m,n] = epilogue(Σ_k A(m,k)·B(k,n) + bias[n])
 * with each operand in either layout, so no transpose is ever materialised by the caller:
 *   A: 'mk' = (M,K) row-major, 'km' = (K,M);  B: 'nk' = (N,K), 'kn' = (K,N).
 *
 * Shapes: M, N = output rows and columns, K = the summed dimension; out (M,N).
 *
 * `gemmRef` is the plain reference. `gemm` picks the kernel for the backend's mode:
 *   - the portable kernel (one thread per output, strides as compile-time constants), used by
 *     cpu and webasm;
 *   - on headlessgl, unless the product is tiny (see gemmPacked), operands packed as vec4
 *     along K and an 8×4 or 4×4 block of outputs per fragment.
 */
import type { IGPUKernelSettings, IKernelRunShortcut, ISubKernelObject } from 'gpu.js';
import type { Backend, Tensor } from './backend.ts';
import { checkFlatSize, type Floats, type KernelThis, type KernelArray } from './common.ts';
import { GELU_SCALE } from './gelu.ts';

export type GemmEpilogue = 'none' | 'gelu' | 'geluGrad';

export interface GemmOptions {
  aLayout: 'mk' | 'km';
  bLayout: 'nk' | 'kn';
  bias?: Tensor | null;
  /** 'gelu': out = gelu(sum); 'geluGrad': out = sum · gelu'(epilogueArg[m,n]) (epilogueArg (M,N)). */
  epilogue?: GemmEpilogue;
  epilogueArg?: Tensor;
}

const EPILOGUE_CODE: Record<GemmEpilogue, number> = { none: 0, gelu: 1, geluGrad: 2 };

export function gemmRef(out: Floats, a: Floats, b: Floats, M: number, N: number, K: number, opts: Omit<GemmOptions, 'bias' | 'epilogueArg'> & { bias?: Floats | null; epilogueArg?: Floats }): void {
  const [sam, sak] = opts.aLayout === 'mk' ? [K, 1] : [1, M];
  const [sbn, sbk] = opts.bLayout === 'nk' ? [K, 1] : [1, N];
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let sum = opts.bias ? opts.bias[n]! : 0;
      for (let k = 0; k < K; k++) sum += a[m * sam + k * sak]! * b[n * sbn + k * sbk]!;
      out[m * N + n] = applyEpilogue(sum, opts.epilogue ?? 'none', opts.epilogueArg?.[m * N + n] ?? 0);
    }
  }
}

function applyEpilogue(sum: number, epilogue: GemmEpilogue, h: number): number {
  if (epilogue === 'none') return sum;
  if (epilogue === 'gelu') return 0.5 * sum * (1 + Math.tanh(GELU_SCALE * (sum + 0.044715 * sum ** 3)));
  const th = Math.tanh(GELU_SCALE * (h + 0.044715 * h ** 3));
  return sum * (0.5 * (1 + th) + 0.5 * h * (1 - th * th) * GELU_SCALE * (1 + 3 * 0.044715 * h * h));
}

const DUMMY = new Float32Array(1);

/** A(m,k)·B(k,n) (+ bias, epilogue) → out (M,N), on the backend's best kernel. */
export function gemm(be: Backend, a: Tensor, b: Tensor, M: number, N: number, K: number, opts: GemmOptions): Tensor {
  checkFlatSize('gemm', M * N);
  if (be.mode === 'headlessgl') {
    const block = pickBlock(M, N, K);
    if (block) return gemmPacked(be, a, b, M, N, K, opts, block);
  }
  return gemmPortable(be, a, b, M, N, K, opts);
}

type PortableConstants = { M: number; N: number; K: number; SAM: number; SAK: number; SBN: number; SBK: number; HAS_BIAS: number; EPI: number; S: number };

/** One thread per output element; the layouts are strides known at compile time. */
export function gemmPortable(be: Backend, a: Tensor, b: Tensor, M: number, N: number, K: number, opts: GemmOptions): Tensor {
  const epi = EPILOGUE_CODE[opts.epilogue ?? 'none'];
  const hasBias = opts.bias ? 1 : 0;
  const constants: PortableConstants = {
    M,
    N,
    K,
    SAM: opts.aLayout === 'mk' ? K : 1,
    SAK: opts.aLayout === 'mk' ? 1 : M,
    SBN: opts.bLayout === 'nk' ? K : 1,
    SBK: opts.bLayout === 'nk' ? 1 : N,
    HAS_BIAS: hasBias,
    EPI: epi,
    S: GELU_SCALE,
  };
  const key = `gemm:${M}:${N}:${K}:${opts.aLayout}:${opts.bLayout}:${hasBias}:${epi}`;
  const k = be.kernel(key, (gpu, s) =>
    gpu.createKernel(function (this: KernelThis<PortableConstants>, a: KernelArray, b: KernelArray, bias: KernelArray, h: KernelArray) {
      const i = this.thread.x;
      const m = Math.floor((i + 0.5) / this.constants.N);
      const n = i - m * this.constants.N;
      let sum = 0;
      if (this.constants.HAS_BIAS > 0) sum = bias[n];
      for (let k = 0; k < this.constants.K; k++) {
        sum += a[m * this.constants.SAM + k * this.constants.SAK] * b[n * this.constants.SBN + k * this.constants.SBK];
      }
      if (this.constants.EPI === 1) {
        const u = this.constants.S * (sum + 0.044715 * sum * sum * sum);
        sum = sum / (1 + 1 / Math.exp(2 * u));
      }
      if (this.constants.EPI === 2) {
        const x = h[i];
        const u2 = this.constants.S * (x + 0.044715 * x * x * x);
        const e = Math.exp(2 * u2);
        sum = sum * (1 / (1 + 1 / e) + (2 * x * this.constants.S * (1 + 3 * 0.044715 * x * x)) / (e + 2 + 1 / e));
      }
      return sum;
    }, { ...s, output: [M * N], constants }),
  );
  return k(a, b, opts.bias ?? DUMMY, opts.epilogueArg ?? DUMMY) as Tensor;
}

// ---------------------------------------------------------------- headlessgl: packed

/**
 * headlessgl (Mesa llvmpipe: fragment shaders JIT-compiled to SIMD code on the CPU cores).
 * What bounds a matmul there is texel fetches, not arithmetic: each fetch costs coordinate
 * math and a gather per SIMD lane, and gpu.js's generic accessor adds an index → texel
 * conversion (integer division and modulo) on top. So:
 *   1. pack A and B as vec4 along K into 2-D textures, one operand row per texture row
 *      (A4: K4 × M, B4: K4 × N, zero-padded), from whichever layout they are in;
 *   2. each fragment computes an RB × CB block of outputs with native GLSL that steps texel
 *      coordinates directly: per 4 values of k it fetches RB vec4s of A and CB of B and does
 *      RB·CB vec4 dot products (as `a * mat4(b0..b3)`): (RB + CB) fetches per 4·RB·CB
 *      multiply-adds. A fragment returns one vec4, so the block's RB·CB/4 vec4s leave through
 *      a gpu.js kernel map (WEBGL_draw_buffers: up to 8 render targets);
 *   3. unpack the blocks into the flat (M,N) tensor, applying bias and epilogue on the way,
 *      so they cost no pass of their own.
 * Block shapes, GFLOP/s of the whole product on this machine (n × n × n; best of 10, noisy):
 *   n = 512: 4×4 12.7, 8×4 13.8, 4×8 13.5, 2×16 11.7, 1×32 7.9;  n = 1024: 14.8, 18.4, 16.8, 12.7, 7.6
 * (and 2×2 without a kernel map: 10.5 / 12.7). 8×4 from K ≥ 512, 4×4 below. Against the
 * portable kernel the packed one wins from about 64×64×64 up (0.69 vs 0.90 ms; 512×192×64:
 * 2.1 vs 9.4 ms), so only tiny products (< 2^16 multiply-adds) stay portable, where one pass
 * and one compile beat four.
 */
export interface GemmBlock {
  /** Output rows per fragment. */
  RB: number;
  /** Output columns per fragment (a multiple of 4). */
  CB: number;
}

/** GL's texture side limit (16384 here, and in WebGL at large). */
const MAX_TEXTURE_SIDE = 16384;
const MIN_PACKED_WORK = 1 << 16;

export function pickBlock(M: number, N: number, K: number): GemmBlock | null {
  if (M * N * K < MIN_PACKED_WORK) return null;
  const block = K >= 512 ? { RB: 8, CB: 4 } : { RB: 4, CB: 4 };
  const fits = Math.ceil(K / 4) <= MAX_TEXTURE_SIDE && Math.ceil(M / block.RB) * block.RB <= MAX_TEXTURE_SIDE && Math.ceil(N / block.CB) * block.CB <= MAX_TEXTURE_SIDE;
  return fits ? block : null;
}

/** The packed, blocked gemm (headlessgl only). `block` defaults to pickBlock's choice. */
export function gemmPacked(be: Backend, a: Tensor, b: Tensor, M: number, N: number, K: number, opts: GemmOptions, block: GemmBlock = pickBlock(M, N, K) ?? { RB: 4, CB: 4 }): Tensor {
  if (be.mode !== 'headlessgl') throw new Error('gemmPacked needs headlessgl (native GLSL)');
  const { RB, CB } = block;
  if (CB % 4 !== 0 || (RB * CB) / 4 > 8) throw new Error(`gemm block ${RB}×${CB}: CB must be a multiple of 4 and RB·CB/4 ≤ 8`);
  // The native fetches read one float per texel, the layout of a kernel's 1-D output
  // (GLTextureFloat); gpu.js uploads host arrays 4 floats per texel, so upload those first.
  const temps: Tensor[] = [];
  const resident = (t: Tensor): Tensor => {
    if (!(t instanceof Float32Array)) {
      const kind = t.constructor.name;
      if (kind !== 'GLTextureFloat') throw new Error(`gemmPacked: a ${kind} operand (expected a 1-D kernel output, GLTextureFloat)`);
      return t;
    }
    const up = be.upload(t);
    temps.push(up);
    return up;
  };
  const o = { ...opts, bias: opts.bias ? resident(opts.bias) : null, epilogueArg: opts.epilogueArg ? resident(opts.epilogueArg) : undefined };
  const K4 = Math.ceil(K / 4);
  const MB = Math.ceil(M / RB);
  const NB = Math.ceil(N / CB);
  // The packed operands and the blocks are scratch: their kernels are not immutable, so each
  // renders into the texture it rendered into last time (they are consumed at once, below)
  // instead of allocating new ones per call (n = 1024: ~19 → ~25 GFLOP/s). Not released: the
  // kernels own them.
  const packedA = pack(be, 'A', resident(a), M, K, opts.aLayout === 'mk' ? K : 1, opts.aLayout === 'mk' ? 1 : M, MB * RB);
  const packedB = pack(be, 'B', resident(b), N, K, opts.bLayout === 'nk' ? K : 1, opts.bLayout === 'nk' ? 1 : N, NB * CB);
  const blocks = blockProduct(be, packedA, packedB, MB, NB, K4, RB, CB);
  const out = unpack(be, blocks, M, N, RB, CB, o);
  be.release(...temps);
  return out;
}

/**
 * Step 1: the rows × K matrix whose (r, k) element is x[r·SR + k·SK] → vec4s along K, a
 * (K4 × rowsPadded) texture. Native GLSL, because gpu.js's generic accessor (integer division
 * and modulo per element) made this pass cost a third of the whole product at n = 512: here
 * the fragment's linear index (gpu.js's `index`) and each element's texel are found with float
 * arithmetic, exact below 2^21 elements (checkFlatSize) by the same +0.5 margin as common.ts.
 */
function pack(be: Backend, role: 'A' | 'B', x: Tensor, rows: number, K: number, SR: number, SK: number, rowsPadded: number): Tensor {
  const K4 = Math.ceil(K / 4);
  // One kernel per operand role: its output texture is reused, and A's must survive B's packing.
  const k = be.kernel(`gemm.pack${role}:${rows}:${K}:${SR}:${SK}:${rowsPadded}`, (gpu, s) => {
    const fn = function (gemmSource: KernelArray) {
      return gemmPack(0);
    };
    const [src] = paramNames(fn);
    const element = (i: number) => `if (k0 + ${i}.0 < ${K}.0) v[${i}] = gemmFetch(base + ${(i * SK).toFixed(1)});`;
    return gpu.createKernel(fn, {
      ...s,
      immutable: false,
      output: [K4, rowsPadded],
      ...VEC4_RESULT,
      nativeFunctions: natives([
        {
          name: 'gemmPack',
          // gpu.js emits only the native functions a kernel calls, so the helper rides along.
          source: `float gemmFetch(float i) {
  float w = float(user_${src}Size.x);
  float y = floor((i + 0.5) / w);
  return texture2D(user_${src}, (vec2(i - y * w, y) + 0.5) / vec2(user_${src}Size)).r;
}
vec4 gemmPack(float unused) {
  float f = float(index);
  float r = floor((f + 0.5) / ${K4}.0);
  float k0 = (f - r * ${K4}.0) * 4.0;
  vec4 v = vec4(0.0);
  if (r < ${rows}.0) {
    float base = r * ${SR.toFixed(1)} + k0 * ${SK.toFixed(1)};
    ${[0, 1, 2, 3].map(element).join('\n    ')}
  }
  return v;
}`,
          settings: { returnType: 'Array(4)', argumentTypes: { unused: 'Number' } },
        },
      ]),
    });
  });
  return k(x) as Tensor;
}

/**
 * Step 2: the (NB × MB) grid of RB × CB blocks, as RB·CB/4 textures of vec4s: target
 * t = r·(CB/4) + g holds row r of the block, columns 4g … 4g+3.
 */
function blockProduct(be: Backend, packedA: Tensor, packedB: Tensor, MB: number, NB: number, K4: number, RB: number, CB: number): Tensor[] {
  const targets = (RB * CB) / 4;
  const k = be.kernel(`gemm.block:${MB}:${NB}:${K4}:${RB}x${CB}`, (gpu, s) => {
    // gpu.js reads kernel source, and the number of outputs depends on the block shape, so the
    // kernel and its sub-kernels are generated. Each sub-kernel just hands out an accumulator
    // that the native block function left in a global.
    const subKernels: Record<string, Function> = {};
    const nativeFns: NativeFunction[] = [{ name: 'gemmBlock', source: blockSource(K4, RB, CB), settings: { returnType: 'Array(4)' } }];
    for (let t = 1; t < targets; t++) {
      subKernels[`t${t}`] = new Function(`return function gemmTarget${t}(unused) { return gemmAccumulator${t}(unused); }`)();
      nativeFns.push({ name: `gemmAccumulator${t}`, source: `vec4 gemmAccumulator${t}(float unused) { return gemmAcc${t}; }`, settings: { returnType: 'Array(4)', argumentTypes: { unused: 'Number' } } });
    }
    const calls = Array.from({ length: targets - 1 }, (_, i) => `gemmTarget${i + 1}(0);`).join(' ');
    const main = new Function(`return function (gemmA, gemmB) { const first = gemmBlock(this.thread.x, this.thread.y); ${calls} return first; }`)();
    const settings = {
      ...s,
      immutable: false,
      output: [NB, MB],
      returnType: 'Array(4)' as const,
      injectedNative: Array.from({ length: targets - 1 }, (_, i) => `vec4 gemmAcc${i + 1};`).join('\n'),
      nativeFunctions: natives(nativeFns),
    };
    return (targets > 1 ? gpu.createKernelMap(subKernels as unknown as ISubKernelObject, main, settings) : gpu.createKernel(main, settings)) as unknown as IKernelRunShortcut;
  });
  const result = k(packedA, packedB) as Tensor | Record<string, Tensor>;
  if (targets === 1) return [result as Tensor];
  const map = result as Record<string, Tensor>;
  return [map.result!, ...Array.from({ length: targets - 1 }, (_, i) => map[`t${i + 1}`]!)];
}

/** GLSL for step 2: one fragment = one RB × CB block, accumulators c0 … c(targets−1). */
function blockSource(K4: number, RB: number, CB: number): string {
  const groups = CB / 4;
  const lines: string[] = [];
  for (let g = 0; g < groups; g++) {
    const cols = [0, 1, 2, 3].map((i) => `texture2D(user_gemmB, vec2(x, yb + ${(4 * g + i).toFixed(1)} * sb.y))`);
    lines.push(`mat4 b${g} = mat4(${cols.join(', ')});`);
  }
  for (let r = 0; r < RB; r++) {
    const adds = Array.from({ length: groups }, (_, g) => `c${r * groups + g} += a * b${g};`).join(' ');
    lines.push(`{ vec4 a = texture2D(user_gemmA, vec2(x, ya + ${r.toFixed(1)} * sa.y)); ${adds} }`);
  }
  const targets = RB * groups;
  return `vec4 gemmBlock(float q, float p) {
  vec2 sa = 1.0 / vec2(user_gemmASize);
  vec2 sb = 1.0 / vec2(user_gemmBSize);
  float ya = (${RB.toFixed(1)} * p + 0.5) * sa.y;
  float yb = (${CB.toFixed(1)} * q + 0.5) * sb.y;
  float x = 0.5 * sa.x;
  ${Array.from({ length: targets }, (_, t) => `vec4 c${t} = vec4(0.0);`).join('\n  ')}
  for (int j = 0; j < ${K4}; j++) {
    ${lines.join('\n    ')}
    x += sa.x;
  }
  ${Array.from({ length: targets - 1 }, (_, t) => `gemmAcc${t + 1} = c${t + 1};`).join('\n  ')}
  return c0;
}`;
}

/** Step 3: blocks → the flat (M,N) tensor, with bias and epilogue (native, for the reason pack is). */
function unpack(be: Backend, blocks: Tensor[], M: number, N: number, RB: number, CB: number, opts: GemmOptions): Tensor {
  const targets = blocks.length;
  const epi = EPILOGUE_CODE[opts.epilogue ?? 'none'];
  const hasBias = opts.bias ? 1 : 0;
  const k = be.kernel(`gemm.unpack:${M}:${N}:${RB}x${CB}:${hasBias}:${epi}`, (gpu, s) => {
    // Always 8 block arguments (the unused ones repeat the first), so one source serves all shapes.
    const fn = function (gemmBlocks0: KernelArray, gemmBlocks1: KernelArray, gemmBlocks2: KernelArray, gemmBlocks3: KernelArray, gemmBlocks4: KernelArray, gemmBlocks5: KernelArray, gemmBlocks6: KernelArray, gemmBlocks7: KernelArray, gemmBias: KernelArray, gemmPre: KernelArray) {
      return gemmUnpack(0);
    };
    const names = paramNames(fn);
    const [bias, pre] = [names[8]!, names[9]!];
    const fetches = Array.from({ length: targets }, (_, t) => `${t ? 'else ' : ''}if (t < ${t}.5) v = texture2D(user_${names[t]}, uv);`).join('\n  ');
    const flat = (tex: string, i: string) =>
      `texture2D(user_${tex}, (vec2(${i} - floor((${i} + 0.5) / float(user_${tex}Size.x)) * float(user_${tex}Size.x), floor((${i} + 0.5) / float(user_${tex}Size.x))) + 0.5) / vec2(user_${tex}Size)).r`;
    const S = GELU_SCALE.toFixed(9);
    const epilogue =
      epi === 1
        ? `sum = sum / (1.0 + exp(-2.0 * ${S} * (sum + 0.044715 * sum * sum * sum)));`
        : epi === 2
          ? `float x = ${flat(pre, 'i')};
  float e = exp(2.0 * ${S} * (x + 0.044715 * x * x * x));
  sum = sum * (1.0 / (1.0 + 1.0 / e) + (2.0 * x * ${S} * (1.0 + 3.0 * 0.044715 * x * x)) / (e + 2.0 + 1.0 / e));`
          : '';
    return gpu.createKernel(fn, {
      ...s,
      output: [M * N],
      nativeFunctions: natives([
        {
          name: 'gemmUnpack',
          source: `float gemmUnpack(float unused) {
  float i = float(index);
  float m = floor((i + 0.5) / ${N}.0);
  float n = i - m * ${N}.0;
  float p = floor((m + 0.5) / ${RB}.0);
  float q = floor((n + 0.5) / ${CB}.0);
  float col = n - q * ${CB}.0;
  float g = floor((col + 0.5) / 4.0);
  float t = (m - p * ${RB}.0) * ${CB / 4}.0 + g;
  float c = col - g * 4.0;
  vec2 uv = (vec2(q, p) + 0.5) / vec2(user_${names[0]}Size);
  vec4 v = vec4(0.0);
  ${fetches}
  float sum = c < 0.5 ? v.x : c < 1.5 ? v.y : c < 2.5 ? v.z : v.w;
  ${hasBias ? `sum += ${flat(bias, 'n')};` : ''}
  ${epilogue}
  return sum;
}`,
          settings: { returnType: 'Number', argumentTypes: { unused: 'Number' } },
        },
      ]),
    });
  });
  const args = [...blocks, ...Array.from({ length: 8 - targets }, () => blocks[0]!)];
  return k(...args, opts.bias ?? DUMMY, opts.epilogueArg ?? DUMMY) as Tensor;
}

/** Kernels that return a vec4 per thread (gpu.js accepts `returnType`; its typings do not list it). */
const VEC4_RESULT = { returnType: 'Array(4)' } as IGPUKernelSettings;

/** gpu.js takes `settings` (return and argument types) on native functions; its typings do not say so. */
interface NativeFunction {
  name: string;
  source: string;
  settings: { returnType: string; argumentTypes?: Record<string, string> };
}

function natives(fns: NativeFunction[]): IGPUKernelSettings['nativeFunctions'] {
  return fns as unknown as IGPUKernelSettings['nativeFunctions'];
}

/**
 * A kernel function's parameter names as gpu.js will see them. Native GLSL that reads a kernel
 * argument must name its uniform (`user_<name>`), and the TypeScript transform may rename
 * parameters (esbuild renames one that shadows an outer name), so ask the function itself.
 */
function paramNames(fn: Function): string[] {
  const m = /^[^(]*\(([^)]*)\)/.exec(fn.toString());
  return (m?.[1] ?? '').split(',').map((p) => p.replace(/\/\*.*?\*\//g, '').replace(/:.*$/, '').trim()).filter(Boolean);
}

// Native GLSL functions that the kernels above call (never run as JavaScript).
declare function gemmPack(unused: number): number[];
declare function gemmUnpack(unused: number): number;
