/**
 * An independent forward pass of Hugging Face's LlamaForCausalLM and Qwen2ForCausalLM, in plain
 * JavaScript with Float64Array loops: no tfjs, nothing shared with src/pretrained.ts. It follows
 * the equations of transformers' modeling_llama.py and modeling_qwen2.py for one sequence at
 * positions 0..T−1, taking weights by their Hugging Face names in the file layout ([out, in]).
 *
 *   x = embed_tokens[ids]
 *   per layer:  x = x + o_proj(attention(rms_norm(x)))
 *               x = x + down_proj(silu(gate_proj(h)) * up_proj(h)),  h = rms_norm(x)
 *   logits = lm_head(rms_norm(x))        (lm_head = embed_tokens when the embeddings are tied)
 *
 * Slow on purpose: every sum is a loop, so the test's tolerance measures our model, not this.
 */
import type { PretrainedConfig } from '../../src/hf/config.js';

type Weights = ReadonlyMap<string, Float32Array | Float64Array>;

/** Every tensor of the model, by Hugging Face name, with its shape: what modeling_llama/qwen2 create. */
export function referenceShapes(config: PretrainedConfig): Map<string, number[]> {
  const { vocabSize: v, hiddenSize: d, intermediateSize: m, heads, kvHeads, headDim } = config;
  const shapes = new Map<string, number[]>([['model.embed_tokens.weight', [v, d]]]);
  // Qwen2: q, k and v have biases, o does not. Llama: all four follow attention_bias.
  const qkvBias = config.architecture === 'qwen2' || config.attentionBias;
  const oBias = config.architecture === 'llama' && config.attentionBias;
  for (let l = 0; l < config.layers; l++) {
    const p = `model.layers.${l}`;
    shapes.set(`${p}.self_attn.q_proj.weight`, [heads * headDim, d]);
    if (qkvBias) shapes.set(`${p}.self_attn.q_proj.bias`, [heads * headDim]);
    shapes.set(`${p}.self_attn.k_proj.weight`, [kvHeads * headDim, d]);
    if (qkvBias) shapes.set(`${p}.self_attn.k_proj.bias`, [kvHeads * headDim]);
    shapes.set(`${p}.self_attn.v_proj.weight`, [kvHeads * headDim, d]);
    if (qkvBias) shapes.set(`${p}.self_attn.v_proj.bias`, [kvHeads * headDim]);
    shapes.set(`${p}.self_attn.o_proj.weight`, [d, heads * headDim]);
    if (oBias) shapes.set(`${p}.self_attn.o_proj.bias`, [d]);
    shapes.set(`${p}.mlp.gate_proj.weight`, [m, d]);
    shapes.set(`${p}.mlp.up_proj.weight`, [m, d]);
    shapes.set(`${p}.mlp.down_proj.weight`, [d, m]);
    shapes.set(`${p}.input_layernorm.weight`, [d]);
    shapes.set(`${p}.post_attention_layernorm.weight`, [d]);
  }
  shapes.set('model.norm.weight', [d]);
  if (!config.tieWordEmbeddings) shapes.set('lm_head.weight', [v, d]);
  return shapes;
}

/** Logits [T][vocab] after each prefix of `ids`. */
export function referenceLogits(config: PretrainedConfig, weights: Weights, ids: readonly number[]): Float64Array[] {
  const get = (name: string) => {
    const w = weights.get(name);
    if (w === undefined) throw new Error(`reference: missing ${name}`);
    return w;
  };
  const { hiddenSize: d, heads, kvHeads, headDim, rmsNormEps: eps } = config;
  const embed = get('model.embed_tokens.weight');
  let x: Float64Array[] = ids.map((id) => Float64Array.from(embed.subarray(id * d, (id + 1) * d)));

  for (let l = 0; l < config.layers; l++) {
    const p = `model.layers.${l}`;
    const h = x.map((row) => rmsNorm(row, get(`${p}.input_layernorm.weight`), eps));
    const q = h.map((row) => linear(row, weights, `${p}.self_attn.q_proj`));
    const k = h.map((row) => linear(row, weights, `${p}.self_attn.k_proj`));
    const v = h.map((row) => linear(row, weights, `${p}.self_attn.v_proj`));
    // Rotary embeddings on every head of q and k, at each token's position.
    q.forEach((row, t) => {
      for (let head = 0; head < heads; head++) rotate(row, head * headDim, headDim, t, config.ropeTheta);
    });
    k.forEach((row, t) => {
      for (let head = 0; head < kvHeads; head++) rotate(row, head * headDim, headDim, t, config.ropeTheta);
    });
    const attended = q.map((qRow, t) => {
      const out = new Float64Array(heads * headDim);
      for (let head = 0; head < heads; head++) {
        // repeat_kv: query head `head` reads key/value head ⌊head / (heads / kvHeads)⌋.
        const kv = Math.floor(head / (heads / kvHeads)) * headDim;
        const scores = new Float64Array(t + 1); // causal: keys 0..t
        for (let s = 0; s <= t; s++) {
          let dot = 0;
          for (let i = 0; i < headDim; i++)
            dot += (qRow[head * headDim + i] as number) * ((k[s] as Float64Array)[kv + i] as number);
          scores[s] = dot / Math.sqrt(headDim);
        }
        const probs = softmax(scores);
        for (let s = 0; s <= t; s++) {
          for (let i = 0; i < headDim; i++) {
            out[head * headDim + i] =
              (out[head * headDim + i] as number) + (probs[s] as number) * ((v[s] as Float64Array)[kv + i] as number);
          }
        }
      }
      return out;
    });
    x = x.map((row, t) => add(row, linear(attended[t] as Float64Array, weights, `${p}.self_attn.o_proj`)));

    const h2 = x.map((row) => rmsNorm(row, get(`${p}.post_attention_layernorm.weight`), eps));
    x = x.map((row, t) => {
      const gate = linear(h2[t] as Float64Array, weights, `${p}.mlp.gate_proj`);
      const up = linear(h2[t] as Float64Array, weights, `${p}.mlp.up_proj`);
      const inner = gate.map((g, i) => (g / (1 + Math.exp(-g))) * (up[i] as number)); // silu(gate) * up
      return add(row, linear(inner, weights, `${p}.mlp.down_proj`));
    });
  }
  const head = config.tieWordEmbeddings ? 'model.embed_tokens' : 'lm_head';
  return x.map((row) => linear(rmsNorm(row, get('model.norm.weight'), eps), weights, head));
}

/** nn.Linear: y = x·Wᵀ + b, W [out, in] as stored; the bias only where the weights have one. */
function linear(x: Float64Array, weights: Weights, prefix: string): Float64Array {
  const w = weights.get(`${prefix}.weight`) as Float32Array | Float64Array;
  const bias = weights.get(`${prefix}.bias`);
  const inputs = x.length;
  const out = new Float64Array(w.length / inputs);
  for (let o = 0; o < out.length; o++) {
    let sum = bias === undefined ? 0 : (bias[o] as number);
    for (let i = 0; i < inputs; i++) sum += (w[o * inputs + i] as number) * (x[i] as number);
    out[o] = sum;
  }
  return out;
}

/** LlamaRMSNorm / Qwen2RMSNorm: weight · x / sqrt(mean(x²) + eps). */
function rmsNorm(x: Float64Array, weight: Float32Array | Float64Array, eps: number): Float64Array {
  let sum = 0;
  for (const value of x) sum += value * value;
  const scale = 1 / Math.sqrt(sum / x.length + eps);
  return x.map((value, i) => (weight[i] as number) * value * scale);
}

/**
 * apply_rotary_pos_emb on one head, in place: x·cos + rotate_half(x)·sin with
 * rotate_half(x) = (−x₂, x₁) for the halves x₁, x₂ of the head, and angle position·θ^(−2j/dim)
 * for j and j + dim/2 alike (cos and sin are cat(freqs, freqs)).
 */
function rotate(row: Float64Array, offset: number, dim: number, position: number, theta: number): void {
  const half = dim / 2;
  for (let j = 0; j < half; j++) {
    const angle = position * theta ** ((-2 * j) / dim);
    const [cos, sin] = [Math.cos(angle), Math.sin(angle)];
    const x1 = row[offset + j] as number;
    const x2 = row[offset + j + half] as number;
    row[offset + j] = x1 * cos - x2 * sin;
    row[offset + j + half] = x2 * cos + x1 * sin;
  }
}

function softmax(scores: Float64Array): Float64Array {
  const max = Math.max(...scores);
  const exps = scores.map((s) => Math.exp(s - max));
  const sum = exps.reduce((a, b) => a + b, 0);
  return exps.map((e) => e / sum);
}

function add(a: Float64Array, b: Float64Array): Float64Array {
  return a.map((value, i) => value + (b[i] as number));
}
