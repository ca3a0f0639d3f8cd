/**
 * Test support for the kernel tests (not exported from the package): deterministic inputs,
 * the backends to run on, and finite-difference gradient checks of the references.
 *
 * Backends: every mode that works here. headlessgl needs an X display; the tests start their
 * own Xvfb (`startVirtualDisplay`, one per test file, gone with the process) unless DISPLAY
 * is already set, so `npm test`, `npx vitest run` and an IDE all get it without `xvfb-run`.
 * Under CI (`process.env.CI`) a mode that setup should have provided (headlessgl: `gl` built
 * and Xvfb installed; webasm; cpu) and that does not work is a failing test, not a skip.
 */
import { afterAll, expect, it } from 'vitest';
import { mulberry32 } from '../rng.ts';
import { Backend, GPU_MODES, probeModes, startVirtualDisplay, type GpuMode, type Tensor } from './backend.ts';
import type { Floats } from './common.ts';
import { assertClose, type Tolerance } from './validate.ts';

export interface TestBackends {
  backends: Backend[];
  missing: { mode: GpuMode; detail: string }[];
}

let shared: Promise<TestBackends> | undefined;

/** The usable backends (created once per test file) and the modes that are not usable. */
export function testBackends(): Promise<TestBackends> {
  shared ??= (async () => {
    // Not stopped after the file: it dies with the test process (see startVirtualDisplay), and
    // a process that runs several test files (vitest without isolation) keeps using it.
    await startVirtualDisplay();
    const probes = probeModes();
    const backends = probes.filter((p) => p.available).map((p) => new Backend(p.mode, p.detail));
    afterAll(() => {
      for (const be of backends) be.destroy();
    });
    return { backends, missing: probes.filter((p) => !p.available).map(({ mode, detail }) => ({ mode, detail })) };
  })();
  return shared;
}

/** One test per missing mode: failing under CI, skipped elsewhere (with the reason in its name). */
export function reportMissingModes(missing: TestBackends['missing']): void {
  for (const m of missing) {
    if (process.env.CI) {
      it(`gpu.js mode ${m.mode} is available`, () => expect.fail(`${m.mode} is not usable under CI: ${m.detail}`));
    } else {
      it.skip(`gpu.js mode ${m.mode} (not usable here: ${m.detail})`, () => {});
    }
  }
}

export const ALL_MODES = GPU_MODES;

// ---------------------------------------------------------------- inputs

/** Deterministic uniform numbers in [0, 1) (mulberry32). */
export const rng = mulberry32;

/** n numbers uniform in [-scale, scale), as float32. */
export function randn(n: number, seed: number, scale = 1): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (r() * 2 - 1) * scale;
  return out;
}

export function randInts(n: number, below: number, seed: number): Int32Array {
  const r = rng(seed);
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.floor(r() * below);
  return out;
}

export const f64 = (x: ArrayLike<number>) => Float64Array.from(x);

/** Reads a kernel's output, checks it against the reference and frees it. */
export function expectClose(be: Backend, what: string, got: Tensor, ref: ArrayLike<number>, tol: Tolerance): void {
  const values = be.read(got);
  be.release(got);
  assertClose(`${be.mode} ${what}`, values, ref, tol);
}

// ---------------------------------------------------------------- gradient checks

/**
 * Central differences of a scalar loss L(x) = Σ w·f(x) (w fixed random weights, so every
 * output matters) in float64, against the analytic gradient of the same loss.
 * `loss(x)` evaluates L with x in place; `grad()` returns dL/dx from the reference backward.
 * Checks `count` coordinates (spread over x) to keep it fast.
 */
export function gradCheck(
  what: string,
  x: Float64Array,
  loss: () => number,
  analytic: Floats,
  opts: { eps?: number; count?: number; tol?: Tolerance } = {},
): void {
  const eps = opts.eps ?? 1e-6;
  const count = Math.min(opts.count ?? 24, x.length);
  const tol = opts.tol ?? { atol: 1e-6, rtol: 1e-5 };
  const idx: number[] = [];
  for (let j = 0; j < count; j++) idx.push(Math.floor((j * x.length) / count + (j % 3)) % x.length);
  const numeric: number[] = [];
  const exact: number[] = [];
  for (const i of idx) {
    const x0 = x[i]!;
    x[i] = x0 + eps;
    const lp = loss();
    x[i] = x0 - eps;
    const lm = loss();
    x[i] = x0;
    numeric.push((lp - lm) / (2 * eps));
    exact.push(analytic[i]!);
  }
  assertClose(`${what} (finite differences at ${count} coordinates)`, exact, numeric, tol);
}

/** Σ w·y: the scalar the gradient checks differentiate. */
export function weightedSum(y: ArrayLike<number>, w: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < y.length; i++) s += y[i]! * w[i]!;
  return s;
}
