/**
 * How many nodes this machine holds. For growing N, `swarm-node swarm` runs a bootstrap peer and N
 * real node processes on loopback (no mDNS, a private swarm id), with scripts/bench/node-probe.mjs in
 * every one (probe.ts): its main thread's longest event-loop stall each second, VmRSS and VmHWM.
 *
 *   training nodes      N × `swarm-node start`: the embedded model, the default settings
 *   network-only nodes  N × `swarm-node start --roles evaluator`: no learner; each re-checks every
 *                       rollout and task it hears and relays them, beside --traffic training nodes
 *                       that give them something to carry
 *
 * Each N: start the swarm, wait until every node has started and every training node has finished a
 * round (learners loaded), measure for --window seconds, then stop the swarm (the launcher stops each
 * node cleanly; on Ctrl-C too) and read the probes.
 *
 * N holds when, in its window:
 *   - the swarm works: every training node's steps used peers' groups (given a peer that trains),
 *     and every network-only node accepted peers' rollouts;
 *   - rounds keep coming: every training node ran at least --min-rpm rounds a minute;
 *   - main threads keep up: the p99 of the measured nodes' one-second stalls is under --max-stall-ms
 *     (default 1 s, gossipsub's heartbeat);
 *   - memory: the whole swarm's RSS is under --memory-fraction of MemAvailable before it started.
 * A series stops at the first N that fails, or before a step that would overrun its share of
 * --minutes (training nodes the first half, network-only nodes the rest).
 *
 *   npm run bench:scale                                                (under 12 minutes)
 *   npm run bench:scale -- --training 2,4 --network 8 --window 30 --minutes 5
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { SwarmReport } from '@swarm-node/node';
import { commitOf, type Probe, probeEnv, quantile, readProbe } from './probe.js';

const { values } = parseArgs({
  options: {
    training: { type: 'string', default: '2,4,8,16,32' },
    network: { type: 'string', default: '8,16,32,48,62' },
    traffic: { type: 'string', default: '2' },
    window: { type: 'string', default: '60' },
    minutes: { type: 'string', default: '12' },
    'max-stall-ms': { type: 'string', default: '1000' },
    'min-rpm': { type: 'string', default: '1' },
    'memory-fraction': { type: 'string', default: '0.5' },
    'start-timeout': { type: 'string', default: '300' },
    keep: { type: 'string' },
  },
});
const positive = (flag: keyof typeof values) => {
  const value = Number(values[flag]);
  if (!(value > 0)) throw new RangeError(`--${flag} must be a positive number, got ${values[flag]}`);
  return value;
};
const WINDOW_MS = positive('window') * 1000;
const BUDGET_MS = positive('minutes') * 60_000;
const MAX_STALL_MS = positive('max-stall-ms');
const MIN_RPM = positive('min-rpm');
const MEMORY_FRACTION = positive('memory-fraction');
const START_TIMEOUT_MS = positive('start-timeout') * 1000;
const TRAFFIC = positive('traffic');
const HERE = fileURLToPath(new URL('../..', import.meta.url));
const BIN = join(HERE, 'packages/node/bin/swarm-node.js');
const MiB = 2 ** 20;
const GiB = 2 ** 30;

type Kind = 'training' | 'network';
interface Row {
  kind: Kind;
  n: number;
  trainers: number;
  /** Mean over the measured nodes of their mean VmRSS in the window, and the highest VmHWM. */
  rssMiB: number;
  peakMiB: number;
  stallMs: { max: number; p99: number };
  /** Rounds a minute of each training node in the window: mean and slowest. */
  rpm: { mean: number; min: number };
  /** Peers' groups a training node's step used, per round in the window. */
  peersGroups: number;
  /** Rollouts a network-only node accepted over its run (its last /status), on average. */
  rechecked: number | null;
  swarmRssGiB: number;
  availableGiB: number;
  failures: string[];
}

let interrupted = false;
let launcher: ChildProcess | null = null;
let wake: () => void = () => {};
const interruption = new Promise<void>((resolve) => {
  wake = resolve;
});
// Ctrl-C reaches the launcher too (same process group); a signal to this process alone is passed on.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    interrupted = true;
    wake();
    launcher?.kill('SIGTERM');
  });
}
const pause = (ms: number) =>
  Promise.race([new Promise<void>((resolve) => setTimeout(resolve, ms).unref()), interruption]);

function memAvailable(): number {
  const kib = /MemAvailable:\s+(\d+) kB/.exec(readFileSync('/proc/meminfo', 'utf8'))?.[1];
  return Number(kib) * 1024;
}

/** The complete JSON lines a node has logged so far (the last may be half-written). */
function records(file: string): { event: string; time: string; groups?: { externalUsed: number } }[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .slice(0, -1)
    .map((line) => JSON.parse(line));
}

/** One swarm of `n` nodes of `kind`, measured; null when interrupted. */
async function measure(root: string, kind: Kind, n: number): Promise<Row | null> {
  const step = join(root, `${kind}-${n}`);
  const out = join(step, 'swarm');
  const probes = join(step, 'probes');
  mkdirSync(probes, { recursive: true });
  const trainers = kind === 'training' ? n : TRAFFIC;
  const nodes = [
    ...Array.from({ length: trainers }, (_, i) => ({ name: `train-${i + 1}` })),
    ...Array.from({ length: kind === 'network' ? n : 0 }, (_, i) => ({ name: `relay-${i + 1}`, roles: ['evaluator'] })),
  ];
  const config = join(step, 'swarm.json');
  // heldOutEvery: start's default (the launcher's own is 10).
  writeFileSync(config, JSON.stringify({ heldOutEvery: 25, nodes }));
  const available = memAvailable();
  const log = openSync(join(step, 'launcher.log'), 'w');
  const args = [BIN, 'swarm', '--config', config, '--out', out, '--rounds', '0', '--stop-timeout', '60'];
  const child = spawn(process.execPath, args, { env: probeEnv(probes), stdio: ['ignore', log, log] });
  closeSync(log);
  launcher = child;
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  const failures: string[] = [];
  const jsonl = (name: string) => join(out, `${name}.jsonl`);
  const ready = () =>
    nodes.every((node) => records(jsonl(node.name)).some((r) => r.event === 'started')) &&
    nodes.slice(0, trainers).every((node) => records(jsonl(node.name)).some((r) => r.event === 'round'));
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (!interrupted && child.exitCode === null && !ready() && Date.now() < deadline) await pause(2000);
  const from = Date.now();
  if (child.exitCode !== null) failures.push(`the launcher exited early (${join(step, 'launcher.log')})`);
  else if (from >= deadline) failures.push(`not every node started and trained within ${START_TIMEOUT_MS / 1000} s`);
  else {
    console.error(`${kind} ${n}: every node up; measuring ${WINDOW_MS / 1000} s`);
    await pause(WINDOW_MS);
  }
  const to = Date.now();
  child.kill('SIGTERM');
  await exited;
  launcher = null;
  if (interrupted) return null;

  const reportFile = join(out, 'report.json');
  if (!existsSync(reportFile)) throw new Error(`${kind} ${n}: the launcher wrote no report: see ${step}/launcher.log`);
  const report = JSON.parse(readFileSync(reportFile, 'utf8')) as SwarmReport;
  const probeOf = (name: string, pid: number): Probe | null => {
    const probe = readProbe(probes, pid);
    if (probe === null) failures.push(`${name} left no probe (killed)`);
    return probe;
  };
  const inWindow = (probe: Probe | null) => probe?.seconds.filter((s) => s.time - 1000 >= from && s.time <= to) ?? [];
  const members = report.nodes.map((node) => ({ node, probe: probeOf(node.name, node.pid) }));
  const seed = report.bootstrap === null ? null : probeOf('bootstrap', report.bootstrap.pid);
  const training = members.filter((m) => m.node.trains);
  const relays = members.filter((m) => !m.node.trains);
  const measured = kind === 'training' ? training : relays;
  const stalls = measured.flatMap((m) => inWindow(m.probe).map((s) => s.maxStallMs)).sort((a, b) => a - b);
  const meanRss = (probe: Probe | null) => {
    const window = inWindow(probe);
    return window.reduce((sum, s) => sum + s.rss, 0) / window.length;
  };
  const minutes = (to - from) / 60_000;
  const rounds = training.map(({ node }) =>
    records(node.jsonl).filter((r) => r.event === 'round' && Date.parse(r.time) > from && Date.parse(r.time) <= to),
  );
  const rpm = rounds.map((r) => r.length / minutes);
  const used = rounds.map((r) => r.reduce((sum, round) => sum + (round.groups?.externalUsed ?? 0), 0));
  const swarmRss = [...members.map((m) => m.probe), seed]
    .map((probe) => Math.max(0, ...inWindow(probe).map((s) => s.rss)))
    .reduce((a, b) => a + b, 0);

  if (trainers > 1 && used.some((u) => u === 0)) failures.push("a training node used no peers' groups");
  if (relays.some((m) => (m.node.verdicts.rollouts.accept ?? 0) === 0)) failures.push('a relay accepted no rollout');
  if (Math.min(...rpm) < MIN_RPM) failures.push(`a training node ran under ${MIN_RPM} rounds a minute`);
  if (quantile(stalls, 0.99) > MAX_STALL_MS) failures.push(`p99 stall over ${MAX_STALL_MS} ms`);
  if (swarmRss > MEMORY_FRACTION * available) failures.push(`swarm RSS over ${MEMORY_FRACTION} of MemAvailable`);
  return {
    kind,
    n,
    trainers,
    rssMiB: measured.reduce((sum, m) => sum + meanRss(m.probe), 0) / measured.length / MiB,
    peakMiB: Math.max(...measured.map((m) => m.probe?.peakRss ?? 0)) / MiB,
    stallMs: { max: stalls.at(-1) ?? Number.NaN, p99: quantile(stalls, 0.99) },
    rpm: { mean: rpm.reduce((a, b) => a + b, 0) / rpm.length, min: Math.min(...rpm) },
    peersGroups: used.reduce((a, b) => a + b, 0) / rounds.reduce((sum, r) => sum + r.length, 0),
    rechecked:
      kind === 'network'
        ? relays.reduce((sum, m) => sum + (m.node.verdicts.rollouts.accept ?? 0), 0) / relays.length
        : null,
    swarmRssGiB: swarmRss / GiB,
    availableGiB: available / GiB,
    failures,
  };
}

const fixed = (value: number, digits = 0) => (Number.isFinite(value) ? value.toFixed(digits) : '-');
const loads = () =>
  `load average ${loadavg()
    .map((l) => l.toFixed(2))
    .join(' ')}`;
function line(row: Row): string {
  const who = row.kind === 'training' ? 'training' : `network-only (+${row.trainers} training)`;
  return `| ${who} | ${row.n} | ${fixed(row.rssMiB)} MiB | ${fixed(row.peakMiB)} MiB | ${fixed(row.stallMs.max)} ms | ${fixed(row.stallMs.p99)} ms | ${fixed(row.rpm.mean, 1)} (${fixed(row.rpm.min, 1)}) | ${fixed(row.peersGroups, 2)} | ${row.rechecked === null ? '-' : fixed(row.rechecked)} | ${fixed(row.swarmRssGiB, 1)} / ${fixed(row.availableGiB, 1)} GiB | ${row.failures.length === 0 ? 'yes' : `no: ${row.failures.join('; ')}`} |`;
}

const started = Date.now();
const root = values.keep ?? mkdtempSync(join(tmpdir(), 'bench-scale-'));
console.log(
  `${new Date(started).toISOString()}, commit ${commitOf(HERE)}, node ${process.version}, ${cpus().length} cores, ` +
    `${fixed(totalmem() / GiB)} GiB, ${loads()}; ` +
    `window ${WINDOW_MS / 1000} s, p99 stall limit ${MAX_STALL_MS} ms, at least ${MIN_RPM} rounds/min, ` +
    `swarm RSS under ${MEMORY_FRACTION} of MemAvailable\n`,
);
console.log(
  "| nodes | N | RSS per node (VmRSS) | peak (VmHWM) | main-thread stall: max | p99 | rounds/min per training node (slowest) | peers' groups per round | rollouts re-checked per relay | swarm RSS / MemAvailable | holds |",
);
console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|');
const notRun: string[] = [];
/** Per series, what the machine holds: the largest N that passed, and the first that failed. */
const holds: string[] = [];
const series: [Kind, string, number][] = [
  ['training', values.training, started + BUDGET_MS / 2],
  ['network', values.network, started + BUDGET_MS],
];
for (const [kind, list, until] of series) {
  let lastMs = 0;
  let passed: Row | null = null;
  let failed: Row | null = null;
  for (const n of list.split(',').map(Number)) {
    if (interrupted) break;
    if (Date.now() + lastMs > until) {
      notRun.push(`${kind} ${n}`);
      continue;
    }
    const begun = Date.now();
    const row = await measure(root, kind, n);
    if (row === null) break;
    lastMs = Date.now() - begun;
    console.log(line(row));
    if (row.failures.length > 0) {
      failed = row;
      break;
    }
    passed = row;
  }
  const held = passed === null ? 'none' : `N = ${passed.n}`;
  const next = failed === null ? 'none of those run failed' : `N = ${failed.n} failed: ${failed.failures.join('; ')}`;
  holds.push(`${kind}: ${held} (${next})`);
}
// An interrupted series never reached its limit: no verdict.
if (!interrupted) console.log(`\nholds: ${holds.join('; ')}`);
if (notRun.length > 0) console.log(`\nnot run, past the --minutes budget: ${notRun.join(', ')}`);
console.log(
  `\n${interrupted ? 'interrupted after ' : ''}${fixed((Date.now() - started) / 60_000, 1)} minutes; ${loads()}`,
);
if (values.keep === undefined) rmSync(root, { recursive: true, force: true });
if (interrupted) process.exit(130);
