import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { writeTinyModel } from '../../sapo/test/fixtures/tiny-models.js';
import type { SwarmReport } from '../src/commands/swarm.js';
import { BIN, eventually } from './helpers/processes.js';

// `swarm-node swarm` as a person runs it, in a real process (needs `npm run build`): a bootstrap
// peer and small swarms of real node processes on loopback. Its stdout is a pipe here, so it
// prints plain lines, among them each child's pid.

interface Launcher {
  child: ChildProcess;
  lines: string[];
  stderr: string[];
  exited: Promise<number | null>;
  /** Its children's pids, from its "(pid N)" lines. */
  pids: Set<number>;
  /** Resolves when a stdout line matches. */
  waitFor(pattern: RegExp, what: string): Promise<string>;
}

const launched: Launcher[] = [];
const allPids = new Set<number>();
let root = '';

function launch(args: string[]): Launcher {
  const child = spawn(process.execPath, [BIN, 'swarm', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  const stderr: string[] = [];
  const pids = new Set<number>();
  const waiters = new Set<() => void>();
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
    lines.push(line);
    for (const match of line.matchAll(/\(pid (\d+)\)/g)) {
      pids.add(Number(match[1]));
      allPids.add(Number(match[1]));
    }
    for (const wake of waiters) wake();
  });
  createInterface({ input: child.stderr as NodeJS.ReadableStream }).on('line', (line) => stderr.push(line));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  exited.then(() => {
    for (const wake of waiters) wake();
  });
  const waitFor = (pattern: RegExp, what: string) =>
    new Promise<string>((resolve, reject) => {
      const check = () => {
        const found = lines.find((line) => pattern.test(line));
        if (found !== undefined) {
          waiters.delete(check);
          resolve(found);
        } else if (child.exitCode !== null || child.signalCode !== null) {
          waiters.delete(check);
          reject(new Error(`the launcher exited before ${what}:\n${lines.join('\n')}\n${stderr.join('\n')}`));
        }
      };
      waiters.add(check);
      check();
    });
  const launcher = { child, lines, stderr, exited, pids, waitFor };
  launched.push(launcher);
  return launcher;
}

/** A process that is gone or a zombie (exited, not yet reaped by whoever adopted it). */
function gone(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return true;
  }
  if (!existsSync('/proc/self/stat')) return false;
  try {
    return /^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true;
  }
}

const readReport = async (out: string) => JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as SwarmReport;
const jsonl = async (file: string) =>
  (await readFile(file, 'utf8'))
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as { event: string; round?: number });

/** Verdicts other than accepting and gossip's duplicates: an honest local swarm refuses nothing. */
const refusals = (counts: Record<string, number>) =>
  Object.fromEntries(Object.entries(counts).filter(([key]) => key !== 'accept' && key !== 'ignore:duplicate'));

afterEach(async () => {
  for (const launcher of launched.splice(0)) {
    if (launcher.child.exitCode === null && launcher.child.signalCode === null) launcher.child.kill('SIGKILL');
    await launcher.exited;
  }
});

afterAll(async () => {
  // Whatever a failed test left running.
  for (const pid of allPids) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {}
  }
  if (root !== '') await rm(root, { recursive: true, force: true });
});

async function outDir(name: string): Promise<string> {
  if (root === '') root = await mkdtemp(join(tmpdir(), 'swarm-launcher-'));
  return join(root, name);
}

describe('swarm-node swarm', () => {
  it('runs a bootstrap and N nodes for --rounds, then leaves report.json, JSONL, logs and charts', async () => {
    const out = await outDir('rounds');
    const launcher = launch(['--nodes', '2', '--rounds', '3', '--held-out-every', '3', '--out', out]);
    expect(await launcher.exited, launcher.stderr.join('\n')).toBe(0);
    expect(launcher.lines).toContain(`report ${join(out, 'report.json')}`);
    expect(launcher.lines.filter((l) => /^node-\d round \d+ reward /.test(l))).toHaveLength(6);

    const report = await readReport(out);
    expect(report).toMatchObject({
      stoppedBy: 'rounds',
      clean: true,
      failure: null,
      settings: { nodes: 2, rounds: 3 },
    });
    expect(report.swarmId).toMatch(/^local-[0-9a-f]{6}$/);
    expect(report.bootstrap).toMatchObject({
      stoppedCleanly: true,
      address: expect.stringMatching(/^\/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\//),
    });
    expect(report.nodes.map((n) => n.name)).toEqual(['node-1', 'node-2']);
    for (const node of report.nodes) {
      expect(node).toMatchObject({ rounds: 3, stoppedCleanly: true, settings: { localGroups: 6, externalGroups: 2 } });
      expect(node.peerId).toMatch(/^12D3KooW/);
      expect(node.reward).toHaveLength(3);
      for (const reward of node.reward) if (reward !== null) expect(reward).toBeGreaterThanOrEqual(0);
      expect(node.difficulty).toHaveLength(3);
      // Measured after round index 2, the third.
      expect(node.heldOut).toEqual([
        expect.objectContaining({
          round: 2,
          difficulty: 1,
          passRate: expect.any(Number),
          byFamily: expect.any(Object),
        }),
      ]);
      expect(node.groups.localUsed).toHaveLength(3);
      expect(node.groups.externalUsed).toHaveLength(3);
      expect(node.groups.totals.published).toBeGreaterThan(0);
      expect(refusals(node.verdicts.rollouts)).toEqual({});
      expect(refusals(node.verdicts.tasks)).toEqual({});
      expect(node.bytes.sent).toBeGreaterThan(0);
      expect(existsSync(node.checkpoint as string)).toBe(true);

      // Its JSONL: what it logged with --json, the round records among it.
      const records = await jsonl(node.jsonl);
      expect(records[0]?.event).toBe('started');
      expect(records.filter((r) => r.event === 'round').map((r) => r.round)).toEqual([0, 1, 2]);
      expect(records.at(-1)?.event).toBe('stopped');
      expect(await readFile(node.log, 'utf8')).toContain('swarm-node swarm: ');
    }
    // The swarm's mean reward per round is the nodes' mean.
    expect(report.swarm.meanReward).toHaveLength(3);
    report.swarm.meanReward.forEach((value, round) => {
      const values = report.nodes.map((n) => n.reward[round]).filter((r): r is number => typeof r === 'number');
      expect(value).toBeCloseTo(values.reduce((a, b) => a + b, 0) / values.length, 10);
    });
    expect(report.swarm.heldOut).toEqual([{ round: 2, meanPassRate: expect.any(Number) }]);

    for (const chart of ['reward-per-node.svg', 'reward-swarm.svg', 'held-out.svg']) {
      const svg = await readFile(join(out, chart), 'utf8');
      expect(svg).toMatch(/^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
      expect(svg.trim().endsWith('</svg>')).toBe(true);
      expect(svg).toContain(report.swarmId);
    }
    const perNode = await readFile(join(out, 'reward-per-node.svg'), 'utf8');
    expect(perNode).toContain('>node-1<');
    expect(perNode).toContain('>node-2<');
    expect(await readFile(join(out, 'reward-swarm.svg'), 'utf8')).toContain('>swarm mean (2 nodes)<');

    const children = [report.bootstrap?.pid as number, ...report.nodes.map((n) => n.pid)];
    expect(children.every((pid) => pid > 0 && gone(pid))).toBe(true);
  }, 600_000);

  it('stops every child cleanly on SIGINT halfway, leaves no process and reports the rounds that ran', async () => {
    const out = await outDir('sigint');
    const launcher = launch(['--nodes', '2', '--out', out]);
    await launcher.waitFor(/^node-1 round 1 /, 'node-1 to finish two rounds');
    await launcher.waitFor(/^node-2 round 1 /, 'node-2 to finish two rounds');
    const children = [...launcher.pids];
    expect(children).toHaveLength(3);
    launcher.child.kill('SIGINT');
    expect(await launcher.exited, launcher.stderr.join('\n')).toBe(0);
    expect(children.filter((pid) => !gone(pid))).toEqual([]);

    const report = await readReport(out);
    expect(report).toMatchObject({ stoppedBy: 'SIGINT', clean: true });
    expect(report.bootstrap?.stoppedCleanly).toBe(true);
    expect(new Set([report.bootstrap?.pid, ...report.nodes.map((n) => n.pid)])).toEqual(new Set(children));
    for (const node of report.nodes) {
      expect(node.stoppedCleanly).toBe(true);
      expect(node.rounds).toBeGreaterThanOrEqual(2);
      expect(node.reward).toHaveLength(node.rounds);
      // It finished its step and saved on the way out.
      expect(node.checkpoint).toMatch(/step-\d+\.safetensors$/);
      expect(existsSync(node.checkpoint as string)).toBe(true);
      const records = await jsonl(node.jsonl);
      expect(records.filter((r) => r.event === 'round')).toHaveLength(node.rounds);
      expect(records.map((r) => r.event)).toEqual(expect.arrayContaining(['stopping', 'stopped']));
    }
    expect(report.swarm.meanReward.length).toBe(Math.max(...report.nodes.map((n) => n.rounds)));
    expect(existsSync(join(out, 'reward-per-node.svg'))).toBe(true);
    expect(existsSync(join(out, 'reward-swarm.svg'))).toBe(true);
  }, 600_000);

  it('takes its children with it when it is killed outright (SIGKILL): each one saves and exits', async () => {
    const out = await outDir('killed');
    const launcher = launch(['--nodes', '1', '--out', out]);
    await launcher.waitFor(/^node-1 round 0 /, 'a first round');
    const children = [...launcher.pids];
    expect(children).toHaveLength(2);
    launcher.child.kill('SIGKILL');
    await launcher.exited;
    // Each child sees its stdin pipe from the launcher close, and stops as on SIGTERM.
    await eventually(
      async () => (children.every(gone) ? true : undefined),
      'the children of a killed launcher to exit',
      240_000,
    );
    const checkpoints = await readdir(join(out, 'node-1', 'checkpoints'));
    expect(checkpoints.some((file) => /^step-\d+\.safetensors$/.test(file))).toBe(true);
    expect(existsSync(join(out, 'report.json'))).toBe(false);
  }, 600_000);

  it('kills a child that does not stop within --stop-timeout, and says so (exit 1)', async () => {
    const out = await outDir('straggler');
    const launcher = launch(['--nodes', '1', '--stop-timeout', '2', '--out', out]);
    const line = await launcher.waitFor(/^node-1 12D3KooW\S+ \(pid \d+\) started/, 'node-1 to start');
    await launcher.waitFor(/^node-1 round 0 /, 'a first round');
    const node = Number(/\(pid (\d+)\)/.exec(line)?.[1]);
    // A node that no longer runs at all: the SIGTERM waits, the SIGKILL after the timeout does not.
    process.kill(node, 'SIGSTOP');
    launcher.child.kill('SIGINT');
    expect(await launcher.exited).toBe(1);
    expect(launcher.stderr.join('\n')).toMatch(/the swarm did not run cleanly: see .*report\.json/);
    expect(launcher.lines).toContain(
      `  node-1 did not stop cleanly (killed by SIGKILL after the stop timeout): see ${join(out, 'node-1.log')}`,
    );
    expect([...launcher.pids].filter((pid) => !gone(pid))).toEqual([]);
    const report = await readReport(out);
    expect(report).toMatchObject({ stoppedBy: 'SIGINT', clean: false, bootstrap: { stoppedCleanly: true } });
    expect(report.nodes[0]).toMatchObject({ stoppedCleanly: false, exit: 'killed by SIGKILL after the stop timeout' });
    expect(report.nodes[0]?.rounds).toBeGreaterThanOrEqual(1);
    expect(await readFile(join(out, 'node-1.log'), 'utf8')).toMatch(/sending SIGTERM\n.*sending SIGKILL\n/s);
  }, 600_000);

  it('refuses bad flags with a clear message and exit code 2, starting nothing', async () => {
    const used = await outDir('used');
    await mkdir(used, { recursive: true });
    await writeFile(join(used, 'report.json'), '{}');
    const fresh = await outDir('never-created');
    const cases: [string[], RegExp][] = [
      [[], /give --nodes N, or --config FILE whose "nodes" list the nodes/],
      [['--nodes', '0'], /--nodes must be an integer from 1 to 64/],
      [['--nodes', 'four'], /--nodes must be an integer from 1 to 64/],
      [['--nodes', '2', '--rounds', '-1'], /--rounds must be an integer of at least 0/],
      [['--nodes', '2', '-I', '1000'], /--local-groups must be an integer from 0 to \d+/],
      [['--nodes', '2', '--swarm', 'Not An Id'], /--swarm: a swarm id is 1-64 characters/],
      [['--nodes', '2', '--base-port', '70000'], /--base-port must be an integer from 0 to 65535/],
      [['--nodes', '3', '--base-port', '65534'], /--base-port 65534 leaves no room for 3 nodes/],
      [['--nodes', '2', '--config', join(used, 'missing.json')], /cannot read the config file .*missing\.json/],
      [['--nodes', '2', '--out', used], /already holds report\.json: every run starts fresh nodes/],
    ];
    for (const [args, message] of cases) {
      const result = spawnSync(
        process.execPath,
        [BIN, 'swarm', ...args, ...(args.includes('--out') ? [] : ['--out', fresh])],
        {
          encoding: 'utf8',
        },
      );
      expect(result.status, `${args.join(' ')}: ${result.stderr}`).toBe(2);
      expect(result.stderr, args.join(' ')).toMatch(message);
      expect(result.stdout).toBe('');
    }
    expect(existsSync(fresh)).toBe(false);
  }, 300_000); // ten CLI starts on a busy machine

  it('runs the nodes of a --config file, each with its own settings: a free rider, a relay, a folder model and an embedded one', async () => {
    const out = await outDir('config');
    const file = join(await outDir(''), 'swarm.json');
    const model = (await writeTinyModel(await outDir('tiny-qwen2'), { architecture: 'qwen2', dtype: 'BF16' })).dir;
    const node = { localGroups: 2, externalGroups: 2, groupSize: 4, maxNewTokens: 16 };
    await writeFile(
      file,
      JSON.stringify({
        rounds: 3,
        heldOutEvery: 0,
        nodes: [
          { name: 'sharer', ...node },
          { name: 'lora', model, backend: 'wasm', ...node },
          { name: 'rider', share: false, ...node },
          { name: 'judge', roles: ['evaluator'] },
        ],
      }),
    );
    // A flag beats the file's top level (3 rounds there); each node's own keys beat the flags.
    const launcher = launch(['--config', file, '--rounds', '4', '-J', '6', '--out', out]);
    expect(await launcher.exited, launcher.stderr.join('\n')).toBe(0);
    const report = await readReport(out);
    expect(report).toMatchObject({ clean: true, stoppedBy: 'rounds', settings: { nodes: 4, rounds: 4 } });
    const byName = Object.fromEntries(report.nodes.map((n) => [n.name, n]));
    expect(Object.keys(byName)).toEqual(['sharer', 'lora', 'rider', 'judge']);
    for (const name of ['sharer', 'lora', 'rider']) {
      expect(byName[name]).toMatchObject({ trains: true, rounds: 4, stoppedCleanly: true, settings: node });
      // Round 0 waited for the other three and the bootstrap: no node trained alone while the rest started.
      expect(byName[name]?.waited).toMatchObject({ wanted: 4, timedOut: false });
    }
    expect(byName.rider?.settings.share).toBe(false);
    // The folder model reached its node: it started on the Hugging Face folder, with LoRA, on wasm.
    expect(byName.lora?.settings).toMatchObject({ model, backend: 'wasm' });
    const loraStarted = (await jsonl(byName.lora?.jsonl as string)).find((l) => l.event === 'started');
    expect(loraStarted).toMatchObject({ model: { source: model, config: { kind: 'lora', architecture: 'qwen2' } } });
    expect(await readFile(byName.lora?.log as string, 'utf8')).toMatch(/ start .* --backend wasm .*--model /);
    // The free rider published nothing, yet learned from the others' groups; they published theirs.
    expect(byName.rider?.groups.totals.published).toBe(0);
    expect(byName.rider?.groups.totals.externalUsed).toBeGreaterThan(0);
    for (const name of ['sharer', 'lora']) expect(byName[name]?.groups.totals.published).toBeGreaterThan(0);
    // The evaluator-only node ran no rounds, kept the launcher waiting for none, and re-checked what it relayed.
    expect(byName.judge).toMatchObject({
      trains: false,
      waited: null,
      rounds: 0,
      stoppedCleanly: true,
      settings: { roles: ['evaluator'], externalGroups: 6 },
    });
    expect(byName.judge?.verdicts.rollouts.accept).toBeGreaterThan(0);
    expect(refusals(byName.judge?.verdicts.rollouts ?? {})).toEqual({});
    expect(await readFile(byName.rider?.log as string, 'utf8')).toMatch(/ start .* --no-share /);
    expect(await readFile(join(out, 'reward-swarm.svg'), 'utf8')).toContain('>swarm mean (3 nodes)<');
  }, 600_000);

  it('refuses a bad --config file with a message naming the file and the key, starting nothing', async () => {
    const dir = await outDir('bad-configs');
    await mkdir(dir, { recursive: true });
    const fresh = join(dir, 'never-created');
    const cases: [unknown, string[], RegExp][] = [
      [{ nodes: 'two' }, [], /nodes must be a non-empty list of nodes/],
      [{ nodes: [] }, [], /nodes must be a non-empty list of nodes/],
      [{ nodes: [{ count: 2 }] }, [], /nodes\[0\]\.name must be 1 to 40 letters/],
      [{ nodes: [{ name: 'a', count: 0 }] }, [], /nodes\[0\]\.count must be an integer from 1 to 64/],
      [
        { nodes: [{ name: 'a', colour: 'red' }] },
        [],
        /nodes\[0\]: unknown key "colour"; a node's keys are name, count, /,
      ],
      [{ nodes: [{ name: 'a', rounds: 3 }] }, [], /nodes\[0\]\.rounds is the launcher's.*give "rounds" at the top/],
      [
        { nodes: [{ name: 'a', localGroups: 'six' }] },
        [],
        /nodes\[0\]\.localGroups: --local-groups must be an integer/,
      ],
      [{ nodes: [{ name: 'a', share: 'no' }] }, [], /nodes\[0\]\.share must be true or false/],
      [{ nodes: [{ name: 'a', backend: 'tpu' }] }, [], /nodes\[0\]\.backend: .*Allowed choices are auto, /],
      [
        { nodes: [{ name: 'a', roles: ['solver'] }] },
        [],
        /nodes\[0\]\.roles: --roles: the evaluator role cannot be turned off/,
      ],
      [
        { nodes: [{ name: 'a', roles: ['judge', 'evaluator'] }] },
        [],
        /nodes\[0\]\.roles: --roles: unknown role "judge"/,
      ],
      [
        { nodes: [{ name: 'a', model: join(dir, 'no-such-model') }] },
        [],
        /nodes\[0\]\.model: no model folder at .*no-such-model/,
      ],
      [{ nodes: [{ name: 'a', count: 2, seed: 1 }] }, [], /nodes\[0\]\.seed is one node's, but count is 2/],
      [{ nodes: [{ name: 'a', count: 2 }, { name: 'a-1' }] }, [], /two nodes would be named "a-1"/],
      [{ nodes: [{ name: 'bootstrap' }] }, [], /two nodes would be named "bootstrap"/],
      [{ nodes: [{ name: 'a', roles: ['evaluator'] }] }, [], /no node trains: give at least one node the solver role/],
      [{ nodes: [{ name: 'a' }], swarmId: 'x' }, [], /unknown setting "swarmId"/],
      [{ nodes: [{ name: 'a' }], rounds: -1 }, [], /rounds: --rounds must be an integer of at least 0/],
      [{ nodes: [{ name: 'a' }] }, ['--nodes', '2'], /--nodes and the "nodes" of .* both give the nodes/],
    ];
    for (const [i, [config, args, message]] of cases.entries()) {
      const file = join(dir, `swarm-${i}.json`);
      await writeFile(file, JSON.stringify(config));
      const result = spawnSync(process.execPath, [BIN, 'swarm', '--config', file, ...args, '--out', fresh], {
        encoding: 'utf8',
      });
      expect(result.status, `${JSON.stringify(config)}: ${result.stderr}`).toBe(2);
      expect(result.stderr, JSON.stringify(config)).toContain(file);
      expect(result.stderr, JSON.stringify(config)).toMatch(message);
    }
    expect(existsSync(fresh)).toBe(false);
  }, 300_000);
});
