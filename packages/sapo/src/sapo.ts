/**
 * SAPO: Swarm sAmpling Policy Optimization, one file, in the order of the equations in
 * DESIGN.md ("SAPO, as implemented"). For a group of G completions y_1..y_G of a prompt q with
 * rewards r_i:
 *
 *   (1) advantage      A_i = (r_i − mean(r)) / (std(r) + 1e-6)           std over the group (1/G)
 *   (2) filter         drop groups whose rewards are all equal (A ≡ 0, no gradient), and count them
 *   (3) mix            I local groups + J external groups drawn uniformly from the kept external ones
 *   (4) old log-probs  log π_old(y_t | q, y_<t) by this node's own policy, also for peers' text
 *   (5) objective      L = − mean over tokens of min(ρ_t A_i, clip(ρ_t, 1 − ε_low, 1 + ε_high) A_i)
 *                          + β KL(π_θ ‖ π_ref),   ρ_t = π_θ(y_t | …) / π_old(y_t | …)
 *   (6) step           μ passes of Adam over the batch, each with global-norm gradient clipping;
 *                      a pass runs the rows in micro-batches of `microBatchRows`, each micro-batch's
 *                      loss Σ(per-token · mask) / (completion tokens of the whole batch), and sums
 *                      their gradients: the whole batch's gradient, clipped once, one Adam update
 *   (7) statistics     as TRL and CleanRL log them, means over the batch's completion tokens:
 *                      clip fraction (ρ > 1 + ε_high with A > 0, or ρ < 1 − ε_low with A < 0) and
 *                      approximate KL (ρ − 1) − log ρ of the last pass before its update; entropy
 *                      −Σ_v π(v) log π(v) of the first pass; completion tokens per row
 *
 * The mean in (5) runs over every completion token of the batch (a per-token mean, so long
 * completions weigh more than short ones). With μ = 1 the ratio is exactly 1 during the only
 * pass and the update is REINFORCE with group-normalised advantages; clipping acts from pass 2,
 * and the clip fraction and approximate KL are 0.
 */
import * as tf from '@tensorflow/tfjs-core';
import { uniformInt } from 'pure-rand/distribution/uniformInt';
import { mersenne } from 'pure-rand/generator/mersenne';
import type { RandomGenerator } from 'pure-rand/types/RandomGenerator';
import type { CausalLM } from './pretrained.js';
import { type Tokenizer, TokenizerError } from './tokenizer.js';

/** One prompt's completions and their rewards: what SAPO filters, mixes and learns from. */
export interface RolloutGroup {
  prompt: string;
  completions: string[];
  rewards: number[];
  /**
   * The ids this node sampled for each completion (ending with EOS when it finished), for its own
   * groups: decoding and re-encoding text is not exact (invalid UTF-8 becomes U+FFFD), so the
   * learner trains on what was sampled. Peers' groups have text only and are re-tokenized.
   */
  completionTokens?: number[][];
  /**
   * Per completion: true when its sampler stopped at EOS, false when it hit its token limit.
   * Re-tokenized text ends with EOS only where this is true: absent (e.g. an older peer) means
   * unknown, and the learner never trains on an EOS that was not sampled.
   */
  finished?: boolean[];
}

export interface SapoOptions {
  /** I: local groups per step. Default 4. */
  localGroups: number;
  /** J: external groups per step, drawn uniformly from the external buffer. Default 4. */
  externalGroups: number;
  /** ε_low, ε_high: the asymmetric clip range of the ratio. Defaults 0.2 and 0.28. */
  epsLow: number;
  epsHigh: number;
  /** β: weight of KL(π_θ ‖ π_ref) against the policy as it was when the learner was made. Default 0 (no reference kept). */
  beta: number;
  /** μ: optimisation passes over each batch. Default 1. */
  passes: number;
  /**
   * Rows (completions) per forward and backward pass; a pass sums their gradients, so the update
   * is the whole batch's. Bounds the activation memory, which a wasm heap keeps at its high-water
   * mark for good. Default 4: on wasm, for the embedded model's 8 × 8-row batch, as fast as 8 and
   * 2.7x faster than the whole batch at once, with a heap of 172 MB against 358 MB and 2.4 GB
   * (scripts/bench/learner-memory.ts). A GPU may want more.
   */
  microBatchRows: number;
  /** Adam's learning rate. Default 1e-4. */
  learningRate: number;
  /** Gradients are scaled down to this global L2 norm. Default 1. */
  maxGradNorm: number;
  /** Seeds the uniform draw of external groups. Default 0. */
  seed: number;
  /** Drop zero-signal groups before the mix (default). False keeps them, counted: the ablation. */
  zeroSignalFilter: boolean;
}

export const DEFAULT_SAPO_OPTIONS: Readonly<SapoOptions> = Object.freeze({
  localGroups: 4,
  externalGroups: 4,
  epsLow: 0.2,
  epsHigh: 0.28,
  beta: 0,
  passes: 1,
  microBatchRows: 4,
  learningRate: 1e-4,
  maxGradNorm: 1,
  seed: 0,
  zeroSignalFilter: true,
});

// ---- (1) advantages and (2) the zero-signal filter -----------------------------------------

/** A_i = (r_i − mean) / (std + 1e-6), with the population standard deviation of the group. */
export function groupAdvantages(rewards: readonly number[]): number[] {
  const mean = rewards.reduce((a, b) => a + b, 0) / rewards.length;
  const std = Math.sqrt(rewards.reduce((a, r) => a + (r - mean) ** 2, 0) / rewards.length);
  return rewards.map((r) => (r - mean) / (std + 1e-6));
}

/** False when every reward is equal: then every advantage is 0 and the group teaches nothing. */
export function hasSignal(rewards: readonly number[]): boolean {
  return rewards.some((r) => r !== rewards[0]);
}

/** Why a group cannot be learned from, or null. Data problems are skipped and counted, never thrown. */
export function groupProblem(group: RolloutGroup): 'malformed' | 'group-too-small' | 'non-finite-reward' | null {
  if (
    !Array.isArray(group.completions) ||
    !Array.isArray(group.rewards) ||
    group.completions.length !== group.rewards.length
  ) {
    return 'malformed';
  }
  if (group.rewards.length < 2) return 'group-too-small';
  if (!group.rewards.every(Number.isFinite)) return 'non-finite-reward';
  // Finite rewards can still overflow the variance (1e308 and −1e308): no NaN reaches the loss.
  if (!groupAdvantages(group.rewards).every(Number.isFinite)) return 'non-finite-reward';
  if (group.completionTokens !== undefined && group.completionTokens.length !== group.completions.length)
    return 'malformed';
  if (
    group.finished !== undefined &&
    (!Array.isArray(group.finished) ||
      group.finished.length !== group.completions.length ||
      !group.finished.every((f) => typeof f === 'boolean'))
  )
    return 'malformed';
  return null;
}

// ---- (3) the I local + J external mix ------------------------------------------------------

export interface SelectionCounts {
  local: number;
  external: number;
  zeroSignal: { local: number; external: number };
  skipped: Record<string, number>;
}

/**
 * The groups one step learns from: the first I usable local groups and J drawn uniformly, without
 * replacement, from the usable external ones. Unusable groups are dropped first, and so are
 * zero-signal ones unless `zeroSignalFilter` is false (the ablation: they then take batch slots).
 */
export function selectGroups(
  local: readonly RolloutGroup[],
  external: readonly RolloutGroup[],
  counts: { localGroups: number; externalGroups: number; zeroSignalFilter?: boolean },
  rng: RandomGenerator,
): { groups: RolloutGroup[]; counts: SelectionCounts } {
  const filter = counts.zeroSignalFilter ?? true;
  const tally: SelectionCounts = { local: 0, external: 0, zeroSignal: { local: 0, external: 0 }, skipped: {} };
  const usable = (groups: readonly RolloutGroup[], side: 'local' | 'external') =>
    groups.filter((group) => {
      const problem = groupProblem(group);
      if (problem !== null) tally.skipped[problem] = (tally.skipped[problem] ?? 0) + 1;
      else if (!hasSignal(group.rewards)) tally.zeroSignal[side]++;
      return problem === null && (!filter || hasSignal(group.rewards));
    });
  const chosenLocal = usable(local, 'local').slice(0, counts.localGroups);
  const pool = usable(external, 'external');
  const chosenExternal: RolloutGroup[] = [];
  while (chosenExternal.length < counts.externalGroups && pool.length > 0) {
    chosenExternal.push(...pool.splice(uniformInt(rng, 0, pool.length - 1), 1));
  }
  tally.local = chosenLocal.length;
  tally.external = chosenExternal.length;
  return { groups: [...chosenLocal, ...chosenExternal], counts: tally };
}

// ---- text to tensors: every group re-tokenized with our own tokenizer ----------------------

export interface Batch {
  /** Input ids [N, T]: BOS prompt \n completion, right-padded. */
  tokens: tf.Tensor2D;
  /** The next id at each position [N, T]. */
  targets: tf.Tensor2D;
  /** 1 where the target is a completion token (EOS included), 0 for prompt and padding [N, T]. */
  mask: tf.Tensor2D;
  /** A_i of each row's group [N]. */
  advantages: tf.Tensor1D;
  /** Groups left out because their text did not fit the tokenizer or the context. */
  skipped: Record<string, number>;
}

export function buildBatch(groups: readonly RolloutGroup[], tokenizer: Tokenizer, contextLength: number): Batch | null {
  const rows: { ids: number[]; promptLength: number; advantage: number }[] = [];
  const skipped: Record<string, number> = {};
  for (const group of groups) {
    try {
      const prompt = tokenizer.encodePrompt(group.prompt);
      const advantages = groupAdvantages(group.rewards);
      // Text gets an EOS only where the producer's sampler drew one (finished[i] === true).
      const groupRows = group.completions.map((completion, i) => ({
        ids: [
          ...prompt,
          ...(group.completionTokens?.[i] ??
            tokenizer.encodeCompletion(completion, { eos: group.finished?.[i] === true })),
        ],
        promptLength: prompt.length,
        advantage: advantages[i] as number,
      }));
      // A sequence of n ids gives n − 1 (input, target) pairs; they must fit the context.
      if (groupRows.some((row) => row.ids.length - 1 > contextLength))
        skipped['exceeds-context'] = (skipped['exceeds-context'] ?? 0) + 1;
      else rows.push(...groupRows);
    } catch (error) {
      if (!(error instanceof TokenizerError)) throw error;
      skipped['unencodable-text'] = (skipped['unencodable-text'] ?? 0) + 1;
    }
  }
  if (rows.length === 0) return null;
  const width = Math.max(...rows.map((row) => row.ids.length - 1));
  const padded = (values: number[], fill: number) => [
    ...values,
    ...new Array<number>(width - values.length).fill(fill),
  ];
  return {
    tokens: tf.tensor2d(
      rows.map((row) => padded(row.ids.slice(0, -1), tokenizer.pad)),
      undefined,
      'int32',
    ),
    targets: tf.tensor2d(
      rows.map((row) => padded(row.ids.slice(1), tokenizer.pad)),
      undefined,
      'int32',
    ),
    mask: tf.tensor2d(
      rows.map((row) =>
        padded(
          row.ids.slice(1).map((_, t) => (t + 1 >= row.promptLength ? 1 : 0)),
          0,
        ),
      ),
    ),
    advantages: tf.tensor1d(rows.map((row) => row.advantage)),
    skipped,
  };
}

// ---- (5) the objective ---------------------------------------------------------------------

/**
 * The clipped SAPO/GRPO loss, averaged over the masked (completion) tokens of the batch.
 * `refLogProbs` is needed only when beta > 0; the KL term uses the k3 estimator
 * exp(ref − new) − (ref − new) − 1, unbiased and never negative. `tokens` is the count to average
 * over, default the mask's own: give the whole batch's when these rows are one micro-batch of it,
 * so that the micro-batches' losses (and gradients) add up to the batch's.
 */
export function sapoLoss(
  newLogProbs: tf.Tensor2D,
  oldLogProbs: tf.Tensor2D,
  advantages: tf.Tensor1D,
  mask: tf.Tensor2D,
  options: { epsLow: number; epsHigh: number; beta: number; refLogProbs?: tf.Tensor2D; tokens?: number },
): tf.Scalar {
  return tf.tidy(() => {
    const ratio = tf.exp(tf.sub(newLogProbs, oldLogProbs)); // ρ_t
    const advantage = tf.expandDims(advantages, 1); // A_i, broadcast over tokens
    const unclipped = tf.mul(ratio, advantage);
    const clipped = tf.mul(tf.clipByValue(ratio, 1 - options.epsLow, 1 + options.epsHigh), advantage);
    let perToken = tf.neg(tf.minimum(unclipped, clipped));
    if (options.beta > 0) {
      if (options.refLogProbs === undefined) throw new RangeError('beta > 0 needs reference log-probs');
      const logRatio = tf.sub(options.refLogProbs, newLogProbs);
      perToken = tf.add(perToken, tf.mul(options.beta, tf.sub(tf.sub(tf.exp(logRatio), logRatio), 1)));
    }
    const tokens = options.tokens === undefined ? tf.sum(mask) : tf.scalar(options.tokens);
    return tf.div(tf.sum(tf.mul(perToken, mask)), tf.maximum(tokens, 1)) as tf.Scalar;
  });
}

/**
 * Sums over the masked tokens, for the step statistics: how many take the clipped branch of the
 * objective ((ρ > 1 + ε_high and A > 0) or (ρ < 1 − ε_low and A < 0): their gradient is 0), and
 * CleanRL's approximate KL (ρ − 1) − log ρ. Returns [clipped tokens, approx-KL sum].
 */
export function ratioSums(
  newLogProbs: tf.Tensor2D,
  oldLogProbs: tf.Tensor2D,
  advantages: tf.Tensor1D,
  mask: tf.Tensor2D,
  options: { epsLow: number; epsHigh: number },
): tf.Tensor1D {
  return tf.tidy(() => {
    const logRatio = tf.sub(newLogProbs, oldLogProbs);
    const ratio = tf.exp(logRatio);
    const advantage = tf.expandDims(advantages, 1);
    const high = tf.logicalAnd(tf.greater(ratio, 1 + options.epsHigh), tf.greater(advantage, 0));
    const low = tf.logicalAnd(tf.less(ratio, 1 - options.epsLow), tf.less(advantage, 0));
    const clipped = tf.sum(tf.mul(tf.cast(tf.logicalOr(high, low), 'float32'), mask));
    const approxKl = tf.sum(tf.mul(tf.sub(tf.sub(ratio, 1), logRatio), mask));
    return tf.stack([clipped, approxKl]) as tf.Tensor1D;
  });
}

// ---- (6) the step --------------------------------------------------------------------------

/** Gradients scaled by min(1, maxNorm / ‖g‖), ‖g‖ being the L2 norm of all of them together; and ‖g‖. */
export function clipByGlobalNorm(gradients: tf.Tensor[], maxNorm: number): { clipped: tf.Tensor[]; norm: tf.Scalar } {
  const norm = tf.sqrt(tf.addN(gradients.map((g) => tf.sum(tf.square(g))))) as tf.Scalar;
  const scale = tf.minimum(1, tf.div(maxNorm, tf.add(norm, 1e-6)));
  return { clipped: gradients.map((g) => tf.mul(g, scale)), norm };
}

/** What one step measured, as TRL and CleanRL log it; averages over the batch's completion tokens. */
export interface StepStats {
  /** Share of tokens on the clipped branch ((ρ > 1 + ε_high, A > 0) or (ρ < 1 − ε_low, A < 0)), in the last pass before its update. 0 with μ = 1 (ρ = 1). */
  clipFraction: number;
  /** CleanRL's approximate KL(π_old ‖ π_θ), mean of (ρ − 1) − log ρ, in the last pass before its update. 0 with μ = 1. */
  approxKl: number;
  /** Mean entropy −Σ_v π(v) log π(v) of the policy being updated (first pass) at each completion token, in nats. */
  entropy: number;
  /** Completion tokens per row (completion) of the batch. */
  meanCompletionTokens: number;
}

export interface StepReport {
  /** True when at least one pass updated the policy: false when no group had signal, or the first pass's loss or gradient was not finite (counted as `non-finite-update`; no pass applies after one that is). */
  updated: boolean;
  counts: SelectionCounts;
  /** Completion tokens the loss averaged over. */
  tokens: number;
  /** Loss of each pass (before its update). */
  losses: number[];
  /** Global gradient norm of each pass, before clipping. */
  gradNorms: number[];
  /** Null when there was no batch. */
  stats: StepStats | null;
}

/** Rows of the batch that go through forward and backward together, cut to their longest row. */
interface MicroBatch {
  tokens: tf.Tensor2D;
  targets: tf.Tensor2D;
  mask: tf.Tensor2D;
  advantages: tf.Tensor1D;
  /** log π_old, from the first pass: a constant for later passes. */
  oldLogProbs?: tf.Tensor2D;
  /** log π_ref, when beta > 0. */
  refLogProbs?: tf.Tensor2D;
}

/**
 * The batch cut into micro-batches of at most `rows` rows, each only as wide as its longest
 * completion (later columns are padding, and causal attention never lets them change earlier
 * ones); and the batch's count of completion tokens.
 */
function microBatches(batch: Batch, rows: number): { microBatches: MicroBatch[]; tokens: number } {
  const [n, width] = batch.mask.shape;
  const mask = batch.mask.dataSync() as Float32Array;
  const used = Array.from({ length: n }, (_, r) => {
    for (let t = width - 1; t >= 0; t--) if (mask[r * width + t] !== 0) return t + 1;
    return 1;
  });
  const parts: MicroBatch[] = [];
  for (let from = 0; from < n; from += rows) {
    const size = Math.min(rows, n - from);
    const columns = Math.max(...used.slice(from, from + size));
    const cut = (t: tf.Tensor2D) => tf.slice(t, [from, 0], [size, columns]);
    parts.push({
      tokens: cut(batch.tokens),
      targets: cut(batch.targets),
      mask: cut(batch.mask),
      advantages: tf.slice(batch.advantages, [from], [size]),
    });
  }
  return { microBatches: parts, tokens: mask.reduce((a, b) => a + b, 0) };
}

export class SapoLearner {
  readonly policy: CausalLM;
  readonly tokenizer: Tokenizer;
  readonly options: Readonly<SapoOptions>;
  readonly optimizer: tf.AdamOptimizer;
  readonly #reference: Map<string, tf.Tensor> | null;
  #steps: number;

  /** `steps` is the count already taken, when resuming from a checkpoint. */
  constructor(policy: CausalLM, tokenizer: Tokenizer, options: Partial<SapoOptions> = {}, steps = 0) {
    this.options = Object.freeze({ ...DEFAULT_SAPO_OPTIONS, ...options });
    const { localGroups, externalGroups, passes, microBatchRows, epsLow, epsHigh, beta, learningRate, maxGradNorm } =
      this.options;
    for (const [name, value] of Object.entries({ localGroups, externalGroups, passes, microBatchRows })) {
      const positive = name === 'passes' || name === 'microBatchRows';
      if (!Number.isInteger(value) || value < (positive ? 1 : 0)) {
        throw new RangeError(`${name} must be a ${positive ? 'positive' : 'non-negative'} integer, got ${value}`);
      }
    }
    if (!(epsLow >= 0 && epsLow < 1 && epsHigh >= 0 && beta >= 0 && learningRate > 0 && maxGradNorm > 0)) {
      throw new RangeError('need 0 <= epsLow < 1, epsHigh >= 0, beta >= 0, learningRate > 0 and maxGradNorm > 0');
    }
    // A model may have spare vocabulary rows (padded embeddings), never fewer rows than ids.
    if (tokenizer.vocabSize > policy.config.vocabSize) {
      throw new RangeError(
        `tokenizer ${tokenizer.id} has ${tokenizer.vocabSize} ids, more than the policy's ${policy.config.vocabSize} embeddings`,
      );
    }
    this.policy = policy;
    this.tokenizer = tokenizer;
    this.#steps = steps;
    this.optimizer = tf.train.adam(learningRate, 0.9, 0.999, 1e-8);
    this.#reference = beta > 0 ? new Map([...policy.params].map(([name, p]) => [name, tf.clone(p)])) : null;
  }

  get steps(): number {
    return this.#steps;
  }

  /** One SAPO step on this round's local groups and the external buffer. */
  step(local: readonly RolloutGroup[], external: readonly RolloutGroup[]): StepReport {
    // The draw depends only on the seed and the step, so a resumed learner draws as if never stopped.
    const rng = mersenne(this.options.seed + 1_000_003 * this.#steps);
    const { groups, counts } = selectGroups(local, external, this.options, rng);
    const batch = buildBatch(groups, this.tokenizer, this.policy.config.contextLength);
    if (batch !== null)
      for (const [reason, n] of Object.entries(batch.skipped))
        counts.skipped[reason] = (counts.skipped[reason] ?? 0) + n;
    const report: StepReport = { updated: false, counts, tokens: 0, losses: [], gradNorms: [], stats: null };
    if (batch === null) return report;

    const rows = batch.advantages.shape[0];
    const { microBatches: parts, tokens } = microBatches(batch, this.options.microBatchRows);
    tf.dispose([batch.tokens, batch.targets, batch.mask, batch.advantages]);
    report.tokens = tokens;
    try {
      if (this.#reference !== null) this.#referenceLogProbs(parts);
      report.stats = { ...this.#passes(parts, tokens, report), meanCompletionTokens: tokens / rows };
    } finally {
      for (const part of parts) tf.dispose(Object.values(part));
    }
    if (report.losses.length < this.options.passes)
      counts.skipped['non-finite-update'] = (counts.skipped['non-finite-update'] ?? 0) + 1;
    if (report.updated) this.#steps++;
    return report;
  }

  /**
   * The μ passes. Each sums the micro-batches' losses (each divided by the whole batch's token
   * count) and their gradients, so it takes the same update as one forward and backward over the
   * whole batch, in less memory: it clips the sum once and steps Adam once. Stops before applying
   * a pass whose loss or gradient is not finite. Returns the step's statistics.
   */
  #passes(parts: MicroBatch[], tokens: number, report: StepReport): Omit<StepStats, 'meanCompletionTokens'> {
    const variables = [...this.policy.params.values()];
    const mean = (sum: number) => sum / Math.max(tokens, 1);
    const stats = { clipFraction: 0, approxKl: 0, entropy: 0 };
    for (let pass = 0; pass < this.options.passes; pass++) {
      let gradients: tf.Tensor[] = [];
      const sums = { loss: 0, clipped: 0, approxKl: 0, entropy: 0 };
      for (const part of parts) {
        const { gradients: partial, ...numbers } = this.#microBatch(part, pass === 0, tokens, variables);
        const previous = gradients;
        gradients =
          previous.length === 0 ? partial : tf.tidy(() => partial.map((g, i) => tf.add(previous[i] as tf.Tensor, g)));
        if (previous.length > 0) tf.dispose([...previous, ...partial]);
        for (const key of Object.keys(sums) as (keyof typeof sums)[]) sums[key] += numbers[key];
      }
      // Clip fraction and approximate KL of the last pass that ran, the entropy of the first.
      stats.clipFraction = mean(sums.clipped);
      stats.approxKl = mean(sums.approxKl);
      if (pass === 0) stats.entropy = mean(sums.entropy);
      const finite = tf.tidy(() => {
        const { clipped, norm } = clipByGlobalNorm(gradients, this.options.maxGradNorm);
        report.losses.push(sums.loss);
        report.gradNorms.push(norm.dataSync()[0] as number);
        // A NaN or infinite update would poison every weight, and every checkpoint after it.
        if (!Number.isFinite(sums.loss) || !Number.isFinite(report.gradNorms.at(-1))) return false;
        this.optimizer.applyGradients(variables.map((v, i) => ({ name: v.name, tensor: clipped[i] as tf.Tensor })));
        report.updated = true;
        return true;
      });
      tf.dispose(gradients);
      if (!finite) break;
    }
    return stats;
  }

  /**
   * One micro-batch's forward and backward: its share of the loss (divided by the whole batch's
   * `tokens`), its gradients, and its sums for the statistics (the entropy only when `first`).
   */
  #microBatch(
    part: MicroBatch,
    first: boolean,
    tokens: number,
    variables: tf.Variable[],
  ): { gradients: tf.Tensor[]; loss: number; clipped: number; approxKl: number; entropy: number } {
    return tf.tidy(() => {
      let measured: tf.Tensor | undefined;
      const { value, grads } = tf.variableGrads(() => {
        const { logProbs, entropy } = first
          ? this.policy.tokenLogProbsAndEntropy(part.tokens, part.targets)
          : { logProbs: this.policy.tokenLogProbs(part.tokens, part.targets), entropy: tf.zeros(part.mask.shape) };
        // (4) π_old is this policy before the update, on every row, local and external alike:
        // exactly what the first pass computes, kept as a constant (no gradient) for every pass.
        part.oldLogProbs ??= tf.keep(tf.tensor2d(logProbs.dataSync() as Float32Array, logProbs.shape));
        const entropySum = tf.reshape(tf.sum(tf.mul(entropy, part.mask)), [1]);
        measured = tf.keep(
          tf.concat([ratioSums(logProbs, part.oldLogProbs, part.advantages, part.mask, this.options), entropySum]),
        );
        return sapoLoss(logProbs, part.oldLogProbs, part.advantages, part.mask, {
          ...this.options,
          tokens,
          ...(part.refLogProbs === undefined ? {} : { refLogProbs: part.refLogProbs }),
        });
      }, variables);
      const numbers = tf.concat([tf.reshape(value, [1]), measured as tf.Tensor]).dataSync();
      measured?.dispose();
      const [loss, clipped, approxKl, entropy] = Array.from(numbers);
      return {
        gradients: variables.map((v) => grads[v.name] as tf.Tensor),
        loss: loss as number,
        clipped: clipped as number,
        approxKl: approxKl as number,
        entropy: entropy as number,
      };
    });
  }

  /** log π_ref of every micro-batch, into its `refLogProbs`. */
  #referenceLogProbs(parts: MicroBatch[]): void {
    // Swap the frozen weights in, read log-probs, swap the live ones back: in a finally, so that
    // an exception in between never leaves the reference weights as the policy being trained.
    const live = new Map([...this.policy.params].map(([name, p]) => [name, tf.clone(p)]));
    const assign = (from: Map<string, tf.Tensor>) => {
      for (const [name, p] of this.policy.params) p.assign(from.get(name) as tf.Tensor);
    };
    try {
      assign(this.#reference as Map<string, tf.Tensor>);
      for (const part of parts) part.refLogProbs = tf.tidy(() => this.policy.tokenLogProbs(part.tokens, part.targets));
    } finally {
      try {
        assign(live);
      } finally {
        tf.dispose([...live.values()]);
      }
    }
  }

  dispose(): void {
    this.optimizer.dispose();
    if (this.#reference !== null) tf.dispose([...this.#reference.values()]);
  }
}
