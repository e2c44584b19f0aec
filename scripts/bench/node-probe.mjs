// Loaded with `node --import` into a swarm-node process (scripts/bench/probe.ts): records the main
// thread's event-loop delay (the longest stall of each second) and the process's memory, and writes
// them to $BENCH_PROBE_DIR/<pid>.json when the process exits. Plain JavaScript, so it loads into any build.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { isMainThread } from 'node:worker_threads';

const dir = process.env.BENCH_PROBE_DIR;
// Worker threads (the learner) load it too: only the main thread is measured and writes the file.
if (isMainThread && dir !== undefined) {
  const delay = monitorEventLoopDelay({ resolution: 5 });
  delay.enable();
  const seconds = [];
  const sample = () => {
    seconds.push({ time: Date.now(), maxStallMs: delay.max / 1e6, rss: process.memoryUsage().rss });
    delay.reset();
  };
  setInterval(sample, 1000).unref();
  process.on('exit', () => {
    const status = readFileSync('/proc/self/status', 'utf8');
    const peakRssKiB = Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1]);
    sample();
    writeFileSync(join(dir, `${process.pid}.json`), JSON.stringify({ peakRss: peakRssKiB * 1024, seconds }));
  });
}
