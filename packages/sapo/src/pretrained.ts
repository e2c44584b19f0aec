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
 * Same public surface as the embedded `Policy` (`CausalLM` below), so SapoLearner and sampling
 * take either.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { PretrainedConfig } from './hf/config.js';
import { defaultGraph, type GraphKind, type KVCache } from './model.js';

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
}

/** Base weights by Hugging Face name, in the file's layout: tensors (float32) or their values. */
export type BaseWeights = ReadonlyMap<string, tf.Tensor | Float32Array>;

const NEG_INF = -1e9;

/** Columns of a frozen matrix transposed at a time in a backward pass (see timesTransposed). */
const TRANSPOSE_BLOCK = 8192;

// ---- the operations that make the graph fast on wasm (model.ts explains why) ----------------

const swapLastTwo = (x: tf.Tensor) => {
  const order = x.shape.map((_, i) => i);
  order.splice(-2, 2, order.length - 1, order.length - 2);
  return tf.transpose(x, order);
};

/**
 * a·b (2-D or batched) for two operands that both need gradients: activations and the adapters.
 * The gradients are untransposed products of explicit transposes, freed as soon as each is used
 * (a custom gradient runs outside the tape's per-op tidy).
 */
const fastMatmul = tf.customGrad(((a: tf.Tensor, b: tf.Tensor, save: tf.GradSaveFunc) => {
  save([a, b]);
  return {
    value: tf.matMul(a as tf.Tensor2D, b as tf.Tensor2D),
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) =>
      tf.tidy(() => {
        const [sa, sb] = saved as [tf.Tensor, tf.Tensor];
        return [
          tf.matMul(dy as tf.Tensor2D, swapLastTwo(sb) as tf.Tensor2D),
          tf.matMul(swapLastTwo(sa) as tf.Tensor2D, dy as tf.Tensor2D),
        ];
      }),
  };
}) as unknown as Parameters<typeof tf.customGrad>[0]) as (a: tf.Tensor, b: tf.Tensor) => tf.Tensor;

/**
 * x·w for a frozen w [in, out]. The gradient goes to x alone, dx = dy·wᵀ: w is closed over rather
 * than an input, so no gradient for it is ever computed (a custom gradient computes one for every
 * input, and dw costs as much as the forward product).
 */
function frozenMatmul(x: tf.Tensor, w: tf.Tensor2D): tf.Tensor2D {
  const product = tf.customGrad(((input: tf.Tensor) => ({
    value: tf.matMul(input as tf.Tensor2D, w),
    gradFunc: (dy: tf.Tensor) => timesTransposed(dy as tf.Tensor2D, w),
  })) as unknown as Parameters<typeof tf.customGrad>[0]) as (input: tf.Tensor) => tf.Tensor2D;
  return product(x);
}

/**
 * dy·wᵀ for w [in, out], through column blocks of w each transposed and freed in turn: a
 * transposed copy of all of w at once would be as large as w, and the head is vocabulary-wide.
 * Every projection of the models we target fits in one block.
 */
function timesTransposed(dy: tf.Tensor2D, w: tf.Tensor2D): tf.Tensor2D {
  const out = w.shape[1];
  let sum: tf.Tensor2D | undefined;
  for (let from = 0; from < out; from += TRANSPOSE_BLOCK) {
    const size = Math.min(TRANSPOSE_BLOCK, out - from);
    const previous = sum;
    sum = tf.tidy(() => {
      const whole = size === out;
      const block = whole ? dy : tf.slice(dy, [0, from], [-1, size]);
      const columns = whole ? w : tf.slice(w, [0, from], [-1, size]);
      const part = tf.matMul(block, tf.transpose(columns));
      return previous === undefined ? part : tf.add(previous, part);
    }) as tf.Tensor2D;
    previous?.dispose();
  }
  return sum as tf.Tensor2D;
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

/** [in, out] of a projection. */
function projectionSize(config: PretrainedConfig, projection: LoraTarget): [number, number] {
  const { hiddenSize: d, intermediateSize: m, heads, kvHeads, headDim } = config;
  const sizes: Record<LoraTarget, [number, number]> = {
    q_proj: [d, heads * headDim],
    k_proj: [d, kvHeads * headDim],
    v_proj: [d, kvHeads * headDim],
    o_proj: [heads * headDim, d],
    gate_proj: [d, m],
    up_proj: [d, m],
    down_proj: [m, d],
  };
  return sizes[projection];
}

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
    // A clone shares the caller's memory; a transpose is our one copy.
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

function validate(config: PretrainedConfig, options: PretrainedOptions, lora: LoraSettings): void {
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
}

// ---- the model --------------------------------------------------------------------------------

export class PretrainedPolicy implements CausalLM {
  readonly config: Readonly<PretrainedConfig & { contextLength: number }>;
  readonly lora: Readonly<LoraSettings>;
  /** The LoRA adapters by PEFT name (…q_proj.lora_A.weight [r, in], …lora_B.weight [out, r]), layer by layer. */
  readonly params: Map<string, tf.Variable>;
  readonly graph: GraphKind;
  /** Frozen base weights by Hugging Face name, laid out for the model (layOut). */
  readonly #base: Map<string, tf.Tensor>;
  /** Each adapted projection's A and B, by the projection's Hugging Face prefix. */
  readonly #adapters = new Map<string, { a: tf.Variable; b: tf.Variable }>();
  readonly #cos: tf.Tensor2D;
  readonly #sin: tf.Tensor2D;
  readonly #times: (a: tf.Tensor, b: tf.Tensor) => tf.Tensor;
  readonly #timesFrozen: (x: tf.Tensor, w: tf.Tensor2D) => tf.Tensor2D;

  /** Base tensors laid out by `load`, handed to the constructor to own rather than copy. */
  static #adopting: Map<string, tf.Tensor> | null = null;

  /**
   * A model from base weights in the file's layout, by Hugging Face name. Copies them in: the
   * caller keeps (and may dispose) its tensors. A checkpoint's adapters are assigned to `params`
   * afterwards. To avoid holding all base weights twice while loading, use `load`.
   */
  constructor(config: PretrainedConfig, base: BaseWeights, options: PretrainedOptions) {
    const { seed, ...settings } = options.lora;
    const lora = { ...DEFAULT_LORA, ...settings, targets: Object.freeze([...(settings.targets ?? LORA_TARGETS)]) };
    validate(config, options, lora);
    this.config = Object.freeze({ ...config, contextLength: options.contextLength });
    this.lora = Object.freeze(lora);
    this.graph = options.graph ?? defaultGraph();
    this.#times = this.graph === 'fast' ? fastMatmul : (a, b) => tf.matMul(a as tf.Tensor2D, b as tf.Tensor2D);
    this.#timesFrozen = this.graph === 'fast' ? frozenMatmul : (x, w) => tf.matMul(x as tf.Tensor2D, w);

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
    const [batch, steps] = tokens.shape;
    const { hiddenSize: d, heads, kvHeads, headDim, rmsNormEps: eps } = this.config;
    const group = heads / kvHeads;
    const seen = cache?.keys[0]?.shape[2] ?? 0;

    // Token embeddings: columns of the [d, vocab] table, as rows [batch·steps, d]. The table is
    // frozen, so gather needs no gradient (whose UnsortedSegmentSum kernel wasm lacks).
    let x = tf.transpose(tf.gather(this.#w('model.embed_tokens.weight'), tf.reshape(tokens, [-1]), 1)) as tf.Tensor2D;

    // Each token's rotary cos and sin [batch, steps, 1, headDim], broadcast over heads.
    const flatPositions = tf.reshape(positions, [-1]);
    const cos = tf.reshape(tf.gather(this.#cos, flatPositions), [batch, steps, 1, headDim]);
    const sin = tf.reshape(tf.gather(this.#sin, flatPositions), [batch, steps, 1, headDim]);

    // Query step i may see every cached key and new keys 0..i; padding keys are hidden by keyBias.
    // The mask is tiled over the `group` query heads stacked per key/value head (below).
    const causal = tf.concat(
      [tf.zeros([steps, seen]), tf.mul(tf.sub(1, tf.linalg.bandPart(tf.ones([steps, steps]), -1, 0)), NEG_INF)],
      1,
    );
    const grouped = tf.tile(causal, [group, 1]);
    const bias = keyBias === undefined ? grouped : tf.add(grouped, keyBias);

    const newCache: KVCache = { keys: [], values: [] };
    for (let l = 0; l < this.config.layers; l++) {
      const at = (name: string) => `model.layers.${l}.${name}`;
      // One layer's intermediates at a time: what the tape saves for the gradient survives the tidy.
      const layer = tf.tidy(() => {
        // Attention block: x + o_proj(attention(rmsNorm(x))).
        const h = rmsNorm(x, this.#w(at('input_layernorm.weight')), eps);
        const split = (y: tf.Tensor, n: number) => tf.reshape(y, [batch, steps, n, headDim]);
        const toHeads = (y: tf.Tensor) => tf.transpose(y, [0, 2, 1, 3]) as tf.Tensor4D; // [batch, n, steps, headDim]
        const q = toHeads(rotary(split(this.#project(h, at('self_attn.q_proj')), heads), cos, sin));
        const k = toHeads(rotary(split(this.#project(h, at('self_attn.k_proj')), kvHeads), cos, sin));
        const v = toHeads(split(this.#project(h, at('self_attn.v_proj')), kvHeads));
        const keys = cache === undefined ? k : (tf.concat([cache.keys[l] as tf.Tensor4D, k], 2) as tf.Tensor4D);
        const values = cache === undefined ? v : (tf.concat([cache.values[l] as tf.Tensor4D, v], 2) as tf.Tensor4D);
        // Grouped-query attention without repeating keys and values: the `group` query heads that
        // share a key/value head are stacked along the query axis, [batch, kvHeads, group·steps, headDim].
        const stacked = tf.reshape(q, [batch, kvHeads, group * steps, headDim]);
        const scores = tf.add(tf.mul(this.#times(stacked, swapLastTwo(keys)), 1 / Math.sqrt(headDim)), bias);
        const attended = tf.reshape(this.#times(tf.softmax(scores), values), [batch, heads, steps, headDim]);
        const merged = tf.reshape(tf.transpose(attended, [0, 2, 1, 3]), [batch * steps, heads * headDim]);
        const afterAttention = tf.add(x, this.#project(merged, at('self_attn.o_proj')));

        // MLP block: x + down(silu(gate(h)) ⊙ up(h)), h = rmsNorm(x) (SwiGLU).
        const h2 = rmsNorm(afterAttention, this.#w(at('post_attention_layernorm.weight')), eps);
        const gate = this.#project(h2, at('mlp.gate_proj'));
        const inner = tf.mul(tf.mul(gate, tf.sigmoid(gate)), this.#project(h2, at('mlp.up_proj')));
        return { x: tf.add(afterAttention, this.#project(inner, at('mlp.down_proj'))), keys, values };
      });
      if (l > 0) x.dispose();
      x = layer.x as tf.Tensor2D;
      newCache.keys.push(layer.keys);
      newCache.values.push(layer.values);
    }
    const final = rmsNorm(x, this.#w('model.norm.weight'), eps);
    return { hidden: tf.reshape(final, [batch, steps, d]), cache: newCache };
  }

  /** A projection of rows x [n, in]: x·W (+ b) (+ (α/r)·(x·Aᵀ)·Bᵀ where LoRA adapts it) → [n, out]. */
  #project(x: tf.Tensor, prefix: string): tf.Tensor2D {
    let y = this.#timesFrozen(x, this.#w(`${prefix}.weight`) as tf.Tensor2D);
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
    const flat = this.#timesFrozen(tf.reshape(hidden, [batch * steps, d]), this.#head);
    return tf.reshape(flat, [batch, steps, this.config.vocabSize]);
  }

  /**
   * log π(targets[b, t] | tokens[b, ..t]) for every position: [batch, steps]. Sequences start at
   * position 0 (right padding only); the caller masks padded positions out.
   */
  tokenLogProbs(tokens: tf.Tensor2D, targets: tf.Tensor2D): tf.Tensor2D {
    const { hidden, logits } = this.#read(tokens);
    return this.#pick(hidden, logits, targets);
  }

  /**
   * tokenLogProbs, and the entropy −Σ_v π(v) log π(v) of the policy at every position [batch,
   * steps]. A loss of the log-probs alone backpropagates as if the entropy had not been computed.
   */
  tokenLogProbsAndEntropy(tokens: tf.Tensor2D, targets: tf.Tensor2D): { logProbs: tf.Tensor2D; entropy: tf.Tensor2D } {
    const { hidden, logits } = this.#read(tokens);
    const logSoftmax = tf.logSoftmax(logits);
    const entropy = tf.neg(tf.sum(tf.mul(tf.exp(logSoftmax), logSoftmax), -1)) as tf.Tensor2D;
    return { logProbs: this.#pick(hidden, logits, targets), entropy };
  }

  /** The final hidden states [batch, steps, d] of sequences read from position 0, and their logits. */
  #read(tokens: tf.Tensor2D): { hidden: tf.Tensor3D; logits: tf.Tensor3D } {
    const [batch, steps] = tokens.shape;
    if (steps > this.config.contextLength) {
      throw new RangeError(
        `sequence of ${steps} tokens is longer than the model's context of ${this.config.contextLength}`,
      );
    }
    const positions = tf.tile(tf.expandDims(tf.range(0, steps, 1, 'int32'), 0), [batch, 1]) as tf.Tensor2D;
    const { hidden } = this.forward(tokens, positions);
    return { hidden, logits: this.logits(hidden) };
  }

  /**
   * log π(target) = logit(target) − logsumexp(logits), the target's logit as the hidden state times
   * its column of the head: neither a one-hot mask as large as the logits nor gather's gradient
   * (UnsortedSegmentSum, which wasm lacks).
   */
  #pick(hidden: tf.Tensor3D, logits: tf.Tensor3D, targets: tf.Tensor2D): tf.Tensor2D {
    const [batch, steps, d] = hidden.shape;
    const columns = tf.transpose(tf.gather(this.#head, tf.reshape(targets, [-1]), 1)); // [batch·steps, d]
    const chosen = tf.sum(tf.mul(tf.reshape(hidden, [batch * steps, d]), columns), -1);
    return tf.sub(tf.reshape(chosen, [batch, steps]), tf.logSumExp(logits, -1)) as tf.Tensor2D;
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
