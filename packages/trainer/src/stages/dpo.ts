import type { OptimizerConfig } from '../config.ts';
import { EOS } from '../data/data.ts';
import type { Model } from '../model/model.ts';
import { lastLogits, logSoftmax, type LogitsModel } from '../model/sampling.ts';

/**
 * DPO (Rafailov et al. 2023) on single-token pairs, as PTS makes them: at query q the policy π
 * should prefer token a over token r more than the frozen reference π_ref does.
 *
 *   z_i    = β·[(log π(a|q) − log π_ref(a|q)) − (log π(r|q) − log π_ref(r|q))]
 *   loss   = (1/N) Σ_i −log σ(z_i)                      N = pairs
 *
 * The gradient goes through the model's own cross-entropy backward. With CE_a = −log π(a|q):
 *   d(−log σ(z))/dz = −σ(−z),  dz/dCE_a = −β,  dz/dCE_r = +β
 *   ⇒ dloss/dCE_a = +β·σ(−z)/N,  dloss/dCE_r = −β·σ(−z)/N
 * so one `forwardBackward` over two rows per pair (same query; target a on one row, r on the
 * other, at the query's last position, −1 elsewhere) with those as the per-position weights
 * accumulates exactly dloss/dθ: lowering CE_a (raising π(a)) lowers the loss, and the negative
 * weight pushes π(r) down.
 *
 * An NLL term on the accepted answer (RPO, Pang et al. 2024: "Iterative Reasoning Preference
 * Optimization") adds α·(1/N) Σ_i CE_a,i to the loss, so α/N to the accepted row's weight; α = 0
 * (the default) is plain DPO, the report's setting.
 *
 * Legend: N = pairs, B = batch rows (2N for the backward), T = longest query, V = vocab.
 */

/** A preference at one query between two single next tokens. */
export interface DpoPair {
  query: number[];
  accepted: number;
  rejected: number;
}

/** log π(a|q) and log π(r|q) for each pair, (N) each. */
export interface PairLogProbs {
  accepted: Float64Array; // (N)
  rejected: Float64Array; // (N)
}

/** The policy's log-probabilities of both answers of every pair: one forward, B = N. */
export function pairLogProbs(model: LogitsModel, pairs: readonly DpoPair[]): PairLogProbs {
  const rows = lastLogits(
    model,
    pairs.map((p) => p.query),
  ); // (N) × (V)
  const accepted = new Float64Array(pairs.length);
  const rejected = new Float64Array(pairs.length);
  rows.forEach((row, i) => {
    const lp = logSoftmax(row); // (V)
    accepted[i] = lp[pairs[i]!.accepted]!;
    rejected[i] = lp[pairs[i]!.rejected]!;
  });
  return { accepted, rejected };
}

/** The reference's log-probabilities: call once, on the starting model, before any dpoStep. */
export function referenceLogProbs(model: LogitsModel, pairs: readonly DpoPair[]): PairLogProbs {
  return pairLogProbs(model, pairs);
}

export interface DpoStats {
  loss: number; // mean −log σ(z) (the NLL term not included)
  nll: number; // mean −log π(a|q): what the NLL term weighs
  accuracy: number; // share of pairs with z > 0
  margin: number; // mean z = β·(implicit reward of a − that of r), TRL's rewards/margins
}

/** −log σ(z) without overflow. */
const softplusNeg = (z: number) => (z > 0 ? Math.log1p(Math.exp(-z)) : -z + Math.log1p(Math.exp(z)));
const sigmoid = (z: number) => (z >= 0 ? 1 / (1 + Math.exp(-z)) : Math.exp(z) / (1 + Math.exp(z)));

/** z (N) from the policy's and the reference's log-probabilities. */
export function dpoMargins(policy: PairLogProbs, ref: PairLogProbs, beta: number): Float64Array {
  const z = new Float64Array(policy.accepted.length); // (N)
  for (let i = 0; i < z.length; i++) z[i] = beta * (policy.accepted[i]! - ref.accepted[i]! - (policy.rejected[i]! - ref.rejected[i]!));
  return z;
}

function statsOf(z: Float64Array, policy: PairLogProbs): DpoStats {
  const N = z.length;
  let nll = 0;
  for (const lp of policy.accepted) nll -= lp;
  let loss = 0;
  let right = 0;
  let margin = 0;
  for (const zi of z) {
    loss += softplusNeg(zi);
    right += zi > 0 ? 1 : 0;
    margin += zi;
  }
  return { loss: loss / N, nll: nll / N, accuracy: right / N, margin: margin / N };
}

/** The DPO loss, accuracy and margin of the current policy (no gradients). */
export function dpoEvaluate(model: LogitsModel, pairs: readonly DpoPair[], ref: PairLogProbs, beta: number): DpoStats {
  const policy = pairLogProbs(model, pairs);
  return statsOf(dpoMargins(policy, ref, beta), policy);
}

/**
 * The two-row batch of DPO's backward: rows 2i (target a) and 2i+1 (target r) hold query i
 * right-padded with EOS; the target sits at the query's last position, −1 elsewhere; weights
 * +β·σ(−z_i)/N + α/N and −β·σ(−z_i)/N there (α: the NLL term's weight), 0 elsewhere.
 */
export function dpoBatch(pairs: readonly DpoPair[], z: Float64Array, beta: number, nll = 0): { inputs: Int32Array; targets: Int32Array; weights: Float32Array; B: number; T: number } {
  const N = pairs.length;
  const B = 2 * N;
  const T = Math.max(...pairs.map((p) => p.query.length));
  const inputs = new Int32Array(B * T).fill(EOS); // (B,T)
  const targets = new Int32Array(B * T).fill(-1); // (B,T)
  const weights = new Float32Array(B * T); // (B,T)
  pairs.forEach((p, i) => {
    const w = (beta * sigmoid(-z[i]!)) / N;
    const last = p.query.length - 1;
    for (const [row, target, sign] of [
      [2 * i, p.accepted, 1],
      [2 * i + 1, p.rejected, -1],
    ] as const) {
      inputs.set(p.query, row * T);
      targets[row * T + last] = target;
      weights[row * T + last] = sign * w + (sign > 0 ? nll / N : 0);
    }
  });
  return { inputs, targets, weights, B, T };
}

export type DpoModel = LogitsModel & Pick<Model, 'forwardBackward' | 'step'>;

/** Accumulates dloss/dθ into the model's gradients; returns the stats before the update. */
export function dpoBackward(model: DpoModel, pairs: readonly DpoPair[], ref: PairLogProbs, beta: number, nll = 0): DpoStats {
  if (pairs.length === 0) throw new Error('DPO needs at least one pair');
  const policy = pairLogProbs(model, pairs);
  const z = dpoMargins(policy, ref, beta); // (N)
  const { inputs, targets, weights, B, T } = dpoBatch(pairs, z, beta, nll);
  model.forwardBackward(inputs, targets, B, T, weights);
  return statsOf(z, policy);
}

export interface DpoStepOptions {
  beta: number; // DPO's β (the toy: ~0.1–0.5)
  /** α, the NLL term's weight (RPO); 0 or absent: plain DPO. */
  nll?: number;
  lr: number;
  t: number; // update count from 1 (AdamW bias correction)
  optimizer: OptimizerConfig;
}

/** One DPO update over `pairs`; the stats are the policy's before it. */
export function dpoStep(model: DpoModel, pairs: readonly DpoPair[], ref: PairLogProbs, opts: DpoStepOptions): DpoStats {
  const stats = dpoBackward(model, pairs, ref, opts.beta, opts.nll ?? 0);
  model.step(opts.lr, opts.t, opts.optimizer);
  return stats;
}
