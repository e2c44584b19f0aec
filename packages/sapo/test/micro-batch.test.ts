import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import { beforeAll, describe, expect, it } from 'vitest';
import { Policy, type PolicyConfig } from '../src/model.js';
import { type Batch, buildBatch, type RolloutGroup, SapoLearner } from '../src/sapo.js';
import { ByteTokenizer } from '../src/tokenizer.js';

const tokenizer = new ByteTokenizer();
const TINY: PolicyConfig = { vocabSize: 259, contextLength: 32, layers: 2, dModel: 16, heads: 2, mlpRatio: 2 };
const LEARNING_RATE = 1e-2;

beforeAll(async () => {
  await tf.setBackend('wasm');
  await tf.ready();
});

// 12 rows of different lengths: micro-batches of 4 rows cut across groups and are cut to different widths.
const groups: RolloutGroup[] = [
  {
    prompt: 'add 2 3',
    completions: ['5', '6', '23', 'five'],
    rewards: [1, 0, 0, 0.5],
    finished: [true, true, false, true],
  },
  { prompt: 'rev ab', completions: ['ba', 'ab', 'b'], rewards: [1, 0, 0], finished: [true, false, true] },
  { prompt: 'count a in aaa', completions: ['3', '2', '3 is the count', '1', '33'], rewards: [1, 0, 1, 0, 0] },
];

/** One step of two passes with β > 0 from a fixed policy: what Adam was handed, the weights and log-probs after. */
function step(microBatchRows: number) {
  const policy = Policy.create(TINY, { seed: 21 });
  const learner = new SapoLearner(policy, tokenizer, {
    passes: 2,
    beta: 0.1,
    learningRate: LEARNING_RATE,
    localGroups: 3,
    externalGroups: 0,
    microBatchRows,
  });
  const applied: Float32Array[][] = [];
  const apply = learner.optimizer.applyGradients.bind(learner.optimizer);
  learner.optimizer.applyGradients = (gradients) => {
    applied.push(
      (gradients as { name: string; tensor: tf.Tensor }[]).map(({ tensor }) => tensor.dataSync() as Float32Array),
    );
    apply(gradients);
  };
  const report = learner.step(groups, []);
  const weights = [...policy.params.values()].map((p) => p.dataSync() as Float32Array);
  const batch = buildBatch(groups, tokenizer, TINY.contextLength) as Batch;
  const logProbs = tf.tidy(() => tf.mul(policy.tokenLogProbs(batch.tokens, batch.targets), batch.mask).dataSync());
  tf.dispose([batch.tokens, batch.targets, batch.mask, batch.advantages]);
  learner.dispose();
  policy.dispose();
  return { report, applied, weights, logProbs: logProbs as Float32Array };
}

const maxDifference = (a: Float32Array, b: Float32Array) =>
  a.reduce((max, x, i) => Math.max(max, Math.abs(x - (b[i] as number))), 0);
const maxOver = (a: Float32Array[], b: Float32Array[]) =>
  Math.max(...a.map((x, i) => maxDifference(x, b[i] as Float32Array)));

describe('micro-batches', () => {
  it('take the same step as one forward and backward over the whole batch (μ = 2, β > 0)', () => {
    const micro = step(4);
    const whole = step(1000);
    // Both clips act: ratios leave the clip range in pass 2, and the gradient norm exceeds 1.
    expect(micro.report.stats?.clipFraction).toBeGreaterThan(0);
    expect(micro.report.gradNorms[0]).toBeGreaterThan(1);
    const [m, w] = [micro.report.stats, whole.report.stats];
    expect([m?.clipFraction, m?.meanCompletionTokens]).toEqual([w?.clipFraction, w?.meanCompletionTokens]);
    expect(m?.approxKl).toBeCloseTo(w?.approxKl as number, 6);
    expect(m?.entropy).toBeCloseTo(w?.entropy as number, 5);
    expect(micro.report.tokens).toBe(whole.report.tokens);
    for (const [pass, loss] of micro.report.losses.entries()) {
      expect(loss).toBeCloseTo(whole.report.losses[pass] as number, 6);
      expect(micro.report.gradNorms[pass]).toBeCloseTo(whole.report.gradNorms[pass] as number, 4);
    }
    // Pass 1, from the same weights: the same sums in another order, equal up to float32 rounding
    // (~1e-7 relative per term; clipped to norm 1, no entry exceeds 1).
    const [first] = micro.applied;
    expect(maxOver(first as Float32Array[], whole.applied[0] as Float32Array[])).toBeLessThan(1e-6);
    // After the step the weights agree to 2 % of one Adam step, not to float32 rounding: Adam moves
    // each weight by lr·m̂/(√v̂ + 1e-8), dividing by the gradient's own size, so where a gradient
    // is ~1e-8 (the attention's key biases, 0 in exact arithmetic, and a few others) rounding noise
    // makes a visibly different step (6e-5 at most here, of lr = 1e-2), and pass 2 starts from
    // those weights. Where they differ the loss is flat: the policies' log-probs agree closely.
    expect(maxOver(micro.weights, whole.weights)).toBeLessThan(0.02 * LEARNING_RATE);
    expect(maxDifference(micro.logProbs, whole.logProbs)).toBeLessThan(1e-5);
  });

  it('keeps tf.memory() flat across steps of several micro-batches, β > 0, and refuses a row count below 1', () => {
    const policy = Policy.create(TINY, { seed: 22 });
    const learner = new SapoLearner(policy, tokenizer, { passes: 2, beta: 0.1, localGroups: 3, microBatchRows: 5 });
    learner.step(groups, []); // Adam creates its moments on the first step
    const tensors = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) learner.step(groups, []);
    expect(tf.memory().numTensors).toBe(tensors);
    learner.dispose();
    expect(() => new SapoLearner(policy, tokenizer, { microBatchRows: 0 })).toThrow(RangeError);
    expect(() => new SapoLearner(policy, tokenizer, { microBatchRows: 2.5 })).toThrow(/microBatchRows/);
    policy.dispose();
  });
});
