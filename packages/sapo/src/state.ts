/**
 * A learner's whole state as a checkpoint, and back: the trainable weights (the embedded model's
 * every weight, a pre-trained model's LoRA adapters), Adam's moments and iteration count, the step
 * count, the model config and the tokenizer id. Resuming from it gives the same next update as
 * never having stopped. An adapter checkpoint records its base model's identity and resumes on
 * that base only.
 */
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { type Checkpoint, loadCheckpoint } from './checkpoint.js';
import { CheckpointError } from './errors.js';
import { ModelFolderError } from './hf/config.js';
import { openModelFolder } from './hf/folder.js';
import { HfTokenizer } from './hf/tokenizer.js';
import { type MemoryLimit, type MemoryPlan, pretrainedShape, requireMemoryPlan } from './memory-plan.js';
import { Policy, type PolicyConfig, parameterShapes } from './model.js';
import { type CausalLM, DEFAULT_LORA, type LoraSettings, PretrainedPolicy } from './pretrained.js';
import { SapoLearner, type SapoOptions } from './sapo.js';
import type { Tokenizer } from './tokenizer.js';

const ITERATIONS = 'adam/iterations';

/** The shipped base model (docs/MODEL.md), made by `npm run pretrain`. */
export const EMBEDDED_MODEL_PATH = fileURLToPath(new URL('../models/base.safetensors', import.meta.url));

/** Its architecture: contexts up to 160 bytes fit every built-in task's prompt and answer. */
export const EMBEDDED_CONFIG: Readonly<PolicyConfig> = Object.freeze({
  vocabSize: 259,
  contextLength: 160,
  layers: 2,
  dModel: 128,
  heads: 4,
  mlpRatio: 4,
});

/**
 * The learner's state. Tensors are the live ones (weights, Adam's moments) plus one new scalar
 * for the iteration count: encode or save it, then call `release` on the result.
 */
export async function learnerCheckpoint(
  learner: SapoLearner,
  metadata: Record<string, string> = {},
  config: Record<string, unknown> = { ...learner.policy.config },
): Promise<Checkpoint & { release(): void }> {
  const names = [...learner.policy.params.keys()];
  const [iterations, ...moments] = await learner.optimizer.getWeights();
  const optimizer = new Map<string, tf.Tensor>();
  // Adam makes its moments on its first update; before that there is no state worth saving.
  if (iterations !== undefined && moments.length > 0) optimizer.set(ITERATIONS, iterations.tensor);
  // Adam keeps its moments in the order gradients were applied: ours is the parameter order.
  const perMoment = moments.length / 2;
  moments.forEach(({ tensor }, i) => {
    optimizer.set(`adam/${i < perMoment ? 'm' : 'v'}/${names[i % perMoment]}`, tensor);
  });
  return {
    step: learner.steps,
    config,
    tokenizer: learner.tokenizer.id,
    weights: new Map(learner.policy.params),
    optimizer,
    metadata,
    release: () => iterations?.tensor.dispose(),
  };
}

/**
 * A learner resumed from a checkpoint file. The file must match the tokenizer (and, when given,
 * the config); a missing, truncated or mismatched file throws a CheckpointError, never a fresh model.
 */
export async function restoreLearner(
  file: string,
  tokenizer: Tokenizer,
  options: Partial<SapoOptions> = {},
  expectConfig?: PolicyConfig,
): Promise<SapoLearner> {
  return (await openLearnerCheckpoint(file, tokenizer, options, expectConfig)).learner;
}

/** restoreLearner, and the checkpoint's metadata (e.g. the round it was saved at), from one read of the file. */
export async function openLearnerCheckpoint(
  file: string,
  tokenizer: Tokenizer,
  options: Partial<SapoOptions> = {},
  expectConfig?: PolicyConfig,
): Promise<{ learner: SapoLearner; metadata: Record<string, string> }> {
  const checkpoint = await loadCheckpoint(file, {
    tokenizer: tokenizer.id,
    ...(expectConfig === undefined ? {} : { config: { ...expectConfig }, shapes: parameterShapes(expectConfig) }),
  });
  try {
    const config = checkpoint.config as unknown as PolicyConfig;
    let policy: Policy;
    try {
      policy = new Policy(config, checkpoint.weights);
    } catch (error) {
      throw new CheckpointError(
        'CHECKPOINT_MISMATCH',
        file,
        `${file} does not hold a policy model: ${(error as Error).message}`,
      );
    }
    return await resume(policy, tokenizer, options, checkpoint, file);
  } finally {
    // The policy and Adam copied what they keep into variables.
    tf.dispose([...checkpoint.weights.values(), ...checkpoint.optimizer.values()]);
  }
}

/** A learner on `policy` at the checkpoint's step, with its Adam state; disposes the policy if that fails. */
async function resume(
  policy: CausalLM,
  tokenizer: Tokenizer,
  options: Partial<SapoOptions>,
  checkpoint: Checkpoint,
  file: string,
): Promise<{ learner: SapoLearner; metadata: Record<string, string> }> {
  let learner: SapoLearner;
  try {
    learner = new SapoLearner(policy, tokenizer, options, checkpoint.step);
  } catch (error) {
    policy.dispose();
    throw error;
  }
  if (checkpoint.optimizer.has(ITERATIONS)) {
    await restoreAdam(learner, checkpoint, file).catch((error: unknown) => {
      learner.dispose();
      policy.dispose();
      throw error;
    });
  }
  return { learner, metadata: { ...checkpoint.metadata } };
}

export interface PretrainedLearnerOptions {
  /** An adapter checkpoint of this base to resume from; without one, fresh adapters (B = 0). */
  resume?: string;
  lora?: Partial<LoraSettings>;
  /** Longest prompt + completion in tokens. Default 384, at most the model's max_position_embeddings. */
  contextLength?: number;
  sapo?: Partial<SapoOptions>;
  /** Rows sampled at once, before the memory plan lowers it. Default 8. */
  sampleRows?: number;
  /** The memory the plan must fit (availableMemory for the backend). */
  memory: MemoryLimit;
  /** Copies of the weights the backend holds (weightCopiesOn). Default 1. */
  weightCopies?: number;
}

/** The adapter checkpoint's config: the base's identity and the adapters' settings, all of which a resume must match. */
export function adapterConfig(identity: string, policy: PretrainedPolicy): Record<string, unknown> {
  const { rank, alpha, targets } = policy.lora;
  return {
    kind: 'lora',
    base: identity,
    architecture: policy.config.architecture,
    contextLength: policy.config.contextLength,
    lora: { rank, alpha, targets: [...targets] },
  };
}

/**
 * A learner on a Hugging Face model folder: checked (config, weights, tokenizer), planned against
 * the memory there is (refusing before loading what would not fit), loaded tensor by tensor, with
 * LoRA adapters — fresh, or resumed from an adapter checkpoint of the same base.
 */
export async function openPretrainedLearner(
  dir: string,
  options: PretrainedLearnerOptions,
): Promise<{
  learner: SapoLearner;
  metadata: Record<string, string>;
  plan: MemoryPlan;
  checkpointConfig: Record<string, unknown>;
}> {
  const folder = await openModelFolder(dir);
  let policy: PretrainedPolicy;
  let tokenizer: HfTokenizer;
  let plan: MemoryPlan;
  try {
    const { config } = folder;
    tokenizer = await HfTokenizer.fromFolder(dir);
    if (tokenizer.vocabSize > config.vocabSize) {
      throw new ModelFolderError(
        folder.tokenizerFiles.tokenizerJson?.path ?? dir,
        `the tokenizer has ${tokenizer.vocabSize} ids but the model only ${config.vocabSize} embeddings: they are not one model's; download the model again`,
      );
    }
    const contextLength = Math.min(options.contextLength ?? 384, config.maxPositions);
    const lora = { ...DEFAULT_LORA, ...options.lora };
    const sapo = options.sapo ?? {};
    plan = requireMemoryPlan(
      pretrainedShape(config, lora),
      {
        contextLength,
        sampleRows: options.sampleRows ?? 8,
        microBatchRows: sapo.microBatchRows ?? 4,
        reference: (sapo.beta ?? 0) > 0,
        weightCopies: options.weightCopies ?? 1,
      },
      options.memory,
    );
    policy = await PretrainedPolicy.load(config, (name) => folder.readTensor(name), {
      contextLength,
      lora: { ...lora, seed: sapo.seed ?? 0 },
      keepPackedWeights: plan.keepPackedWeights,
    });
  } finally {
    await folder.close();
  }
  const checkpointConfig = adapterConfig(folder.identity, policy);
  const sapo = { ...options.sapo, microBatchRows: plan.microBatchRows };
  if (options.resume === undefined) {
    try {
      return { learner: new SapoLearner(policy, tokenizer, sapo), metadata: {}, plan, checkpointConfig };
    } catch (error) {
      policy.dispose();
      throw error;
    }
  }
  const file = options.resume;
  let checkpoint: Checkpoint;
  try {
    checkpoint = await loadCheckpoint(file, {
      tokenizer: tokenizer.id,
      config: checkpointConfig,
      shapes: policy.adapterShapes(),
    });
  } catch (error) {
    policy.dispose();
    throw error;
  }
  try {
    for (const [name, variable] of policy.params) variable.assign(checkpoint.weights.get(name) as tf.Tensor);
    return { ...(await resume(policy, tokenizer, sapo, checkpoint, file)), plan, checkpointConfig };
  } finally {
    tf.dispose([...checkpoint.weights.values(), ...checkpoint.optimizer.values()]);
  }
}

async function restoreAdam(learner: SapoLearner, checkpoint: Checkpoint, file: string): Promise<void> {
  const { policy } = learner;
  const names = [...policy.params.keys()];
  const moment = (kind: 'm' | 'v') =>
    names.map((name) => {
      const tensor = checkpoint.optimizer.get(`adam/${kind}/${name}`);
      if (tensor === undefined) {
        throw new CheckpointError('CHECKPOINT_CORRUPT', file, `${file} has Adam state but no ${kind} for ${name}`);
      }
      return { name: `${(policy.params.get(name) as tf.Variable).name}/${kind}`, tensor };
    });
  const iterations = checkpoint.optimizer.get(ITERATIONS) as tf.Tensor;
  await learner.optimizer.setWeights([{ name: 'iter', tensor: iterations }, ...moment('m'), ...moment('v')]);
}
