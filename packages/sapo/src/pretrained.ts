/**
 * A pre-trained policy: Hugging Face's LlamaForCausalLM (Llama, SmolLM/SmolLM2) and
 * Qwen2ForCausalLM (Qwen2, Qwen2.5) in tfjs, with LoRA adapters, readable top to bottom.
 *
 *   tokens ─► embed_tokens
 *          ─► layers × [ x + o_proj(attention(rmsNorm(x))),  x + down(silu(gate(h)) ⊙ up(h)), h = rmsNorm(x) ]
 *          ─► rmsNorm ─► lm_head (or the embedding, tied) ─► logits over the vocabulary
 *
 *   RMSNorm       y = w ⊙ x / √(mean(x²) + ε)
 *   rotary        q, k ← x·cos + rotate_half(x)·sin, rotate_half(x) = (−x₂, x₁) for the two halves of
 *                 a head (not interleaved pairs), angle = position · θ^(−2j/headDim), cos and sin
 *                 repeated over both halves; each token's position comes from `positions`
 *   attention     softmax(q·kᵀ/√headDim + mask)·v, each key/value head shared by heads/kvHeads
 *                 query heads (grouped-query attention)
 *   LoRA          y = x·Wᵀ (+ b) + (α/r)·(x·Aᵀ)·Bᵀ on each target projection, A [r, in], B [out, r]
 *
 * The base weights are frozen tensors, not variables: only the adapters A and B are `params`, so
 * only they get gradients, optimizer state and checkpoints. B starts at zero (PEFT's default), so
 * the model starts exactly as the base. Every base matrix is held transposed from the file's
 * [out, in] to [in, out], once, at load: the layout the wasm backend multiplies fast (see
 * model.ts; a transposed operand is about 10x slower there). The embedding is held as [d, vocab],
 * the head's layout, so a tied model keeps one table for both, looked up by column.
 *
 * Memory, for the model's life: one copy of each base tensor (a tied embedding once), the
 * adapters, and the rotary tables [contextLength, headDim]. On wasm, XNNPACK also keeps a packed
 * copy of every matrix it has multiplied by, until that matrix is disposed: the base weights are
 * resident twice there, unless `keepPackedWeights: false` multiplies by transient copies,
 * `'head'` by transient copies of all but the vocabulary head, or `'sampling'` keeps the packed
 * copies only while sampling (see #forStep). A training step keeps each layer's input, not its activations (gradient checkpointing,
 * #checkpointed), and no [tokens, vocab] tensor past the loss, nor one of more than a block of
 * tokens in it (vocabularyTerms).
 *
 * Same public surface as the embedded `Policy` (`CausalLM` below), so SapoLearner and sampling
 * take either.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { PretrainedConfig } from './hf/config.js';
import { defaultGraph, fastMatmul, type GraphKind, type KVCache, perHead, swapLastTwo } from './model.js';

/** What SapoLearner and sampling need of a policy; `Policy` and `PretrainedPolicy` are both one. */
export interface CausalLM {
  readonly config: { readonly vocabSize: number; readonly contextLength: number };
  /** Trainable variables by name, in a fixed order (checkpoints and the optimizer rely on it). */
  readonly params: ReadonlyMap<string, tf.Variable>;
  forward(
    tokens: tf.Tensor2D,
    positions: tf.Tensor2D,
    cache?: KVCache,
    keyBias?: tf.Tensor4D,
  ): { hidden: tf.Tensor3D; cache: KVCache };
  logits(hidden: tf.Tensor3D): tf.Tensor3D;
  tokenLogProbs(tokens: tf.Tensor2D, targets: tf.Tensor2D): tf.Tensor2D;
  tokenLogProbsAndEntropy(tokens: tf.Tensor2D, targets: tf.Tensor2D): { logProbs: tf.Tensor2D; entropy: tf.Tensor2D };
  parameterCount(): number;
  dispose(): void;
}

/** The projections LoRA can adapt, and the block each lives in. */
const PROJECTIONS = {
  q_proj: 'self_attn',
  k_proj: 'self_attn',
  v_proj: 'self_attn',
  o_proj: 'self_attn',
  gate_proj: 'mlp',
  up_proj: 'mlp',
  down_proj: 'mlp',
} as const;

export type LoraTarget = keyof typeof PROJECTIONS;

/** Every projection, in the model's order: the default targets. */
export const LORA_TARGETS: readonly LoraTarget[] = Object.freeze(Object.keys(PROJECTIONS) as LoraTarget[]);

export interface LoraSettings {
  /** r. Default 16. */
  rank: number;
  /** α; the update is scaled by α/r. Default 32. */
  alpha: number;
  /** Projections adapted in every layer. Default all of LORA_TARGETS. */
  targets: readonly LoraTarget[];
}

export const DEFAULT_LORA: Readonly<LoraSettings> = Object.freeze({ rank: 16, alpha: 32, targets: LORA_TARGETS });

export interface PretrainedOptions {
  /** Longest sequence (prompt + completion) the model reads: the rotary tables' length. */
  contextLength: number;
  /** LoRA settings; `seed` seeds A's initialisation. */
  lora: Partial<LoraSettings> & { seed: number };
  graph?: GraphKind;
  /**
   * Gradient checkpointing in tokenLogProbs*: each layer's backward pass recomputes it, so a
   * training step's memory no longer grows with depth, for one more forward pass of compute
   * (see #checkpointed). Default true.
   */
  checkpoint?: boolean;
  /**
   * On wasm, XNNPACK packs a matrix the first time it multiplies by it and keeps the packed copy
   * while the matrix lives: fast, but every base matrix is then held twice. false multiplies by
   * transient copies instead (transientOperand): the base is held once, for one copy and one
   * packing per product, which sampling (a product per token) pays most. 'sampling' keeps the
   * packed copies while sampling (forward, logits) and drops them before a step that follows by
   * re-creating the base tensors; the step (tokenLogProbs*) multiplies by transient copies: the
   * base is held twice while sampling, once during the step, and the first token sampled after a
   * step packs it again; the vocabulary head stays packed throughout. 'head' keeps the packed copy
   * of the vocabulary head only (the largest matrix, a product per token) and multiplies by
   * transient copies of every other matrix: the base held once, and the head twice. The memory
   * plan chooses (MemoryPlan.keepPackedWeights). Same results in every mode; no effect on memory
   * off wasm. Default true.
   */
  keepPackedWeights?: KeepPackedWeights;
}

/** Whether the base's packed copies are kept: always (true), never (false), while sampling only, or the head's only. */
export type KeepPackedWeights = boolean | 'sampling' | 'head';

/** Base weights by Hugging Face name, in the file's layout: tensors (float32) or their values. */
export type BaseWeights = ReadonlyMap<string, tf.Tensor | Float32Array>;

const NEG_INF = -1e9;

/** What every layer reads besides its input: the rotary cos and sin of each token, the attention mask, and how it multiplies by the base. */
interface LayerContext {
  batch: number;
  steps: number;
  cos: tf.Tensor;
  sin: tf.Tensor;
  bias: tf.Tensor;
  frozen: FrozenProducts;
}

// ---- operations on frozen tensors, and the ones that make the graph fast on wasm ------------
//
// Two facts shape these. The wasm backend multiplies untransposed operands about 10x faster
// than transposed ones (model.ts). And the tape keeps, for the backward pass, a clone of every
// tensor an op saves, which on wasm is a copy: a tfjs gather from the embedding, or a tfjs
// product with a base matrix, would copy that frozen tensor on every training forward pass. So
// every operation on a frozen tensor is a custom gradient that closes over it: off the tape, it
// saves nothing of it, and computes a gradient only for its one input that needs one.

/** How the backward pass multiplies by a transposed frozen matrix: dy·wᵀ. */
type TimesTransposed = (dy: tf.Tensor2D, w: tf.Tensor2D) => tf.Tensor2D;

/** Values in one block of a frozen matrix that a product copies: 32 MiB of floats. */
const BLOCK_VALUES = 2 ** 23;

/**
 * `part(from, size)` for consecutive blocks [from, from + size) of `length`, each `block` long
 * (the last shorter), side by side along axis 1; each block's temporaries are freed before the next.
 */
function sideBySide(length: number, block: number, part: (from: number, size: number) => tf.Tensor2D): tf.Tensor2D {
  if (block >= length) return tf.tidy(() => part(0, length));
  const parts: tf.Tensor2D[] = [];
  for (let from = 0; from < length; from += block) {
    const size = Math.min(block, length - from);
    parts.push(tf.tidy(() => part(from, size)));
  }
  const joined = tf.concat(parts, 1);
  tf.dispose(parts);
  return joined;
}

/**
 * Rows of a block: at least 64 (narrower products run slower than a whole transpose), otherwise at
 * most `maxValues` values of a matrix whose rows are `width` long. Every projection of the models
 * we target is one block; the vocabulary head is cut.
 */
const blockRows = (width: number, maxValues: number) => Math.max(64, Math.floor(maxValues / width));

/**
 * Rows (axis 0) or columns (axis 1) from..from + size of w, as a new tensor. A gather and not a
 * slice: wasm's Slice kernel first reads all of its input out of the heap into JavaScript, which
 * for the vocabulary head (Qwen2.5: 544 MB) cost more than every product of a step.
 */
const blockOf = (w: tf.Tensor2D, axis: 0 | 1, from: number, size: number): tf.Tensor2D =>
  tf.gather(w, tf.range(from, from + size, 1, 'int32'), axis);

/**
 * dy·wᵀ for w [in, out], through blocks of w's rows, each transposed and freed in turn, so that
 * every product has untransposed operands and no transposed copy of all of w is ever held (the
 * head's would be as large as the head).
 */
const explicitTranspose: TimesTransposed = (dy, w) =>
  sideBySide(w.shape[0], blockRows(w.shape[1], BLOCK_VALUES), (from, size) =>
    tf.matMul(dy, tf.transpose(size === w.shape[0] ? w : blockOf(w, 0, from, size))),
  );

/** How a product multiplies by a frozen matrix: x·w. */
type TimesFrozen = (x: tf.Tensor2D, w: tf.Tensor2D) => tf.Tensor2D;

/** x·w, w itself the operand: on wasm, XNNPACK packs w once and keeps the packed copy while w lives. */
const keptOperand: TimesFrozen = (x, w) => tf.matMul(x, w);

/**
 * x·w through transient copies of w, blocks of its columns (all of w when it has at most
 * `maxValues` values), each copied, multiplied and freed: on wasm XNNPACK's packed copy of each
 * block dies with it, so w is held once, for one copy and one packing per product.
 */
export function transientOperand(x: tf.Tensor2D, w: tf.Tensor2D, maxValues = BLOCK_VALUES): tf.Tensor2D {
  const [inputs, out] = w.shape;
  // A clone is a copy on wasm (its Identity kernel copies); a gathered block is one everywhere.
  return sideBySide(out, blockRows(inputs, maxValues), (from, size) =>
    tf.matMul(x, size === out ? tf.clone(w) : blockOf(w, 1, from, size)),
  );
}

/** dy·wᵀ as tfjs's own gradients compute it: the naive graph's. */
const transposedOperand: TimesTransposed = (dy, w) => tf.matMul(dy, w, false, true);

/** How the policy multiplies by its frozen matrices, forward (x·w) and backward (dy·wᵀ). */
interface FrozenProducts {
  times: TimesFrozen;
  timesTransposed: TimesTransposed;
}

/** x·w for a frozen w [in, out]; its gradient, dx = dy·wᵀ, goes to x alone. */
function frozenMatmul(x: tf.Tensor, w: tf.Tensor2D, { times, timesTransposed }: FrozenProducts): tf.Tensor2D {
  const product = tf.customGrad(((input: tf.Tensor) => ({
    value: times(input as tf.Tensor2D, w),
    gradFunc: (dy: tf.Tensor) => timesTransposed(dy as tf.Tensor2D, w),
  })) as unknown as Parameters<typeof tf.customGrad>[0]) as (input: tf.Tensor) => tf.Tensor2D;
  return product(x);
}

/** Entries `ids` of a frozen table along `axis`. Ids have no gradient, so neither does this. */
function frozenGather(table: tf.Tensor, ids: tf.Tensor, axis: number): tf.Tensor {
  const lookup = tf.customGrad(((i: tf.Tensor) => ({
    value: tf.gather(table, i, axis),
    gradFunc: () => tf.zeros(ids.shape),
  })) as unknown as Parameters<typeof tf.customGrad>[0]) as (i: tf.Tensor) => tf.Tensor;
  return lookup(ids);
}

/** Values in the [tokens, vocab] tensors of one block of tokens in vocabularyTerms: 64 MiB of floats each. */
const VOCABULARY_BLOCK_VALUES = 2 ** 24;

/** Tokens vocabularyTerms takes at once for a vocabulary of `vocab`: the memory plan counts on it. */
export const vocabularyBlockTokens = (vocab: number) => Math.max(1, Math.floor(VOCABULARY_BLOCK_VALUES / vocab));

/**
 * For final hidden states h [n, d], the head [d, vocab] and targets [n], with logits = h·head:
 *   log π(target) = logit(target) − logsumexp(logits),   entropy = logsumexp(logits) − Σ_v π(v)·logit(v),
 * as one operation. Its gradient ∂ log π(target)/∂h = head[:, target] − π·headᵀ is computed here,
 * in the forward pass, and it alone ([n, d]) is kept for the backward pass: a composed
 * log-softmax would keep several [n, vocab] tensors, each copied by the tape on wasm, and the
 * vocabulary dwarfs d (Qwen2.5: 151 936 against 896). Tokens go through in blocks
 * (vocabularyBlockTokens), so no more than three [block, vocab] tensors are alive at once, however
 * long the batch. The entropy has no gradient (its slope is taken as 0).
 */
function vocabularyTerms(
  h: tf.Tensor2D,
  head: tf.Tensor2D,
  targets: tf.Tensor1D,
  { times, timesTransposed }: FrozenProducts,
): { logProbs: tf.Tensor1D; entropy: tf.Tensor1D } {
  /** [log π(target), entropy] as rows [2, size] for the tokens from..from + size, and their slope [size, d]. */
  const block = (input: tf.Tensor2D, from: number, size: number) => {
    const rows = size === input.shape[0] ? input : tf.slice(input, [from, 0], [size, -1]);
    const logits = times(rows, head);
    const logZ = tf.logSumExp(logits, -1); // [size]
    const probs = tf.tidy(() => tf.exp(tf.sub(logits, tf.expandDims(logZ, 1)))) as tf.Tensor2D;
    const entropy = tf.tidy(() => tf.sub(logZ, tf.sum(tf.mul(probs, logits), -1)));
    logits.dispose();
    const columns = tf.transpose(tf.gather(head, tf.slice(targets, [from], [size]), 1)); // head[:, target] as rows
    const slope = tf.sub(columns, timesTransposed(probs, head));
    return { value: tf.stack([tf.sub(tf.sum(tf.mul(rows, columns), -1), logZ), entropy]), slope };
  };
  // Both come out as one value [2, n] (a custom gradient's forward pass keeps only its value);
  // the gradient reads the log-probs' row of dy.
  const terms = tf.customGrad(((input: tf.Tensor, save: tf.GradSaveFunc) => {
    const n = input.shape[0] as number;
    const size = vocabularyBlockTokens(head.shape[1]);
    const values: tf.Tensor[] = [];
    const slopes: tf.Tensor[] = [];
    for (let from = 0; from < n; from += size) {
      const { value, slope } = tf.tidy(() => block(input as tf.Tensor2D, from, Math.min(size, n - from)));
      values.push(value);
      slopes.push(slope);
    }
    const [value, slope] = values.length === 1 ? [values[0], slopes[0]] : [tf.concat(values, 1), tf.concat(slopes, 0)];
    if (values.length > 1) tf.dispose([...values, ...slopes]);
    save([slope as tf.Tensor]);
    return {
      value: value as tf.Tensor,
      gradFunc: (dy: tf.Tensor, [saved]: tf.Tensor[]) =>
        tf.mul(tf.reshape(tf.slice(dy, [0, 0], [1, -1]), [-1, 1]), saved as tf.Tensor),
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]) as (input: tf.Tensor) => tf.Tensor2D;
  const [logProbs, entropy] = tf.unstack(terms(h)) as [tf.Tensor1D, tf.Tensor1D];
  return { logProbs, entropy };
}

// ---- base weights -----------------------------------------------------------------------------

/** Every base tensor the config calls for, by Hugging Face name, with its shape in the file, in the model's order. */
export function baseShapes(config: PretrainedConfig): Map<string, number[]> {
  const { vocabSize, hiddenSize: d } = config;
  const shapes = new Map<string, number[]>([['model.embed_tokens.weight', [vocabSize, d]]]);
  for (let l = 0; l < config.layers; l++) {
    for (const projection of LORA_TARGETS) {
      const [inputs, out] = projectionSize(config, projection);
      const prefix = `model.layers.${l}.${PROJECTIONS[projection]}.${projection}`;
      shapes.set(`${prefix}.weight`, [out, inputs]);
      if (hasBias(config, projection)) shapes.set(`${prefix}.bias`, [out]);
    }
    shapes.set(`model.layers.${l}.input_layernorm.weight`, [d]);
    shapes.set(`model.layers.${l}.post_attention_layernorm.weight`, [d]);
  }
  shapes.set('model.norm.weight', [d]);
  if (!config.tieWordEmbeddings) shapes.set('lm_head.weight', [vocabSize, d]);
  return shapes;
}

/** The Linear layers of every block by Hugging Face name, as [in, out] for `config`. */
export function projectionShapes(config: PretrainedConfig): Record<LoraTarget, [number, number]> {
  const { hiddenSize: d, intermediateSize: m, heads, kvHeads, headDim } = config;
  return {
    q_proj: [d, heads * headDim],
    k_proj: [d, kvHeads * headDim],
    v_proj: [d, kvHeads * headDim],
    o_proj: [heads * headDim, d],
    gate_proj: [d, m],
    up_proj: [d, m],
    down_proj: [m, d],
  };
}

/** [in, out] of a projection. */
const projectionSize = (config: PretrainedConfig, projection: LoraTarget) => projectionShapes(config)[projection];

/** Qwen2 has biases on q, k and v; Llama has them on q, k, v and o when attention_bias is set. */
function hasBias(config: PretrainedConfig, projection: LoraTarget): boolean {
  if (projection === 'q_proj' || projection === 'k_proj' || projection === 'v_proj') {
    return config.architecture === 'qwen2' || config.attentionBias;
  }
  return projection === 'o_proj' && config.architecture === 'llama' && config.attentionBias;
}

/** A base tensor checked against its file shape and laid out for the model: matrices transposed to [in, out]. */
function layOut(name: string, shape: readonly number[], value: tf.Tensor | Float32Array | undefined): tf.Tensor {
  if (value === undefined) throw new RangeError(`missing base weight ${name}`);
  const size = shape.reduce((a, b) => a * b, 1);
  if (value instanceof Float32Array ? value.length !== size : value.shape.join() !== shape.join()) {
    const given = value instanceof Float32Array ? `${value.length} values` : `shape [${value.shape}]`;
    throw new RangeError(`base weight ${name} has ${given}, the config needs [${shape}]`);
  }
  if (!(value instanceof Float32Array) && value.dtype !== 'float32') {
    throw new RangeError(`base weight ${name} is ${value.dtype}, the model needs float32`);
  }
  return tf.tidy(() => {
    const tensor = value instanceof Float32Array ? tf.tensor(value, [...shape]) : value;
    // A transpose or a clone: our own copy (a clone shares memory on some backends, not wasm).
    return shape.length === 2 ? tf.transpose(tensor) : tf.clone(tensor);
  });
}

/** cos and sin of every position's rotary angles [contextLength, headDim], as HF's rotary embedding builds them. */
function rotaryTables(contextLength: number, headDim: number, theta: number): { cos: tf.Tensor2D; sin: tf.Tensor2D } {
  const cos = new Float32Array(contextLength * headDim);
  const sin = new Float32Array(contextLength * headDim);
  const half = headDim / 2;
  for (let position = 0; position < contextLength; position++) {
    for (let j = 0; j < half; j++) {
      const angle = position * theta ** ((-2 * j) / headDim);
      for (const column of [j, j + half]) {
        cos[position * headDim + column] = Math.cos(angle);
        sin[position * headDim + column] = Math.sin(angle);
      }
    }
  }
  return { cos: tf.tensor2d(cos, [contextLength, headDim]), sin: tf.tensor2d(sin, [contextLength, headDim]) };
}

/** The LoRA settings with their defaults, once config and options are checked. */
function validate(config: PretrainedConfig, options: PretrainedOptions): LoraSettings {
  const { seed: _, ...given } = options.lora;
  const lora = { ...DEFAULT_LORA, ...given, targets: Object.freeze([...(given.targets ?? LORA_TARGETS)]) };
  const positive = {
    vocabSize: config.vocabSize,
    hiddenSize: config.hiddenSize,
    intermediateSize: config.intermediateSize,
    layers: config.layers,
    heads: config.heads,
    kvHeads: config.kvHeads,
    headDim: config.headDim,
    contextLength: options.contextLength,
    'lora.rank': lora.rank,
  };
  for (const [key, value] of Object.entries(positive)) {
    if (!Number.isInteger(value) || value < 1) throw new RangeError(`${key} must be a positive integer, got ${value}`);
  }
  if (config.heads % config.kvHeads !== 0) {
    throw new RangeError(`heads (${config.heads}) must be a multiple of kvHeads (${config.kvHeads})`);
  }
  if (config.headDim % 2 !== 0)
    throw new RangeError(`headDim must be even for rotary embeddings, got ${config.headDim}`);
  if (options.contextLength > config.maxPositions) {
    throw new RangeError(
      `contextLength ${options.contextLength} is longer than the ${config.maxPositions} positions the model was trained for`,
    );
  }
  if (!(lora.alpha > 0)) throw new RangeError(`lora.alpha must be positive, got ${lora.alpha}`);
  const unknown = lora.targets.filter((t) => !(t in PROJECTIONS));
  if (lora.targets.length === 0 || unknown.length > 0) {
    throw new RangeError(
      `lora.targets must name at least one of ${LORA_TARGETS.join(', ')}${unknown.length > 0 ? `; unknown: ${unknown.join(', ')}` : ''}`,
    );
  }
  return lora;
}

// ---- the model --------------------------------------------------------------------------------

export class PretrainedPolicy implements CausalLM {
  readonly config: Readonly<PretrainedConfig & { contextLength: number }>;
  readonly lora: Readonly<LoraSettings>;
  /** The LoRA adapters by PEFT name (…q_proj.lora_A.weight [r, in], …lora_B.weight [out, r]), layer by layer. */
  readonly params: Map<string, tf.Variable>;
  readonly graph: GraphKind;
  readonly checkpoint: boolean;
  readonly keepPackedWeights: KeepPackedWeights;
  /** Frozen base weights by Hugging Face name, laid out for the model (layOut); re-created by #forStep. */
  readonly #base: Map<string, tf.Tensor>;
  /** Each adapted projection's A and B, by the projection's Hugging Face prefix. */
  readonly #adapters = new Map<string, { a: tf.Variable; b: tf.Variable }>();
  readonly #cos: tf.Tensor2D;
  readonly #sin: tf.Tensor2D;
  /** Products of activations and adapters, which all need gradients. */
  readonly #times: (a: tf.Tensor, b: tf.Tensor) => tf.Tensor;
  /** Attention's products [batch, kvHeads, m, k]·[batch, kvHeads, k, n]. */
  readonly #headsTimes: (a: tf.Tensor, b: tf.Tensor) => tf.Tensor;
  /** How sampling (forward) and the step (tokenLogProbs*) multiply by the layers' matrices, and both by the head. */
  readonly #samplingProducts: FrozenProducts;
  readonly #stepProducts: FrozenProducts;
  readonly #headProducts: FrozenProducts;
  /** Whether XNNPACK holds packed copies of the base that the next step has no room for ('sampling' on wasm). */
  #packedForSampling = false;

  /** Base tensors laid out by `load`, handed to the constructor to own rather than copy. */
  static #adopting: Map<string, tf.Tensor> | null = null;

  /**
   * A model from base weights in the file's layout, by Hugging Face name. Copies them in: the
   * caller keeps (and may dispose) its tensors. A checkpoint's adapters are assigned to `params`
   * afterwards. To avoid holding all base weights twice while loading, use `load`.
   */
  constructor(config: PretrainedConfig, base: BaseWeights, options: PretrainedOptions) {
    const { seed } = options.lora;
    const lora = validate(config, options);
    const { heads, kvHeads } = config;
    this.config = Object.freeze({ ...config, contextLength: options.contextLength });
    this.lora = Object.freeze(lora);
    this.graph = options.graph ?? defaultGraph();
    this.checkpoint = options.checkpoint ?? true;
    this.keepPackedWeights = options.keepPackedWeights ?? true;
    const fast = this.graph === 'fast';
    this.#times = fast ? fastMatmul : (a, b) => tf.matMul(a as tf.Tensor2D, b as tf.Tensor2D);
    // One 2-D product per row and head where there are several query rows (prefill and the step);
    // a decoding step's few rows keep the batched product.
    this.#headsTimes = fast
      ? (a, b) => ((a.shape.at(-2) as number) > heads / kvHeads ? perHead(a, b) : fastMatmul(a, b))
      : this.#times;
    const timesTransposed = fast ? explicitTranspose : transposedOperand;
    const kept = { times: keptOperand, timesTransposed };
    const transient = { times: (x: tf.Tensor2D, w: tf.Tensor2D) => transientOperand(x, w), timesTransposed };
    const keep = this.keepPackedWeights;
    this.#samplingProducts = keep === true || keep === 'sampling' ? kept : transient;
    this.#stepProducts = keep === true ? kept : transient;
    // 'sampling' keeps the head's packed copy through the step too (#recreateBase).
    this.#headProducts = keep === false ? transient : kept;

    const adopted = base === PretrainedPolicy.#adopting;
    this.#base = new Map();
    try {
      for (const [name, shape] of baseShapes(config)) {
        this.#base.set(name, adopted ? (base.get(name) as tf.Tensor) : layOut(name, shape, base.get(name)));
      }
    } catch (error) {
      tf.dispose([...this.#base.values()]);
      throw error;
    }

    // A ~ U(−1/√in, 1/√in) (PEFT's Kaiming-uniform with a = √5), seeded by name; B = 0.
    this.params = new Map();
    for (let l = 0; l < config.layers; l++) {
      for (const projection of LORA_TARGETS.filter((t) => lora.targets.includes(t))) {
        const prefix = `model.layers.${l}.${PROJECTIONS[projection]}.${projection}`;
        const [inputs, out] = projectionSize(config, projection);
        const bound = 1 / Math.sqrt(inputs);
        // A variable shares its initial tensor's memory; the tidy drops the initial tensor itself.
        const [a, b] = tf.tidy(() => [
          tf.variable(tf.randomUniform([lora.rank, inputs], -bound, bound, 'float32', `${seed}:${prefix}`), true),
          tf.variable(tf.zeros([out, lora.rank]), true),
        ]) as [tf.Variable, tf.Variable];
        this.#adapters.set(prefix, { a, b });
        this.params.set(`${prefix}.lora_A.weight`, a);
        this.params.set(`${prefix}.lora_B.weight`, b);
      }
    }
    ({ cos: this.#cos, sin: this.#sin } = rotaryTables(options.contextLength, config.headDim, config.ropeTheta));
  }

  /**
   * A model whose base weights are read one at a time (e.g. a model folder's readTensor), each
   * laid out and its raw values dropped before the next is read: loading never holds more than
   * the model plus one tensor.
   */
  static async load(
    config: PretrainedConfig,
    read: (name: string) => Promise<Float32Array>,
    options: PretrainedOptions,
  ): Promise<PretrainedPolicy> {
    validate(config, options); // before reading what may be gigabytes
    const laidOut = new Map<string, tf.Tensor>();
    try {
      for (const [name, shape] of baseShapes(config)) laidOut.set(name, layOut(name, shape, await read(name)));
      PretrainedPolicy.#adopting = laidOut;
      return new PretrainedPolicy(config, laidOut, options);
    } catch (error) {
      tf.dispose([...laidOut.values()]);
      throw error;
    } finally {
      PretrainedPolicy.#adopting = null;
    }
  }

  /** Trainable parameters: the adapters. */
  parameterCount(): number {
    let total = 0;
    for (const p of this.params.values()) total += p.size;
    return total;
  }

  /** Frozen base parameters (a tied embedding counted once). */
  baseParameterCount(): number {
    let total = 0;
    for (const w of this.#base.values()) total += w.size;
    return total;
  }

  /** The adapters' names and shapes, in `params` order. */
  adapterShapes(): Map<string, number[]> {
    return new Map([...this.params].map(([name, p]) => [name, [...p.shape]]));
  }

  /** One base tensor in the file's layout [out, in] with the adapter folded in: W + (α/r)·B·A. */
  mergedWeight(name: string): Float32Array {
    const w = this.#base.get(name);
    if (w === undefined) throw new RangeError(`no base weight ${name}`);
    return tf.tidy(() => {
      if (w.rank === 1) return w.dataSync() as Float32Array;
      const adapter = this.#adapters.get(name.replace(/\.weight$/, ''));
      const merged =
        adapter === undefined
          ? tf.transpose(w)
          : tf.add(tf.transpose(w), tf.mul(tf.matMul(adapter.b, adapter.a), this.lora.alpha / this.lora.rank));
      return merged.dataSync() as Float32Array;
    });
  }

  /** Every base tensor merged (mergedWeight), by Hugging Face name: a model folder's weights. */
  mergedWeights(): Map<string, Float32Array> {
    return new Map([...this.#base.keys()].map((name) => [name, this.mergedWeight(name)]));
  }

  dispose(): void {
    tf.dispose([...this.params.values(), ...this.#base.values(), this.#cos, this.#sin]);
  }

  #w(name: string): tf.Tensor {
    return this.#base.get(name) as tf.Tensor;
  }

  /** The embedding table [d, vocab] and the head [d, vocab]: one tensor when tied. */
  get #head(): tf.Tensor2D {
    return this.#w(this.config.tieWordEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight') as tf.Tensor2D;
  }

  // ---- packed copies: kept while sampling, dropped before a step ('sampling') ------------------
  //
  // Sampling multiplies every base matrix once per token, so repacking them each time (transient
  // copies) makes it about 10x slower, most of it the head's ('head' keeps only that one); a step multiplies each a few times per micro-batch, where a
  // repacking weighs little, but needs the room. So in 'sampling' mode sampling keeps XNNPACK's
  // packed copies, and the first step after it drops them, by re-creating the base's tensors (a
  // packed copy lives as long as its tensor), and multiplies by transient copies. All but the
  // vocabulary head's: the largest matrix (Qwen2.5: 544 MB), it could not be packed again after a
  // step (measured: no free block that large was left in the heap, and XNNPACK could not create its
  // product), so it stays packed, and the step multiplies by it directly.

  /** How sampling multiplies by the base; in 'sampling' mode on wasm, noting that XNNPACK now keeps packed copies of it. */
  #forSampling(): FrozenProducts {
    if (this.keepPackedWeights === 'sampling' && tf.getBackend() === 'wasm') this.#packedForSampling = true;
    return this.#samplingProducts;
  }

  /** How the step multiplies by the base; first, if sampling left packed copies of it, drops them. */
  #forStep(): FrozenProducts {
    if (this.#packedForSampling) {
      this.#recreateBase();
      this.#packedForSampling = false;
    }
    return this.#stepProducts;
  }

  /**
   * Every base matrix but the head re-created, one at a time: its values out of the wasm heap into
   * JavaScript, the tensor (and with it XNNPACK's packed copy) disposed, and the values back in, so
   * the heap never holds a matrix more than once and refills the space the old one left.
   */
  #recreateBase(): void {
    const head = this.#head;
    for (const [name, w] of this.#base) {
      if (w.rank !== 2 || w === head) continue; // RMSNorm weights and biases are never a product's operand
      const [values, shape] = [w.dataSync() as Float32Array, w.shape as [number, number]];
      w.dispose();
      // Kept: a step may call this inside a tidy, which must not dispose the base.
      this.#base.set(name, tf.keep(tf.tensor2d(values, shape, 'float32')));
    }
  }

  // ---- the forward pass -----------------------------------------------------------------------

  /**
   * Hidden states for `tokens` [batch, steps] at rotary `positions` [batch, steps], attending to
   * the cached keys/values (if any) and then to each other causally. `keyBias` [batch, 1, 1, seen
   * + steps] adds -1e9 for keys that are padding. Returns the final hidden states [batch, steps,
   * hiddenSize] and the cache extended by these steps: keys (rotated) and values per layer,
   * [batch, kvHeads, seen + steps, headDim].
   */
  forward(
    tokens: tf.Tensor2D,
    positions: tf.Tensor2D,
    cache?: KVCache,
    keyBias?: tf.Tensor4D,
  ): { hidden: tf.Tensor3D; cache: KVCache } {
    return this.#forward(tokens, positions, this.#forSampling(), cache, keyBias);
  }

  #forward(
    tokens: tf.Tensor2D,
    positions: tf.Tensor2D,
    frozen: FrozenProducts,
    cache?: KVCache,
    keyBias?: tf.Tensor4D,
  ): { hidden: tf.Tensor3D; cache: KVCache } {
    const [batch, steps] = tokens.shape;
    const context = this.#context(batch, steps, positions, frozen, cache?.keys[0]?.shape[2] ?? 0, keyBias);
    let x = this.#embed(tokens);
    const newCache: KVCache = { keys: [], values: [] };
    for (let l = 0; l < this.config.layers; l++) {
      // One layer's intermediates at a time: what the tape saves for the gradient survives the tidy.
      const layer = tf.tidy(() => this.#layer(l, x, context, cache));
      if (l > 0) x.dispose();
      x = layer.x;
      newCache.keys.push(layer.keys);
      newCache.values.push(layer.values);
    }
    const final = rmsNorm(x, this.#w('model.norm.weight'), this.config.rmsNormEps);
    return { hidden: tf.reshape(final, [batch, steps, this.config.hiddenSize]), cache: newCache };
  }

  /** Token embeddings: columns of the [d, vocab] table, as rows [batch·steps, d]. */
  #embed(tokens: tf.Tensor2D): tf.Tensor2D {
    // The table is frozen, so the lookup has no gradient (gather's needs UnsortedSegmentSum, which wasm lacks).
    return tf.transpose(frozenGather(this.#w('model.embed_tokens.weight'), tf.reshape(tokens, [-1]), 1)) as tf.Tensor2D;
  }

  /** What every layer reads besides x: each token's rotary cos and sin, and the attention mask. */
  #context(
    batch: number,
    steps: number,
    positions: tf.Tensor2D,
    frozen: FrozenProducts,
    seen: number,
    keyBias?: tf.Tensor4D,
  ): LayerContext {
    const { heads, kvHeads, headDim } = this.config;
    // cos and sin [batch, steps, 1, headDim], broadcast over heads.
    const flatPositions = tf.reshape(positions, [-1]);
    const cos = tf.reshape(frozenGather(this.#cos, flatPositions, 0), [batch, steps, 1, headDim]);
    const sin = tf.reshape(frozenGather(this.#sin, flatPositions, 0), [batch, steps, 1, headDim]);
    // Query step i may see every cached key and new keys 0..i; padding keys are hidden by keyBias.
    // The mask is tiled over the query heads stacked per key/value head (see #layer).
    const causal = tf.concat(
      [tf.zeros([steps, seen]), tf.mul(tf.sub(1, tf.linalg.bandPart(tf.ones([steps, steps]), -1, 0)), NEG_INF)],
      1,
    );
    const grouped = tf.tile(causal, [heads / kvHeads, 1]);
    return { batch, steps, cos, sin, bias: keyBias === undefined ? grouped : tf.add(grouped, keyBias), frozen };
  }

  /** Decoder layer l on rows x [batch·steps, d]; also its keys and values, after the cached ones. */
  #layer(
    l: number,
    x: tf.Tensor2D,
    { batch, steps, cos, sin, bias, frozen }: LayerContext,
    cache?: KVCache,
  ): { x: tf.Tensor2D; keys: tf.Tensor4D; values: tf.Tensor4D } {
    const { heads, kvHeads, headDim, rmsNormEps: eps } = this.config;
    const group = heads / kvHeads;
    const at = (name: string) => `model.layers.${l}.${name}`;

    // Attention block: x + o_proj(attention(rmsNorm(x))).
    const h = rmsNorm(x, this.#w(at('input_layernorm.weight')), eps);
    const split = (y: tf.Tensor, n: number) => tf.reshape(y, [batch, steps, n, headDim]);
    const toHeads = (y: tf.Tensor) => tf.transpose(y, [0, 2, 1, 3]) as tf.Tensor4D; // [batch, n, steps, headDim]
    const q = toHeads(rotary(split(this.#project(h, at('self_attn.q_proj'), frozen), heads), cos, sin));
    const k = toHeads(rotary(split(this.#project(h, at('self_attn.k_proj'), frozen), kvHeads), cos, sin));
    const v = toHeads(split(this.#project(h, at('self_attn.v_proj'), frozen), kvHeads));
    const keys = cache === undefined ? k : (tf.concat([cache.keys[l] as tf.Tensor4D, k], 2) as tf.Tensor4D);
    const values = cache === undefined ? v : (tf.concat([cache.values[l] as tf.Tensor4D, v], 2) as tf.Tensor4D);
    // Grouped-query attention without repeating keys and values: the `group` query heads that
    // share a key/value head are stacked along the query axis, [batch, kvHeads, group·steps, headDim].
    const stacked = tf.reshape(q, [batch, kvHeads, group * steps, headDim]);
    const scores = tf.add(tf.mul(this.#headsTimes(stacked, swapLastTwo(keys)), 1 / Math.sqrt(headDim)), bias);
    const attended = tf.reshape(this.#headsTimes(tf.softmax(scores), values), [batch, heads, steps, headDim]);
    const merged = tf.reshape(tf.transpose(attended, [0, 2, 1, 3]), [batch * steps, heads * headDim]);
    const afterAttention = tf.add(x, this.#project(merged, at('self_attn.o_proj'), frozen));

    // MLP block: x + down(silu(gate(h)) ⊙ up(h)), h = rmsNorm(x) (SwiGLU).
    const h2 = rmsNorm(afterAttention, this.#w(at('post_attention_layernorm.weight')), eps);
    const gate = this.#project(h2, at('mlp.gate_proj'), frozen);
    const inner = tf.mul(tf.mul(gate, tf.sigmoid(gate)), this.#project(h2, at('mlp.up_proj'), frozen));
    return { x: tf.add(afterAttention, this.#project(inner, at('mlp.down_proj'), frozen)), keys, values };
  }

  /**
   * Decoder layer l with gradient checkpointing: the tape keeps its input and context, and its
   * backward pass runs it again, under a tape of its own, to differentiate it. tfjs keeps every
   * activation of a forward pass, and every gradient of a backward pass until it ends, so without
   * this a training step holds all layers' activations and gradients at once: about 190 MiB per
   * layer for SmolLM2-135M at 512 tokens, past the wasm heap's 4 GiB at 20 layers. With it, it
   * holds the layers' inputs and one layer's activations. The cost is one more forward pass.
   */
  #checkpointed(l: number, x: tf.Tensor2D, context: LayerContext): tf.Tensor2D {
    const adapters = [...this.#adapters]
      .filter(([prefix]) => prefix.startsWith(`model.layers.${l}.`))
      .flatMap(([, { a, b }]) => [a, b]);
    const layer = tf.customGrad(((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
      const save = args.at(-1) as tf.GradSaveFunc;
      save([args[0] as tf.Tensor, context.cos, context.sin, context.bias]);
      return {
        value: this.#layer(l, args[0] as tf.Tensor2D, context).x,
        gradFunc: (dy: tf.Tensor, [input, cos, sin, bias]: tf.Tensor[]) => {
          const again = { ...context, cos, sin, bias } as LayerContext;
          // A gradient inside a backward pass: tfjs supports them inside a forward pass only, and
          // clears the tape when the inner one ends; the outer backward pass still needs it.
          const engine = tf.engine() as unknown as { state: { activeTape: unknown } };
          const outer = engine.state.activeTape;
          try {
            const { value, grads } = tf
              .engine()
              .gradients(() => this.#layer(l, input as tf.Tensor2D, again).x, [input as tf.Tensor, ...adapters], dy);
            value.dispose();
            return grads;
          } finally {
            engine.state.activeTape = outer;
          }
        },
      };
    }) as unknown as Parameters<typeof tf.customGrad>[0]) as (...inputs: tf.Tensor[]) => tf.Tensor2D;
    return layer(x, ...adapters);
  }

  /** A projection of rows x [n, in]: x·W (+ b) (+ (α/r)·(x·Aᵀ)·Bᵀ where LoRA adapts it) → [n, out]. */
  #project(x: tf.Tensor, prefix: string, frozen: FrozenProducts): tf.Tensor2D {
    let y = frozenMatmul(x, this.#w(`${prefix}.weight`) as tf.Tensor2D, frozen);
    const bias = this.#base.get(`${prefix}.bias`);
    if (bias !== undefined) y = tf.add(y, bias);
    const adapter = this.#adapters.get(prefix);
    if (adapter === undefined) return y;
    // Scaled in the rank-r middle, the smallest tensor on the way.
    const down = tf.mul(this.#times(x, tf.transpose(adapter.a)), this.lora.alpha / this.lora.rank);
    return tf.add(y, this.#times(down, tf.transpose(adapter.b)));
  }

  /** Logits over the vocabulary for hidden states [batch, steps, d] → [batch, steps, vocab]. */
  logits(hidden: tf.Tensor3D): tf.Tensor3D {
    const [batch, steps, d] = hidden.shape;
    const flat = frozenMatmul(tf.reshape(hidden, [batch * steps, d]), this.#head, this.#headProducts);
    return tf.reshape(flat, [batch, steps, this.config.vocabSize]);
  }

  /**
   * log π(targets[b, t] | tokens[b, ..t]) for every position: [batch, steps]. Sequences start at
   * position 0 (right padding only); the caller masks padded positions out.
   */
  tokenLogProbs(tokens: tf.Tensor2D, targets: tf.Tensor2D): tf.Tensor2D {
    return this.tokenLogProbsAndEntropy(tokens, targets).logProbs;
  }

  /**
   * tokenLogProbs, and the entropy −Σ_v π(v) log π(v) of the policy at every position [batch,
   * steps], both from one pass over the vocabulary (vocabularyTerms). The entropy has no gradient.
   */
  tokenLogProbsAndEntropy(tokens: tf.Tensor2D, targets: tf.Tensor2D): { logProbs: tf.Tensor2D; entropy: tf.Tensor2D } {
    const [batch, steps] = tokens.shape;
    if (steps > this.config.contextLength) {
      throw new RangeError(
        `sequence of ${steps} tokens is longer than the model's context of ${this.config.contextLength}`,
      );
    }
    const frozen = this.#forStep();
    const positions = tf.tile(tf.expandDims(tf.range(0, steps, 1, 'int32'), 0), [batch, 1]) as tf.Tensor2D;
    let rows: tf.Tensor2D;
    if (this.checkpoint) {
      const context = this.#context(batch, steps, positions, frozen, 0);
      let x = this.#embed(tokens);
      for (let l = 0; l < this.config.layers; l++) x = this.#checkpointed(l, x, context);
      rows = rmsNorm(x, this.#w('model.norm.weight'), this.config.rmsNormEps);
    } else {
      const { hidden } = this.#forward(tokens, positions, frozen);
      rows = tf.reshape(hidden, [batch * steps, this.config.hiddenSize]) as tf.Tensor2D;
    }
    const flatTargets = tf.reshape(targets, [-1]) as tf.Tensor1D;
    const { logProbs, entropy } = vocabularyTerms(rows, this.#head, flatTargets, this.#headProducts);
    return {
      logProbs: tf.reshape(logProbs, [batch, steps]) as tf.Tensor2D,
      entropy: tf.reshape(entropy, [batch, steps]) as tf.Tensor2D,
    };
  }
}

/** RMSNorm over the last axis: w ⊙ x / √(mean(x²) + ε). */
function rmsNorm(x: tf.Tensor, weight: tf.Tensor, eps: number): tf.Tensor2D {
  return tf.mul(tf.mul(x, tf.rsqrt(tf.add(tf.mean(tf.square(x), -1, true), eps))), weight) as tf.Tensor2D;
}

/** x·cos + rotate_half(x)·sin on heads x [batch, steps, n, headDim]; rotate_half(x) = (−x₂, x₁). */
function rotary(x: tf.Tensor, cos: tf.Tensor, sin: tf.Tensor): tf.Tensor {
  const [x1, x2] = tf.split(x, 2, -1) as [tf.Tensor, tf.Tensor];
  return tf.add(tf.mul(x, cos), tf.mul(tf.concat([tf.neg(x2), x1], -1), sin));
}
