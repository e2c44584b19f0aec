import { describe, expect, it } from 'vitest';
import {
  GeneratorVersionError,
  generateTask,
  getFamily,
  InvalidCompletionError,
  InvalidDifficultyError,
  InvalidSeedError,
  InvalidTaskError,
  scoreCompletion,
  TaskError,
  UnknownFamilyError,
} from '../src/index.js';

describe('bad input gets a typed error that names the valid choices', () => {
  it('rejects an unknown family and lists the known ones', () => {
    const error = captureError(() => getFamily('quantum_chess'));
    expect(error).toBeInstanceOf(UnknownFamilyError);
    expect((error as TaskError).code).toBe('UNKNOWN_FAMILY');
    expect(error.message).toContain('quantum_chess');
    expect(error.message).toContain('arithmetic');
    expect(error.message).toContain('bf_trace');
  });

  it.each([0, 6, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, '2' as unknown as number])(
    'rejects difficulty %s with the valid range',
    (difficulty) => {
      const error = captureError(() => getFamily('sort').generate(1, difficulty));
      expect(error).toBeInstanceOf(InvalidDifficultyError);
      expect(error.message).toContain('from 1 to 5');
    },
  );

  it.each([-1, 1.5, 2 ** 32, Number.NaN, Number.MAX_SAFE_INTEGER, '7' as unknown as number, null as unknown as number])(
    'rejects seed %s with the valid range',
    (seed) => {
      const error = captureError(() => getFamily('sort').generate(seed, 1));
      expect(error).toBeInstanceOf(InvalidSeedError);
      expect(error.message).toContain('4294967295');
    },
  );

  it('rejects a spec from another generator version, saying which one this node has', () => {
    const error = captureError(() => generateTask({ family: 'sort', seed: 1, difficulty: 1, generatorVersion: 99 }));
    expect(error).toBeInstanceOf(GeneratorVersionError);
    expect(error.message).toContain('version 1');
  });

  it.each([42, null, undefined, { text: 'x' }, ['1 2 3'], Buffer.from('1 2 3')])(
    'rejects completion %s that is not a string',
    (completion) => {
      const task = getFamily('sort').generate(1, 1);
      const error = captureError(() => scoreCompletion(task, completion as unknown as string));
      expect(error).toBeInstanceOf(InvalidCompletionError);
      expect(error).toBeInstanceOf(TaskError);
    },
  );

  it("refuses to score one family's task with another family's verifier", () => {
    const task = getFamily('sort').generate(1, 1);
    expect(() => getFamily('count').score(task, task.answer)).toThrow(InvalidTaskError);
  });
});

function captureError(action: () => unknown): Error {
  try {
    action();
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected an error');
}
