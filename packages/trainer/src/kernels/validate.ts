/**
 * Checking a fast kernel against its reference (llm.c dev/cuda `validate_result`, tinygrad
 * `helper_test_op`): element i passes when |got − ref| ≤ atol + rtol·|ref|.
 */
export interface Tolerance {
  atol: number;
  rtol: number;
}

export interface Mismatch {
  ok: boolean;
  /** How many elements fail. */
  bad: number;
  /** The worst element: index, values, and its error as a fraction of its allowance. */
  worst: { index: number; got: number; ref: number; ratio: number };
  maxAbsErr: number;
}

export function compareArrays(got: ArrayLike<number>, ref: ArrayLike<number>, tol: Tolerance): Mismatch {
  if (got.length !== ref.length) throw new Error(`length ${got.length} vs reference ${ref.length}`);
  let bad = 0;
  let maxAbsErr = 0;
  let worst = { index: -1, got: NaN, ref: NaN, ratio: 0 };
  for (let i = 0; i < ref.length; i++) {
    const g = got[i]!;
    const r = ref[i]!;
    const err = Math.abs(g - r);
    const ratio = Number.isNaN(err) ? Infinity : err / (tol.atol + tol.rtol * Math.abs(r));
    if (ratio > 1) bad++;
    if (err > maxAbsErr || Number.isNaN(err)) maxAbsErr = Number.isNaN(err) ? NaN : err;
    if (ratio > worst.ratio || worst.index < 0) worst = { index: i, got: g, ref: r, ratio };
  }
  return { ok: bad === 0, bad, worst, maxAbsErr };
}

/** Throws with the worst element when any element is out of tolerance. */
export function assertClose(what: string, got: ArrayLike<number>, ref: ArrayLike<number>, tol: Tolerance): Mismatch {
  const m = compareArrays(got, ref, tol);
  if (!m.ok) {
    const w = m.worst;
    throw new Error(
      `${what}: ${m.bad}/${ref.length} elements out of tolerance (atol ${tol.atol}, rtol ${tol.rtol}); ` +
        `worst [${w.index}] got ${w.got} ref ${w.ref} (${w.ratio.toFixed(1)}× the allowance)`,
    );
  }
  return m;
}
