import { ByteTokenizer, Policy, type PolicyConfig, selectBackend, type Tokenizer } from '@swarm-node/sapo';
import { TaskError } from '@swarm-node/tasks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { evaluatePassRates, formatPassRateTable, type PassRateCell } from '../src/pass-rates.js';

const TINY: PolicyConfig = { vocabSize: 259, contextLength: 48, layers: 1, dModel: 16, heads: 2, mlpRatio: 2 };
const FAST = { tasks: 2, samples: 3, maxNewTokens: 6, seed: 7 };
const tokenizer = new ByteTokenizer();
let policy: Policy;

/** The tokenizer, also recording every completion it decodes: what the verifiers were given. */
function recording(): { tokenizer: Tokenizer; seen: string[] } {
  const seen: string[] = [];
  const wrapped: Tokenizer = Object.assign(Object.create(tokenizer) as Tokenizer, {
    decode: (ids: readonly number[]) => {
      seen.push(ids.join());
      return tokenizer.decode(ids);
    },
  });
  return { tokenizer: wrapped, seen };
}

beforeAll(async () => {
  await selectBackend({ backend: 'cpu' });
  policy = Policy.create(TINY, { seed: 3 });
});
afterAll(() => policy.dispose());

describe('evaluatePassRates', () => {
  it('gives one cell per family and difficulty asked for, in the registry order, with rates in [0, 1]', () => {
    const done: number[] = [];
    const cells = evaluatePassRates(policy, tokenizer, {
      ...FAST,
      families: ['count', 'reverse'],
      difficulties: [2, 1],
      onCell: (_cell, n, total) => done.push(n, total),
    });
    expect(cells.map(({ family, difficulty }) => `${family}/${difficulty}`)).toEqual([
      'reverse/1',
      'reverse/2',
      'count/1',
      'count/2',
    ]);
    for (const cell of cells) {
      expect(cell).toEqual({
        family: cell.family,
        difficulty: cell.difficulty,
        passRate: expect.any(Number),
        signalShare: expect.any(Number),
        tasks: 2,
        samples: 3,
      });
      expect(cell.passRate).toBeGreaterThanOrEqual(0);
      expect(cell.passRate).toBeLessThanOrEqual(1);
      expect([0, 0.5, 1]).toContain(cell.signalShare);
    }
    expect(done).toEqual([1, 4, 2, 4, 3, 4, 4, 4]);
  });

  it('is deterministic for a seed, and a cell does not depend on which other cells are evaluated', () => {
    const run = (options: { seed: number; families: string[] }) => {
      const { tokenizer: recorder, seen } = recording();
      const cells = evaluatePassRates(policy, recorder, { ...FAST, ...options, difficulties: [1] });
      return { cells, seen };
    };
    const both = run({ seed: 7, families: ['reverse', 'count'] });
    expect(both.seen).toHaveLength(2 * 2 * 3);
    expect(run({ seed: 7, families: ['reverse', 'count'] })).toEqual(both);
    const countOnly = run({ seed: 7, families: ['count'] });
    expect(countOnly.cells).toEqual(both.cells.slice(1));
    expect(countOnly.seen).toEqual(both.seen.slice(6));
    expect(run({ seed: 8, families: ['reverse', 'count'] }).seen).not.toEqual(both.seen);
  });

  it('refuses unknown families, empty filters and out-of-range options with messages that say what is valid', () => {
    const evaluate = (options: Parameters<typeof evaluatePassRates>[2]) => () =>
      evaluatePassRates(policy, tokenizer, { ...FAST, ...options });
    expect(evaluate({ families: ['reverse', 'nope'] })).toThrow(TaskError);
    expect(evaluate({ families: ['nope'] })).toThrow(
      /unknown task family "nope"; valid families: reverse, sort, count/,
    );
    expect(evaluate({ families: [] })).toThrow(/at least one family; known families: reverse,sort/);
    expect(evaluate({ difficulties: [6] })).toThrow(/difficulty 6 .* integers from 1 to 5/);
    expect(evaluate({ difficulties: [] })).toThrow(RangeError);
    expect(evaluate({ tasks: 0 })).toThrow(/tasks must be a positive integer, got 0/);
    expect(evaluate({ samples: 1.5 })).toThrow(/samples must be a positive integer/);
    expect(evaluate({ maxNewTokens: -1 })).toThrow(/maxNewTokens must be a positive integer/);
    expect(evaluate({ seed: -1 })).toThrow(/seed must be an integer from 0/);
  });
});

describe('formatPassRateTable', () => {
  const cell = (family: string, difficulty: number, passRate: number, signalShare: number): PassRateCell => ({
    family,
    difficulty,
    passRate,
    signalShare,
    tasks: 40,
    samples: 8,
  });

  it('prints the markdown table of docs/MODEL.md: a row per family, `pass (signal)` in whole percent', () => {
    const cells = [1, 2, 3, 4, 5].map((d) => cell('reverse', d, d / 8, (d - 1) / 40));
    cells.push(cell('sort', 1, 0, 0), cell('sort', 3, 1, 1));
    expect(formatPassRateTable(cells)).toBe(
      [
        '| family | d1 | d2 | d3 | d4 | d5 |',
        '|---|---|---|---|---|---|',
        '| reverse | 13 % (0 %) | 25 % (3 %) | 38 % (5 %) | 50 % (8 %) | 63 % (10 %) |',
        '| sort | 0 % (0 %) | - | 100 % (100 %) | - | - |',
      ].join('\n'),
    );
  });
});
