/**
 * @swarm-node/tasks: verifiable task families. A task travels as a TaskSpec
 * `{family, seed, difficulty, generatorVersion}` and every peer regenerates its prompt and
 * reference answer bit for bit, so a claimed reward can always be re-checked.
 */
export { extractAnswer, MAX_ANSWER_LENGTH } from './answer.js';
export {
  GeneratorVersionError,
  InvalidCompletionError,
  InvalidDifficultyError,
  InvalidSeedError,
  InvalidTaskError,
  MAX_SEED,
  TaskError,
  UnknownFamilyError,
} from './errors.js';
export type { DifficultyRange, FamilyDefinition, JsonValue, Task, TaskFamily, TaskSpec } from './family.js';
export { defineFamily } from './family.js';
export type { FamilyInfo } from './registry.js';
export { FAMILIES, familyNames, generateTask, getFamily, listFamilies, scoreCompletion } from './registry.js';
export { Rng } from './rng.js';
