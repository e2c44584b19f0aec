/**
 * In-process swarm experiments: N nodes on the in-memory network, each starting from the embedded
 * base model, for every I/J config and seed. Writes result.json and chart.svg (reward per round of
 * every node, thin, and the swarm mean, thick; one panel per config) and prints the table.
 *
 *   npm run experiment -- --configs 8/0,6/2,4/4,2/6 --seeds 1,2,3 --nodes 4 --rounds 30 --out docs/experiments/sapo-table
 *   npm run experiment -- --configs 4/4 --no-filter ...     # the ablation without the zero-signal filter
 *   npm run experiment -- --configs 4/4 --free-riders 1 ...  # the last node of each swarm shares nothing
 *   npm run experiment -- --processes --configs 8/0,4/4 --seeds 1,2 --nodes 4 --rounds 30 --out docs/experiments/sapo-table-processes
 *
 * Every config does the same training compute: I + J groups of G completions per SAPO step, the
 * same rounds and the same model. Difficulty is fixed (--difficulty, default 2) so that a round's
 * reward measures the policy, not the proposer's choice of tasks. Runs go in parallel processes (--jobs, default 2: this machine
 * has 2 cores); each run is deterministic given its seed.
 *
 * --processes runs each config and seed as a real swarm instead: `swarm-node swarm --config` with
 * one entry per node (its I/J, seed, learning rate and fixed difficulty; the wasm backend), every
 * node its own `swarm-node start` process on loopback, gossiping through a bootstrap peer. The
 * result, table and chart are the same as in-process, read from the launcher's report.json, which
 * is kept with the run's swarm.json in --out/runs/ (the launcher's folder, with the nodes' data
 * dirs and logs, goes to --swarm-dir). Such runs are not deterministic: nodes go at their own pace, with
 * no round barrier, and learn from whatever has arrived. One swarm runs at a time (--jobs 1).
 */
import { spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { SwarmReport } from '@swarm-node/node';
import { chartGrid, type Series } from '@swarm-node/node/svg-chart';
import { MemoryNetwork, RoundLoop, type RoundMetrics } from '@swarm-node/roles';
import { EMBEDDED_MODEL_PATH, openLearner } from '@swarm-node/sapo';

const { values } = parseArgs({
  options: {
    configs: { type: 'string', default: '8/0,6/2,4/4,2/6' },
    seeds: { type: 'string', default: '1,2,3' },
    nodes: { type: 'string', default: '4' },
    rounds: { type: 'string', default: '30' },
    'group-size': { type: 'string', default: '8' },
    families: { type: 'string', default: '' },
    'learning-rate': { type: 'string', default: '0.0001' },
    /** Fix every family at this difficulty (the proposer does not adapt), so rewards compare across rounds. */
    difficulty: { type: 'string', default: '2' },
    'no-filter': { type: 'boolean', default: false },
    /** The last this many nodes of each swarm are free riders: they publish no task or rollout. */
    'free-riders': { type: 'string', default: '0' },
    /** Each run a swarm of real processes (`swarm-node swarm`), not an in-memory one. */
    processes: { type: 'boolean', default: false },
    /** --processes: where the launcher's folders go (data dirs, logs, JSONL); default a new one in the temp dir. */
    'swarm-dir': { type: 'string' },
    /** Default 2 in-process, 1 with --processes (a swarm already fills the cores). */
    jobs: { type: 'string' },
    out: { type: 'string', default: 'experiment-out' },
    /** Internal: run one config and seed in this process and print its metrics as JSON. */
    one: { type: 'string' },
  },
});

interface Run {
  config: string;
  localGroups: number;
  externalGroups: number;
  seed: number;
  /** reward[node][round]: mean reward of that node's own completions in that round. */
  rewards: (number | null)[][];
  /** shares[node]: it published its tasks and rollouts (false: a free rider). */
  shares: boolean[];
  /** localUsed[node][round], externalUsed[node][round]: groups the round's SAPO step learned from. */
  localUsed: number[][];
  externalUsed: number[][];
  /** Verdicts on peers' rollouts and tasks, summed over the nodes: nothing honest should be refused. */
  verdicts: { rollouts: Record<string, number>; tasks: Record<string, number> };
  seconds: number;
  /** --processes: the swarm's report.json. */
  report?: string;
}

/** Whether node i of a swarm shares: all but the last --free-riders. */
const shares = (i: number) => i < Number(values.nodes) - Number(values['free-riders']);

const parseConfig = (text: string) => {
  const match = /^(\d+)\/(\d+)$/.exec(text.trim());
  if (match === null) throw new Error(`config ${JSON.stringify(text)} is not I/J, e.g. 4/4`);
  return { localGroups: Number(match[1]), externalGroups: Number(match[2]) };
};

async function runOne(config: string, seed: number): Promise<Run> {
  const { localGroups, externalGroups } = parseConfig(config);
  const started = performance.now();
  const network = new MemoryNetwork({ seed });
  const families = values.families === '' ? undefined : values.families.split(',');
  const nodes: RoundLoop[] = [];
  for (let i = 0; i < Number(values.nodes); i++) {
    // In-thread learners: one process runs the whole swarm, one node at a time.
    const learner = await openLearner({
      model: EMBEDDED_MODEL_PATH,
      backend: 'wasm',
      sapo: {
        localGroups,
        externalGroups,
        learningRate: Number(values['learning-rate']),
        zeroSignalFilter: !values['no-filter'],
        seed: seed * 100 + i,
      },
    });
    nodes.push(
      new RoundLoop({
        transport: network.join(`node-${i}`),
        learner,
        groupSize: Number(values['group-size']),
        // Each node solves I tasks a round (at least one, so 0/J nodes still share rollouts).
        tasksPerRound: Math.max(1, localGroups),
        seed: seed * 100 + i,
        share: shares(i),
        proposer: { startDifficulty: Number(values.difficulty), adapt: false },
        ...(families === undefined ? {} : { families }),
      }),
    );
  }
  const metrics: RoundMetrics[][] = nodes.map(() => []);
  for (let round = 0; round < Number(values.rounds); round++) {
    for (const [i, node] of nodes.entries()) metrics[i]?.push(await node.runRound());
    await network.settle();
  }
  return {
    config,
    localGroups,
    externalGroups,
    seed,
    rewards: metrics.map((rows) => rows.map((m) => m.reward)),
    shares: nodes.map((_, i) => shares(i)),
    localUsed: metrics.map((rows) => rows.map((m) => m.groups.localUsed)),
    externalUsed: metrics.map((rows) => rows.map((m) => m.groups.externalUsed)),
    verdicts: {
      rollouts: sumCounts(nodes.map((node) => node.evaluator.counts)),
      tasks: sumCounts(metrics.flatMap((rows) => rows.map((m) => m.received.tasks))),
    },
    seconds: (performance.now() - started) / 1000,
  };
}

/** One config and seed as a swarm of processes, through `swarm-node swarm --config`. */
async function runProcesses(config: string, seed: number): Promise<Run> {
  const { localGroups, externalGroups } = parseConfig(config);
  const name = `${config.replace('/', '-')}-seed-${seed}`;
  const dir = join(values.out, 'runs', name);
  mkdirSync(dir, { recursive: true });
  const file = join(dir, 'swarm.json');
  const node = (i: number) => ({
    name: `node-${i}`,
    localGroups,
    externalGroups,
    groupSize: Number(values['group-size']),
    learningRate: Number(values['learning-rate']),
    fixedDifficulty: Number(values.difficulty),
    backend: 'wasm',
    seed: seed * 100 + i,
    ...(shares(i) ? {} : { share: false }),
  });
  const swarm = {
    rounds: Number(values.rounds),
    heldOutEvery: 0,
    nodes: Array.from({ length: Number(values.nodes) }, (_, i) => node(i)),
  };
  writeFileSync(file, `${JSON.stringify(swarm, null, 2)}\n`);
  const out = join(swarmDir(), name);
  console.log(`${config} seed ${seed}: swarm-node swarm --config ${file} --out ${out}`);
  const launcher = spawn(process.execPath, [LAUNCHER, 'swarm', '--config', file, '--out', out], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const code = await new Promise<number | null>((resolve) => launcher.on('close', resolve));
  if (code !== 0) throw new Error(`the swarm of ${config} seed ${seed} exited with ${code}: see ${out}`);
  const reportFile = join(dir, 'report.json');
  copyFileSync(join(out, 'report.json'), reportFile);
  const report = JSON.parse(readFileSync(reportFile, 'utf8')) as SwarmReport;
  const nodes = report.nodes.filter((n) => n.trains);
  return {
    config,
    localGroups,
    externalGroups,
    seed,
    rewards: nodes.map((n) => n.reward),
    shares: nodes.map((n) => n.settings.share !== false),
    localUsed: nodes.map((n) => n.groups.localUsed),
    externalUsed: nodes.map((n) => n.groups.externalUsed),
    verdicts: report.swarm.verdicts,
    seconds: report.seconds,
    report: reportFile,
  };
}

let swarms: string | undefined;
const swarmDir = () => {
  swarms ??= values['swarm-dir'] ?? mkdtempSync(join(tmpdir(), 'experiment-swarms-'));
  return swarms;
};

const LAUNCHER = fileURLToPath(new URL('../packages/node/bin/swarm-node.js', import.meta.url));

function sumCounts(all: Record<string, number>[]): Record<string, number> {
  const sum: Record<string, number> = {};
  for (const counts of all) for (const [key, n] of Object.entries(counts)) sum[key] = (sum[key] ?? 0) + n;
  return sum;
}

/** One config and seed in-process, in a child process of its own (`--one`). */
async function runChild(config: string, seed: number): Promise<Run> {
  const passThrough = process.argv.slice(2).filter((arg, i, all) => !arg.startsWith('--one') && all[i - 1] !== '--one');
  const child = spawn(
    process.execPath,
    [...process.execArgv, fileURLToPath(import.meta.url), ...passThrough, '--one', `${config}:${seed}`],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  if (code !== 0) throw new Error(`run ${config} seed ${seed} exited with ${code}`);
  return JSON.parse(output.slice(output.lastIndexOf('\n{') + 1)) as Run;
}

/** Runs every config and seed, `jobs` at a time. */
async function runAll(configs: string[], seeds: number[], jobs: number): Promise<Run[]> {
  const queue = configs.flatMap((config) => seeds.map((seed) => ({ config, seed })));
  const runs: Run[] = [];
  const worker = async () => {
    for (let item = queue.shift(); item !== undefined; item = queue.shift()) {
      const { config, seed } = item;
      const run = values.processes ? await runProcesses(config, seed) : await runChild(config, seed);
      console.log(
        `${config} seed ${seed}: cumulative swarm reward ${cumulative(run).toFixed(2)} (${run.seconds.toFixed(0)} s); ` +
          `rollouts ${JSON.stringify(run.verdicts.rollouts)}, tasks ${JSON.stringify(run.verdicts.tasks)}`,
      );
      runs.push(run);
    }
  };
  await Promise.all(Array.from({ length: jobs }, worker));
  return runs;
}

/** Σ over rounds and nodes of the node's mean reward that round: the paper's cumulative swarm reward. */
const cumulative = (run: Run) => run.rewards.flat().reduce<number>((a, r) => a + (r ?? 0), 0);

function summarize(runs: Run[], configs: string[]): string {
  const lines = [
    "| I/J | cumulative swarm reward, mean ± sd over seeds | per seed | own groups used per step | peers' groups used per step |",
    '|---|---|---|---|---|',
  ];
  for (const config of configs) {
    const mine = runs.filter((r) => r.config === config).sort((a, b) => a.seed - b.seed);
    const totals = mine.map(cumulative);
    const mean = totals.reduce((a, b) => a + b, 0) / totals.length;
    const sd = Math.sqrt(totals.reduce((a, t) => a + (t - mean) ** 2, 0) / Math.max(1, totals.length - 1));
    const perStep = (rows: (r: Run) => number[][]) => {
      const used = mine.flatMap((r) => rows(r).flat());
      return (used.reduce((a, b) => a + b, 0) / used.length).toFixed(2);
    };
    lines.push(
      `| ${config} | ${mean.toFixed(2)} ± ${sd.toFixed(2)} | ${totals.map((t) => t.toFixed(2)).join(', ')} | ${perStep((r) => r.localUsed)} | ${perStep((r) => r.externalUsed)} |`,
    );
  }
  if (runs.some((r) => r.shares.includes(false))) lines.push('', freeRiders(runs, configs));
  return lines.join('\n');
}

/** Sharers beside free riders: mean reward per node-round and peers' groups used per step, over seeds. */
function freeRiders(runs: Run[], configs: string[]): string {
  const lines = [
    "| I/J | sharers' mean reward per round | free riders' mean reward per round | sharers' peers' groups per step | free riders' peers' groups per step |",
    '|---|---|---|---|---|',
  ];
  const average = (values: number[]) => (values.reduce((a, b) => a + b, 0) / values.length).toFixed(3);
  for (const config of configs) {
    const mine = runs.filter((r) => r.config === config);
    const pick = <T>(rows: (r: Run) => T[][], share: boolean) =>
      mine.flatMap((r) => rows(r).filter((_, i) => r.shares[i] === share)).flat();
    const rewards = (share: boolean) => pick((r) => r.rewards, share).filter((y): y is number => y !== null);
    lines.push(
      `| ${config} | ${average(rewards(true))} | ${average(rewards(false))} | ${average(pick((r) => r.externalUsed, true))} | ${average(pick((r) => r.externalUsed, false))} |`,
    );
  }
  return lines.join('\n');
}

function chart(runs: Run[], configs: string[]): string {
  const panels = configs.map((config) => {
    const mine = runs.filter((r) => r.config === config);
    const rounds = Math.max(...mine.map((r) => r.rewards[0]?.length ?? 0));
    const perNode: Series[] = mine.flatMap((run) =>
      run.rewards.map((row) => ({
        label: '_node',
        points: row.map((y, x) => ({ x, y: y ?? Number.NaN })),
        width: 1,
        opacity: 0.25,
      })),
    );
    const swarmMean: Series = {
      label: 'swarm mean (all seeds)',
      width: 3,
      points: Array.from({ length: rounds }, (_, x) => {
        const ys = mine
          .flatMap((run) => run.rewards.map((row) => row[x]))
          .filter((y): y is number => typeof y === 'number');
        return { x, y: ys.reduce((a, b) => a + b, 0) / ys.length };
      }),
    };
    return {
      series: [...perNode, swarmMean],
      options: { title: `I/J = ${config}`, xLabel: 'round', yLabel: 'mean reward', yMin: 0, yMax: 1 },
    };
  });
  return chartGrid(panels, Math.min(4, panels.length));
}

if (values.one !== undefined) {
  const [config = '', seed = ''] = values.one.split(':');
  console.log(`\n${JSON.stringify(await runOne(config, Number(seed)))}`);
} else {
  const configs = values.configs.split(',');
  configs.forEach(parseConfig);
  const seeds = values.seeds.split(',').map(Number);
  if (values.processes && (values.families !== '' || values['no-filter'])) {
    throw new Error(
      '--processes runs every family with the zero-signal filter on: --families and --no-filter are in-process only',
    );
  }
  const runs = await runAll(configs, seeds, Number(values.jobs ?? (values.processes ? 1 : 2)));
  mkdirSync(values.out, { recursive: true });
  const command = `npm run experiment -- ${process.argv.slice(2).join(' ')}`;
  writeFileSync(join(values.out, 'result.json'), `${JSON.stringify({ command, runs }, null, 1)}\n`);
  writeFileSync(join(values.out, 'chart.svg'), chart(runs, configs));
  console.log(`\n${summarize(runs, configs)}\n\nwrote ${join(values.out, 'result.json')} and chart.svg`);
}
