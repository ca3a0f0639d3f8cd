import { EOS } from '../data/data.ts';
import { Rng, sampleCumulative } from '../rng.ts';

/**
 * Sampling from a model's next-token distribution: rollouts for PTS's success oracle,
 * candidate next tokens for its DPO pairs, and the log-probabilities DPO compares.
 *
 * No KV cache: each step runs the whole (B,T) prefix again and reads only the last
 * position's logits. The toy's sequences are a few dozen tokens, so this stays cheap and
 * keeps the model's interface to one `logits` call.
 *
 * Legend: B = batch (rollouts or queries), T = time, V = vocab, P = prompt length.
 */

/** All sampling needs from a model: logits (B,T,V) for a batch of token rows. TransformerModel has it. */
export interface LogitsModel {
  logits(inputs: Int32Array, B: number, T: number): Float32Array;
}

export interface SampleOptions {
  /** Tokens to generate at most per completion (the stop token counts). */
  maxTokens: number;
  /** Softmax temperature; 0 is greedy (argmax, lowest id on a tie; draws nothing from `rng`). Default 1. */
  temperature?: number;
  /** Where the draws come from; one uniform per active rollout per step, in row order. */
  rng: Rng;
  /** A completion ends after this token (included). Default EOS. */
  stopAt?: number;
}

/** Index of the largest of row[0..V) (the first on a tie). */
export function argmax(row: ArrayLike<number>): number {
  let best = 0;
  for (let v = 1; v < row.length; v++) if (row[v]! > row[best]!) best = v;
  return best;
}

/** log softmax of one row (V), in float64. */
export function logSoftmax(row: ArrayLike<number>): Float64Array {
  const V = row.length;
  let max = -Infinity;
  for (let v = 0; v < V; v++) max = Math.max(max, row[v]!);
  let sum = 0;
  for (let v = 0; v < V; v++) sum += Math.exp(row[v]! - max);
  const logZ = max + Math.log(sum);
  const out = new Float64Array(V); // (V)
  for (let v = 0; v < V; v++) out[v] = row[v]! - logZ;
  return out;
}

/** One token from softmax(row / temperature); temperature 0 is argmax. */
export function sampleToken(row: ArrayLike<number>, temperature: number, rng: Rng): number {
  if (temperature === 0) return argmax(row);
  const V = row.length;
  let max = -Infinity;
  for (let v = 0; v < V; v++) max = Math.max(max, row[v]!);
  const cumulative = new Float64Array(V); // (V) running sums of exp((logit − max)/temperature)
  let sum = 0;
  for (let v = 0; v < V; v++) {
    sum += Math.exp((row[v]! - max) / temperature);
    cumulative[v] = sum;
  }
  return sampleCumulative(cumulative, rng);
}

/**
 * The logits (V) at each row's last token, for rows of different lengths in one batch:
 * rows are right-padded with EOS, which causal attention keeps from reaching earlier positions.
 */
export function lastLogits(model: LogitsModel, rows: readonly (readonly number[])[]): Float32Array[] {
  const B = rows.length;
  if (B === 0) return [];
  if (rows.some((r) => r.length === 0)) throw new Error('every row needs at least one token');
  const T = Math.max(...rows.map((r) => r.length));
  const inputs = new Int32Array(B * T).fill(EOS); // (B,T)
  rows.forEach((r, b) => inputs.set(r, b * T));
  const logits = model.logits(inputs, B, T); // (B,T,V)
  const V = logits.length / (B * T);
  return rows.map((r, b) => logits.subarray((b * T + r.length - 1) * V, (b * T + r.length) * V)); // (V) each
}

/** log p(tokens[i] | queries[i]) for each i, one batch (queries of any lengths). */
export function tokenLogProbs(model: LogitsModel, queries: readonly (readonly number[])[], tokens: readonly number[]): number[] {
  if (queries.length !== tokens.length) throw new Error(`${queries.length} queries but ${tokens.length} tokens`);
  return lastLogits(model, queries).map((row, i) => logSoftmax(row)[tokens[i]!]!);
}

/**
 * n completions of `prompt` (without it; the stop token included when reached), sampled as one
 * batch: every step appends one token to each unfinished rollout and runs the batch of those at
 * length P + step. Finished rollouts leave the batch, so B shrinks from n as they stop.
 */
export function sampleCompletions(model: LogitsModel, prompt: readonly number[], n: number, opts: SampleOptions): number[][] {
  const { maxTokens, rng } = opts;
  const temperature = opts.temperature ?? 1;
  const stopAt = opts.stopAt ?? EOS;
  if (prompt.length === 0) throw new Error('sampling needs a non-empty prompt');
  if (!(temperature >= 0)) throw new Error(`temperature must be ≥ 0, got ${temperature}`);
  const completions: number[][] = Array.from({ length: n }, () => []);
  let active = completions.map((_, i) => i); // rollouts still generating, in row order
  for (let step = 0; step < maxTokens && active.length > 0; step++) {
    const B = active.length;
    const T = prompt.length + step;
    const inputs = new Int32Array(B * T); // (B,T)
    active.forEach((i, b) => {
      inputs.set(prompt, b * T);
      inputs.set(completions[i]!, b * T + prompt.length);
    });
    const logits = model.logits(inputs, B, T); // (B,T,V)
    const V = logits.length / (B * T);
    active.forEach((i, b) => {
      const last = logits.subarray((b * T + T - 1) * V, (b * T + T) * V); // (V)
      completions[i]!.push(sampleToken(last, temperature, rng));
    });
    active = active.filter((i) => completions[i]!.at(-1) !== stopAt);
  }
  return completions;
}

/** The argmax completion of `prompt` (temperature 0). */
export function greedyCompletion(model: LogitsModel, prompt: readonly number[], maxTokens: number, stopAt: number = EOS): number[] {
  return sampleCompletions(model, prompt, 1, { maxTokens, temperature: 0, rng: new Rng(0), stopAt })[0]!;
}
