import { serialize } from 'node:v8';
import { describe, expect, it } from 'vitest';
import { MemoryNetwork } from '../src/memory-transport.js';
import { deriveSeed, type TaskMessage } from '../src/messages.js';

const message = (index: number): TaskMessage => ({
  task: {
    family: 'sort',
    seed: deriveSeed('a', 0, index),
    difficulty: 1,
    generatorVersion: 1,
    proposer: 'a',
    round: 0,
    index,
  },
  time: index,
});

describe('the in-memory network', () => {
  it('delivers to every other member as fresh objects, counts bytes, and records verdicts', async () => {
    const network = new MemoryNetwork();
    const got = new Map<string, [unknown, string][]>();
    const [a, b, c] = ['a', 'b', 'c'].map((id) => {
      const transport = network.join(id);
      got.set(id, []);
      transport.subscribe('tasks', (m, from) => {
        got.get(id)?.push([m, from]);
        return id === 'b' ? 'accept' : 'reject';
      });
      return transport;
    });
    const sent = message(1);
    await a?.publish('tasks', sent);
    await network.settle();
    expect(got.get('a')).toEqual([]);
    expect(got.get('b')).toEqual([[sent, 'a']]);
    expect(got.get('c')).toEqual([[sent, 'a']]);
    expect(got.get('b')?.[0]?.[0]).not.toBe(sent);
    const bytes = serialize(sent).byteLength;
    expect(a?.traffic()).toEqual({ sent: 2 * bytes, received: 0 });
    expect(b?.traffic()).toEqual({ sent: 0, received: bytes });
    expect(c?.traffic()).toEqual({ sent: 0, received: bytes });
    expect(network.verdicts.get('a')).toEqual({ accept: 1, reject: 1, ignore: 0 });
    expect(network.errors).toEqual([]);
  });

  it('loses and reorders messages as configured, reproducibly from the seed', async () => {
    const run = async (seed: number) => {
      const network = new MemoryNetwork({ delayMs: [0, 20], loss: 0.3, seed });
      const sender = network.join('a');
      const receiver = network.join('b');
      const order: number[] = [];
      receiver.subscribe('tasks', (m) => {
        order.push((m as TaskMessage).task.index);
        return 'accept';
      });
      for (let i = 0; i < 40; i++) await sender.publish('tasks', message(i % 64));
      await network.settle();
      return order;
    };
    const first = await run(1);
    expect(first.length).toBeGreaterThan(15);
    expect(first.length).toBeLessThan(40);
    expect(first).not.toEqual([...first].sort((x, y) => x - y));
    expect(new Set(await run(1))).toEqual(new Set(first));
  });
});
