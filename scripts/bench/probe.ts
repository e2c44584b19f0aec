/**
 * scripts/bench/node-probe.mjs from the benchmarks' side: the environment that loads it into node
 * processes, and what it wrote for each. Through NODE_OPTIONS it reaches processes started by
 * another (`swarm-node swarm`'s nodes), each writing <dir>/<pid>.json when it exits.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface Probe {
  /** VmHWM: the process's peak resident memory, every thread included, bytes. */
  peakRss: number;
  /** Each second: its end, the main thread's longest event-loop stall in it, and VmRSS then. */
  seconds: { time: number; maxStallMs: number; rss: number }[];
}

const PROBE = new URL('./node-probe.mjs', import.meta.url).href;

/** Environment for a child: the probe loaded into it and every node process it starts. */
export function probeEnv(dir: string): NodeJS.ProcessEnv {
  const options = [process.env.NODE_OPTIONS, `--import ${PROBE}`].filter((o) => o !== undefined).join(' ');
  return { ...process.env, NODE_OPTIONS: options, BENCH_PROBE_DIR: dir };
}

/** What the process `pid` wrote, or null when it left nothing (it was killed). */
export function readProbe(dir: string, pid: number): Probe | null {
  const file = join(dir, `${pid}.json`);
  return existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as Probe) : null;
}

/** The q-quantile (0..1) of ascending values; NaN when there are none. */
export const quantile = (sorted: readonly number[], q: number): number =>
  sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))] ?? Number.NaN;

export const commitOf = (checkout: string): string =>
  spawnSync('git', ['-C', checkout, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).stdout.trim();
