/**
 * How many nodes this machine holds: real `swarm-node` processes on loopback, a bootstrap peer and
 * N of them, for growing N, each with scripts/bench/node-probe.mjs loaded (its main thread's
 * longest event-loop stall per second, and its peak RSS).
 *
 *   training nodes      N × `swarm-node start` (embedded model, default settings)
 *   network-only nodes  N × `swarm-node start --roles evaluator` (no learner: they check and
 *                       relay what 2 training nodes beside them publish)
 *
 * For each N it waits until every training node has logged a round, then measures for --window
 * seconds: rounds per minute per training node, peers' groups used, per-node peak RSS, and each
 * node's longest and p99 one-second stall. N "holds" when the swarm still works (every training
 * node used peers' groups in the window), no stall reaches --max-stall-ms, and training nodes keep
 * at least a third of the first N's rounds per minute; stepping up stops at the first N that fails.
 * (N starts at 2 for training nodes: one alone has no peers' groups to use.)
 *
 *   npm run bench:scale                                        (defaults: about 12 minutes)
 *   npm run bench:scale -- --training 1,2,4 --network 4,16 --window 60
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { freemem, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    training: { type: 'string', default: '2,3,4,6' },
    network: { type: 'string', default: '4,16,32' },
    window: { type: 'string', default: '60' },
    'max-stall-ms': { type: 'string', default: '1000' },
  },
});
const WINDOW_S = Number(values.window);
const MAX_STALL_MS = Number(values['max-stall-ms']);
/** Training nodes beside the network-only ones, so that there is traffic to check and relay. */
const TRAFFIC_NODES = 2;
const PROBE = fileURLToPath(new URL('./node-probe.mjs', import.meta.url));
const BIN = fileURLToPath(new URL('../../packages/node/bin/swarm-node.js', import.meta.url));
const counts = (list: string) => list.split(',').map(Number);

interface Probe {
  peakRss: number;
  seconds: { time: number; maxStallMs: number; rss: number }[];
}

interface Node {
  child: ChildProcess;
  probeFile: string;
  training: boolean;
  /** Round records: when, and how many peers' groups the step used. */
  rounds: { time: number; externalUsed: number }[];
  started: Promise<string[]>;
  exited: Promise<void>;
}

function startNode(dir: string, name: string, args: string[], training: boolean): Node {
  const probeFile = join(dir, `${name}.probe.json`);
  const child = spawn(
    process.execPath,
    ['--import', PROBE, BIN, ...args, '--data-dir', join(dir, name), '--no-mdns', '--no-status', '--json'],
    { env: { ...process.env, SWARM_NODE_PROBE_OUT: probeFile }, stdio: ['ignore', 'pipe', 'ignore'], detached: true },
  );
  const rounds: Node['rounds'] = [];
  const exited = new Promise<void>((done) => child.once('exit', () => done()));
  const started = new Promise<string[]>((resolve, reject) => {
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      const record = JSON.parse(line) as { event: string; addresses?: string[]; groups?: { externalUsed: number } };
      if (record.event === 'started') resolve(record.addresses ?? []);
      if (record.event === 'round') rounds.push({ time: Date.now(), externalUsed: record.groups?.externalUsed ?? 0 });
    });
    child.once('exit', (code) => reject(new Error(`${name} exited (${code}) before it started`)));
  });
  return { child, probeFile, training, rounds, started, exited };
}

/** Every child of a run, stopped with SIGTERM (the probe writes on exit), killed if it lingers. */
async function stopAll(nodes: Node[]): Promise<void> {
  for (const node of nodes) node.child.kill('SIGTERM');
  const timer = setTimeout(() => {
    for (const node of nodes) if (node.child.exitCode === null) process.kill(-(node.child.pid ?? 0), 'SIGKILL');
  }, 60_000);
  await Promise.all(nodes.map((n) => n.exited));
  clearTimeout(timer);
}

interface Row {
  kind: string;
  n: number;
  roundsPerMinute: number;
  peersGroupsUsed: boolean;
  rssMiB: { training: number; network: number };
  stallMs: { max: number; p99: number };
  memoryLeftMiB: number;
}

const running = new Set<Node>();
async function measure(kind: 'training' | 'network', n: number): Promise<Row> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-scale-'));
  const swarm = `scale-${randomBytes(3).toString('hex')}`;
  const nodes: Node[] = [];
  try {
    const seed = startNode(dir, 'seed', ['bootstrap', '--swarm', swarm, '--listen', '/ip4/127.0.0.1/tcp/0'], false);
    nodes.push(seed);
    running.add(seed);
    const address = (await seed.started).find((a) => a.startsWith('/ip4/127.0.0.1/')) as string;
    const common = ['start', '--swarm', swarm, '--listen', '/ip4/127.0.0.1/tcp/0', '--bootstrap', address];
    const trainers = kind === 'training' ? n : TRAFFIC_NODES;
    for (let i = 0; i < trainers; i++) nodes.push(startNode(dir, `train-${i}`, common, true));
    if (kind === 'network') {
      for (let i = 0; i < n; i++) nodes.push(startNode(dir, `net-${i}`, [...common, '--roles', 'evaluator'], false));
    }
    for (const node of nodes) running.add(node);
    await Promise.all(nodes.map((node) => node.started));
    const training = nodes.filter((node) => node.training);
    // The window opens once every learner is loaded and has finished a round.
    while (training.some((node) => node.rounds.length === 0)) await new Promise((r) => setTimeout(r, 1000));
    const from = Date.now();
    await new Promise((r) => setTimeout(r, WINDOW_S * 1000));
    const to = Date.now();
    const memoryLeftMiB = freemem() / 2 ** 20;
    await stopAll(nodes);
    const inWindow = (node: Node) => node.rounds.filter((r) => r.time > from && r.time <= to);
    const probes = new Map(nodes.map((node) => [node, JSON.parse(readFileSync(node.probeFile, 'utf8')) as Probe]));
    const measured = kind === 'training' ? training : nodes.filter((node) => !node.training && node !== seed);
    const stalls = measured
      .flatMap((node) => probes.get(node)?.seconds.filter((s) => s.time > from && s.time <= to) ?? [])
      .map((s) => s.maxStallMs)
      .sort((a, b) => a - b);
    const meanRss = (group: Node[]) =>
      group.length === 0
        ? 0
        : group.reduce((sum, node) => sum + (probes.get(node)?.peakRss ?? 0), 0) / group.length / 2 ** 20;
    return {
      kind,
      n,
      roundsPerMinute:
        training.reduce((sum, node) => sum + inWindow(node).length, 0) / training.length / (WINDOW_S / 60),
      peersGroupsUsed: training.every((node) => inWindow(node).some((r) => r.externalUsed > 0)),
      rssMiB: {
        training: meanRss(training),
        network: meanRss(nodes.filter((node) => !node.training && node !== seed)),
      },
      stallMs: { max: stalls.at(-1) ?? Number.NaN, p99: stalls[Math.floor(stalls.length * 0.99)] ?? Number.NaN },
      memoryLeftMiB,
    };
  } finally {
    await stopAll(nodes.filter((node) => node.child.exitCode === null && node.child.signalCode === null));
    for (const node of nodes) running.delete(node);
    rmSync(dir, { recursive: true, force: true });
  }
}

process.on('SIGINT', () => {
  for (const node of running) if (node.child.pid !== undefined) process.kill(-node.child.pid, 'SIGKILL');
  process.exit(130);
});

console.log(`node ${process.version}, window ${WINDOW_S} s per step, stall limit ${MAX_STALL_MS} ms\n`);
console.log(
  "| nodes | N | rounds/min per training node | peers' groups used | peak RSS per node | longest stall | p99 stall | free memory after | holds |",
);
console.log('|---|---:|---:|---|---:|---:|---:|---:|---|');
for (const kind of ['training', 'network'] as const) {
  let baseline: number | null = null;
  for (const n of counts(kind === 'training' ? values.training : values.network)) {
    const row = await measure(kind, n);
    baseline ??= row.roundsPerMinute;
    const holds = row.peersGroupsUsed && row.stallMs.max < MAX_STALL_MS && row.roundsPerMinute >= baseline / 3;
    const rss = kind === 'training' ? row.rssMiB.training : row.rssMiB.network;
    console.log(
      `| ${kind === 'training' ? 'training' : `network-only (+${TRAFFIC_NODES} training)`} | ${n} | ${row.roundsPerMinute.toFixed(1)} | ${row.peersGroupsUsed ? 'yes' : 'no'} | ${rss.toFixed(0)} MiB | ${row.stallMs.max.toFixed(0)} ms | ${row.stallMs.p99.toFixed(0)} ms | ${(row.memoryLeftMiB / 1024).toFixed(1)} GiB | ${holds ? 'yes' : 'no'} |`,
    );
    if (!holds) break;
  }
}
