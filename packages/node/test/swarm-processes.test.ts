import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { writeTinyModel } from '../../sapo/test/fixtures/tiny-models.js';
import type { NetworkStatus } from '../src/network-status.js';
import { BIN, eventually, fetchStatus, type NodeProcess, spawnNode, stopNode } from './helpers/processes.js';

// One bootstrap peer and four training nodes, each a real process on loopback (needs `npm run build`):
// three on the embedded model and one on a Hugging Face folder (a tiny random Qwen2 with LoRA) —
// different models and tokenizers in one swarm, sharing text.
const LOOPBACK = ['--listen', '/ip4/127.0.0.1/tcp/0', '--no-mdns', '--swarm', 'ci-swarm'];

interface Status {
  peerId: string;
  mode: string;
  round: number | null;
  policyVersion: number | null;
  externalGroupsUsed: number;
  peers: unknown[];
  network: NetworkStatus;
  rollouts: {
    received: { rollouts: Record<string, number>; tasks: Record<string, number> };
    acceptedByProducer: Record<string, number>;
  };
  model: { source: string; config: Record<string, unknown> } | null;
  memory: { rss: number; learner: { wasmHeapBytes: number | null } | null };
}

/**
 * Every verdict but `accept` and the duplicates gossip can deliver twice: what an honest swarm must
 * never see. (Rollouts on tasks published before the receiver was listening carry their proposer's
 * signed proof, so the join race costs nothing either.)
 */
const ALLOWED = new Set(['accept', 'ignore:duplicate']);
const refusals = (counts: Record<string, number>) =>
  Object.fromEntries(Object.entries(counts).filter(([key]) => !ALLOWED.has(key)));

describe('a swarm of swarm-node processes', () => {
  const processes: NodeProcess[] = [];
  let dir = '';

  afterAll(async () => {
    await Promise.all(processes.map((p) => stopNode(p, 'SIGKILL')));
    if (dir !== '') await rm(dir, { recursive: true, force: true });
  });

  it('gossips, checks and learns from peers, and a restarted node keeps its id and its steps', async () => {
    dir = await mkdtemp(join(tmpdir(), 'swarm-processes-'));
    const seed = spawnNode(['bootstrap', '--data-dir', join(dir, 'seed'), ...LOOPBACK]);
    processes.push(seed);
    const seedStarted = await seed.waitFor((l) => l.event === 'started', 'the bootstrap peer to start');
    const seedAddress = (seedStarted.addresses as string[])[0] as string;
    expect(seedAddress).toMatch(/^\/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\/12D3KooW/);

    const model = (await writeTinyModel(join(dir, 'tiny-qwen2'), { architecture: 'qwen2', dtype: 'BF16' })).dir;
    const startNode = (name: string, extra: string[] = []) => {
      const node = spawnNode([
        'start',
        ...extra,
        '--data-dir',
        join(dir, name),
        '--bootstrap',
        seedAddress,
        '--min-peers',
        '3',
        '--checkpoint-every',
        '2',
        ...LOOPBACK,
      ]);
      processes.push(node);
      return node;
    };
    const nodes = [...['a', 'b', 'c'].map((name) => startNode(name)), startNode('lora', ['--model', model])];
    const urls = await Promise.all(
      nodes.map(
        async (node) => (await node.waitFor((l) => l.event === 'started', 'a node to start')).statusUrl as string,
      ),
    );

    // Every node accepts peers' rollouts (re-verified) and trains on them, and its /status says so.
    const statuses = await Promise.all(
      urls.map((url) =>
        eventually(
          async () => {
            const status = (await fetchStatus(url)) as unknown as Status;
            const accepted = status.rollouts.received.rollouts.accept ?? 0;
            return accepted > 0 && status.externalGroupsUsed > 0 ? status : undefined;
          },
          `${url} to learn from peers`,
          240_000,
        ),
      ),
    );
    for (const status of statuses) {
      expect(status.peers.length).toBeGreaterThanOrEqual(1);
      // On loopback every peer is reached directly.
      expect(status.network.peers.direct).toBeGreaterThanOrEqual(1);
      expect(status.network.peers.relayed).toBe(0);
      expect(status.network.seeds).toMatchObject([{ address: seedAddress, connected: true, diagnosis: null }]);
    }
    // Both ways between models: the folder model trains on the embedded models' rollouts (above),
    // and they accept its rollouts, each re-tokenizing the other's text with its own tokenizer.
    const lora = statuses[3] as Status;
    expect(lora.model).toMatchObject({ source: model, config: { kind: 'lora', architecture: 'qwen2' } });
    await Promise.all(
      urls
        .slice(0, 3)
        .map((url) =>
          eventually(
            async () =>
              ((await fetchStatus(url)) as unknown as Status).rollouts.acceptedByProducer[lora.peerId] ?? undefined,
            `${url} to accept the folder model's rollouts`,
            240_000,
          ),
        ),
    );

    // 50 rounds on the defaults: no task or rollout of an honest node is refused, here or at the seed.
    const seedUrl = (await seed.waitFor((l) => l.event === 'started', 'the seed')).statusUrl as string;
    const after50 = await Promise.all(
      urls.map((url) =>
        eventually(
          async () => {
            const status = (await fetchStatus(url)) as unknown as Status;
            return (status.round ?? 0) >= 50 ? status : undefined;
          },
          `${url} to run 50 rounds`,
          480_000,
        ),
      ),
    );
    for (const status of [...after50, (await fetchStatus(seedUrl)) as unknown as Status]) {
      expect(refusals(status.rollouts.received.rollouts), `${status.mode} ${status.peerId}`).toEqual({});
      expect(refusals(status.rollouts.received.tasks), `${status.mode} ${status.peerId}`).toEqual({});
      expect(status.rollouts.received.tasks.accept).toBeGreaterThan(0);
    }
    for (const status of after50) {
      expect(status.memory.rss).toBeGreaterThan(0);
      expect(status.memory.learner?.wasmHeapBytes).toBeGreaterThan(0);
    }

    // The operator's view: `swarm-node status` reads the address from the data dir; /metrics is Prometheus text.
    const shown = spawnSync(process.execPath, [BIN, 'status', '--data-dir', join(dir, 'b')], { encoding: 'utf8' });
    expect(shown.status).toBe(0);
    expect(shown.stdout).toMatch(/^peer 12D3KooW/);
    expect(shown.stdout).toMatch(/rollouts .*accept \d+/);
    expect(shown.stdout).toMatch(/^ {2}relay +reservation on 12D3KooW/m);
    const atSeed = ((await fetchStatus(seedUrl)) as unknown as Status).network;
    expect(atSeed.relayReservations.granted).toBeGreaterThanOrEqual(1);
    const metrics = await (await fetch(`${urls[1]}/metrics`)).text();
    expect(metrics).toMatch(/^swarm_node_messages_total\{topic="rollouts",verdict="accept",reason=""\} \d+/m);
    expect(metrics).toMatch(/^libp2p_/m);
    expect(metrics).toMatch(/^gossipsub_mesh_peer_count\{topicStr="\/swarm-node\/ci-swarm\/rollouts\/1"\} [1-9]/m);

    // A malformed request to the status server gets an error, not a dead node.
    const { hostname, port } = new URL(urls[2] as string);
    const reply = await new Promise<string>((resolve, reject) => {
      const socket = connect(Number(port), hostname, () => socket.end('GET // HTTP/1.1\r\nHost: x\r\n\r\n'));
      let text = '';
      socket.on('data', (chunk) => {
        text += chunk.toString();
      });
      socket.on('end', () => resolve(text));
      socket.on('error', reject);
    });
    expect(reply).toMatch(/^HTTP\/1\.1 400/);
    expect((await fetchStatus(urls[2] as string)).peerId).toBe(statuses[2]?.peerId);

    // SIGTERM: the node finishes its step, saves, exits 0; started again, it is the same peer and goes on.
    const [first] = nodes as [NodeProcess];
    const before = statuses[0] as Status;
    expect(await stopNode(first)).toBe(0);
    const stopped = await first.waitFor((l) => l.event === 'stopped', 'the node to report its stop');
    expect(stopped.checkpoint).toMatch(/step-\d+\.safetensors$/);
    const lastRound = Math.max(...first.lines.filter((l) => l.event === 'round').map((l) => l.round as number));
    const lastStep = Math.max(...first.lines.filter((l) => l.event === 'round').map((l) => l.policyVersion as number));

    const again = startNode('a');
    const restarted = await again.waitFor((l) => l.event === 'started', 'the restarted node');
    expect(restarted.peerId).toBe(before.peerId);
    expect(lastStep).toBeGreaterThan(0);
    expect(restarted.policyVersion).toBe(lastStep);
    expect(restarted.startRound).toBe(lastRound + 1);
    const round = await again.waitFor((l) => l.event === 'round', 'a round after the restart');
    expect(round.round).toBe(lastRound + 1);
  }, 900_000); // four processes training 50 rounds on shared cores: slow machines need the room
});
