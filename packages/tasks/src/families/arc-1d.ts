import { defineFamily } from '../family.js';
import type { Rng } from '../rng.js';

/** A row of cells: 0 is background, 1-9 are colours. */
type Row = number[];

/** One hidden transformation with its parameters fixed, and a way to draw inputs it fits. */
interface Rule {
  name: string;
  input(rng: Rng, length: number): Row;
  apply(row: Row): Row;
}

const MARKER = 9;
const text = (row: Row) => row.join('');
/** A colour from 1 to 8 (9 is the marker), other than `except`. */
function colour(rng: Rng, except?: number): number {
  if (except === undefined) return rng.int(1, 8);
  const c = rng.int(1, 7);
  return c >= except ? c + 1 : c;
}

/** A row with one block of `width` cells of colour `c` starting at `start`. */
function block(length: number, c: number, start: number, width: number): Row {
  return Array.from({ length }, (_, i) => (i >= start && i < start + width ? c : 0));
}

function moved(row: Row, by: number): Row {
  const out: Row = row.map(() => 0);
  row.forEach((cell, i) => {
    if (cell !== 0 && i + by >= 0 && i + by < row.length) out[i + by] = cell;
  });
  return out;
}

/** A single block, placed so that moving it by `room` cells keeps it inside the row. */
function blockInput(rng: Rng, length: number, roomLeft: number, roomRight: number): Row {
  const width = rng.int(1, Math.max(1, Math.floor(length / 3)));
  const start = rng.int(roomLeft, length - width - roomRight);
  return block(length, colour(rng), start, width);
}

const span = (row: Row) => ({ first: row.findIndex((c) => c !== 0), last: row.findLastIndex((c) => c !== 0) });

const RULES: Readonly<Record<string, (rng: Rng) => Rule>> = {
  shift_right_1: () => ({
    name: 'shift by 1',
    input: (rng, length) => blockInput(rng, length, 0, 1),
    apply: (row) => moved(row, 1),
  }),
  shift: (rng) => {
    const by = rng.pick([-3, -2, -1, 1, 2, 3]);
    return {
      name: `shift by ${by}`,
      input: (rng, length) => blockInput(rng, length, Math.max(0, -by), Math.max(0, by)),
      apply: (row) => moved(row, by),
    };
  },
  mirror: () => ({
    name: 'mirror',
    input: (rng, length) => {
      const row = Array.from({ length }, () => (rng.int(0, 2) === 0 ? colour(rng) : 0));
      // A palindrome would show nothing of the rule: make the two ends differ.
      if (text(row) === text([...row].reverse())) row[0] = row[length - 1] === 0 ? colour(rng) : 0;
      return row;
    },
    apply: (row) => [...row].reverse(),
  }),
  recolour: (rng) => {
    const to = colour(rng);
    return {
      name: `recolour to ${to}`,
      input: (rng, length) => {
        const width = rng.int(2, Math.floor(length / 2));
        return block(length, colour(rng, to), rng.int(0, length - width), width);
      },
      apply: (row) => row.map((cell) => (cell === 0 ? 0 : to)),
    };
  },
  fill: () => ({
    name: 'fill between ends',
    input: (rng, length) => {
      const first = rng.int(0, length - 3);
      const last = rng.int(first + 2, length - 1);
      const c = colour(rng);
      return Array.from({ length }, (_, i) => (i === first || i === last ? c : 0));
    },
    apply: (row) => {
      const { first, last } = span(row);
      return row.map((_, i) => (i >= first && i <= last ? (row[first] as number) : 0));
    },
  }),
  to_edge: (rng) => {
    const right = rng.coin();
    return {
      name: right ? 'move to right edge' : 'move to left edge',
      input: (rng, length) => (right ? blockInput(rng, length, 0, 1) : blockInput(rng, length, 1, 0)),
      apply: (row) => {
        const { first, last } = span(row);
        return moved(row, right ? row.length - 1 - last : -first);
      },
    };
  },
  to_marker: () => ({
    name: 'move right until touching the 9',
    input: (rng, length) => {
      const marker = rng.int(3, length - 1);
      const width = rng.int(1, Math.max(1, Math.floor(marker / 3)));
      const row = block(length, colour(rng), rng.int(0, marker - width - 1), width);
      row[marker] = MARKER;
      return row;
    },
    apply: (row) => {
      const marker = row.indexOf(MARKER);
      const body = row.map((cell) => (cell === MARKER ? 0 : cell));
      const out = moved(body, marker - 1 - span(body).last);
      out[marker] = MARKER;
      return out;
    },
  }),
};

// Per difficulty: row length, number of worked examples, the rules to choose among.
const LEVELS = [
  { length: 6, examples: 2, rules: ['shift_right_1'] },
  { length: 8, examples: 2, rules: ['shift'] },
  { length: 10, examples: 2, rules: ['shift', 'mirror', 'recolour'] },
  { length: 12, examples: 2, rules: ['shift', 'mirror', 'recolour', 'fill', 'to_edge'] },
  { length: 14, examples: 3, rules: ['shift', 'mirror', 'recolour', 'fill', 'to_edge', 'to_marker'] },
] as const;

export const arc1d = defineFamily({
  name: 'arc_1d',
  description: 'Infer a 1-D grid transformation (shift, mirror, recolour, fill, move) from examples and apply it.',
  version: 1,
  levels: LEVELS,
  build(rng, level) {
    const makeRule = RULES[rng.pick(level.rules)] as (rng: Rng) => Rule;
    const rule = makeRule(rng);
    const examples = Array.from({ length: level.examples }, () => rule.input(rng, level.length));
    const test = rule.input(rng, level.length);
    const shown = examples.map((row) => `${text(row)}>${text(rule.apply(row))}`).join(', ');
    return {
      prompt: `Rule by example: ${shown}. Apply to ${text(test)}`,
      answer: text(rule.apply(test)),
      metadata: { rule: rule.name },
    };
  },
  // Cells may be separated by spaces or commas.
  check: (answer, task) => answer.replace(/[\s,]/g, '') === task.answer,
});
