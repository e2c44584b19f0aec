import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import { beforeAll, describe, expect, it } from 'vitest';
import { Policy, type PolicyConfig } from '../src/model.js';
import { type Batch, buildBatch, type RolloutGroup, ratioSums, SapoLearner } from '../src/sapo.js';
import { ByteTokenizer } from '../src/tokenizer.js';

const tokenizer = new ByteTokenizer();
const TINY: PolicyConfig = { vocabSize: 259, contextLength: 16, layers: 1, dModel: 16, heads: 2, mlpRatio: 2 };

beforeAll(async () => {
  await tf.setBackend('wasm');
  await tf.ready();
});

const groups: RolloutGroup[] = [
  { prompt: 'a', completions: ['xy', 'z', 'q'], rewards: [1, 0, 0], finished: [true, false, true] },
  { prompt: 'bc', completions: ['1', '22'], rewards: [0, 1], finished: [false, true] },
];

describe('the step statistics', () => {
  it('counts the clipped branch and sums (ρ − 1) − log ρ over masked tokens, as worked out by hand', () => {
    // A = [+1, −1]; ε_low 0.2, ε_high 0.28. Row 0 (A > 0): ρ 1.5 clipped, 0.9 not, 1.2 not.
    // Row 1 (A < 0): ρ 0.5 clipped, 1.4 not (above the range against A), 0.7 masked out.
    const ratios = [
      [1.5, 0.9, 1.2],
      [0.5, 1.4, 0.7],
    ];
    const mask = [
      [1, 1, 1],
      [1, 1, 0],
    ];
    const old = [
      [-1, -2, -3],
      [-0.5, -1, -2],
    ];
    const sums = ratioSums(
      tf.tensor2d(old.map((row, i) => row.map((lp, t) => lp + Math.log(ratios[i]?.[t] as number)))),
      tf.tensor2d(old),
      tf.tensor1d([1, -1]),
      tf.tensor2d(mask),
      { epsLow: 0.2, epsHigh: 0.28 },
    ).dataSync();
    expect(sums[0]).toBe(2);
    const kl = [1.5, 0.9, 1.2, 0.5, 1.4].reduce((a, rho) => a + (rho - 1 - Math.log(rho)), 0);
    expect(sums[1]).toBeCloseTo(kl, 5);
  });

  it('reports the last pass’s clip fraction and approx KL against π_old, recomputed here from the weights', () => {
    const options = { passes: 2, learningRate: 3e-2, localGroups: 2, externalGroups: 0 };
    // π_old: the policy before the step. π after pass 1: a 1-pass step takes exactly pass 1 of a 2-pass one.
    const before = Policy.create(TINY, { seed: 7 });
    const afterPass1 = Policy.create(TINY, { seed: 7 });
    const oneStep = new SapoLearner(afterPass1, tokenizer, { ...options, passes: 1 });
    oneStep.step(groups, []);
    const batch = buildBatch(groups, tokenizer, TINY.contextLength) as Batch;
    const [old, now, mask, advantages] = [
      before.tokenLogProbs(batch.tokens, batch.targets).arraySync(),
      afterPass1.tokenLogProbs(batch.tokens, batch.targets).arraySync(),
      batch.mask.arraySync(),
      batch.advantages.arraySync(),
    ];
    let [tokens, clipped, kl] = [0, 0, 0];
    for (const [i, row] of mask.entries()) {
      for (const [t, m] of row.entries()) {
        if (m === 0) continue;
        const rho = Math.exp((now[i]?.[t] as number) - (old[i]?.[t] as number));
        const a = advantages[i] as number;
        if ((rho > 1.28 && a > 0) || (rho < 0.8 && a < 0)) clipped++;
        kl += rho - 1 - Math.log(rho);
        tokens++;
      }
    }
    // Rows: 'xy' EOS, 'z', 'q' EOS, '1', '22' EOS: 3 + 1 + 2 + 1 + 3 = 10 completion tokens.
    expect(tokens).toBe(10);
    expect(clipped).toBeGreaterThan(0);
    expect(clipped).toBeLessThan(tokens);

    const policy = Policy.create(TINY, { seed: 7 });
    const learner = new SapoLearner(policy, tokenizer, options);
    const { stats } = learner.step(groups, []);
    expect(stats?.clipFraction).toBe(clipped / tokens);
    expect(stats?.approxKl).toBeCloseTo(kl / tokens, 5);
    expect(stats?.meanCompletionTokens).toBe(10 / 5);
    tf.dispose([batch.tokens, batch.targets, batch.mask, batch.advantages]);
    for (const model of [before, afterPass1, policy]) model.dispose();
    oneStep.dispose();
    learner.dispose();
  });

  it('has no clipping and no KL with μ = 1 (ρ = 1), and no statistics without a batch', () => {
    const policy = Policy.create(TINY, { seed: 8 });
    const learner = new SapoLearner(policy, tokenizer, { learningRate: 3e-2, localGroups: 2 });
    const { stats } = learner.step(groups, []);
    expect([stats?.clipFraction, stats?.approxKl]).toEqual([0, 0]);
    const zeroSignal = { prompt: 'a', completions: ['x', 'y'], rewards: [1, 1] };
    expect(learner.step([zeroSignal], []).stats).toBeNull();
    learner.dispose();
    policy.dispose();
  });

  it('measures the entropy of the policy: log(vocab) when the head is zero and every token is equally likely', () => {
    const policy = Policy.create(TINY, { seed: 9 });
    const head = policy.params.get('head.weight') as tf.Variable;
    head.assign(tf.zerosLike(head));
    const { entropy } = policy.tokenLogProbsAndEntropy(
      tf.tensor2d([[257, 97, 10]], undefined, 'int32'),
      tf.tensor2d([[97, 10, 98]], undefined, 'int32'),
    );
    for (const h of entropy.dataSync()) expect(h).toBeCloseTo(Math.log(259), 5);
    const learner = new SapoLearner(policy, tokenizer, { localGroups: 2 });
    expect(learner.step(groups, []).stats?.entropy).toBeCloseTo(Math.log(259), 5);
    learner.dispose();
    policy.dispose();
  });
});
