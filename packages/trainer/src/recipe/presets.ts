/**
 * The toy recipe's sizes and constants, in a module of their own: the runner
 * (recipe.ts) and the report (results.ts) read them; the stages it runs are
 * handed what they need (src/stages knows no recipe).
 */

export type RecipeSize = 'ci' | 'quick' | 'full';
export const RECIPE_SIZES = ['ci', 'quick', 'full'] as const satisfies readonly RecipeSize[];

export interface RecipePreset {
  model: { layers: number; dModel: number; heads: number; vocab: number };
  /** The KV source's share of the pretraining mix (and of its replay), the rest in equal parts; default Table 5's (40%, the rest as in Table 5). */
  kvShare?: number;
  /** Loss weight of answer tokens against 1 for the rest (pretraining and midtraining; TrainConfig.answerWeight). */
  answerWeight: number;
  /** Documents generated per source (training split), and per source for held-out. */
  docs: number;
  heldoutDocs: number;
  pretrain: { steps: number; batch: number; lr: number; /** Where the linear decay ends (default lr / 10); = lr holds the lr constant after warmup. */ minLr?: number };
  midtrain: { steps: number; batch: number };
  sft: { steps: number; batch: number; context: number; lr: number };
  /**
   * SFT, PTS and the pass rate: additions of numbers of this many digits. The quick and ci sizes use one-digit
   * sums (learned in seconds); `--full` two-digit sums, which SFT leaves short of perfect (48–66% of sampled
   * answers pass after 1,000 steps; one-digit sums it took to 95%), so PTS-DPO has room to show a gain
   * (docs/recall-tuning.md).
   */
  arithmeticDigits: number;
  pts: { questions: number; rollouts: number };
  /** DPO as the report ran it: no NLL term. */
  dpo: { steps: number; beta: number; lr: number; batch: number };
  /**
   * A second DPO run from the same SFT model on the same pairs, with an NLL term on the accepted answer
   * (RPO; α = nll), its own steps and lr; β and batch as dpo's. Tuned on a dev set of sums (another seed
   * than the eval's): docs/recall-tuning.md.
   */
  rpo: { steps: number; lr: number; nll: number };
  evals: { recallDocs: number; arithmeticQuestions: number; lossBatches: number };
}

/**
 * The vocabulary: KV documents draw their 1-token keys as distinct words, so
 * recall at L tokens needs 2 × pairs + 17 tokens (kvMinVocab), and
 * the longest recall eval (8 × 64 = 512 tokens: 162 pairs `KEY k v` and 6
 * queries of 4 tokens) needs 341.
 */
export const TOY_VOCAB = 352;

export const RECIPE_PRESETS: Record<RecipeSize, RecipePreset> = {
  ci: {
    model: { layers: 1, dModel: 16, heads: 2, vocab: TOY_VOCAB },
    answerWeight: 8,
    docs: 48,
    heldoutDocs: 8,
    pretrain: { steps: 6, batch: 2, lr: 3e-3 },
    midtrain: { steps: 2, batch: 1 },
    sft: { steps: 4, batch: 2, context: 64, lr: 1e-3 },
    arithmeticDigits: 1,
    pts: { questions: 6, rollouts: 4 },
    dpo: { steps: 2, beta: 0.5, lr: 1e-3, batch: 8 },
    rpo: { steps: 2, lr: 1e-3, nll: 1 },
    evals: { recallDocs: 1, arithmeticQuestions: 8, lossBatches: 1 },
  },
  quick: {
    model: { layers: 2, dModel: 32, heads: 2, vocab: TOY_VOCAB },
    answerWeight: 8,
    docs: 256,
    heldoutDocs: 32,
    pretrain: { steps: 60, batch: 8, lr: 3e-3 },
    midtrain: { steps: 8, batch: 2 },
    sft: { steps: 150, batch: 8, context: 64, lr: 1e-2 },
    arithmeticDigits: 1,
    pts: { questions: 24, rollouts: 8 },
    dpo: { steps: 20, beta: 0.1, lr: 1e-5, batch: 16 },
    rpo: { steps: 40, lr: 3e-5, nll: 1 },
    evals: { recallDocs: 2, arithmeticQuestions: 32, lossBatches: 2 },
  },
  full: {
    // 2 heads of 16 dimensions: with 4 of 8 the lookup formed on some trajectories only (docs/recall-tuning.md)
    model: { layers: 2, dModel: 32, heads: 2, vocab: TOY_VOCAB },
    kvShare: 0.8,
    answerWeight: 8,
    docs: 1024,
    heldoutDocs: 64,
    pretrain: { steps: 8000, batch: 8, lr: 5e-3, minLr: 5e-3 }, // docs/recall-tuning.md: a constant 5e-3
    // 7.5% of the pretraining tokens (Phi-4's 250B of ~10T: 2.5%): at 2.5% (200 steps) recall at 2×/4× reached 87.5/83.3;
    // 600 steps 91.7/93.8, 800 93.8/93.8, 1,600 100/95.8 (same pretrained model; docs/recall-tuning.md). 600 keeps
    // the four midtraining runs inside demo --full's 20 minutes.
    midtrain: { steps: 600, batch: 2 },
    sft: { steps: 1000, batch: 8, context: 64, lr: 1e-2 },
    arithmeticDigits: 2,
    pts: { questions: 1000, rollouts: 12 }, // ~290 pairs (100 questions gave 28–66)
    dpo: { steps: 40, beta: 0.1, lr: 1e-5, batch: 16 },
    rpo: { steps: 200, lr: 3e-5, nll: 1 },
    evals: { recallDocs: 8, arithmeticQuestions: 200, lossBatches: 4 }, // 200 × 8 sampled answers: 2 SE of a difference ≈ 3.5 points
  },
};

/** Pretraining context and RoPE base, and what midtraining does to them (the toy design, docs/trainer.md). */
export const TOY = {
  pretrainContext: 64,
  ropeBase: 500,
  contextFactor: 4, // 4K → 16K
  ropeFactor: 25, // 10K → 250K
  lrFactor: 0.1, // lr ÷ 10
  newLongShare: 0.3,
  replayShare: 0.7,
  recallContexts: [1, 2, 4, 8], // × the pretraining context
  /**
   * The KV format training and the recall eval share: 1-token keys (distinct words) and 1-digit values (chance 10%),
   * pairs written `KEY k v` (the value right after its key, as an answer comes right after its query's key),
   * 6 queries a document. Word values (chance ≈ 0.4%) did not start learning within the tuning budget (docs/recall-tuning.md).
   */
  kv: { keyLength: 1, valueLength: 1, values: 'digits', layout: 'key', queries: 6 },
  /** Pairs in a pretraining KV document, fewest and most (the 1× recall eval fills the context: 13). */
  pretrainPairs: [2, 10],
  dataSeed: 1234,
} as const;
