/**
 * What relaying costs a seed. For each K: a seed (`swarm-node bootstrap`) on a public segment and K
 * training nodes (`swarm-node start`, the embedded model, default settings), each behind its own NAT
 * (packages/node/test/helpers/netns.ts, the NAT test's topology): every pair of nodes reaches each
 * other only through the seed's circuit relay, K·(K−1)/2 relayed connections. Once every node holds
 * a connection to each of the others and has finished a round, measure for --rounds rounds (each
 * node's own), on the seed:
 *
 *   relayed bytes  libp2p's stream byte counters on the seed's /metrics for the circuit-relay
 *                  protocols (hop: from the dialling node, stop: to the dialled one): bytes entering
 *                  the relay, each leaves it once more
 *   wire bytes     the seed's interface (br0 in its namespace), in + out: relay, its own gossip and
 *                  DHT, TCP/IP and encryption overhead
 *   CPU            the seed process's user + system time (/proc/<pid>/stat)
 *
 * divided by relayed nodes (K) and rounds; and, from the same run, each node's rollout bytes
 * published a round (its swarm_node_payload_bytes_total), so that relay bytes / rollout bytes shows.
 * Needs root, iproute2 and nftables; prints why and exits 0 without them.
 *
 *   npm run bench:relay                          (K = 2 and 4, 30 rounds each)
 *   npm run bench:relay -- --nodes 2 --rounds 5
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  buildNatNetwork,
  fetchIn,
  type NatNetwork,
  netnsSkipReason,
  spawnNattedNodes,
} from '../../packages/node/test/helpers/netns.js';
import { type NodeProcess, spawnNode, stopNode } from '../../packages/node/test/helpers/processes.js';
import { commitOf } from './probe.js';

const { values } = parseArgs({
  options: {
    nodes: { type: 'string', default: '2,4' },
    rounds: { type: 'string', default: '30' },
    'start-timeout': { type: 'string', default: '300' },
  },
});
const ROUNDS = Number(values.rounds);
const START_TIMEOUT_MS = Number(values['start-timeout']) * 1000;
const SIZES = values.nodes.split(',').map(Number);
if (!(ROUNDS >= 1) || !(START_TIMEOUT_MS > 0) || !SIZES.every((k) => Number.isInteger(k) && k >= 2)) {
  throw new RangeError('--rounds and --start-timeout must be positive, --nodes whole numbers of 2 or more');
}
const HERE = fileURLToPath(new URL('../..', import.meta.url));
const KiB = 1024;
const TICKS_PER_SECOND = 100; // USER_HZ: /proc's clock ticks on Linux

interface Snapshot {
  /** Bytes entering the seed's relay (hop and stop streams' received bytes). */
  relayed: number;
  /** The seed's interface, bytes in + out. */
  wire: number;
  /** The seed's CPU seconds, user + system. */
  cpu: number;
  /** Per node: rounds finished and rollout payload bytes it published. */
  rounds: number[];
  rolloutBytes: number[];
}

/** Sum of a Prometheus text's samples of `metric` whose labels match `labels`. */
function sample(text: string, metric: string, labels: RegExp): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${metric}{`)) continue;
    const close = line.lastIndexOf('}');
    if (labels.test(line.slice(metric.length, close + 1))) sum += Number(line.slice(close + 1));
  }
  return sum;
}

function cpuSeconds(pid: number): number {
  // Fields after the command name (which may hold spaces, so split after its closing parenthesis):
  // utime and stime are the 14th and 15th of the whole line.
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
}

/** The processes of the swarm being measured, stopped on a signal too. */
const processes: NodeProcess[] = [];
let interrupted = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    interrupted = true;
    for (const p of processes) void stopNode(p);
  });
}

const roundsOf = (node: NodeProcess) => node.lines.filter((line) => line.event === 'round').length;

async function measure(k: number): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-relay-'));
  let net: NatNetwork | undefined;
  try {
    net = buildNatNetwork(k);
    const network = net;
    const seed = spawnNode(
      [
        'bootstrap',
        '--swarm',
        'relay-bench',
        '--data-dir',
        join(dir, 'seed'),
        '--listen',
        `/ip4/${network.seedIp}/tcp/4117`,
        '--no-mdns',
      ],
      {},
      network.wrapper(network.pub),
    );
    processes.push(seed);
    const seedStarted = await seed.waitFor((line) => line.event === 'started', 'the seed to start');
    const seedUrl = seedStarted.statusUrl as string;
    const nodes = spawnNattedNodes(network, {
      swarm: 'relay-bench',
      dir,
      seedId: seedStarted.peerId as string,
      // The seed and every other node.
      args: ['--min-peers', String(k)],
    });
    processes.push(...nodes);
    const started = await Promise.all(
      nodes.map((node) => node.waitFor((line) => line.event === 'started', 'a node to start', START_TIMEOUT_MS)),
    );
    const ids = started.map((line) => line.peerId as string);
    const urls = started.map((line) => line.statusUrl as string);

    // Ready: every node has a relayed connection to each of the others and has finished a round.
    const deadline = Date.now() + START_TIMEOUT_MS;
    const meshed = () =>
      network.nodes.every((namespace, i) => {
        const status = JSON.parse(fetchIn(network, namespace, `${urls[i]}/status`)) as {
          peers: { id: string; address: string }[];
        };
        const relayed = new Set(status.peers.filter((p) => p.address.includes('/p2p-circuit')).map((p) => p.id));
        return ids.every((id, j) => j === i || relayed.has(id));
      });
    while (!(nodes.every((node) => roundsOf(node) > 0) && meshed())) {
      if (Date.now() > deadline) throw new Error(`K = ${k}: the nodes did not all reach each other through the relay`);
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }

    const snapshot = (): Snapshot => {
      const seedMetrics = fetchIn(network, network.pub, `${seedUrl}/metrics`);
      const counter = (name: string) =>
        Number(network.exec(network.pub, 'cat', `/sys/class/net/br0/statistics/${name}`).trim());
      return {
        relayed: sample(
          seedMetrics,
          'libp2p_data_transfer_bytes_total',
          /protocol="\/libp2p\/circuit\/relay\/0\.2\.0\/(hop|stop) received"/,
        ),
        wire: counter('rx_bytes') + counter('tx_bytes'),
        cpu: cpuSeconds(seed.child.pid as number),
        rounds: nodes.map(roundsOf),
        rolloutBytes: network.nodes.map((namespace, i) =>
          sample(
            fetchIn(network, namespace, `${urls[i]}/metrics`),
            'swarm_node_payload_bytes_total',
            /direction="sent".*topic="rollouts"|topic="rollouts".*direction="sent"/,
          ),
        ),
      };
    };
    const before = snapshot();
    const startedAt = Date.now();
    while (nodes.some((node, i) => roundsOf(node) - (before.rounds[i] as number) < ROUNDS)) {
      if (processes.some((p) => p.child.exitCode !== null)) throw new Error(`K = ${k}: a process exited`);
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }
    const after = snapshot();
    const seconds = (Date.now() - startedAt) / 1000;

    const rounds = after.rounds.map((r, i) => r - (before.rounds[i] as number));
    const nodeRounds = rounds.reduce((a, b) => a + b, 0);
    const rollout = after.rolloutBytes.reduce((sum, b, i) => sum + b - (before.rolloutBytes[i] as number), 0);
    const relayed = after.relayed - before.relayed;
    const connections = (k * (k - 1)) / 2;
    const perNodeRound = (value: number) => value / nodeRounds;
    const rolloutPerNodeRound = perNodeRound(rollout);
    return [
      `| ${k} | ${connections} | ${fixed(seconds)} s, ${fixed(nodeRounds / k, 1)} rounds per node | `,
      `${fixed(perNodeRound(relayed) / KiB, 1)} KiB | ${fixed(perNodeRound(after.wire - before.wire) / KiB, 1)} KiB | `,
      `${fixed(perNodeRound(after.cpu - before.cpu) * 1000)} ms | `,
      `${fixed(rolloutPerNodeRound / KiB, 1)} KiB | ${fixed(perNodeRound(relayed) / rolloutPerNodeRound, 1)} | `,
      `${fixed(relayed / connections / (nodeRounds / k) / KiB, 1)} KiB |`,
    ].join('');
  } finally {
    await Promise.all(processes.splice(0).map((p) => stopNode(p)));
    net?.teardown();
    rmSync(dir, { recursive: true, force: true });
  }
}

const fixed = (value: number, digits = 0) => (Number.isFinite(value) ? value.toFixed(digits) : '-');
const loads = () =>
  `load average ${loadavg()
    .map((l) => l.toFixed(2))
    .join(' ')}`;

const reason = netnsSkipReason();
if (reason !== null) {
  console.log(`bench:relay skipped: ${reason}`);
  process.exit(0);
}
const began = Date.now();
console.log(
  `${new Date(began).toISOString()}, commit ${commitOf(HERE)}, node ${process.version}, ${cpus().length} cores, ${loads()}; ` +
    `${ROUNDS} rounds per node measured after every node reached every other through the relay\n`,
);
console.log(
  '| K nodes behind NAT | relayed connections | window | relayed bytes per node per round (entering the relay) | seed wire bytes per node per round (in + out) | seed CPU per node per round | rollout bytes published per node per round | relayed / rollout bytes | relayed bytes per connection per round |',
);
console.log('|---:|---:|---|---:|---:|---:|---:|---:|---:|');
for (const k of SIZES) {
  if (interrupted) break;
  console.log(await measure(k));
}
console.log(`\n${fixed((Date.now() - began) / 60_000, 1)} minutes; ${loads()}`);
if (interrupted) process.exit(130);
