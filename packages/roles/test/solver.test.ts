import { ByteTokenizer, Policy, selectBackend } from '@swarm-node/sapo';
import { generateTask } from '@swarm-node/tasks';
import { mersenne } from 'pure-rand/generator/mersenne';
import { beforeAll, describe, expect, it } from 'vitest';
import { deriveSeed, type ProposedTask } from '../src/messages.js';
import { solve, TaskPool } from '../src/solver.js';

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
    const pool = new TaskPool({ capacity: 8, perProposer: 2 });
    expect(pool.add(spec('mallory', 1), 0)).toBe('added');
    expect(pool.add(spec('mallory', 2), 0)).toBe('added');
    expect(pool.add(spec('mallory', 3), 0)).toBe('proposer-quota');
    expect(pool.add(spec('mallory', 1), 0)).toBe('duplicate');
    expect(pool.add(spec('alice', 1), 0)).toBe('added');
    expect(pool.knows(spec('alice', 1))).toBe(true);
    expect(pool.knows({ ...spec('alice', 1), difficulty: 2 })).toBe(false);
    expect(pool.knows(spec('mallory', 3))).toBe(false);
  });

  it("frees a proposer's quota as its tasks expire, even when none is taken (a relay)", () => {
    const pool = new TaskPool({ capacity: 8, perProposer: 2, maxAgeMs: 1000 });
    expect(pool.add(spec('alice', 1), 0)).toBe('added');
    expect(pool.add(spec('alice', 2), 0)).toBe('added');
    expect(pool.add(spec('alice', 3), 500)).toBe('proposer-quota');
    expect(pool.add(spec('alice', 3), 1500)).toBe('added');
  });

  it('draws each task once and drops tasks older than the age limit', () => {
    const pool = new TaskPool({ maxAgeMs: 3500 });
    for (let round = 0; round < 6; round++) pool.add(spec('alice', round), round * 1000);
    const taken = pool.take(10, mersenne(1), 6000);
    expect(taken.map((t) => t.spec.round).sort()).toEqual([3, 4, 5]);
    expect(pool.size).toBe(0);
    expect(pool.knows(spec('alice', 0))).toBe(true);
  });
});

describe('solve', () => {
  beforeAll(async () => {
    await selectBackend({ backend: 'cpu' });
  });

  it('returns G completions per task with their ids, per-token log-probs and the policy version', () => {
    const policy = Policy.create(
      { vocabSize: 259, layers: 1, dModel: 16, heads: 2, mlpRatio: 2, contextLength: 160 },
      { seed: 3 },
    );
    const tasks = [spec('alice', 1), spec('bob', 1, 2)].map((s) => ({ spec: s, task: generateTask(s) }));
    const groups = solve(policy, new ByteTokenizer(), tasks, {
      groupSize: 3,
      sampling: { maxNewTokens: 5, seed: 9 },
      policyVersion: 17,
    });
    policy.dispose();
    expect(groups.map((g) => g.spec)).toEqual(tasks.map((t) => t.spec));
    for (const group of groups) {
      expect(group.policyVersion).toBe(17);
      expect(group.completions).toHaveLength(3);
      expect(group.logProbs.map((l) => l.length)).toEqual(group.tokens.map((t) => t.length));
      for (const logProb of group.logProbs.flat()) expect(logProb).toBeLessThanOrEqual(0);
      expect(group.tokens.flat().length).toBeGreaterThan(0);
    }
  });
});
