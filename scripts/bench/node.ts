/**
 * One training node on the embedded model and the default settings, as `swarm-node start` runs it:
 * the longest event-loop stall of its main thread during training rounds (perf_hooks'
 * monitorEventLoopDelay, loaded by scripts/bench/node-probe.mjs with `node --import`) and its peak
 * RSS (VmHWM: every thread, the learner worker's wasm heap included). Give `--baseline <checkout>`
 * (another clone, built) to measure it beside this one, one after the other in the same run.
 *
 *   npm run bench:node -- --rounds 20
 *   git worktree add /tmp/before <commit> && (cd /tmp/before && npm ci) && npm run bench:node -- --baseline /tmp/before
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '20' },
    baseline: { type: 'string' },
  },
});
const rounds = Number(values.rounds);
if (!Number.isInteger(rounds) || rounds < 2) throw new RangeError('--rounds must be an integer of at least 2');
const PROBE = fileURLToPath(new URL('./node-probe.mjs', import.meta.url));
const HERE = fileURLToPath(new URL('../..', import.meta.url));

interface Probe {
  peakRss: number;
  seconds: { time: number; maxStallMs: number; rss: number }[];
}
interface Result {
  checkout: string;
  commit: string;
  rounds: number;
  /** Longest main-thread stall in any second that overlaps a training round, ms. */
  roundStallMs: number;
  /** The 50th and 90th percentiles of those seconds' longest stalls. */
  medianStallMs: number;
  p90StallMs: number;
  peakRssMiB: number;
  secondsPerRound: number;
}

async function measure(checkout: string): Promise<Result> {
  const data = mkdtempSync(join(tmpdir(), 'bench-node-'));
  const out = join(data, 'probe.json');
  const bin = join(checkout, 'packages/node/bin/swarm-node.js');
  const args = ['--import', PROBE, bin, 'start', '--data-dir', join(data, 'node'), '--no-mdns', '--no-status'];
  args.push('--listen', '/ip4/127.0.0.1/tcp/0', '--rounds', String(rounds), '--json');
  const child = spawn(process.execPath, args, {
    env: { ...process.env, SWARM_NODE_PROBE_OUT: out },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  // Each round's window on the wall clock: it ends at its log line and lasted solve + learn seconds.
  const windows: [number, number][] = [];
  createInterface({ input: child.stdout }).on('line', (line) => {
    const record = JSON.parse(line) as { event: string; time: string; seconds?: { solve: number; learn: number } };
    if (record.event !== 'round' || record.seconds === undefined) return;
    const end = Date.parse(record.time);
    windows.push([end - 1000 * (record.seconds.solve + record.seconds.learn), end]);
  });
  const code = await new Promise<number | null>((done) => child.on('exit', done));
  if (code !== 0) throw new Error(`${bin} exited with ${code}`);
  const probe = JSON.parse(readFileSync(out, 'utf8')) as Probe;
  rmSync(data, { recursive: true, force: true });
  // A second's maximum belongs to the rounds it overlaps: [time - 1 s, time].
  const during = probe.seconds.filter(({ time }) => windows.some(([from, to]) => time > from && time - 1000 < to));
  const stalls = during.map((s) => s.maxStallMs).sort((a, b) => a - b);
  const commit = await new Promise<string>((done) => {
    const git = spawn('git', ['-C', checkout, 'rev-parse', '--short', 'HEAD']);
    let text = '';
    git.stdout.on('data', (chunk: Buffer) => {
      text += chunk.toString();
    });
    git.on('exit', () => done(text.trim()));
  });
  const total = windows.reduce((sum, [from, to]) => sum + (to - from), 0) / 1000;
  return {
    checkout,
    commit,
    rounds: windows.length,
    roundStallMs: stalls.at(-1) ?? Number.NaN,
    medianStallMs: stalls[Math.floor(stalls.length / 2)] ?? Number.NaN,
    p90StallMs: stalls[Math.floor(stalls.length * 0.9)] ?? Number.NaN,
    peakRssMiB: probe.peakRss / 2 ** 20,
    secondsPerRound: total / windows.length,
  };
}

const checkouts = [...(values.baseline === undefined ? [] : [resolve(values.baseline)]), HERE];
const results: Result[] = [];
for (const checkout of checkouts) {
  console.error(`measuring ${checkout} (${rounds} rounds) …`);
  results.push(await measure(checkout));
}
console.log(`\none training node, embedded model, default settings, ${rounds} rounds, node ${process.version}\n`);
console.log('| build | longest main-thread stall in a round | per second: median | p90 | peak RSS | s per round |');
console.log('|---|---:|---:|---:|---:|---:|');
for (const r of results) {
  console.log(
    `| ${r.commit} | ${r.roundStallMs.toFixed(0)} ms | ${r.medianStallMs.toFixed(0)} ms | ${r.p90StallMs.toFixed(0)} ms | ${r.peakRssMiB.toFixed(0)} MiB | ${r.secondsPerRound.toFixed(2)} |`,
  );
}
