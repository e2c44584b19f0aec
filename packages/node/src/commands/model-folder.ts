/**
 * A Hugging Face model folder as `export` and `eval` open it: the base, with the LoRA adapters of a
 * node's checkpoint when one is given (their rank, alpha, targets and context length are the
 * checkpoint's), planned against the memory of the backend in use.
 */
import {
  availableMemory,
  type BackendInfo,
  CheckpointError,
  loadCheckpoint,
  openPretrainedLearner,
  type PretrainedPolicy,
  type SapoLearner,
  weightCopiesOn,
} from '@swarm-node/sapo';

export async function openModelFolderLearner(
  model: string,
  checkpoint: string | null,
  backend: BackendInfo,
): Promise<{ learner: SapoLearner; policy: PretrainedPolicy }> {
  const memory = { memory: availableMemory(backend.name), weightCopies: weightCopiesOn(backend.tfBackend) };
  if (checkpoint === null) {
    const { learner } = await openPretrainedLearner(model, memory);
    return { learner, policy: learner.policy as PretrainedPolicy };
  }
  // The adapters' settings are the checkpoint's: read them before building the model they fit.
  const saved = await loadCheckpoint(checkpoint);
  for (const tensor of [...saved.weights.values(), ...saved.optimizer.values()]) tensor.dispose();
  const { lora, contextLength } = saved.config as { lora?: PretrainedPolicy['lora']; contextLength?: number };
  if (saved.config.kind !== 'lora' || lora === undefined) {
    throw new CheckpointError(
      'CHECKPOINT_MISMATCH',
      checkpoint,
      `${checkpoint} holds the embedded model, not LoRA adapters of a model folder (its node ran without --model)`,
    );
  }
  const { learner } = await openPretrainedLearner(model, {
    ...memory,
    resume: checkpoint,
    lora,
    ...(contextLength === undefined ? {} : { contextLength }),
  });
  return { learner, policy: learner.policy as PretrainedPolicy };
}
