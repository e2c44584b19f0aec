import { defineFamily } from '../family.js';

const LENGTHS = [3, 5, 8, 12, 16] as const;
const LETTERS = 'abcdefghijklmnopqrstuvwxyz';

export const reverse = defineFamily({
  name: 'reverse',
  description: 'Reverse a string of lowercase letters; exact match.',
  version: 1,
  levels: LENGTHS,
  build(rng, length) {
    const word = Array.from({ length }, () => rng.pick([...LETTERS])).join('');
    return { prompt: `Reverse: ${word}`, answer: [...word].reverse().join(''), metadata: {} };
  },
  check: (answer, task) => answer === task.answer,
});
