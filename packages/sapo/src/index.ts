/**
 * @swarm-node/sapo: the learner. The embedded byte-level policy and pre-trained Llama/Qwen2 models
 * with LoRA on tfjs (wasm, WebGPU, TensorFlow), batched sampling with a KV cache, the SAPO update
 * on a mix of local and peers' rollouts, a memory plan and checkpoints. No network, no tasks: it
 * learns from text and rewards.
 */
export {
  BACKEND_NAMES,
  type BackendInfo,
  type BackendName,
  BackendUnavailableError,
  describeBackend,
  parseBackendName,
  type SelectBackendOptions,
  selectBackend,
  UnknownBackendError,
} from './backend.js';
export {
  type Checkpoint,
  type CheckpointExpectation,
  decodeCheckpoint,
  encodeCheckpoint,
  latestCheckpoint,
  loadCheckpoint,
  removeUnfinishedSaves,
  saveCheckpoint,
} from './checkpoint.js';
export { CheckpointError, SapoError } from './errors.js';
export { type Architecture, ModelFolderError, type PretrainedConfig, parseConfig } from './hf/config.js';
export { writeAdapterFolder, writeMergedFolder } from './hf/export.js';
export {
  expectedTensors,
  type GenerationConfig,
  type JsonFile,
  type ModelFolder,
  type ModelFolderContents,
  openModelFolder,
  type TokenizerFiles,
  writeModelFolder,
} from './hf/folder.js';
export {
  SafetensorsReader,
  type TensorData,
  type TensorEntry,
  type TensorInfo,
  WEIGHT_DTYPES,
  type WeightDtype,
  writeSafetensors,
} from './hf/safetensors.js';
export { HfTokenizer, HfTokenizerError, type HfTokenizerFiles } from './hf/tokenizer.js';
export {
  type Learner,
  type LearnerInfo,
  type LearnerMemory,
  type LearnerSpec,
  openLearner,
  startLearnerWorker,
} from './learner.js';
export { LearnerCrashedError } from './learner-protocol.js';
export {
  availableMemory,
  embeddedShape,
  type MemoryLimit,
  type MemoryPlan,
  MemoryPlanError,
  type ModelShape,
  planMemory,
  pretrainedShape,
  type RunShape,
  requireMemoryPlan,
  WASM_HEAP_LIMIT,
  weightCopiesOn,
} from './memory-plan.js';
export {
  defaultGraph,
  type GraphKind,
  type KVCache,
  Policy,
  type PolicyConfig,
  parameterShapes,
  REFERENCE_CONFIG,
  validateConfig,
} from './model.js';
export {
  type BaseWeights,
  type CausalLM,
  DEFAULT_LORA,
  type KeepPackedWeights,
  LORA_TARGETS,
  type LoraSettings,
  type LoraTarget,
  type PretrainedOptions,
  PretrainedPolicy,
  projectionShapes,
} from './pretrained.js';
export { type Completion, generate, generateText, type SampleOptions, type TextCompletion } from './sample.js';
export {
  type Batch,
  buildBatch,
  clipByGlobalNorm,
  DEFAULT_SAPO_OPTIONS,
  groupAdvantages,
  groupProblem,
  hasSignal,
  type RolloutGroup,
  ratioSums,
  SapoLearner,
  type SapoOptions,
  type SelectionCounts,
  type StepReport,
  type StepStats,
  sapoLoss,
  selectGroups,
} from './sapo.js';
export {
  adapterConfig,
  EMBEDDED_CONFIG,
  EMBEDDED_MODEL_PATH,
  learnerCheckpoint,
  openLearnerCheckpoint,
  openPretrainedLearner,
  type PretrainedLearnerOptions,
  restoreLearner,
} from './state.js';
export { ByteTokenizer, type Tokenizer, TokenizerError } from './tokenizer.js';
export { describeAdapter, type WebGpuAdapter } from './webgpu.js';
