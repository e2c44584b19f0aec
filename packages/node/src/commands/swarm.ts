/**
 * `swarm-node swarm`: a whole swarm on this machine in one command. A bootstrap peer and N real
 * `swarm-node start` processes on loopback (no mDNS, a private swarm id), each with its own data
 * dir, JSONL and log under --out; a live view of every node; and when --rounds are done or on
 * Ctrl-C, every child stopped cleanly and a report with charts.
 *
 *   swarm-node swarm --nodes 4 --rounds 20 --out swarm-out
 *   swarm-node swarm --config swarm.json --out swarm-out     # nodes unlike each other (swarm-config.ts)
 *
 *   swarm-out/report.json          per node: reward per round, held-out pass rates, groups, verdicts, bytes;
 *                                  the swarm's mean reward per round
 *   swarm-out/reward-per-node.svg  reward per round, one line per node
 *   swarm-out/reward-swarm.svg     the swarm's mean reward per round (nodes faint behind it)
 *   swarm-out/held-out.svg         held-out pass rate per node, when it was measured
 *   swarm-out/node-1.jsonl         what node-1 logged with --json (its round records); node-1.log: its stderr
 *   swarm-out/node-1/              node-1's data dir (identity, checkpoints); bootstrap/ likewise
 *
 * While it runs, a page of the whole swarm in the browser (--page-port; the address is printed):
 * every node's round, reward and curves side by side, live, each node linking to its own page.
 *
 * Order of start, so that no node is refused: the bootstrap first; its address comes from its
 * --json `started` line; then the nodes, all at once, with it as --bootstrap and --min-peers high
 * enough that each keeps dialling until it knows the swarm.
 *
 * Order of stop: SIGTERM to every node (each finishes its step, saves a checkpoint and exits), then
 * to the bootstrap; what is still running after --stop-timeout is killed (SIGKILL to its process
 * group). A second Ctrl-C a second or more after the first stops the nodes without saving.
 *
 * No child outlives the launcher. Each runs in its own process group, so the terminal's Ctrl-C
 * reaches the launcher alone, which stops them in the order above. And each one's stdin is a pipe
 * from the launcher that it watches (SWARM_NODE_LAUNCHER, see watchLauncher): when the launcher
 * dies, even by SIGKILL, the kernel closes the pipe and every child stops as on SIGTERM, exiting
 * anyway after the stop timeout.
 *
 * The nodes' settings come from this command line and its --config file alone (SWARM_NODE_*
 * variables are not passed on), so report.json's command reproduces the run; report.json records
 * each node's NodeSpec too. A node that trains nothing (roles without the solver) runs until the
 * training nodes are done, then stops with the bootstrap.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { LIMITS, type RoundMetrics } from '@swarm-node/roles';
import { Command, InvalidArgumentError, Option } from 'commander';
import { createLogUpdate } from 'log-update';
import { integer, readConfigFile, resolveSettings } from '../config.js';
import { NodeError } from '../errors.js';
import { type EventFeed, ROUND_HISTORY, type ServerEvent, startStatusServer } from '../status-server.js';
import { lineChart, type Series } from '../svg-chart.js';
import type { PeerWait } from '../swarm-node.js';
import { swarmIdProblem } from '../wire/index.js';
import { NODE_SETTINGS, type NodeSpec, nodeSpecs, startArgs, trains, uniformSpecs } from './swarm-config.js';

export type { NodeSpec } from './swarm-config.js';

/** In a child of the launcher: seconds it may take to stop once the launcher is gone; stdin is the launcher's pipe. */
export const LAUNCHER_ENV = 'SWARM_NODE_LAUNCHER';

const BIN = fileURLToPath(new URL('../../bin/swarm-node.js', import.meta.url));
const LOOPBACK = '127.0.0.1';
/** Longest wait for a child's `started` line: on a busy machine N learners load at once. */
const START_TIMEOUT_MS = 600_000;
/** A second signal sooner than this after the first is the same Ctrl-C (the terminal and npx both send it). */
const SAME_SIGNAL_MS = 1000;
/** After a second Ctrl-C, how long the nodes get to exit without saving before they are killed. */
const HURRY_TIMEOUT_MS = 5000;
const STATUS_POLL_MS = 2000;

export interface SwarmSettings {
  nodes: number;
  rounds: number;
  localGroups: number;
  externalGroups: number;
  heldOutEvery: number;
  out: string;
  swarm: string;
  basePort: number;
  stopTimeout: number;
  /** The swarm page's port on 127.0.0.1; 0: any free port. */
  pagePort: number;
}

export class SwarmLaunchError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode = 1) {
    super(message);
    this.name = 'SwarmLaunchError';
    this.exitCode = exitCode;
  }
}

export function swarmCommand(): Command {
  return new Command('swarm')
    .description(
      'run a local swarm: a bootstrap peer and N training nodes on loopback, a live view, and a report with charts',
    )
    .addOption(
      new Option(
        '--nodes <n>',
        "training nodes, each its own `swarm-node start` process (or the --config file's list)",
      ).argParser(integer('--nodes', 1, 64)),
    )
    .addOption(
      new Option(
        '--config <file>',
        'JSON file: these flags in camelCase, and "nodes": a list of nodes each with its own model, I/J, G, backend, roles, share',
      ),
    )
    .addOption(
      new Option('--rounds <n>', 'rounds each node runs, then the swarm stops; 0 runs until Ctrl-C')
        .default(0)
        .argParser(integer('--rounds', 0)),
    )
    .addOption(
      new Option('-I, --local-groups <n>', "each node's own groups per SAPO step")
        .default(6)
        .argParser(integer('--local-groups', 0, LIMITS.tasksPerRound)),
    )
    .addOption(
      new Option('-J, --external-groups <n>', "each node's peers' groups per SAPO step")
        .default(2)
        .argParser(integer('--external-groups', 0, 256)),
    )
    .addOption(
      new Option('--held-out-every <n>', 'every n rounds, each node measures its held-out pass rate; 0 never')
        .default(10)
        .argParser(integer('--held-out-every', 0)),
    )
    .addOption(
      new Option('--out <dir>', 'an empty or new folder for the report, logs and data dirs').default('swarm-out'),
    )
    .addOption(new Option('--swarm <id>', 'swarm id (default: local- and 6 random hex digits)').argParser(swarmId))
    .addOption(
      new Option('--base-port <port>', 'TCP port of the bootstrap; node i listens on port + i; 0: any free ports')
        .default(0)
        .argParser(integer('--base-port', 0, 65535)),
    )
    .addOption(
      new Option('--page-port <port>', 'port of the swarm page on 127.0.0.1 (printed at start); 0: any free port')
        .default(0)
        .argParser(integer('--page-port', 0, 65535)),
    )
    .addOption(
      new Option('--stop-timeout <s>', 'seconds a child gets to stop cleanly before it is killed')
        .default(60)
        .argParser(integer('--stop-timeout', 1, 3600)),
    )
    .addHelpText(
      'after',
      `
Each node is a real \`swarm-node start\` on ${LOOPBACK} (no mDNS), found through the bootstrap peer.
Its settings come from these flags alone: SWARM_NODE_* variables are not passed on.
Ctrl-C (or SIGTERM) stops every node after its current step, saving a checkpoint; again, a second
later, stops them without saving. No child outlives the launcher, even one killed outright.

While it runs, http://${LOOPBACK}:<--page-port>/ shows the whole swarm live in a browser (the launcher
prints the address); each node's name there opens that node's own page.

With --config FILE, a JSON file: these flags in camelCase (a flag given here beats the file), and
"nodes", a list of nodes each unlike the others, for example
  { "rounds": 30, "nodes": [
      { "name": "sharer", "count": 3, "localGroups": 4, "externalGroups": 4 },
      { "name": "free-rider", "localGroups": 4, "externalGroups": 4, "share": false },
      { "name": "judge", "roles": ["evaluator"] },
      { "name": "lora", "model": "models/tiny-qwen2", "backend": "wasm", "groupSize": 4 } ] }
A node's keys: name, count, and these \`swarm-node start\` settings: ${NODE_SETTINGS.join(', ')}.
A node without the solver role trains nothing: it re-checks and relays until the others are done.

In --out: report.json, reward-per-node.svg, reward-swarm.svg, held-out.svg (when measured), and
for each node (and the bootstrap) <name>.jsonl (its --json log), <name>.log (stderr) and <name>/ (data dir).`,
    )
    .action(async (_options, cmd: Command) => {
      const file = cmd.opts<{ config?: string }>().config;
      // The file's "nodes" are this launcher's; every other key is a flag's (flags beat them).
      const { nodes: entries, ...rest } = file === undefined ? {} : readConfigFile(file);
      const options = resolveSettings<Omit<SwarmSettings, 'swarm' | 'nodes'> & { swarm?: string; nodes?: number }>(
        cmd,
        rest,
      );
      const defaults = {
        localGroups: options.localGroups,
        externalGroups: options.externalGroups,
        heldOutEvery: options.heldOutEvery,
      };
      let specs: NodeSpec[];
      if (file !== undefined && entries !== undefined) {
        if (options.nodes !== undefined) {
          throw new NodeError('BAD_CONFIG', `--nodes and the "nodes" of ${file} both give the nodes: leave one out`);
        }
        specs = nodeSpecs(file, entries, defaults);
      } else if (options.nodes !== undefined) {
        specs = uniformSpecs(options.nodes, defaults);
      } else {
        throw new NodeError('BAD_CONFIG', 'give --nodes N, or --config FILE whose "nodes" list the nodes');
      }
      const settings: SwarmSettings = {
        nodes: specs.length,
        rounds: options.rounds,
        localGroups: options.localGroups,
        externalGroups: options.externalGroups,
        heldOutEvery: options.heldOutEvery,
        out: resolve(options.out),
        swarm: options.swarm ?? `local-${randomBytes(3).toString('hex')}`,
        basePort: options.basePort,
        stopTimeout: options.stopTimeout,
        pagePort: options.pagePort,
      };
      if (settings.basePort !== 0 && settings.basePort + settings.nodes > 65535) {
        throw new NodeError(
          'BAD_CONFIG',
          `--base-port ${settings.basePort} leaves no room for ${settings.nodes} nodes on ports above it (at most ${65535 - settings.nodes})`,
        );
      }
      await prepareOut(settings.out);
      const code = await runSwarm(settings, specs, `swarm-node ${process.argv.slice(2).join(' ')}`);
      if (code !== 0) {
        throw new SwarmLaunchError(
          `the swarm did not run cleanly: see ${join(settings.out, 'report.json')} and the logs beside it`,
          code,
        );
      }
    });
}

function swarmId(value: string): string {
  const problem = swarmIdProblem(value);
  if (problem !== null) throw new InvalidArgumentError(`--swarm: ${problem}.`);
  return value;
}

async function prepareOut(out: string): Promise<void> {
  let entries: string[] = [];
  try {
    entries = await readdir(out);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOTDIR') throw new NodeError('BAD_CONFIG', `--out ${out} is a file, not a folder`);
    if (code !== 'ENOENT') throw error;
  }
  if (entries.length > 0) {
    throw new NodeError(
      'BAD_CONFIG',
      `--out ${out} already holds ${entries.slice(0, 3).join(', ')}${entries.length > 3 ? ', …' : ''}: every run starts fresh nodes, so give a new or empty folder`,
    );
  }
  try {
    await mkdir(out, { recursive: true });
  } catch (error) {
    throw new NodeError('DATA_DIR_UNUSABLE', `cannot create --out ${out}: ${(error as Error).message}`, {
      cause: error,
    });
  }
}

// ---------------------------------------------------------------------------------------------
// The watched pipe, on the child's side.

/**
 * In a child of `swarm-node swarm` (LAUNCHER_ENV set): when the launcher's end of stdin closes —
 * the launcher exited or was killed — stop as on SIGTERM (finish the step, save), and exit after
 * the given seconds whatever happens. The pipe does not keep the process alive.
 */
export function watchLauncher(env: NodeJS.ProcessEnv = process.env): void {
  const value = env[LAUNCHER_ENV];
  if (value === undefined) return;
  delete env[LAUNCHER_ENV];
  const seconds = Number(value);
  const graceMs = (Number.isFinite(seconds) && seconds > 0 ? seconds : 60) * 1000;
  const stdin = process.stdin as NodeJS.ReadStream & { unref?: () => void };
  let gone = false;
  const orphaned = () => {
    if (gone) return;
    gone = true;
    // stdout and stderr were pipes to the launcher too: a write must not crash the clean stop.
    process.stdout.on('error', () => {});
    process.stderr.on('error', () => {});
    setTimeout(() => process.exit(1), graceMs).unref();
    process.kill(process.pid, 'SIGTERM');
  };
  stdin.on('end', orphaned);
  stdin.on('close', orphaned);
  stdin.on('error', orphaned);
  stdin.on('data', () => {});
  stdin.resume();
  stdin.unref?.();
}

// ---------------------------------------------------------------------------------------------
// Children.

type RoundRecord = Omit<RoundMetrics, 'time'> & { event: 'round'; time: string };

interface StartedRecord {
  event: 'started';
  peerId: string;
  addresses: string[];
  statusUrl: string | null;
}

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** One child process: its output files, what it logged, and its state. */
class Member {
  readonly name: string;
  readonly role: 'bootstrap' | 'node';
  readonly dataDir: string;
  readonly spec: NodeSpec | null;
  readonly jsonlFile: string;
  readonly logFile: string;
  readonly child: ChildProcess;
  readonly pid: number;
  readonly rounds: RoundRecord[] = [];
  readonly stderrTail: string[] = [];
  started: StartedRecord | null = null;
  checkpoint: string | null = null;
  /** It logged `stopped`: it finished its step and saved (or, a bootstrap, closed its connections). */
  stoppedCleanly = false;
  killed = false;
  /** 'waiting': started, and waiting for its peers before round 0 (--wait-peers). */
  state: 'starting' | 'waiting' | 'running' | 'stopping' | 'exited' = 'starting';
  /** How its wait for peers ended (its `waited` line); null while waiting or when it did not wait. */
  waited: PeerWait | null = null;
  exit: Exit | null = null;
  peers: number | null = null;
  /** The last /status of a member that does not train (the bootstrap, a relay): its verdicts on what it relayed. */
  relayed: { rollouts: Record<string, number>; tasks: Record<string, number> } | null = null;
  /** Resolves when the process has exited and its output is read and written. */
  readonly closed: Promise<void>;
  readonly #jsonl: WriteStream;
  readonly #log: WriteStream;
  readonly #onChange: (member: Member, record?: Record<string, unknown>) => void;
  #startWaiters: { resolve: (r: StartedRecord) => void; reject: (e: Error) => void }[] = [];
  readonly #waitsForPeers: boolean;

  constructor(
    out: string,
    plan: { name: string; role: 'bootstrap' | 'node'; args: string[]; spec: NodeSpec | null; stopTimeout: number },
    onChange: (member: Member, record?: Record<string, unknown>) => void,
  ) {
    this.name = plan.name;
    this.role = plan.role;
    this.spec = plan.spec;
    this.#waitsForPeers = plan.args.includes('--wait-peers');
    this.dataDir = join(out, plan.name);
    this.jsonlFile = join(out, `${plan.name}.jsonl`);
    this.logFile = join(out, `${plan.name}.log`);
    this.#onChange = onChange;
    this.#jsonl = createWriteStream(this.jsonlFile);
    this.#log = createWriteStream(this.logFile);
    const args = [BIN, plan.role === 'bootstrap' ? 'bootstrap' : 'start', '--data-dir', this.dataDir, ...plan.args];
    this.note(`${process.execPath} ${args.join(' ')}`);
    this.child = spawn(process.execPath, args, {
      // stdin: the pipe the child watches (LAUNCHER_ENV); never written to.
      stdio: ['pipe', 'pipe', 'pipe'],
      // Its own process group: the terminal's Ctrl-C goes to the launcher only, and a kill takes the whole group.
      detached: true,
      env: childEnv(plan.stopTimeout),
    });
    this.pid = this.child.pid ?? -1;
    this.child.stdin?.on('error', () => {});
    const stdoutDone = new Promise<void>((done) => {
      createInterface({ input: this.child.stdout as NodeJS.ReadableStream })
        .on('line', (line) => this.#line(line))
        .on('close', done);
    });
    const stderrDone = new Promise<void>((done) => {
      createInterface({ input: this.child.stderr as NodeJS.ReadableStream })
        .on('line', (line) => {
          this.#log.write(`${line}\n`);
          this.stderrTail.push(line);
          if (this.stderrTail.length > 20) this.stderrTail.shift();
        })
        .on('close', done);
    });
    const exited = new Promise<void>((done) => {
      this.child.on('error', (error) => {
        this.note(`could not start: ${error.message}`);
        this.exit ??= { code: null, signal: null };
        done();
      });
      this.child.on('exit', (code, signal) => {
        this.exit = { code, signal };
        done();
      });
    });
    this.closed = this.#close(exited, stdoutDone, stderrDone);
  }

  get hasExited(): boolean {
    return this.state === 'exited';
  }

  async #close(exited: Promise<void>, stdoutDone: Promise<void>, stderrDone: Promise<void>): Promise<void> {
    await exited;
    if (this.pid > 0) await Promise.all([stdoutDone, stderrDone]);
    this.state = 'exited';
    this.note(`exited: ${describeExit(this)}`);
    for (const waiter of this.#startWaiters) waiter.reject(this.#startFailure());
    this.#startWaiters = [];
    await Promise.all([end(this.#jsonl), end(this.#log)]);
    this.#onChange(this);
  }

  /** A line of the launcher's own in the child's log. */
  note(text: string): void {
    if (!this.#log.writableEnded) this.#log.write(`# ${new Date().toISOString()} swarm-node swarm: ${text}\n`);
  }

  /** Resolves with its `started` line; rejects if it exits first. */
  whenStarted(): Promise<StartedRecord> {
    if (this.started !== null) return Promise.resolve(this.started);
    if (this.state === 'exited') return Promise.reject(this.#startFailure());
    return new Promise((resolve, reject) => this.#startWaiters.push({ resolve, reject }));
  }

  get address(): string | null {
    return this.started?.addresses.find((a) => a.startsWith(`/ip4/${LOOPBACK}/`)) ?? this.started?.addresses[0] ?? null;
  }

  signal(signal: NodeJS.Signals): void {
    if (this.state === 'exited' || this.pid <= 0) return;
    this.note(`sending ${signal}`);
    try {
      if (signal === 'SIGKILL') process.kill(-this.pid, signal);
      else process.kill(this.pid, signal);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
    }
  }

  #line(line: string): void {
    let record: Record<string, unknown> | null = null;
    try {
      const parsed: unknown = JSON.parse(line);
      if (typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)) {
        record = parsed as Record<string, unknown>;
      }
    } catch {}
    if (record === null) {
      this.#log.write(`stdout: ${line}\n`);
      return;
    }
    this.#jsonl.write(`${line}\n`);
    switch (record.event) {
      case 'started':
        this.started = record as unknown as StartedRecord;
        if (this.state === 'starting') this.state = this.#waitsForPeers ? 'waiting' : 'running';
        for (const waiter of this.#startWaiters) waiter.resolve(this.started);
        this.#startWaiters = [];
        break;
      case 'waited':
        this.waited = {
          wanted: Number(record.wanted),
          found: Number(record.found),
          seconds: Number(record.seconds),
          timedOut: record.timedOut === true,
        };
        if (this.state === 'waiting') this.state = 'running';
        break;
      case 'round':
        this.rounds.push(record as unknown as RoundRecord);
        break;
      case 'stopping':
        this.state = 'stopping';
        break;
      case 'stopped':
        this.stoppedCleanly = true;
        this.checkpoint = typeof record.checkpoint === 'string' ? record.checkpoint : this.checkpoint;
        break;
      case 'checkpoint':
        this.checkpoint = typeof record.file === 'string' ? record.file : this.checkpoint;
        break;
    }
    this.#onChange(this, record);
  }

  #startFailure(): Error {
    const tail = this.stderrTail.filter((l) => l.trim() !== '').slice(-5);
    return new Error(
      `${this.name} exited (${describeExit(this)}) before it started${tail.length === 0 ? '' : `:\n  ${tail.join('\n  ')}`}\n  (log: ${this.logFile})`,
    );
  }
}

function childEnv(stopTimeout: number): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith('SWARM_NODE_')) env[key] = value;
  }
  env[LAUNCHER_ENV] = String(stopTimeout);
  return env;
}

const end = (stream: WriteStream) => new Promise<void>((done) => stream.end(done));

function describeExit(member: Member): string {
  const exit = member.exit;
  if (exit === null) return 'running';
  const how = exit.signal !== null ? `killed by ${exit.signal}` : `exit code ${exit.code}`;
  return member.killed ? `${how} after the stop timeout` : how;
}

// ---------------------------------------------------------------------------------------------
// The run.

async function runSwarm(settings: SwarmSettings, specs: NodeSpec[], command: string): Promise<number> {
  const startedAt = new Date();
  const display = process.stdout.isTTY ? new TerminalDisplay() : new PlainDisplay();
  const members: Member[] = [];
  let stopRequested: NodeJS.Signals | null = null;
  let failure: string | null = null;
  let firstSignal = 0;
  let wakeStop: () => void = () => {};
  const stopSignalled = new Promise<void>((resolve) => {
    wakeStop = resolve;
  });
  let hurry: () => void = () => {};
  const hurried = new Promise<void>((resolve) => {
    hurry = resolve;
  });
  const view = () => viewOf(settings, members, startedAt, stopRequested);
  // The swarm page: started first, so that a port in use stops the run before any child starts.
  const feed = new PageFeed(members, view);
  const page = await startStatusServer({
    host: LOOPBACK,
    port: settings.pagePort,
    status: view,
    events: feed,
    page: 'swarm',
    portFlag: '--page-port',
  });
  const onChange = (member: Member, record?: Record<string, unknown>) => {
    display.changed(view(), member, record);
    const last = member.rounds.at(-1);
    if (record?.event === 'round' && last !== undefined) feed.push('round', pageRound(member, last));
    else if (record === undefined) feed.pushView();
  };
  const onSignal = (signal: NodeJS.Signals) => {
    if (firstSignal !== 0 && Date.now() - firstSignal < SAME_SIGNAL_MS) return;
    if (firstSignal !== 0) {
      display.event(`${signal} again: stopping the nodes now, without saving`);
      hurry();
      return;
    }
    firstSignal = Date.now();
    stopRequested = signal;
    display.event(
      `${signal}: stopping every node after its current step (it saves a checkpoint); Ctrl-C again to stop at once`,
    );
    wakeStop();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const poller = setInterval(() => void pollStatus(members).then(() => display.changed(view())), STATUS_POLL_MS);
  const ticker = setInterval(() => {
    display.tick(view());
    feed.pushView();
  }, 1000);
  const add = (plan: ConstructorParameters<typeof Member>[1]) => {
    const member = new Member(settings.out, plan, onChange);
    members.push(member);
    return member;
  };
  /** Waits for `promise` unless a stop is asked for first: then resolves with null. */
  const unlessStopped = <T>(promise: Promise<T>, timeoutMs: number, what: string) =>
    Promise.race([
      promise,
      stopSignalled.then(() => null),
      new Promise<never>((_, reject) =>
        setTimeout(
          () => reject(new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`)),
          timeoutMs,
        ).unref(),
      ),
    ]);

  try {
    display.event(
      `swarm "${settings.swarm}": a bootstrap peer and ${plural(settings.nodes, 'node')}; files in ${settings.out}`,
    );
    display.event(`swarm page ${page.url}/ (live in a browser while the swarm runs)`);
    const port = (i: number) => (settings.basePort === 0 ? 0 : settings.basePort + i);
    const network = (i: number) => [
      '--swarm',
      settings.swarm,
      '--listen',
      `/ip4/${LOOPBACK}/tcp/${port(i)}`,
      '--no-mdns',
    ];
    const status = ['--status-host', LOOPBACK, '--status-port', '0'];
    const seed = add({
      name: 'bootstrap',
      role: 'bootstrap',
      args: [...network(0), ...status, '--min-peers', '0', '--json'],
      spec: null,
      stopTimeout: settings.stopTimeout,
    });
    const seedStarted = await unlessStopped(seed.whenStarted(), START_TIMEOUT_MS, 'the bootstrap peer to start');
    const seedAddress = seed.address;
    if (seedStarted !== null && seedAddress !== null) {
      display.event(`bootstrap ${seedAddress} (pid ${seed.pid})`);
      // Every other node and the bootstrap, up to 8: each keeps dialling until it has them.
      const minPeers = Math.min(settings.nodes, 8);
      const nodes = specs.map((spec, i) =>
        add({
          name: spec.name,
          role: 'node',
          args: [
            ...network(i + 1),
            ...status,
            '--bootstrap',
            seedAddress,
            '--min-peers',
            String(minPeers),
            // Round 0 once they are all there: else the first to start trains alone for its first rounds.
            ...(trains(spec) ? ['--wait-peers', String(minPeers)] : []),
            '--rounds',
            String(settings.rounds),
            ...startArgs(spec),
            '--json',
          ],
          spec,
          stopTimeout: settings.stopTimeout,
        }),
      );
      const started = await unlessStopped(
        Promise.all(nodes.map((node) => node.whenStarted())),
        START_TIMEOUT_MS,
        'every node to start',
      );
      if (started !== null) {
        for (const node of nodes) display.event(`${node.name} ${node.started?.peerId} (pid ${node.pid}) started`);
        // With --rounds each training node stops by itself; a signal stops them all. The nodes that
        // train nothing have no rounds: they are stopped with the bootstrap once the others are done.
        const training = nodes.filter((node) => trains(node.spec as NodeSpec));
        await Promise.race([Promise.all(training.map((node) => node.closed)), stopSignalled]);
      }
    }
  } catch (error) {
    failure = (error as Error).message;
    display.event(`error: ${failure}`);
  }

  // Stop: the nodes (each finishes its step and saves), then the bootstrap, whose verdicts are kept.
  const nodes = members.filter((m) => m.role === 'node');
  await pollStatus(nodes.filter((node) => !trains(node.spec as NodeSpec)));
  await Promise.all(nodes.map((node) => stop(node, settings.stopTimeout * 1000, hurried)));
  const seed = members.find((m) => m.role === 'bootstrap');
  if (seed !== undefined) {
    await pollStatus([seed]);
    await stop(seed, settings.stopTimeout * 1000, hurried);
  }
  clearInterval(poller);
  clearInterval(ticker);
  await Promise.all(members.map((m) => m.closed));
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);

  const endedAt = new Date();
  const report = buildReport({ settings, command, members, startedAt, endedAt, stopRequested, failure });
  const files = await writeReport(settings.out, report);
  display.finish(view(), report, files);
  feed.pushView();
  await page.close();
  return report.clean ? 0 : 1;
}

/** What the swarm page's /events sends: the table of nodes (`swarm`) and each node's rounds (`round`). */
class PageFeed implements EventFeed {
  readonly #members: Member[];
  readonly #view: () => SwarmView;
  readonly #listeners = new Set<(event: ServerEvent) => void>();

  constructor(members: Member[], view: () => SwarmView) {
    this.#members = members;
    this.#view = view;
  }

  *history(): Iterable<ServerEvent> {
    yield { event: 'swarm', data: this.#view() };
    for (const member of this.#members) {
      if (member.role !== 'node') continue;
      for (const record of member.rounds.slice(-ROUND_HISTORY)) {
        yield { event: 'round', data: pageRound(member, record) };
      }
    }
  }

  subscribe(listener: (event: ServerEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  push(event: string, data: unknown): void {
    for (const listener of this.#listeners) listener({ event, data });
  }

  /** The table of nodes as it is now, when a page is open. */
  pushView(): void {
    if (this.#listeners.size > 0) this.push('swarm', this.#view());
  }
}

/** What the swarm page charts of one round of one node. */
function pageRound(member: Member, record: RoundRecord) {
  const stats = record.learner.stats;
  return {
    node: member.name,
    round: record.round,
    reward: record.reward,
    heldOut: record.heldOut?.passRate ?? null,
    clip: stats?.clipFraction ?? null,
    kl: stats?.approxKl ?? null,
    entropy: stats?.entropy ?? null,
    tokens: stats?.meanCompletionTokens ?? null,
  };
}

/** SIGTERM, then SIGKILL after the timeout (or soon after a second Ctrl-C). */
async function stop(member: Member, timeoutMs: number, hurried: Promise<void>): Promise<void> {
  if (member.state === 'exited') return;
  member.signal('SIGTERM');
  const outcome = await Promise.race([
    member.closed.then(() => 'exited' as const),
    hurried.then(() => 'hurry' as const),
    sleep(timeoutMs).then(() => 'timeout' as const),
  ]);
  if (outcome === 'exited') return;
  if (outcome === 'hurry') {
    // start's rule: a second signal a second after the first exits without saving.
    member.signal('SIGTERM');
    const exited = await Promise.race([member.closed.then(() => true), sleep(HURRY_TIMEOUT_MS).then(() => false)]);
    if (exited) return;
  }
  if (member.hasExited) return;
  member.killed = true;
  member.signal('SIGKILL');
  await member.closed;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms).unref());

async function pollStatus(members: Member[]): Promise<void> {
  await Promise.all(
    members.map(async (member) => {
      const url = member.started?.statusUrl;
      if (url === null || url === undefined || member.state === 'exited') return;
      try {
        const response = await fetch(`${url}/status`, { signal: AbortSignal.timeout(1500) });
        const status = (await response.json()) as {
          peers: { id: string }[];
          rollouts: { received: Record<string, Record<string, number>> };
        };
        // Connections, one or more per peer.
        member.peers = new Set(status.peers.map((p) => p.id)).size;
        if (member.spec === null || !trains(member.spec)) {
          member.relayed = {
            rollouts: status.rollouts.received.rollouts ?? {},
            tasks: status.rollouts.received.tasks ?? {},
          };
        }
      } catch {
        // Busy or stopping: the next poll will do.
      }
    }),
  );
}

// ---------------------------------------------------------------------------------------------
// The view: what the display shows of each node.

interface NodeView {
  name: string;
  trains: boolean;
  peerId: string | null;
  pid: number;
  state: string;
  round: number | null;
  rounds: number;
  reward: number | null;
  last10: number | null;
  heldOut: number | null;
  peers: number | null;
  rolloutsIn: number;
  rolloutsOut: number;
  rejects: number;
  /** Its status server, whose / is its own page. */
  page: string | null;
}

interface SwarmView {
  swarm: string;
  out: string;
  roundsWanted: number;
  seconds: number;
  stopping: NodeJS.Signals | null;
  /** Every child has exited. */
  finished: boolean;
  bootstrap: { address: string | null; peers: number | null; state: string; page: string | null } | null;
  nodes: NodeView[];
  /** The swarm's mean reward in the latest round every running node has finished. */
  meanReward: number | null;
}

function viewOf(
  settings: SwarmSettings,
  members: Member[],
  startedAt: Date,
  stopping: NodeJS.Signals | null,
): SwarmView {
  const nodes = members.filter((m) => m.role === 'node').map(nodeView);
  const seed = members.find((m) => m.role === 'bootstrap');
  const perRound = swarmMeanReward(members.filter((m) => m.role === 'node').map((m) => rewardSeries(m.rounds)));
  const done = Math.min(
    ...nodes.filter((n) => n.trains && (n.state !== 'exited' || n.rounds > 0)).map((n) => n.rounds),
  );
  return {
    swarm: settings.swarm,
    out: settings.out,
    roundsWanted: settings.rounds,
    seconds: (Date.now() - startedAt.getTime()) / 1000,
    stopping,
    finished: members.length > 0 && members.every((m) => m.hasExited),
    bootstrap:
      seed === undefined
        ? null
        : { address: seed.address, peers: seed.peers, state: stateOf(seed), page: seed.started?.statusUrl ?? null },
    nodes,
    meanReward: Number.isFinite(done) && done > 0 ? (perRound[done - 1] ?? null) : null,
  };
}

function stateOf(member: Member): string {
  if (member.state !== 'exited') return member.state;
  return member.exit?.code === 0 && !member.killed ? 'stopped' : describeExit(member);
}

function nodeView(member: Member): NodeView {
  const last = member.rounds.at(-1);
  const rewards = member.rounds.map((r) => r.reward).filter((r): r is number => r !== null);
  const heldOut = member.rounds.filter((r) => r.heldOut !== null).at(-1)?.heldOut?.passRate ?? null;
  const totals = verdictTotals(member.rounds);
  return {
    name: member.name,
    trains: trains(member.spec as NodeSpec),
    peerId: member.started?.peerId ?? null,
    pid: member.pid,
    state: stateOf(member),
    round: last?.round ?? null,
    rounds: member.rounds.length,
    reward: last?.reward ?? null,
    last10: rewards.length === 0 ? null : mean(rewards.slice(-10)),
    heldOut,
    peers: member.peers,
    rolloutsIn: totals.rollouts.accept ?? 0,
    rolloutsOut: member.rounds.reduce((sum, r) => sum + r.groups.published, 0),
    rejects: rejectCount(totals.rollouts) + rejectCount(totals.tasks),
    page: member.started?.statusUrl ?? null,
  };
}

const rejectCount = (counts: Record<string, number>) =>
  Object.entries(counts)
    .filter(([key]) => key.startsWith('reject'))
    .reduce((sum, [, n]) => sum + n, 0);

interface Display {
  /** A member logged a record or changed state. */
  changed(view: SwarmView, member?: Member, record?: Record<string, unknown>): void;
  tick(view: SwarmView): void;
  /** A line worth keeping. */
  event(text: string): void;
  finish(view: SwarmView, report: SwarmReport, files: string[]): void;
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;
const fixed = (value: number | null, digits = 2) => (value === null ? '-' : value.toFixed(digits));
const shortId = (id: string | null) => (id === null ? '-' : `${id.slice(0, 8)}…${id.slice(-4)}`);
const duration = (seconds: number) =>
  seconds < 60
    ? `${Math.floor(seconds)}s`
    : `${Math.floor(seconds / 60)}m${String(Math.floor(seconds % 60)).padStart(2, '0')}s`;

/** A table redrawn in place (log-update) while stdout is a terminal. */
class TerminalDisplay implements Display {
  readonly #render = createLogUpdate(process.stdout);
  #last = 0;
  #pending: NodeJS.Timeout | null = null;
  #view: SwarmView | null = null;

  changed(view: SwarmView): void {
    this.#view = view;
    // At most ten frames a second, however fast the records come.
    if (this.#pending !== null) return;
    const wait = Math.max(0, 100 - (Date.now() - this.#last));
    this.#pending = setTimeout(() => {
      this.#pending = null;
      this.#draw();
    }, wait);
  }

  tick(view: SwarmView): void {
    this.changed(view);
  }

  event(text: string): void {
    this.#render.persist(text);
    if (this.#view !== null) this.#draw();
  }

  finish(view: SwarmView, report: SwarmReport, files: string[]): void {
    if (this.#pending !== null) clearTimeout(this.#pending);
    this.#view = view;
    this.#draw();
    this.#render.done();
    console.log(summary(report, files));
  }

  #draw(): void {
    if (this.#view === null) return;
    this.#last = Date.now();
    this.#render(table(this.#view));
  }
}

function table(view: SwarmView): string {
  const rounds = view.roundsWanted === 0 ? 'until Ctrl-C' : `${view.roundsWanted} rounds`;
  const head = `swarm "${view.swarm}" on ${LOOPBACK}: ${plural(view.nodes.length, 'node')}, ${rounds}, ${duration(view.seconds)}`;
  const seed =
    view.bootstrap === null
      ? ''
      : `bootstrap ${view.bootstrap.address ?? '(starting)'}  peers ${view.bootstrap.peers ?? '-'}  ${view.bootstrap.state}`;
  const columns = [
    ['node', 'peer', 'rounds', 'reward', 'last 10', 'held-out', 'peers', 'rollouts in', 'out', 'rejects', 'state'],
    ...view.nodes.map((n) => [
      n.name,
      shortId(n.peerId),
      !n.trains ? 'relays' : view.roundsWanted === 0 ? String(n.rounds) : `${n.rounds}/${view.roundsWanted}`,
      fixed(n.reward),
      fixed(n.last10),
      fixed(n.heldOut),
      n.peers === null ? '-' : String(n.peers),
      String(n.rolloutsIn),
      String(n.rolloutsOut),
      String(n.rejects),
      n.state,
    ]),
  ];
  const widths = (columns[0] as string[]).map((_, i) => Math.max(...columns.map((row) => (row[i] as string).length)));
  const right = new Set([2, 3, 4, 5, 6, 7, 8, 9]);
  const rows = columns.map((row) =>
    row.map((cell, i) => (right.has(i) ? cell.padStart(widths[i] ?? 0) : cell.padEnd(widths[i] ?? 0))).join('  '),
  );
  const foot = view.finished
    ? ''
    : view.stopping === null
      ? `swarm mean reward ${fixed(view.meanReward)} (latest round all have done)   Ctrl-C stops every node cleanly`
      : `stopping (${view.stopping}): each node finishes its step and saves   Ctrl-C again stops at once`;
  return [head, seed, '', ...rows, ...(foot === '' ? [] : ['', foot])].join('\n');
}

/** One line per event and per round, for logs and pipes. */
class PlainDisplay implements Display {
  changed(_view: SwarmView, member?: Member, record?: Record<string, unknown>): void {
    if (member === undefined) return;
    if (record?.event === 'round') {
      const n = nodeView(member);
      console.log(
        `${n.name} round ${n.round} reward ${fixed(n.reward)} held-out ${fixed(n.heldOut)} peers ${n.peers ?? '-'} ` +
          `rollouts in ${n.rolloutsIn} out ${n.rolloutsOut} rejects ${n.rejects}`,
      );
    } else if (record === undefined && member.state === 'exited') {
      console.log(`${member.name} ${stateOf(member)} (pid ${member.pid})`);
    }
  }

  tick(): void {}

  event(text: string): void {
    console.log(text);
  }

  finish(_view: SwarmView, report: SwarmReport, files: string[]): void {
    console.log(summary(report, files));
  }
}

function summary(report: SwarmReport, files: string[]): string {
  const rounds = report.nodes.filter((n) => n.trains).map((n) => n.rounds);
  const low = rounds.length === 0 ? 0 : Math.min(...rounds);
  const high = rounds.length === 0 ? 0 : Math.max(...rounds);
  const lines = [
    `${report.stoppedBy === 'rounds' ? 'done' : `stopped (${report.stoppedBy})`} after ${duration(report.seconds)}: ` +
      `${plural(rounds.length, 'training node')} ran ${low === high ? plural(low, 'round') : `${low}-${high} rounds`}; ` +
      (low === 0
        ? ''
        : `swarm mean reward ${fixed(report.swarm.meanReward[low - 1] ?? null)} in the last round all ran, `) +
      `cumulative ${report.swarm.cumulativeReward.toFixed(2)}`,
    ...[...(report.bootstrap === null ? [] : [{ name: 'bootstrap', ...report.bootstrap }]), ...report.nodes]
      .filter((n) => !n.stoppedCleanly)
      .map((n) => `  ${n.name} did not stop cleanly (${n.exit}): see ${n.log}`),
    `report ${files[0]}`,
    `charts ${files.slice(1).join(' ')}`,
  ];
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------------
// The report.

export interface NodeReport {
  name: string;
  /** Its roles include the solver: it ran rounds (else it only re-checked and relayed). */
  trains: boolean;
  peerId: string | null;
  pid: number;
  settings: Omit<NodeSpec, 'name'>;
  dataDir: string;
  jsonl: string;
  log: string;
  /** 'exit code 0', 'killed by SIGKILL after the stop timeout', … */
  exit: string;
  /** It finished its last step, saved and exited 0. */
  stoppedCleanly: boolean;
  checkpoint: string | null;
  /** How long it waited for its peers before round 0, and how many it had (null: it trains nothing). */
  waited: PeerWait | null;
  /** Rounds it finished. */
  rounds: number;
  /** reward[r]: the mean reward of its own completions in round r (null: it solved nothing). */
  reward: (number | null)[];
  /** difficulty[r]: the mean difficulty those completions were earned at. */
  difficulty: (number | null)[];
  heldOut: { round: number; difficulty: number; passRate: number; byFamily: Record<string, number> }[];
  /** Groups its SAPO step learned from per round, own and peers', and the zero-signal groups dropped. */
  groups: {
    localUsed: number[];
    externalUsed: number[];
    totals: { published: number; localUsed: number; externalUsed: number; zeroSignal: number };
  };
  /** Its verdicts on peers' rollouts and tasks, by reason, over the run. */
  verdicts: { rollouts: Record<string, number>; tasks: Record<string, number> };
  /** Payload bytes sent and received over the run. */
  bytes: { sent: number; received: number };
}

export interface SwarmReport {
  command: string;
  swarmId: string;
  settings: SwarmSettings;
  startedAt: string;
  endedAt: string;
  seconds: number;
  /** 'rounds' when every node ran its --rounds, else the signal that stopped the run, or 'failure'. */
  stoppedBy: 'rounds' | NodeJS.Signals | 'failure';
  failure: string | null;
  /** Every child stopped cleanly (and, with --rounds, ran them all). */
  clean: boolean;
  bootstrap: {
    peerId: string | null;
    address: string | null;
    pid: number;
    log: string;
    exit: string;
    stoppedCleanly: boolean;
    /** Its verdicts on the messages it relayed (its last /status). */
    verdicts: { rollouts: Record<string, number>; tasks: Record<string, number> } | null;
  } | null;
  nodes: NodeReport[];
  swarm: {
    /** meanReward[r]: the mean over nodes of their reward in round r. */
    meanReward: (number | null)[];
    /** Σ over rounds and nodes of reward (the SAPO paper's cumulative swarm reward; scripts/experiment.ts's too). */
    cumulativeReward: number;
    /** The mean held-out pass rate over the nodes that measured it, by round. */
    heldOut: { round: number; meanPassRate: number }[];
    verdicts: { rollouts: Record<string, number>; tasks: Record<string, number> };
    bytes: { sent: number; received: number };
  };
}

function buildReport(run: {
  settings: SwarmSettings;
  command: string;
  members: Member[];
  startedAt: Date;
  endedAt: Date;
  stopRequested: NodeJS.Signals | null;
  failure: string | null;
}): SwarmReport {
  const { settings, members } = run;
  const nodes = members.filter((m) => m.role === 'node').map(nodeReport);
  const seed = members.find((m) => m.role === 'bootstrap');
  const allRounds =
    settings.rounds > 0 &&
    nodes.length === settings.nodes &&
    nodes.every((n) => !n.trains || n.rounds >= settings.rounds);
  const stoppedBy = run.failure !== null ? 'failure' : (run.stopRequested ?? 'rounds');
  const clean =
    run.failure === null && (run.stopRequested !== null || allRounds) && members.every((m) => stoppedCleanly(m));
  const heldOutRounds = [...new Set(nodes.flatMap((n) => n.heldOut.map((h) => h.round)))].sort((a, b) => a - b);
  return {
    command: run.command,
    swarmId: settings.swarm,
    settings,
    startedAt: run.startedAt.toISOString(),
    endedAt: run.endedAt.toISOString(),
    seconds: (run.endedAt.getTime() - run.startedAt.getTime()) / 1000,
    stoppedBy,
    failure: run.failure,
    clean,
    bootstrap:
      seed === undefined
        ? null
        : {
            peerId: seed.started?.peerId ?? null,
            address: seed.address,
            pid: seed.pid,
            log: seed.logFile,
            exit: describeExit(seed),
            stoppedCleanly: stoppedCleanly(seed),
            verdicts: seed.relayed,
          },
    nodes,
    swarm: {
      meanReward: swarmMeanReward(nodes.map((n) => n.reward)),
      cumulativeReward: nodes.flatMap((n) => n.reward).reduce<number>((sum, r) => sum + (r ?? 0), 0),
      heldOut: heldOutRounds.map((round) => ({
        round,
        meanPassRate: mean(nodes.flatMap((n) => n.heldOut.filter((h) => h.round === round).map((h) => h.passRate))),
      })),
      verdicts: {
        rollouts: sumCounts(nodes.map((n) => n.verdicts.rollouts)),
        tasks: sumCounts(nodes.map((n) => n.verdicts.tasks)),
      },
      bytes: {
        sent: nodes.reduce((sum, n) => sum + n.bytes.sent, 0),
        received: nodes.reduce((sum, n) => sum + n.bytes.received, 0),
      },
    },
  };
}

function nodeReport(member: Member): NodeReport {
  const rounds = member.rounds;
  const byRound = <T>(pick: (r: RoundRecord) => T, empty: T): T[] => {
    const values: T[] = [];
    for (const r of rounds) {
      while (values.length < r.round) values.push(empty);
      values[r.round] = pick(r);
    }
    return values;
  };
  const last = rounds.at(-1);
  const spec = member.spec as NodeSpec;
  const { name: _name, ...settings } = spec;
  return {
    name: member.name,
    trains: trains(spec),
    peerId: member.started?.peerId ?? null,
    pid: member.pid,
    settings,
    dataDir: member.dataDir,
    jsonl: member.jsonlFile,
    log: member.logFile,
    exit: describeExit(member),
    stoppedCleanly: stoppedCleanly(member),
    checkpoint: member.checkpoint,
    waited: member.waited,
    rounds: rounds.length,
    reward: rewardSeries(rounds),
    difficulty: byRound((r) => r.difficulty, null),
    heldOut: rounds.flatMap((r) => (r.heldOut === null ? [] : [{ round: r.round, ...r.heldOut }])),
    groups: {
      localUsed: byRound((r) => r.groups.localUsed, 0),
      externalUsed: byRound((r) => r.groups.externalUsed, 0),
      totals: {
        published: rounds.reduce((sum, r) => sum + r.groups.published, 0),
        localUsed: rounds.reduce((sum, r) => sum + r.groups.localUsed, 0),
        externalUsed: rounds.reduce((sum, r) => sum + r.groups.externalUsed, 0),
        zeroSignal: rounds.reduce((sum, r) => sum + r.groups.zeroSignal.local + r.groups.zeroSignal.external, 0),
      },
    },
    verdicts: member.relayed ?? verdictTotals(rounds),
    bytes: { sent: last?.bytes.sent ?? 0, received: last?.bytes.received ?? 0 },
  };
}

/** It logged `stopped` and exited 0, or our SIGTERM ended it before it started (with nothing to save). */
function stoppedCleanly(member: Member): boolean {
  if (member.killed) return false;
  if (member.started === null) return member.exit?.signal === 'SIGTERM';
  return member.stoppedCleanly && member.exit?.code === 0;
}

function rewardSeries(rounds: RoundRecord[]): (number | null)[] {
  const values: (number | null)[] = [];
  for (const r of rounds) {
    while (values.length < r.round) values.push(null);
    values[r.round] = r.reward;
  }
  return values;
}

function swarmMeanReward(series: (number | null)[][]): (number | null)[] {
  const length = Math.max(0, ...series.map((s) => s.length));
  return Array.from({ length }, (_, round) => {
    const values = series.map((s) => s[round]).filter((r): r is number => typeof r === 'number');
    return values.length === 0 ? null : mean(values);
  });
}

function verdictTotals(rounds: RoundRecord[]): { rollouts: Record<string, number>; tasks: Record<string, number> } {
  // Each round record counts the verdicts since the one before.
  return {
    rollouts: sumCounts(rounds.map((r) => r.received.rollouts)),
    tasks: sumCounts(rounds.map((r) => r.received.tasks)),
  };
}

function sumCounts(all: Record<string, number>[]): Record<string, number> {
  const sum: Record<string, number> = {};
  for (const counts of all) for (const [key, n] of Object.entries(counts)) sum[key] = (sum[key] ?? 0) + n;
  return sum;
}

const mean = (values: readonly number[]) => values.reduce((a, b) => a + b, 0) / values.length;

/** Writes report.json and the charts; returns their paths, the report first. */
async function writeReport(out: string, report: SwarmReport): Promise<string[]> {
  const points = (values: readonly (number | null)[]) => values.map((y, x) => ({ x, y: y === null ? Number.NaN : y }));
  const training = report.nodes.filter((n) => n.trains);
  const config = (() => {
    const settings = training.map((n) => `${n.settings.localGroups}/${n.settings.externalGroups}`);
    return new Set(settings).size === 1 ? `I/J = ${settings[0]}` : 'mixed I/J';
  })();
  const perNode: Series[] = training.map((n) => ({ label: n.name, points: points(n.reward), width: 1.5 }));
  const charts: [string, string][] = [
    [
      'reward-per-node.svg',
      lineChart(perNode, {
        title: `Reward per round, each node (swarm ${report.swarmId}, ${config})`,
        xLabel: 'round',
        yLabel: 'mean reward of own completions',
        yMin: 0,
        yMax: 1,
      }),
    ],
    [
      'reward-swarm.svg',
      lineChart(
        [
          ...training.map((n) => ({ label: '_node', points: points(n.reward), width: 1, opacity: 0.25 })),
          { label: `swarm mean (${training.length} nodes)`, points: points(report.swarm.meanReward), width: 3 },
        ],
        {
          title: `Swarm mean reward per round (swarm ${report.swarmId}, ${config})`,
          xLabel: 'round',
          yLabel: 'mean reward',
          yMin: 0,
          yMax: 1,
        },
      ),
    ],
  ];
  if (report.swarm.heldOut.length > 0) {
    charts.push([
      'held-out.svg',
      lineChart(
        [
          ...report.nodes.map((n) => ({
            label: n.name,
            points: n.heldOut.map((h) => ({ x: h.round, y: h.passRate })),
            width: 1.5,
          })),
          {
            label: 'swarm mean',
            points: report.swarm.heldOut.map((h) => ({ x: h.round, y: h.meanPassRate })),
            width: 3,
            color: '#000000',
          },
        ],
        {
          title: `Held-out pass rate (the same tasks each time; swarm ${report.swarmId})`,
          xLabel: 'round',
          yLabel: 'pass rate',
          yMin: 0,
          yMax: 1,
        },
      ),
    ]);
  }
  const reportFile = join(out, 'report.json');
  await writeFile(reportFile, `${JSON.stringify(report, null, 2)}\n`);
  for (const [name, svg] of charts) await writeFile(join(out, name), `${svg}\n`);
  return [reportFile, ...charts.map(([name]) => join(out, name))];
}
