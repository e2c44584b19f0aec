/**
 * Gossip on loopback, network only (no training): N node processes (scripts/bench/gossip-worker.ts),
 * the first a bootstrap peer the others dial. After the meshes form, each node publishes `groups`
 * rollouts a round for `rounds` rounds. A rollout carries a group the embedded model really sampled
 * (G = 8 completions of up to 48 new tokens and their rewards), drawn once at start, or synthetic
 * completions of `--completion-bytes` bytes. Reports the delivery ratio (each rollout should reach
 * all N − 1 peers), p50/p99 delivery latency, the CPU the swarm used, and the bytes a node sends per
 * round — payload and everything on the wire — against one gradient of the embedded model. A second
 * table says where missing deliveries went: every drop reason of our validator, gossipsub's own
 * counts, scores, closed connections. The drain (late messages still count) starts once the last
 * node has published: a starved node's rounds run late, and its last messages must count too.
 *
 *   npm run bench:gossip                                  # 8, 16 and 32 processes, our stack
 *   npm run bench:gossip -- --nodes 8,16 --stack both     # ours beside bare libp2p + gossipsub, same load
 *   npm run bench:gossip -- --nodes 16 --rounds 60 --period-ms 333 --groups 1 --stack both --completion-bytes 27
 *                                                         # 440-byte rollouts, 3 a second per node
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { encodeMessage } from '@swarm-node/node';
import { deriveSeed } from '@swarm-node/roles';
import {
  ByteTokenizer,
  EMBEDDED_CONFIG,
  EMBEDDED_MODEL_PATH,
  generateText,
  loadCheckpoint,
  Policy,
  type PolicyConfig,
  parameterShapes,
  selectBackend,
} from '@swarm-node/sapo';
import { FAMILIES } from '@swarm-node/tasks';
import type { Group, WorkerConfig } from './gossip-worker.js';

const { values } = parseArgs({
  options: {
    nodes: { type: 'string', default: '8,16,32' },
    rounds: { type: 'string', default: '10' },
    'period-ms': { type: 'string', default: '2000' },
    groups: { type: 'string', default: '6' },
    /** 'ours' (createHost + GossipTransport), 'bare' (libp2p + gossipsub defaults) or 'both'. */
    stack: { type: 'string', default: 'ours' },
    /** Completions of this many bytes instead of the embedded model's own. */
    'completion-bytes': { type: 'string' },
    /** Quiet time after every node has mesh peers (or after 30 s), before the rounds. */
    'warmup-ms': { type: 'string', default: '5000' },
    /** Time after the last node's last round for late messages to arrive (they still count as delivered). */
    'drain-ms': { type: 'string', default: '15000' },
    /** Stack 'bare': random peers each node dials besides the seed. */
    'bare-dial': { type: 'string', default: '4' },
    /** Processes started at once: loading libp2p costs about 1 s of CPU each. */
    stagger: { type: 'string', default: '4' },
    /** Before each size, wait up to this long for other processes to leave the CPU idle. */
    'quiet-wait-s': { type: 'string', default: '300' },
    /** Append every size's raw worker reports to this file, one JSON line each. */
    raw: { type: 'string' },
    /** Wall-clock limit of one swarm size, start-up to shutdown. */
    'budget-s': { type: 'string', default: '240' },
  },
});
const positive = (name: string, text: string | undefined) => {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1) throw new RangeError(`--${name} must be a positive integer, got ${text}`);
  return value;
};
const sizes = values.nodes.split(',').map((n) => positive('nodes', n));
if (sizes.some((n) => n < 2)) throw new RangeError('--nodes: a swarm needs at least 2 processes');
const rounds = positive('rounds', values.rounds);
const periodMs = positive('period-ms', values['period-ms']);
const groups = positive('groups', values.groups);
const warmupMs = Number(values['warmup-ms']);
const drainMs = Number(values['drain-ms']);
const bareDial = Number(values['bare-dial']);
const stagger = positive('stagger', values.stagger);
const budgetMs = positive('budget-s', values['budget-s']) * 1000;
const quietWaitMs = Number(values['quiet-wait-s']) * 1000;
const stacks: WorkerConfig['stack'][] =
  values.stack === 'both' ? ['ours', 'bare'] : values.stack === 'bare' ? ['bare'] : ['ours'];
if (!['ours', 'bare', 'both'].includes(values.stack)) throw new RangeError('--stack must be ours, bare or both');
const G = 8;
const MAX_NEW_TOKENS = 48; // what the round loop samples (packages/roles/src/round-loop.ts)
const WORKER = fileURLToPath(new URL('./gossip-worker.ts', import.meta.url));
const cores = availableParallelism();
const gradientBytes = [...parameterShapes(EMBEDDED_CONFIG as PolicyConfig).values()].reduce(
  (sum, shape) => sum + 4 * shape.reduce((a, b) => a * b, 1),
  0,
);

interface Ready {
  peerId: string;
  address: string;
}
interface Done extends Ready {
  mesh: number;
  /** Connected peers when the rounds start and when they end. */
  connections: [number, number];
  payloadSent: number;
  wireSent: number;
  cpuMs: number;
  /** The rounds took this long on the worker's clock (longer than planned when it is starved). */
  windowMs: number;
  lagP99Ms: number;
  /** Connections that closed during the rounds and the drain (before any node stopped). */
  disconnects: number;
  /** Gossipsub scores of the connected peers at the end of the rounds. */
  scores: number[];
  links: { unreachable: string[]; multiplyConnected: number };
  /** Drop reasons and gossipsub's counts over the rounds and the drain (gossip-worker.ts, counters()). */
  counters: Record<string, number>;
  received: [string, number][];
}
/** What a size's run says about its losses, printed after the main table. */
interface Losses {
  column: string;
  counts: Map<string, number>;
}
interface Worker {
  child: ChildProcess;
  ready: Promise<Ready>;
  meshed: Promise<void>;
  published: Promise<void>;
  done: Promise<Done>;
  exited: Promise<void>;
}

const children = new Set<ChildProcess>();
const killAll = () => {
  for (const child of children) child.kill('SIGKILL');
};
const scratch = mkdtempSync(join(tmpdir(), 'gossip-bench-'));
process.on('exit', () => {
  killAll();
  rmSync(scratch, { recursive: true, force: true });
});
process.on('SIGINT', () => process.exit(130));
process.on('SIGTERM', () => process.exit(143));

const groupsFile = join(scratch, 'groups.json');
const pool = values['completion-bytes'] === undefined ? await sampleGroups() : syntheticGroups();
writeFileSync(groupsFile, JSON.stringify(pool));
const completionBytes = pool.flatMap((g) => g.completions.map((c) => Buffer.byteLength(c)));
// What one rollout weighs on the wire's payload: a group under a task spec, from a 52-character peer id.
const producer = '12D3KooW'.padEnd(52, 'x');
const messageBytes = pool.map(
  (g) =>
    encodeMessage('rollouts', {
      task: {
        family: g.family,
        difficulty: g.difficulty,
        generatorVersion: g.generatorVersion,
        seed: deriveSeed(producer, 0, 0),
        proposer: producer,
        round: 0,
        index: 0,
      },
      producer,
      round: 0,
      policyVersion: 0,
      time: Date.now(),
      completions: g.completions,
      rewards: g.rewards,
    }).byteLength,
);

console.log(
  `gossip on loopback, ${cores} cores: ${rounds} rounds of ${groups} rollouts (G = ${G}) per node every ${periodMs} ms.`,
);
console.log(
  `completions: ${values['completion-bytes'] === undefined ? `${pool.length} groups sampled from the embedded model (≤ ${MAX_NEW_TOKENS} new tokens)` : 'synthetic'}, ` +
    `${mean(completionBytes).toFixed(1)} bytes on average (max ${Math.max(...completionBytes)}); a rollout's payload ${mean(messageBytes).toFixed(0)} bytes on average.`,
);
console.log(`one gradient of the embedded model: ${gradientBytes.toLocaleString('en-US')} bytes (float32).\n`);
console.log(
  '| nodes | stack | delivered | worst node | p50 latency | p99 latency | mesh peers (meshed) | connections (start → end) | swarm CPU | other CPU | event-loop p99 | CPU / delivery | payload / node / round | wire / node / round | one gradient / wire |',
);
console.log('|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
let failed = false;
const losses: Losses[] = [];
for (const n of sizes) {
  for (const stack of stacks) {
    try {
      await waitForQuiet();
      const result = await withBudget(runSize(n, stack), `${n} processes (${stack})`);
      console.log(result.row);
      losses.push(result.losses);
    } catch (error) {
      failed = true;
      console.log(`| ${n} | ${stack} | failed: ${(error as Error).message} |`);
    }
    killAll();
  }
}
printLosses(losses);
process.exit(failed ? 1 : 0);

/** One swarm of n processes: start, wait for the meshes, run the rounds, collect, shut down. */
async function runSize(n: number, stack: WorkerConfig['stack']): Promise<{ row: string; losses: Losses }> {
  const base = { stack, rounds, periodMs, groups, groupsFile };
  const workers: Worker[] = [];
  try {
    const seed = worker(base);
    workers.push(seed);
    const addresses = [(await seed.ready).address];
    for (let i = 1; i < n; i += stagger) {
      const batch = Array.from({ length: Math.min(stagger, n - i) }, () =>
        worker({ ...base, seed: addresses[0] as string }),
      );
      workers.push(...batch);
      for (const w of batch) addresses.push((await w.ready).address);
    }
    // Our nodes find each other through the seed (DHT walks, the keeper); bare libp2p has no
    // discovery, so each of its nodes also dials --bare-dial random others.
    if (stack === 'bare') {
      workers.forEach((w, i) => {
        const dial = pick(
          addresses.slice(1).filter((_, j) => j + 1 !== i),
          bareDial,
        );
        w.child.stdin?.write(`${JSON.stringify({ dial })}\n`);
      });
    }
    await Promise.race([Promise.all(workers.map((w) => w.meshed)), sleep(30_000)]);
    await sleep(warmupMs);
    const startAt = Date.now() + 500;
    for (const w of workers) w.child.stdin?.write(`${JSON.stringify({ startAt })}\n`);
    // CPU over the planned rounds: the swarm's processes (and this one) against the whole machine.
    const pids = [process.pid, ...workers.flatMap((w) => (w.child.pid === undefined ? [] : [w.child.pid]))];
    await sleep(startAt - Date.now());
    const before = cpuTicks(pids);
    await sleep(rounds * periodMs);
    const after = cpuTicks(pids);
    const usage =
      before === undefined || after === undefined
        ? undefined
        : {
            swarm: (after.ours - before.ours) / (after.total - before.total),
            others: (after.busy - before.busy - (after.ours - before.ours)) / (after.total - before.total),
          };
    // A starved node's rounds run late: the drain starts when the last node has published.
    await Promise.all(workers.map((w) => w.published));
    await sleep(drainMs);
    for (const w of workers) w.child.stdin?.write(`${JSON.stringify({ report: true })}\n`);
    const done = await Promise.all(workers.map((w) => w.done));
    if (values.raw !== undefined) appendFileSync(values.raw, `${JSON.stringify({ n, stack, usage, done })}\n`);
    return { row: row(n, stack, done, usage), losses: lossesOf(n, stack, done) };
  } finally {
    for (const w of workers) w.child.stdin?.end();
    await Promise.race([Promise.all(workers.map((w) => w.exited)), sleep(10_000)]);
    for (const w of workers) w.child.kill('SIGKILL');
  }
}

function row(n: number, stack: string, done: Done[], usage: { swarm: number; others: number } | undefined): string {
  const latencies: number[] = [];
  let delivered = 0;
  /** The smallest share of the others' rollouts one node received. */
  let worst = 1;
  for (const node of done) {
    const seen = new Set<string>();
    for (const [key, ms] of node.received) {
      if (seen.has(key) || key.startsWith(`${node.peerId}/`)) continue;
      seen.add(key);
      delivered++;
      latencies.push(ms);
    }
    worst = Math.min(worst, seen.size / ((n - 1) * rounds * groups));
  }
  latencies.sort((a, b) => a - b);
  const expected = n * rounds * groups * (n - 1);
  const payload = mean(done.map((d) => d.payloadSent)) / rounds;
  const wire = mean(done.map((d) => d.wireSent)) / rounds;
  // Without /proc: the workers' own count over their (possibly stretched) windows.
  const swarm = usage?.swarm ?? done.reduce((sum, d) => sum + d.cpuMs / d.windowMs, 0) / cores;
  return [
    n,
    stack,
    `${((100 * delivered) / expected).toFixed(1)} %`,
    `${(100 * worst).toFixed(1)} %`,
    `${ms(percentile(latencies, 0.5))}`,
    `${ms(percentile(latencies, 0.99))}`,
    `${mean(done.map((d) => d.mesh)).toFixed(1)} (${done.filter((d) => d.mesh > 0).length}/${n})`,
    `${mean(done.map((d) => d.connections[0])).toFixed(1)} → ${mean(done.map((d) => d.connections[1])).toFixed(1)}`,
    `${(100 * swarm).toFixed(0)} %`,
    usage === undefined ? '–' : `${(100 * Math.max(0, usage.others)).toFixed(0)} %`,
    `${ms(Math.round(mean(done.map((d) => d.lagP99Ms))))}`,
    `${(done.reduce((sum, d) => sum + d.cpuMs, 0) / delivered).toFixed(1)} ms`,
    bytes(payload),
    bytes(wire),
    `${(gradientBytes / wire).toFixed(1)}×`,
  ]
    .join(' | ')
    .replace(/^/, '| ')
    .concat(' |');
}

/**
 * Where a run's missing deliveries went: the (rollout, receiver) pairs that never arrived, the share
 * of the worst-served producer, and every drop reason and gossipsub count summed over the nodes.
 */
function lossesOf(n: number, stack: string, done: Done[]): Losses {
  const counts = new Map<string, number>();
  const add = (key: string, value: number) => counts.set(key, (counts.get(key) ?? 0) + value);
  const perProducer = new Map<string, number>(done.map((d) => [d.peerId, 0]));
  let delivered = 0;
  for (const node of done) {
    const seen = new Set<string>();
    for (const [key] of node.received) {
      const producer = key.slice(0, key.indexOf('/'));
      if (seen.has(key) || producer === node.peerId) continue;
      seen.add(key);
      delivered++;
      perProducer.set(producer, (perProducer.get(producer) ?? 0) + 1);
    }
  }
  add('missing (rollout, receiver) pairs', n * rounds * groups * (n - 1) - delivered);
  const worstProducer = Math.min(...perProducer.values()) / ((n - 1) * rounds * groups);
  counts.set('worst producer delivered, %', Math.round(1000 * worstProducer) / 10);
  add(
    'connections closed (rounds and drain)',
    done.reduce((sum, d) => sum + d.disconnects, 0),
  );
  const scores = done.flatMap((d) => d.scores);
  add(
    'connected peers with no gossip stream to them',
    done.reduce((sum, d) => sum + d.links.unreachable.length, 0),
  );
  add(
    'peers connected twice',
    done.reduce((sum, d) => sum + d.links.multiplyConnected, 0),
  );
  add('peer scores < 0 (at the end of the rounds)', scores.filter((x) => x < 0).length);
  add('peer scores < −10 gossip threshold', scores.filter((x) => x < -10).length);
  add('peer scores < −80 graylist threshold', scores.filter((x) => x < -80).length);
  for (const d of done) for (const [key, value] of Object.entries(d.counters)) add(key, value);
  return { column: `${n} ${stack}`, counts };
}

/** One table: a row per reason or count, a column per run. */
function printLosses(runs: Losses[]): void {
  if (runs.length === 0) return;
  const keys = [...new Set(runs.flatMap((r) => [...r.counts.keys()]))];
  const order = (key: string) => (key.startsWith('ours:') ? 1 : key.startsWith('gs:') ? 2 : 0);
  keys.sort((a, b) => order(a) - order(b) || (order(a) === 0 ? 0 : a.localeCompare(b)));
  console.log(
    "\nWhere deliveries went missing (summed over nodes, rounds and drain; ours:… are our validator's verdicts on rollouts, gs:… gossipsub's counts):\n",
  );
  console.log(`| | ${runs.map((r) => r.column).join(' | ')} |`);
  console.log(`|---|${runs.map(() => '---:').join('|')}|`);
  for (const key of keys) {
    console.log(
      `| ${key} | ${runs.map((r) => (r.counts.get(key) ?? 0).toLocaleString('en-US').replace(/,/g, ' ')).join(' | ')} |`,
    );
  }
}

function worker(config: WorkerConfig): Worker {
  const child = spawn(process.execPath, ['--import', 'tsx', WORKER, JSON.stringify(config)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  children.add(child);
  const events = new Map<string, (value: never) => void>();
  const on = <T>(event: string) =>
    new Promise<T>((resolve) => {
      events.set(event, resolve as (value: never) => void);
    });
  const ready = on<Ready>('ready');
  const meshed = on<void>('meshed');
  const published = on<void>('published');
  const done = on<Done>('done');
  const exited = new Promise<void>((resolve) => {
    child.on('exit', (code, signal) => {
      children.delete(child);
      resolve();
      // A worker that dies early fails the size (a later `done` makes this a no-op).
      const failure = new Error(`a worker exited with ${signal ?? code} before it finished`);
      for (const [, settle] of events) (settle as (value: never) => void)(Promise.reject(failure) as never);
    });
  });
  for (const promise of [ready, meshed, published, done]) promise.catch(() => {});
  child.stdin?.on('error', () => {}); // a worker that has exited closes its end
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
    let message: { event?: string };
    try {
      message = JSON.parse(line) as { event?: string };
    } catch {
      process.stderr.write(`${line}\n`); // libp2p or tsx talking, not ours
      return;
    }
    const settle = message.event === undefined ? undefined : events.get(message.event);
    if (settle === undefined || message.event === undefined) return;
    events.delete(message.event);
    settle(message as never);
  });
  return { child, ready, meshed, published, done, exited };
}

/** Groups the embedded model really samples: one task per family and difficulty, G completions at temperature 1. */
async function sampleGroups(): Promise<Group[]> {
  await selectBackend();
  const tokenizer = new ByteTokenizer();
  const checkpoint = await loadCheckpoint(EMBEDDED_MODEL_PATH, { tokenizer: tokenizer.id });
  const policy = new Policy(checkpoint.config as unknown as PolicyConfig, checkpoint.weights);
  const result: Group[] = [];
  let seed = 0;
  for (const family of FAMILIES) {
    for (let difficulty = family.difficulty.min; difficulty <= family.difficulty.max; difficulty++) {
      const task = family.generate(++seed, difficulty);
      const completions = generateText(policy, tokenizer, new Array<string>(G).fill(task.prompt), {
        maxNewTokens: MAX_NEW_TOKENS,
        seed,
      }).map((c) => c.text);
      result.push({
        family: family.name,
        difficulty,
        generatorVersion: family.version,
        completions,
        rewards: completions.map((text) => family.score(task, text)),
      });
    }
  }
  return result;
}

/** Completions of exactly `--completion-bytes` ASCII bytes, varied so that no two messages are equal. */
function syntheticGroups(): Group[] {
  const length = positive('completion-bytes', values['completion-bytes']);
  const family = FAMILIES[0];
  if (family === undefined) throw new Error('no task families');
  return Array.from({ length: 64 }, (_, i) => ({
    family: family.name,
    difficulty: family.difficulty.min,
    generatorVersion: family.version,
    completions: Array.from({ length: G }, (_, j) => `${i}.${j} `.padEnd(length, 'x').slice(0, length)),
    rewards: Array.from({ length: G }, (_, j) => j % 2),
  }));
}

/**
 * Jiffies since boot: the machine's total and busy (all cores), and those of the given processes.
 * Undefined where there is no /proc (not Linux).
 */
function cpuTicks(pids: number[]): { total: number; busy: number; ours: number } | undefined {
  try {
    const fields = (readFileSync('/proc/stat', 'utf8').split('\n')[0] as string)
      .trim()
      .split(/\s+/)
      .slice(1, 9)
      .map(Number);
    const total = fields.reduce((a, b) => a + b, 0);
    const idle = (fields[3] ?? 0) + (fields[4] ?? 0);
    let ours = 0;
    for (const pid of pids) {
      try {
        const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
        const after = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        ours += Number(after[11]) + Number(after[12]); // utime, stime
      } catch {
        // exited
      }
    }
    return { total, busy: total - idle, ours };
  } catch {
    return undefined;
  }
}

/** Waits (up to --quiet-wait-s) until other processes use under a tenth of the machine, so that they do not skew a size. */
async function waitForQuiet(): Promise<void> {
  const deadline = Date.now() + quietWaitMs;
  for (;;) {
    const before = cpuTicks([process.pid]);
    await sleep(3000);
    const after = cpuTicks([process.pid]);
    if (before === undefined || after === undefined) return;
    const busy = (after.busy - before.busy - (after.ours - before.ours)) / (after.total - before.total);
    if (busy < 0.1) return;
    if (Date.now() > deadline) {
      process.stderr.write(`other processes keep ${(100 * busy).toFixed(0)} % of the CPU busy; measuring anyway\n`);
      return;
    }
  }
}

async function withBudget<T>(work: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} ran past --budget-s`)), budgetMs);
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function pick<T>(items: T[], count: number): T[] {
  const copy = [...items];
  for (let i = copy.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [copy[i], copy[j]] = [copy[j] as T, copy[i] as T];
  }
  return copy.slice(0, count);
}

function percentile(sorted: number[], p: number): number {
  return sorted.length === 0
    ? Number.NaN
    : (sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] as number);
}

function mean(values: number[]): number {
  return values.reduce((a, b) => a + b, 0) / values.length;
}

function ms(value: number): string {
  return Number.isNaN(value) ? '–' : `${value.toLocaleString('en-US').replace(/,/g, ' ')} ms`;
}

function bytes(value: number): string {
  return value >= 1024 * 1024 ? `${(value / 1024 / 1024).toFixed(2)} MiB` : `${(value / 1024).toFixed(1)} KiB`;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
}
