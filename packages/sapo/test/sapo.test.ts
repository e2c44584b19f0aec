import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import { mersenne } from 'pure-rand/generator/mersenne';
import { beforeAll, describe, expect, it } from 'vitest';
import { Policy, type PolicyConfig } from '../src/model.js';
import { generate } from '../src/sample.js';
import { buildBatch, groupAdvantages, type RolloutGroup, SapoLearner, sapoLoss, selectGroups } from '../src/sapo.js';
import { ByteTokenizer } from '../src/tokenizer.js';

const tokenizer = new ByteTokenizer();
const TINY: PolicyConfig = { vocabSize: 259, contextLength: 16, layers: 1, dModel: 16, heads: 2, mlpRatio: 2 };

beforeAll(async () => {
  await tf.setBackend('wasm');
  await tf.ready();
});

const group = (prompt: string, rewards: number[]): RolloutGroup => ({
  prompt,
  completions: rewards.map((r, i) => `${r}-${i}`),
  rewards,
});

describe('the SAPO objective, worked out by hand', () => {
  it('matches the formula on a fixed 2-group batch: advantages, ratios, clipping on both sides, the β term', () => {
    // Group 1 rewards [1, 0] → A = [+1, −1]; group 2 rewards [1, 1, 0, 0] → A = [+1, +1, −1, −1] (std 0.5).
    const rewards = [
      [1, 0],
      [1, 1, 0, 0],
    ];
    const advantages = rewards.flatMap(groupAdvantages);
    expect(advantages.map((a) => Math.round(a * 1e5) / 1e5)).toEqual([1, -1, 1, 1, -1, -1]);
    // Two tokens per completion; the last row's second token is padding (mask 0).
    const logRatios = [
      [Math.log(1.5), Math.log(0.9)], // A>0: 1.5 clipped to 1.28; 0.9 unclipped
      [Math.log(0.5), Math.log(1.1)], // A<0: 0.5 clipped to 0.8; 1.1 unclipped
      [Math.log(1.2), Math.log(0.7)], // A>0: 1.2 unclipped; 0.7 unclipped (min keeps the smaller ρA)
      [0, 0],
      [Math.log(1.4), Math.log(0.6)], // A<0: 1.4 unclipped (−1.4 < −1.28); 0.6 clipped to 0.8
      [Math.log(1.3), 0],
    ];
    const mask = [
      [1, 1],
      [1, 1],
      [1, 1],
      [1, 1],
      [1, 1],
      [1, 0],
    ];
    const newLogProbs = [
      [-1, -2],
      [-0.5, -1.5],
      [-3, -0.2],
      [-1, -1],
      [-2, -2.5],
      [-0.7, -9],
    ];
    const oldLogProbs = newLogProbs.map((row, i) => row.map((lp, t) => lp - (logRatios[i]?.[t] as number)));
    const refLogProbs = newLogProbs.map((row) => row.map((lp) => lp + 0.3));
    const [epsLow, epsHigh, beta] = [0.2, 0.28, 0.05];

    let total = 0;
    let tokens = 0;
    for (const [i, row] of logRatios.entries()) {
      for (const [t, logRatio] of row.entries()) {
        if (mask[i]?.[t] === 0) continue;
        const a = advantages[i] as number;
        const rho = Math.exp(logRatio);
        const surrogate = Math.min(rho * a, Math.min(Math.max(rho, 1 - epsLow), 1 + epsHigh) * a);
        const d = 0.3; // ref − new
        total += -surrogate + beta * (Math.exp(d) - d - 1);
        tokens++;
      }
    }
    const expected = total / tokens;
    // Spelled out for the first group: −(1.28·1 + 0.9·1 + 0.8·(−1) + 1.1·(−1)) = −0.28 over its 4 tokens.

    const loss = sapoLoss(
      tf.tensor2d(newLogProbs),
      tf.tensor2d(oldLogProbs),
      tf.tensor1d(advantages),
      tf.tensor2d(mask),
      {
        epsLow,
        epsHigh,
        beta,
        refLogProbs: tf.tensor2d(refLogProbs),
      },
    );
    expect(loss.dataSync()[0]).toBeCloseTo(expected, 5);
  });

  it('stops the gradient where the ratio has left the clip range in the advantage’s favour (the μ > 1 case)', () => {
    const gradient = (logRatio: number, advantage: number) =>
      tf
        .grad((lp: tf.Tensor) =>
          sapoLoss(lp as tf.Tensor2D, tf.tensor2d([[-1 - logRatio]]), tf.tensor1d([advantage]), tf.tensor2d([[1]]), {
            epsLow: 0.2,
            epsHigh: 0.28,
            beta: 0,
          }),
        )(tf.tensor2d([[-1]]))
        .dataSync()[0] as number;
    expect(gradient(Math.log(1.5), 1)).toBe(0); // above 1 + ε_high with A > 0
    expect(gradient(Math.log(0.5), -1)).toBe(0); // below 1 − ε_low with A < 0
    expect(gradient(Math.log(1.1), 1)).toBeCloseTo(-1.1, 5); // inside: −ρA
    expect(gradient(Math.log(1.5), -1)).toBeCloseTo(1.5, 5); // outside but against A: not clipped
  });
});

describe('the zero-signal filter and the I/J mix', () => {
  it('drops and counts groups whose rewards are all equal, local and external alike', () => {
    const local = [group('a', [1, 1, 1]), group('b', [0, 1, 0]), group('c', [0, 0, 0])];
    const external = [group('d', [0.5, 0.5]), group('e', [1, 0])];
    const { groups, counts } = selectGroups(local, external, { localGroups: 4, externalGroups: 4 }, mersenne(1));
    expect(groups.map((g) => g.prompt)).toEqual(['b', 'e']);
    expect(counts.zeroSignal).toEqual({ local: 2, external: 1 });
  });

  it('keeps zero-signal groups, still counted, when the filter is off (the ablation)', () => {
    const local = [group('a', [1, 1, 1]), group('b', [0, 1, 0])];
    const { groups, counts } = selectGroups(
      local,
      [],
      { localGroups: 4, externalGroups: 0, zeroSignalFilter: false },
      mersenne(1),
    );
    expect(groups.map((g) => g.prompt)).toEqual(['a', 'b']);
    expect(counts.zeroSignal).toEqual({ local: 1, external: 0 });
  });

  it('trains on the ids a node sampled for its own groups, and re-tokenizes peers’ text', () => {
    const sampled = { ...group('p', [1, 0]), completions: ['\ufffd', 'b'], completionTokens: [[0xff], [98]] };
    const batch = buildBatch([sampled, group('q', [0, 1])], tokenizer, 32);
    const rows = batch?.targets.arraySync() as number[][];
    expect(rows[0]?.slice(1, 4)).toEqual([10, 0xff, tokenizer.pad]); // '\n' then the sampled byte, no EOS: it did not finish
    expect(rows[2]?.slice(1, 4)).toEqual([10, 48, 45]); // '\n' then '0-', re-encoded from text
  });

  it('ends re-tokenized text with EOS only where the producer finished: never an EOS that was not sampled', () => {
    const finished = { prompt: 'p', completions: ['ab', 'cd'], rewards: [1, 0], finished: [true, false] };
    const unknown = { prompt: 'p', completions: ['ab', 'cd'], rewards: [0, 1] };
    const batch = buildBatch([finished, unknown], tokenizer, 32) as NonNullable<ReturnType<typeof buildBatch>>;
    const targets = batch.targets.arraySync();
    const mask = batch.mask.arraySync();
    // Prompt BOS 'p' '\n', then the completion: targets start at 'p'; completion targets are masked in.
    expect(targets[0]).toEqual([112, 10, 97, 98, tokenizer.eos]);
    expect(mask[0]).toEqual([0, 0, 1, 1, 1]);
    expect(targets[1]).toEqual([112, 10, 99, 100, tokenizer.pad]);
    expect(mask[1]).toEqual([0, 0, 1, 1, 0]);
    // No `finished` (an older peer): unknown, so no EOS either.
    expect(targets.slice(2).map((row) => row.includes(tokenizer.eos))).toEqual([false, false]);
    tf.dispose([batch.tokens, batch.targets, batch.mask, batch.advantages]);
  });

  it('counts a group whose `finished` has the wrong length or non-boolean entries as malformed', () => {
    const bad = [
      { ...group('short', [1, 0]), finished: [true] },
      { ...group('strings', [1, 0]), finished: ['yes', 'no'] as unknown as boolean[] },
      { ...group('ok', [1, 0]), finished: [false, true] },
    ];
    const { groups, counts } = selectGroups(bad, [], { localGroups: 4, externalGroups: 0 }, mersenne(1));
    expect(groups.map((g) => g.prompt)).toEqual(['ok']);
    expect(counts.skipped).toEqual({ malformed: 2 });
  });

  it('counts groups whose advantages overflow (1e308 and −1e308) instead of training on NaN', () => {
    const { groups, counts } = selectGroups(
      [group('a', [1e308, 1e308, -1e308])],
      [],
      { localGroups: 4, externalGroups: 0 },
      mersenne(1),
    );
    expect(groups).toEqual([]);
    expect(counts.skipped).toEqual({ 'non-finite-reward': 1 });
  });

  it('counts unusable groups instead of failing: size 1, NaN or infinite rewards, mismatched lengths', () => {
    const bad = [
      group('one', [1]),
      group('nan', [1, Number.NaN]),
      group('inf', [0, Number.POSITIVE_INFINITY]),
      { prompt: 'x', completions: ['a'], rewards: [1, 0] },
    ];
    const { groups, counts } = selectGroups(bad, [], { localGroups: 4, externalGroups: 0 }, mersenne(1));
    expect(groups).toEqual([]);
    expect(counts.skipped).toEqual({ 'group-too-small': 1, 'non-finite-reward': 2, malformed: 1 });
  });

  it('takes the first I local groups and J distinct external groups drawn uniformly', () => {
    const local = Array.from({ length: 10 }, (_, i) => group(`l${i}`, [0, 1]));
    const external = Array.from({ length: 10 }, (_, i) => group(`e${i}`, [1, 0]));
    const rng = mersenne(7);
    const picked = new Map<string, number>();
    const draws = 2000;
    for (let i = 0; i < draws; i++) {
      const { groups, counts } = selectGroups(local, external, { localGroups: 2, externalGroups: 3 }, rng);
      expect(groups.slice(0, 2).map((g) => g.prompt)).toEqual(['l0', 'l1']);
      const externals = groups.slice(2).map((g) => g.prompt);
      expect(new Set(externals).size).toBe(3);
      expect(counts).toMatchObject({ local: 2, external: 3 });
      for (const name of externals) picked.set(name, (picked.get(name) ?? 0) + 1);
    }
    // Each external group is picked with probability 3/10: 600 of 2000 draws, ± 5 standard deviations.
    for (let i = 0; i < 10; i++)
      expect(Math.abs((picked.get(`e${i}`) ?? 0) - 600)).toBeLessThan(5 * Math.sqrt(2000 * 0.3 * 0.7));
  });

  it('leaves the policy untouched when no group has signal', () => {
    const policy = Policy.create(TINY, { seed: 1 });
    const before = policy.params.get('head.weight')?.dataSync().slice();
    const learner = new SapoLearner(policy, tokenizer);
    const report = learner.step([group('a', [1, 1]), group('b', [0, 0])], [group('c', [0, 0])]);
    expect(report.updated).toBe(false);
    expect(report.counts.zeroSignal).toEqual({ local: 2, external: 1 });
    expect(policy.params.get('head.weight')?.dataSync()).toEqual(before);
    learner.dispose();
    policy.dispose();
  });
});

describe('the SAPO step', () => {
  it('runs μ passes, each clipping and stepping; external text is re-tokenized and skipped with a count when it cannot be', () => {
    const policy = Policy.create(TINY, { seed: 2 });
    const learner = new SapoLearner(policy, tokenizer, { passes: 3, learningRate: 1e-2, externalGroups: 3 });
    const external = [group('ok', [1, 0]), group('\ud800 lone surrogate', [1, 0]), group('x'.repeat(40), [1, 0])];
    const report = learner.step([group('a', [1, 0, 0, 1])], external);
    expect(report.updated).toBe(true);
    expect(report.losses).toHaveLength(3);
    expect(report.losses[0]).toBeCloseTo(0, 6); // pass 1: ρ = 1, and the advantages of a group sum to 0
    expect(report.losses[2]).not.toBeCloseTo(report.losses[0] as number, 4);
    expect(report.counts.skipped).toEqual({ 'unencodable-text': 1, 'exceeds-context': 1 });
    learner.dispose();
    policy.dispose();
  });

  it('keeps the live weights, bit for bit, when reading the reference log-probs throws (β > 0)', () => {
    const policy = Policy.create(TINY, { seed: 4 });
    const learner = new SapoLearner(policy, tokenizer, { beta: 0.1, learningRate: 1e-2 });
    // One step first, so that the live weights differ from the frozen reference ones.
    expect(learner.step([group('a', [1, 0, 0, 1])], []).updated).toBe(true);
    const before = new Map([...policy.params].map(([name, p]) => [name, p.dataSync().slice()]));
    const headBefore = before.get('head.weight') as Float32Array;
    // Throw from tokenLogProbs whenever the weights in place are not the live ones: the reference call.
    const tokenLogProbs = policy.tokenLogProbs.bind(policy);
    policy.tokenLogProbs = (tokens, targets) => {
      const head = (policy.params.get('head.weight') as tf.Variable).dataSync();
      if (head.some((w, i) => w !== headBefore[i])) throw new Error('reference pass failed');
      return tokenLogProbs(tokens, targets);
    };
    expect(() => learner.step([group('b', [0, 1])], [])).toThrow('reference pass failed');
    policy.tokenLogProbs = tokenLogProbs;
    const bits = (a: tf.TypedArray) => new Uint32Array(a.buffer, a.byteOffset, a.length);
    for (const [name, p] of policy.params)
      expect(bits(p.dataSync()), name).toEqual(bits(before.get(name) as Float32Array));
    expect(learner.steps).toBe(1);
    learner.dispose();
    policy.dispose();
  });

  it('keeps tf.memory() flat across steps and generations', () => {
    const policy = Policy.create(TINY, { seed: 3 });
    const learner = new SapoLearner(policy, tokenizer, { passes: 2, beta: 0.1 });
    const round = (seed: number) => {
      const outs = generate(policy, [tokenizer.encodePrompt('a'), tokenizer.encodePrompt('bb')], {
        maxNewTokens: 4,
        seed,
      });
      learner.step([{ prompt: 'a', completions: outs.map((o) => tokenizer.decode(o.tokens)), rewards: [1, 0] }], []);
    };
    round(0); // Adam creates its moments on the first step
    const tensors = tf.memory().numTensors;
    for (let i = 1; i <= 5; i++) round(i);
    expect(tf.memory().numTensors).toBe(tensors);
    learner.dispose();
    policy.dispose();
  });

  it('learns a trivial verifiable task from random init with the SAPO step alone', () => {
    // Reward 1 when the first generated byte is a lowercase letter: about 26/259 by chance.
    const policy = Policy.create({ ...TINY, dModel: 32 }, { seed: 3 });
    const learner = new SapoLearner(policy, tokenizer, {
      learningRate: 3e-3,
      localGroups: 4,
      externalGroups: 0,
      passes: 2,
    });
    const isLetter = (id: number | undefined): number => (id !== undefined && id >= 97 && id <= 122 ? 1 : 0);
    const meanReward = (step: number) => {
      const groups = ['a', 'b', 'c', 'd'].map((prompt, i) => {
        const outs = generate(policy, new Array(8).fill(tokenizer.encodePrompt(prompt)), {
          maxNewTokens: 2,
          seed: step * 10 + i,
        });
        return {
          prompt,
          completions: outs.map((o) => tokenizer.decode(o.tokens)),
          rewards: outs.map((o) => isLetter(o.tokens[0])),
        };
      });
      learner.step(groups, []);
      return groups.flatMap((g) => g.rewards).reduce((a, b) => a + b, 0) / 32;
    };
    const curve = Array.from({ length: 80 }, (_, step) => meanReward(step));
    const window = (from: number) => curve.slice(from, from + 5).reduce((a, b) => a + b, 0) / 5;
    expect(window(0)).toBeLessThan(0.2);
    expect(window(75)).toBeGreaterThan(0.8);
    learner.dispose();
    policy.dispose();
  });
});
