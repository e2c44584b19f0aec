import { generateTask } from '@swarm-node/tasks';
import { describe, expect, it } from 'vitest';
import { Evaluator } from '../src/evaluator.js';
import { KnownTasks } from '../src/known-tasks.js';
import { MemoryNetwork } from '../src/memory-transport.js';
import { deriveSeed, LIMITS, type ProposedTask, type RolloutMessage, taskSigningBytes } from '../src/messages.js';
import { Proposer } from '../src/proposer.js';

const NOW = 1_800_000_000_000;

function proposed(family = 'sort', difficulty = 1, index = 0, proposer = 'alice', round = 3): ProposedTask {
  return { family, seed: deriveSeed(proposer, round, index), difficulty, generatorVersion: 1, proposer, round, index };
}

/** An honest rollout: half right answers, half wrong, rewards as the verifier gives them. */
function rollout(overrides: Partial<RolloutMessage> = {}, task = proposed()): RolloutMessage {
  const answer = generateTask(task).answer;
  return {
    task,
    producer: 'bob',
    round: 5,
    policyVersion: 2,
    time: NOW - 1000,
    completions: [answer, 'nonsense', `<answer>${answer}</answer>`, ''],
    rewards: [1, 0, 1, 0],
    ...overrides,
  };
}

describe('the evaluator re-checks every peer rollout', () => {
  it('accepts an honest rollout and regenerates its task', () => {
    const evaluator = new Evaluator();
    const checked = evaluator.check(rollout(), 'bob', NOW);
    expect(checked.verdict).toBe('accept');
    expect(checked.task?.prompt).toBe(generateTask(proposed()).prompt);
  });

  it('accepts a rollout with one finished flag per completion, and one without (an older peer)', () => {
    const evaluator = new Evaluator();
    expect(evaluator.check(rollout({ finished: [true, false, true, false] }), 'bob', NOW).verdict).toBe('accept');
    expect(evaluator.check(rollout({}, proposed('sort', 1, 1)), 'bob', NOW).verdict).toBe('accept');
  });

  it('rejects inflated rewards: a lie costs the sender, whatever the claim', () => {
    const evaluator = new Evaluator();
    expect(evaluator.check(rollout({ rewards: [1, 1, 1, 1] }), 'bob', NOW)).toEqual({
      verdict: 'reject',
      reason: 'reward-mismatch',
    });
    expect(evaluator.check(rollout({ rewards: [1, 0, 1, 0.5] }), 'bob', NOW)).toEqual({
      verdict: 'reject',
      reason: 'reward-mismatch',
    });
    expect(evaluator.counts).toEqual({ 'reject:reward-mismatch': 2 });
  });

  it('drops duplicates and stale or future rollouts with a counted reason', () => {
    const evaluator = new Evaluator({ maxAgeMs: 60_000, maxClockSkewMs: 5_000 });
    expect(evaluator.check(rollout(), 'bob', NOW).verdict).toBe('accept');
    expect(evaluator.check(rollout(), 'bob', NOW)).toEqual({ verdict: 'ignore', reason: 'duplicate' });
    expect(evaluator.check(rollout({ time: NOW - 61_000 }, proposed('sort', 1, 1)), 'bob', NOW)).toEqual({
      verdict: 'ignore',
      reason: 'stale',
    });
    expect(evaluator.check(rollout({ time: NOW + 6_000 }, proposed('sort', 1, 2)), 'bob', NOW)).toEqual({
      verdict: 'ignore',
      reason: 'from-the-future',
    });
    expect(evaluator.counts).toEqual({
      accept: 1,
      'ignore:duplicate': 1,
      'ignore:stale': 1,
      'ignore:from-the-future': 1,
    });
  });

  it.each([
    ['not an object', 'garbage', 'not-an-object'],
    ['seed not bound to proposer and round', { ...rollout(), task: { ...proposed(), seed: 12345 } }, 'seed-not-bound'],
    ['a group of one', rollout({ completions: ['x'], rewards: [0] }), 'bad-group-size'],
    [
      'a group over the cap',
      rollout({ completions: new Array(65).fill('x'), rewards: new Array(65).fill(0) }),
      'bad-group-size',
    ],
    ['rewards out of [0, 1]', rollout({ rewards: [1, 0, 2, 0] }), 'reward-out-of-range'],
    ['NaN rewards', rollout({ rewards: [1, 0, Number.NaN, 0] }), 'reward-out-of-range'],
    [
      'a completion over the length cap',
      rollout({ completions: ['x'.repeat(LIMITS.completionLength + 1), 'a', 'b', 'c'] }),
      'completion-too-long',
    ],
    ['mismatched lengths', rollout({ rewards: [1, 0] }), 'malformed-group'],
    ['fewer finished flags than completions', rollout({ finished: [true, false, true] }), 'malformed-group'],
    [
      'more finished flags than completions',
      rollout({ finished: [true, false, true, true, false] }),
      'malformed-group',
    ],
    ['finished flags that are not booleans', { ...rollout(), finished: [true, 0, 1, 'yes'] }, 'malformed-group'],
    ['finished that is not an array', { ...rollout(), finished: 'true' }, 'malformed-group'],
    ['a producer other than the sender', rollout({ producer: 'mallory' }), 'producer-is-not-sender'],
    ['a difficulty out of range', { ...rollout(), task: { ...proposed(), difficulty: 9 } }, 'invalid-difficulty'],
  ])('rejects %s', (_what, message, reason) => {
    expect(new Evaluator().check(message, 'bob', NOW)).toEqual({ verdict: 'reject', reason });
  });

  it('ignores rollouts on tasks their proposer never published, however right their rewards', () => {
    const published = proposed('sort', 1, 0);
    const evaluator = new Evaluator({
      recogniseTask: (task) =>
        task.seed === published.seed && task.difficulty === published.difficulty
          ? { verdict: 'accept' }
          : { verdict: 'ignore', reason: 'unknown-task' },
    });
    const invented = proposed('sort', 1, 0, 'alice', 1_000_000); // seeds of any round can be computed
    expect(evaluator.check(rollout({}, invented), 'bob', NOW)).toEqual({ verdict: 'ignore', reason: 'unknown-task' });
    expect(evaluator.check(rollout({}, { ...published, difficulty: 2 }), 'bob', NOW).reason).toBe('unknown-task');
    expect(evaluator.check(rollout({}, published), 'bob', NOW).verdict).toBe('accept');
  });

  it("accepts a rollout on a task it never heard of when it carries the proposer's proof, and rejects a forged one", async () => {
    const network = new MemoryNetwork();
    const [alice, mallory] = [network.join('alice'), network.join('mallory')];
    const known = new KnownTasks({ verify: alice.verify });
    const evaluator = new Evaluator({ recogniseTask: (task, proof, now) => known.recognise(task, proof, now) });
    const task = proposed();
    const proof = async (by: typeof alice) => ({
      time: NOW - 2000,
      signature: await by.sign(taskSigningBytes(task, NOW - 2000)),
    });
    expect(evaluator.check(rollout({ taskProof: await proof(mallory) }), 'bob', NOW)).toEqual({
      verdict: 'reject',
      reason: 'task-proof-bad-signature',
    });
    expect(evaluator.check(rollout(), 'bob', NOW)).toEqual({ verdict: 'ignore', reason: 'task-before-join' });
    expect(evaluator.check(rollout({ taskProof: await proof(alice) }), 'bob', NOW).verdict).toBe('accept');
    expect(known.knows(task)).toBe(true);
    expect(evaluator.check(rollout({ producer: 'carol' }), 'carol', NOW).verdict).toBe('accept'); // known from now on
    expect(evaluator.check(rollout({ taskProof: { time: 1, signature: new Uint8Array() } }), 'bob', NOW)).toEqual({
      verdict: 'reject',
      reason: 'bad-task-proof',
    });
  });

  it('ignores, without blame, tasks of a family or generator version it does not have (a newer peer)', () => {
    const evaluator = new Evaluator();
    expect(evaluator.check({ ...rollout(), task: { ...proposed(), generatorVersion: 2 } }, 'bob', NOW)).toEqual({
      verdict: 'ignore',
      reason: 'generator-version-mismatch',
    });
    expect(evaluator.check({ ...rollout(), task: { ...proposed(), family: 'chess' } }, 'bob', NOW).reason).toBe(
      'unknown-family',
    );
  });
});

describe('the proposer', () => {
  const feed = (proposer: Proposer, family: string, pass: number, groups: number) => {
    for (let i = 0; i < groups; i++) {
      const difficulty = proposer.state().find((s) => s.family === family)?.difficulty ?? 1;
      proposer.observe(
        family,
        difficulty,
        Array.from({ length: 8 }, (_, k) => (k < pass * 8 ? 1 : 0)),
      );
    }
  };

  it('binds seeds to itself, the round and the index', () => {
    const tasks = new Proposer('alice', { families: ['sort', 'count'], tasksPerRound: 3 }).propose(7);
    expect(tasks.map((t) => [t.family, t.index, t.seed])).toEqual([
      ['sort', 0, deriveSeed('alice', 7, 0)],
      ['count', 1, deriveSeed('alice', 7, 1)],
      ['sort', 2, deriveSeed('alice', 7, 2)],
    ]);
    expect(deriveSeed('alice', 7, 0)).not.toBe(deriveSeed('bob', 7, 0));
    expect(deriveSeed('alice', 7, 0)).not.toBe(deriveSeed('alice', 8, 0));
  });

  it('raises difficulty when groups are mostly solved, lowers it when mostly failed, holds it in between', () => {
    const proposer = new Proposer('alice', { families: ['sort', 'count', 'reverse'], startDifficulty: 3 });
    feed(proposer, 'sort', 1, 8);
    feed(proposer, 'count', 0, 8);
    feed(proposer, 'reverse', 0.5, 40);
    const state = Object.fromEntries(proposer.state().map((s) => [s.family, s]));
    expect(state.sort?.difficulty).toBe(4);
    expect(state.count?.difficulty).toBe(2);
    expect(state.reverse?.difficulty).toBe(3);
    expect(state.reverse?.reward).toBeCloseTo(1, 5);
    feed(proposer, 'sort', 1, 100);
    expect(proposer.state().find((s) => s.family === 'sort')?.difficulty).toBe(5);
  });

  it('holds every difficulty when adaptation is off', () => {
    const proposer = new Proposer('alice', { families: ['sort'], startDifficulty: 2, adapt: false });
    feed(proposer, 'sort', 1, 50);
    expect(proposer.state()[0]).toMatchObject({ difficulty: 2, passRate: expect.closeTo(1, 3) });
  });
});
