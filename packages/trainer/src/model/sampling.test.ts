import { describe, expect, it } from 'vitest';
import { EOS } from '../data/data.ts';
import { Rng } from '../rng.ts';
import { argmax, greedyCompletion, lastLogits, logSoftmax, sampleCompletions, tokenLogProbs, type LogitsModel } from './sampling.ts';
import { TransformerModel } from './transformer.ts';

// Legend: B = batch, T = time, V = vocab.

const tinyModel = () => new TransformerModel({ arch: 'transformer', vocab: 32, layers: 1, dModel: 16, heads: 2, context: 16, ropeBase: 500, seed: 1 }, { mode: 'reference' });

/** A model whose next token is (last token + 1) mod V with certainty, and EOS after token `end`. */
function counter(V: number, end: number): LogitsModel {
  return {
    logits(inputs, B, T) {
      const out = new Float32Array(B * T * V); // (B,T,V)
      for (let bt = 0; bt < B * T; bt++) out[bt * V + (inputs[bt] === end ? EOS : (inputs[bt]! + 1) % V)] = 50;
      return out;
    },
  };
}

describe('sampling', () => {
  it('is deterministic for a seed, and differs across seeds', () => {
    const model = tinyModel();
    const draw = (seed: number) => sampleCompletions(model, [5, 8, 9], 6, { maxTokens: 5, rng: new Rng(seed) });
    const a = draw(3);
    expect(draw(3)).toEqual(a);
    expect(draw(4)).not.toEqual(a);
    expect(a).toHaveLength(6);
    for (const c of a) {
      expect(c.length).toBeGreaterThan(0);
      expect(c.length).toBeLessThanOrEqual(5);
      expect(c.slice(0, -1)).not.toContain(EOS); // stops at the first EOS, which it keeps
    }
  });

  it('stops each rollout at its stop token and at maxTokens', () => {
    const model = counter(32, 12);
    expect(sampleCompletions(model, [9], 3, { maxTokens: 10, rng: new Rng(1) })).toEqual([
      [10, 11, 12, EOS],
      [10, 11, 12, EOS],
      [10, 11, 12, EOS],
    ]);
    expect(sampleCompletions(model, [9], 2, { maxTokens: 2, rng: new Rng(1) })).toEqual([
      [10, 11],
      [10, 11],
    ]);
    expect(sampleCompletions(model, [9], 1, { maxTokens: 10, rng: new Rng(1), stopAt: 11 })).toEqual([[10, 11]]);
  });

  it('greedy is the argmax of the last position, token by token', () => {
    const model = tinyModel();
    const prompt = [5, 8, 9];
    const got = greedyCompletion(model, prompt, 6);
    const seq = [...prompt];
    for (let i = 0; i < got.length; i++) {
      const logits = model.logits(Int32Array.from(seq), 1, seq.length); // (1,T,V)
      const next = argmax(logits.subarray((seq.length - 1) * 32, seq.length * 32));
      expect(got[i]).toBe(next);
      seq.push(next);
      if (next === EOS) break;
    }
    expect(sampleCompletions(model, prompt, 3, { maxTokens: 6, temperature: 0, rng: new Rng(9) })).toEqual([got, got, got]);
  });

  it('samples tokens at the softmax frequencies', () => {
    // Logits log(0.6), log(0.3), log(0.1) on tokens 1, 2, 3: 4000 draws land within a few σ.
    const probs = [0, 0.6, 0.3, 0.1];
    const model: LogitsModel = {
      logits(_inputs, B, T) {
        const out = new Float32Array(B * T * 4).fill(-Infinity);
        for (let bt = 0; bt < B * T; bt++) for (let v = 1; v < 4; v++) out[bt * 4 + v] = Math.log(probs[v]!);
        return out;
      },
    };
    const draws = sampleCompletions(model, [1], 4000, { maxTokens: 1, rng: new Rng(2) }).map((c) => c[0]!);
    for (let v = 1; v < 4; v++) expect(draws.filter((d) => d === v).length / 4000).toBeCloseTo(probs[v]!, 1);
  });

  it('tokenLogProbs over a padded batch agrees with each query run alone', () => {
    const model = tinyModel();
    const queries = [[5], [7, 8, 9, 10, 11], [20, 21, 6]];
    const tokens = [3, 0, 31];
    const got = tokenLogProbs(model, queries, tokens);
    queries.forEach((q, i) => {
      const logits = model.logits(Int32Array.from(q), 1, q.length); // (1,T,V)
      const want = logSoftmax(logits.subarray((q.length - 1) * 32))[tokens[i]!]!;
      expect(Math.abs(got[i]! - want)).toBeLessThan(1e-5);
    });
    const rows = lastLogits(model, queries);
    expect(rows.map((r) => r.length)).toEqual([32, 32, 32]);
  });
});
