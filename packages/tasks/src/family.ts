import { extractAnswer } from './answer.js';
import {
  InvalidCompletionError,
  InvalidDifficultyError,
  InvalidSeedError,
  InvalidTaskError,
  MAX_SEED,
} from './errors.js';
import { Rng } from './rng.js';

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

/** What travels between peers: enough to regenerate the task bit for bit. */
export interface TaskSpec {
  family: string;
  /** Unsigned 32-bit integer. */
  seed: number;
  difficulty: number;
  /** Must equal the family's `version`; it changes whenever a seed's output would change. */
  generatorVersion: number;
}

/** A task as a node sees it after regenerating it from its spec. */
export interface Task extends TaskSpec {
  prompt: string;
  /** The reference answer, in the family's canonical form. */
  answer: string;
  metadata: { [key: string]: JsonValue };
}

export interface DifficultyRange {
  min: number;
  max: number;
}

/**
 * What a family author writes: one entry of `levels` per difficulty (difficulty d uses
 * `levels[d - 1]`, so the range is 1 to levels.length), a generator from a seeded Rng and a
 * checker of an extracted answer.
 */
export interface FamilyDefinition<Level> {
  name: string;
  /** One line, shown by `swarm-node tasks list`. */
  description: string;
  version: number;
  levels: readonly Level[];
  /** Builds the task. Draws every random choice from `rng`; never uses Math.random or the clock. */
  build(rng: Rng, level: Level): { prompt: string; answer: string; metadata?: Task['metadata'] };
  /** True when `answer` (already extracted and trimmed, at most MAX_ANSWER_LENGTH chars) is right. Must not throw. */
  check(answer: string, task: Task): boolean;
}

export interface TaskFamily {
  readonly name: string;
  readonly description: string;
  readonly version: number;
  readonly difficulty: Readonly<DifficultyRange>;
  /** Regenerates the task for a seed and difficulty; identical on every machine. */
  generate(seed: number, difficulty: number): Task;
  /** Reward in [0, 1] for a completion (free text); 0 for anything that is not a right answer. */
  score(task: Task, completion: string): number;
}

/** Wraps a family definition with the validation and the answer-extraction convention every family shares. */
export function defineFamily<Level>(definition: FamilyDefinition<Level>): TaskFamily {
  const { name, description, version, levels } = definition;
  const difficulty = { min: 1, max: levels.length };
  return Object.freeze({
    name,
    description,
    version,
    difficulty: Object.freeze({ ...difficulty }),
    generate(seed: number, level: number): Task {
      if (!Number.isInteger(seed) || seed < 0 || seed > MAX_SEED) throw new InvalidSeedError(seed);
      if (!Number.isInteger(level) || level < difficulty.min || level > difficulty.max) {
        throw new InvalidDifficultyError(name, level, difficulty.min, difficulty.max);
      }
      const built = definition.build(new Rng(seed), levels[level - 1] as Level);
      return {
        family: name,
        seed,
        difficulty: level,
        generatorVersion: version,
        prompt: built.prompt,
        answer: built.answer,
        metadata: built.metadata ?? {},
      };
    },
    score(task: Task, completion: string): number {
      if (typeof completion !== 'string') throw new InvalidCompletionError(completion);
      if (task.family !== name) {
        throw new InvalidTaskError(`family ${name} cannot score a task of family ${String(task.family)}`);
      }
      const answer = extractAnswer(completion);
      return answer !== null && definition.check(answer, task) ? 1 : 0;
    },
  });
}
