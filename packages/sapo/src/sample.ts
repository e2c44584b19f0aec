/**
 * Batched generation: G completions of one prompt (or several prompts at once) with a KV cache,
 * temperature, top-k and top-p, stopping at EOS or the context length.
 */
import * as tf from '@tensorflow/tfjs-core';
import { uniformFloat64 } from 'pure-rand/distribution/uniformFloat64';
import { mersenne } from 'pure-rand/generator/mersenne';
import type { RandomGenerator } from 'pure-rand/types/RandomGenerator';
import type { KVCache } from './model.js';
import type { CausalLM } from './pretrained.js';
import type { Tokenizer } from './tokenizer.js';

export interface SampleOptions {
  /** Most tokens to generate per row (EOS included); rows also stop at the context length. */
  maxNewTokens: number;
  /** Seeds the sampler: the same seed, model and prompts give the same completions. */
  seed: number;
  /** Softmax temperature; 0 means greedy. Default 1. */
  temperature?: number;
  /** Keep only the k most likely tokens; 0 (default) keeps all. */
  topK?: number;
  /** Keep the smallest set of most likely tokens whose probability reaches p; 1 (default) keeps all. */
  topP?: number;
  /** Reuse keys/values of earlier positions (default). False recomputes the whole sequence each step: the benchmark's baseline. */
  kvCache?: boolean;
  /** The id, or ids, that end a completion. Default vocabSize − 1 (the byte tokenizer's EOS). */
  eos?: number | readonly number[];
  /** Ids never sampled (e.g. PAD and BOS): the distribution drawn from, and so the recorded log-probs, leaves them out. */
  exclude?: readonly number[];
  /**
   * Rows generated together: the prompts run in consecutive chunks of this many, which bounds
   * the KV cache and activations (a wasm heap keeps its high-water mark). Default 8: for the
   * embedded model, 48 rows of 48 new tokens sample in 0.7 s with an 83 MB heap, against 1.2 s
   * and 435 MB in one chunk (scripts/bench/learner-memory.ts); a chunk also stops as soon as its
   * own rows are done. The random draws run chunk after chunk, so the completions depend on
   * this as on the seed.
   */
  microBatchRows?: number;
}

export interface Completion {
  /** Generated ids, ending with EOS when `finished`. */
  tokens: number[];
  /**
   * One per token: its log-probability under the distribution it was drawn from — the policy's
   * softmax at `temperature`, without the excluded ids, cut to top-k/top-p and renormalised; 0
   * when greedy (temperature 0). With temperature 1, no truncation and nothing excluded, that is
   * the policy's own log π(token), as a training forward pass computes it.
   */
  logProbs: number[];
  /** True when the row ended with EOS, false when it ran out of tokens or context. */
  finished: boolean;
}

export interface TextCompletion extends Completion {
  /** The generated text, decoded up to EOS. */
  text: string;
}

/** Completions of text prompts: encodes them, generates, and decodes the results. */
export function generateText(
  policy: CausalLM,
  tokenizer: Tokenizer,
  prompts: readonly string[],
  options: SampleOptions,
): TextCompletion[] {
  // Never sampled: padding and BOS where they are not also a stop id (real tokenizers reuse EOS for
  // both), and the model's spare vocabulary rows past the tokenizer's last id (padded embeddings).
  const eos = tokenizer.eosIds ?? [tokenizer.eos];
  const spare = Array.from(
    { length: policy.config.vocabSize - tokenizer.vocabSize },
    (_, i) => tokenizer.vocabSize + i,
  );
  const exclude = [tokenizer.pad, tokenizer.bos].filter((id) => id >= 0 && !eos.includes(id));
  const completions = generate(
    policy,
    prompts.map((prompt) => tokenizer.encodePrompt(prompt)),
    { eos, exclude: [...exclude, ...spare], ...options },
  );
  return completions.map((completion) => ({ ...completion, text: tokenizer.decode(completion.tokens) }));
}

/** Completions of prompts given as token ids (batched in chunks of microBatchRows; rows may differ in length). */
export function generate(
  policy: CausalLM,
  prompts: readonly (readonly number[])[],
  options: SampleOptions,
): Completion[] {
  const { contextLength, vocabSize } = policy.config;
  if (prompts.length === 0) throw new RangeError('generate needs at least one prompt');
  if (!Number.isInteger(options.maxNewTokens) || options.maxNewTokens < 1) {
    throw new RangeError(`maxNewTokens must be a positive integer, got ${options.maxNewTokens}`);
  }
  for (const prompt of prompts) {
    if (prompt.length === 0 || prompt.length >= contextLength) {
      throw new RangeError(
        `a prompt of ${prompt.length} tokens leaves no room in the model's context of ${contextLength}`,
      );
    }
    if (prompt.some((id) => !Number.isInteger(id) || id < 0 || id >= vocabSize)) {
      throw new RangeError(`prompt token ids must be integers in [0, ${vocabSize})`);
    }
  }
  const rows = options.microBatchRows ?? 8;
  if (!Number.isInteger(rows) || rows < 1) {
    throw new RangeError(`microBatchRows must be a positive integer, got ${rows}`);
  }
  const rng = mersenne(options.seed);
  const completions: Completion[] = [];
  for (let from = 0; from < prompts.length; from += rows) {
    completions.push(...generateRows(policy, prompts.slice(from, from + rows), options, rng));
  }
  return completions;
}

/** generate for one chunk of rows, drawing from `rng`. */
function generateRows(
  policy: CausalLM,
  prompts: readonly (readonly number[])[],
  options: SampleOptions,
  rng: RandomGenerator,
): Completion[] {
  const { contextLength, vocabSize } = policy.config;
  const eos = new Set([options.eos ?? vocabSize - 1].flat());
  const pad = prompts[0]?.[0] ?? 0; // any id: padded positions are masked out of attention
  const width = Math.max(...prompts.map((p) => p.length));
  const padCount = prompts.map((p) => width - p.length);
  const budget = prompts.map((p) => Math.min(options.maxNewTokens, contextLength - p.length));
  const rows: Completion[] = prompts.map(() => ({ tokens: [], logProbs: [], finished: false }));
  const done = (r: number) =>
    (rows[r] as Completion).finished || (rows[r] as Completion).tokens.length >= (budget[r] as number);

  // Left padding: every prompt ends at column width-1, padded keys get -1e9 in every query's scores.
  const sequences = prompts.map((p, r) => [...new Array<number>(padCount[r] as number).fill(pad), ...p]);
  const keyBias = (columns: number) =>
    tf.tensor4d(
      sequences.flatMap((_, r) => Array.from({ length: columns }, (_, j) => (j < (padCount[r] as number) ? -1e9 : 0))),
      [prompts.length, 1, 1, columns],
    );
  const positionsOf = (from: number, to: number) =>
    tf.tensor2d(
      sequences.flatMap((_, r) =>
        Array.from({ length: to - from }, (_, i) => Math.max(0, from + i - (padCount[r] as number))),
      ),
      [prompts.length, to - from],
      'int32',
    );

  // Read the prompts once: the last column's logits pick the first token, the keys and values
  // are the cache. Without the cache, every step reads the whole sequence again.
  let { logits, cache } = readAll(policy, sequences, positionsOf(0, width), keyBias(width));
  for (let step = 0; rows.some((_, r) => !done(r)); step++) {
    rows.forEach((row, r) => {
      const next = done(r) ? pad : pick(logits[r] as Float32Array, options, rng, row);
      (sequences[r] as number[]).push(next);
      if (eos.has(next)) row.finished = true;
    });
    if (!rows.some((_, r) => !done(r))) break;
    const length = width + step + 1;
    const previous = cache;
    if (options.kvCache === false) {
      ({ logits, cache } = readAll(policy, sequences, positionsOf(0, length), keyBias(length)));
    } else {
      const result = tf.tidy(() => {
        const newest = tf.tensor2d(
          sequences.map((s) => s[length - 1] as number),
          [prompts.length, 1],
          'int32',
        );
        const out = policy.forward(newest, positionsOf(length - 1, length), previous, keyBias(length));
        return { logits: tf.squeeze(policy.logits(out.hidden), [1]) as tf.Tensor2D, cache: out.cache };
      });
      logits = rowsOf(result.logits);
      cache = result.cache;
    }
    disposeCache(previous);
  }
  disposeCache(cache);
  return rows;
}

/** One forward pass over whole sequences: the last column's logits (a Float32Array per row) and every key and value. */
function readAll(
  policy: CausalLM,
  sequences: number[][],
  positions: tf.Tensor2D,
  bias: tf.Tensor4D,
): { logits: Float32Array[]; cache: KVCache } {
  const result = tf.tidy(() => {
    const tokens = tf.tensor2d(sequences, undefined, 'int32');
    const { hidden, cache } = policy.forward(tokens, positions, undefined, bias);
    const last = tf.slice(hidden, [0, hidden.shape[1] - 1, 0], [-1, 1, -1]) as tf.Tensor3D;
    return { logits: tf.squeeze(policy.logits(last), [1]) as tf.Tensor2D, cache };
  });
  positions.dispose();
  bias.dispose();
  return { logits: rowsOf(result.logits), cache: result.cache };
}

function rowsOf(logits: tf.Tensor2D): Float32Array[] {
  const [batch, vocab] = logits.shape;
  const data = logits.dataSync() as Float32Array;
  logits.dispose();
  return Array.from({ length: batch }, (_, r) => data.subarray(r * vocab, (r + 1) * vocab));
}

function disposeCache(cache: KVCache): void {
  for (const t of [...cache.keys, ...cache.values]) t.dispose();
}

/**
 * Samples one token from a row of logits and records its log-probability under the distribution
 * it was drawn from (see Completion.logProbs).
 */
function pick(policyLogits: Float32Array, options: SampleOptions, rng: RandomGenerator, row: Completion): number {
  const logits = policyLogits.slice();
  for (const id of options.exclude ?? []) logits[id] = Number.NEGATIVE_INFINITY;
  const temperature = options.temperature ?? 1;
  if (temperature === 0) {
    let token = 0;
    for (let id = 1; id < logits.length; id++) if ((logits[id] as number) > (logits[token] as number)) token = id;
    row.tokens.push(token);
    row.logProbs.push(0); // greedy: the distribution drawn from is all on this token
    return token;
  }
  const scaled = logSoftmax(logits, temperature);
  const topK = options.topK ?? 0;
  const topP = options.topP ?? 1;
  let kept: number[];
  let mass = 0;
  if (topK <= 0 && topP >= 1) {
    // The whole distribution, in id order: no sort of a real model's 150 000-entry vocabulary.
    kept = Array.from(logits.keys());
    for (const value of scaled) mass += Math.exp(value);
  } else {
    const order = Array.from(logits.keys()).sort((a, b) => (logits[b] as number) - (logits[a] as number));
    kept = [];
    for (const id of order.slice(0, topK > 0 ? Math.min(topK, order.length) : order.length)) {
      kept.push(id);
      mass += Math.exp(scaled[id] as number);
      if (mass >= topP) break;
    }
  }
  let u = uniformFloat64(rng) * mass;
  let token = kept[kept.length - 1] as number;
  for (const id of kept) {
    u -= Math.exp(scaled[id] as number);
    if (u < 0) {
      token = id;
      break;
    }
  }
  row.tokens.push(token);
  // Renormalised over the kept tokens: the probability this draw gave the token.
  row.logProbs.push((scaled[token] as number) - Math.log(mass));
  return token;
}

function logSoftmax(logits: Float32Array, temperature: number): Float64Array {
  let max = Number.NEGATIVE_INFINITY;
  for (const value of logits) max = Math.max(max, value / temperature);
  let sum = 0;
  for (const value of logits) sum += Math.exp(value / temperature - max);
  const logSum = max + Math.log(sum);
  return Float64Array.from(logits, (value) => value / temperature - logSum);
}
