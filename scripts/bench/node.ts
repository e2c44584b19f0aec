/**
 * One training node on the embedded model and the default settings, as `swarm-node start` runs it:
 * the longest event-loop stall of its main thread during training rounds (perf_hooks'
 * monitorEventLoopDelay, recorded by scripts/bench/node-probe.mjs: probe.ts) and its peak
 * RSS (VmHWM: every thread, the learner worker's wasm heap included). Give `--baseline <checkout>`
 * (another clone, built) to measure it beside this one, one after the other in the same run.
 *
 *   npm run bench:node -- --rounds 20
 *   git worktree add /tmp/before <commit> && (cd /tmp/before && npm ci) && npm run bench:node -- --baseline /tmp/before
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { commitOf, probeEnv, quantile, readProbe } from './probe.js';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '20' },
    baseline: { type: 'string' },
  },
});
const rounds = Number(values.rounds);
if (!Number.isInteger(rounds) || rounds < 2) throw new RangeError('--rounds must be an integer of at least 2');
const HERE = fileURLToPath(new URL('../..', import.meta.url));

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
  const bin = join(checkout, 'packages/node/bin/swarm-node.js');
  const args = [bin, 'start', '--data-dir', join(data, 'node'), '--no-mdns', '--no-status'];
  args.push('--listen', '/ip4/127.0.0.1/tcp/0', '--rounds', String(rounds), '--json');
  const child = spawn(process.execPath, args, {
    env: probeEnv(data),
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
  const probe = readProbe(data, child.pid as number);
  if (probe === null) throw new Error(`${bin} left no probe file`);
  rmSync(data, { recursive: true, force: true });
  // A second's maximum belongs to the rounds it overlaps: [time - 1 s, time].
  const during = probe.seconds.filter(({ time }) => windows.some(([from, to]) => time > from && time - 1000 < to));
  const stalls = during.map((s) => s.maxStallMs).sort((a, b) => a - b);
  const total = windows.reduce((sum, [from, to]) => sum + (to - from), 0) / 1000;
  return {
    checkout,
    commit: commitOf(checkout),
    rounds: windows.length,
    roundStallMs: stalls.at(-1) ?? Number.NaN,
    medianStallMs: quantile(stalls, 0.5),
    p90StallMs: quantile(stalls, 0.9),
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
