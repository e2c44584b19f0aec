/**
 * Nodes behind NATs and a seed on a "public" segment, built out of network namespaces (the NAT test
 * and `npm run bench:relay` share it):
 *
 *   <id>pub: bridge br0 <segment>.1/24, where the seed listens
 *   <id>r1…rN: routers, <segment>.(i+1) on the bridge, 10.0.i.1 inside, nftables masquerade
 *   <id>n1…nN: the nodes, 10.0.i.2, default route via their router
 *
 * The default segment, 11.99.0.0/24, looks like the internet to libp2p; 10/8, 100.64/10 (carrier-grade
 * NAT) and the documentation ranges are private addresses to it, which AutoNAT does not verify and
 * the DHT treats as a LAN. Needs root, iproute2 and nftables.
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { type NodeProcess, spawnNode } from './processes.js';

/** Why namespaces cannot be built here, or null when they can. */
export function netnsSkipReason(): string | null {
  if (process.getuid?.() !== 0) return 'not root: network namespaces need CAP_SYS_ADMIN';
  const probe = `sn${process.pid}probe`;
  try {
    run('ip', 'netns', 'add', probe);
    run('ip', 'netns', 'del', probe);
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

export interface NatNetwork {
  /** Where the seed listens: <segment>.1. */
  seedIp: string;
  /** Namespace names: the public one and each NAT'd node's. */
  pub: string;
  nodes: string[];
  /** Runs a command in a namespace and returns its stdout. */
  exec(namespace: string, ...args: string[]): string;
  /** The prefix that runs a command in a namespace, for spawnNode's wrapper. */
  wrapper(namespace: string): string[];
  /** Deletes the namespaces (their processes must have exited for the interfaces to go). */
  teardown(): void;
}

function run(...args: string[]): string {
  return execFileSync(args[0] as string, args.slice(1), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

const OURS = /^sn(\d+)(pub|r\d+|n\d+)$/;

/** Deletes namespaces left by runs whose process is gone (killed before it could tear down). */
function removeOrphans() {
  for (const line of run('ip', 'netns', 'list').split('\n')) {
    const name = line.split(' ')[0] ?? '';
    const owner = OURS.exec(name)?.[1];
    if (owner === undefined) continue;
    try {
      process.kill(Number(owner), 0);
    } catch {
      deleteNamespace(name);
    }
  }
}

function deleteNamespace(name: string) {
  try {
    run('ip', 'netns', 'del', name);
  } catch (error) {
    const text = (error as Error).message;
    if (!/No such file|Cannot remove/.test(text)) console.error(`netns: cannot delete namespace ${name}: ${text}`);
  }
}

/** Builds the topology with `natted` NAT'd nodes; namespaces are named after this process's pid. */
export function buildNatNetwork(natted: number, segment = '11.99.0'): NatNetwork {
  removeOrphans();
  const id = `sn${process.pid}`;
  const pub = `${id}pub`;
  const routers = Array.from({ length: natted }, (_, i) => `${id}r${i + 1}`);
  const nodes = Array.from({ length: natted }, (_, i) => `${id}n${i + 1}`);
  const exec = (namespace: string, ...args: string[]) => run('ip', 'netns', 'exec', namespace, ...args);
  const network: NatNetwork = {
    seedIp: `${segment}.1`,
    pub,
    nodes,
    exec,
    wrapper: (namespace) => ['ip', 'netns', 'exec', namespace],
    teardown: () => {
      for (const name of [pub, ...routers, ...nodes]) deleteNamespace(name);
    },
  };
  // A veth pair between two namespaces; created under unique names in the root namespace, then moved and renamed.
  let pairs = 0;
  const link = (a: string, aName: string, b: string, bName: string) => {
    pairs += 1;
    const tmpA = `${id}a${pairs}`;
    const tmpB = `${id}b${pairs}`;
    run('ip', 'link', 'add', tmpA, 'type', 'veth', 'peer', 'name', tmpB);
    run('ip', 'link', 'set', tmpA, 'netns', a, 'name', aName);
    run('ip', 'link', 'set', tmpB, 'netns', b, 'name', bName);
    exec(a, 'ip', 'link', 'set', aName, 'up');
    exec(b, 'ip', 'link', 'set', bName, 'up');
  };
  try {
    for (const name of [pub, ...routers, ...nodes]) {
      run('ip', 'netns', 'add', name);
      exec(name, 'ip', 'link', 'set', 'lo', 'up');
    }
    exec(pub, 'ip', 'link', 'add', 'br0', 'type', 'bridge');
    exec(pub, 'ip', 'addr', 'add', `${segment}.1/24`, 'dev', 'br0');
    exec(pub, 'ip', 'link', 'set', 'br0', 'up');
    for (let i = 1; i <= natted; i++) {
      const router = routers[i - 1] as string;
      const node = nodes[i - 1] as string;
      link(pub, `pr${i}`, router, 'wan');
      exec(pub, 'ip', 'link', 'set', `pr${i}`, 'master', 'br0');
      exec(router, 'ip', 'addr', 'add', `${segment}.${i + 1}/24`, 'dev', 'wan');
      link(router, 'lan', node, 'eth0');
      exec(router, 'ip', 'addr', 'add', `10.0.${i}.1/24`, 'dev', 'lan');
      exec(node, 'ip', 'addr', 'add', `10.0.${i}.2/24`, 'dev', 'eth0');
      exec(node, 'ip', 'route', 'add', 'default', 'via', `10.0.${i}.1`);
      exec(router, 'sysctl', '-qw', 'net.ipv4.ip_forward=1');
      // The NAT: masquerade what leaves for the public side; nothing is forwarded in unless it answers.
      execFileSync('ip', ['netns', 'exec', router, 'nft', '-f', '-'], {
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
  } catch (error) {
    network.teardown();
    throw error;
  }
  return network;
}

/** The body of a GET from inside a namespace (a node serves /status and /metrics on that namespace's loopback). */
export function fetchIn(network: NatNetwork, namespace: string, url: string): string {
  return network.exec(
    namespace,
    process.execPath,
    '-e',
    'fetch(process.argv[1]).then((r) => r.text()).then((t) => process.stdout.write(t))',
    url,
  );
}

/** A node's /status, fetched from inside its namespace. */
export const statusIn = (network: NatNetwork, namespace: string, url: string): Record<string, unknown> =>
  JSON.parse(fetchIn(network, namespace, `${url}/status`)) as Record<string, unknown>;

/**
 * Starts `swarm-node start` in each NAT'd namespace, bootstrapped on the seed at <segment>.1:4117:
 * data dirs `<dir>/n1`, `<dir>/n2`, …, training seeds 1, 2, …, no mDNS; `args` adds the caller's flags.
 */
export function spawnNattedNodes(
  network: NatNetwork,
  options: { swarm: string; dir: string; seedId: string; args: string[] },
): NodeProcess[] {
  return network.nodes.map((namespace, i) =>
    spawnNode(
      [
        'start',
        '--swarm',
        options.swarm,
        '--data-dir',
        join(options.dir, `n${i + 1}`),
        '--no-mdns',
        '--bootstrap',
        `/ip4/${network.seedIp}/tcp/4117/p2p/${options.seedId}`,
        '--held-out-every',
        '0',
        '--seed',
        String(i + 1),
        ...options.args,
      ],
      {},
      network.wrapper(namespace),
    ),
  );
}
