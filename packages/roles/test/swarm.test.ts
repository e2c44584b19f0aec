import { EMBEDDED_MODEL_PATH, openLearner, selectBackend } from '@swarm-node/sapo';
import { generateTask } from '@swarm-node/tasks';
import { beforeAll, describe, expect, it } from 'vitest';
import { MemoryNetwork } from '../src/memory-transport.js';
import { deriveSeed, type ProposedTask, type RolloutMessage, type TaskMessage } from '../src/messages.js';
import { RoundLoop, type RoundMetrics } from '../src/round-loop.js';

beforeAll(async () => {
  await selectBackend({ backend: 'wasm' });
});

describe('a 4-node in-memory swarm with a lying peer', () => {
  it('trains every node end to end on its own and its peers’ rollouts, and none of the liar’s groups get through', async () => {
    const network = new MemoryNetwork({ delayMs: [0, 3], seed: 7 });
    const nodes: RoundLoop[] = [];
    for (let i = 0; i < 4; i++) {
      const learner = await openLearner({
        model: EMBEDDED_MODEL_PATH,
        backend: 'wasm',
        sapo: { localGroups: 2, externalGroups: 2, seed: i },
      });
      nodes.push(
        new RoundLoop({
          transport: network.join(`node-${i}`),
          learner,
          // Families the base model solves sometimes, so groups carry signal at this tiny scale.
          families: ['count', 'propositional_logic'],
          groupSize: 6,
          tasksPerRound: 2,
          sampling: { maxNewTokens: 8 },
          seed: i,
        }),
      );
    }

    // Mallory answers every task it hears of with wrong text and claims full reward, and sends junk.
    const mallory = network.join('mallory');
    const heard: ProposedTask[] = [];
    mallory.subscribe('tasks', (message) => {
      heard.push((message as TaskMessage).task);
      return 'accept';
    });
    mallory.subscribe('rollouts', () => 'accept');
    const lie = (task: ProposedTask): RolloutMessage => ({
      task,
      producer: 'mallory',
      round: 0,
      policyVersion: 0,
      time: Date.now(),
      completions: ['wrong', `${generateTask(task).answer}!`, 'nope'],
      rewards: [1, 1, 1],
    });

    const metrics: RoundMetrics[][] = nodes.map(() => []);
    for (let round = 0; round < 3; round++) {
      for (const [i, node] of nodes.entries()) metrics[i]?.push(await node.runRound());
      for (const task of heard.splice(0)) await mallory.publish('rollouts', lie(task));
      // ...and honest-looking rollouts on a task nobody published (its seed is computable).
      const invented: ProposedTask = {
        family: 'count',
        seed: deriveSeed('node-0', 1000 + round, 0),
        difficulty: 1,
        generatorVersion: 1,
        proposer: 'node-0',
        round: 1000 + round,
        index: 0,
      };
      await mallory.publish('rollouts', { ...lie(invented), rewards: lie(invented).completions.map(() => 0) });
      await mallory.publish('rollouts', { junk: true } as unknown as RolloutMessage);
      await network.settle();
    }

    expect(network.errors).toEqual([]);
    expect(network.verdicts.get('mallory')).toMatchObject({ accept: 0 });
    for (const [i, node] of nodes.entries()) {
      const rows = metrics[i] as RoundMetrics[];
      expect(node.evaluator.counts['reject:reward-mismatch']).toBeGreaterThan(0);
      expect(node.evaluator.counts['reject:task-not-an-object']).toBe(3); // the junk, once a round
      expect(node.evaluator.counts['ignore:unknown-task']).toBeGreaterThanOrEqual(3); // the invented tasks
      expect(node.evaluator.counts.accept).toBeGreaterThan(0);
      expect(rows.some((m) => m.learner.updated && m.groups.externalUsed > 0)).toBe(true);
      expect(node.learner.steps).toBeGreaterThan(0);
      expect(rows.at(-1)?.bytes.received).toBeGreaterThan(0);
    }
    for (const node of nodes) await node.learner.close();
  });
});

describe('a 4-node in-memory swarm of honest nodes on the default settings', () => {
  it('refuses nothing any of them sends over 50 rounds: every task and rollout is accepted', async () => {
    const network = new MemoryNetwork();
    const nodes: RoundLoop[] = [];
    for (let i = 0; i < 4; i++) {
      const learner = await openLearner({ model: EMBEDDED_MODEL_PATH, backend: 'wasm', sapo: { seed: i } });
      // Default I, J, G, pool, buffer and evaluator; only completions are short, to keep the test fast.
      nodes.push(
        new RoundLoop({ transport: network.join(`node-${i}`), learner, sampling: { maxNewTokens: 12 }, seed: i }),
      );
    }
    const tasks: Record<string, number> = {};
    for (let round = 0; round < 50; round++) {
      for (const node of nodes) {
        const metrics = await node.runRound();
        for (const [key, n] of Object.entries(metrics.received.tasks)) tasks[key] = (tasks[key] ?? 0) + n;
      }
      await network.settle();
    }
    // Each node publishes I = 4 tasks a round to 3 peers; the in-memory network delivers a round's
    // messages when it settles, so the last round's tasks arrive after the last records.
    expect(tasks).toEqual({ accept: 4 * 3 * 4 * 49 });
    for (const node of nodes) {
      const { accept = 0, ...refused } = node.evaluator.counts;
      expect(refused).toEqual({});
      expect(accept).toBeGreaterThan(3 * 4 * 40);
    }
    expect(network.verdicts.size).toBe(4);
    for (const counts of network.verdicts.values()) expect(counts).toMatchObject({ reject: 0, ignore: 0 });
    for (const node of nodes) await node.learner.close();
  }, 600_000);
});
