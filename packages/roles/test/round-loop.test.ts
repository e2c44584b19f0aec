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
});
