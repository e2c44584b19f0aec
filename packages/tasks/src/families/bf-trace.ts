import { sameIntegerList } from '../answer.js';
import { defineFamily } from '../family.js';
import type { Rng } from '../rng.js';

/**
 * A tiny brainfuck dialect: `+ - > < [ ]` as usual on byte cells, and `.` prints the current
 * cell as a decimal number. The answer is the printed numbers separated by spaces.
 */
const TAPE_LENGTH = 16;
const MAX_STEPS = 10_000;

const repeat = (op: string, count: number) => op.repeat(count);

/** `a` times add `b` to the next cell, leaving the pointer on it. */
const multiply = (a: number, b: number) => `${repeat('+', a)}[>${repeat('+', b)}<-]>`;

// One program builder per difficulty. Every value stays within 0-255, so no wrap-around.
const LEVELS: readonly ((rng: Rng) => string)[] = [
  (rng) => `${repeat('+', rng.int(1, 9))}.`,
  (rng) => {
    const start = rng.int(3, 12);
    return `${repeat('+', start)}.${repeat('-', rng.int(1, start))}.`;
  },
  (rng) => `${repeat('+', rng.int(1, 9))}>${repeat('+', rng.int(1, 9))}.<${repeat('-', rng.int(0, 1))}.`,
  (rng) => `${multiply(rng.int(2, 5), rng.int(2, 5))}${repeat(rng.pick(['+', '-']), rng.int(0, 3))}.`,
  (rng) => {
    const first = `${multiply(rng.int(2, 6), rng.int(2, 6))}.`;
    const second = `<${repeat('+', rng.int(2, 4))}[>${repeat('+', rng.int(1, 3))}<-]>.`;
    return rng.coin() ? `${first}${second}` : `${first}<${repeat('+', rng.int(1, 9))}.`;
  },
];

export const bfTrace = defineFamily({
  name: 'bf_trace',
  description: 'Trace a tiny brainfuck-like program in which "." prints the current cell as a number.',
  version: 1,
  levels: LEVELS,
  build(rng, writeProgram) {
    const program = writeProgram(rng);
    return {
      prompt: `Numbers printed by bf ${program}`,
      answer: run(program).join(' '),
      metadata: { program },
    };
  },
  check: (answer, task) => sameIntegerList(answer, task.answer),
});

/** Interprets a program with balanced brackets; throws if it leaves the tape or runs too long. */
function run(program: string): number[] {
  const jumps = matchBrackets(program);
  const tape = new Uint8Array(TAPE_LENGTH);
  const output: number[] = [];
  let pointer = 0;
  for (let pc = 0, steps = 0; pc < program.length; pc++, steps++) {
    if (steps > MAX_STEPS) throw new Error(`bf program ran over ${MAX_STEPS} steps`);
    const op = program[pc];
    if (op === '+') tape[pointer] = ((tape[pointer] as number) + 1) & 0xff;
    else if (op === '-') tape[pointer] = ((tape[pointer] as number) - 1) & 0xff;
    else if (op === '>') pointer++;
    else if (op === '<') pointer--;
    else if (op === '.') output.push(tape[pointer] as number);
    else if (op === '[' && tape[pointer] === 0) pc = jumps[pc] as number;
    else if (op === ']' && tape[pointer] !== 0) pc = jumps[pc] as number;
    if (pointer < 0 || pointer >= TAPE_LENGTH) throw new Error('bf program moved off the tape');
  }
  return output;
}

function matchBrackets(program: string): number[] {
  const jumps: number[] = [];
  const open: number[] = [];
  for (let i = 0; i < program.length; i++) {
    if (program[i] === '[') open.push(i);
    if (program[i] === ']') {
      const start = open.pop();
      if (start === undefined) throw new Error(`unmatched ] at ${i}`);
      jumps[start] = i;
      jumps[i] = start;
    }
  }
  if (open.length > 0) throw new Error(`unmatched [ at ${open[0]}`);
  return jumps;
}
