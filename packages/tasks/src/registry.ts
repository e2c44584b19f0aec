import { GeneratorVersionError, UnknownFamilyError } from './errors.js';
import { arc1d } from './families/arc-1d.js';
import { arithmetic } from './families/arithmetic.js';
import { baseConversion } from './families/base-conversion.js';
import { bfTrace } from './families/bf-trace.js';
import { binaryMatrix } from './families/binary-matrix.js';
import { calendarArithmetic } from './families/calendar-arithmetic.js';
import { count } from './families/count.js';
import { decimalArithmetic } from './families/decimal-arithmetic.js';
import { fractionSimplification } from './families/fraction-simplification.js';
import { propositionalLogic } from './families/propositional-logic.js';
import { reverse } from './families/reverse.js';
import { sort } from './families/sort.js';
import type { Task, TaskFamily, TaskSpec } from './family.js';

/** Every built-in family: first the warm-ups a small model learns early, then ReasoningGYM's nine. */
export const FAMILIES: readonly TaskFamily[] = Object.freeze([
  reverse,
  sort,
  count,
  arithmetic,
  baseConversion,
  decimalArithmetic,
  fractionSimplification,
  propositionalLogic,
  binaryMatrix,
  calendarArithmetic,
  arc1d,
  bfTrace,
]);

const BY_NAME: ReadonlyMap<string, TaskFamily> = new Map(FAMILIES.map((family) => [family.name, family]));

export const familyNames = (): string[] => FAMILIES.map((family) => family.name);

/** The family called `name`; throws UnknownFamilyError naming the valid ones. */
export function getFamily(name: string): TaskFamily {
  const family = BY_NAME.get(name);
  if (family === undefined) throw new UnknownFamilyError(name, familyNames());
  return family;
}

export interface FamilyInfo {
  name: string;
  description: string;
  version: number;
  difficulty: { min: number; max: number };
}

/** What `swarm-node tasks list` shows: name, one-line description, generator version, difficulty range. */
export function listFamilies(): FamilyInfo[] {
  return FAMILIES.map(({ name, description, version, difficulty }) => ({
    name,
    description,
    version,
    difficulty: { ...difficulty },
  }));
}

/**
 * Regenerates a task from the spec a peer sent. Throws a TaskError when the family is unknown,
 * the generator version is not ours, or the seed or difficulty is out of range.
 */
export function generateTask(spec: TaskSpec): Task {
  const family = getFamily(spec.family);
  if (spec.generatorVersion !== family.version) {
    throw new GeneratorVersionError(family.name, spec.generatorVersion, family.version);
  }
  return family.generate(spec.seed, spec.difficulty);
}

/** Reward in [0, 1] of a completion for a task, by the task's own family. */
export function scoreCompletion(task: Task, completion: string): number {
  return getFamily(task.family).score(task, completion);
}
