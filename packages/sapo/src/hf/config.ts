import { SapoError } from '../errors.js';

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
  /**
   * Attention biases: Qwen2 always has them on q, k and v; Llama has them on q, k, v and o_proj
   * when its config sets `attention_bias`.
   */
  attentionBias: boolean;
  /** `max_position_embeddings`: the longest sequence the model was trained for. */
  maxPositions: number;
}

/**
 * A model folder, or one of its files, that cannot be used as it is (code BAD_MODEL_FOLDER). `file`
 * is the path at fault; the message says what is wrong with it and what to do. Every problem is
 * found when the folder is opened, before any training starts.
 */
export class ModelFolderError extends SapoError {
  readonly file: string;

  constructor(file: string, message: string, options?: ErrorOptions) {
    super('BAD_MODEL_FOLDER', message, options);
    this.file = file;
  }
}

/** `model_type` → the `architectures` class transformers loads it with. */
export const CAUSAL_LM_CLASSES: Readonly<Record<Architecture, string>> = {
  llama: 'LlamaForCausalLM',
  qwen2: 'Qwen2ForCausalLM',
};

/** transformers' defaults for fields a config.json may leave out (LlamaConfig, Qwen2Config). */
const DEFAULTS = {
  llama: { maxPositions: 2048, rmsNormEps: 1e-6 },
  qwen2: { maxPositions: 32768, rmsNormEps: 1e-6 },
} as const;

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/**
 * The normalised config of a parsed `config.json`; `file` names it in errors. Refuses, rather than
 * approximates, anything the pre-trained policy does not compute exactly as transformers does
 * (rope scaling, sliding-window attention, other activations, biases on o_proj or the MLP), since
 * a model that loads but computes something else fails much later and much less clearly.
 */
export function parseConfig(json: unknown, file: string): PretrainedConfig {
  const fail = (problem: string, todo = 'pass the folder of a Llama or Qwen2 causal language model') =>
    new ModelFolderError(file, `${file}: ${problem}; ${todo}`);
  if (!isRecord(json)) throw fail('is not a JSON object');

  const type = json.model_type;
  if (type !== 'llama' && type !== 'qwen2') {
    const supported = Object.entries(CAUSAL_LM_CLASSES).map(([t, c]) => `${t} (${c})`);
    throw fail(`model_type ${JSON.stringify(type)} is not supported; supported are ${supported.join(' and ')}`);
  }
  const architecture: Architecture = type;
  const { architectures } = json;
  if (
    architectures !== undefined &&
    !(Array.isArray(architectures) && architectures.includes(CAUSAL_LM_CLASSES[type]))
  ) {
    throw fail(`architectures is ${JSON.stringify(architectures)}, not ${CAUSAL_LM_CLASSES[type]}`);
  }

  const count = (key: string, fallback?: number): number => {
    const value = json[key] ?? fallback;
    if (!Number.isSafeInteger(value) || (value as number) < 1) {
      throw fail(`${key} is ${JSON.stringify(value)}, not a positive integer`, 'fix config.json');
    }
    return value as number;
  };
  const positive = (key: string, fallback: number): number => {
    const value = json[key] ?? fallback;
    if (typeof value !== 'number' || !(value > 0) || !Number.isFinite(value)) {
      throw fail(`${key} is ${JSON.stringify(value)}, not a positive number`, 'fix config.json');
    }
    return value;
  };
  const flag = (key: string, fallback: boolean): boolean => {
    const value = json[key] ?? fallback;
    if (typeof value !== 'boolean')
      throw fail(`${key} is ${JSON.stringify(value)}, not true or false`, 'fix config.json');
    return value;
  };
  const unsupported = (problem: string) =>
    fail(`${problem}, which this node does not implement`, 'pass a model without it');

  if (json.rope_scaling !== undefined && json.rope_scaling !== null) {
    throw unsupported(`rope_scaling is ${JSON.stringify(json.rope_scaling)}`);
  }
  const activation = json.hidden_act ?? 'silu';
  if (activation !== 'silu') throw unsupported(`hidden_act is ${JSON.stringify(activation)}, not silu`);
  if (architecture === 'qwen2' && flag('use_sliding_window', false)) throw unsupported('use_sliding_window is true');
  if (architecture === 'llama' && flag('mlp_bias', false)) throw unsupported('mlp_bias is true');

  const hiddenSize = count('hidden_size');
  const heads = count('num_attention_heads');
  const kvHeads = count('num_key_value_heads', heads);
  if (heads % kvHeads !== 0) {
    throw fail(`num_attention_heads ${heads} is not a multiple of num_key_value_heads ${kvHeads}`, 'fix config.json');
  }
  if (json.head_dim == null && hiddenSize % heads !== 0) {
    throw fail(`hidden_size ${hiddenSize} is not a multiple of num_attention_heads ${heads}`, 'set head_dim');
  }
  return {
    architecture,
    vocabSize: count('vocab_size'),
    hiddenSize,
    intermediateSize: count('intermediate_size'),
    layers: count('num_hidden_layers'),
    heads,
    kvHeads,
    headDim: count('head_dim', hiddenSize / heads),
    ropeTheta: positive('rope_theta', 10000),
    rmsNormEps: positive('rms_norm_eps', DEFAULTS[architecture].rmsNormEps),
    tieWordEmbeddings: flag('tie_word_embeddings', false),
    attentionBias: architecture === 'qwen2' || flag('attention_bias', false),
    maxPositions: count('max_position_embeddings', DEFAULTS[architecture].maxPositions),
  };
}
