import { EMBEDDED_MODEL_PATH, openLearner } from '@swarm-node/sapo';
import { describe, expect, it } from 'vitest';
import { MemoryNetwork } from '../src/memory-transport.js';
import { RoundLoop } from '../src/round-loop.js';

describe('the round loop', () => {
  it('refuses sampling settings whose samples are not the policy’s own (SAPO’s ratio needs them)', async () => {
    const learner = await openLearner({ model: EMBEDDED_MODEL_PATH, backend: 'cpu' });
    const network = new MemoryNetwork();
    for (const sampling of [{ temperature: 0.7 }, { topK: 20 }, { topP: 0.9 }]) {
      expect(() => new RoundLoop({ transport: network.join(JSON.stringify(sampling)), learner, sampling })).toThrow(
        /training samples must come from the policy itself/,
      );
    }
    expect(() => new RoundLoop({ transport: network.join('ok'), learner, sampling: { temperature: 1 } })).not.toThrow();
    await learner.close();
  });

  it('measures a held-out pass rate on the same tasks every time, at a fixed difficulty', async () => {
    const learner = await openLearner({ model: EMBEDDED_MODEL_PATH, backend: 'wasm' });
    const loop = new RoundLoop({
      transport: new MemoryNetwork().join('a'),
      learner,
      families: ['count', 'reverse'],
      heldOut: { every: 1, difficulty: 2, tasks: 2, samples: 2 },
    });
    const first = await loop.heldOutPassRate();
    expect(await loop.heldOutPassRate()).toEqual(first);
    expect(first.difficulty).toBe(2);
    expect(Object.keys(first.byFamily).sort()).toEqual(['count', 'reverse']);
    const metrics = await loop.runRound();
    expect(metrics.heldOut).not.toBeNull();
    expect(metrics.difficulty).toBe(1); // the proposer's starting level
    await learner.close();
  });

  it('a node that does not share publishes no task or rollout, yet learns from its peers’ rollouts', async () => {
    const network = new MemoryNetwork({ seed: 3 });
    const sent: Record<string, string[]> = { tasks: [], rollouts: [] };
    const spy = network.join('spy');
    for (const topic of ['tasks', 'rollouts'] as const) {
      spy.subscribe(topic, (message) => {
        sent[topic]?.push(
          topic === 'tasks'
            ? (message as { task: { proposer: string } }).task.proposer
            : (message as { producer: string }).producer,
        );
        return 'accept';
      });
    }
    const loops = await Promise.all(
      [true, false].map(async (share, i) => {
        const learner = await openLearner({
          model: EMBEDDED_MODEL_PATH,
          backend: 'wasm',
          sapo: { localGroups: 2, externalGroups: 2, seed: i },
        });
        // Families the base model solves sometimes, so groups carry signal at this tiny scale.
        return new RoundLoop({
          transport: network.join(share ? 'sharer' : 'consumer'),
          learner,
          families: ['count', 'propositional_logic'],
          groupSize: 6,
          tasksPerRound: 2,
          sampling: { maxNewTokens: 8 },
          seed: i,
          share,
        });
      }),
    );
    const [sharer, consumer] = loops as [RoundLoop, RoundLoop];
    const consumed: number[] = [];
    for (let round = 0; round < 4; round++) {
      const own = await sharer.runRound();
      await network.settle();
      const theirs = await consumer.runRound();
      await network.settle();
      expect(own.groups.published).toBe(own.groups.local);
      expect(theirs.groups.local).toBeGreaterThan(0);
      expect(theirs.groups.published).toBe(0);
      consumed.push(theirs.groups.externalUsed);
    }
    expect(new Set(sent.tasks)).toEqual(new Set(['sharer']));
    expect(new Set(sent.rollouts)).toEqual(new Set(['sharer']));
    expect(sharer.acceptedByProducer.has('consumer')).toBe(false);
    expect(consumer.acceptedByProducer.get('sharer')).toBeGreaterThan(0);
    expect(consumed.some((n) => n > 0)).toBe(true);
    for (const loop of loops) await loop.learner.close();
  });
});
