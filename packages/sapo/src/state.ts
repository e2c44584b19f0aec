/**
 * A learner's whole state as a checkpoint, and back: the policy's weights, Adam's moments and
 * iteration count, the step count, the model config and the tokenizer id. Resuming from it gives
 * the same next update as never having stopped.
 */
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { type Checkpoint, loadCheckpoint } from './checkpoint.js';
import { CheckpointError } from './errors.js';
import { Policy, type PolicyConfig, parameterShapes } from './model.js';
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
    config: { ...learner.policy.config },
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
  } finally {
    // The policy and Adam copied what they keep into variables.
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
