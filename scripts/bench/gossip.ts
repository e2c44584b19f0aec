/**
 * Gossip on loopback, network only (no training): N node processes (scripts/bench/gossip-worker.ts),
 * the first a bootstrap peer the others dial. Each publishes `groups` rollouts a round (G = 8
 * completions of about 40 bytes: what the embedded model writes). Reports the delivery ratio (each
 * rollout should reach all N − 1 peers), p50/p99 delivery latency, and the bytes a node sends per
 * round — payload and everything on the wire — against one gradient of the embedded model.
 *
 *   npm run bench:gossip                          # 8, 16 and 32 processes
 *   npm run bench:gossip -- --nodes 8 --rounds 5
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { EMBEDDED_CONFIG, parameterShapes } from '@swarm-node/sapo';

const { values } = parseArgs({
  options: {
    nodes: { type: 'string', default: '8,16,32' },
    rounds: { type: 'string', default: '10' },
    'period-ms': { type: 'string', default: '2000' },
    groups: { type: 'string', default: '6' },
    /** Time after the last process is ready before publishing starts: meshes form on heartbeats (1 s). */
    'warmup-ms': { type: 'string', default: '10000' },
  },
});
const rounds = Number(values.rounds);
const periodMs = Number(values['period-ms']);
const groups = Number(values.groups);
const WORKER = fileURLToPath(new URL('./gossip-worker.ts', import.meta.url));
const gradientBytes = [...parameterShapes(EMBEDDED_CONFIG).values()].reduce(
  (sum, shape) => sum + 4 * shape.reduce((a, b) => a * b, 1),
  0,
);

interface Done {
  peerId: string;
  mesh: number;
  peers: number;
  payloadSent: number;
  wireSent: number;
  received: [string, number][];
}

const children = new Set<ChildProcess>();
const killAll = () => {
  for (const child of children) child.kill('SIGKILL');
};
process.on('exit', killAll);
process.on('SIGINT', () => process.exit(130));

function worker(args: string[]): { ready: Promise<{ address: string }>; done: Promise<Done> } {
  const child = spawn(process.execPath, ['--import', 'tsx', WORKER, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.add(child);
  let onReady: (value: { address: string }) => void = () => {};
  let onDone: (value: Done) => void = () => {};
  const ready = new Promise<{ address: string }>((resolve) => {
    onReady = resolve;
  });
  const done = new Promise<Done>((resolve, reject) => {
    onDone = resolve;
    child.on('exit', (code) => {
      children.delete(child);
      if (code !== 0) reject(new Error(`a worker exited with ${code}`));
    });
  });
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
    const message = JSON.parse(line) as { event: string } & Record<string, unknown>;
    if (message.event === 'ready') onReady(message as unknown as { address: string });
    if (message.event === 'done') onDone(message as unknown as Done);
  });
  return { ready, done };
}

const percentile = (sorted: number[], p: number) =>
  sorted.length === 0 ? Number.NaN : (sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] as number);

console.log(
  `gossip on loopback: ${rounds} rounds of ${groups} rollouts per node every ${periodMs} ms; one gradient of the embedded model = ${gradientBytes.toLocaleString('en-US')} bytes\n`,
);
console.log(
  '| nodes | delivered | p50 latency | p99 latency | mesh peers (mean) | payload sent / node / round | wire sent / node / round | gradient / wire |',
);
console.log('|---:|---:|---:|---:|---:|---:|---:|---:|');
for (const n of values.nodes.split(',').map(Number)) console.log(await runSize(n));
killAll();

/** One swarm of n processes; every worker starts publishing at the same agreed time. */
async function runSize(n: number): Promise<string> {
  const loaded = Date.now();
  // Far enough ahead for every process to load (about 1 s of CPU each, a few at a time) and the meshes to form.
  const loadBudget = 2500 * n;
  const startAt = Date.now() + loadBudget + Number(values['warmup-ms']);
  const first = worker(['-', String(rounds), String(periodMs), String(groups), String(startAt)]);
  const { address } = await first.ready;
  const rest: ReturnType<typeof worker>[] = [];
  for (let i = 1; i < n; i += 4) {
    const batch = Array.from({ length: Math.min(4, n - i) }, () =>
      worker([address, String(rounds), String(periodMs), String(groups), String(startAt)]),
    );
    await Promise.all(batch.map((w) => w.ready));
    rest.push(...batch);
  }
  if (Date.now() > startAt)
    throw new Error(`loading ${n} processes took ${(Date.now() - loaded) / 1000} s, past the start`);
  const done = await Promise.all([first, ...rest].map((w) => w.done));
  const latencies: number[] = [];
  let delivered = 0;
  for (const node of done) {
    const seen = new Set<string>();
    for (const [key, ms] of node.received) {
      if (seen.has(key) || key.startsWith(`${node.peerId}/`)) continue;
      seen.add(key);
      delivered++;
      latencies.push(ms);
    }
  }
  latencies.sort((a, b) => a - b);
  const expected = n * rounds * groups * (n - 1);
  const payload = mean(done.map((d) => d.payloadSent)) / rounds;
  const wire = mean(done.map((d) => d.wireSent)) / rounds;
  return `| ${n} | ${((100 * delivered) / expected).toFixed(1)} % | ${percentile(latencies, 0.5)} ms | ${percentile(latencies, 0.99)} ms | ${mean(done.map((d) => d.mesh)).toFixed(1)} | ${bytes(payload)} | ${bytes(wire)} | ${(gradientBytes / wire).toFixed(0)}× |`;
}

function mean(values: number[]): number {
  return values.reduce((a, b) => a + b, 0) / values.length;
}

function bytes(value: number): string {
  return value >= 1024 * 1024 ? `${(value / 1024 / 1024).toFixed(2)} MiB` : `${(value / 1024).toFixed(1)} KiB`;
}
