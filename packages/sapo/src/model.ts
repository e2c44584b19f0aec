/**
 * The policy: a decoder-only causal transformer over token ids, readable top to bottom.
 *
 *   tokens ─► token embedding + position embedding
 *          ─► layers × [ x + attention(layerNorm(x)),  x + mlp(layerNorm(x)) ]
 *          ─► layerNorm ─► head ─► logits over the vocabulary
 *
 * Written so that the same graph trains fast on every tfjs backend (docs/BENCHMARKS.md). The wasm
 * backend runs a matrix product on XNNPACK only when it is 2-D and untransposed; anything else
 * takes a scalar loop 4-25x slower. And every kernel call costs 10-20 µs of JavaScript, so fewer
 * calls matter as much as faster ones. In the fast graph:
 * - every weight product goes through `matmul` or `dense` (bias fused into the product), whose
 *   backward pass transposes explicitly and then multiplies untransposed operands (tfjs's own
 *   gradient asks for transposed products);
 * - attention's per-head products are cut into one 2-D product per row and head (`perHead`), in
 *   the forward pass and in the gradient;
 * - embeddings are one-hot rows times the table, and their gradient goes to the table alone: a
 *   matrix product, not the UnsortedSegmentSum kernel that wasm lacks;
 * - layer norm has its gradient written out (`fastLayerNorm`), a third of the calls of tfjs's.
 * `graph: 'naive'` uses tfjs's default gradients and batched products instead: the benchmark's
 * baseline, the equivalence test's reference, and the default off wasm (see defaultGraph). Both
 * graphs compute the same function; they differ in float rounding only.
 */
import * as tf from '@tensorflow/tfjs-core';
// tfjs-core's Node build registers no gradients; the union package's Node bundle does, into the
// same (deduplicated) tfjs-core.
import '@tensorflow/tfjs';

export interface PolicyConfig {
  vocabSize: number;
  /** Longest sequence (prompt + completion) the model reads. */
  contextLength: number;
  layers: number;
  dModel: number;
  heads: number;
  /** Hidden width of each MLP as a multiple of dModel. */
  mlpRatio: number;
}

/** The benchmark's reference size: 2 layers, d_model 128, 4 heads, context 64, byte vocabulary. */
export const REFERENCE_CONFIG: PolicyConfig = {
  vocabSize: 259,
  contextLength: 64,
  layers: 2,
  dModel: 128,
  heads: 4,
  mlpRatio: 4,
};

export type GraphKind = 'fast' | 'naive';

/**
 * The graph for the active backend: explicit transposes pay off on wasm (4.3x per training step)
 * but cost more than they save in pure-JS cpu (0.6x), where tfjs's own gradients are used.
 */
export const defaultGraph = (): GraphKind => (tf.getBackend() === 'wasm' ? 'fast' : 'naive');

/** Keys and values of every layer for the positions seen so far: [batch, heads, seen, headSize]. */
export type KVCache = {
  keys: tf.Tensor4D[];
  values: tf.Tensor4D[];
};

const NEG_INF = -1e9;

// ---- the two operations that make the graph fast everywhere ---------------------------------

export const swapLastTwo = (x: tf.Tensor) => {
  const order = x.shape.map((_, i) => i);
  order.splice(-2, 2, order.length - 1, order.length - 2);
  return tf.transpose(x, order);
};

/**
 * a·b (2-D or batched); gradients are untransposed products of explicit transposes, freed as soon
 * as each is used (a custom gradient runs outside the tape's per-op tidy).
 */
export const fastMatmul = tf.customGrad(((a: tf.Tensor, b: tf.Tensor, save: tf.GradSaveFunc) => {
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
 * x·w + b for rows x [n, in], the bias added inside the product (XNNPACK's fused bias). Gradients
 * as fastMatmul's, and b's the column sums of dy.
 */
const fastDense = tf.customGrad(((x: tf.Tensor, w: tf.Tensor, b: tf.Tensor, save: tf.GradSaveFunc) => {
  save([x, w]);
  return {
    value: tf.fused.matMul({ a: x as tf.Tensor2D, b: w as tf.Tensor2D, bias: b }),
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) =>
      tf.tidy(() => {
        const [sx, sw] = saved as [tf.Tensor2D, tf.Tensor2D];
        return [
          tf.matMul(dy as tf.Tensor2D, tf.transpose(sw)),
          tf.matMul(tf.transpose(sx), dy as tf.Tensor2D),
          tf.sum(dy, 0),
        ];
      }),
  };
}) as unknown as Parameters<typeof tf.customGrad>[0]) as (x: tf.Tensor, w: tf.Tensor, b: tf.Tensor) => tf.Tensor;

/**
 * a·b for [batch, heads, m, k]·[batch, heads, k, n], as one 2-D product per row and head, which
 * wasm runs on XNNPACK: 2x faster than one batched product for attention's forward and backward
 * passes, slicing included. The gradient is sliced products of explicit transposes too.
 */
export const perHead = tf.customGrad(((a: tf.Tensor, b: tf.Tensor, save: tf.GradSaveFunc) => {
  save([a, b]);
  const [m, n] = [a.shape.at(-2), b.shape.at(-1)] as [number, number];
  const products = (left: tf.Tensor2D[], right: tf.Tensor2D[], shape: number[]) =>
    tf.reshape(tf.stack(left.map((x, i) => tf.matMul(x, right[i] as tf.Tensor2D))), shape);
  return {
    value: products(matrices(a), matrices(b), [...a.shape.slice(0, -2), m, n]),
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) =>
      tf.tidy(() => {
        const [sa, sb] = saved as [tf.Tensor, tf.Tensor];
        const dys = matrices(dy);
        return [products(dys, matrices(swapLastTwo(sb)), a.shape), products(matrices(swapLastTwo(sa)), dys, b.shape)];
      }),
  };
}) as unknown as Parameters<typeof tf.customGrad>[0]) as (a: tf.Tensor, b: tf.Tensor) => tf.Tensor;

/**
 * The matrices of x [..., m, n] in order, as tensors [m, n]. Read back once and written as new
 * tensors: wasm's Slice kernel copies its whole input into JavaScript for every slice it cuts.
 * Only for the inside of a custom gradient (it is not differentiable), and a readback on a GPU.
 */
function matrices(x: tf.Tensor): tf.Tensor2D[] {
  const [m, n] = x.shape.slice(-2) as [number, number];
  const values = x.dataSync() as Float32Array;
  return Array.from({ length: values.length / (m * n) }, (_, i) =>
    tf.tensor2d(values.subarray(i * m * n, (i + 1) * m * n), [m, n]),
  );
}

/**
 * Rows table[ids] [n, d], as one-hot rows times the table (on wasm faster than gather). The
 * gradient goes to the table alone: one-hot(ids)ᵀ·dy, a matrix product (gather's own gradient
 * needs the UnsortedSegmentSum kernel that wasm lacks), and none is computed for the one-hot rows.
 */
function lookUp(table: tf.Tensor, ids: tf.Tensor1D): tf.Tensor2D {
  const rows = tf.customGrad(((t: tf.Tensor, save: tf.GradSaveFunc) => {
    const oneHot = tf.oneHot(ids, t.shape[0] as number);
    save([oneHot]);
    return {
      value: tf.matMul(oneHot, t as tf.Tensor2D),
      gradFunc: (dy: tf.Tensor, [saved]: tf.Tensor[]) =>
        tf.tidy(() => tf.matMul(tf.transpose(saved as tf.Tensor2D), dy as tf.Tensor2D)),
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]) as (t: tf.Tensor) => tf.Tensor2D;
  return rows(table);
}

// ---- parameters -------------------------------------------------------------------------------

/** Parameter names and shapes, in a fixed order (checkpoints and the optimizer rely on it). */
export function parameterShapes(config: PolicyConfig): Map<string, number[]> {
  const { vocabSize: v, contextLength: t, dModel: d, mlpRatio } = config;
  const shapes = new Map<string, number[]>([
    ['tokenEmbedding', [v, d]],
    ['positionEmbedding', [t, d]],
  ]);
  for (let l = 0; l < config.layers; l++) {
    for (const [name, shape] of [
      ['ln1.gain', [d]],
      ['ln1.bias', [d]],
      ['attn.qkv.weight', [d, 3 * d]],
      ['attn.qkv.bias', [3 * d]],
      ['attn.out.weight', [d, d]],
      ['attn.out.bias', [d]],
      ['ln2.gain', [d]],
      ['ln2.bias', [d]],
      ['mlp.in.weight', [d, mlpRatio * d]],
      ['mlp.in.bias', [mlpRatio * d]],
      ['mlp.out.weight', [mlpRatio * d, d]],
      ['mlp.out.bias', [d]],
    ] as const) {
      shapes.set(`layer${l}.${name}`, [...shape]);
    }
  }
  shapes.set('lnFinal.gain', [d]);
  shapes.set('lnFinal.bias', [d]);
  shapes.set('head.weight', [d, v]);
  return shapes;
}

export function validateConfig(config: PolicyConfig): void {
  const positive = ['vocabSize', 'contextLength', 'layers', 'dModel', 'heads', 'mlpRatio'] as const;
  for (const key of positive) {
    if (!Number.isInteger(config[key]) || config[key] < 1) {
      throw new RangeError(`policy config ${key} must be a positive integer, got ${String(config[key])}`);
    }
  }
  if (config.dModel % config.heads !== 0) {
    throw new RangeError(`policy config dModel (${config.dModel}) must be divisible by heads (${config.heads})`);
  }
}

export class Policy {
  readonly config: PolicyConfig;
  /** Trainable parameters by name, in parameterShapes order. */
  readonly params: Map<string, tf.Variable>;
  readonly graph: GraphKind;
  readonly #matmul: (a: tf.Tensor, b: tf.Tensor) => tf.Tensor;
  /** x·w + b for rows x [n, in]. */
  readonly #dense: (x: tf.Tensor, w: tf.Tensor, b: tf.Tensor) => tf.Tensor;
  /** Attention's products [batch, heads, m, k]·[batch, heads, k, n]. */
  readonly #headsMatmul: (a: tf.Tensor, b: tf.Tensor) => tf.Tensor;
  /** Embedding rows of a table for ids [n] → [n, d]. */
  readonly #embed: (table: tf.Tensor, ids: tf.Tensor1D) => tf.Tensor;
  readonly #layerNorm: (x: tf.Tensor, gain: tf.Tensor, bias: tf.Tensor) => tf.Tensor;

  /** A fresh model: GPT-2 style init (normal 0.02, residual projections scaled by depth), seeded. */
  static create(config: PolicyConfig, options: { seed: number; graph?: GraphKind }): Policy {
    validateConfig(config);
    const residualStd = 0.02 / Math.sqrt(2 * config.layers);
    const init = new Map<string, tf.Tensor>();
    let index = 0;
    for (const [name, shape] of parameterShapes(config)) {
      const seed = options.seed * 1000 + index++;
      if (name.endsWith('.gain')) init.set(name, tf.ones(shape));
      else if (name.endsWith('.bias')) init.set(name, tf.zeros(shape));
      else init.set(name, tf.randomNormal(shape, 0, name.endsWith('out.weight') ? residualStd : 0.02, 'float32', seed));
    }
    const policy = new Policy(config, init, options.graph ?? defaultGraph());
    for (const tensor of init.values()) tensor.dispose();
    return policy;
  }

  /** A model from given tensors (e.g. a checkpoint); copies them into variables, the caller keeps its tensors. */
  constructor(config: PolicyConfig, weights: ReadonlyMap<string, tf.Tensor>, graph: GraphKind = defaultGraph()) {
    validateConfig(config);
    this.config = { ...config };
    this.graph = graph;
    const product = (a: tf.Tensor, b: tf.Tensor) => tf.matMul(a as tf.Tensor2D, b as tf.Tensor2D);
    const oneHotRows = (table: tf.Tensor, ids: tf.Tensor1D) => product(tf.oneHot(ids, table.shape[0] as number), table);
    // One-token decoding steps (m = 1) keep the batched product: slicing them would only add calls.
    const heads = (a: tf.Tensor, b: tf.Tensor) => ((a.shape.at(-2) as number) > 1 ? perHead(a, b) : product(a, b));
    this.#matmul = graph === 'fast' ? (a, b) => fastMatmul(a, b) : product;
    this.#dense = graph === 'fast' ? fastDense : (x, w, b) => tf.add(product(x, w), b);
    this.#headsMatmul = graph === 'fast' ? heads : product;
    this.#embed = graph === 'fast' ? lookUp : oneHotRows;
    this.#layerNorm = graph === 'fast' ? fastLayerNorm : layerNorm;
    // Check every tensor before making any variable, so a bad set of weights leaks nothing.
    const shapes = parameterShapes(config);
    for (const [name, shape] of shapes) {
      const tensor = weights.get(name);
      if (tensor === undefined) throw new RangeError(`missing parameter ${name}`);
      if (tensor.shape.join() !== shape.join()) {
        throw new RangeError(`parameter ${name} has shape [${tensor.shape}], the config needs [${shape}]`);
      }
    }
    this.params = new Map([...shapes.keys()].map((name) => [name, tf.variable(weights.get(name) as tf.Tensor, true)]));
  }

  parameterCount(): number {
    let total = 0;
    for (const p of this.params.values()) total += p.size;
    return total;
  }

  dispose(): void {
    for (const p of this.params.values()) p.dispose();
  }

  #p(name: string): tf.Variable {
    return this.params.get(name) as tf.Variable;
  }

  // ---- the forward pass -----------------------------------------------------------------------

  /**
   * Hidden states for `tokens` [batch, steps] at `positions` [batch, steps], attending to the
   * cached keys/values (if any) and then to each other causally. `keyBias` [batch, 1, 1, seen +
   * steps] adds -1e9 for keys that are padding. Returns the final hidden states [batch, steps,
   * dModel] and the cache extended by these steps.
   */
  forward(
    tokens: tf.Tensor2D,
    positions: tf.Tensor2D,
    cache?: KVCache,
    keyBias?: tf.Tensor4D,
  ): { hidden: tf.Tensor3D; cache: KVCache } {
    const [batch, steps] = tokens.shape;
    const { dModel: d, heads } = this.config;
    const headSize = d / heads;
    const seen = cache?.keys[0]?.shape[2] ?? 0;

    // Token and position embeddings: [batch*steps, d].
    let x = tf.add(
      this.#embed(this.#p('tokenEmbedding'), tf.reshape(tokens, [-1])),
      this.#embed(this.#p('positionEmbedding'), tf.reshape(positions, [-1])),
    );

    // Query step i may see every cached key and new keys 0..i; padding keys are hidden by keyBias.
    const causal = tf.concat(
      [tf.zeros([steps, seen]), tf.mul(tf.sub(1, tf.linalg.bandPart(tf.ones([steps, steps]), -1, 0)), NEG_INF)],
      1,
    );
    const bias = keyBias === undefined ? causal : tf.add(causal, keyBias);

    const newCache: KVCache = { keys: [], values: [] };
    for (let l = 0; l < this.config.layers; l++) {
      const at = (name: string) => this.#p(`layer${l}.${name}`);

      // Attention: project to q, k, v; split heads; softmax(q·kᵀ/√headSize + bias)·v.
      const qkv = this.#dense(
        this.#layerNorm(x, at('ln1.gain'), at('ln1.bias')),
        at('attn.qkv.weight'),
        at('attn.qkv.bias'),
      );
      const [q, k, v] = tf
        .split(qkv, 3, 1)
        .map((part) => tf.transpose(tf.reshape(part, [batch, steps, heads, headSize]), [0, 2, 1, 3])) as [
        tf.Tensor4D,
        tf.Tensor4D,
        tf.Tensor4D,
      ];
      const keys = cache === undefined ? k : tf.concat([cache.keys[l] as tf.Tensor4D, k], 2);
      const values = cache === undefined ? v : tf.concat([cache.values[l] as tf.Tensor4D, v], 2);
      newCache.keys.push(keys);
      newCache.values.push(values);
      const scores = tf.add(tf.mul(this.#headsMatmul(q, swapLastTwo(keys)), 1 / Math.sqrt(headSize)), bias);
      const attended = this.#headsMatmul(tf.softmax(scores), values); // [batch, heads, steps, headSize]
      const merged = tf.reshape(tf.transpose(attended, [0, 2, 1, 3]), [batch * steps, d]);
      x = tf.add(x, this.#dense(merged, at('attn.out.weight'), at('attn.out.bias')));

      // MLP: d → mlpRatio·d → d with GELU.
      const hidden = gelu(
        this.#dense(this.#layerNorm(x, at('ln2.gain'), at('ln2.bias')), at('mlp.in.weight'), at('mlp.in.bias')),
      );
      x = tf.add(x, this.#dense(hidden, at('mlp.out.weight'), at('mlp.out.bias')));
    }
    const final = this.#layerNorm(x, this.#p('lnFinal.gain'), this.#p('lnFinal.bias'));
    return { hidden: tf.reshape(final, [batch, steps, d]), cache: newCache };
  }

  /** Logits over the vocabulary for hidden states [batch, steps, d] → [batch, steps, vocab]. */
  logits(hidden: tf.Tensor3D): tf.Tensor3D {
    const [batch, steps, d] = hidden.shape;
    const flat = this.#matmul(tf.reshape(hidden, [batch * steps, d]), this.#p('head.weight'));
    return tf.reshape(flat, [batch, steps, this.config.vocabSize]);
  }

  /**
   * log π(targets[b, t] | tokens[b, ..t]) for every position: [batch, steps]. Sequences start at
   * position 0 (right padding only); the caller masks padded positions out.
   */
  tokenLogProbs(tokens: tf.Tensor2D, targets: tf.Tensor2D): tf.Tensor2D {
    return this.#pick(this.#logSoftmax(tokens), targets);
  }

  /**
   * tokenLogProbs, and from the same log-softmax the entropy −Σ_v π(v) log π(v) of the policy at
   * every position [batch, steps]. A loss of the log-probs alone backpropagates as if the entropy
   * had not been computed (tfjs only differentiates the ops between the variables and the loss).
   */
  tokenLogProbsAndEntropy(tokens: tf.Tensor2D, targets: tf.Tensor2D): { logProbs: tf.Tensor2D; entropy: tf.Tensor2D } {
    const logProbs = this.#logSoftmax(tokens);
    const entropy = tf.neg(tf.sum(tf.mul(tf.exp(logProbs), logProbs), -1)) as tf.Tensor2D;
    return { logProbs: this.#pick(logProbs, targets), entropy };
  }

  /** log π(· | tokens[b, ..t]) over the vocabulary: [batch, steps, vocab]. */
  #logSoftmax(tokens: tf.Tensor2D): tf.Tensor3D {
    const [batch, steps] = tokens.shape;
    if (steps > this.config.contextLength) {
      throw new RangeError(
        `sequence of ${steps} tokens is longer than the model's context of ${this.config.contextLength}`,
      );
    }
    const positions = tf.tile(tf.expandDims(tf.range(0, steps, 1, 'int32'), 0), [batch, 1]) as tf.Tensor2D;
    return tf.logSoftmax(this.logits(this.forward(tokens, positions).hidden));
  }

  #pick(logProbs: tf.Tensor3D, targets: tf.Tensor2D): tf.Tensor2D {
    // Pick each target's log-prob with a one-hot mask (gather's gradient needs UnsortedSegmentSum).
    return tf.sum(tf.mul(logProbs, tf.oneHot(targets, this.config.vocabSize)), -1) as tf.Tensor2D;
  }
}

function layerNorm(x: tf.Tensor, gain: tf.Tensor, bias: tf.Tensor): tf.Tensor {
  const { mean, variance } = tf.moments(x, -1, true);
  return tf.add(tf.mul(tf.div(tf.sub(x, mean), tf.sqrt(tf.add(variance, 1e-5))), gain), bias);
}

/**
 * layerNorm of rows x [n, d] with its gradient written out: 9 kernels forward and 11 backward,
 * where tfjs's differentiation of the formula above makes about three times as many calls
 * (broadcast reductions, casts and copies).
 *   x̂ = (x − mean)·r, r = 1/√(var + 1e-5);  dx = r·(g − mean(g) − x̂·mean(g·x̂)), g = dy·gain
 */
const fastLayerNorm = tf.customGrad(((x: tf.Tensor, gain: tf.Tensor, bias: tf.Tensor, save: tf.GradSaveFunc) => {
  const centered = tf.sub(x, tf.mean(x, -1, true));
  const r = tf.rsqrt(tf.add(tf.mean(tf.square(centered), -1, true), 1e-5));
  const normed = tf.mul(centered, r);
  save([normed, r, gain]);
  return {
    value: tf.add(tf.mul(normed, gain), bias),
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) =>
      tf.tidy(() => {
        const [x̂, sr, sg] = saved as [tf.Tensor, tf.Tensor, tf.Tensor];
        const g = tf.mul(dy, sg);
        const dx = tf.mul(sr, tf.sub(tf.sub(g, tf.mean(g, -1, true)), tf.mul(x̂, tf.mean(tf.mul(g, x̂), -1, true))));
        return [dx, tf.sum(tf.mul(dy, x̂), 0), tf.sum(dy, 0)];
      }),
  };
}) as unknown as Parameters<typeof tf.customGrad>[0]) as (x: tf.Tensor, gain: tf.Tensor, bias: tf.Tensor) => tf.Tensor;

const GELU_LINEAR = 2 * Math.sqrt(2 / Math.PI);
const GELU_CUBIC = GELU_LINEAR * 0.044715;

/**
 * GELU, tanh approximation (as in GPT-2): 0.5·x·(1 + tanh(u)), u = √(2/π)·(x + 0.044715·x³),
 * written as x·σ(2u), the same function (1 + tanh(u) = 2σ(2u)) in fewer ops; wasm's sigmoid is
 * vectorised (XNNPACK) where its tanh is a scalar loop 16x slower.
 */
function gelu(x: tf.Tensor): tf.Tensor {
  return tf.mul(x, tf.sigmoid(tf.mul(x, tf.add(GELU_LINEAR, tf.mul(GELU_CUBIC, tf.square(x))))));
}
