import { defineFamily } from '../family.js';
import type { Rng } from '../rng.js';

type Operator = '&' | '|' | '->' | '<->';
type Formula =
  | { kind: 'var'; name: string }
  | { kind: 'not'; operand: Formula }
  | { kind: 'binary'; operator: Operator; left: Formula; right: Formula };

// Per difficulty: variables, nesting depth, binary operators, whether ~ appears.
const LEVELS: readonly {
  variables: readonly string[];
  depth: number;
  operators: readonly Operator[];
  negation: boolean;
}[] = [
  { variables: ['p', 'q'], depth: 1, operators: ['&', '|'], negation: false },
  { variables: ['p', 'q'], depth: 2, operators: ['&', '|'], negation: true },
  { variables: ['p', 'q', 'r'], depth: 2, operators: ['&', '|', '->'], negation: true },
  { variables: ['p', 'q', 'r'], depth: 3, operators: ['&', '|', '->'], negation: true },
  { variables: ['p', 'q', 'r', 's'], depth: 3, operators: ['&', '|', '->', '<->'], negation: true },
];

// Formulas are redrawn until their value matches a fair coin, so "always T" earns half, not more.
const MAX_REDRAWS = 64;

export const propositionalLogic = defineFamily({
  name: 'propositional_logic',
  description: 'Evaluate a formula over ~ & | -> <-> under a truth assignment; answer T or F (true/false accepted).',
  version: 1,
  levels: LEVELS,
  build(rng, level) {
    const assignment = new Map(level.variables.map((name) => [name, rng.coin()]));
    const target = rng.coin();
    let formula = draw(rng, level, level.depth);
    for (let i = 0; i < MAX_REDRAWS && evaluate(formula, assignment) !== target; i++) {
      formula = draw(rng, level, level.depth);
    }
    const bindings = [...assignment].map(([name, value]) => `${name}=${value ? 'T' : 'F'}`).join(' ');
    return {
      prompt: `Evaluate ${print(formula)} with ${bindings}`,
      answer: evaluate(formula, assignment) ? 'T' : 'F',
      metadata: {},
    };
  },
  check(answer, task) {
    const value = TRUTH.get(answer.toLowerCase());
    return value !== undefined && value === (task.answer === 'T');
  },
});

const TRUTH: ReadonlyMap<string, boolean> = new Map([
  ['t', true],
  ['true', true],
  ['f', false],
  ['false', false],
]);

function draw(rng: Rng, level: (typeof LEVELS)[number], depth: number): Formula {
  if (depth === 0) {
    const variable: Formula = { kind: 'var', name: rng.pick(level.variables) };
    return level.negation && rng.int(0, 2) === 0 ? { kind: 'not', operand: variable } : variable;
  }
  const deep = draw(rng, level, depth - 1);
  const shallow = draw(rng, level, rng.int(0, depth - 1));
  const [left, right] = rng.coin() ? [deep, shallow] : [shallow, deep];
  const formula: Formula = { kind: 'binary', operator: rng.pick(level.operators), left, right };
  return level.negation && rng.int(0, 3) === 0 ? { kind: 'not', operand: formula } : formula;
}

function evaluate(formula: Formula, assignment: ReadonlyMap<string, boolean>): boolean {
  switch (formula.kind) {
    case 'var':
      return assignment.get(formula.name) === true;
    case 'not':
      return !evaluate(formula.operand, assignment);
    case 'binary': {
      const left = evaluate(formula.left, assignment);
      const right = evaluate(formula.right, assignment);
      if (formula.operator === '&') return left && right;
      if (formula.operator === '|') return left || right;
      if (formula.operator === '->') return !left || right;
      return left === right;
    }
  }
}

/** Fully parenthesised below the top, so no precedence rules are needed to read it. */
function print(formula: Formula): string {
  const wrap = (inner: Formula) => (inner.kind === 'binary' ? `(${print(inner)})` : print(inner));
  if (formula.kind === 'var') return formula.name;
  if (formula.kind === 'not') return `~${wrap(formula.operand)}`;
  return `${wrap(formula.left)}${formula.operator}${wrap(formula.right)}`;
}
