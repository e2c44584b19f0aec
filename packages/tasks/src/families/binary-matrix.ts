import { defineFamily } from '../family.js';

// Per difficulty: rows, columns and how many zeros. Few zeros make long distances (so copying the
// grid is not an answer); distances stay below 10, so every cell is one digit.
const LEVELS = [
  { rows: 1, columns: 4, zeros: [1, 1] },
  { rows: 2, columns: 3, zeros: [1, 2] },
  { rows: 3, columns: 3, zeros: [1, 2] },
  { rows: 4, columns: 4, zeros: [1, 3] },
  { rows: 5, columns: 5, zeros: [2, 4] },
] as const;

export const binaryMatrix = defineFamily({
  name: 'binary_matrix',
  description:
    'For each cell of a 0/1 grid, the number of up/down/left/right steps to the nearest 0; rows joined by "/".',
  version: 1,
  levels: LEVELS,
  build(rng, { rows, columns, zeros }) {
    const cells = rng.shuffle(Array.from({ length: rows * columns }, (_, i) => i));
    const zeroCells = new Set(cells.slice(0, rng.int(zeros[0], zeros[1])));
    const grid = Array.from({ length: rows }, (_, r) =>
      Array.from({ length: columns }, (_, c) => (zeroCells.has(r * columns + c) ? 0 : 1)),
    );
    return {
      prompt: `Steps to nearest 0 for each cell of ${grid.map((cells) => cells.join('')).join('/')}`,
      answer: distances(grid)
        .map((cells) => cells.join(''))
        .join('/'),
      metadata: {},
    };
  },
  check(answer, task) {
    const got = parseGrid(answer);
    const want = parseGrid(task.answer);
    return (
      got !== null &&
      want !== null &&
      got.length === want.length &&
      got.every((cells, r) => cells.length === want[r]?.length && cells.every((cell, c) => cell === want[r]?.[c]))
    );
  },
});

/** Breadth-first search from every 0 at once (Manhattan steps through the grid). */
function distances(grid: readonly (readonly number[])[]): number[][] {
  const out = grid.map((cells) => cells.map((cell) => (cell === 0 ? 0 : Number.POSITIVE_INFINITY)));
  const queue: [number, number][] = [];
  out.forEach((cells, r) => {
    cells.forEach((cell, c) => {
      if (cell === 0) queue.push([r, c]);
    });
  });
  for (let head = 0; head < queue.length; head++) {
    const [r, c] = queue[head] as [number, number];
    const next = (out[r]?.[c] ?? 0) + 1;
    for (const [nr, nc] of [
      [r - 1, c],
      [r + 1, c],
      [r, c - 1],
      [r, c + 1],
    ] as const) {
      const cells = out[nr];
      if (cells !== undefined && nc >= 0 && nc < cells.length && (cells[nc] ?? 0) > next) {
        cells[nc] = next;
        queue.push([nr, nc]);
      }
    }
  }
  return out;
}

/**
 * Rows separated by `/`, `;` or newlines; within a row, single digits either run together
 * (`012`) or are separated by spaces or commas (`0 1 2`).
 */
function parseGrid(text: string): number[][] | null {
  const rows = text.split(/\s*[/;\n]\s*/);
  const grid: number[][] = [];
  for (const row of rows) {
    const cells = /^\d+$/.test(row) ? [...row] : row.split(/\s*[\s,]\s*/);
    if (cells.length === 0 || !cells.every((cell) => /^\d$/.test(cell))) return null;
    grid.push(cells.map(Number));
  }
  return grid;
}
