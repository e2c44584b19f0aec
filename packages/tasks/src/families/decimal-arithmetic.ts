import { defineFamily } from '../family.js';
import type { Rng } from '../rng.js';

// Values are exact: bigints counting 1/10^SCALE_DIGITS. Operands have at most two decimal places,
// so even a product of two of them is exact at this scale.
const SCALE_DIGITS = 4;
const SCALE = 10n ** BigInt(SCALE_DIGITS);

interface Operand {
  max: number; // integer part stays below this
  places: number; // decimal places drawn
}

// Per difficulty: the expression shape and its operands.
const LEVELS: readonly { shape: 'a+b' | 'a-b' | 'a*b' | 'a+b-c' | 'a*b+c'; operands: readonly Operand[] }[] = [
  {
    shape: 'a+b',
    operands: [
      { max: 10, places: 1 },
      { max: 10, places: 1 },
    ],
  },
  {
    shape: 'a-b',
    operands: [
      { max: 100, places: 2 },
      { max: 100, places: 1 },
    ],
  },
  {
    shape: 'a*b',
    operands: [
      { max: 100, places: 1 },
      { max: 100, places: 1 },
    ],
  },
  {
    shape: 'a+b-c',
    operands: [
      { max: 100, places: 2 },
      { max: 100, places: 2 },
      { max: 100, places: 2 },
    ],
  },
  {
    shape: 'a*b+c',
    operands: [
      { max: 100, places: 2 },
      { max: 100, places: 1 },
      { max: 100, places: 2 },
    ],
  },
];

export const decimalArithmetic = defineFamily({
  name: 'decimal_arithmetic',
  description: 'Exact arithmetic on decimals with up to two places; any equal decimal (2.50 for 2.5) is accepted.',
  version: 1,
  levels: LEVELS,
  build(rng, level) {
    const [a = 0n, b = 0n, c = 0n] = level.operands.map((operand) => drawOperand(rng, operand));
    const results = {
      'a+b': a + b,
      'a-b': a - b,
      'a*b': (a * b) / SCALE,
      'a+b-c': a + b - c,
      'a*b+c': (a * b) / SCALE + c,
    };
    const expression = level.shape.replace(/[abc]/g, (name) => format({ a, b, c }[name as 'a' | 'b' | 'c']));
    return {
      prompt: `Compute: ${expression}`,
      answer: format(results[level.shape]),
      metadata: { expression },
    };
  },
  check(answer, task) {
    const got = parseDecimal(answer);
    const want = parseDecimal(task.answer);
    return got !== null && want !== null && got.units * want.denominator === want.units * got.denominator;
  },
});

function drawOperand(rng: Rng, { max, places }: Operand): bigint {
  const step = 10 ** places;
  return (BigInt(rng.int(0, max * step - 1)) * SCALE) / BigInt(step);
}

/** Canonical text of a scaled value: no trailing zeros, no trailing point, `-` only when negative. */
function format(value: bigint): string {
  const sign = value < 0n ? '-' : '';
  const magnitude = value < 0n ? -value : value;
  const whole = magnitude / SCALE;
  const fraction = (magnitude % SCALE).toString().padStart(SCALE_DIGITS, '0').replace(/0+$/, '');
  return fraction.length > 0 ? `${sign}${whole}.${fraction}` : `${sign}${whole}`;
}

const DECIMAL = /^([+-]?)(\d{0,30})(?:\.(\d{0,30}))?$/;

/** `units / denominator` for a plain decimal (`3`, `-0.25`, `.5`, `2.`), or null. */
function parseDecimal(text: string): { units: bigint; denominator: bigint } | null {
  const match = DECIMAL.exec(text);
  if (match === null) return null;
  const [, sign = '', whole = '', fraction = ''] = match;
  if (whole.length === 0 && fraction.length === 0) return null;
  const magnitude = BigInt(`${whole || '0'}${fraction}`);
  return { units: sign === '-' ? -magnitude : magnitude, denominator: 10n ** BigInt(fraction.length) };
}
