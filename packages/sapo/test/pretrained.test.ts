import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { PretrainedConfig } from '../src/hf/config.js';
import { type GraphKind, Policy } from '../src/model.js';
import {
  baseShapes,
  type CausalLM,
  type PretrainedOptions,
  PretrainedPolicy,
  transientOperand,
  vocabularyBlockTokens,
} from '../src/pretrained.js';
import { generate } from '../src/sample.js';
import { referenceLogits, referenceShapes } from './reference/llama-reference.js';

/** Small random models covering what the two architectures differ in. */
const CONFIGS: Record<string, PretrainedConfig> = {
  'llama, GQA 2:1, tied embeddings': {
    architecture: 'llama',
    vocabSize: 61,
    hiddenSize: 32,
    intermediateSize: 48,
    layers: 2,
    heads: 4,
    kvHeads: 2,
    headDim: 8,
    ropeTheta: 500_000,
    rmsNormEps: 1e-5,
    tieWordEmbeddings: true,
    attentionBias: false,
    maxPositions: 128,
  },
  'qwen2, GQA 3:1, q/k/v biases, untied': {
    architecture: 'qwen2',
    vocabSize: 67,
    hiddenSize: 24,
    intermediateSize: 40,
    layers: 3,
    heads: 6,
    kvHeads: 2,
    headDim: 4,
    ropeTheta: 1_000_000,
    rmsNormEps: 1e-6,
    tieWordEmbeddings: false,
    attentionBias: true,
    maxPositions: 128,
  },
  'llama, one kv head, head_dim ≠ hidden/heads, attention_bias, untied': {
    architecture: 'llama',
    vocabSize: 53,
    hiddenSize: 32,
    intermediateSize: 40,
    layers: 2,
    heads: 4,
    kvHeads: 1,
    headDim: 12,
    ropeTheta: 2_500,
    rmsNormEps: 1e-5,
    tieWordEmbeddings: false,
    attentionBias: true,
    maxPositions: 128,
  },
};
const CONFIG_NAMES = Object.keys(CONFIGS);
const configOf = (name: string) => CONFIGS[name] as PretrainedConfig;
const CONTEXT = 64;
const options = (extra: Partial<PretrainedOptions> = {}): PretrainedOptions => ({
  contextLength: CONTEXT,
  lora: { rank: 4, alpha: 8, seed: 3 },
  ...extra,
});

/** mulberry32: a seeded uniform [0, 1) stream, so every test's model is the same each run. */
function uniform(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Random weights in the Hugging Face layout: activations of order 1, logits of a few units. */
function randomWeights(config: PretrainedConfig, seed: number): Map<string, Float32Array> {
  const next = uniform(seed);
  const weights = new Map<string, Float32Array>();
  for (const [name, shape] of referenceShapes(config)) {
    const size = shape.reduce((a, b) => a * b, 1);
    const draw = name.endsWith('norm.weight')
      ? () => 1 + 0.4 * (next() - 0.5)
      : name.endsWith('.bias')
        ? () => 0.2 * (next() - 0.5)
        : name.includes('embed_tokens') || name.startsWith('lm_head')
          ? () => 2 * (next() - 0.5)
          : () => 2 * Math.sqrt(3 / (shape[1] as number)) * (next() - 0.5);
    weights.set(name, Float32Array.from({ length: size }, draw));
  }
  return weights;
}

const randomIds = (count: number, vocab: number, seed: number) => {
  const next = uniform(seed);
  return Array.from({ length: count }, () => Math.floor(next() * vocab));
};

/** The policy's logits after each prefix of `ids`, from one forward pass at positions 0..T−1. */
function logitsAlong(policy: PretrainedPolicy, ids: readonly number[]): number[][] {
  return tf.tidy(() => {
    const tokens = tf.tensor2d([[...ids]], undefined, 'int32');
    const positions = tf.tensor2d([ids.map((_, i) => i)], undefined, 'int32');
    return policy.logits(policy.forward(tokens, positions).hidden).arraySync()[0] as number[][];
  });
}

function maxDifference(a: ArrayLike<number>[], b: ArrayLike<number>[]): number {
  expect(a.length).toBe(b.length);
  let worst = 0;
  a.forEach((row, t) => {
    const other = b[t] as ArrayLike<number>;
    expect(row.length).toBe(other.length);
    for (let i = 0; i < row.length; i++) worst = Math.max(worst, Math.abs((row[i] as number) - (other[i] as number)));
  });
  return worst;
}

/** Sets every adapter to random values (B included), as after some training. */
function randomiseAdapters(policy: PretrainedPolicy, seed: number): void {
  let i = 0;
  for (const p of policy.params.values()) {
    p.assign(tf.tidy(() => tf.randomUniform(p.shape, -0.3, 0.3, 'float32', seed + i++)));
  }
}

let live: PretrainedPolicy[] = [];
const make = (config: PretrainedConfig, weights: Map<string, Float32Array>, extra: Partial<PretrainedOptions> = {}) => {
  const policy = new PretrainedPolicy(config, weights, options(extra));
  live.push(policy);
  return policy;
};

beforeAll(async () => {
  await tf.setBackend('wasm');
  await tf.ready();
});

afterEach(async () => {
  for (const policy of live) policy.dispose();
  live = [];
  await tf.setBackend('wasm');
});

describe('the pre-trained policy', () => {
  it('asks for exactly the tensors of the Hugging Face models', () => {
    for (const config of Object.values(CONFIGS)) {
      expect([...baseShapes(config)]).toEqual([...referenceShapes(config)]);
    }
  });

  it('is a CausalLM, as the embedded Policy is', () => {
    const embedded: CausalLM = Policy.create(
      { vocabSize: 259, contextLength: 8, layers: 1, dModel: 8, heads: 2, mlpRatio: 2 },
      { seed: 1 },
    );
    const pretrained: CausalLM = make(
      configOf(CONFIG_NAMES[0] as string),
      randomWeights(configOf(CONFIG_NAMES[0] as string), 1),
    );
    expect(pretrained.config.contextLength).toBe(CONTEXT);
    embedded.dispose();
  });

  describe.each(CONFIG_NAMES)('%s', (name) => {
    const config = configOf(name);
    const weights = randomWeights(config, 7);
    const ids = randomIds(40, config.vocabSize, 11);

    it.each([
      ['wasm', 'fast'],
      ['wasm', 'naive'],
      ['cpu', 'naive'],
    ] as const)('gives the reference logits to 1e-4 on %s with the %s graph', async (backend, graph: GraphKind) => {
      await tf.setBackend(backend);
      const policy = make(config, weights, { graph });
      expect(maxDifference(logitsAlong(policy, ids), referenceLogits(config, weights, ids))).toBeLessThan(1e-4);
    });

    it('generates greedily the same 16 tokens with the KV cache as by reading the whole sequence each step', () => {
      const policy = make(config, weights);
      const greedy = (row: number[]) => (row as number[]).indexOf(Math.max(...row));
      const prompt = ids.slice(0, 9);

      // Without a cache: every step reads the whole sequence again.
      const recomputed = [...prompt];
      for (let step = 0; step < 16; step++) recomputed.push(greedy(logitsAlong(policy, recomputed).at(-1) as number[]));

      // With a cache: the prompt once, then one token at a time at its own position.
      const cached = [...prompt];
      let state = tf.tidy(() => {
        const { hidden, cache } = policy.forward(
          tf.tensor2d([prompt], undefined, 'int32'),
          tf.tensor2d([prompt.map((_, i) => i)], undefined, 'int32'),
        );
        return { logits: policy.logits(tf.slice(hidden, [0, prompt.length - 1, 0], [1, 1, -1]) as tf.Tensor3D), cache };
      });
      for (let step = 0; step < 16; step++) {
        const next = greedy((state.logits.arraySync() as number[][][])[0]?.[0] as number[]);
        cached.push(next);
        const previous = state;
        state = tf.tidy(() => {
          const { hidden, cache } = policy.forward(
            tf.tensor2d([[next]], undefined, 'int32'),
            tf.tensor2d([[cached.length - 1]], undefined, 'int32'),
            previous.cache,
          );
          return { logits: policy.logits(hidden), cache };
        });
        tf.dispose([previous.logits, ...previous.cache.keys, ...previous.cache.values]);
      }
      expect(state.cache.keys[0]?.shape).toEqual([1, config.kvHeads, prompt.length + 16, config.headDim]);
      tf.dispose([state.logits, ...state.cache.keys, ...state.cache.values]);
      expect(cached).toEqual(recomputed);
    });

    it('gives a left-padded batch the logits of its rows alone', () => {
      const policy = make(config, weights);
      randomiseAdapters(policy, 5);
      const rows = [ids.slice(0, 12), ids.slice(12, 17), ids.slice(20, 29)];
      const width = Math.max(...rows.map((r) => r.length));
      const pads = rows.map((r) => width - r.length);
      const batched = tf.tidy(() => {
        const tokens = tf.tensor2d(
          rows.map((r, i) => [...new Array<number>(pads[i] as number).fill(0), ...r]),
          undefined,
          'int32',
        );
        const positions = tf.tensor2d(
          rows.map((_, i) => Array.from({ length: width }, (_, j) => Math.max(0, j - (pads[i] as number)))),
          undefined,
          'int32',
        );
        const keyBias = tf.tensor4d(
          rows.flatMap((_, i) => Array.from({ length: width }, (_, j) => (j < (pads[i] as number) ? -1e9 : 0))),
          [rows.length, 1, 1, width],
        );
        return policy.logits(policy.forward(tokens, positions, undefined, keyBias).hidden).arraySync();
      });
      rows.forEach((row, i) => {
        const alone = logitsAlong(policy, row);
        const padded = (batched[i] as number[][]).slice(pads[i] as number);
        expect(maxDifference(padded, alone)).toBeLessThan(1e-5);
      });
    });

    it('samples through sample.ts: a left-padded batch with the cache, greedily, as each row alone without it', () => {
      const policy = make(config, weights);
      randomiseAdapters(policy, 9);
      const asPolicy = policy as unknown as Policy; // until sample.ts takes a CausalLM
      const prompts = [ids.slice(0, 3), ids.slice(3, 11), ids.slice(11, 16)];
      const settings = { maxNewTokens: 16, seed: 1, temperature: 0, eos: -1 };
      const batched = generate(asPolicy, prompts, settings);
      const alone = prompts.map((prompt) => generate(asPolicy, [prompt], { ...settings, kvCache: false })[0]);
      expect(batched.map((c) => c.tokens)).toEqual(alone.map((c) => c?.tokens));
      expect(batched.every((c) => c.tokens.length === 16)).toBe(true);
    });

    it('starts as the base model and, with trained adapters, equals the reference on its merged weights', () => {
      const policy = make(config, weights);
      expect(maxDifference(logitsAlong(policy, ids), referenceLogits(config, weights, ids))).toBeLessThan(1e-4);
      randomiseAdapters(policy, 13);
      const merged = policy.mergedWeights();
      expect([...merged.keys()]).toEqual([...referenceShapes(config).keys()]);
      // Only the adapted matrices change; norms, biases and embeddings come back as given.
      for (const [key, values] of merged) {
        if (!/_proj\.weight$/.test(key)) expect(values).toEqual(weights.get(key));
      }
      const ours = logitsAlong(policy, ids);
      expect(maxDifference(ours, referenceLogits(config, weights, ids))).toBeGreaterThan(1e-2);
      expect(maxDifference(ours, referenceLogits(config, merged, ids))).toBeLessThan(1e-4);
    });

    it('computes log-probs and entropies from the logits', () => {
      const policy = make(config, weights);
      randomiseAdapters(policy, 17);
      const tokens = [ids.slice(0, 10), ids.slice(10, 20)];
      const targets = [ids.slice(1, 11), ids.slice(11, 21)];
      const [logProbs, entropy, alone] = tf.tidy(() => {
        const t = tf.tensor2d(tokens, undefined, 'int32');
        const y = tf.tensor2d(targets, undefined, 'int32');
        const both = policy.tokenLogProbsAndEntropy(t, y);
        return [both.logProbs.arraySync(), both.entropy.arraySync(), policy.tokenLogProbs(t, y).arraySync()];
      });
      expect(maxDifference(alone, logProbs)).toBe(0);
      tokens.forEach((row, b) => {
        logitsAlong(policy, row).forEach((logits, t) => {
          const max = Math.max(...logits);
          const logZ = max + Math.log(logits.reduce((s, l) => s + Math.exp(l - max), 0));
          const target = (targets[b] as number[])[t] as number;
          expect((logProbs[b] as number[])[t]).toBeCloseTo((logits[target] as number) - logZ, 4);
          const h = -logits.reduce((s, l) => s + Math.exp(l - logZ) * (l - logZ), 0);
          expect((entropy[b] as number[])[t]).toBeCloseTo(h, 4);
        });
      });
    });

    it('trains the adapters only: gradients reach A and B and no base weight; the fast graph gives the naive one', () => {
      const registered = () => Object.keys(tf.engine().registeredVariables).length;
      const before = registered();
      const fast = make(config, weights, { graph: 'fast' });
      expect(registered() - before).toBe(fast.params.size);
      expect(fast.params.size).toBe(config.layers * 7 * 2);
      expect(
        [...fast.params.keys()].every((key) =>
          /^model\.layers\.\d+\.(self_attn|mlp)\.\w+_proj\.lora_[AB]\.weight$/.test(key),
        ),
      ).toBe(true);
      const naive = make(config, weights, { graph: 'naive' });
      randomiseAdapters(fast, 21);
      randomiseAdapters(naive, 21);
      const tokens = tf.tensor2d([ids.slice(0, 12), ids.slice(12, 24)], undefined, 'int32');
      const targets = tf.tensor2d([ids.slice(1, 13), ids.slice(13, 25)], undefined, 'int32');
      const loss = (policy: PretrainedPolicy) => () =>
        tf.neg(tf.mean(policy.tokenLogProbs(tokens, targets))) as tf.Scalar;
      // No list of variables: tfjs differentiates with respect to every trainable variable there is.
      const fastGrads = tf.variableGrads(loss(fast));
      const naiveGrads = tf.variableGrads(loss(naive));
      const names = (policy: PretrainedPolicy) => [...policy.params.values()].map((p) => p.name).sort();
      expect(Object.keys(fastGrads.grads).sort()).toEqual(names(fast));
      const fastParams = [...fast.params.values()];
      [...naive.params.values()].forEach((p, i) => {
        const ours = (fastGrads.grads[(fastParams[i] as tf.Variable).name] as tf.Tensor).dataSync();
        const theirs = (naiveGrads.grads[p.name] as tf.Tensor).dataSync();
        const scale = Math.max(...theirs.map(Math.abs));
        expect(scale).toBeGreaterThan(0);
        expect(Math.max(...ours.map((g, j) => Math.abs(g - (theirs[j] as number))))).toBeLessThan(1e-4 * scale + 1e-6);
      });
      tf.dispose([
        tokens,
        targets,
        fastGrads.value,
        naiveGrads.value,
        ...Object.values(fastGrads.grads),
        ...Object.values(naiveGrads.grads),
      ]);
    });

    it('multiplies by transient copies of the base (keepPackedWeights: false) to the same logits, tokens and gradients', () => {
      const kept = make(config, weights);
      const transient = make(config, weights, { keepPackedWeights: false });
      expect(transient.keepPackedWeights).toBe(false);
      randomiseAdapters(kept, 29);
      randomiseAdapters(transient, 29);
      expect(maxDifference(logitsAlong(transient, ids), logitsAlong(kept, ids))).toBe(0);
      const sampling = { seed: 5, eos: [] as number[], maxNewTokens: 8, temperature: 0 };
      const prompts = [ids.slice(0, 6), ids.slice(6, 9)];
      expect(generate(transient, prompts, sampling)).toEqual(generate(kept, prompts, sampling));
      const tokens = tf.tensor2d([ids.slice(0, 10), ids.slice(10, 20)], undefined, 'int32');
      const targets = tf.tensor2d([ids.slice(1, 11), ids.slice(11, 21)], undefined, 'int32');
      const before = tf.memory().numTensors;
      const step = (policy: PretrainedPolicy) =>
        tf.variableGrads(
          () => tf.mean(policy.tokenLogProbs(tokens, targets)) as tf.Scalar,
          [...policy.params.values()],
        );
      const [a, b] = [step(transient), step(kept)];
      const keptParams = [...kept.params.values()];
      [...transient.params.values()].forEach((p, i) => {
        const mine = (a.grads[p.name] as tf.Tensor).dataSync();
        const theirs = (b.grads[(keptParams[i] as tf.Variable).name] as tf.Tensor).dataSync();
        expect(Math.max(...mine.map((g, j) => Math.abs(g - (theirs[j] as number))))).toBe(0);
      });
      const results = [a.value, b.value, ...Object.values(a.grads), ...Object.values(b.grads)];
      expect(tf.memory().numTensors - before).toBe(results.length);
      tf.dispose([tokens, targets, ...results]);
    });

    it('has the gradient of a log-softmax composed of tfjs ops, from one pass over the vocabulary', () => {
      const policy = make(config, weights);
      randomiseAdapters(policy, 19);
      const tokens = tf.tensor2d([ids.slice(0, 9), ids.slice(9, 18)], undefined, 'int32');
      const targets = tf.tensor2d([ids.slice(1, 10), ids.slice(10, 19)], undefined, 'int32');
      const weightsOfRows = tf.tensor2d([
        Array.from({ length: 9 }, (_, t) => t - 4),
        Array.from({ length: 9 }, (_, t) => 1 + t),
      ]);
      const ours = () => tf.sum(tf.mul(policy.tokenLogProbs(tokens, targets), weightsOfRows)) as tf.Scalar;
      const composed = () => {
        const positions = tf.tensor2d([[...Array(9).keys()], [...Array(9).keys()]], undefined, 'int32');
        const logSoftmax = tf.logSoftmax(policy.logits(policy.forward(tokens, positions).hidden));
        // int32, then cast: wasm's OneHot writes int32 bits into a float32 output (1 reads as 1.4e-45).
        const chosen = tf.cast(tf.oneHot(targets, config.vocabSize), 'float32');
        const picked = tf.sum(tf.mul(logSoftmax, chosen), -1);
        return tf.sum(tf.mul(picked, weightsOfRows)) as tf.Scalar;
      };
      const variables = [...policy.params.values()];
      const a = tf.variableGrads(ours, variables);
      const b = tf.variableGrads(composed, variables);
      expect(a.value.dataSync()[0]).toBeCloseTo(b.value.dataSync()[0] as number, 3);
      for (const p of variables) {
        const mine = (a.grads[p.name] as tf.Tensor).dataSync();
        const theirs = (b.grads[p.name] as tf.Tensor).dataSync();
        const scale = Math.max(...theirs.map(Math.abs));
        expect(Math.max(...mine.map((g, j) => Math.abs(g - (theirs[j] as number))))).toBeLessThan(1e-4 * scale + 1e-6);
      }
      tf.dispose([
        tokens,
        targets,
        weightsOfRows,
        a.value,
        b.value,
        ...Object.values(a.grads),
        ...Object.values(b.grads),
      ]);
    });

    it('checkpointed layers give the gradients of unchanged ones, and a training step leaks nothing', () => {
      const checkpointed = make(config, weights, { checkpoint: true });
      const plain = make(config, weights, { checkpoint: false });
      randomiseAdapters(checkpointed, 23);
      randomiseAdapters(plain, 23);
      const tokens = tf.tensor2d([ids.slice(0, 11), ids.slice(11, 22)], undefined, 'int32');
      const targets = tf.tensor2d([ids.slice(1, 12), ids.slice(12, 23)], undefined, 'int32');
      const step = (policy: PretrainedPolicy) =>
        tf.variableGrads(
          () => tf.mean(policy.tokenLogProbs(tokens, targets)) as tf.Scalar,
          [...policy.params.values()],
        );
      const before = tf.memory().numTensors;
      const a = step(checkpointed);
      const b = step(plain);
      const plainParams = [...plain.params.values()];
      [...checkpointed.params.values()].forEach((p, i) => {
        const mine = (a.grads[p.name] as tf.Tensor).dataSync();
        const theirs = (b.grads[(plainParams[i] as tf.Variable).name] as tf.Tensor).dataSync();
        expect(Math.max(...mine.map((g, j) => Math.abs(g - (theirs[j] as number))))).toBeLessThan(1e-6);
      });
      const results = [a.value, b.value, ...Object.values(a.grads), ...Object.values(b.grads)];
      expect(tf.memory().numTensors - before).toBe(results.length);
      tf.dispose([tokens, targets, ...results]);
    });

    it('raises the log-prob of a chosen token in a few Adam steps, leaving the base as it was', () => {
      const policy = make(config, weights);
      const tokens = tf.tensor2d([ids.slice(0, 16)], undefined, 'int32');
      const targets = tf.fill([1, 16], 5, 'int32') as tf.Tensor2D;
      const logProb = () => tf.mean(policy.tokenLogProbs(tokens, targets)) as tf.Scalar;
      const start = tf.tidy(() => logProb().dataSync()[0] as number);
      const optimizer = tf.train.adam(1e-2);
      // At the start B = 0, so A gets no gradient; B's first steps give it one.
      const { grads } = tf.variableGrads(() => tf.neg(logProb()) as tf.Scalar, [...policy.params.values()]);
      for (const [key, p] of policy.params) {
        const norm = tf.tidy(() => tf.sum(tf.abs(grads[p.name] as tf.Tensor)).dataSync()[0] as number);
        if (key.includes('lora_A')) expect(norm).toBe(0);
        else expect(norm).toBeGreaterThan(0);
      }
      tf.dispose(Object.values(grads));
      for (let step = 0; step < 5; step++) {
        optimizer.minimize(() => tf.neg(logProb()) as tf.Scalar, false, [...policy.params.values()]);
      }
      const end = tf.tidy(() => logProb().dataSync()[0] as number);
      expect(end).toBeGreaterThan(start + 0.5);
      optimizer.dispose();
      tf.dispose([tokens, targets]);
      for (const [key, p] of policy.params) if (key.includes('lora_B')) p.assign(tf.zerosLike(p));
      expect(maxDifference(logitsAlong(policy, ids), referenceLogits(config, weights, ids))).toBeLessThan(1e-4);
    });
  });

  it('handles a Qwen2.5-sized vocabulary, whose head goes backward through transposed blocks of rows (and forward through blocks of columns when held once)', () => {
    const config: PretrainedConfig = {
      ...configOf(CONFIG_NAMES[1] as string),
      vocabSize: 151_936,
      hiddenSize: 96,
      intermediateSize: 64,
      layers: 1,
      heads: 2,
      kvHeads: 1,
      headDim: 48,
      tieWordEmbeddings: true,
    };
    const weights = randomWeights(config, 37);
    const ids = randomIds(6, config.vocabSize, 41);
    const fast = make(config, weights, { graph: 'fast' });
    const reference = referenceLogits(config, weights, ids);
    expect(maxDifference(logitsAlong(fast, ids), reference)).toBeLessThan(1e-4);
    // Held once, the head is multiplied in two transient blocks of columns.
    const transient = make(config, weights, { graph: 'fast', keepPackedWeights: false });
    expect(maxDifference(logitsAlong(transient, ids), reference)).toBeLessThan(1e-4);
    const naive = make(config, weights, { graph: 'naive' });
    randomiseAdapters(fast, 43);
    randomiseAdapters(naive, 43);
    const tokens = tf.tensor2d([ids.slice(0, 5)], undefined, 'int32');
    const targets = tf.tensor2d([ids.slice(1, 6)], undefined, 'int32');
    const gradients = (policy: PretrainedPolicy) =>
      tf.variableGrads(
        () => tf.sum(policy.tokenLogProbs(tokens, targets)) as tf.Scalar,
        [policy.params.get('model.layers.0.mlp.down_proj.lora_B.weight') as tf.Variable],
      );
    const [a, b] = [gradients(fast), gradients(naive)];
    const [mine, theirs] = [Object.values(a.grads)[0] as tf.Tensor, Object.values(b.grads)[0] as tf.Tensor];
    const scale = Math.max(...theirs.dataSync().map(Math.abs));
    expect(scale).toBeGreaterThan(0);
    expect(tf.max(tf.abs(tf.sub(mine, theirs))).dataSync()[0]).toBeLessThan(1e-4 * scale);
    tf.dispose([tokens, targets, a.value, b.value, mine, theirs]);
  });

  it('takes a long batch over a large vocabulary in blocks of tokens, to the log-probs and gradient of a composed log-softmax', () => {
    const config: PretrainedConfig = {
      ...configOf(CONFIG_NAMES[0] as string),
      vocabSize: 151_936,
      hiddenSize: 16,
      intermediateSize: 16,
      layers: 1,
      heads: 2,
      kvHeads: 1,
      headDim: 8,
    };
    // 2 × 60 tokens: past one block of 110 (vocabularyBlockTokens), so two blocks.
    expect(vocabularyBlockTokens(config.vocabSize)).toBeLessThan(120);
    const policy = make(config, randomWeights(config, 47));
    randomiseAdapters(policy, 53);
    const ids = randomIds(122, config.vocabSize, 59);
    const tokens = tf.tensor2d([ids.slice(0, 60), ids.slice(61, 121)], undefined, 'int32');
    const targets = tf.tensor2d([ids.slice(1, 61), ids.slice(62, 122)], undefined, 'int32');
    const positions = tf.tensor2d([[...Array(60).keys()], [...Array(60).keys()]], undefined, 'int32');
    const chosen = tf.cast(tf.oneHot(targets, config.vocabSize), 'float32');
    const composed = () =>
      tf.sum(tf.mul(tf.logSoftmax(policy.logits(policy.forward(tokens, positions).hidden)), chosen), -1);
    const ours = () => policy.tokenLogProbs(tokens, targets);
    const [a, b] = [tf.tidy(ours), tf.tidy(composed)];
    expect(tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]).toBeLessThan(1e-4);
    const variable = policy.params.get('model.layers.0.mlp.down_proj.lora_B.weight') as tf.Variable;
    const gradient = (f: () => tf.Tensor) => tf.variableGrads(() => tf.sum(f()) as tf.Scalar, [variable]);
    const [ga, gb] = [gradient(ours), gradient(composed)];
    const [mine, theirs] = [ga.grads[variable.name] as tf.Tensor, gb.grads[variable.name] as tf.Tensor];
    const scale = Math.max(...theirs.dataSync().map(Math.abs));
    expect(scale).toBeGreaterThan(0);
    expect(tf.max(tf.abs(tf.sub(mine, theirs))).dataSync()[0]).toBeLessThan(1e-4 * scale);
    tf.dispose([tokens, targets, positions, chosen, a, b, ga.value, gb.value, mine, theirs]);
  });

  it('multiplies by a frozen matrix in transient blocks of columns: the same product as the matrix whole', () => {
    const x = tf.randomNormal([5, 8], 0, 1, 'float32', 1) as tf.Tensor2D;
    const w = tf.randomNormal([8, 200], 0, 1, 'float32', 2) as tf.Tensor2D;
    const before = tf.memory().numTensors;
    // Blocks of 64 columns (the narrowest there is): 64 + 64 + 64 + 8.
    const blocked = transientOperand(x, w, 8 * 64);
    const whole = transientOperand(x, w);
    expect(tf.memory().numTensors - before).toBe(2);
    const expected = tf.matMul(x, w);
    expect(blocked.shape).toEqual([5, 200]);
    expect(tf.max(tf.abs(tf.sub(blocked, expected))).dataSync()[0]).toBe(0);
    expect(tf.max(tf.abs(tf.sub(whole, expected))).dataSync()[0]).toBe(0);
    tf.dispose([x, w, blocked, whole, expected]);
  });

  describe('memory and loading', () => {
    const config = configOf(CONFIG_NAMES[1] as string);
    const weights = randomWeights(config, 23);
    const ids = randomIds(20, config.vocabSize, 29);

    it('holds one copy of the base, the adapters and the rotary tables, and frees them all on dispose', () => {
      const before = tf.memory();
      const policy = new PretrainedPolicy(config, weights, options());
      const after = tf.memory();
      const tables = 2 * CONTEXT * config.headDim;
      expect(after.numTensors - before.numTensors).toBe(baseShapes(config).size + policy.params.size + 2);
      expect(after.numBytes - before.numBytes).toBe(
        4 * (policy.baseParameterCount() + policy.parameterCount() + tables),
      );
      const sizes = [...referenceShapes(config).values()].map((shape) => shape.reduce((a, b) => a * b, 1));
      expect(policy.baseParameterCount()).toBe(sizes.reduce((a, b) => a + b, 0));
      expect(policy.parameterCount()).toBe(
        [...policy.adapterShapes().values()].reduce((a, [r, c]) => a + (r as number) * (c as number), 0),
      );
      expect(policy.adapterShapes().get('model.layers.0.self_attn.k_proj.lora_A.weight')).toEqual([
        4,
        config.hiddenSize,
      ]);
      expect(policy.adapterShapes().get('model.layers.0.self_attn.k_proj.lora_B.weight')).toEqual([
        config.kvHeads * config.headDim,
        4,
      ]);
      logitsAlong(policy, ids);
      expect(tf.memory().numTensors).toBe(after.numTensors);
      policy.dispose();
      expect(tf.memory().numTensors).toBe(before.numTensors);
      expect(tf.memory().numBytes).toBe(before.numBytes);
    });

    it('a tied model keeps one table for the embedding and the head', () => {
      const tied = configOf(CONFIG_NAMES[0] as string);
      const policy = make(tied, randomWeights(tied, 31));
      const [v, d] = [tied.vocabSize, tied.hiddenSize];
      const embeddings = [...baseShapes(tied).values()].filter((shape) => shape.join() === [v, d].join());
      expect(embeddings).toHaveLength(1);
      expect(policy.mergedWeights().has('lm_head.weight')).toBe(false);
    });

    it('loads tensor by tensor, or from tensors, into the same model', async () => {
      const reference = logitsAlong(make(config, weights), ids);
      const read: string[] = [];
      const loaded = await PretrainedPolicy.load(
        config,
        async (key) => {
          read.push(key);
          return weights.get(key) as Float32Array;
        },
        options(),
      );
      live.push(loaded);
      expect(read).toEqual([...baseShapes(config).keys()]);
      expect(logitsAlong(loaded, ids)).toEqual(reference);

      const tensors = new Map(
        [...weights].map(([key, values]) => [key, tf.tensor(values, baseShapes(config).get(key))]),
      );
      const copy = new PretrainedPolicy(config, tensors, options());
      live.push(copy);
      tf.dispose([...tensors.values()]); // ours are copies or shared: the caller may dispose its own
      expect(logitsAlong(copy, ids)).toEqual(reference);
    });

    it('refuses missing, mis-shaped or wrong-typed weights and bad options, leaking nothing', async () => {
      const before = tf.memory().numTensors;
      const without = new Map(weights);
      without.delete('model.layers.1.mlp.up_proj.weight');
      expect(() => new PretrainedPolicy(config, without, options())).toThrow(
        'missing base weight model.layers.1.mlp.up_proj.weight',
      );
      const short = new Map(weights).set('model.norm.weight', new Float32Array(3));
      expect(() => new PretrainedPolicy(config, short, options())).toThrow(
        `base weight model.norm.weight has 3 values, the config needs [${config.hiddenSize}]`,
      );
      await expect(
        PretrainedPolicy.load(config, async (key) => short.get(key) as Float32Array, options()),
      ).rejects.toThrow('model.norm.weight has 3 values');
      expect(() => new PretrainedPolicy(config, weights, options({ contextLength: 129 }))).toThrow(
        'contextLength 129 is longer than the 128 positions the model was trained for',
      );
      // Bad options are refused before a single weight is read.
      const reads: string[] = [];
      const reader = async (key: string) => {
        reads.push(key);
        return weights.get(key) as Float32Array;
      };
      await expect(PretrainedPolicy.load(config, reader, options({ contextLength: 129 }))).rejects.toThrow('129');
      expect(reads).toEqual([]);
      expect(
        () => new PretrainedPolicy(config, weights, options({ lora: { seed: 1, targets: ['qkv' as 'q_proj'] } })),
      ).toThrow('unknown: qkv');
      expect(() => new PretrainedPolicy({ ...config, kvHeads: 4 }, weights, options())).toThrow(
        'heads (6) must be a multiple of kvHeads (4)',
      );
      expect(tf.memory().numTensors).toBe(before);
    });

    it('adapts only the chosen targets, with the chosen rank', () => {
      const policy = make(config, weights, { lora: { seed: 2, rank: 2, alpha: 4, targets: ['v_proj', 'down_proj'] } });
      expect([...policy.adapterShapes()]).toEqual(
        Array.from({ length: config.layers }, (_, l) => [
          [`model.layers.${l}.self_attn.v_proj.lora_A.weight`, [2, config.hiddenSize]],
          [`model.layers.${l}.self_attn.v_proj.lora_B.weight`, [config.kvHeads * config.headDim, 2]],
          [`model.layers.${l}.mlp.down_proj.lora_A.weight`, [2, config.intermediateSize]],
          [`model.layers.${l}.mlp.down_proj.lora_B.weight`, [config.hiddenSize, 2]],
        ]).flat(),
      );
      randomiseAdapters(policy, 3);
      expect(
        maxDifference(logitsAlong(policy, ids), referenceLogits(config, policy.mergedWeights(), ids)),
      ).toBeLessThan(1e-4);
    });
  });
});
