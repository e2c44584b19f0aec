/**
 * Typed errors of the task library. Each carries a stable `code` for programs and a message
 * that tells a person what the valid choices are.
 */
export class TaskError extends Error {
  readonly code: string;

  constructor(code: string, message: string) {
    super(message);
    this.name = new.target.name;
    this.code = code;
  }
}

export class UnknownFamilyError extends TaskError {
  readonly family: string;
  readonly validFamilies: readonly string[];

  constructor(family: string, validFamilies: readonly string[]) {
    super(
      'UNKNOWN_FAMILY',
      `unknown task family ${JSON.stringify(family)}; valid families: ${validFamilies.join(', ')}`,
    );
    this.family = family;
    this.validFamilies = validFamilies;
  }
}

export class InvalidDifficultyError extends TaskError {
  readonly difficulty: unknown;
  readonly min: number;
  readonly max: number;

  constructor(family: string, difficulty: unknown, min: number, max: number) {
    super(
      'INVALID_DIFFICULTY',
      `difficulty ${String(difficulty)} is not valid for family ${family}; use an integer from ${min} to ${max}`,
    );
    this.difficulty = difficulty;
    this.min = min;
    this.max = max;
  }
}

export class InvalidSeedError extends TaskError {
  readonly seed: unknown;

  constructor(seed: unknown) {
    super(
      'INVALID_SEED',
      `seed ${String(seed)} is not valid; use an integer from 0 to ${MAX_SEED} (an unsigned 32-bit integer)`,
    );
    this.seed = seed;
  }
}

export class GeneratorVersionError extends TaskError {
  readonly requested: unknown;
  readonly supported: number;

  constructor(family: string, requested: unknown, supported: number) {
    super(
      'GENERATOR_VERSION_MISMATCH',
      `family ${family} generator version ${String(requested)} is not available here; this node generates version ${supported} (peers on other versions cannot share these tasks until they upgrade)`,
    );
    this.requested = requested;
    this.supported = supported;
  }
}

export class InvalidCompletionError extends TaskError {
  constructor(completion: unknown) {
    super(
      'INVALID_COMPLETION',
      `a completion must be a string, got ${completion === null ? 'null' : typeof completion}`,
    );
  }
}

export class InvalidTaskError extends TaskError {
  constructor(message: string) {
    super('INVALID_TASK', message);
  }
}

/** Seeds are unsigned 32-bit integers: the PRNG's whole seed space, and cheap to derive from a hash. */
export const MAX_SEED = 0xffff_ffff;
