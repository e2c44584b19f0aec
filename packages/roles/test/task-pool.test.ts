import { mersenne } from 'pure-rand/generator/mersenne';
import { describe, expect, it } from 'vitest';
import { deriveSeed, type ProposedTask } from '../src/messages.js';
import { TaskPool } from '../src/solver.js';

const spec = (proposer: string, round: number, index = 0): ProposedTask => ({
  family: 'count',
  seed: deriveSeed(proposer, round, index),
  difficulty: 1,
  generatorVersion: 1,
  proposer,
  round,
  index,
});

describe('the task pool', () => {
  it('lets one proposer fill at most its quota, and remembers exactly what was published', () => {
    const pool = new TaskPool(8, 2);
    expect(pool.add(spec('mallory', 1), 0)).toBe('added');
    expect(pool.add(spec('mallory', 2), 0)).toBe('added');
    expect(pool.add(spec('mallory', 3), 0)).toBe('proposer-quota');
    expect(pool.add(spec('mallory', 1), 0)).toBe('duplicate');
    expect(pool.add(spec('alice', 1), 0)).toBe('added');
    expect(pool.knows(spec('alice', 1))).toBe(true);
    expect(pool.knows({ ...spec('alice', 1), difficulty: 2 })).toBe(false);
    expect(pool.knows(spec('mallory', 3))).toBe(false);
  });

  it('draws each task once and drops tasks older than the age limit', () => {
    const pool = new TaskPool();
    for (let round = 0; round < 6; round++) pool.add(spec('alice', round), round * 1000);
    const taken = pool.take(10, mersenne(1), 6000, 3500);
    expect(taken.map((t) => t.spec.round).sort()).toEqual([3, 4, 5]);
    expect(pool.size).toBe(0);
    expect(pool.knows(spec('alice', 0))).toBe(true);
  });
});
