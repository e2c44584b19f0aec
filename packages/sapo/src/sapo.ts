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
 *   (6) step           μ passes of Adam over the batch, each with global-norm gradient clipping
 *
 * The mean in (5) runs over every completion token of the batch (a per-token mean, so long
 * completions weigh more than short ones). With μ = 1 the ratio is exactly 1 during the only
 * pass and the update is REINFORCE with group-normalised advantages; clipping acts from pass 2.
 */
import * as tf from '@tensorflow/tfjs-core';
import { uniformInt } from 'pure-rand/distribution/uniformInt';
import { mersenne } from 'pure-rand/generator/mersenne';
import type { RandomGenerator } from 'pure-rand/types/RandomGenerator';
import type { Policy } from './model.js';
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
 * exp(ref − new) − (ref − new) − 1, unbiased and never negative.
 */
export function sapoLoss(
  newLogProbs: tf.Tensor2D,
  oldLogProbs: tf.Tensor2D,
  advantages: tf.Tensor1D,
  mask: tf.Tensor2D,
  options: { epsLow: number; epsHigh: number; beta: number; refLogProbs?: tf.Tensor2D },
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
    return tf.div(tf.sum(tf.mul(perToken, mask)), tf.maximum(tf.sum(mask), 1)) as tf.Scalar;
  });
}

// ---- (6) the step --------------------------------------------------------------------------

/** Gradients scaled by min(1, maxNorm / ‖g‖), ‖g‖ being the L2 norm of all of them together; and ‖g‖. */
export function clipByGlobalNorm(gradients: tf.Tensor[], maxNorm: number): { clipped: tf.Tensor[]; norm: tf.Scalar } {
  const norm = tf.sqrt(tf.addN(gradients.map((g) => tf.sum(tf.square(g))))) as tf.Scalar;
  const scale = tf.minimum(1, tf.div(maxNorm, tf.add(norm, 1e-6)));
  return { clipped: gradients.map((g) => tf.mul(g, scale)), norm };
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
}

export class SapoLearner {
  readonly policy: Policy;
  readonly tokenizer: Tokenizer;
  readonly options: Readonly<SapoOptions>;
  readonly optimizer: tf.AdamOptimizer;
  readonly #reference: Map<string, tf.Tensor> | null;
  #steps: number;

  /** `steps` is the count already taken, when resuming from a checkpoint. */
  constructor(policy: Policy, tokenizer: Tokenizer, options: Partial<SapoOptions> = {}, steps = 0) {
    this.options = Object.freeze({ ...DEFAULT_SAPO_OPTIONS, ...options });
    const { localGroups, externalGroups, passes, epsLow, epsHigh, beta, learningRate, maxGradNorm } = this.options;
    for (const [name, value] of Object.entries({ localGroups, externalGroups, passes })) {
      if (!Number.isInteger(value) || value < 0 || (name === 'passes' && value < 1)) {
        throw new RangeError(
          `${name} must be a ${name === 'passes' ? 'positive' : 'non-negative'} integer, got ${value}`,
        );
      }
    }
    if (!(epsLow >= 0 && epsLow < 1 && epsHigh >= 0 && beta >= 0 && learningRate > 0 && maxGradNorm > 0)) {
      throw new RangeError('need 0 <= epsLow < 1, epsHigh >= 0, beta >= 0, learningRate > 0 and maxGradNorm > 0');
    }
    if (tokenizer.vocabSize !== policy.config.vocabSize) {
      throw new RangeError(
        `tokenizer ${tokenizer.id} has ${tokenizer.vocabSize} ids, the policy ${policy.config.vocabSize}`,
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
    const report: StepReport = { updated: false, counts, tokens: 0, losses: [], gradNorms: [] };
    if (batch === null) return report;

    const variables = [...this.policy.params.values()];
    const refLogProbs = this.#reference === null ? undefined : this.#referenceLogProbs(batch);
    const tokens = tf.sum(batch.mask);
    report.tokens = tokens.dataSync()[0] as number;
    tokens.dispose();
    let oldLogProbs: tf.Tensor2D | undefined;
    let finite = true;
    for (let pass = 0; pass < this.options.passes && finite; pass++) {
      tf.tidy(() => {
        const { value, grads } = tf.variableGrads(() => {
          const newLogProbs = this.policy.tokenLogProbs(batch.tokens, batch.targets);
          // (4) π_old is this policy before the update, on every row, local and external alike:
          // exactly what the first pass computes, kept as a constant (no gradient) for every pass.
          oldLogProbs ??= tf.keep(tf.tensor2d(newLogProbs.dataSync() as Float32Array, newLogProbs.shape));
          return sapoLoss(newLogProbs, oldLogProbs, batch.advantages, batch.mask, {
            ...this.options,
            ...(refLogProbs === undefined ? {} : { refLogProbs }),
          });
        }, variables);
        const gradients = variables.map((v) => grads[v.name] as tf.Tensor);
        const { clipped, norm } = clipByGlobalNorm(gradients, this.options.maxGradNorm);
        report.losses.push(value.dataSync()[0] as number);
        report.gradNorms.push(norm.dataSync()[0] as number);
        // A NaN or infinite update would poison every weight, and every checkpoint after it.
        finite = Number.isFinite(report.losses.at(-1)) && Number.isFinite(report.gradNorms.at(-1));
        if (!finite) return;
        this.optimizer.applyGradients(variables.map((v, i) => ({ name: v.name, tensor: clipped[i] as tf.Tensor })));
        report.updated = true;
      });
    }
    tf.dispose([oldLogProbs ?? [], refLogProbs ?? [], batch.tokens, batch.targets, batch.mask, batch.advantages]);
    if (!finite) counts.skipped['non-finite-update'] = (counts.skipped['non-finite-update'] ?? 0) + 1;
    if (report.updated) this.#steps++;
    return report;
  }

  #referenceLogProbs(batch: Batch): tf.Tensor2D {
    // Swap the frozen weights in, read log-probs, swap the live ones back: in a finally, so that
    // an exception in between never leaves the reference weights as the policy being trained.
    const live = new Map([...this.policy.params].map(([name, p]) => [name, tf.clone(p)]));
    const assign = (from: Map<string, tf.Tensor>) => {
      for (const [name, p] of this.policy.params) p.assign(from.get(name) as tf.Tensor);
    };
    try {
      assign(this.#reference as Map<string, tf.Tensor>);
      return tf.tidy(() => this.policy.tokenLogProbs(batch.tokens, batch.targets));
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
