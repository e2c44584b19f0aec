// Loaded with `node --import` into a swarm-node process by scripts/bench/node.ts: records the main
// thread's event-loop delay (the longest stall of each second) and the process's memory, and writes
// them to $SWARM_NODE_PROBE_OUT when the process exits. Plain JavaScript, so it loads into any build.
import { readFileSync, writeFileSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';

const out = process.env.SWARM_NODE_PROBE_OUT;
const delay = monitorEventLoopDelay({ resolution: 5 });
delay.enable();
const seconds = [];
const timer = setInterval(() => {
  seconds.push({ time: Date.now(), maxStallMs: delay.max / 1e6, rss: process.memoryUsage().rss });
  delay.reset();
}, 1000);
timer.unref();
process.on('exit', () => {
  const status = readFileSync('/proc/self/status', 'utf8');
  const peakRssKiB = Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1]);
  seconds.push({ time: Date.now(), maxStallMs: delay.max / 1e6, rss: process.memoryUsage().rss });
  if (out !== undefined) writeFileSync(out, JSON.stringify({ peakRss: peakRssKiB * 1024, seconds }));
});
