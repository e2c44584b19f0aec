/**
 * @swarm-node/sapo: the learner. A byte-level policy transformer on tfjs, batched sampling with a
 * KV cache, and the SAPO update on a mix of local and peers' rollouts. No network, no tasks:
 * it learns from text and rewards.
 */
export {
  type GraphKind,
  type KVCache,
  Policy,
  type PolicyConfig,
  parameterShapes,
  REFERENCE_CONFIG,
  validateConfig,
} from './model.js';
export { type Completion, generate, type SampleOptions } from './sample.js';
export {
  type Batch,
  buildBatch,
  DEFAULT_SAPO_OPTIONS,
  groupAdvantages,
  groupProblem,
  hasSignal,
  type RolloutGroup,
  SapoLearner,
  type SapoOptions,
  type SelectionCounts,
  type StepReport,
  sapoLoss,
  selectGroups,
} from './sapo.js';
export { ByteTokenizer, type Tokenizer, TokenizerError } from './tokenizer.js';
