import { defineFamily } from '../family.js';

// Per difficulty: the (from, to) base pairs to choose among and the largest value.
const LEVELS: readonly { pairs: readonly (readonly [number, number])[]; max: number }[] = [
  { pairs: [[10, 2]], max: 15 },
  {
    pairs: [
      [2, 10],
      [10, 2],
    ],
    max: 255,
  },
  {
    pairs: [
      [10, 16],
      [16, 10],
      [2, 16],
      [16, 2],
    ],
    max: 4095,
  },
  {
    pairs: [
      [10, 8],
      [8, 10],
      [2, 8],
      [8, 16],
      [16, 8],
      [10, 16],
      [16, 10],
    ],
    max: 65535,
  },
  { pairs: [], max: 1048575 }, // any two different bases from 2 to 16
];

const PREFIX: Readonly<Record<number, string>> = { 2: '0b', 8: '0o', 16: '0x' };

export const baseConversion = defineFamily({
  name: 'base_conversion',
  description: 'Convert a non-negative integer between bases 2 to 16; digits above 9 are letters a-f.',
  version: 1,
  levels: LEVELS,
  build(rng, level) {
    let from: number;
    let to: number;
    if (level.pairs.length > 0) {
      [from, to] = rng.pick(level.pairs);
    } else {
      from = rng.int(2, 16);
      to = rng.int(2, 15);
      if (to >= from) to += 1; // uniform over the bases other than `from`
    }
    const value = rng.int(0, level.max);
    return {
      prompt: `Convert ${value.toString(from)} from base ${from} to base ${to}`,
      answer: value.toString(to),
      metadata: { value, from, to },
    };
  },
  check(answer, task) {
    const to = task.metadata.to as number;
    const value = parseInBase(answer, to);
    return value !== null && value === BigInt(task.metadata.value as number);
  },
});

/**
 * Digits of `base`, either case, leading zeros allowed, optionally with the usual prefix for
 * bases 2, 8 and 16 (`0b101`, `0o17`, `0xff`).
 */
function parseInBase(text: string, base: number): bigint | null {
  let digits = text.toLowerCase();
  const prefix = PREFIX[base];
  if (prefix !== undefined && digits.startsWith(prefix)) digits = digits.slice(prefix.length);
  if (digits.length === 0 || digits.length > 64) return null;
  let value = 0n;
  for (const char of digits) {
    const digit = Number.parseInt(char, 36);
    if (Number.isNaN(digit) || digit >= base) return null;
    value = value * BigInt(base) + BigInt(digit);
  }
  return value;
}
