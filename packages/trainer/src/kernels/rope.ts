/**
 * Rotary position embedding (RoPE), the half-split convention (GPT-NeoX, Hugging Face Llama):
 * within each head, channel i < HS/2 and channel i + HS/2 form a pair rotated by
 *   θ(pos, i) = pos · base^(−2i/HS):
 *   y[i]        = x[i]·cos θ − x[i+HS/2]·sin θ
 *   y[i+HS/2]   = x[i+HS/2]·cos θ + x[i]·sin θ
 * Attention scores then depend only on relative positions. Nothing here is learned or sized
 * by a training length: the angles are computed for whatever positions are asked for (any T,
 * any `posOffset`), in float64 on the host, so large positions do not lose the float32
 * precision that pos·freq would in a shader.
 *
 * Shapes: B = batch, T = time, NH = heads, HS = head size (even).
 *   x (B,T,NH,HS); table (T,HS): cos θ(t, i) at [t, i], sin θ(t, i) at [t, HS/2 + i].
 */
import type { Floats } from './common.ts';

export interface RopeOptions {
  /** Frequency base; 10000 as in the RoPE paper. Larger bases stretch the wavelengths. */
  base?: number;
  /** Position of the first time step (positions are posOffset … posOffset + T − 1). */
  posOffset?: number;
}

export const ROPE_BASE = 10_000;

const tables = new Map<string, Float32Array>();

/** cos/sin table (T,HS) for positions posOffset … posOffset+T−1 (cached; do not modify). */
export function ropeTable(T: number, HS: number, opts: RopeOptions = {}): Float32Array {
  if (HS % 2 !== 0) throw new Error(`RoPE needs an even head size, got ${HS}`);
  const base = opts.base ?? ROPE_BASE;
  const offset = opts.posOffset ?? 0;
  const key = `${T}:${HS}:${base}:${offset}`;
  let table = tables.get(key);
  if (!table) {
    const half = HS / 2;
    table = new Float32Array(T * HS);
    for (let t = 0; t < T; t++) {
      for (let i = 0; i < half; i++) {
        const theta = (offset + t) * base ** ((-2 * i) / HS);
        table[t * HS + i] = Math.cos(theta);
        table[t * HS + half + i] = Math.sin(theta);
      }
    }
    if (tables.size > 64) tables.clear();
    tables.set(key, table);
  }
  return table;
}

/** out = rope(x); x, out (B,T,NH,HS). In float64 when x is (angles from the float64 formula). */
export function ropeForwardRef(out: Floats, x: Floats, B: number, T: number, NH: number, HS: number, opts: RopeOptions = {}): void {
  rotate(out, x, B, T, NH, HS, opts, 1);
}

/** Accumulates dx += ropeᵀ(dout): the rotation by −θ. */
export function ropeBackwardRef(dx: Floats, dout: Floats, B: number, T: number, NH: number, HS: number, opts: RopeOptions = {}): void {
  const tmp = new Float64Array(dx.length);
  rotate(tmp, dout, B, T, NH, HS, opts, -1);
  for (let i = 0; i < dx.length; i++) dx[i]! += tmp[i]!;
}

/**
 * cos θ and sin θ for every (position, pair) a rotation uses, θ = (offset + t)·base^(−2i/HS):
 * the same expression the loop below evaluated inline, computed once per shape (a training run
 * uses one or two), so the numbers are bit for bit the same. Cached, a few shapes at most.
 */
const ANGLES = new Map<string, { cos: Float64Array; sin: Float64Array }>();
const ANGLES_CACHED = 16;

function angles(T: number, HS: number, base: number, offset: number): { cos: Float64Array; sin: Float64Array } {
  const key = `${T}|${HS}|${base}|${offset}`;
  let a = ANGLES.get(key);
  if (!a) {
    const half = HS / 2;
    a = { cos: new Float64Array(T * half), sin: new Float64Array(T * half) }; // (T, HS/2)
    for (let t = 0; t < T; t++) {
      for (let i = 0; i < half; i++) {
        const theta = (offset + t) * base ** ((-2 * i) / HS);
        a.cos[t * half + i] = Math.cos(theta);
        a.sin[t * half + i] = Math.sin(theta);
      }
    }
    if (ANGLES.size >= ANGLES_CACHED) ANGLES.clear();
    ANGLES.set(key, a);
  }
  return a;
}

function rotate(out: Floats, x: Floats, B: number, T: number, NH: number, HS: number, opts: RopeOptions, sign: 1 | -1): void {
  const base = opts.base ?? ROPE_BASE;
  const offset = opts.posOffset ?? 0;
  const half = HS / 2;
  const { cos: cosT, sin: sinT } = angles(T, HS, base, offset);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      for (let h = 0; h < NH; h++) {
        const o = ((b * T + t) * NH + h) * HS;
        for (let i = 0; i < half; i++) {
          const cos = cosT[t * half + i]!;
          const sin = sign * sinT[t * half + i]!;
          const xa = x[o + i]!;
          const xb = x[o + half + i]!;
          out[o + i] = xa * cos - xb * sin;
          out[o + half + i] = xb * cos + xa * sin;
        }
      }
    }
  }
}
