import { sameIntegerList } from '../answer.js';
import { defineFamily } from '../family.js';

// Per difficulty: how many numbers, and their range.
const LEVELS = [
  { count: 3, min: 0, max: 9 },
  { count: 4, min: 0, max: 99 },
  { count: 6, min: 0, max: 99 },
  { count: 8, min: -99, max: 99 },
  { count: 10, min: -999, max: 999 },
] as const;

export const sort = defineFamily({
  name: 'sort',
  description: 'Sort integers in ascending order; separate them by spaces or commas.',
  version: 1,
  levels: LEVELS,
  build(rng, { count, min, max }) {
    const numbers = Array.from({ length: count }, () => rng.int(min, max));
    return {
      prompt: `Sort ascending: ${numbers.join(' ')}`,
      answer: [...numbers].sort((a, b) => a - b).join(' '),
      metadata: {},
    };
  },
  check: (answer, task) => sameIntegerList(answer, task.answer),
});
