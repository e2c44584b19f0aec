/**
 * A running swarm-node: identity, host, gossip transport, and either the round loop over a learner
 * worker (a training node) or a relay (a bootstrap node), with its status for the HTTP surface, the
 * one checkpoint writer, and a clean stop. The main thread owns the network; the model samples and
 * trains in the learner's worker thread (@swarm-node/sapo's startLearnerWorker).
 *
 *   const node = await SwarmNode.start({ dataDir: '/var/lib/swarm-node', bootstrap: [seed] });
 *   node.on('round', (metrics) => console.log(metrics.reward));
 *   await node.run();        // until node.stop() (SIGINT/SIGTERM in the CLI) or `rounds`
 *
 * Debug logs: DEBUG=swarm-node:* (libp2p's logger convention; DEBUG=libp2p:* for libp2p's own).
 */
import { EventEmitter } from 'node:events';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { logger } from '@libp2p/logger';
import { hashToSeed, LIMITS, Relay, RoundLoop, type RoundMetrics } from '@swarm-node/roles';
import {
  type BackendInfo,
  EMBEDDED_MODEL_PATH,
  type Learner,
  LearnerCrashedError,
  type LearnerMemory,
  type LoraSettings,
  latestCheckpoint,
  parseBackendName,
  removeUnfinishedSaves,
  type StepStats,
  startLearnerWorker,
} from '@swarm-node/sapo';
import { NodeError } from './errors.js';
import { GossipTransport } from './gossip-transport.js';
import { createHost, type Host, type RelayLimits } from './host.js';
import { ensureDataDir, type Identity, loadOrCreateIdentity, removeLeftovers } from './identity.js';
import { type NetworkStatus, networkStatus } from './network-status.js';
import { roundHistory, type StatusServer, startStatusServer } from './status-server.js';
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
  /** A bootstrap node's relay limits for nodes behind NAT (host.ts RELAY_LIMITS). */
  relay?: Partial<RelayLimits>;
  /** Ask the router for a port mapping (UPnP / NAT-PMP). Default false. */
  upnp?: boolean;
  /** Roles a peer plays. Default all three; without 'solver' it relays only. The evaluator is required. */
  roles?: Role[];
  /** Publish its tasks and rollouts. Default true; false: a free rider that learns from peers' and shares none. */
  share?: boolean;
  /** Fix every family's task difficulty here (the proposer does not adapt), as experiments do. Default: adapt from 1. */
  fixedDifficulty?: number;
  /** I and J of the SAPO step. Default 6 and 2 (docs/EXPERIMENTS.md: no mix beat training alone at our scale). */
  localGroups?: number;
  externalGroups?: number;
  /** G: completions per task. Default 8. */
  groupSize?: number;
  learningRate?: number;
  /** μ: optimisation passes per batch. Default 1 (the ratio is then 1: REINFORCE with group-normalised advantages). */
  passes?: number;
  /** β: weight of KL(π_θ ‖ π_ref) against the starting policy. Default 0. */
  beta?: number;
  /** Every this many rounds, the pass rate on held-out tasks at `heldOutDifficulty`; 0 never. Default 25. */
  heldOutEvery?: number;
  /** Default 1. */
  heldOutDifficulty?: number;
  /** Rounds to run, then stop; 0 runs until stopped. Default 0. */
  rounds?: number;
  /** Save a checkpoint every this many rounds (and always on stop). Default 10. */
  checkpointEvery?: number;
  /** Checkpoint files kept. Default 3. */
  keepCheckpoints?: number;
  /** Backend name for the learner (see @swarm-node/sapo). Default 'auto'. */
  backend?: string;
  /**
   * A Hugging Face model folder (Llama, Qwen2) to train with LoRA; checkpoints then hold its
   * adapters and resume on this base only. Default: the embedded model.
   */
  model?: string;
  /** LoRA rank, alpha and target projections for a model folder (default r 16, alpha 32, every projection). */
  lora?: Partial<LoraSettings>;
  /** Longest prompt + completion in tokens, for a model folder. Default 384. */
  contextLength?: number;
  /** Most tokens sampled per completion. Default 48. */
  maxNewTokens?: number;
  /** Seeds the round loop's draws and the learner's draw of peers' groups; default derived from the peer id. */
  seed?: number;
  /** Status/metrics HTTP address. Default 127.0.0.1, port 0 (any free port, written to the data dir); null turns it off. */
  statusHost?: string;
  statusPort?: number | null;
  /** Milliseconds to wait between rounds. Default 0. */
  roundDelayMs?: number;
  /**
   * Before the first round, wait until this many peers subscribe to the swarm's rollouts, so that a
   * swarm started together trains together from round 0 (the launcher's nodes do). Default 0: start at once.
   */
  waitForPeers?: number;
  /** Longest wait for `waitForPeers`, in ms; then it trains with the peers it has. Default 120 000. */
  waitForPeersMs?: number;
}

/** How the wait for `waitForPeers` ended: the `waited` event. */
export interface PeerWait {
  wanted: number;
  found: number;
  seconds: number;
  /** True when `waitForPeersMs` passed first. */
  timedOut: boolean;
}

export interface RolloutTotals {
  sent: number;
  /** Verdicts on peers' messages by topic and `verdict:reason`. */
  received: Record<string, Record<string, number>>;
  /** Peers' rollout groups accepted, by producer peer id (a training node; empty on a relay). */
  acceptedByProducer: Record<string, number>;
}

export interface NodeStatus {
  peerId: string;
  mode: 'peer' | 'bootstrap';
  swarmId: string;
  addresses: string[];
  peers: { id: string; address: string; score: number }[];
  /** Reachability, relay reservations, direct and relayed peers, the bootstrap peers' state. */
  network: NetworkStatus;
  mesh: Record<string, number>;
  round: number | null;
  policyVersion: number | null;
  /** Mean reward of own completions over the last 10 rounds and over all rounds of this run. */
  reward: { last10: number | null; run: number | null };
  externalGroupsUsed: number;
  rollouts: RolloutTotals;
  /** The last SAPO step's statistics and the last held-out pass rate, when there were some. */
  learner: {
    seed: number;
    passes: number;
    beta: number;
    stats: StepStats | null;
    heldOut: RoundMetrics['heldOut'];
  } | null;
  /** This process (bytes) and the learner worker's tensors and wasm heap. */
  memory: { rss: number; heapUsed: number; external: number; learner: LearnerMemory | null };
  backend: BackendInfo | null;
  /** What the learner trains: the embedded model or a model folder, its checkpoint config, trainable weights and memory plan. */
  model: {
    source: string;
    config: Record<string, unknown>;
    trainableParameters: number;
    memoryPlan: string | null;
  } | null;
  checkpoint: string | null;
  startedAt: string;
}

export const STATUS_ADDRESS_FILE = 'status.address';
export const CHECKPOINT_DIR = 'checkpoints';

const ROLES: readonly Role[] = ['proposer', 'solver', 'evaluator'];

const log = logger('swarm-node:node');

/** Per-run figures a node reports: rewards, groups learned from, verdicts on peers' messages. */
class NodeStats {
  readonly #recent: number[] = [];
  #rewardSum = 0;
  #rewardRounds = 0;
  externalGroupsUsed = 0;
  rolloutsSent = 0;
  readonly tasks: Record<string, number> = {};
  last: RoundMetrics | null = null;
  heldOut: RoundMetrics['heldOut'] = null;

  record(metrics: RoundMetrics): void {
    this.last = metrics;
    if (metrics.reward !== null) {
      this.#recent.push(metrics.reward);
      if (this.#recent.length > 10) this.#recent.shift();
      this.#rewardSum += metrics.reward;
      this.#rewardRounds++;
    }
    this.heldOut = metrics.heldOut ?? this.heldOut;
    this.externalGroupsUsed += metrics.groups.externalUsed;
    this.rolloutsSent += metrics.groups.published;
    for (const [key, n] of Object.entries(metrics.received.tasks)) this.tasks[key] = (this.tasks[key] ?? 0) + n;
  }

  reward(): NodeStatus['reward'] {
    return {
      last10: this.#recent.length === 0 ? null : mean(this.#recent),
      run: this.#rewardRounds === 0 ? null : this.#rewardSum / this.#rewardRounds,
    };
  }
}

export class SwarmNode extends EventEmitter<{ round: [RoundMetrics]; checkpoint: [string]; waited: [PeerWait] }> {
  readonly peerId: string;
  readonly host: Host;
  readonly startRound: number;
  readonly #options: NodeOptions;
  readonly #mode: 'peer' | 'bootstrap';
  readonly #swarmId: string;
  readonly #transport: GossipTransport;
  readonly #learner: Learner | null;
  readonly #loop: RoundLoop | null;
  readonly #relay: Relay | null;
  readonly #seed: number;
  readonly #stats = new NodeStats();
  readonly #startedAt = new Date().toISOString();
  #server: StatusServer | null = null;
  #checkpoint: string | null;
  #learnerMemory: LearnerMemory | null = null;
  #stopping = false;
  #running: Promise<void> | null = null;
  #stopped: Promise<void> | null = null;
  #wake: () => void = () => {};

  /** Checks the options, loads identity and model, starts the network and the status server. */
  static async start(options: NodeOptions): Promise<SwarmNode> {
    const mode = options.mode ?? 'peer';
    const swarmId = options.swarmId ?? 'main';
    const roles = checkOptions(options, swarmId);
    await ensureDataDir(options.dataDir);
    const checkpointDir = join(options.dataDir, CHECKPOINT_DIR);
    // Whatever a killed process left half-written: this node is now the only writer here.
    const leftovers = [...(await removeLeftovers(options.dataDir)), ...(await removeUnfinishedSaves(checkpointDir))];
    if (leftovers.length > 0) log('removed unfinished writes %o', leftovers);
    const identity = await loadOrCreateIdentity(options.dataDir);
    const psk = options.pskFile === undefined ? undefined : await readPsk(options.pskFile);
    const training = mode === 'peer' && roles.includes('solver');
    const seed = options.seed ?? hashToSeed('swarm-node/seed', identity.peerId);

    let learner: Learner | null = null;
    let checkpoint: string | null = null;
    if (training) {
      checkpoint = await latestCheckpoint(checkpointDir);
      // A damaged latest checkpoint stops the node (CheckpointError); it is never replaced by the base model.
      try {
        learner = await startLearnerWorker({
          // A model folder is the base its adapter checkpoints resume on; the embedded model's
          // checkpoints hold every weight.
          ...(options.model === undefined
            ? { model: checkpoint ?? EMBEDDED_MODEL_PATH }
            : { model: options.model, ...(checkpoint === null ? {} : { resume: checkpoint }) }),
          ...(options.lora === undefined ? {} : { lora: options.lora }),
          ...(options.contextLength === undefined ? {} : { contextLength: options.contextLength }),
          backend: parseBackendName(options.backend ?? 'auto'),
          sapo: {
            localGroups: options.localGroups ?? 6,
            externalGroups: options.externalGroups ?? 2,
            // Each node draws peers' groups with its own seed, not all the same indices at the same step.
            seed: hashToSeed('swarm-node/sapo', seed),
            ...(options.learningRate === undefined ? {} : { learningRate: options.learningRate }),
            ...(options.passes === undefined ? {} : { passes: options.passes }),
            ...(options.beta === undefined ? {} : { beta: options.beta }),
          },
        });
      } catch (error) {
        if ((error as { code?: string }).code !== 'CHECKPOINT_MISMATCH') throw error;
        throw new NodeError(
          'CHECKPOINTS_OF_ANOTHER_MODEL',
          `${(error as Error).message}. ${checkpointDir} holds checkpoints of another model: start with the model they were trained on, or give this one its own --data-dir`,
          { cause: error },
        );
      }
    }
    let host: Host | undefined;
    try {
      let transport: GossipTransport | undefined;
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
        ...(options.relay === undefined ? {} : { relay: options.relay }),
        upnp: options.upnp ?? false,
        scoredTopics: TOPICS.map((topic) => topicName(swarmId, topic)),
        topicLabels: Object.fromEntries(TOPICS.map((topic) => [topicName(swarmId, topic), topic])),
        appSpecificScore: (peer) => transport?.applicationScore(peer) ?? 0,
      });
      transport = new GossipTransport({ host, swarmId });
      const node = new SwarmNode(options, { identity, host, transport, learner, checkpoint, seed, roles });
      await node.#serveStatus();
      return node;
    } catch (error) {
      await host?.stop();
      await learner?.close();
      throw error;
    }
  }

  private constructor(
    options: NodeOptions,
    parts: {
      identity: Identity;
      host: Host;
      transport: GossipTransport;
      learner: Learner | null;
      checkpoint: string | null;
      seed: number;
      roles: Role[];
    },
  ) {
    super();
    this.#options = options;
    this.#mode = options.mode ?? 'peer';
    this.#swarmId = options.swarmId ?? 'main';
    this.peerId = parts.identity.peerId;
    this.host = parts.host;
    this.#transport = parts.transport;
    this.#learner = parts.learner;
    this.#checkpoint = parts.checkpoint;
    this.#seed = parts.seed;
    const savedRound = Number(parts.learner?.info.metadata.round);
    this.startRound = parts.checkpoint !== null && Number.isSafeInteger(savedRound) ? savedRound + 1 : 0;
    this.#loop =
      parts.learner === null
        ? null
        : new RoundLoop({
            transport: this.#transport,
            learner: parts.learner,
            groupSize: options.groupSize ?? 8,
            propose: parts.roles.includes('proposer'),
            share: options.share ?? true,
            ...(options.fixedDifficulty === undefined
              ? {}
              : { proposer: { startDifficulty: options.fixedDifficulty, adapt: false } }),
            heldOut: { every: options.heldOutEvery ?? 25, difficulty: options.heldOutDifficulty ?? 1 },
            sampling: { maxNewTokens: options.maxNewTokens ?? 48 },
            seed: parts.seed,
            startRound: this.startRound,
          });
    this.#relay = this.#loop === null ? new Relay(this.#transport) : null;
  }

  get statusUrl(): string | null {
    return this.#server?.url ?? null;
  }

  status(): NodeStatus {
    const { host } = this;
    const received: Record<string, Record<string, number>> = {};
    for (const topic of TOPICS) received[topic] = { ...this.#transport.counts[topic] };
    // The transport counts what failed before the roles saw it; the roles count their reasons.
    const rolesRollouts = this.#loop?.evaluator.counts ?? this.#relay?.evaluator.counts ?? {};
    received.rollouts = mergeReasons(received.rollouts ?? {}, rolesRollouts);
    received.tasks = mergeReasons(received.tasks ?? {}, this.#relay?.taskCounts ?? this.#stats.tasks);
    const memory = process.memoryUsage();
    const learner = this.#learner;
    return {
      peerId: this.peerId,
      mode: this.#mode,
      swarmId: this.#swarmId,
      addresses: host.addresses(),
      peers: host.libp2p.getConnections().map((c) => ({
        id: c.remotePeer.toString(),
        address: c.remoteAddr.toString(),
        score: host.pubsub.getScore(c.remotePeer.toString()),
      })),
      network: networkStatus(host),
      mesh: Object.fromEntries(
        TOPICS.map((topic) => [topic, host.pubsub.getMeshPeers(topicName(this.#swarmId, topic)).length]),
      ),
      round: this.#stats.last?.round ?? null,
      policyVersion: learner?.steps ?? null,
      reward: this.#stats.reward(),
      externalGroupsUsed: this.#stats.externalGroupsUsed,
      rollouts: {
        sent: this.#stats.rolloutsSent,
        received,
        acceptedByProducer: Object.fromEntries(this.#loop?.acceptedByProducer ?? []),
      },
      learner:
        learner === null
          ? null
          : {
              seed: learner.info.options.seed,
              passes: learner.info.options.passes,
              beta: learner.info.options.beta,
              stats: this.#stats.last?.learner.stats ?? null,
              heldOut: this.#stats.heldOut,
            },
      memory: {
        rss: memory.rss,
        heapUsed: memory.heapUsed,
        external: memory.external,
        learner: this.#learnerMemory,
      },
      backend: learner?.info.backend ?? null,
      model:
        learner === null
          ? null
          : {
              source: this.#options.model ?? 'embedded',
              config: learner.info.config,
              trainableParameters: learner.info.parameters,
              memoryPlan: learner.info.memoryPlan?.summary ?? null,
            },
      checkpoint: this.#checkpoint,
      startedAt: this.#startedAt,
    };
  }

  /** Runs rounds until `rounds` are done or stop() is called; resolves when the loop has ended. */
  run(): Promise<void> {
    this.#running ??= this.#run();
    return this.#running;
  }

  /** Stops after the current step, saves a checkpoint, closes the network. Idempotent. */
  stop(): Promise<void> {
    this.#stopped ??= (async () => {
      this.#stopping = true;
      this.#wake();
      // The round in progress finishes (a step is not interruptible); then the state is saved.
      await this.#running?.catch(() => {});
      try {
        if (this.#stats.last !== null) await this.#save(this.#stats.last.round);
      } catch (error) {
        if (!(error instanceof LearnerCrashedError)) throw error;
        log.error('not saved: %s', error.message);
      } finally {
        await this.#server?.close();
        await this.#transport.close();
        await this.host.stop();
        await this.#learner?.close();
      }
    })();
    return this.#stopped;
  }

  async #run(): Promise<void> {
    const loop = this.#loop;
    if (loop === null) {
      // A relay has no rounds: it serves until stopped.
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
        if (this.#stopping) resolve();
      });
      return;
    }
    await this.#waitForPeers();
    const rounds = this.#options.rounds ?? 0;
    const every = this.#options.checkpointEvery ?? 10;
    try {
      while (!this.#stopping && (rounds === 0 || loop.round < this.startRound + rounds)) {
        const metrics = await loop.runRound();
        this.#stats.record(metrics);
        this.#learnerMemory = await loop.learner.memory();
        if ((metrics.round + 1) % every === 0) await this.#save(metrics.round);
        this.emit('round', metrics);
        // Let the network breathe between rounds (the learner's thread is another one).
        await new Promise((resolve) => setTimeout(resolve, this.#options.roundDelayMs ?? 0));
      }
    } catch (error) {
      if (!(error instanceof LearnerCrashedError)) throw error;
      throw new NodeError(
        'LEARNER_CRASHED',
        `${error.message}. ${this.#checkpoint === null ? 'No checkpoint was saved yet' : `The newest checkpoint, ${this.#checkpoint}, is kept`}: start the node again to resume from it.`,
        { cause: error },
      );
    }
  }

  /** Polls (4 times a second) the rollouts topic's subscribers until `waitForPeers` are there, the time is up or stop() is called. */
  async #waitForPeers(): Promise<void> {
    const wanted = this.#options.waitForPeers ?? 0;
    if (wanted <= 0) return;
    const start = performance.now();
    const deadline = start + (this.#options.waitForPeersMs ?? 120_000);
    let found = this.#transport.subscribers('rollouts');
    while (found < wanted && !this.#stopping && performance.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 250));
      found = this.#transport.subscribers('rollouts');
    }
    const seconds = (performance.now() - start) / 1000;
    log('waited %ss for %d of %d peers', seconds.toFixed(1), found, wanted);
    if (!this.#stopping) this.emit('waited', { wanted, found, seconds, timedOut: found < wanted });
  }

  /** The node's one checkpoint writer: every `checkpointEvery` rounds and on stop. */
  async #save(round: number): Promise<void> {
    if (this.#learner === null) return;
    const file = await this.#learner.save(
      join(this.#options.dataDir, CHECKPOINT_DIR),
      { node: this.peerId, round: String(round) },
      this.#options.keepCheckpoints ?? 3,
    );
    if (file === this.#checkpoint) return;
    this.#checkpoint = file;
    log('saved %s', file);
    this.emit('checkpoint', file);
  }

  async #serveStatus(): Promise<void> {
    if (this.#options.statusPort === null) return;
    this.#server = await startStatusServer({
      host: this.#options.statusHost ?? '127.0.0.1',
      port: this.#options.statusPort ?? 0,
      status: () => this.status(),
      registry: this.host.registry,
      // The page's /events: each round record, and the last rounds for a page that opens later.
      events: roundHistory(this),
      addressFile: join(this.#options.dataDir, STATUS_ADDRESS_FILE),
    });
  }
}

/** SwarmNode.start, for callers that want a function. */
export const startNode = (options: NodeOptions): Promise<SwarmNode> => SwarmNode.start(options);

/** The roles a node plays, after checking every option that can be checked before loading anything. */
function checkOptions(options: NodeOptions, swarmId: string): Role[] {
  const swarmProblem = swarmIdProblem(swarmId);
  if (swarmProblem !== null) throw new NodeError('BAD_CONFIG', `swarm id ${JSON.stringify(swarmId)}: ${swarmProblem}`);
  const roles = checkRoles(options.roles ?? [...ROLES]);
  checkRange('groupSize', options.groupSize, 2, LIMITS.maxGroupSize, 'peers reject larger groups');
  checkRange(
    'localGroups',
    options.localGroups,
    0,
    LIMITS.tasksPerRound,
    'a proposer publishes at most that many tasks a round',
  );
  checkRange('fixedDifficulty', options.fixedDifficulty, 1, 10, 'the task families’ levels');
  checkRange('waitForPeers', options.waitForPeers, 0, 1024, 'peers a node waits for before its first round');
  return roles;
}

/** Roles that make a node: known names, the evaluator always, the proposer only with the solver. */
export function checkRoles(roles: readonly string[]): Role[] {
  for (const role of roles) {
    if (!(ROLES as readonly string[]).includes(role))
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
  return roles as Role[];
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
