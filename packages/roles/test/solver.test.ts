import { EMBEDDED_MODEL_PATH, openLearner } from '@swarm-node/sapo';
import { generateTask } from '@swarm-node/tasks';
import { mersenne } from 'pure-rand/generator/mersenne';
import { describe, expect, it } from 'vitest';
import { KnownTasks } from '../src/known-tasks.js';
import { MemoryNetwork } from '../src/memory-transport.js';
import { deriveSeed, type ProposedTask, taskSigningBytes } from '../src/messages.js';
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
  it('knows every task an honest proposer publishes, however many wait to be solved', () => {
    // A proposer of 6 tasks a round for 200 rounds: far more than the 256 tasks that wait to be solved.
    const pool = new TaskPool();
    const message = (s: ProposedTask) => ({ task: s, time: 0 });
    for (let round = 0; round < 200; round++) {
      for (let index = 0; index < 6; index++) {
        expect(pool.offer(message(spec('alice', round, index)), 'alice', 0)).toEqual({ verdict: 'accept' });
      }
    }
    expect(pool.knows(spec('alice', 0, 0))).toBe(true);
    expect(pool.knows(spec('alice', 199, 5))).toBe(true);
    expect(pool.size).toBe(64); // a quarter of the 256 waiting places: the newest of alice's
    expect(pool.offer(message(spec('alice', 3, 1)), 'alice', 0)).toEqual({ verdict: 'ignore', reason: 'duplicate' });
    // Own tasks are always known too.
    expect(pool.add(spec('me', 1), 0)).toBe(true);
    expect(pool.add(spec('me', 1), 0)).toBe(false);
    expect(pool.knows(spec('me', 1))).toBe(true);
    expect(pool.knows({ ...spec('me', 1), difficulty: 2 })).toBe(false);
  });

  it('bounds what one proposer can make it remember by evicting that proposer’s own oldest specs', () => {
    const known = new KnownTasks({ capacity: 8, perProposer: 2 });
    known.add(spec('alice', 1), 0);
    for (let round = 1; round <= 5; round++) known.add(spec('mallory', round), 0);
    expect(known.knows(spec('alice', 1))).toBe(true);
    expect([1, 2, 3, 4, 5].map((round) => known.knows(spec('mallory', round)))).toEqual([
      false,
      false,
      false,
      true,
      true,
    ]);
    expect(known.size).toBe(3);
  });

  it('forgets specs older than the age limit, and the oldest when full', () => {
    const known = new KnownTasks({ capacity: 3, maxAgeMs: 1000 });
    known.add(spec('alice', 1), 0);
    known.add(spec('bob', 1), 500);
    known.add(spec('carol', 1), 1200); // alice's is now older than 1 s
    expect(known.knows(spec('alice', 1))).toBe(false);
    known.add(spec('dave', 1), 1300);
    known.add(spec('erin', 1), 1400); // full: bob's, the oldest, goes
    expect(['bob', 'carol', 'dave', 'erin'].map((p) => known.knows(spec(p, 1)))).toEqual([false, true, true, true]);
  });

  it('draws each task once and drops tasks older than the age limit', () => {
    const pool = new TaskPool({ maxAgeMs: 3500 });
    for (let round = 0; round < 6; round++) pool.add(spec('alice', round), round * 1000);
    const taken = pool.take(10, mersenne(1), 6000);
    expect(taken.map((t) => t.spec.round).sort()).toEqual([3, 4, 5]);
    expect(pool.size).toBe(0);
    expect(pool.knows(spec('alice', 4))).toBe(true);
  });
});

describe('solve', () => {
  it('returns G completions per task with their ids, whether each finished, log-probs and the policy version', async () => {
    const learner = await openLearner({ model: EMBEDDED_MODEL_PATH, backend: 'cpu' });
    const tasks = [spec('alice', 1), spec('bob', 1, 2)].map((s) => ({
      spec: s,
      proof: undefined,
      task: generateTask(s),
    }));
    const tooLong = { ...tasks[0], task: { ...generateTask(spec('carol', 1)), prompt: 'x'.repeat(500) } };
    const groups = await solve(learner, [...tasks, tooLong as (typeof tasks)[number]], {
      groupSize: 3,
      sampling: { maxNewTokens: 5, seed: 9 },
    });
    await learner.close();
    expect(groups.map((g) => g.spec)).toEqual(tasks.map((t) => t.spec)); // the prompt that does not fit is left out
    for (const group of groups) {
      expect(group.policyVersion).toBe(0);
      expect(group.completions).toHaveLength(3);
      expect(group.finished).toHaveLength(3);
      expect(group.logProbs.map((l) => l.length)).toEqual(group.tokens.map((t) => t.length));
      for (const logProb of group.logProbs.flat()) expect(logProb).toBeLessThanOrEqual(0);
      for (const [i, ids] of group.tokens.entries()) expect(ids.length === 5 || group.finished[i]).toBe(true);
    }
  });
});

describe('a task nobody here heard published', () => {
  const network = new MemoryNetwork();
  const alice = network.join('alice');
  const mallory = network.join('mallory');
  const verify = alice.verify;
  const signed = async (task: ProposedTask, time: number, by = alice) => ({
    time,
    signature: await by.sign(taskSigningBytes(task, time)),
  });

  it('without proof, is one from before its proposer was first heard of (the join race), or else unknown', () => {
    const known = new KnownTasks({ verify });
    known.add(spec('alice', 10), 0);
    const reason = (task: ProposedTask) => known.recognise(task, undefined, 0).reason;
    expect(reason(spec('alice', 9))).toBe('task-before-join');
    expect(reason({ ...spec('alice', 10), index: 3 })).toBe('unknown-task');
    expect(reason(spec('alice', 11))).toBe('unknown-task');
    expect(reason(spec('bob', 1))).toBe('task-before-join'); // never heard of: its first tasks went out before we listened
    expect(known.recognise(spec('alice', 10), undefined, 0)).toEqual({ verdict: 'accept' });
  });

  it("with its proposer's proof, is checked as its task message would have been, then known and queued", async () => {
    const pool = new TaskPool({ verify });
    const task = spec('alice', 0);
    const proof = await signed(task, 1000);
    expect(pool.recognise(task, proof, 2000)).toEqual({ verdict: 'accept' });
    expect(pool.knows(task)).toBe(true);
    expect(pool.known.proofOf(task)).toEqual(proof); // rollouts on it from here carry the proof on
    expect(pool.take(5, mersenne(0), 2000).map((t) => t.spec)).toEqual([task]);
    expect(pool.recognise(task, proof, 2000)).toEqual({ verdict: 'accept' });
  });

  it('rejects a forged proof and ignores a stale one or one for another spec under the same key', async () => {
    const known = new KnownTasks({ verify, maxAgeMs: 10_000 });
    const task = spec('alice', 0);
    expect(known.recognise(task, await signed(task, 1000, mallory), 2000)).toEqual({
      verdict: 'reject',
      reason: 'task-proof-bad-signature',
    });
    expect(known.recognise(task, { ...(await signed(task, 1000)), time: 1001 }, 2000).reason).toBe(
      'task-proof-bad-signature',
    );
    expect(known.recognise(task, await signed(task, 1000), 20_000)).toEqual({
      verdict: 'ignore',
      reason: 'task-proof-stale',
    });
    known.add(task, 2000);
    const harder = { ...task, difficulty: 2 };
    expect(known.recognise(harder, await signed(harder, 1000), 2000)).toEqual({
      verdict: 'ignore',
      reason: 'unknown-task',
    });
    expect(known.knows(task)).toBe(true);
  });

  it("rejects a task message whose signature is not its proposer's, and keeps a good one's proof", async () => {
    const known = new KnownTasks({ verify });
    const task = spec('alice', 0);
    const forged = { task, time: 5, signature: (await signed(task, 5, mallory)).signature };
    expect(known.offer(forged, 'alice', 5)).toEqual({ verdict: 'reject', reason: 'bad-signature' });
    expect(new KnownTasks().offer({ task, ...(await signed(task, 5)) }, 'alice', 5).reason).toBe('bad-signature'); // no verifier: none can be checked
    expect(known.offer({ task, ...(await signed(task, 5)) }, 'alice', 5).verdict).toBe('accept');
    expect(known.proofOf(task)?.time).toBe(5);
    expect(known.offer({ task: spec('alice', 1), time: 5, signature: new Uint8Array(300) }, 'alice', 5).reason).toBe(
      'bad-signature',
    );
  });
});
