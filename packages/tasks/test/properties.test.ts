import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FAMILIES, MAX_SEED, type TaskFamily } from '../src/index.js';

// Every verifier sees hostile text from peers: it must return 0 or 1 for any string and never throw.
const RUNS_PER_FAMILY = 10_000;
const MEGABYTE = 1 << 20;

const anyText = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 300 }), // any code point
  fc.string({ unit: 'grapheme', maxLength: 100 }), // emoji, combining marks
  fc.string({ unit: fc.integer({ min: 0, max: 0xffff }).map((code) => String.fromCharCode(code)), maxLength: 100 }), // lone surrogates too
  fc.string({ unit: fc.constantFrom(...'0123456789-+./,; \n<>[]abcdefxTF'), maxLength: 60 }), // answer-shaped
);

/** Text built around the reference answer: tags, neighbours and noise on either side. */
const nearAnswer = (answer: string) =>
  fc
    .tuple(
      anyText,
      fc.constantFrom('', '<answer>', '</answer>', '\n', ' '),
      fc.constantFrom('', '</answer>', '<answer>', '\n', '0', '/'),
      anyText,
    )
    .map(([before, open, close, after]) => `${before}${open}${answer}${close}${after}`);

const nonAscii = fc.string({
  unit: fc.integer({ min: 0x80, max: 0x10ffff }).map((code) => String.fromCodePoint(code)),
  minLength: 1,
  maxLength: 80,
});

function taskArbitrary(family: TaskFamily) {
  return fc
    .record({
      seed: fc.integer({ min: 0, max: MAX_SEED }),
      difficulty: fc.integer({ min: family.difficulty.min, max: family.difficulty.max }),
    })
    .map(({ seed, difficulty }) => family.generate(seed, difficulty));
}

describe.each(FAMILIES.map((family) => [family.name, family] as const))('%s verifier', (_name, family) => {
  it(`returns 0 or 1 and never throws, over ${RUNS_PER_FAMILY} hostile completions`, () => {
    fc.assert(
      fc.property(
        taskArbitrary(family).chain((task) => fc.tuple(fc.constant(task), fc.oneof(anyText, nearAnswer(task.answer)))),
        ([task, completion]) => {
          const reward = family.score(task, completion);
          expect(reward === 0 || reward === 1).toBe(true);
        },
      ),
      { numRuns: RUNS_PER_FAMILY },
    );
  });

  it('gives 0 to text with no ASCII character in it', () => {
    fc.assert(
      fc.property(taskArbitrary(family), nonAscii, (task, completion) => family.score(task, completion) === 0),
      { numRuns: 1_000 },
    );
  });

  it('gives 0 to megabyte-sized garbage and still finds an answer after a megabyte of reasoning', () => {
    const task = family.generate(7, family.difficulty.max);
    const garbage = [
      'x'.repeat(MEGABYTE),
      '9'.repeat(MEGABYTE),
      'é😀\u0301\ud800'.repeat(MEGABYTE / 5),
      '<answer>'.repeat(MEGABYTE / 8),
      '</answer>'.repeat(MEGABYTE / 9),
      `<answer>${'1 '.repeat(MEGABYTE / 2)}</answer>`,
      '\n'.repeat(MEGABYTE),
      `${task.answer}\n${'z'.repeat(MEGABYTE)}`,
    ];
    for (const completion of garbage) expect(family.score(task, completion)).toBe(0);
    expect(family.score(task, `${'thinking '.repeat(MEGABYTE / 9)}\n<answer>${task.answer}</answer>`)).toBe(1);
    expect(family.score(task, `${'\n'.repeat(MEGABYTE)}${task.answer}`)).toBe(1);
  });
});
