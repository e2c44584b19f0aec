/**
 * A Hugging Face causal language model's `config.json`, normalised: the fields the pre-trained
 * policy (`pretrained.ts`) needs, for the two architectures supported, `LlamaForCausalLM` (Llama,
 * SmolLM/SmolLM2) and `Qwen2ForCausalLM` (Qwen2, Qwen2.5).
 */
export type Architecture = 'llama' | 'qwen2';

export interface PretrainedConfig {
  /** `model_type`. */
  architecture: Architecture;
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  layers: number;
  heads: number;
  /** Key/value heads (grouped-query attention); equals `heads` for plain multi-head attention. */
  kvHeads: number;
  /** `head_dim`, or hiddenSize / heads. */
  headDim: number;
  ropeTheta: number;
  rmsNormEps: number;
  /** Whether the output head reuses the token embedding (`tie_word_embeddings`). */
  tieWordEmbeddings: boolean;
  /** Biases on the q, k and v projections: Qwen2 has them, Llama only with `attention_bias`. */
  attentionBias: boolean;
  /** `max_position_embeddings`: the longest sequence the model was trained for. */
  maxPositions: number;
}
