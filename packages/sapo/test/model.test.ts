import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import { describe, expect, it } from 'vitest';
import { Policy, type PolicyConfig, parameterShapes } from '../src/model.js';
import { type Completion, generate, generateText } from '../src/sample.js';
import { sapoLoss } from '../src/sapo.js';
import { ByteTokenizer, TokenizerError } from '../src/tokenizer.js';

const TINY: PolicyConfig = { vocabSize: 259, contextLength: 12, layers: 2, dModel: 8, heads: 2, mlpRatio: 2 };
const tokenizer = new ByteTokenizer();

/** A fixed batch of 3 sequences with a loss mask, advantages and old log-probs chosen off the clip edges. */
function fixture() {
  const rows = ['ab\n12', 'xyz\n7', 'q\nhello'].map((text) => [tokenizer.bos, ...Buffer.from(text)]);
  const width = Math.max(...rows.map((r) => r.length)) - 1;
  const pad = (r: number[]) => [...r, ...new Array(width + 1 - r.length).fill(tokenizer.pad)];
  const tokens = tf.tensor2d(
    rows.map((r) => pad(r).slice(0, -1)),
    undefined,
    'int32',
  );
  const targets = tf.tensor2d(
    rows.map((r) => pad(r).slice(1)),
    undefined,
    'int32',
  );
  const mask = tf.tensor2d(
    rows.map((r) =>
      pad(r)
        .slice(1)
        .map((id, t) => (t >= 2 && id !== tokenizer.pad ? 1 : 0)),
    ),
  );
  const advantages = tf.tensor1d([1.2, -0.7, 0.4]);
  // log ρ offsets of ±0.5 (clipped) and ±0.1 (not clipped): far enough from 1 − ε and 1 + ε that a
  // finite-difference step never crosses a clip edge.
  const offsets = tf.tensor2d(
    rows.map((_, i) => Array.from({ length: width }, (_, t) => [0.5, -0.1, 0.1, -0.5][(i + t) % 4] as number)),
  );
  return { tokens, targets, mask, advantages, offsets };
}

function lossOf(policy: Policy, batch: ReturnType<typeof fixture>, old: tf.Tensor2D) {
  return sapoLoss(policy.tokenLogProbs(batch.tokens, batch.targets), old, batch.advantages, batch.mask, {
    epsLow: 0.2,
    epsHigh: 0.28,
    beta: 0,
  });
}

describe.each(['cpu', 'wasm'])('the policy on the %s backend', (backend) => {
  it('has the analytic SAPO gradient that finite differences give', async () => {
    await tf.setBackend(backend);
    const policy = Policy.create(TINY, { seed: 11, graph: 'fast' });
    const batch = fixture();
    const old = tf.tidy(() => tf.sub(policy.tokenLogProbs(batch.tokens, batch.targets), batch.offsets)) as tf.Tensor2D;
    const variables = [...policy.params.values()];
    const { grads } = tf.variableGrads(() => lossOf(policy, batch, old), variables);
    const names = [...policy.params.keys()];
    // tfjs has no float64 here: central differences in float32 with h = 1e-2. Rounding error is
    // about 1e-7·|L|/h ≈ 1e-5, truncation error h²·|L'''|/6 ≈ 1e-5; we check 2e-3 absolute + 2 % relative.
    const h = 1e-2;
    let checked = 0;
    for (const name of [
      'tokenEmbedding',
      'positionEmbedding',
      'layer0.attn.qkv.weight',
      'layer1.mlp.out.weight',
      'lnFinal.gain',
      'head.weight',
    ]) {
      const variable = policy.params.get(name) as tf.Variable;
      const analytic = (grads[variable.name] as tf.Tensor).dataSync();
      const values = variable.dataSync().slice();
      // The entries with the largest gradients, where a wrong gradient would show most.
      const entries = Array.from(analytic.keys())
        .sort((a, b) => Math.abs(analytic[b] as number) - Math.abs(analytic[a] as number))
        .slice(0, 3);
      for (const i of entries) {
        const at = (delta: number) => {
          const nudged = values.slice();
          nudged[i] = (values[i] as number) + delta;
          variable.assign(tf.tensor(nudged, variable.shape));
          return tf.tidy(() => lossOf(policy, batch, old).dataSync()[0] as number);
        };
        const numeric = (at(h) - at(-h)) / (2 * h);
        variable.assign(tf.tensor(values, variable.shape));
        expect(Math.abs(numeric - (analytic[i] as number)), `${name}[${i}] of ${names.length} params`).toBeLessThan(
          2e-3 + 0.02 * Math.abs(numeric),
        );
        checked++;
      }
    }
    expect(checked).toBe(18);
    policy.dispose();
  });

  it('gives the same loss and gradients with the fast graph as with tfjs’s default graph', async () => {
    await tf.setBackend(backend);
    const fast = Policy.create(TINY, { seed: 5, graph: 'fast' });
    const naive = Policy.create(TINY, { seed: 5, graph: 'naive' });
    const batch = fixture();
    const old = tf.tidy(() => tf.sub(fast.tokenLogProbs(batch.tokens, batch.targets), batch.offsets)) as tf.Tensor2D;
    const a = tf.variableGrads(() => lossOf(fast, batch, old), [...fast.params.values()]);
    const b = tf.variableGrads(() => lossOf(naive, batch, old), [...naive.params.values()]);
    expect(a.value.dataSync()[0]).toBeCloseTo(b.value.dataSync()[0] as number, 5);
    for (const name of parameterShapes(TINY).keys()) {
      const ga = a.grads[(fast.params.get(name) as tf.Variable).name] as tf.Tensor;
      const gb = b.grads[(naive.params.get(name) as tf.Variable).name] as tf.Tensor;
      expect(tf.max(tf.abs(tf.sub(ga, gb))).dataSync()[0], name).toBeLessThan(1e-5);
    }
    fast.dispose();
    naive.dispose();
  });

  it('samples the same completions with and without the KV cache, and its log-probs match a full forward pass', async () => {
    await tf.setBackend(backend);
    const policy = Policy.create({ ...TINY, contextLength: 24 }, { seed: 9 });
    const prompts = [tokenizer.encodePrompt('hi'), tokenizer.encodePrompt('longer')];
    const options = { maxNewTokens: 10, seed: 4, temperature: 1.3, topK: 50, topP: 0.95 };
    const cached = generate(policy, prompts, options);
    const recomputed = generate(policy, prompts, { ...options, kvCache: false });
    expect(cached.map((c) => c.tokens)).toEqual(recomputed.map((c) => c.tokens));
    // Sampled at temperature 1 with nothing cut, the recorded log-probs are the policy's own, as a
    // training forward pass sees them.
    const [, second] = generate(policy, prompts, { maxNewTokens: 10, seed: 4 }) as [Completion, Completion];
    const row = [...(prompts[1] as number[]), ...second.tokens];
    const full = policy
      .tokenLogProbs(
        tf.tensor2d([row.slice(0, -1)], undefined, 'int32'),
        tf.tensor2d([row.slice(1)], undefined, 'int32'),
      )
      .dataSync();
    const tail = Array.from(full.slice((prompts[1] as number[]).length - 1));
    for (const [i, lp] of tail.entries()) expect(lp).toBeCloseTo(second.logProbs[i] as number, 4);
    policy.dispose();
  });
});

describe('bad input to the model', () => {
  it('refuses a prompt that leaves no room in the context, and bad token ids', () => {
    const policy = Policy.create(TINY, { seed: 1 });
    expect(() => generate(policy, [new Array(12).fill(65)], { maxNewTokens: 2, seed: 1 })).toThrow(
      /no room in the model's context of 12/,
    );
    expect(() => generate(policy, [], { maxNewTokens: 2, seed: 1 })).toThrow(/at least one prompt/);
    expect(() => generate(policy, [[257, 999]], { maxNewTokens: 2, seed: 1 })).toThrow(/token ids/);
    expect(() => policy.tokenLogProbs(tf.zeros([1, 13], 'int32'), tf.zeros([1, 13], 'int32'))).toThrow(
      /longer than the model's context/,
    );
    policy.dispose();
  });

  it('generates text from text prompts, decoded up to EOS, never sampling PAD or BOS', () => {
    const policy = Policy.create({ ...TINY, contextLength: 16 }, { seed: 6 });
    const [first] = generateText(policy, tokenizer, ['a', 'bc'], { maxNewTokens: 5, seed: 1 });
    expect(first?.text).toBe(tokenizer.decode(first?.tokens ?? []));
    const many = generateText(policy, tokenizer, new Array(64).fill('x'), {
      maxNewTokens: 10,
      seed: 2,
      temperature: 3,
    });
    expect(many.flatMap((c) => c.tokens).filter((id) => id === tokenizer.pad || id === tokenizer.bos)).toEqual([]);
    expect(() => generateText(policy, tokenizer, ['\ud800'], { maxNewTokens: 5, seed: 1 })).toThrow(TokenizerError);
    policy.dispose();
  });

  it('stops each row at EOS or at the context length', () => {
    const policy = Policy.create({ ...TINY, contextLength: 8 }, { seed: 2 });
    const [row] = generate(policy, [tokenizer.encodePrompt('abcd')], { maxNewTokens: 50, seed: 3 });
    expect(row?.tokens.length).toBeLessThanOrEqual(2);
    policy.dispose();
  });

  it('rejects configs that cannot build a model', () => {
    expect(() => Policy.create({ ...TINY, heads: 3 }, { seed: 1 })).toThrow(/divisible by heads/);
    expect(() => Policy.create({ ...TINY, layers: 0 }, { seed: 1 })).toThrow(/positive integer/);
  });
});

describe('the byte tokenizer', () => {
  it('frames prompts and completions and decodes generated ids', () => {
    expect(tokenizer.encodePrompt('hé')).toEqual([257, 104, 195, 169, 10]);
    expect(tokenizer.encodeCompletion('42')).toEqual([52, 50, 258]);
    expect(tokenizer.encodeCompletion('42', { eos: false })).toEqual([52, 50]);
    expect(tokenizer.decode([52, 50, 258, 65])).toBe('42');
    expect(tokenizer.decode([0xff, 65, 256])).toBe('\ufffdA');
  });

  it('refuses text with a lone surrogate instead of silently changing it', () => {
    expect(() => tokenizer.encodeCompletion('a\udc00')).toThrow(TokenizerError);
  });
});
