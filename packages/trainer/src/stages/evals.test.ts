import { describe, expect, it } from 'vitest';
import { ANSWER, KEY, VAL } from '../data/data.ts';
import type { Model } from '../model/model.ts';
import { recallEval } from './evals.ts';

/**
 * The recall eval scored on planted models, whose answers are known: one
 * that looks each queried key up in the document (true recall), and ones that
 * answer from a position instead. Legend: T = time, V = vocab.
 */

const V = 272;

/** A model whose logits at each ANSWER put all their mass on `answer(tokens, at)`: the token it "recalls". */
function planted(answer: (tokens: Int32Array, answerAt: number) => number, vocab = V): Model {
  return {
    backend: 'planted',
    config: { vocab },
    logits(tokens: Int32Array, B: number, T: number) {
      const out = new Float32Array(B * T * vocab); // (B,T,V)
      for (let t = 0; t < T; t++) if (tokens[t] === ANSWER) out[t * vocab + answer(tokens, t)] = 1;
      return out;
    },
  } as unknown as Model;
}

type Layout = 'key-val' | 'key';
/** Where the pairs are: the positions of each pair's KEY, in document order (KEY k VAL v, or KEY k v: KEY marks pairs only). */
const pairStarts = (tokens: Int32Array, before: number, layout: Layout = 'key-val') =>
  Array.from(tokens.subarray(0, before).keys()).filter((i) => tokens[i] === KEY && (layout === 'key' || tokens[i + 2] === VAL));
/** The pair a query (QUERY k ANSWER, 1-token keys) asks for: the index of its key among the pairs. */
const queried = (tokens: Int32Array, answerAt: number, layout: Layout = 'key-val') => {
  const pairs = pairStarts(tokens, answerAt, layout);
  return { pairs, index: pairs.findIndex((p) => tokens[p + 1] === tokens[answerAt - 1]) };
};
const valueOf = (tokens: Int32Array, pair: number, layout: Layout = 'key-val') => tokens[pair + (layout === 'key' ? 2 : 3)]!;

describe('recall eval on planted models', () => {
  const opts = { docs: 4, queries: 6, keyLength: 1, valueLength: 1, values: 'words' as const, seed: 7 };
  const contexts = [64, 128, 256];

  it('scores a model that looks the key up at 100%, in either order', () => {
    const lookup = planted((tokens, at) => {
      const { pairs, index } = queried(tokens, at);
      return valueOf(tokens, pairs[index]!);
    });
    for (const r of recallEval(lookup, contexts, opts)) {
      expect(r).toMatchObject({ score: 100, inOrder: 100 });
      expect(r.n).toBe(24);
    }
  });

  it('scores a model that copies the wrong pair (the one before the queried one) at 0', () => {
    const previous = planted((tokens, at) => {
      const { pairs, index } = queried(tokens, at);
      return valueOf(tokens, pairs[(index + pairs.length - 1) % pairs.length]!);
    });
    for (const r of recallEval(previous, contexts, opts)) expect(r).toMatchObject({ score: 0, inOrder: 0 });
  });

  it('scores a model that always copies the most recent pair only where the last pair is queried (≤ 1 query in 6)', () => {
    const mostRecent = planted((tokens, at) => valueOf(tokens, pairStarts(tokens, at).at(-1)!));
    const scores = recallEval(mostRecent, contexts, opts).map((r) => r.score);
    expect(scores[0]).toBeCloseTo(100 / 6, 6); // 10 pairs: the last query's depth is the last pair
    expect(scores.slice(1)).toEqual([0, 0]); // 26, 58 pairs: no query reaches the last pair
  });

  it('does not let position alone score: answering by query number scores in order but not shuffled', () => {
    // the j-th query answered with the pair at the j-th evenly spaced depth: exactly the in-order layout
    const byPosition = planted((tokens, at) => {
      const pairs = pairStarts(tokens, at);
      const j = Array.from(tokens.subarray(0, at)).filter((t) => t === ANSWER).length;
      return valueOf(tokens, pairs[Math.min(pairs.length - 1, Math.floor(((j + 0.5) * pairs.length) / opts.queries))]!);
    });
    for (const r of recallEval(byPosition, contexts, opts)) {
      expect(r.inOrder).toBe(100);
      expect(r.score).toBeLessThan(50);
    }
  });

  it('says which vocabulary 1-token keys need when the context asks for more pairs', () => {
    const lookup = planted(() => 0);
    expect(() => recallEval(lookup, [1024], opts)).toThrow(/vocabulary of at least 517/);
  });

  // The recipe's format (recipe/presets.ts TOY.kv, checked there against this): pairs KEY k v, 1-digit values,
  // 6 queries; its vocabulary 352; every recall length it evaluates (1×–8× of 64 tokens). Stages may not import recipe.
  describe('in the recipe\'s format: pairs KEY k v, 1-digit values, vocabulary 352, 64–512 tokens', () => {
    const RECIPE_VOCAB = 352;
    const recipe = { keyLength: 1, valueLength: 1, values: 'digits' as const, layout: 'key' as const, queries: 6, docs: 2, seed: 11 };

    it('scores a lookup model at 100%, and one that copies the pair before the queried one only where the two values coincide', () => {
      const lookup = planted((tokens, at) => {
        const { pairs, index } = queried(tokens, at, 'key');
        return valueOf(tokens, pairs[index]!, 'key');
      }, RECIPE_VOCAB);
      const right = recallEval(lookup, [64, 128, 256, 512], recipe);
      expect(right.map((r) => r.contextLength)).toEqual([64, 128, 256, 512]);
      for (const r of right) expect(r).toMatchObject({ score: 100, inOrder: 100, n: 12 });

      // A neighbour's value is a digit too, so the copy is right exactly where it equals the queried one: counted
      // as the model answers (each document is read once in each order; both orders ask the same pairs).
      let asked = 0;
      let same = 0;
      const previous = planted((tokens, at) => {
        const { pairs, index } = queried(tokens, at, 'key');
        const copied = valueOf(tokens, pairs[(index + pairs.length - 1) % pairs.length]!, 'key');
        asked++;
        if (copied === valueOf(tokens, pairs[index]!, 'key')) same++;
        return copied;
      }, RECIPE_VOCAB);
      for (const length of [64, 128, 256, 512]) {
        asked = same = 0;
        const [r] = recallEval(previous, [length], recipe);
        expect(asked).toBe(2 * r!.n);
        expect(r!.score).toBeCloseTo((100 * same) / asked, 9);
        expect(r!.inOrder).toBeCloseTo((100 * same) / asked, 9);
        expect(r!.score).toBeLessThan(50);
      }
    });
  });
});
