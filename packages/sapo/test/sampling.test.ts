import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import { beforeAll, describe, expect, it } from 'vitest';
import { Policy, type PolicyConfig } from '../src/model.js';
import { generate } from '../src/sample.js';
import { ByteTokenizer } from '../src/tokenizer.js';

const tokenizer = new ByteTokenizer();
const TINY: PolicyConfig = { vocabSize: 259, contextLength: 24, layers: 2, dModel: 16, heads: 2, mlpRatio: 2 };

beforeAll(async () => {
  await tf.setBackend('wasm');
  await tf.ready();
});

/** The policy's logits after each prefix of `ids`, from one full forward pass: [ids.length][vocab]. */
function logitsAlong(policy: Policy, ids: number[]): number[][] {
  return tf.tidy(() => {
    const tokens = tf.tensor2d([ids], undefined, 'int32');
    const positions = tf.tensor2d([ids.map((_, i) => i)], undefined, 'int32');
    return policy.logits(policy.forward(tokens, positions).hidden).arraySync()[0] as number[][];
  });
}

describe('sampling', () => {
  it('records the log-prob of each token under the tempered, top-k truncated, renormalised distribution it was drawn from', () => {
    const policy = Policy.create(TINY, { seed: 12 });
    const prompts = [tokenizer.encodePrompt('hi'), tokenizer.encodePrompt('longer')];
    const [temperature, topK] = [0.5, 3];
    const completions = generate(policy, prompts, { maxNewTokens: 8, seed: 5, temperature, topK });
    let checked = 0;
    for (const [r, completion] of completions.entries()) {
      const prompt = prompts[r] as number[];
      const logits = logitsAlong(policy, [...prompt, ...completion.tokens]);
      for (const [t, token] of completion.tokens.entries()) {
        const row = logits[prompt.length - 1 + t] as number[];
        // The 3 largest logits, softmax at temperature 0.5 over them alone.
        const top = row
          .map((logit, id) => ({ logit, id }))
          .sort((a, b) => b.logit - a.logit)
          .slice(0, topK);
        expect(top.map((c) => c.id)).toContain(token);
        const weight = (logit: number) => Math.exp((logit - (top[0]?.logit as number)) / temperature);
        const total = top.reduce((a, c) => a + weight(c.logit), 0);
        const expected = weight(row[token] as number) / total;
        expect(Math.exp(completion.logProbs[t] as number)).toBeCloseTo(expected, 4);
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(8);
    policy.dispose();
  });

  it('records log-prob 0 for greedy tokens (temperature 0): the distribution drawn from is all on them', () => {
    const policy = Policy.create(TINY, { seed: 13 });
    const [completion] = generate(policy, [tokenizer.encodePrompt('x')], { maxNewTokens: 5, seed: 1, temperature: 0 });
    expect(completion?.logProbs).toEqual(completion?.tokens.map(() => 0));
    policy.dispose();
  });

  it('runs the prompts in chunks of microBatchRows: the same greedy completions as one batch, deterministic given the options', () => {
    const policy = Policy.create(TINY, { seed: 14 });
    const prompts = ['a', 'bbbb', 'cc', 'ddddddd', 'e'].map((p) => tokenizer.encodePrompt(p));
    const greedy = { maxNewTokens: 6, seed: 2, temperature: 0 };
    const whole = generate(policy, prompts, greedy);
    const chunked = generate(policy, prompts, { ...greedy, microBatchRows: 2 });
    expect(chunked.map((c) => c.tokens)).toEqual(whole.map((c) => c.tokens));
    const sampled = { maxNewTokens: 6, seed: 3, temperature: 1.2, microBatchRows: 2 };
    expect(generate(policy, prompts, sampled)).toEqual(generate(policy, prompts, sampled));
    expect(() => generate(policy, prompts, { ...greedy, microBatchRows: 0 })).toThrow(/microBatchRows/);
    policy.dispose();
  });

  it('stops at any of several EOS ids, and never samples excluded ids (a tokenizer with fewer ids than the model)', () => {
    const policy = Policy.create(TINY, { seed: 3 });
    const prompts = Array.from({ length: 6 }, (_, i) => tokenizer.encodePrompt(`p${i}`));
    const free = generate(policy, prompts, { maxNewTokens: 12, seed: 5, eos: [] });
    // Two ids the untrained policy samples early become the stop ids: every row ends at the first of either.
    const [a, b] = [free[0]?.tokens[0] as number, free[1]?.tokens[0] as number];
    for (const row of generate(policy, prompts, { maxNewTokens: 12, seed: 5, eos: [a, b] })) {
      const stop = row.tokens.findIndex((id) => id === a || id === b);
      expect(row.finished).toBe(stop >= 0);
      if (row.finished) expect(stop).toBe(row.tokens.length - 1);
    }
    const spare = Array.from({ length: 200 }, (_, i) => 59 + i); // ids 59..258 left out, as past a small tokenizer's vocabulary
    for (const row of generate(policy, prompts, { maxNewTokens: 12, seed: 5, eos: [], exclude: spare }))
      expect(row.tokens.every((id) => id < 59)).toBe(true);
  });
});
