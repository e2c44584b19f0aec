import { defineFamily } from '../family.js';

// Per difficulty: largest reduced denominator, largest common factor, whether the fraction may
// be improper (numerator above denominator) and whether it may be negative.
const LEVELS = [
  { denominator: 6, factor: 3, improper: false, negative: false },
  { denominator: 10, factor: 6, improper: false, negative: false },
  { denominator: 12, factor: 10, improper: true, negative: false },
  { denominator: 20, factor: 13, improper: true, negative: false },
  { denominator: 30, factor: 25, improper: true, negative: true },
] as const;

export const fractionSimplification = defineFamily({
  name: 'fraction_simplification',
  description: 'Reduce a fraction to lowest terms; the answer must be a fraction p/q (a decimal is not accepted).',
  version: 1,
  levels: LEVELS,
  build(rng, level) {
    const denominator = rng.int(2, level.denominator);
    let numerator: number;
    do {
      numerator = rng.int(1, level.improper ? 2 * level.denominator : denominator - 1);
    } while (gcd(BigInt(numerator), BigInt(denominator)) !== 1n);
    const factor = rng.int(2, level.factor);
    const sign = level.negative && rng.coin() ? '-' : '';
    return {
      prompt: `Simplify ${sign}${numerator * factor}/${denominator * factor}`,
      answer: `${sign}${numerator}/${denominator}`,
      metadata: { factor },
    };
  },
  check(answer, task) {
    const got = parseFraction(answer);
    const want = parseFraction(task.answer);
    if (got === null || want === null) return false;
    // Lowest terms is the task, so 6/8 for 3/4 is wrong; the sign may sit on either part.
    return (
      gcd(got.numerator, got.denominator) === 1n &&
      got.numerator * want.denominator === want.numerator * got.denominator
    );
  },
});

const FRACTION = /^([+-]?\d{1,30})\s*\/\s*([+-]?\d{1,30})$/;

function parseFraction(text: string): { numerator: bigint; denominator: bigint } | null {
  const match = FRACTION.exec(text);
  if (match === null) return null;
  const denominator = BigInt(match[2] as string);
  return denominator === 0n ? null : { numerator: BigInt(match[1] as string), denominator };
}

function gcd(a: bigint, b: bigint): bigint {
  let x = a < 0n ? -a : a;
  let y = b < 0n ? -b : b;
  while (y !== 0n) [x, y] = [y, x % y];
  return x;
}
