/**
 * A running swarm-node: identity, host, gossip transport, and either the round loop (a training
 * node) or a relay (a bootstrap node), with its status for the HTTP surface and a clean stop.
 *
 *   const node = await startNode({ dataDir: '/var/lib/swarm-node', bootstrap: [seed] });
 *   node.on('round', (metrics) => console.log(metrics.reward));
 *   await node.run();        // until node.stop() (SIGINT/SIGTERM in the CLI) or `rounds`
 */
import { EventEmitter } from 'node:events';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { hashToSeed, LIMITS, Relay, RoundLoop, type RoundMetrics } from '@swarm-node/roles';
import {
  type BackendInfo,
  ByteTokenizer,
  EMBEDDED_MODEL_PATH,
  latestCheckpoint,
  learnerCheckpoint,
  loadCheckpoint,
  restoreLearner,
  type SapoLearner,
  saveCheckpoint,
  selectBackend,
} from '@swarm-node/sapo';
import { NodeError } from './errors.js';
import { GossipTransport } from './gossip-transport.js';
import { createHost, type Host } from './host.js';
import { ensureDataDir, loadOrCreateIdentity } from './identity.js';
import { type StatusServer, startStatusServer } from './status-server.js';
import { swarmIdProblem, TOPICS, topicName } from './wire/index.js';

export type Role = 'proposer' | 'solver' | 'evaluator';

export interface NodeOptions {
  /** Identity, checkpoints and the status address live here. */
  dataDir: string;
  /** Default 'main'. */
  swarmId?: string;
  /** 'peer' trains; 'bootstrap' seeds the swarm and relays checked messages. Default 'peer'. */
  mode?: 'peer' | 'bootstrap';
  listen?: string[];
  announce?: string[];
  bootstrap?: string[];
  mdns?: boolean;
  /** Path of a pre-shared key file (libp2p pnet format) for a private swarm. */
  pskFile?: string;
  minPeers?: number;
  maxConnections?: number;
  /** Roles a peer plays. Default all three; without 'solver' it relays only. The evaluator is required. */
  roles?: Role[];
  /** I and J of the SAPO step. Default 6 and 2 (the best mix in docs/EXPERIMENTS.md). */
  localGroups?: number;
  externalGroups?: number;
  /** G: completions per task. Default 8. */
  groupSize?: number;
  learningRate?: number;
  /** Rounds to run, then stop; 0 runs until stopped. Default 0. */
  rounds?: number;
  /** Save a checkpoint every this many rounds (and always on stop). Default 10. */
  checkpointEvery?: number;
  /** Checkpoint files kept. Default 3. */
  keepCheckpoints?: number;
  /** Backend name for the learner (see @swarm-node/sapo). Default 'auto'. */
  backend?: string;
  /** Seeds the round loop's draws; default derived from the peer id. */
  seed?: number;
  /** Status/metrics HTTP address. Default 127.0.0.1, port 0 (any free port, written to the data dir); null turns it off. */
  statusHost?: string;
  statusPort?: number | null;
  /** Milliseconds to wait between rounds. Default 0. */
  roundDelayMs?: number;
}

export interface RolloutTotals {
  sent: number;
  /** Verdicts on peers' messages by topic and `verdict:reason`. */
  received: Record<string, Record<string, number>>;
}

export interface NodeStatus {
  peerId: string;
  mode: 'peer' | 'bootstrap';
  swarmId: string;
  addresses: string[];
  peers: { id: string; address: string; score: number }[];
  mesh: Record<string, number>;
  round: number | null;
  policyVersion: number | null;
  /** Mean reward of own completions over the last 10 rounds and over all rounds of this run. */
  reward: { last10: number | null; run: number | null };
  externalGroupsUsed: number;
  rollouts: RolloutTotals;
  backend: BackendInfo | null;
  checkpoint: string | null;
  startedAt: string;
}

export const STATUS_ADDRESS_FILE = 'status.address';
export const CHECKPOINT_DIR = 'checkpoints';

export interface SwarmNode extends EventEmitter<{ round: [RoundMetrics]; checkpoint: [string] }> {
  readonly peerId: string;
  readonly host: Host;
  readonly statusUrl: string | null;
  readonly startRound: number;
  status(): NodeStatus;
  /** Runs rounds until `rounds` are done or stop() is called; resolves when the loop has ended. */
  run(): Promise<void>;
  /** Stops after the current step, saves a checkpoint, closes the network. Idempotent. */
  stop(): Promise<void>;
}

const ROLES: readonly Role[] = ['proposer', 'solver', 'evaluator'];

export async function startNode(options: NodeOptions): Promise<SwarmNode> {
  const mode = options.mode ?? 'peer';
  const swarmId = options.swarmId ?? 'main';
  const swarmProblem = swarmIdProblem(swarmId);
  if (swarmProblem !== null) throw new NodeError('BAD_CONFIG', `swarm id ${JSON.stringify(swarmId)}: ${swarmProblem}`);
  const roles = options.roles ?? [...ROLES];
  for (const role of roles) {
    if (!ROLES.includes(role))
      throw new NodeError('BAD_CONFIG', `unknown role ${JSON.stringify(role)}; roles are ${ROLES.join(', ')}`);
  }
  if (!roles.includes('evaluator')) {
    throw new NodeError(
      'BAD_CONFIG',
      'the evaluator role cannot be turned off: a node that does not re-check rewards would forward forgeries',
    );
  }
  if (roles.includes('proposer') && !roles.includes('solver')) {
    throw new NodeError(
      'BAD_CONFIG',
      'the proposer role needs the solver role (its pass rates steer difficulty); a node without a solver only relays: use --roles evaluator',
    );
  }
  checkRange('groupSize', options.groupSize, 2, LIMITS.maxGroupSize, 'peers reject larger groups');
  checkRange(
    'localGroups',
    options.localGroups,
    0,
    LIMITS.tasksPerRound,
    'a proposer publishes at most that many tasks a round',
  );
  await ensureDataDir(options.dataDir);
  const identity = await loadOrCreateIdentity(options.dataDir);
  const psk = options.pskFile === undefined ? undefined : await readPsk(options.pskFile);
  const training = mode === 'peer' && roles.includes('solver');

  const backend = training ? await selectBackend({ backend: (options.backend ?? 'auto') as 'auto' }) : null;
  const checkpointDir = join(options.dataDir, CHECKPOINT_DIR);
  let learner: SapoLearner | null = null;
  let startRound = 0;
  let checkpointFile: string | null = null;
  if (training) {
    const sapo = {
      localGroups: options.localGroups ?? 6,
      externalGroups: options.externalGroups ?? 2,
      ...(options.learningRate === undefined ? {} : { learningRate: options.learningRate }),
    };
    checkpointFile = await latestCheckpoint(checkpointDir);
    // A damaged latest checkpoint stops the node (CheckpointError); it is never replaced by the base model.
    learner = await restoreLearner(checkpointFile ?? EMBEDDED_MODEL_PATH, new ByteTokenizer(), sapo);
    if (checkpointFile !== null) {
      const saved = await loadCheckpoint(checkpointFile);
      for (const tensor of [...saved.weights.values(), ...saved.optimizer.values()]) tensor.dispose();
      const round = Number(saved.metadata?.round);
      startRound = Number.isSafeInteger(round) && round >= 0 ? round + 1 : 0;
    }
  }

  let transport: GossipTransport | undefined;
  let host: Host;
  try {
    host = await createHost({
      privateKey: identity.privateKey,
      swarmId,
      role: mode,
      ...(options.listen === undefined ? {} : { listen: options.listen }),
      ...(options.announce === undefined ? {} : { announce: options.announce }),
      bootstrap: options.bootstrap ?? [],
      mdns: options.mdns ?? true,
      ...(psk === undefined ? {} : { psk }),
      ...(options.minPeers === undefined ? {} : { minPeers: options.minPeers }),
      ...(options.maxConnections === undefined ? {} : { maxConnections: options.maxConnections }),
      scoredTopics: TOPICS.map((topic) => topicName(swarmId, topic)),
      topicLabels: Object.fromEntries(TOPICS.map((topic) => [topicName(swarmId, topic), topic])),
      appSpecificScore: (peer) => transport?.applicationScore(peer) ?? 0,
    });
  } catch (error) {
    learner?.policy.dispose();
    learner?.dispose();
    throw error;
  }
  const releaseAll = async () => {
    await server?.close();
    await transport?.close();
    await host.stop();
    learner?.policy.dispose();
    learner?.dispose();
  };
  let server: StatusServer | null = null;
  let loop: RoundLoop | null = null;
  let relay: Relay | null = null;
  try {
    transport = new GossipTransport({ host, swarmId });
    loop =
      learner === null
        ? null
        : new RoundLoop({
            transport,
            learner,
            groupSize: options.groupSize ?? 8,
            propose: roles.includes('proposer'),
            checkpoint: {
              dir: checkpointDir,
              every: options.checkpointEvery ?? 10,
              keep: options.keepCheckpoints ?? 3,
            },
            seed: options.seed ?? hashToSeed('swarm-node/seed', identity.peerId),
            startRound,
          });
    relay = loop === null ? new Relay(transport) : null;
  } catch (error) {
    await releaseAll();
    throw error;
  }

  const emitter = new EventEmitter<{ round: [RoundMetrics]; checkpoint: [string] }>();
  // The last 10 rounds' rewards, and a running sum over the run: a node runs for weeks.
  const recent: number[] = [];
  let rewardSum = 0;
  let rewardRounds = 0;
  let externalGroupsUsed = 0;
  let lastMetrics: RoundMetrics | null = null;
  let stopping = false;
  let running: Promise<void> | null = null;
  let stopped: Promise<void> | null = null;
  const startedAt = new Date().toISOString();

  const status = (): NodeStatus => {
    const connections = host.libp2p.getConnections();
    const received: Record<string, Record<string, number>> = {};
    for (const topic of TOPICS) received[topic] = { ...transport.counts[topic] };
    // The transport counts what failed before the roles saw it; the roles count their reasons.
    const rolesRollouts = loop?.evaluator.counts ?? relay?.evaluator.counts ?? {};
    received.rollouts = mergeReasons(received.rollouts ?? {}, rolesRollouts);
    received.tasks = mergeReasons(received.tasks ?? {}, relay?.taskCounts ?? taskTotals);
    return {
      peerId: identity.peerId,
      mode,
      swarmId,
      addresses: host.addresses(),
      peers: connections.map((c) => ({
        id: c.remotePeer.toString(),
        address: c.remoteAddr.toString(),
        score: host.pubsub.getScore(c.remotePeer.toString()),
      })),
      mesh: Object.fromEntries(
        TOPICS.map((topic) => [topic, host.pubsub.getMeshPeers(topicName(swarmId, topic)).length]),
      ),
      round: lastMetrics?.round ?? null,
      policyVersion: learner?.steps ?? null,
      reward: {
        last10: recent.length === 0 ? null : mean(recent),
        run: rewardRounds === 0 ? null : rewardSum / rewardRounds,
      },
      externalGroupsUsed,
      rollouts: { sent: sentRollouts, received },
      backend,
      checkpoint: checkpointFile,
      startedAt,
    };
  };
  const taskTotals: Record<string, number> = {};
  let sentRollouts = 0;

  if (options.statusPort !== null) {
    try {
      server = await startStatusServer({
        host: options.statusHost ?? '127.0.0.1',
        port: options.statusPort ?? 0,
        status,
        registry: host.registry,
        addressFile: join(options.dataDir, STATUS_ADDRESS_FILE),
      });
    } catch (error) {
      await releaseAll();
      throw error;
    }
  }

  const saveNow = async (round: number) => {
    if (learner === null || loop === null) return;
    const state = await learnerCheckpoint(learner, { node: identity.peerId, round: String(round) });
    try {
      checkpointFile = await saveCheckpoint(checkpointDir, state, { keep: options.keepCheckpoints ?? 3 });
      emitter.emit('checkpoint', checkpointFile);
    } finally {
      state.release();
    }
  };

  const run = async () => {
    if (loop === null) {
      // A relay has no rounds: it serves until stopped.
      await new Promise<void>((resolve) => {
        const check = setInterval(() => {
          if (stopping) {
            clearInterval(check);
            resolve();
          }
        }, 100);
      });
      return;
    }
    const rounds = options.rounds ?? 0;
    while (!stopping && (rounds === 0 || loop.round < startRound + rounds)) {
      const metrics = await loop.runRound();
      lastMetrics = metrics;
      if (metrics.reward !== null) {
        recent.push(metrics.reward);
        if (recent.length > 10) recent.shift();
        rewardSum += metrics.reward;
        rewardRounds++;
      }
      externalGroupsUsed += metrics.groups.externalUsed;
      sentRollouts += metrics.groups.local;
      for (const [key, n] of Object.entries(metrics.received.tasks)) taskTotals[key] = (taskTotals[key] ?? 0) + n;
      if (metrics.checkpoint !== null) {
        checkpointFile = metrics.checkpoint;
        emitter.emit('checkpoint', metrics.checkpoint);
      }
      emitter.emit('round', metrics);
      // Let the network breathe between rounds: validators, pings and gossip run here.
      await new Promise((resolve) => setTimeout(resolve, options.roundDelayMs ?? 0));
    }
  };

  const node = Object.assign(emitter, {
    peerId: identity.peerId,
    host,
    statusUrl: server?.url ?? null,
    startRound,
    status,
    run() {
      running ??= run();
      return running;
    },
    stop() {
      stopped ??= (async () => {
        stopping = true;
        // The round in progress finishes (a step is not interruptible); then the state is saved.
        await running?.catch(() => {});
        try {
          if (lastMetrics !== null) await saveNow(lastMetrics.round);
        } finally {
          await releaseAll();
        }
      })();
      return stopped;
    },
  });
  return node as SwarmNode;
}

async function readPsk(file: string): Promise<Uint8Array> {
  let key: Uint8Array;
  try {
    key = await readFile(file);
  } catch (error) {
    throw new NodeError('BAD_CONFIG', `cannot read the pre-shared key ${file}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  // The libp2p swarm key format: a header line, an encoding line, 64 hex digits.
  if (!/^\/key\/swarm\/psk\/1\.0\.0\/\n\/base16\/\n[0-9a-f]{64}\s*$/.test(new TextDecoder().decode(key))) {
    throw new NodeError('BAD_CONFIG', `${file} is not a libp2p swarm key; make one with \`swarm-node psk <file>\``);
  }
  return key;
}

function mergeReasons(a: Record<string, number>, b: Record<string, number>): Record<string, number> {
  const merged = { ...a };
  // The transport's 'accept' and 'reject:roles' are the roles' verdicts again: keep the roles' reasons.
  delete merged.accept;
  delete merged['reject:roles'];
  delete merged['ignore:roles'];
  for (const [key, n] of Object.entries(b)) merged[key] = (merged[key] ?? 0) + n;
  return merged;
}

const mean = (values: readonly number[]) => values.reduce((a, b) => a + b, 0) / values.length;

function checkRange(name: string, value: number | undefined, min: number, max: number, why: string): void {
  if (value !== undefined && (!Number.isInteger(value) || value < min || value > max)) {
    throw new NodeError('BAD_CONFIG', `${name} must be an integer from ${min} to ${max} (${why}), got ${value}`);
  }
}
