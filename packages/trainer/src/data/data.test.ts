import { describe, expect, it } from 'vitest';
import { parseConfig, type DataConfig } from '../config.ts';
import { Rng } from '../rng.ts';
import { ANSWER, arithmeticAnswer, arithmeticQuestion, buildMix, checkArithmetic, DataMix, EOS, generateCorpus, getBatch, GENERATORS, KEY, kvDocument, lengthHistogram, QUERY, WeightedDocs, type Corpus } from './data.ts';

const VOCAB = 64;

const data = (sources: unknown[], extra: Record<string, unknown> = {}): DataConfig => parseConfig({ data: { sources, ...extra } }).data;

describe('generators', () => {
  it('are deterministic: the same seed gives the same documents, another seed others', () => {
    for (const generator of Object.keys(GENERATORS)) {
      const source = data([{ name: 's', generator, weight: 1, docs: 20 }]).sources[0]!;
      const a = generateCorpus(source, 's', VOCAB, 42, 20);
      const b = generateCorpus(source, 's', VOCAB, 42, 20);
      const c = generateCorpus(source, 's', VOCAB, 43, 20);
      expect(a.docs, generator).toEqual(b.docs);
      expect(a.docs, generator).not.toEqual(c.docs);
      for (const doc of a.docs) for (const t of doc) expect(t >= 1 && t < VOCAB, `${generator} token ${t}`).toBe(true);
    }
  });

  it('long-recall documents end by recalling the key they start with', () => {
    const source = data([{ name: 'long', generator: 'long-recall', weight: 1, params: { minLength: 100, maxLength: 200 } }]).sources[0]!;
    for (const doc of generateCorpus(source, 'long', VOCAB, 1, 50).docs) {
      expect(doc.length).toBeGreaterThanOrEqual(100);
      expect(doc.length).toBeLessThanOrEqual(200);
      expect([doc[0], doc.at(-2), doc.at(-1)]).toEqual([KEY, QUERY, doc[1]]);
    }
  });

  it('kv-recall queries keys that were given, and answers with their values', () => {
    const source = data([{ name: 'kv', generator: 'kv-recall', weight: 1, params: { minPairs: 6, maxPairs: 6, queries: 3, keyLength: 2, valueLength: 2 } }]).sources[0]!;
    const [doc] = generateCorpus(source, 'kv', VOCAB, 7, 1).docs;
    const tokens = Array.from(doc!);
    const pairs = new Map<string, string>();
    for (let i = 0; i < 6; i++) pairs.set(tokens.slice(i * 6 + 1, i * 6 + 3).join(), tokens.slice(i * 6 + 4, i * 6 + 6).join());
    const queries = tokens.slice(36);
    expect(queries).toHaveLength(18);
    for (let j = 0; j < 3; j++) expect(pairs.get(queries.slice(j * 6 + 1, j * 6 + 3).join())).toBe(queries.slice(j * 6 + 4, j * 6 + 6).join());
  });

  it('kv-concat holds the same kind of content as kv-recall, but every query is answered within its short piece', () => {
    const params = { minPairs: 60, maxPairs: 60, queries: 6, keyLength: 2, valueLength: 2 };
    /** For each query, how far back (in tokens) its key was given. */
    const queryDistances = (doc: Int32Array) => {
      const t = Array.from(doc);
      const out: number[] = [];
      for (let i = 0; i < t.length; i++) {
        if (t[i] !== QUERY) continue;
        const key = t.slice(i + 1, i + 3).join();
        let j = i - 1;
        while (j >= 0 && !(t[j] === KEY && t.slice(j + 1, j + 3).join() === key)) j--;
        expect(j, 'a queried key was given before').toBeGreaterThanOrEqual(0);
        out.push(i - j);
      }
      return out;
    };
    const [native] = generateCorpus(data([{ name: 'n', generator: 'kv-recall', weight: 1, params }]).sources[0]!, 'n', VOCAB, 5, 1).docs;
    const [concat] = generateCorpus(data([{ name: 'c', generator: 'kv-concat', weight: 1, params: { ...params, piecePairs: 8 } }]).sources[0]!, 'c', VOCAB, 5, 1).docs;
    const pieceTokens = (8 + 6) * 6; // a piece: 8 pairs and its queries, 6 tokens each
    expect(Math.max(...queryDistances(concat!))).toBeLessThanOrEqual(pieceTokens);
    expect(Math.max(...queryDistances(native!))).toBeGreaterThan(3 * pieceTokens);
    expect(concat!.length / native!.length).toBeGreaterThan(0.8); // about the same length
    expect(concat!.length / native!.length).toBeLessThan(1.5);
  });

  it('kvDocument marks where each answer is, at evenly spaced depths', () => {
    const doc = kvDocument(20, 5, 2, 2, new Rng(3), VOCAB);
    expect(doc.answers.map((a) => a.depth)).toEqual([2, 6, 10, 14, 18].map((d) => d / 19));
    for (const a of doc.answers) {
      const key = Array.from(doc.tokens.slice(a.at - 3, a.at - 1)).join();
      const pair = Array.from(doc.tokens).findIndex((t, i) => t === KEY && Array.from(doc.tokens.slice(i + 1, i + 3)).join() === key);
      expect(Array.from(doc.tokens.slice(pair + 4, pair + 6))).toEqual(Array.from(doc.tokens.slice(a.at, a.at + a.length)));
    }
  });

  it('arithmetic questions have one right answer, which arithmeticAnswer gives', () => {
    const rng = new Rng(9);
    for (let i = 0; i < 50; i++) {
      const q = arithmeticQuestion(2, rng, VOCAB);
      const answer = arithmeticAnswer(q);
      expect(answer.at(-1)).toBe(EOS);
      expect(checkArithmetic([...q, ...answer])).toBe(true);
      expect(checkArithmetic([...q, ...answer.slice(0, -2), answer.at(-2) === 7 ? 8 : 7, EOS])).toBe(false);
    }
  });

  it('a nested mix with its own seed is the same data as that mix at the top level (a replay)', () => {
    const sources = [
      { name: 'web', generator: 'language', weight: 0.5, docs: 10 },
      { name: 'kv', generator: 'kv-recall', weight: 0.5, docs: 10 },
    ];
    const top = buildMix(data(sources, { seed: 77 }), VOCAB, 'train').corpora;
    const nested = buildMix(data([{ name: 'new', generator: 'language', weight: 0.3, docs: 10 }, { name: 'replay', weight: 0.7, seed: 77, mix: sources }], { seed: 5 }), VOCAB, 'train').corpora;
    const replayed = nested.filter((c) => c.path.startsWith('replay/'));
    expect(replayed.map((c) => c.docs)).toEqual(top.map((c) => c.docs));
    expect(replayed.map((c) => c.seed)).toEqual(top.map((c) => c.seed));
    // without the seed, the nested sources are other data
    const unseeded = buildMix(data([{ name: 'new', generator: 'language', weight: 0.3, docs: 10 }, { name: 'replay', weight: 0.7, mix: sources }], { seed: 77 }), VOCAB, 'train').corpora;
    expect(unseeded.filter((c) => c.path.startsWith('replay/')).map((c) => c.docs)).not.toEqual(top.map((c) => c.docs));
  });

  it('arithmetic is verifiable', () => {
    const source = data([{ name: 'math', generator: 'arithmetic', weight: 1, params: { digits: 3 } }]).sources[0]!;
    const docs = generateCorpus(source, 'math', VOCAB, 3, 100).docs;
    for (const doc of docs) expect(checkArithmetic(doc)).toBe(true);
    const wrong = Int32Array.from(docs[0]!);
    wrong[wrong.length - 1] = wrong.at(-1)! === 7 ? 8 : 7; // change the last digit of the sum
    expect(checkArithmetic(wrong)).toBe(false);
  });

  it('histograms count documents by power-of-two length', () => {
    expect(lengthHistogram([new Int32Array(3), new Int32Array(4), new Int32Array(5), new Int32Array(64)])).toEqual([
      { upTo: 4, count: 2 },
      { upTo: 8, count: 1 },
      { upTo: 64, count: 1 },
    ]);
  });
});

describe('the data mix', () => {
  it('draws sequences from each source in proportion to its weight (nested mixes too)', () => {
    const cfg = data([
      { name: 'web', generator: 'language', weight: 0.5 },
      { name: 'kv', generator: 'kv-recall', weight: 0.2 },
      { name: 'replay', weight: 0.3, mix: [{ name: 'math', generator: 'arithmetic', weight: 0.5 }, { name: 'long', generator: 'long-recall', weight: 0.5 }] },
    ]);
    const { mix } = buildMix(cfg, VOCAB, 'train');
    const rng = new Rng(5);
    const counts = new Map<string, number>();
    const N = 4000;
    for (let i = 0; i < N / 8; i++) for (const s of getBatch(mix, 8, 16, rng).sources) counts.set(s, (counts.get(s) ?? 0) + 1);
    const share = (k: string) => (counts.get(k) ?? 0) / N;
    // binomial standard error at N = 4000 is at most 0.008: 4σ tolerance
    expect(share('web')).toBeCloseTo(0.5, 1);
    expect(Math.abs(share('web') - 0.5)).toBeLessThan(0.032);
    expect(Math.abs(share('kv') - 0.2)).toBeLessThan(0.032);
    expect(Math.abs(share('replay/math') - 0.15)).toBeLessThan(0.032);
    expect(Math.abs(share('replay/long') - 0.15)).toBeLessThan(0.032);
  });

  it('packs documents with EOS between them; targets are inputs shifted by one', () => {
    const { mix } = buildMix(data([{ name: 'math', generator: 'arithmetic', weight: 1 }]), VOCAB, 'train');
    const B = 2;
    const T = 40;
    const batch = getBatch(mix, B, T, new Rng(1));
    expect(batch.inputs).toHaveLength(B * T);
    for (let b = 0; b < B; b++) {
      expect(Array.from(batch.inputs.subarray(b * T + 1, b * T + T))).toEqual(Array.from(batch.targets.subarray(b * T, b * T + T - 1)));
      expect(Array.from(batch.inputs.subarray(b * T, b * T + T))).toContain(EOS);
    }
  });

  it('is deterministic for a seed, and the held-out split differs from the training one', () => {
    const cfg = data([{ name: 'web', generator: 'language', weight: 1 }]);
    const a = getBatch(buildMix(cfg, VOCAB, 'train').mix, 4, 32, new Rng(9));
    const b = getBatch(buildMix(cfg, VOCAB, 'train').mix, 4, 32, new Rng(9));
    const heldout = getBatch(buildMix(cfg, VOCAB, 'heldout').mix, 4, 32, new Rng(9));
    expect(a.inputs).toEqual(b.inputs);
    expect(a.inputs).not.toEqual(heldout.inputs);
  });

  it('filters drop short documents, and upweight long ones by their factor', () => {
    const corpus: Corpus = {
      path: 'c',
      generator: 'language',
      params: {},
      seed: 0,
      docs: [new Int32Array(10).fill(20), new Int32Array(100).fill(21), new Int32Array(200).fill(22)],
      tokens: 310,
    };
    expect(new WeightedDocs(corpus, { minTokens: 50 }).docs.map((d) => d.length)).toEqual([100, 200]);
    expect(new WeightedDocs(corpus, { maxTokens: 150 }).docs.map((d) => d.length)).toEqual([10, 100]);
    expect(() => new WeightedDocs(corpus, { minTokens: 500 })).toThrow(/no document passes the filter .* 10–200 tokens/);

    const up = new WeightedDocs(corpus, { upweight: { tokens: 150, factor: 3 } });
    const rng = new Rng(2);
    let long = 0;
    const N = 5000;
    for (let i = 0; i < N; i++) if (up.sample(rng).length === 200) long++;
    expect(Math.abs(long / N - 3 / 5)).toBeLessThan(0.03); // weights 1, 1, 3
  });

  it('refuses weights that do not sum to 1, naming them', () => {
    expect(() => new DataMix([{ name: 'a', weight: 0.5, source: new DataMix([]) as never }])).toThrow(/sum to 1/);
    expect(() =>
      data([
        { name: 'a', generator: 'language', weight: 0.6 },
        { name: 'b', generator: 'language', weight: 0.3 },
      ]),
    ).toThrow(/data\.sources: weights must sum to 1, they sum to 0\.9 \(a 0\.6, b 0\.3\)/);
  });
});

describe('KV format for recall (issue 15)', () => {
  it('with word values draws every key and value as a distinct word, and shuffled order asks the same queries', () => {
    const inOrder = kvDocument(10, 6, 1, 1, new Rng(11), VOCAB, { values: 'words' });
    const shuffled = kvDocument(10, 6, 1, 1, new Rng(11), VOCAB, { values: 'words', order: 'shuffled' });
    const words = Array.from(inOrder.tokens.subarray(0, 40)).filter((_, i) => i % 2 === 1); // KEY k VAL v: k and v
    expect(new Set(words).size).toBe(20);
    expect(Array.from(shuffled.tokens.subarray(0, 40))).toEqual(Array.from(inOrder.tokens.subarray(0, 40))); // the same pairs
    const depths = (d: typeof inOrder) => d.answers.map((a) => a.depth);
    expect([...depths(shuffled)].sort()).toEqual([...depths(inOrder)].sort());
    expect(depths(shuffled)).not.toEqual(depths(inOrder));
  });

  it('needs a vocabulary of 2 × pairs + 17 for 1-token keys, and a config that breaks it is refused', () => {
    expect(() => kvDocument(24, 6, 1, 1, new Rng(1), VOCAB)).toThrow(/24 pairs of 1-token keys need a vocabulary of at least 65 .*vocabulary 64 has 47 words/);
    expect(() => kvDocument(23, 6, 1, 1, new Rng(1), VOCAB, { values: 'words' })).not.toThrow();
    const kv = { name: 'kv', generator: 'kv-recall', weight: 1, params: { keyLength: 1, valueLength: 1, maxPairs: 30 } };
    expect(() => parseConfig({ model: { vocab: 64 }, data: { sources: [kv] } })).toThrow(/data\.sources\.0\.params: kv-recall source kv needs a vocabulary of at least 77; model\.vocab is 64/);
    expect(() => parseConfig({ model: { vocab: 77 }, data: { sources: [kv] } })).not.toThrow();
  });

  it('marks the answer tokens of a batch at their target positions', () => {
    const source = data([{ name: 'kv', generator: 'kv-recall', weight: 1, docs: 8, params: { keyLength: 1, valueLength: 2, maxPairs: 4, queries: 3 } }]).sources[0]!;
    const mix = new DataMix([{ name: 'kv', weight: 1, source: new WeightedDocs(generateCorpus(source, 'kv', VOCAB, 3, 8)) }]);
    const batch = getBatch(mix, 2, 40, new Rng(5));
    let marked = 0;
    for (let i = 0; i < batch.targets.length; i++) {
      const afterAnswer = batch.inputs[i] === ANSWER || (i % 40 > 0 && batch.inputs[i - 1] === ANSWER);
      expect(batch.answers[i], `position ${i}`).toBe(afterAnswer ? 1 : 0); // 2-token values: the two targets after ANSWER
      marked += batch.answers[i]!;
    }
    expect(marked).toBeGreaterThan(0);
  });
});
