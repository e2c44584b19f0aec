import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { eventually, fetchStatus, type NodeProcess, spawnNode, stopNode } from './helpers/processes.js';

// A free rider among real node processes on loopback (needs `npm run build`): two nodes that share
// and one started with SWARM_NODE_NO_SHARE (`--no-share`), all through one bootstrap peer.
const LOOPBACK = ['--listen', '/ip4/127.0.0.1/tcp/0', '--no-mdns', '--swarm', 'ci-free-rider'];
const SMALL = ['-I', '2', '-J', '2', '-G', '4', '--max-new-tokens', '16', '--held-out-every', '0'];

interface Status {
  peerId: string;
  round: number | null;
  externalGroupsUsed: number;
  rollouts: { sent: number; acceptedByProducer: Record<string, number> };
}

describe('a node started with --no-share', () => {
  const processes: NodeProcess[] = [];
  let dir = '';

  afterAll(async () => {
    await Promise.all(processes.map((p) => stopNode(p, 'SIGKILL')));
    if (dir !== '') await rm(dir, { recursive: true, force: true });
  });

  it("publishes no rollout, yet trains on its peers'; its peers accept each other's and none of its", async () => {
    dir = await mkdtemp(join(tmpdir(), 'swarm-free-rider-'));
    const seed = spawnNode(['bootstrap', '--data-dir', join(dir, 'seed'), ...LOOPBACK]);
    processes.push(seed);
    const seedAddress = ((await seed.waitFor((l) => l.event === 'started', 'the bootstrap')).addresses as string[])[0];
    const start = (name: string, env: Record<string, string> = {}) => {
      const node = spawnNode(
        [
          'start',
          '--data-dir',
          join(dir, name),
          '--bootstrap',
          seedAddress as string,
          '--min-peers',
          '3',
          ...SMALL,
          ...LOOPBACK,
        ],
        env,
      );
      processes.push(node);
      return node;
    };
    const nodes = [start('a'), start('b'), start('rider', { SWARM_NODE_NO_SHARE: '1' })];
    const urls = await Promise.all(
      nodes.map(
        async (node) => (await node.waitFor((l) => l.event === 'started', 'a node to start')).statusUrl as string,
      ),
    );
    const status = async (url: string) => (await fetchStatus(url)) as unknown as Status;
    const [a, b, rider] = (await Promise.all(urls.map(status))) as [Status, Status, Status];

    // The rider learns from both sharers' groups...
    const fed = await eventually(
      async () => {
        const now = await status(urls[2] as string);
        const fromBoth = [a, b].every((peer) => (now.rollouts.acceptedByProducer[peer.peerId] ?? 0) > 0);
        // Two rounds of its own at least (rounds count from 0): a sharer would have published by then.
        return fromBoth && now.externalGroupsUsed > 0 && (now.round ?? 0) >= 1 ? now : undefined;
      },
      'the rider to train on both sharers’ rollouts',
      240_000,
    );
    // ...while the sharers, which hear each other and have published rollouts of their own (a loaded
    // machine can deliver a peer's before a node's own first round ends), have heard nothing from it.
    const [afterA, afterB] = await Promise.all(
      urls.slice(0, 2).map((url, i) =>
        eventually(
          async () => {
            const now = await status(url);
            const other = i === 0 ? b : a;
            return (now.rollouts.acceptedByProducer[other.peerId] ?? 0) > 0 && now.rollouts.sent > 0 ? now : undefined;
          },
          `${url} to publish and to accept its fellow sharer's rollouts`,
          240_000,
        ),
      ),
    );
    expect(fed.rollouts.sent).toBe(0);
    for (const sharer of [afterA, afterB] as Status[]) {
      expect(sharer.rollouts.acceptedByProducer[rider.peerId]).toBeUndefined();
    }
    // Its round records say so too: every one published nothing.
    const rounds = nodes[2]?.lines.filter((l) => l.event === 'round') as unknown as {
      groups: { local: number; published: number };
    }[];
    expect(rounds.length).toBeGreaterThan(0);
    expect(rounds.every((r) => r.groups.published === 0 && r.groups.local > 0)).toBe(true);
  }, 600_000);
});
