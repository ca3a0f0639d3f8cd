import type { Pedigree } from '@pedigree/client';
import { DataFilter as StoredDataFilter, WEIGHT_TOLERANCE } from '@pedigree/client';
import { z } from 'zod';
import { deriveSeed, Rng, sampleCumulative } from '../rng.ts';

/**
 * Synthetic data over a small vocabulary, generated from seeds so that every
 * run can name its data exactly (generator + params + seed) and replay it.
 *
 * Legend: V = vocabulary size, B = batch (sequences), T = context (tokens
 * a sequence is trained on); a training sequence holds T + 1 tokens, inputs
 * are its first T and targets its last T.
 *
 * Vocabulary: 0 ends a document; 1–6 mark structure; 7–16 are the digits;
 * 17…V−1 are "words", the synthetic language's tokens.
 */
export const EOS = 0;
export const KEY = 1;
export const VAL = 2;
export const QUERY = 3;
export const ANSWER = 4;
export const PLUS = 5;
export const EQUALS = 6;
export const DIGIT0 = 7;
export const FIRST_WORD = 17;

const wordCount = (vocab: number) => vocab - FIRST_WORD;

// ------------------------------------------------------------------ generators

/** A grammar: each word has a few likely successors (a sparse Markov chain), so text is learnable. */
interface Grammar {
  successors: Int32Array[]; // [words][branching]: word indices
  cumulative: Float64Array[]; // [words][branching]: running sums of their probabilities
}

const grammars = new Map<string, Grammar>();

function grammar(vocab: number, seed: number, branching: number): Grammar {
  const key = `${vocab}/${seed}/${branching}`;
  let g = grammars.get(key);
  if (!g) {
    const rng = new Rng(deriveSeed(seed, 'grammar'));
    const words = wordCount(vocab);
    g = { successors: [], cumulative: [] };
    for (let w = 0; w < words; w++) {
      const next = new Int32Array(branching);
      const cum = new Float64Array(branching);
      let total = 0;
      for (let b = 0; b < branching; b++) {
        next[b] = rng.int(words);
        total += 0.2 + rng.float();
        cum[b] = total;
      }
      g.successors.push(next);
      g.cumulative.push(cum);
    }
    grammars.set(key, g);
  }
  return g;
}

/** `length` tokens of the synthetic language, starting from a random word. */
function speak(out: number[], length: number, g: Grammar, rng: Rng): void {
  let w = rng.int(g.successors.length);
  for (let i = 0; i < length; i++) {
    out.push(FIRST_WORD + w);
    w = g.successors[w]![sampleCumulative(g.cumulative[w]!, rng)]!;
  }
}

const digitsOf = (n: number, width: number) => String(n).padStart(width, '0').split('').map((d) => DIGIT0 + Number(d));

const Language = {
  minLength: z.number().int().min(1).default(16),
  maxLength: z.number().int().min(1).default(96),
  branching: z.number().int().min(1).max(64).default(3), // successors per word: lower is more predictable
  grammarSeed: z.number().int().min(0).default(1), // sources with the same grammar speak the same language
};
const lengthOrdered = (p: { minLength: number; maxLength: number }) => p.minLength <= p.maxLength;
const LENGTHS = { message: 'minLength must not exceed maxLength', path: ['minLength'] };

export interface Generator<P> {
  description: string;
  params: z.ZodType<P, unknown>;
  /** One document (no EOS: the mix adds it between documents). */
  generate(params: P, rng: Rng, vocab: number): Int32Array;
  /** The smallest vocabulary these params can be generated in (configs are checked against it). */
  minVocab?(params: P): number;
}

const language: Generator<{ minLength: number; maxLength: number; branching: number; grammarSeed: number }> = {
  description: 'a synthetic language: a sparse Markov chain over the word tokens',
  params: z.object(Language).strict().refine(lengthOrdered, LENGTHS),
  generate(p, rng, vocab) {
    const out: number[] = [];
    speak(out, rng.between(p.minLength, p.maxLength), grammar(vocab, p.grammarSeed, p.branching), rng);
    return Int32Array.from(out);
  },
};

/** KEY k, filler, QUERY k: the end of the document recalls a token from its start. */
function recallPiece(out: number[], length: number, g: Grammar, rng: Rng, words: number): void {
  const k = FIRST_WORD + rng.int(words);
  out.push(KEY, k);
  speak(out, Math.max(0, length - 4), g, rng);
  out.push(QUERY, k);
}

const longRecall: Generator<{ minLength: number; maxLength: number; branching: number; grammarSeed: number }> = {
  description: 'long documents with a long-range dependency: a key token at the start that the last token must recall',
  params: z
    .object({ ...Language, minLength: Language.minLength.default(64), maxLength: Language.maxLength.default(256) })
    .strict()
    .refine((p) => p.minLength >= 4, { message: 'minLength must be at least 4 (KEY k … QUERY k)', path: ['minLength'] })
    .refine(lengthOrdered, LENGTHS),
  generate(p, rng, vocab) {
    const out: number[] = [];
    recallPiece(out, rng.between(p.minLength, p.maxLength), grammar(vocab, p.grammarSeed, p.branching), rng, wordCount(vocab));
    return Int32Array.from(out);
  },
};

const concatShort: Generator<{ pieces: number; minLength: number; maxLength: number; branching: number; grammarSeed: number }> = {
  description: 'long documents made by concatenating short ones, each with its own short-range recall (the ablation Phi-4 found worse than native long data)',
  params: z
    .object({ ...Language, pieces: z.number().int().min(1).max(1024).default(4) })
    .strict()
    .refine((p) => p.minLength >= 4, { message: 'minLength must be at least 4 (KEY k … QUERY k)', path: ['minLength'] })
    .refine(lengthOrdered, LENGTHS),
  generate(p, rng, vocab) {
    const out: number[] = [];
    const g = grammar(vocab, p.grammarSeed, p.branching);
    for (let i = 0; i < p.pieces; i++) recallPiece(out, rng.between(p.minLength, p.maxLength), g, rng, wordCount(vocab));
    return Int32Array.from(out);
  },
};

/**
 * The smallest vocabulary a KV document of `pairs` pairs can be drawn from:
 * its keys (and, with word values, its values) are distinct word sequences,
 * and the words must make at least 2 × pairs of them, so with 1-token keys
 * the vocabulary holds ≥ 2 × pairs + 17 tokens (17 = the structure tokens and digits).
 */
export const kvMinVocab = (pairs: number, keyLength: number) => FIRST_WORD + Math.ceil((2 * pairs) ** (1 / keyLength) - 1e-9);

/** `count` distinct random sequences of `length` word tokens, none already in `seen` (which they join). */
function distinctWords(count: number, length: number, rng: Rng, words: number, seen: Set<string>): number[][] {
  const out: number[][] = [];
  while (out.length < count) {
    const k = Array.from({ length }, () => FIRST_WORD + rng.int(words));
    if (seen.has(k.join())) continue;
    seen.add(k.join());
    out.push(k);
  }
  return out;
}

/** How a KV document's values are drawn, and in which order its queries are asked. */
export interface KvFormat {
  /** `digits`: each value is `valueLength` digits (chance 10^-valueLength); `words`: distinct word tokens, none a key (chance ≈ 1/words). */
  values?: 'digits' | 'words';
  /** `document`: queries in the order their pairs appear (gameable by position); `shuffled`: the same queries in a random order. */
  order?: 'document' | 'shuffled';
  /**
   * `key-val`: pairs KEY k… VAL v…; `key`: pairs KEY k… v…, the value right
   * after its key as a query's answer comes right after QUERY k… ANSWER, so
   * one previous-token head serves both sides of the lookup.
   */
  layout?: 'key-val' | 'key';
}

export interface KvDocument {
  tokens: Int32Array;
  /** Per query: where its answer's tokens start in `tokens`, and how many there are (the exact-match span). */
  answers: { at: number; length: number; depth: number }[];
}

/**
 * One JSON-KV-style document (HELMET): `pairs` pairs KEY k… VAL v…, then
 * `queries` queries QUERY k… ANSWER v… for the keys at evenly spaced depths
 * (depth 0 = the first pair, 1 = the last), asked in document order or
 * shuffled (`format.order`; the keys and values do not depend on it).
 */
export function kvDocument(pairs: number, queries: number, keyLength: number, valueLength: number, rng: Rng, vocab: number, format: KvFormat = {}): KvDocument {
  const words = wordCount(vocab);
  if (words ** keyLength < pairs * 2) {
    throw new Error(
      `kv-recall: ${pairs} pairs of ${keyLength}-token keys need a vocabulary of at least ${kvMinVocab(pairs, keyLength)} (2 × pairs distinct keys${keyLength === 1 ? ' + 17' : ''}); vocabulary ${vocab} has ${words} words`,
    );
  }
  const seen = new Set<string>();
  const keys = distinctWords(pairs, keyLength, rng, words, seen);
  const values =
    format.values === 'words'
      ? distinctWords(pairs, valueLength, rng, words, seen)
      : keys.map(() => Array.from({ length: valueLength }, () => DIGIT0 + rng.int(10)));
  const out: number[] = [];
  for (let i = 0; i < pairs; i++) {
    if (format.layout === 'key') out.push(KEY, ...keys[i]!, ...values[i]!);
    else out.push(KEY, ...keys[i]!, VAL, ...values[i]!);
  }
  const depths = Array.from({ length: queries }, (_, j) => Math.min(pairs - 1, Math.floor(((j + 0.5) * pairs) / queries)));
  if (format.order === 'shuffled') {
    for (let i = depths.length - 1; i > 0; i--) {
      const j = rng.int(i + 1);
      [depths[i], depths[j]] = [depths[j]!, depths[i]!];
    }
  }
  const answers: KvDocument['answers'] = [];
  for (const depth of depths) {
    out.push(QUERY, ...keys[depth]!, ANSWER);
    answers.push({ at: out.length, length: valueLength, depth: pairs > 1 ? depth / (pairs - 1) : 0 });
    out.push(...values[depth]!);
  }
  return { tokens: Int32Array.from(out), answers };
}

/** Tokens a KV document of `pairs` pairs and `queries` queries takes. */
export const kvLength = (pairs: number, queries: number, keyLength: number, valueLength: number, layout: KvFormat['layout'] = 'key-val') =>
  pairs * (keyLength + valueLength + (layout === 'key' ? 1 : 2)) + queries * (keyLength + valueLength + 2);

/** The most pairs a KV document of `tokens` tokens holds beside its `queries` queries (what the recall eval fills a context with). */
export const kvPairsIn = (tokens: number, queries: number, keyLength: number, valueLength: number, layout: KvFormat['layout'] = 'key-val') =>
  Math.floor((tokens - queries * (keyLength + valueLength + 2)) / (keyLength + valueLength + (layout === 'key' ? 1 : 2)));

const KvParams = {
  minPairs: z.number().int().min(1).default(4),
  maxPairs: z.number().int().min(1).default(16),
  queries: z.number().int().min(1).default(4),
  keyLength: z.number().int().min(1).max(8).default(2), // word tokens per key
  valueLength: z.number().int().min(1).max(8).default(2), // tokens per value
  values: z.enum(['digits', 'words']).default('digits'), // see KvFormat
  order: z.enum(['document', 'shuffled']).default('document'), // query order; see KvFormat
  layout: z.enum(['key-val', 'key']).default('key-val'), // see KvFormat
};
const pairsOrdered = { check: (p: { minPairs: number; maxPairs: number }) => p.minPairs <= p.maxPairs, message: 'minPairs must not exceed maxPairs' };

type KvParamsOutput = { minPairs: number; maxPairs: number; queries: number; keyLength: number; valueLength: number; values: 'digits' | 'words'; order: 'document' | 'shuffled'; layout: 'key-val' | 'key' };

const kvRecall: Generator<KvParamsOutput> = {
  description: 'native long documents in the style of HELMET JSON-KV: pairs KEY k… VAL v…, then QUERY k… ANSWER v… for keys at evenly spaced depths',
  params: z.object(KvParams).strict().refine(pairsOrdered.check, { message: pairsOrdered.message, path: ['minPairs'] }),
  generate(p, rng, vocab) {
    return kvDocument(rng.between(p.minPairs, p.maxPairs), p.queries, p.keyLength, p.valueLength, rng, vocab, p).tokens;
  },
  minVocab: (p) => kvMinVocab(p.maxPairs, p.keyLength),
};

/**
 * The same content as kv-recall, as concatenated short documents: a document
 * of as many pairs as a native one, cut into pieces of `piecePairs` pairs, each
 * with its own queries, so every dependency is short-range (Phi-4 §3.3 found
 * such data worse than inherently long documents).
 */
const kvConcat: Generator<KvParamsOutput & { piecePairs: number }> = {
  description: 'kv-recall content as concatenated short documents, each piece with its own queries (the ablation Phi-4 found worse than native long data)',
  params: z
    .object({ ...KvParams, piecePairs: z.number().int().min(1).default(8) })
    .strict()
    .refine(pairsOrdered.check, { message: pairsOrdered.message, path: ['minPairs'] }),
  generate(p, rng, vocab) {
    const pairs = rng.between(p.minPairs, p.maxPairs);
    const pieces = Math.max(1, Math.round(pairs / p.piecePairs));
    // the native document's queries, spread over the pieces (at least one each): the same token budget
    const queries = Math.max(1, Math.round(p.queries / pieces));
    const out: number[] = []; // pieces back to back, as packing does (each starts at its KEY)
    for (let i = 0; i < pieces; i++) {
      const piece = Math.max(1, Math.round((pairs * (i + 1)) / pieces) - Math.round((pairs * i) / pieces));
      out.push(...kvDocument(piece, queries, p.keyLength, p.valueLength, rng, vocab, p).tokens);
    }
    return Int32Array.from(out);
  },
  minVocab: (p) => kvMinVocab(Math.min(p.maxPairs, Math.ceil(1.5 * p.piecePairs) + 1), p.keyLength), // a piece holds up to ~1.5 × piecePairs
};

const arithmetic: Generator<{ digits: number }> = {
  description: 'verifiable addition: a + b = c in digit tokens (checkArithmetic verifies a completion, for PTS)',
  params: z.object({ digits: z.number().int().min(1).max(7).default(2) }).strict(),
  generate(p, rng) {
    const a = rng.int(10 ** p.digits);
    const b = rng.int(10 ** p.digits);
    return Int32Array.from([...digitsOf(a, 1), PLUS, ...digitsOf(b, 1), EQUALS, ...digitsOf(a + b, 1)]);
  },
};

/** A random addition question: the tokens of `a + b =`, the answer left to the model. */
export function arithmeticQuestion(digits: number, rng: Rng, vocab: number): number[] {
  const doc = Array.from(arithmetic.generate({ digits }, rng, vocab));
  return doc.slice(0, doc.indexOf(EQUALS) + 1);
}

/** The question `a + b =` as tokens. */
export const arithmeticQuestionOf = (a: number, b: number): number[] => [...digitsOf(a, 1), PLUS, ...digitsOf(b, 1), EQUALS];

/** The correct completion of an addition question (`a + b =`): the sum's digits, then EOS. */
export function arithmeticAnswer(question: readonly number[]): number[] {
  const plus = question.indexOf(PLUS);
  const value = (ts: readonly number[]) => Number(ts.map((t) => t - DIGIT0).join(''));
  const sum = value(question.slice(0, plus)) + value(question.slice(plus + 1, question.indexOf(EQUALS)));
  return [...digitsOf(sum, 1), EOS];
}

/** Every generator, by the name a config's source gives. */
export const GENERATORS = {
  language,
  'long-recall': longRecall,
  'concat-short': concatShort,
  'kv-recall': kvRecall,
  'kv-concat': kvConcat,
  arithmetic,
} as const;
export type GeneratorName = keyof typeof GENERATORS;

/** Whether an arithmetic document (a + b = c, up to an EOS) is correct: the checker PTS samples against. */
export function checkArithmetic(doc: ArrayLike<number>): boolean {
  const tokens = Array.from(doc);
  const end = tokens.indexOf(EOS);
  const body = end < 0 ? tokens : tokens.slice(0, end);
  const plus = body.indexOf(PLUS);
  const equals = body.indexOf(EQUALS);
  if (plus <= 0 || equals <= plus + 1 || equals === body.length - 1) return false;
  const number = (ts: number[]) => (ts.every((t) => t >= DIGIT0 && t < DIGIT0 + 10) ? Number(ts.map((t) => t - DIGIT0).join('')) : NaN);
  return number(body.slice(0, plus)) + number(body.slice(plus + 1, equals)) === number(body.slice(equals + 1));
}

// ------------------------------------------------------------------ corpora

/** A generated dataset: one source's documents for one split. */
export interface Corpus {
  /** The source's path in the mix, e.g. "replay/web". */
  path: string;
  generator: GeneratorName;
  params: Record<string, unknown>;
  seed: number;
  docs: Int32Array[];
  tokens: number;
}

/** Generates `count` documents of a generator source from `seed`. */
export function generateCorpus(source: DataSourceConfig, path: string, vocab: number, seed: number, count: number): Corpus {
  if (!source.generator) throw new Error(`source ${path} is a mix, not a generator`);
  const gen = GENERATORS[source.generator] as unknown as Generator<unknown>;
  const params = gen.params.parse(source.params);
  const rng = new Rng(seed);
  const docs: Int32Array[] = [];
  let tokens = 0;
  for (let i = 0; i < count; i++) {
    const doc = gen.generate(params, rng, vocab);
    docs.push(doc);
    tokens += doc.length;
  }
  return { path, generator: source.generator, params: source.params, seed, docs, tokens };
}

/** Document lengths in power-of-two bins: `{ upTo, count }`, the dataset artifact's histogram. */
export function lengthHistogram(docs: readonly ArrayLike<number>[]): { upTo: number; count: number }[] {
  const bins = new Map<number, number>();
  for (const d of docs) {
    const upTo = 2 ** Math.max(0, Math.ceil(Math.log2(Math.max(1, d.length))));
    bins.set(upTo, (bins.get(upTo) ?? 0) + 1);
  }
  return [...bins.entries()].sort((a, b) => a[0] - b[0]).map(([upTo, count]) => ({ upTo, count }));
}

/** A corpus's documents as a filter leaves them, with their sampling weights (upweighted long ones). */
export class WeightedDocs {
  readonly docs: Int32Array[];
  private readonly cumulative: Float64Array;

  constructor(
    readonly corpus: Corpus,
    readonly filter: DataFilter = {},
  ) {
    const { minTokens = 0, maxTokens = Infinity, upweight } = filter;
    this.docs = corpus.docs.filter((d) => d.length >= minTokens && d.length <= maxTokens);
    if (!this.docs.length) {
      const lengths = corpus.docs.map((d) => d.length);
      throw new Error(
        `source ${corpus.path}: no document passes the filter ${JSON.stringify(filter)} (its ${corpus.docs.length} documents are ${Math.min(...lengths)}–${Math.max(...lengths)} tokens)`,
      );
    }
    this.cumulative = new Float64Array(this.docs.length);
    let total = 0;
    for (const [i, d] of this.docs.entries()) {
      total += upweight && d.length > upweight.tokens ? upweight.factor : 1;
      this.cumulative[i] = total;
    }
  }

  sample(rng: Rng): Int32Array {
    return this.docs[sampleCumulative(this.cumulative, rng)]!;
  }
}

/**
 * Weighted sources. Each training sequence comes from one source, chosen by
 * weight, and is packed with that source's documents (each followed by EOS)
 * from a document's start: so a weight is the share of training tokens, as in
 * Phi-4's Table 5, and a long document keeps its beginning.
 */
export class DataMix {
  private readonly cumulative: Float64Array;

  constructor(readonly components: readonly { name: string; weight: number; source: WeightedDocs | DataMix }[]) {
    const sum = components.reduce((a, c) => a + c.weight, 0);
    if (!components.length || Math.abs(sum - 1) > WEIGHT_TOLERANCE) throw new Error(`data mix weights must sum to 1, they sum to ${sum}`);
    this.cumulative = new Float64Array(components.length);
    let total = 0;
    for (const [i, c] of components.entries()) this.cumulative[i] = total += c.weight;
  }

  /** Fills `out` (T + 1 tokens) with one sequence; returns the path of the source it came from. */
  fillSequence(out: Int32Array, rng: Rng): string {
    const c = this.components[sampleCumulative(this.cumulative, rng)]!;
    if (c.source instanceof DataMix) return `${c.name}/${c.source.fillSequence(out, rng)}`;
    let filled = 0;
    while (filled < out.length) {
      const doc = c.source.sample(rng);
      const n = Math.min(doc.length, out.length - filled);
      out.set(n === doc.length ? doc : doc.subarray(0, n), filled);
      filled += n;
      if (filled < out.length) out[filled++] = EOS;
    }
    return c.name;
  }
}

export interface Batch {
  inputs: Int32Array; // (B, T)
  targets: Int32Array; // (B, T): inputs shifted left by one
  /** 1 where the target is an answer token (a value after ANSWER): the positions an answer loss weight scales. */
  answers: Uint8Array; // (B, T)
  /** Per sequence, the source it came from. */
  sources: string[]; // (B)
}

/**
 * Marks the answer tokens of a sequence (T + 1 tokens) at their target
 * positions (T): every token after an ANSWER up to the next structure token
 * (EOS, KEY, VAL, QUERY, …), i.e. the value a KV query asks for.
 */
export function markAnswers(out: Uint8Array, seq: ArrayLike<number>): void {
  let inAnswer = false;
  for (let i = 0; i < seq.length; i++) {
    const t = seq[i]!;
    if (t === ANSWER) inAnswer = true;
    else if (t < DIGIT0) inAnswer = false;
    else if (inAnswer && i > 0) out[i - 1] = 1;
  }
}

/** B sequences of T + 1 tokens from the mix: inputs are the first T tokens of each, targets the last T. */
export function getBatch(mix: DataMix, B: number, T: number, rng: Rng): Batch {
  const inputs = new Int32Array(B * T);
  const targets = new Int32Array(B * T);
  const answers = new Uint8Array(B * T);
  const sources: string[] = [];
  const seq = new Int32Array(T + 1);
  for (let b = 0; b < B; b++) {
    sources.push(mix.fillSequence(seq, rng));
    inputs.set(seq.subarray(0, T), b * T);
    targets.set(seq.subarray(1), b * T);
    markAnswers(answers.subarray(b * T, (b + 1) * T), seq);
  }
  return { inputs, targets, answers, sources };
}

export type Split = 'train' | 'heldout';

/** The config's mix over generated corpora: the training split, or the held-out one (other seeds) for eval/loss. */
export function buildMix(data: DataConfig, vocab: number, split: Split): { mix: DataMix; corpora: Corpus[] } {
  const corpora: Corpus[] = [];
  // seedRoot/seedPrefix: a nested mix with its own `seed` generates its sources as a top-level mix
  // with that data seed would, so a replay of the pretraining mix is the very same data
  const build = (sources: readonly DataSourceConfig[], prefix: string, seedRoot: number, seedPrefix: string): DataMix =>
    new DataMix(
      sources.map((s) => {
        const path = prefix + s.name;
        if (s.mix) {
          const own = s.seed !== undefined;
          return { name: s.name, weight: s.weight, source: build(s.mix, `${path}/`, own ? s.seed! : seedRoot, own ? '' : `${seedPrefix}${s.name}/`) };
        }
        const seed = deriveSeed(s.seed ?? seedRoot, seedPrefix + s.name, split);
        const corpus = generateCorpus(s, path, vocab, seed, split === 'train' ? s.docs : data.heldoutDocs);
        corpora.push(corpus);
        return { name: s.name, weight: s.weight, source: new WeightedDocs(corpus, s.filter) };
      }),
    );
  return { mix: build(data.sources, '', data.seed, ''), corpora };
}

// ------------------------------------------------------------------ in the ledger

export interface RegisteredData {
  mixId: string;
  evalsetId: string;
  /** Artifact ids of the datasets, by source path. */
  datasets: Map<string, string>;
}

/**
 * Registers each generator source's training corpus as a `dataset` artifact
 * (generator, params, seed, counts, length histogram), each nested mix and
 * the whole mix as `datamix` artifacts, and the held-out split as an
 * `evalset`. All content-addressed: the same data registers as the same ids.
 */
export async function registerData(pd: Pedigree, project: string, data: DataConfig, vocab: number, mixName: string, corpora: readonly Corpus[]): Promise<RegisteredData> {
  const byPath = new Map(corpora.map((c) => [c.path, c]));
  const datasets = new Map<string, string>();
  const register = async (sources: readonly DataSourceConfig[], prefix: string, name: string): Promise<string> => {
    const components = [];
    for (const s of sources) {
      const path = prefix + s.name;
      let artifactId: string;
      if (s.mix) {
        artifactId = await register(s.mix, `${path}/`, s.name);
      } else {
        const corpus = byPath.get(path);
        if (!corpus) throw new Error(`no corpus generated for source ${path}`);
        ({ artifactId } = await pd.registerArtifact({
          project,
          name: s.name,
          spec: {
            kind: 'dataset',
            source: `synthetic/${corpus.generator}`,
            params: { ...(corpus.params as Record<string, never>), seed: corpus.seed, vocab },
            docs: corpus.docs.length,
            tokens: corpus.tokens,
            lengthHistogram: lengthHistogram(corpus.docs),
          },
        }));
        datasets.set(path, artifactId);
      }
      components.push({ artifactId, weight: s.weight, ...(s.filter ? { filter: s.filter } : {}) });
    }
    return (await pd.registerArtifact({ project, name, spec: { kind: 'datamix', components } })).artifactId;
  };
  const mixId = await register(data.sources, '', mixName);
  const { artifactId: evalsetId } = await pd.registerArtifact({
    project,
    name: `${mixName}-heldout`,
    spec: { kind: 'evalset', source: 'synthetic/heldout', params: { mix: mixId, seed: data.seed, docsPerSource: data.heldoutDocs, split: 'heldout' } },
  });
  return { mixId, evalsetId, datasets };
}

// ---- The data sources' schemas (a stage config's `data`): here, beside the generators they name.

const int = (min: number, max: number) => z.number().int().min(min).max(max);

/** The filter a data-mix component stores (minTokens, maxTokens, upweight), less `tags`: generated documents have none. */
export const DataFilterSchema = StoredDataFilter.omit({ tags: true });
export type DataFilter = z.infer<typeof DataFilterSchema>;

/** A source of training documents: a generator (a dataset), or a nested mix of sources (e.g. the 70% replay of the pretraining mix). */
export interface DataSourceConfig {
  name: string;
  weight: number;
  generator?: GeneratorName;
  params: Record<string, unknown>;
  docs: number;
  filter?: DataFilter;
  mix?: DataSourceConfig[];
  /** Generates this source (or, on a nested mix, its sources, as a top-level mix would) from this seed instead of one derived from the data seed. */
  seed?: number;
}

/** What is wrong with one level of a mix: weights that do not sum to 1, names used twice. */
function mixIssues(sources: { name: string; weight: number }[]): { message: string; path: (string | number)[] }[] {
  const issues: { message: string; path: (string | number)[] }[] = [];
  const sum = sources.reduce((a, s) => a + s.weight, 0);
  if (Math.abs(sum - 1) > WEIGHT_TOLERANCE) {
    issues.push({ path: [], message: `weights must sum to 1, they sum to ${+sum.toFixed(9)} (${sources.map((s) => `${s.name} ${s.weight}`).join(', ')})` });
  }
  const seen = new Set<string>();
  for (const [i, s] of sources.entries()) {
    if (seen.has(s.name)) issues.push({ path: [i, 'name'], message: `two sources are named ${JSON.stringify(s.name)}` });
    seen.add(s.name);
  }
  return issues;
}

const GENERATOR_NAMES = () => Object.keys(GENERATORS) as [GeneratorName, ...GeneratorName[]];

export const DataSourceSchema: z.ZodType<DataSourceConfig, unknown> = z.lazy(() =>
  z
    .object({
      name: z.string().trim().min(1).max(200).regex(/^[\w.\-:@ ]+$/, 'use letters, digits, spaces and _ . - : @'),
      weight: z.number().finite().gt(0).lte(1), // share of training sequences drawn from this source
      generator: z.enum(GENERATOR_NAMES()).optional(), // GENERATORS, above
      params: z.record(z.string(), z.unknown()).default({}), // the generator's own (checked against its schema)
      docs: int(1, 1_000_000).default(512), // documents generated for the training split
      filter: DataFilterSchema.optional(),
      mix: z.array(DataSourceSchema).min(1).max(256).optional(),
      seed: int(0, 0xffffffff).optional(), // e.g. a replay of the pretraining mix: its data seed, so the replay is the same data
    })
    .strict()
    .superRefine((s, ctx) => {
      if ((s.generator === undefined) === (s.mix === undefined)) {
        ctx.addIssue({ code: 'custom', message: 'give either a generator or a nested mix', path: [] });
        return;
      }
      if (s.mix) {
        if (s.filter) ctx.addIssue({ code: 'custom', message: 'filters apply to generator sources, not to a nested mix', path: ['filter'] });
        if (Object.keys(s.params).length) ctx.addIssue({ code: 'custom', message: 'a nested mix takes no params', path: ['params'] });
        for (const issue of mixIssues(s.mix)) ctx.addIssue({ code: 'custom', message: issue.message, path: ['mix', ...issue.path] });
        return;
      }
      const parsed = GENERATORS[s.generator!].params.safeParse(s.params);
      if (!parsed.success) for (const issue of parsed.error.issues) ctx.addIssue({ code: 'custom', message: issue.message, path: ['params', ...issue.path] });
    })
    .transform((s) => (s.generator ? { ...s, params: GENERATORS[s.generator].params.parse(s.params) as Record<string, unknown> } : s)),
);

export const DataConfigSchema = z
  .object({
    seed: int(0, 0xffffffff).default(1234), // generates every source's documents, and the held-out split
    name: z.string().trim().min(1).max(200).optional(), // the mix's artifact name (default: "<run name>-mix")
    sources: z.array(DataSourceSchema).min(1).max(256)
      .superRefine((sources, ctx) => {
        for (const issue of mixIssues(sources)) ctx.addIssue({ code: 'custom', message: issue.message, path: issue.path });
      }),
    heldoutDocs: int(1, 1_000_000).default(64), // documents per source in the held-out split (eval/loss)
  })
  .strict();

export type DataConfig = z.output<typeof DataConfigSchema>;
