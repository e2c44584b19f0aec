import { sameInteger } from '../answer.js';
import { defineFamily } from '../family.js';

// Per difficulty: string length and alphabet size (fewer letters, more repeats of the target).
const LEVELS = [
  { length: 5, letters: 'ab' },
  { length: 8, letters: 'abc' },
  { length: 12, letters: 'abcd' },
  { length: 18, letters: 'abcdef' },
  { length: 26, letters: 'abcdefgh' },
] as const;

export const count = defineFamily({
  name: 'count',
  description: 'Count how often a letter occurs in a string; answer is an integer.',
  version: 1,
  levels: LEVELS,
  build(rng, { length, letters }) {
    const word = Array.from({ length }, () => rng.pick([...letters])).join('');
    const target = rng.pick([...letters]);
    return {
      prompt: `Count ${target} in ${word}`,
      answer: String([...word].filter((letter) => letter === target).length),
      metadata: {},
    };
  },
  check: (answer, task) => sameInteger(answer, task.answer),
});
