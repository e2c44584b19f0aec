import { sameInteger } from '../answer.js';
import { defineFamily } from '../family.js';
import type { Rng } from '../rng.js';

// Per difficulty: operand count, largest operand, operators, whether one span is parenthesised.
const LEVELS = [
  { operands: 2, max: 9, ops: ['+', '-'], parens: false },
  { operands: 2, max: 99, ops: ['+', '-'], parens: false },
  { operands: 3, max: 99, ops: ['+', '-', '*'], parens: false },
  { operands: 4, max: 99, ops: ['+', '-', '*'], parens: false },
  { operands: 5, max: 999, ops: ['+', '-', '*'], parens: true },
] as const;

// Right operands of '*' stay small so answers stay a handful of digits.
const MAX_FACTOR = 12;

type Token = number | '+' | '-' | '*' | '(' | ')';

export const arithmetic = defineFamily({
  name: 'arithmetic',
  description: 'Integer expressions with +, - and * (and parentheses at the top level); answer is an integer.',
  version: 1,
  levels: LEVELS,
  build(rng, level) {
    const tokens = expression(rng, level.operands, level.max, level.ops);
    const withParens = level.parens ? parenthesise(rng, tokens) : tokens;
    const expressionText = withParens.join('');
    return {
      prompt: `Compute: ${expressionText}`,
      answer: String(evaluate(withParens)),
      metadata: { expression: expressionText },
    };
  },
  check: (answer, task) => sameInteger(answer, task.answer),
});

function expression(rng: Rng, operands: number, max: number, ops: readonly string[]): Token[] {
  const tokens: Token[] = [rng.int(0, max)];
  for (let i = 1; i < operands; i++) {
    const op = rng.pick(ops) as '+' | '-' | '*';
    tokens.push(op, op === '*' ? rng.int(2, MAX_FACTOR) : rng.int(0, max));
  }
  return tokens;
}

/** Wraps a random run of at least two operands (but not the whole expression) in parentheses. */
function parenthesise(rng: Rng, tokens: Token[]): Token[] {
  const operands = (tokens.length + 1) / 2;
  const first = rng.int(0, operands - 2);
  const last = rng.int(first + 1, first === 0 ? operands - 2 : operands - 1);
  return [
    ...tokens.slice(0, 2 * first),
    '(',
    ...tokens.slice(2 * first, 2 * last + 1),
    ')',
    ...tokens.slice(2 * last + 1),
  ];
}

/** Recursive descent over our own token list: * binds tighter than + and -, left to right. */
function evaluate(tokens: readonly Token[]): number {
  let position = 0;
  const next = (): Token | undefined => tokens[position++];
  const peek = (): Token | undefined => tokens[position];

  const factor = (): number => {
    const token = next();
    if (token === '(') {
      const value = sum();
      next(); // ')'
      return value;
    }
    return token as number;
  };
  const product = (): number => {
    let value = factor();
    while (peek() === '*') {
      next();
      value *= factor();
    }
    return value;
  };
  const sum = (): number => {
    let value = product();
    for (let op = peek(); op === '+' || op === '-'; op = peek()) {
      next();
      value = op === '+' ? value + product() : value - product();
    }
    return value;
  };
  return sum();
}
