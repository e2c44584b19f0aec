/**
 * One node of the gossip benchmark (scripts/bench/gossip.ts), no model: a libp2p host that publishes
 * `groups` rollouts a round once told to start, records when each peer's rollout arrives, and
 * reports on stdout, one JSON line per event (`ready`, `meshed`, `published`, `done`).
 *
 *   argv[2]: a WorkerConfig as JSON
 *   stdin:   {"dial": [multiaddr, …]} dials those peers (stack 'bare' has no discovery);
 *            {"startAt": <epoch ms>} starts the rounds (`published` says they are over);
 *            {"report": true} (once every node has published and late messages had time) asks for `done`;
 *            end of input (the coordinator is gone) ends the process
 *
 * Stack 'ours' is a swarm-node host and gossip transport (createHost + GossipTransport: DHT, keeper,
 * scoring, the topic validators and their rate limits), bootstrapped from the seed alone; its
 * handler records and accepts without re-verifying (that cost is in bench:tasks). Stack 'bare' is
 * libp2p and gossipsub with their defaults — no DHT, keeper, validators, our scoring or our
 * duplicate short-cut — and the same transports and connection settings (host.ts's
 * connectionSettings); the one change to gossipsub's defaults exempts loopback from its
 * many-peers-on-one-IP penalty. With no peer discovery it dials the peers it is given.
 *
 * Both report why messages went missing: our validator's verdicts (GossipTransport.counts), gossipsub's
 * own counters, peers' scores, closed connections and peers this node has no gossip stream to.
 */
// First: the node package loads its Promise.withResolvers polyfill (Node 20) before any libp2p module.
import '@swarm-node/node';
import { readFileSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { bootstrap } from '@libp2p/bootstrap';
import { generateKeyPair } from '@libp2p/crypto/keys';
import { gossipsub } from '@libp2p/gossipsub';
import { identify } from '@libp2p/identify';
import { noise } from '@libp2p/noise';
import { ping } from '@libp2p/ping';
import { prometheusMetrics } from '@libp2p/prometheus-metrics';
import { tcp } from '@libp2p/tcp';
import { yamux } from '@libp2p/yamux';
import { multiaddr } from '@multiformats/multiaddr';
import { createHost, decodeMessage, encodeMessage, GossipTransport, TOPICS, topicName } from '@swarm-node/node';
import { deriveSeed, type RolloutMessage, rolloutMessageProblem } from '@swarm-node/roles';
import { createLibp2p } from 'libp2p';
import { Registry } from 'prom-client';
// Not exported by the package: the adapter createHost uses to put gossipsub's metrics in a registry.
import { gossipMetricsRegister } from '../../packages/node/src/gossip-metrics.js';
import { connectionSettings, type RouterView } from '../../packages/node/src/host.js';

export interface WorkerConfig {
  stack: 'ours' | 'bare';
  /** The seed's multiaddr; absent for the seed itself. */
  seed?: string;
  rounds: number;
  periodMs: number;
  groups: number;
  /** A JSON file of Group[]: what the rollouts carry. */
  groupsFile: string;
}

/** One group as the embedded model makes them: a task's family and difficulty, G completions and their rewards. */
export interface Group {
  family: string;
  difficulty: number;
  generatorVersion: number;
  completions: string[];
  rewards: number[];
}

interface Node {
  peerId: string;
  address: string;
  meshPeers(): number;
  connections(): number;
  dial(address: string): Promise<void>;
  publish(message: RolloutMessage): Promise<void>;
  /** Payload bytes this node published. */
  payloadSent(): number;
  /** Bytes this process has written to all its connections (libp2p's counter: gossip, DHT, identify, ping). */
  wireSent(): Promise<number>;
  /**
   * Why messages went missing, as counters since start: our transport's verdicts on rollouts other than
   * accept (`ours:<verdict>:<reason>`, stack 'ours' only) and gossipsub's own counts (`gs:…`).
   */
  counters(): Promise<Record<string, number>>;
  /** The gossipsub score of every connected peer, as this node sees it. */
  scores(): number[];
  /** Connected peers this node has no gossipsub stream to (it cannot send them anything), and peers with more than one connection. */
  links(): { unreachable: string[]; multiplyConnected: number; detail: Record<string, string> };
  /** Counts each connection that closes (either end, any reason). */
  onDisconnect(listener: (event: CustomEvent<{ remotePeer: { toString(): string }; direction: string }>) => void): void;
  /** Gossipsub's first deliveries: (propagation source, author). */
  onFirstDelivery(listener: (source: string, author: string) => void): void;
  stop(): Promise<void>;
}

const config = JSON.parse(process.argv[2] ?? '') as WorkerConfig;
const pool = JSON.parse(readFileSync(config.groupsFile, 'utf8')) as Group[];
const SWARM = 'bench';
const ROLLOUTS = topicName(SWARM, 'rollouts');
const role = config.seed === undefined ? 'bootstrap' : 'peer';

/** Latency in ms of every peer rollout received, keyed `producer/round/index`. */
const received: [string, number][] = [];
const record = (rollout: RolloutMessage) =>
  received.push([`${rollout.producer}/${rollout.round}/${rollout.task.index}`, Date.now() - rollout.time]);

const node = config.stack === 'ours' ? await ours() : await bare();
console.log(JSON.stringify({ event: 'ready', peerId: node.peerId, address: node.address }));

const meshPoll = setInterval(() => {
  if (node.meshPeers() === 0) return;
  clearInterval(meshPoll);
  console.log(JSON.stringify({ event: 'meshed' }));
}, 250);

let onReport = () => {};
const reportWanted = new Promise<void>((resolve) => {
  onReport = resolve;
});
const startAt = await new Promise<number>((resolve) => {
  const lines = createInterface({ input: process.stdin });
  lines.on('line', (line) => {
    const command = JSON.parse(line) as { startAt?: number; dial?: string[]; report?: boolean };
    for (const address of command.dial ?? []) void node.dial(address);
    if (command.startAt !== undefined) resolve(command.startAt);
    if (command.report === true) onReport();
  });
  // The coordinator has gone (or is done with us): leave at once, whatever we were doing.
  lines.on('close', () => process.exit(0));
});
clearInterval(meshPoll);

const first = rollout(0, 0);
const problem = rolloutMessageProblem(first);
if (problem !== null) throw new Error(`the benchmark's rollout is not a valid message: ${problem}`);

await sleep(startAt - Date.now());
const mesh = node.meshPeers();
const connectionsAtStart = node.connections();
const wireBefore = await node.wireSent();
const countersBefore = await node.counters();
const closes: [string, number, string][] = [];
node.onDisconnect((event) => {
  closes.push([event.detail.remotePeer.toString(), Date.now() - startAt, event.detail.direction]);
});
const firstFrom = { direct: 0, relayed: 0 };
node.onFirstDelivery((source, author) => {
  if (source === author) firstFrom.direct++;
  else firstFrom.relayed++;
});
const cpuBefore = process.cpuUsage();
const lag = monitorEventLoopDelay({ resolution: 10 });
lag.enable();
for (let round = 0; round < config.rounds; round++) {
  for (let index = 0; index < config.groups; index++) await node.publish(rollout(round, index));
  await sleep(startAt + (round + 1) * config.periodMs - Date.now());
}
// The measured window is the rounds themselves; the drain that follows only lets late messages arrive.
const cpu = process.cpuUsage(cpuBefore);
const windowMs = Date.now() - startAt;
lag.disable();
const wireSent = (await node.wireSent()) - wireBefore;
// Every node waits until the coordinator has seen all finish their rounds and given late messages
// time to arrive (a starved node's rounds take longer than planned: its last messages must count too).
console.log(JSON.stringify({ event: 'published' }));
await reportWanted;
const connections = node.connections();
const scores = node.scores();
const links = node.links();
// Counted over the rounds and the drain: what happened to the measured messages.
const counters = Object.fromEntries(
  Object.entries(await node.counters())
    .map(([key, value]) => [key, value - (countersBefore[key] ?? 0)] as const)
    .filter(([, value]) => value !== 0),
);
console.log(
  JSON.stringify({
    event: 'done',
    peerId: node.peerId,
    mesh,
    connections: [connectionsAtStart, connections],
    payloadSent: node.payloadSent(),
    wireSent,
    cpuMs: (cpu.user + cpu.system) / 1000,
    windowMs,
    lagP99Ms: lag.percentile(99) / 1e6,
    // Closed while messages were on their way (no node has stopped yet).
    disconnects: closes.length,
    closes,
    firstFrom,
    scores,
    links,
    counters,
    received,
  }),
);
await node.stop();
process.exit(0);

/** This node's `index`-th rollout of `round`: a sampled group, under a task spec bound to this node. */
function rollout(round: number, index: number): RolloutMessage {
  const group = pool[(round * config.groups + index + node.peerId.charCodeAt(node.peerId.length - 1)) % pool.length];
  if (group === undefined) throw new Error('the groups file is empty');
  const { family, difficulty, generatorVersion, completions, rewards } = group;
  const me = node.peerId;
  return {
    task: { family, seed: deriveSeed(me, round, index), difficulty, generatorVersion, proposer: me, round, index },
    producer: me,
    round,
    policyVersion: round,
    time: Date.now(),
    completions,
    rewards,
  };
}

async function ours(): Promise<Node> {
  let transport: GossipTransport | undefined;
  const host = await createHost({
    privateKey: await generateKeyPair('Ed25519'),
    swarmId: SWARM,
    listen: ['/ip4/127.0.0.1/tcp/0'],
    bootstrap: config.seed === undefined ? [] : [config.seed],
    mdns: false,
    role,
    // minPeers: the default (4), as a node started without --min-peers.
    scoredTopics: TOPICS.map((topic) => topicName(SWARM, topic)),
    topicLabels: Object.fromEntries(TOPICS.map((topic) => [topicName(SWARM, topic), topic])),
    appSpecificScore: (peer) => transport?.applicationScore(peer) ?? 0,
  });
  const gossip = new GossipTransport({ host, swarmId: SWARM });
  transport = gossip;
  // What is measured is the network: record and accept, without re-verification (its cost is in bench:tasks).
  gossip.subscribe('rollouts', (message) => {
    record(message as RolloutMessage);
    return 'accept';
  });
  gossip.subscribe('tasks', () => 'ignore');
  return {
    peerId: gossip.peerId,
    address: host.addresses()[0] as string,
    meshPeers: () => host.pubsub.getMeshPeers(ROLLOUTS).length,
    connections: () => host.libp2p.getPeers().length,
    dial: async (address) => {
      await host.libp2p.dial(multiaddr(address)).catch(() => {});
    },
    publish: (message) => gossip.publish('rollouts', message),
    payloadSent: () => gossip.traffic().sent,
    wireSent: () => wireBytes(host.registry),
    counters: async () => {
      const verdicts = Object.entries(gossip.counts.rollouts).filter(([key]) => key !== 'accept');
      return {
        ...Object.fromEntries(verdicts.map(([key, n]) => [`ours:${key}`, n])),
        ...(await gossipCounters(host.registry)),
      };
    },
    scores: () => host.libp2p.getPeers().map((peer) => host.pubsub.getScore(peer.toString())),
    links: () => linkState(host.libp2p, host.pubsub),
    onDisconnect: (listener) => host.libp2p.addEventListener('connection:close', listener as never),
    onFirstDelivery: (listener) => firstDeliveries(host.pubsub, listener),
    stop: () => host.stop(),
  };
}

async function bare(): Promise<Node> {
  const registry = new Registry();
  const connections = connectionSettings(role);
  const libp2p = await createLibp2p({
    privateKey: await generateKeyPair('Ed25519'),
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    peerDiscovery: config.seed === undefined ? [] : [bootstrap({ list: [config.seed] })],
    // The same connection settings as createHost, so that 'bare' differs from 'ours' only in the gossip layer.
    connectionManager: connections.connectionManager,
    connectionMonitor: connections.connectionMonitor,
    metrics: prometheusMetrics({ registry, collectDefaultMetrics: false }),
    services: {
      identify: identify(),
      ping: ping(connections.ping),
      // Gossipsub's metrics (as createHost has them), so that both stacks report why messages went missing.
      pubsub: gossipsub({
        allowPublishToZeroTopicPeers: true,
        emitSelf: false,
        // The one change to gossipsub's defaults: a local swarm's processes all share 127.0.0.1, and
        // past 10 peers on one IP its default scoring graylists them (the seed, which all dial, would
        // drop every message and have none of its own sent).
        scoreParams: { IPColocationFactorWhitelist: new Set(['127.0.0.1', '::1']) },
        metricsRegister: gossipMetricsRegister(registry),
        metricsTopicStrToLabel: new Map(TOPICS.map((topic) => [topicName(SWARM, topic), topic])),
      }),
    },
  });
  // The router has getMeshPeers; gossipsub's published interface does not list it (host.ts's RouterView).
  const pubsub = libp2p.services.pubsub as typeof libp2p.services.pubsub & RouterView;
  pubsub.addEventListener('message', (event) => {
    if (event.detail.topic !== ROLLOUTS) return;
    const decoded = decodeMessage('rollouts', event.detail.data);
    if (decoded.ok) record(decoded.message as RolloutMessage);
  });
  for (const topic of TOPICS) pubsub.subscribe(topicName(SWARM, topic));
  let sent = 0;
  return {
    peerId: libp2p.peerId.toString(),
    address: `${libp2p.getMultiaddrs()[0]?.toString()}`,
    meshPeers: () => pubsub.getMeshPeers(ROLLOUTS).length,
    connections: () => libp2p.getPeers().length,
    dial: async (address) => {
      await libp2p.dial(multiaddr(address)).catch(() => {});
    },
    async publish(message) {
      const bytes = encodeMessage('rollouts', message);
      sent += bytes.byteLength;
      await pubsub.publish(ROLLOUTS, bytes);
    },
    payloadSent: () => sent,
    wireSent: () => wireBytes(registry),
    counters: () => gossipCounters(registry),
    scores: () => libp2p.getPeers().map((peer) => pubsub.getScore(peer.toString())),
    links: () => linkState(libp2p, pubsub),
    onDisconnect: (listener) => libp2p.addEventListener('connection:close', listener as never),
    onFirstDelivery: (listener) => firstDeliveries(pubsub, listener),
    stop: async () => {
      await libp2p.stop();
    },
  };
}

/** Gossipsub's streams and mesh are not in its published interface; the router has them. */
function linkState(
  libp2p: { getPeers(): { toString(): string }[]; getConnections(peer?: never): unknown[] },
  pubsub: unknown,
): { unreachable: string[]; multiplyConnected: number; detail: Record<string, string> } {
  const router = pubsub as {
    streamsOutbound: Map<string, { rawStream: Record<string, unknown> }>;
    streamsInbound: Map<string, { rawStream: Record<string, unknown> }>;
    mesh: Map<string, Set<string>>;
  };
  const peers = libp2p.getPeers();
  const mesh = router.mesh.get(ROLLOUTS) ?? new Set<string>();
  const state = (s: { rawStream: Record<string, unknown> } | undefined) =>
    s === undefined
      ? '-'
      : `${s.rawStream.status}/${s.rawStream.writeStatus}/${s.rawStream.remoteReadStatus}/${s.rawStream.readStatus}`;
  const detail: Record<string, string> = {};
  for (const p of peers) {
    const id = p.toString();
    detail[id] =
      `out=${state(router.streamsOutbound.get(id))} in=${state(router.streamsInbound.get(id))} conns=${libp2p.getConnections(p as never).length} mesh=${mesh.has(id)}`;
  }
  return {
    unreachable: peers
      .map((p) => p.toString())
      .filter((id) => router.streamsOutbound.get(id)?.rawStream.writeStatus !== 'writable'),
    multiplyConnected: peers.filter((p) => libp2p.getConnections(p as never).length > 1).length,
    detail,
  };
}

function firstDeliveries(pubsub: unknown, listener: (source: string, author: string) => void): void {
  (pubsub as EventTarget).addEventListener('gossipsub:message', (event) => {
    const { propagationSource, msg } = (event as CustomEvent).detail;
    if (msg.type === 'signed') listener(propagationSource.toString(), msg.from.toString());
  });
}

async function wireBytes(registry: Registry): Promise<number> {
  const metric = await registry.getSingleMetric('libp2p_data_transfer_bytes_total')?.get();
  return (metric?.values ?? []).filter((v) => v.labels.protocol === 'global sent').reduce((sum, v) => sum + v.value, 0);
}

/**
 * Gossipsub's counts of what it dropped or could not deliver, summed over topics: messages its
 * validation stage found invalid or ignored (by reason), RPCs dropped from graylisted peers, IHAVEs
 * ignored, IWANT promises broken, mesh peers removed, scoring penalties.
 */
async function gossipCounters(registry: Registry): Promise<Record<string, number>> {
  const wanted: Record<string, string | undefined> = {
    gossipsub_pre_validation_valid_total: undefined,
    gossipsub_pre_validation_duplicate_total: undefined,
    gossipsub_pre_validation_invalid_total: undefined,
    gossipsub_msg_received_invalid_total: 'error',
    gossipsub_msg_received_error_total: undefined,
    gossipsub_rpc_rcv_not_accepted_total: undefined,
    gossipsub_rpc_recv_err_count_total: undefined,
    gossipsub_rpc_data_err_count_total: undefined,
    gossipsub_peer_read_stream_err_count_total: undefined,
    gossipsub_ihave_rcv_ignored_total: 'reason',
    gossipsub_iwant_promise_sent_total: undefined,
    gossipsub_iwant_promise_broken: undefined,
    gossipsub_iwant_rcv_dont_have_msgids_total: undefined,
    gossipsub_peer_churn_events_disconnected_total: undefined,
    gossipsub_peer_churn_events_bad_score_total: undefined,
    gossipsub_peer_churn_events_prune_total: undefined,
    gossipsub_peer_churn_events_excess_total: undefined,
    gossipsub_scoring_penalties_total: 'penalty',
  };
  const result: Record<string, number> = {};
  for (const metric of await registry.getMetricsAsJSON()) {
    if (!(metric.name in wanted)) continue;
    const label = wanted[metric.name];
    for (const { labels, value } of metric.values as { labels: Record<string, string | number>; value: number }[]) {
      const name = metric.name.replace(/^gossipsub_/, 'gs:').replace(/_total$/, '');
      const key = label === undefined ? name : `${name}:${labels[label]}`;
      result[key] = (result[key] ?? 0) + value;
    }
  }
  return result;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
}
