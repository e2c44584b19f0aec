import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SwarmNode } from '../src/swarm-node.js';
import { spawnNode } from './helpers/processes.js';

const LOOPBACK = { listen: ['/ip4/127.0.0.1/tcp/0'], mdns: false, statusPort: null };

describe('a node’s learner and data directory', () => {
  let dir = '';
  afterAll(async () => {
    if (dir !== '') await rm(dir, { recursive: true, force: true });
  });

  it('seeds each learner’s draw of peers’ groups from its peer id, or from the seed given', async () => {
    dir = await mkdtemp(join(tmpdir(), 'node-options-'));
    const seeds: number[] = [];
    for (const [name, seed] of [
      ['a', undefined],
      ['b', undefined],
      ['c', 7],
      ['d', 7],
    ] as const) {
      const node = await SwarmNode.start({
        dataDir: join(dir, name),
        ...LOOPBACK,
        ...(seed === undefined ? {} : { seed }),
      });
      seeds.push(node.status().learner?.seed as number);
      await node.stop();
    }
    const [a, b, c, d] = seeds;
    expect(a).not.toBe(b); // two peers, two draws
    expect(c).toBe(d); // an experiment's seed reproduces the draw
    expect(a).not.toBe(0);
  });

  it('removes what a killed save or first start left behind, whatever pid wrote it, and nothing else', async () => {
    const data = join(dir, 'leftovers');
    const checkpoints = join(data, 'checkpoints');
    await mkdir(checkpoints, { recursive: true });
    // pid 1 is always running, as a containerised node always is.
    const left = [
      join(checkpoints, '.step-0000000010.safetensors.tmp-1-0123456789ab'),
      join(checkpoints, `.step-0000000011.safetensors.tmp-${process.pid}-0123456789ab`),
      join(data, 'identity.key.a1b2c3d4e5f6.tmp'),
      join(data, '.write-test-1'),
    ];
    for (const file of left) await writeFile(file, 'half written');
    await writeFile(join(data, 'notes.txt'), 'the operator’s');
    const node = await SwarmNode.start({ dataDir: data, mode: 'bootstrap', ...LOOPBACK });
    await node.stop();
    expect((await readdir(checkpoints)).sort()).toEqual([]);
    expect((await readdir(data)).sort()).toEqual(['checkpoints', 'identity.key', 'notes.txt']);
  });

  it('takes μ and β from a flag, a SWARM_NODE_* variable or the config file, and logs the step statistics', async () => {
    const config = join(dir, 'config.json');
    await writeFile(config, JSON.stringify({ heldOutEvery: 2 }));
    const node = spawnNode(
      [
        'start',
        '--data-dir',
        join(dir, 'mu'),
        '--passes',
        '2',
        '--rounds',
        '2',
        '--config',
        config,
        '--no-mdns',
        '--no-status',
        '--listen',
        '/ip4/127.0.0.1/tcp/0',
      ],
      { SWARM_NODE_BETA: '0.05' },
    );
    const started = await node.waitFor((l) => l.event === 'started', 'the node to start');
    expect(started.learner).toMatchObject({ passes: 2, beta: 0.05 });
    const round = await node.waitFor((l) => l.event === 'round' && l.round === 1, 'its second round');
    const { learner, heldOut } = round as unknown as {
      learner: { stats: { clipFraction: number; approxKl: number; entropy: number; meanCompletionTokens: number } };
      heldOut: { passRate: number; difficulty: number } | null;
    };
    expect(learner.stats.entropy).toBeGreaterThan(0);
    expect(learner.stats.meanCompletionTokens).toBeGreaterThan(0);
    expect(learner.stats.approxKl).toBeGreaterThan(0); // a second pass sees a ratio other than 1
    expect(heldOut?.difficulty).toBe(1);
    expect(await node.exited).toBe(0);
  });
});
