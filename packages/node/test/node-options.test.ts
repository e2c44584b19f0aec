import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type PeerWait, SwarmNode } from '../src/swarm-node.js';
import { type LogLine, spawnNode } from './helpers/processes.js';

const LOOPBACK = { listen: ['/ip4/127.0.0.1/tcp/0'], mdns: false, statusPort: null };

describe('a node’s learner and data directory', () => {
  let dir = '';
  // Here, not in the first test: a run of one test (-t) must not write into the working directory.
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'node-options-'));
  });
  afterAll(async () => {
    if (dir !== '') await rm(dir, { recursive: true, force: true });
  });

  it('seeds each learner’s draw of peers’ groups from its peer id, or from the seed given', async () => {
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
        '8',
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
    type Round = LogLine & {
      round: number;
      learner: {
        stats: { clipFraction: number; approxKl: number; entropy: number; meanCompletionTokens: number } | null;
      };
      heldOut: { passRate: number; difficulty: number } | null;
    };
    const second = (await node.waitFor((l) => l.event === 'round' && l.round === 1, 'its second round')) as Round;
    expect(second.heldOut?.difficulty).toBe(1);
    // A round whose groups all had equal rewards makes no update and has no statistics: take the first that did.
    const updated = (await node.waitFor(
      (l) => l.event === 'round' && (l as Round).learner.stats !== null,
      'a round with an update',
    )) as Round;
    const stats = updated.learner.stats;
    expect(stats?.entropy).toBeGreaterThan(0);
    expect(stats?.meanCompletionTokens).toBeGreaterThan(0);
    expect(stats?.approxKl).toBeGreaterThan(0); // a second pass sees a ratio other than 1
    expect(await node.exited).toBe(0);
  });

  it('waits for its peers before round 0 (waitForPeers), and trains with those it has once the wait is up', async () => {
    const events: string[] = [];
    const node = await SwarmNode.start({
      dataDir: join(dir, 'waits'),
      ...LOOPBACK,
      rounds: 1,
      localGroups: 1,
      groupSize: 2,
      maxNewTokens: 4,
      waitForPeers: 1,
    });
    node.on('waited', (wait) => events.push(`waited ${wait.found}/${wait.wanted} ${wait.timedOut}`));
    node.on('round', (metrics) => events.push(`round ${metrics.round}`));
    const running = node.run();
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(events).toEqual([]); // alone: no round yet
    // A seed joins: it subscribes to the rollouts topic, and the node starts.
    const seed = await SwarmNode.start({
      dataDir: join(dir, 'waits-seed'),
      mode: 'bootstrap',
      ...LOOPBACK,
      bootstrap: node.status().addresses,
    });
    await running;
    expect(events).toEqual(['waited 1/1 false', 'round 0']);
    await Promise.all([node.stop(), seed.stop()]);

    const alone = await SwarmNode.start({
      dataDir: join(dir, 'waits-alone'),
      ...LOOPBACK,
      rounds: 1,
      localGroups: 1,
      groupSize: 2,
      maxNewTokens: 4,
      waitForPeers: 2,
      waitForPeersMs: 1000,
    });
    const waits: PeerWait[] = [];
    alone.on('waited', (wait) => waits.push(wait));
    await alone.run();
    expect(waits).toMatchObject([{ wanted: 2, found: 0, timedOut: true }]);
    expect(alone.status().round).toBe(0);
    await alone.stop();
  });
});
