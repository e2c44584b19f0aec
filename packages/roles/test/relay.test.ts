import { generateTask } from '@swarm-node/tasks';
import { describe, expect, it } from 'vitest';
import { MemoryNetwork } from '../src/memory-transport.js';
import { deriveSeed, type ProposedTask, type RolloutMessage } from '../src/messages.js';
import { Relay } from '../src/relay.js';

describe('a relay (what a bootstrap node runs)', () => {
  it('accepts published tasks and honest rollouts, rejects forged rewards and rollouts on unpublished tasks', async () => {
    const network = new MemoryNetwork();
    const relay = new Relay(network.join('seed'));
    const alice = network.join('alice');
    const task = (index: number): ProposedTask => ({
      family: 'sort',
      seed: deriveSeed('alice', 1, index),
      difficulty: 1,
      generatorVersion: 1,
      proposer: 'alice',
      round: 1,
      index,
    });
    const rollout = (spec: ProposedTask, rewards: number[]): RolloutMessage => {
      const answer = generateTask(spec).answer;
      return {
        task: spec,
        producer: 'alice',
        round: 1,
        policyVersion: 0,
        time: Date.now(),
        completions: [answer, 'no'],
        rewards,
      };
    };
    await alice.publish('tasks', { task: task(0), time: Date.now() });
    await alice.publish('tasks', { task: task(1), time: Date.now() });
    await network.settle();
    await alice.publish('rollouts', rollout(task(0), [1, 0]));
    await alice.publish('rollouts', rollout(task(1), [1, 1]));
    await alice.publish('rollouts', rollout(task(2), [1, 0])); // never published
    await network.settle();
    expect(relay.taskCounts).toEqual({ accept: 2 });
    expect(relay.evaluator.counts).toEqual({ accept: 1, 'reject:reward-mismatch': 1, 'ignore:unknown-task': 1 });
    expect(network.verdicts.get('alice')).toEqual({ accept: 3, reject: 1, ignore: 1 });
  });
});
