/**
 * Two nodes behind two separate NATs and a seed on a "public" segment, in network namespaces
 * (helpers/netns.ts): the seed (`swarm-node bootstrap`) on <segment>.1:4117, each node on 10.0.i.2
 * behind a masquerading router at <segment>.(i+1). Two segments:
 *
 *   internet  11.99.0.0/24, public to libp2p: the nodes start as DHT clients (their seed is public)
 *             and learn of each other from the gossip they receive
 *   CGNAT     100.64.0.0/24, private to libp2p (carrier-grade NAT space): DHT servers, as on a LAN
 *
 * Neither node can dial the other's addresses; both reserve a slot on the seed's relay, reach each
 * other through it (the keeper dials a peer it cannot reach directly through its seeds' relays), and
 * must accept and train on each other's rollouts. DCUtR is not expected to upgrade the relayed
 * connection to a direct one here: js-libp2p's TCP cannot hole-punch two masquerading NATs (it would
 * need TCP simultaneous open, js-libp2p issue #2620), so the test logs whether it did and asserts the
 * relayed connection. Needs root and `ip netns`; skipped with the reason otherwise, except under
 * CI=true as root.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { buildNatNetwork, type NatNetwork, netnsSkipReason, spawnNattedNodes, statusIn } from './helpers/netns.js';
import { type LogLine, type NodeProcess, spawnNode, stopNode } from './helpers/processes.js';

const reason = netnsSkipReason();
if (reason !== null) {
  if (process.env.CI === 'true' && process.getuid?.() === 0) {
    throw new Error(`the NAT test must run under CI as root, but cannot: ${reason}`);
  }
  console.log(`nat.test.ts skipped: ${reason}`);
}

interface Status {
  addresses: string[];
  peers: { id: string; address: string }[];
  rollouts: { acceptedByProducer: Record<string, number> };
}

const rounds = (node: NodeProcess) => node.lines.filter((line) => line.event === 'round') as (LogLine & Round)[];
interface Round {
  groups: { externalUsed: number };
  learner: { updated: boolean };
}

describe.skipIf(reason !== null).each([
  { segment: '11.99.0', name: 'internet' },
  { segment: '100.64.0', name: 'CGNAT' },
])('nodes behind two NATs, through a seed on the $name segment', ({ segment, name }) => {
  const dir = mkdtempSync(join(tmpdir(), 'swarm-node-nat-'));
  const processes: NodeProcess[] = [];
  let network: NatNetwork | undefined;

  afterAll(async () => {
    await Promise.all(processes.map((node) => stopNode(node)));
    network?.teardown();
    rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  it('reserve on the seed, exchange rollouts through it and train on them', async () => {
    const net = buildNatNetwork(2, segment);
    network = net;
    // The NAT holds: a node cannot reach the other's private address, nor its router's public one.
    expect(() => net.exec(net.nodes[0] as string, 'ping', '-c1', '-W1', '10.0.2.2')).toThrow();

    const seed = spawnNode(
      [
        'bootstrap',
        '--swarm',
        'nat',
        '--data-dir',
        join(dir, 'seed'),
        '--listen',
        `/ip4/${net.seedIp}/tcp/4117`,
        '--no-mdns',
        '--no-status',
      ],
      {},
      net.wrapper(net.pub),
    );
    processes.push(seed);
    const seedId = (await seed.waitFor((line) => line.event === 'started', 'the seed to start')).peerId as string;

    const nodes = spawnNattedNodes(net, {
      swarm: 'nat',
      dir,
      seedId,
      args: ['--rounds', '400', '--min-peers', '2'],
    });
    processes.push(...nodes);
    const started = await Promise.all(
      nodes.map((node) => node.waitFor((line) => line.event === 'started', 'a node to start', 120_000)),
    );
    const ids = started.map((line) => line.peerId as string);
    const statuses = () =>
      net.nodes.map((namespace, i) => statusIn(net, namespace, started[i]?.statusUrl as string) as unknown as Status);

    // Each node gets a /p2p-circuit address on the seed, a connection to the other, accepts the
    // other's rollouts and trains on peers' groups.
    const circuit = [false, false];
    const seen = [
      { relayed: false, direct: false },
      { relayed: false, direct: false },
    ];
    let last: Status[] = [];
    const done = () =>
      circuit.every(Boolean) &&
      seen.every((s) => s.relayed || s.direct) &&
      last.every((s, i) => (s.rollouts.acceptedByProducer[ids[1 - i] as string] ?? 0) > 0) &&
      nodes.every((node) => rounds(node).some((r) => r.groups.externalUsed > 0 && r.learner.updated));
    const deadline = Date.now() + 300_000;
    while (!done() && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 3000));
      last = statuses();
      for (const [i, { addresses, peers }] of last.entries()) {
        if (addresses.some((a) => a.includes(`/p2p/${seedId}/p2p-circuit`))) circuit[i] = true;
        for (const peer of peers.filter((p) => p.id === ids[1 - i])) {
          const kind = seen[i] as { relayed: boolean; direct: boolean };
          if (peer.address.includes('/p2p-circuit')) kind.relayed = true;
          else kind.direct = true;
        }
      }
    }
    console.log(
      `nat.test.ts (${name}): connections between the NAT'd nodes, as each saw them: ${JSON.stringify(seen)} (direct: DCUtR upgraded the relayed connection)`,
    );
    expect(circuit).toEqual([true, true]);
    // They reached each other, through the relay: the seed is the only path between the NATs.
    expect(seen.map((s) => s.relayed || s.direct)).toEqual([true, true]);
    expect(seen.some((s) => s.relayed)).toBe(true);
    for (const [i, status] of last.entries()) {
      // The seed publishes no rollouts, so the other node is the only producer a node can accept.
      expect(Object.keys(status.rollouts.acceptedByProducer)).toEqual([ids[1 - i]]);
      // And every peers' group it trained on came from that producer.
      expect(rounds(nodes[i] as NodeProcess).some((r) => r.groups.externalUsed > 0 && r.learner.updated)).toBe(true);
    }
  }, 480_000);
});
