/**
 * Two nodes behind two separate NATs and a seed on a "public" segment, in network namespaces:
 *
 *   ns pub: bridge br0 10.99.0.1/24, the seed (`swarm-node bootstrap`) on 10.99.0.1:4117
 *   ns ra/rb: routers, 10.99.0.2/.3 on the bridge, 10.0.1.1 / 10.0.2.1 inside, nftables masquerade
 *   ns na/nb: the nodes, 10.0.1.2 / 10.0.2.2, default route via their router
 *
 * Neither node can dial the other's addresses; both reserve a slot on the seed's relay, reach each
 * other through it, and must accept and train on each other's rollouts. Whether DCUtR upgrades the
 * relayed connection to a direct one depends on the NAT (and on TCP simultaneous open); it is logged.
 * Needs root and `ip netns`; skipped with the reason otherwise, except under CI=true as root.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type LogLine, type NodeProcess, spawnNode, stopNode } from './helpers/processes.js';

const id = `sn${process.pid % 100000}`;
const ns = (name: string) => `${id}${name}`;
const NAMESPACES = ['pub', 'ra', 'rb', 'na', 'nb'].map(ns);

function run(...args: string[]): string {
  return execFileSync(args[0] as string, args.slice(1), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}
const inNs = (name: string, ...args: string[]) => run('ip', 'netns', 'exec', ns(name), ...args);

function skipReason(): string | null {
  if (process.getuid?.() !== 0) return 'not root: network namespaces need CAP_SYS_ADMIN';
  try {
    run('ip', 'netns', 'add', ns('probe'));
    run('ip', 'netns', 'del', ns('probe'));
  } catch (error) {
    return `\`ip netns\` is unavailable: ${(error as Error).message.split('\n')[0]}`;
  }
  try {
    run('nft', '--version');
  } catch (error) {
    return `nft is unavailable: ${(error as Error).message.split('\n')[0]}`;
  }
  return null;
}

const reason = skipReason();
if (reason !== null) {
  if (process.env.CI === 'true' && process.getuid?.() === 0) {
    throw new Error(`the NAT test must run under CI as root, but cannot: ${reason}`);
  }
  console.log(`nat.test.ts skipped: ${reason}`);
}

/** A veth pair between two namespaces (interface names stay under 15 characters). */
function link(a: string, aName: string, b: string, bName: string) {
  const tmpA = `${id}${aName}`.slice(0, 15);
  const tmpB = `${id}${bName}x`.slice(0, 15);
  run('ip', 'link', 'add', tmpA, 'type', 'veth', 'peer', 'name', tmpB);
  run('ip', 'link', 'set', tmpA, 'netns', ns(a), 'name', aName);
  run('ip', 'link', 'set', tmpB, 'netns', ns(b), 'name', bName);
}

function buildNetwork() {
  for (const name of NAMESPACES) {
    run('ip', 'netns', 'add', name);
    run('ip', 'netns', 'exec', name, 'ip', 'link', 'set', 'lo', 'up');
  }
  inNs('pub', 'ip', 'link', 'add', 'br0', 'type', 'bridge');
  inNs('pub', 'ip', 'addr', 'add', '10.99.0.1/24', 'dev', 'br0');
  inNs('pub', 'ip', 'link', 'set', 'br0', 'up');
  for (const [router, node, n] of [
    ['ra', 'na', 1],
    ['rb', 'nb', 2],
  ] as const) {
    link('pub', `p${router}`, router, 'wan');
    inNs('pub', 'ip', 'link', 'set', `p${router}`, 'master', 'br0');
    inNs('pub', 'ip', 'link', 'set', `p${router}`, 'up');
    inNs(router, 'ip', 'addr', 'add', `10.99.0.${n + 1}/24`, 'dev', 'wan');
    inNs(router, 'ip', 'link', 'set', 'wan', 'up');
    link(router, 'lan', node, 'eth0');
    inNs(router, 'ip', 'addr', 'add', `10.0.${n}.1/24`, 'dev', 'lan');
    inNs(router, 'ip', 'link', 'set', 'lan', 'up');
    inNs(node, 'ip', 'addr', 'add', `10.0.${n}.2/24`, 'dev', 'eth0');
    inNs(node, 'ip', 'link', 'set', 'eth0', 'up');
    inNs(node, 'ip', 'route', 'add', 'default', 'via', `10.0.${n}.1`);
    inNs(router, 'sysctl', '-qw', 'net.ipv4.ip_forward=1');
    // The NAT: masquerade what leaves for the public side; nothing is forwarded in unless it answers.
    execFileSync('ip', ['netns', 'exec', ns(router), 'nft', '-f', '-'], {
      input: [
        'add table ip nat',
        'add chain ip nat post { type nat hook postrouting priority 100 ; }',
        'add rule ip nat post oifname "wan" masquerade',
        'add table ip filter',
        'add chain ip filter lanout { type filter hook forward priority 0 ; policy drop ; }',
        'add rule ip filter lanout ct state established,related accept',
        'add rule ip filter lanout iifname "lan" oifname "wan" accept',
      ].join('\n'),
      stdio: ['pipe', 'pipe', 'pipe'],
    });
  }
}

function teardown() {
  for (const name of NAMESPACES) {
    try {
      run('ip', 'netns', 'del', name);
    } catch (error) {
      const text = (error as Error).message;
      if (!/No such file|Cannot remove/.test(text))
        console.error(`nat.test.ts: cannot delete namespace ${name}: ${text}`);
    }
  }
}

interface Connection {
  id: string;
  address: string;
}

/** The node's /status, fetched from inside its namespace (it serves on that namespace's loopback). */
function status(name: string, url: string): { addresses: string[]; peers: Connection[] } {
  const text = inNs(
    name,
    process.execPath,
    '-e',
    'fetch(process.argv[1] + "/status").then((r) => r.text()).then((t) => process.stdout.write(t))',
    url,
  );
  return JSON.parse(text) as { addresses: string[]; peers: Connection[] };
}

const rounds = (node: NodeProcess) => node.lines.filter((line) => line.event === 'round') as (LogLine & Round)[];
interface Round {
  round: number;
  groups: { externalUsed: number };
  received: { rollouts: Record<string, number> };
  learner: { updated: boolean };
}

describe.skipIf(reason !== null)('nodes behind two NATs, through a seed', () => {
  const dir = mkdtempSync(join(tmpdir(), 'swarm-node-nat-'));
  const processes: NodeProcess[] = [];

  afterAll(async () => {
    await Promise.all(processes.map((node) => stopNode(node)));
    teardown();
    rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  it('reserve on the seed, exchange rollouts through it and train on them', async () => {
    teardown(); // a previous run killed before its afterAll
    buildNetwork();
    // The NAT holds: a node cannot reach the other's private address.
    expect(() => inNs('na', 'ping', '-c1', '-W1', '10.0.2.2')).toThrow();

    const seed = spawnNode(
      [
        'bootstrap',
        '--swarm',
        'nat',
        '--data-dir',
        join(dir, 'seed'),
        '--listen',
        '/ip4/10.99.0.1/tcp/4117',
        '--no-mdns',
        '--no-status',
      ],
      {},
      ['ip', 'netns', 'exec', ns('pub')],
    );
    processes.push(seed);
    const seedStarted = await seed.waitFor((line) => line.event === 'started', 'the seed to start');
    const seedAddress = `/ip4/10.99.0.1/tcp/4117/p2p/${seedStarted.peerId as string}`;

    const nodes = (['na', 'nb'] as const).map((name) => {
      const node = spawnNode(
        [
          'start',
          '--swarm',
          'nat',
          '--data-dir',
          join(dir, name),
          '--no-mdns',
          '--bootstrap',
          seedAddress,
          '--rounds',
          '400',
          '--min-peers',
          '2',
          '--held-out-every',
          '0',
          '--seed',
          name === 'na' ? '1' : '2',
        ],
        {},
        ['ip', 'netns', 'exec', ns(name)],
      );
      processes.push(node);
      return { name, node };
    });
    const started = await Promise.all(
      nodes.map(({ node }) => node.waitFor((line) => line.event === 'started', 'the node to start', 120_000)),
    );
    const urls = started.map((line) => line.statusUrl as string);
    const ids = started.map((line) => line.peerId as string);

    // Each node gets a /p2p-circuit address on the seed, and a connection to the other node.
    const deadline = Date.now() + 240_000;
    const seen: { relayed: boolean; direct: boolean }[] = [
      { relayed: false, direct: false },
      { relayed: false, direct: false },
    ];
    const circuit = [false, false];
    const done = () =>
      circuit.every(Boolean) &&
      seen.every((s) => s.relayed || s.direct) &&
      nodes.every(({ node }) => rounds(node).some((r) => r.groups.externalUsed > 0 && r.learner.updated));
    while (!done() && Date.now() < deadline) {
      for (const i of [0, 1]) {
        const name = nodes[i]?.name as string;
        const { addresses, peers } = status(name, urls[i] as string);
        if (addresses.some((a) => a.includes(`/p2p/${seedStarted.peerId as string}/p2p-circuit`))) circuit[i] = true;
        for (const peer of peers.filter((p) => p.id === ids[1 - i])) {
          if (peer.address.includes('/p2p-circuit')) (seen[i] as { relayed: boolean }).relayed = true;
          else (seen[i] as { direct: boolean }).direct = true;
        }
      }
      await new Promise((resolve) => setTimeout(resolve, 3000));
    }
    console.log(
      `nat.test.ts: connections between the NAT'd nodes: ${JSON.stringify(seen)} (direct: DCUtR upgraded through the NATs)`,
    );
    expect(circuit).toEqual([true, true]);
    // They reached each other through the relay (the seed is the only path between the NATs).
    expect(seen.some((s) => s.relayed || s.direct)).toBe(true);
    for (const { node } of nodes) {
      const all = rounds(node);
      expect(all.reduce((sum, r) => sum + (r.received.rollouts.accept ?? 0), 0)).toBeGreaterThan(0);
      expect(all.some((r) => r.groups.externalUsed > 0 && r.learner.updated)).toBe(true);
    }
  }, 420_000);
});
