/**
 * `swarm-node start` (a training node) and `swarm-node bootstrap` (a seed peer): both run a node
 * until SIGINT/SIGTERM, then stop cleanly — finish the step, save the checkpoint, close libp2p.
 */
import { join } from 'node:path';
import { LIMITS, type RoundMetrics } from '@swarm-node/roles';
import { BACKEND_NAMES, DEFAULT_LORA, describeBackend, LORA_TARGETS, type LoraTarget } from '@swarm-node/sapo';
import { Command, InvalidArgumentError } from 'commander';
import type { SeedReport } from '../bootstrap-check.js';
import {
  addNetworkOptions,
  DEFAULT_DATA_DIR,
  integer,
  nonNegativeNumber,
  positiveNumber,
  resolveSettings,
  setting,
} from '../config.js';
import { RELAY_LIMITS } from '../host.js';
import { checkRoles, type NodeOptions, type PeerWait, type Role, SwarmNode } from '../swarm-node.js';

interface NetworkSettings {
  dataDir: string;
  swarm: string;
  listen: string[];
  announce?: string[];
  bootstrap: string[];
  mdns: boolean;
  upnp?: boolean;
  psk?: string;
  minPeers: number;
  maxConnections?: number;
  statusHost: string;
  statusPort: number;
  status: boolean;
  json: boolean;
}

interface BootstrapSettings extends NetworkSettings {
  relayReservations: number;
  relayDuration: number;
  relayData: number;
}

interface StartSettings extends NetworkSettings {
  roles: Role[];
  share: boolean;
  fixedDifficulty?: number;
  localGroups: number;
  externalGroups: number;
  groupSize: number;
  learningRate?: number;
  passes: number;
  beta: number;
  heldOutEvery: number;
  heldOutDifficulty: number;
  rounds: number;
  backend: string;
  model?: string;
  loraRank: number;
  loraAlpha: number;
  loraTargets: LoraTarget[];
  contextLength?: number;
  maxNewTokens: number;
  checkpointEvery: number;
  keepCheckpoints: number;
  seed?: number;
  waitPeers: number;
  waitPeersTimeout: number;
}

export function startCommand(): Command {
  const command = new Command('start').description(
    "run a node: propose tasks, solve them with the local model, share rollouts, learn from its own and peers'",
  );
  addNetworkOptions(command, { dataDir: DEFAULT_DATA_DIR, listen: '/ip4/0.0.0.0/tcp/0' })
    .addOption(
      setting('--roles <roles>', 'roles to play, comma-separated: proposer, solver, evaluator')
        .default(['proposer', 'solver', 'evaluator'], 'proposer,solver,evaluator')
        .argParser(roles),
    )
    .addOption(
      setting('--no-share', "publish no tasks or rollouts: a free rider that learns from peers' and gives nothing"),
    )
    .addOption(
      setting('-I, --local-groups <n>', 'own groups per SAPO step')
        .default(6)
        .argParser(integer('--local-groups', 0, LIMITS.tasksPerRound)),
    )
    .addOption(
      setting('-J, --external-groups <n>', "peers' groups per SAPO step")
        .default(2)
        .argParser(integer('--external-groups', 0, 256)),
    )
    .addOption(
      setting('-G, --group-size <n>', 'completions sampled per task')
        .default(8)
        .argParser(integer('--group-size', LIMITS.minGroupSize, LIMITS.maxGroupSize)),
    )
    .addOption(
      setting('--learning-rate <lr>', 'Adam learning rate (default 1e-4)').argParser(positiveNumber('--learning-rate')),
    )
    .addOption(
      setting('--passes <n>', 'μ: optimisation passes per batch; 1 makes the ratio 1 (REINFORCE), clipping acts from 2')
        .default(1)
        .argParser(integer('--passes', 1, 16)),
    )
    .addOption(
      setting('--beta <b>', 'β: weight of the KL penalty against the starting model; 0 keeps no reference')
        .default(0)
        .argParser(nonNegativeNumber('--beta')),
    )
    .addOption(
      setting('--held-out-every <n>', 'every n rounds, the pass rate on fixed held-out tasks; 0 never')
        .default(25)
        .argParser(integer('--held-out-every', 0)),
    )
    .addOption(
      setting('--held-out-difficulty <d>', 'the difficulty of the held-out tasks')
        .default(1)
        .argParser(integer('--held-out-difficulty', 1, 10)),
    )
    .addOption(
      setting(
        '--fixed-difficulty <d>',
        "fix every family's task difficulty at d (the proposer does not adapt), for experiments; default: adapt from 1",
      ).argParser(integer('--fixed-difficulty', 1, 10)),
    )
    .addOption(
      setting('--rounds <n>', 'stop after this many rounds; 0 runs until stopped')
        .default(0)
        .argParser(integer('--rounds', 0)),
    )
    .addOption(
      setting('--backend <name>', 'tensorflow backend')
        .choices(['auto', ...BACKEND_NAMES])
        .default('auto'),
    )
    .addOption(
      setting(
        '--model <dir>',
        'a Hugging Face model folder (Llama, Qwen2) to train with LoRA (default: the embedded model)',
      ),
    )
    .addOption(
      setting('--lora-rank <r>', 'LoRA rank r, for --model')
        .default(DEFAULT_LORA.rank)
        .argParser(integer('--lora-rank', 1, 1024)),
    )
    .addOption(
      setting('--lora-alpha <a>', 'LoRA alpha: updates are scaled by alpha / r, for --model')
        .default(DEFAULT_LORA.alpha)
        .argParser(positiveNumber('--lora-alpha')),
    )
    .addOption(
      setting('--lora-targets <names>', 'projections LoRA adapts in every layer, comma-separated, for --model')
        .default([...LORA_TARGETS], LORA_TARGETS.join(','))
        .argParser(loraTargets),
    )
    .addOption(
      setting('--context-length <n>', 'longest prompt + completion in tokens, for --model (default 384)').argParser(
        integer('--context-length', 16),
      ),
    )
    .addOption(
      setting('--max-new-tokens <n>', 'most tokens sampled per completion')
        .default(48)
        .argParser(integer('--max-new-tokens', 1)),
    )
    .addOption(
      setting('--checkpoint-every <n>', 'save the model every n rounds (and on stop)')
        .default(10)
        .argParser(integer('--checkpoint-every', 1)),
    )
    .addOption(
      setting('--keep-checkpoints <n>', 'checkpoint files kept').default(3).argParser(integer('--keep-checkpoints', 1)),
    )
    .addOption(
      setting('--seed <n>', 'seed of task draws and sampling (default: from the peer id)').argParser(
        integer('--seed', 0),
      ),
    )
    .addOption(
      setting(
        '--wait-peers <n>',
        "before the first round, wait until n peers share the swarm's rollouts (up to --wait-peers-timeout); 0 starts at once",
      )
        .default(0)
        .argParser(integer('--wait-peers', 0, 1024)),
    )
    .addOption(
      setting('--wait-peers-timeout <s>', 'seconds --wait-peers waits at most, then trains with the peers it has')
        .default(120)
        .argParser(integer('--wait-peers-timeout', 1)),
    )
    .action(async (_options, cmd: Command) => {
      const settings = resolveSettings<StartSettings>(cmd);
      await runUntilSignalled(
        {
          ...networkNodeOptions(settings),
          mode: 'peer',
          roles: settings.roles,
          share: settings.share,
          localGroups: settings.localGroups,
          externalGroups: settings.externalGroups,
          groupSize: settings.groupSize,
          rounds: settings.rounds,
          passes: settings.passes,
          beta: settings.beta,
          heldOutEvery: settings.heldOutEvery,
          heldOutDifficulty: settings.heldOutDifficulty,
          backend: settings.backend,
          checkpointEvery: settings.checkpointEvery,
          keepCheckpoints: settings.keepCheckpoints,
          maxNewTokens: settings.maxNewTokens,
          waitForPeers: settings.waitPeers,
          waitForPeersMs: settings.waitPeersTimeout * 1000,
          ...(settings.model === undefined
            ? {}
            : {
                model: settings.model,
                lora: { rank: settings.loraRank, alpha: settings.loraAlpha, targets: settings.loraTargets },
              }),
          ...(settings.contextLength === undefined ? {} : { contextLength: settings.contextLength }),
          ...(settings.learningRate === undefined ? {} : { learningRate: settings.learningRate }),
          ...(settings.seed === undefined ? {} : { seed: settings.seed }),
          ...(settings.fixedDifficulty === undefined ? {} : { fixedDifficulty: settings.fixedDifficulty }),
        },
        settings.json,
      );
    });
  return command;
}

function roles(value: string): Role[] {
  try {
    return checkRoles(value.split(',').map((role) => role.trim()));
  } catch (error) {
    throw new InvalidArgumentError(`--roles: ${(error as Error).message}.`);
  }
}

function loraTargets(value: string): LoraTarget[] {
  const names = value
    .split(',')
    .map((name) => name.trim())
    .filter((name) => name !== '');
  const unknown = names.filter((name) => !(LORA_TARGETS as readonly string[]).includes(name));
  if (names.length === 0 || unknown.length > 0) {
    throw new InvalidArgumentError(
      `--lora-targets names projections among ${LORA_TARGETS.join(', ')}${unknown.length > 0 ? `; unknown: ${unknown.join(', ')}` : ''}.`,
    );
  }
  return [...new Set(names)] as LoraTarget[];
}

export function bootstrapCommand(): Command {
  const command = new Command('bootstrap').description(
    'run a seed peer: a DHT server that relays checked messages and trains nothing; hand out the addresses it prints',
  );
  // Nodes behind NAT reserve a slot here and are reached through it (host.ts RELAY_LIMITS says why these sizes).
  addNetworkOptions(command, { dataDir: join(DEFAULT_DATA_DIR, 'bootstrap'), listen: '/ip4/0.0.0.0/tcp/4117' })
    .addOption(
      setting('--relay-reservations <n>', 'nodes behind NAT that may hold a relay reservation here at once')
        .default(RELAY_LIMITS.maxReservations)
        .argParser(integer('--relay-reservations', 1)),
    )
    .addOption(
      setting('--relay-duration <s>', 'seconds one relayed connection may stay open before it is closed and redialled')
        .default(RELAY_LIMITS.durationMs / 1000)
        .argParser(integer('--relay-duration', 1)),
    )
    .addOption(
      setting(
        '--relay-data <MiB>',
        'MiB one relayed connection may carry (both ways); each relayed byte costs this seed 2 (in and out)',
      )
        .default(RELAY_LIMITS.dataBytes / 2 ** 20)
        .argParser(integer('--relay-data', 1)),
    )
    .addHelpText(
      'after',
      `\nRelay: a node behind NAT reserves a slot here and is reached through this seed. With the defaults one relayed
connection carries up to ${RELAY_LIMITS.dataBytes / 2 ** 20} MiB for up to ${RELAY_LIMITS.durationMs / 60_000} min (1 500-3 900 rounds of the embedded model's gossip, measured: docs/BENCHMARKS.md "Relay"),
so it costs this seed at most ${(2 * RELAY_LIMITS.dataBytes) / 2 ** 20} MiB of traffic; R reserved nodes each reached by k peers cost at most R·k times that an hour.`,
    )
    .action(async (_options, cmd: Command) => {
      const settings = resolveSettings<BootstrapSettings>(cmd);
      await runUntilSignalled(
        {
          ...networkNodeOptions(settings),
          mode: 'bootstrap',
          relay: {
            maxReservations: settings.relayReservations,
            durationMs: settings.relayDuration * 1000,
            dataBytes: settings.relayData * 2 ** 20,
          },
        },
        settings.json,
      );
    });
  return command;
}

function networkNodeOptions(settings: NetworkSettings): NodeOptions {
  return {
    dataDir: settings.dataDir,
    swarmId: settings.swarm,
    listen: settings.listen,
    bootstrap: settings.bootstrap,
    mdns: settings.mdns,
    upnp: settings.upnp === true,
    minPeers: settings.minPeers,
    statusHost: settings.statusHost,
    statusPort: settings.status ? settings.statusPort : null,
    ...(settings.announce === undefined ? {} : { announce: settings.announce }),
    ...(settings.psk === undefined ? {} : { pskFile: settings.psk }),
    ...(settings.maxConnections === undefined ? {} : { maxConnections: settings.maxConnections }),
  };
}

/** Starts the node, logs, and stops it cleanly on the first SIGINT/SIGTERM (the second one exits at once). */
async function runUntilSignalled(options: NodeOptions, json: boolean): Promise<void> {
  const log = json ? jsonLogger() : humanLogger();
  const node = await SwarmNode.start(options);
  log.started(node, options);
  // Each seed's diagnosis as it changes (SeedWatch keeps the flood out), and once, when none answers, that it goes on alone.
  let alone = false;
  node.host.seeds.onReport((report) => {
    log.seed(report);
    if (report.diagnosis === null) alone = false;
    else if (!alone && node.host.seeds.alone()) {
      alone = true;
      log.alone(node.status().mode);
    }
  });
  node.on('round', (metrics) => log.round(metrics, node));
  node.on('checkpoint', (file) => log.event('checkpoint', { file }));
  node.on('waited', (wait) => log.waited(wait));
  let firstSignal = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    // One Ctrl-C can arrive twice (the terminal signals the process group, and npx forwards it):
    // only a signal a second or more after the first abandons the save.
    if (firstSignal !== 0 && Date.now() - firstSignal < 1000) return;
    if (firstSignal !== 0) {
      log.event('exit', { signal, note: 'second signal: exiting without saving' });
      process.exit(130);
    }
    firstSignal = Date.now();
    log.event('stopping', {
      signal,
      note:
        options.mode === 'bootstrap'
          ? 'closing connections'
          : 'finishing the current step and saving a checkpoint (signal again to abandon)',
    });
    void node.stop();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    await node.run();
  } finally {
    await node.stop();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  log.event('stopped', { peerId: node.peerId, checkpoint: node.status().checkpoint });
}

interface Logger {
  started(node: SwarmNode, options: NodeOptions): void;
  round(metrics: RoundMetrics, node: SwarmNode): void;
  seed(report: SeedReport): void;
  alone(mode: 'peer' | 'bootstrap'): void;
  waited(wait: PeerWait): void;
  event(name: string, fields: Record<string, unknown>): void;
}

const ALONE = {
  peer: 'no bootstrap peer answers: training alone until one does (this node keeps trying them)',
  bootstrap: 'no other bootstrap peer answers: serving alone until one does (this node keeps trying them)',
};

function jsonLogger(): Logger {
  // The log line's time (ISO) replaces a record's own `time`: one clock per line.
  const line = (event: string, fields: object) => {
    const time = new Date().toISOString();
    console.log(JSON.stringify(Object.assign({ time, event }, fields, { time })));
  };
  return {
    started: (node) => line('started', { ...node.status(), statusUrl: node.statusUrl, startRound: node.startRound }),
    round: (metrics) => line('round', metrics),
    seed: (report) =>
      line('seed', {
        address: report.address,
        problem: report.diagnosis?.problem ?? null,
        message: report.diagnosis?.message ?? 'answers',
        nextTry: report.nextTry?.toISOString() ?? null,
      }),
    alone: (mode) => line('alone', { note: ALONE[mode] }),
    waited: (wait) => line('waited', wait),
    event: line,
  };
}

function humanLogger(): Logger {
  const fixed = (value: number | null) => (value === null ? '-' : value.toFixed(2));
  return {
    started(node, options) {
      const status = node.status();
      const lines = [
        `swarm-node ${status.mode === 'bootstrap' ? 'bootstrap peer' : 'node'} ${status.peerId} in swarm "${status.swarmId}"`,
        ...status.addresses.map((address) => `  listening  ${address}`),
      ];
      if (status.backend !== null) lines.push(`  backend    ${describeBackend(status.backend)}`);
      if (status.mode === 'peer' && status.model !== null) {
        const { source, trainableParameters, memoryPlan } = status.model;
        const base =
          source === 'embedded'
            ? 'embedded base model (docs/MODEL.md)'
            : `${source}, LoRA adapters of ${(trainableParameters / 1e6).toFixed(2)} M parameters`;
        const resumed =
          status.checkpoint === null ? '' : `; resumed from ${status.checkpoint}, round ${node.startRound}`;
        lines.push(`  model      ${base}${resumed}`);
        if (memoryPlan !== null) lines.push(`  memory     ${memoryPlan.replace(/^memory plan: /, '')}`);
      }
      const seeds = options.bootstrap ?? [];
      lines.push(
        `  peers      ${seeds.length === 0 ? 'no bootstrap peers given' : `${seeds.length} bootstrap peer(s)`}${options.mdns === false ? '' : '; looking on the local network (mDNS)'}`,
      );
      if (node.statusUrl !== null)
        lines.push(`  status     ${node.statusUrl}/status   metrics ${node.statusUrl}/metrics`);
      if (status.mode === 'bootstrap')
        lines.push('  hand out the listening addresses above (with /p2p/…) as --bootstrap');
      lines.push(
        status.mode === 'peer' ? '  Ctrl-C stops after the current step and saves the model.' : '  Ctrl-C stops it.',
      );
      console.log(lines.join('\n'));
    },
    round(metrics, node) {
      const { groups, received, learner } = metrics;
      const accepted = received.rollouts.accept ?? 0;
      const rejected = Object.entries(received.rollouts)
        .filter(([key]) => key.startsWith('reject'))
        .reduce((sum, [, n]) => sum + n, 0);
      const zero = groups.zeroSignal.local + groups.zeroSignal.external;
      const stats = learner.stats;
      console.log(
        `round ${metrics.round}  reward ${fixed(metrics.reward)} at difficulty ${metrics.difficulty === null ? '-' : metrics.difficulty.toFixed(1)} ` +
          `(last 10: ${fixed(node.status().reward.last10)})  ` +
          `step ${metrics.policyVersion}${learner.updated ? '' : ' (no update)'}  ` +
          `groups ${groups.localUsed} own + ${groups.externalUsed} peers' (${zero} zero-signal dropped)  ` +
          (stats === null
            ? ''
            : `clip ${stats.clipFraction.toFixed(2)} kl ${stats.approxKl.toFixed(4)} entropy ${stats.entropy.toFixed(2)} length ${stats.meanCompletionTokens.toFixed(1)}  `) +
          `peers ${node.host.libp2p.getPeers().length}  rollouts in ${accepted} ok / ${rejected} rejected  ` +
          `${(metrics.seconds.solve + metrics.seconds.learn).toFixed(1)} s`,
      );
      if (metrics.heldOut !== null) {
        console.log(
          `  held-out pass rate ${fixed(metrics.heldOut.passRate)} at difficulty ${metrics.heldOut.difficulty} (the same tasks each time: a rise means the model learned)`,
        );
      }
    },
    // Problems go to stderr, with the rest of what needs the operator's attention.
    seed(report) {
      if (report.diagnosis === null) {
        console.error(`bootstrap peer ${report.address} answers now`);
        return;
      }
      const wait = Math.max(1, Math.round(((report.nextTry?.getTime() ?? Date.now()) - Date.now()) / 1000));
      console.error(
        `bootstrap peer ${report.address} unreachable (${report.diagnosis.problem}): ${report.diagnosis.message}; next try in ~${wait} s`,
      );
    },
    alone: (mode) => console.error(ALONE[mode]),
    waited({ wanted, found, seconds, timedOut }) {
      if (!timedOut) console.log(`${found} peers share rollouts after ${seconds.toFixed(1)} s: training starts`);
      else
        console.error(
          `only ${found} of ${wanted} peers after ${seconds.toFixed(0)} s: training with those (--wait-peers)`,
        );
    },
    event(name, fields) {
      const text = Object.entries(fields)
        .filter(([, value]) => value !== undefined && value !== null)
        .map(([key, value]) => `${key}=${typeof value === 'string' ? value : JSON.stringify(value)}`)
        .join(' ');
      console.log(`${name}${text === '' ? '' : `: ${text}`}`);
    },
  };
}
