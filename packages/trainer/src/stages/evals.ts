import { arithmeticQuestion, arithmeticQuestionOf, checkArithmetic, getBatch, kvDocument, kvPairsIn, type DataMix, type KvFormat } from '../data/data.ts';
import type { Model } from '../model/model.ts';
import { argmax, greedyCompletion, sampleCompletions, type LogitsModel } from '../model/sampling.ts';
import { TransformerModel } from '../model/transformer.ts';
import { deriveSeed, Rng } from '../rng.ts';

/**
 * The toy recipe's evals (docs/trainer.md), each a number a run records with
 * `run.eval`:
 *   recall            HELMET JSON-KV style: a document of random key–value
 *                     pairs filling the context, queries at evenly spaced
 *                     depths asked in a shuffled order; exact match of every
 *                     value token (percent). In document order as a diagnostic.
 *   short-context     held-out loss of the pretraining mix at the pretraining
 *                     context (does long-context training cost short skills?).
 *   arithmetic        pass rate (percent) of greedy answers to held-out
 *                     additions, checked by `checkArithmetic`.
 *
 * Legend: B = batch, T = time (context), V = vocab.
 */

/**
 * The model to evaluate with: the model itself on the plain-TypeScript path;
 * for a gpu.js model, a plain-TypeScript copy of its weights. Evals run many
 * shapes (every prompt length, batch, 8× the context), and gpu.js compiles
 * kernels per shape, and its attention holds at most 2^21 scores.
 */
export function evaluator(model: Model): Model & LogitsModel {
  if (!model.logits) throw new Error(`model ${model.backend} has no logits: the recipe's evals need the transformer`);
  if (!model.backend.startsWith('gpu.js')) return model as Model & LogitsModel;
  model.syncToHost?.();
  const copy = new TransformerModel(model.config, { mode: 'reference' });
  const weights = model.parameters();
  copy.parameters().forEach((p, i) => p.data.set(weights[i]!.data));
  return copy;
}

export interface RecallOptions {
  /** Documents per context length. */
  docs: number;
  queries?: number;
  keyLength?: number;
  valueLength?: number;
  /** How values are drawn (KvFormat): `digits`, or distinct `words` (chance ≈ 1/words). */
  values?: KvFormat['values'];
  /** How pairs are written (KvFormat): KEY k VAL v, or KEY k v. */
  layout?: KvFormat['layout'];
  seed?: number;
}

export interface RecallResult {
  contextLength: number;
  /**
   * Percent of queries whose every value token the model predicts exactly
   * (greedy, teacher-forced), the queries asked in a shuffled order: THE
   * recall number (a model cannot score by answering from a position).
   */
  score: number;
  /** The same documents with the queries in document order: a diagnostic (position alone can score here). */
  inOrder?: number;
  /** Queries asked (per order). */
  n: number;
}

/**
 * Recall at each context length: teacher-forced, so "every answer token is
 * the argmax given the true tokens before it", which is exactly what a greedy
 * decode of the answer would produce. Each document is asked twice from the
 * same pairs: queries shuffled (the score) and in document order (`inOrder`).
 */
export function recallEval(model: Model, contexts: readonly number[], opts: RecallOptions): RecallResult[] {
  const { docs, queries = 4, keyLength = 2, valueLength = 2, values = 'digits', layout = 'key-val', seed = 4242 } = opts;
  const V = model.config.vocab;
  const m = evaluator(model);
  return contexts.map((L) => {
    const pairs = kvPairsIn(L, queries, keyLength, valueLength, layout);
    if (pairs < queries) throw new Error(`recall at ${L} tokens: too short for ${queries} queries`);
    const exactAnswers = (order: 'shuffled' | 'document') => {
      let hit = 0;
      let asked = 0;
      for (let d = 0; d < docs; d++) {
        // the same seed for both orders: the same pairs, asked in another order
        const doc = kvDocument(pairs, queries, keyLength, valueLength, new Rng(deriveSeed(seed, 'recall', String(L), String(d))), V, { values, order, layout });
        const T = doc.tokens.length;
        const logits = m.logits(doc.tokens, 1, T); // (1,T,V): one document at a time, at 8× the context one attention matrix is already large
        for (const a of doc.answers) {
          let exact = true;
          for (let i = 0; i < a.length; i++) {
            const pos = a.at + i - 1; // predicts the token at a.at + i
            if (argmax(logits.subarray(pos * V, (pos + 1) * V)) !== doc.tokens[a.at + i]) exact = false;
          }
          if (exact) hit++;
          asked++;
        }
      }
      return { score: (100 * hit) / asked, n: asked };
    };
    const shuffled = exactAnswers('shuffled');
    return { contextLength: L, score: shuffled.score, inOrder: exactAnswers('document').score, n: shuffled.n };
  });
}

/** Mean held-out loss over `batches` fixed batches of (B, T) from a mix (the same batches every call). */
export function mixLoss(model: Model, mix: DataMix, B: number, T: number, batches: number, seed: number): number {
  const m = evaluator(model);
  const rng = new Rng(deriveSeed(seed, 'short-context-loss'));
  let sum = 0;
  for (let i = 0; i < batches; i++) {
    const batch = getBatch(mix, B, T, rng);
    sum += m.evaluate(batch.inputs, batch.targets, B, T);
  }
  return sum / batches;
}

/**
 * Addition questions (`a + b =`), distinct: every one of them when `count`
 * covers the space (one digit: the 100 sums), else a seeded sample. The PTS
 * stage and the pass rate draw theirs from different seeds.
 */
export function arithmeticQuestions(count: number, digits: number, seed: number, vocab: number): number[][] {
  const space = 10 ** (2 * digits);
  const rng = new Rng(deriveSeed(seed, 'arithmetic-questions'));
  if (space > 1e6) return Array.from({ length: count }, () => arithmeticQuestion(digits, rng, vocab));
  const order = Array.from({ length: space }, (_, i) => i);
  for (let i = space - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  const picked = count >= space ? Array.from({ length: space }, (_, i) => i) : order.slice(0, count);
  const base = 10 ** digits;
  return picked.map((n) => arithmeticQuestionOf(Math.floor(n / base), n % base));
}

/** Percent of questions whose greedy answer (up to EOS or `maxTokens`) `checkArithmetic` accepts. */
export function arithmeticPassRate(model: Model, questions: readonly number[][], maxTokens = 6): { score: number; n: number } {
  const m = evaluator(model);
  const passed = questions.filter((q) => checkArithmetic([...q, ...greedyCompletion(m, q, maxTokens)])).length;
  return { score: (100 * passed) / questions.length, n: questions.length };
}

/**
 * Percent of sampled answers (temperature 1, `samples` per question) that
 * `checkArithmetic` accepts: the mean p(success) PTS works with, which moves
 * before a greedy answer flips.
 */
export function arithmeticSampledPassRate(model: Model, questions: readonly number[][], opts: { samples?: number; seed?: number; maxTokens?: number } = {}): { score: number; n: number } {
  const { samples = 8, seed = 99, maxTokens = 6 } = opts;
  const m = evaluator(model);
  const rng = new Rng(deriveSeed(seed, 'arithmetic-sampled'));
  let passed = 0;
  for (const q of questions) passed += sampleCompletions(m, q, samples, { maxTokens, rng }).filter((c) => checkArithmetic([...q, ...c])).length;
  return { score: (100 * passed) / (samples * questions.length), n: samples * questions.length };
}

/** The evals a stage of the recipe records, by name, in one place (the recipe and results.md read them). */
export interface StageEvals {
  recall?: RecallResult[];
  shortContextLoss?: number;
  arithmetic?: { score: number; n: number };
  arithmeticSampled?: { score: number; n: number };
}

export const EVAL_SUITE = 'toy-recipe';

/** `run.eval` inputs for a stage's evals. */
export function evalEvents(evals: StageEvals, step: number): { suite: string; task: string; score: number; contextLength?: number; n?: number; step: number }[] {
  const out: ReturnType<typeof evalEvents> = [];
  for (const r of evals.recall ?? []) {
    out.push({ suite: EVAL_SUITE, task: 'kv-recall', contextLength: r.contextLength, score: round(r.score), n: r.n, step });
    if (r.inOrder !== undefined) out.push({ suite: EVAL_SUITE, task: 'kv-recall-in-order', contextLength: r.contextLength, score: round(r.inOrder), n: r.n, step });
  }
  if (evals.shortContextLoss !== undefined) out.push({ suite: EVAL_SUITE, task: 'short-context-loss', score: round(evals.shortContextLoss), step });
  if (evals.arithmetic) out.push({ suite: EVAL_SUITE, task: 'arithmetic-pass', score: round(evals.arithmetic.score), n: evals.arithmetic.n, step });
  if (evals.arithmeticSampled) out.push({ suite: EVAL_SUITE, task: 'arithmetic-pass-sampled', score: round(evals.arithmeticSampled.score), n: evals.arithmeticSampled.n, step });
  return out;
}

const round = (x: number) => Number(x.toFixed(4));

