/**
 * Task library throughput: tasks generated and scored per second, per family, on one core.
 *
 *   npm run bench:tasks            (add -- --json for machine-readable output)
 *
 * Each timed task is one `generate(seed, difficulty)` over every difficulty in turn plus one
 * `score` of a typical completion (a line of reasoning, then the answer in tags). A second column
 * times `score` alone on a hostile 1 MB completion, the worst a peer can send under the gossip
 * size cap, to show the validator's cost per byte stays bounded.
 */
import { performance } from 'node:perf_hooks';
import { extractAnswer, FAMILIES, type TaskFamily } from '@swarm-node/tasks';

const json = process.argv.includes('--json');
const TASKS_PER_FAMILY = 20_000;
const HOSTILE_RUNS = 20;
const HOSTILE = `${'<answer>9'.repeat(1 << 16)}${'é😀 1/2 0x'.repeat(1 << 15)}`.slice(0, 1 << 20);

function throughput(family: TaskFamily, count: number, seedBase: number): number {
  const levels = family.difficulty.max - family.difficulty.min + 1;
  const start = performance.now();
  let sink = 0;
  for (let i = 0; i < count; i++) {
    const task = family.generate(seedBase + i, family.difficulty.min + (i % levels));
    sink += family.score(task, `Let me work through it.\n<answer>${task.answer}</answer>`);
  }
  const seconds = (performance.now() - start) / 1000;
  if (sink !== count) throw new Error(`${family.name}: a reference answer scored below 1`);
  return count / seconds;
}

function hostileMicroseconds(family: TaskFamily): number {
  const task = family.generate(1, family.difficulty.max);
  const start = performance.now();
  for (let i = 0; i < HOSTILE_RUNS; i++) family.score(task, HOSTILE);
  return ((performance.now() - start) * 1000) / HOSTILE_RUNS;
}

/** The obvious extraction (every tag pair by regex, else split into lines) that extractAnswer replaces. */
function naiveExtract(completion: string): string | undefined {
  const tagged = [...completion.matchAll(/<answer>([\s\S]*?)<\/answer>/g)].at(-1)?.[1];
  return (
    tagged ??
    completion
      .split('\n')
      .filter((line) => line.trim().length > 0)
      .at(-1)
  )?.trim();
}

function extractionRatio(): { oursMicroseconds: number; naiveMicroseconds: number } {
  const time = (extract: (text: string) => unknown, runs: number) => {
    const start = performance.now();
    for (let i = 0; i < runs; i++) extract(HOSTILE);
    return ((performance.now() - start) * 1000) / runs;
  };
  time(extractAnswer, HOSTILE_RUNS);
  // The naive way is quadratic on unclosed tags (seconds per call), so it runs once.
  return {
    oursMicroseconds: Math.round(time(extractAnswer, HOSTILE_RUNS)),
    naiveMicroseconds: Math.round(time(naiveExtract, 1)),
  };
}

const rows = FAMILIES.map((family) => {
  throughput(family, TASKS_PER_FAMILY / 10, 1_000_000); // warm-up: let the JIT settle
  return {
    family: family.name,
    tasksPerSecond: Math.round(throughput(family, TASKS_PER_FAMILY, 0)),
    hostile1MbScoreMicroseconds: Math.round(hostileMicroseconds(family)),
  };
});

const extraction = extractionRatio();

if (json) {
  console.log(JSON.stringify({ node: process.version, tasksPerFamily: TASKS_PER_FAMILY, rows, extraction }, null, 2));
} else {
  console.log(`node ${process.version}, ${TASKS_PER_FAMILY} tasks per family (generate + score), one core`);
  console.log(`${'family'.padEnd(24)} ${'tasks/s'.padStart(10)} ${'1 MB hostile score (µs)'.padStart(24)}`);
  for (const row of rows) {
    console.log(
      `${row.family.padEnd(24)} ${String(row.tasksPerSecond).padStart(10)} ${String(row.hostile1MbScoreMicroseconds).padStart(24)}`,
    );
  }
  const { oursMicroseconds, naiveMicroseconds } = extraction;
  console.log(
    `answer extraction from the 1 MB hostile completion: ${oursMicroseconds} µs, naive regex ${naiveMicroseconds} µs (${(naiveMicroseconds / oursMicroseconds).toFixed(1)}x)`,
  );
}
