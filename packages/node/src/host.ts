/**
 * The libp2p host: TCP + noise + yamux, identify, ping, gossipsub (signed messages, peer scoring),
 * a private kad-dht per swarm, bootstrap peers, mDNS, an optional pre-shared key, and a keeper that
 * holds at least `minPeers` connections. For nodes behind NAT: seeds run a circuit-relay-v2 server
 * and AutoNAT v2; peers run the relay transport (a reservation on a seed, a `/p2p-circuit` address),
 * AutoNAT v2, DCUtR (a relayed connection upgraded to a direct one where the NATs allow) and, opt-in,
 * UPnP. It knows nothing of tasks or rollouts: the gossip
 * transport (gossip-transport.ts) puts the roles' messages on it.
 */
import './polyfill.js';
import { randomBytes } from 'node:crypto';
import { autoNATv2 } from '@libp2p/autonat-v2';
import { bootstrap } from '@libp2p/bootstrap';
import { type CircuitRelayService, circuitRelayServer, circuitRelayTransport } from '@libp2p/circuit-relay-v2';
import { dcutr } from '@libp2p/dcutr';
import { type GossipSub, gossipsub } from '@libp2p/gossipsub';
import type { RPC } from '@libp2p/gossipsub/message';
import {
  createPeerScoreParams,
  createTopicScoreParams,
  type PeerScoreThresholds,
  type TopicScoreParams,
} from '@libp2p/gossipsub/score';
import { identify } from '@libp2p/identify';
import type { PeerId, PrivateKey } from '@libp2p/interface';
import { type KadDHT, kadDHT, passthroughMapper } from '@libp2p/kad-dht';
import { logger } from '@libp2p/logger';
import { mdns } from '@libp2p/mdns';
import { noise } from '@libp2p/noise';
import { peerIdFromString } from '@libp2p/peer-id';
import { type Ping, ping } from '@libp2p/ping';
import { preSharedKey } from '@libp2p/pnet';
import { prometheusMetrics } from '@libp2p/prometheus-metrics';
import { tcp } from '@libp2p/tcp';
import { uPnPNAT } from '@libp2p/upnp-nat';
import { isPrivate } from '@libp2p/utils';
import { yamux } from '@libp2p/yamux';
import { type Multiaddr, multiaddr } from '@multiformats/multiaddr';
import { createLibp2p, type Libp2p } from 'libp2p';
import { Registry } from 'prom-client';
import { expectedPeer, SeedWatch } from './bootstrap-check.js';
import { NodeError } from './errors.js';
import { gossipMetricsRegister } from './gossip-metrics.js';

export interface HostOptions {
  privateKey: PrivateKey;
  /** Namespaces the DHT protocol (and, in the transport, the topics). */
  swarmId: string;
  /** Addresses to listen on. Default `/ip4/0.0.0.0/tcp/0` (any free port). */
  listen?: string[];
  /** Addresses to tell peers instead of the listening ones (behind NAT or port forwarding). */
  announce?: string[];
  /** Multiaddrs with `/p2p/<id>` dialled first and redialled with backoff while below `minPeers`. */
  bootstrap?: string[];
  /** Find peers on the local network. Default true. */
  mdns?: boolean;
  /** A pre-shared key (the pnet key file's contents) for a private swarm. */
  psk?: Uint8Array;
  /**
   * 'peer' trains; 'bootstrap' is a long-lived seed: higher connection limits, gossipsub peer
   * exchange, a higher inbound connection rate. Default 'peer'.
   */
  role?: 'peer' | 'bootstrap';
  /** The keeper dials until this many peers are connected. Default 4 (0 turns the keeper off). */
  minPeers?: number;
  /** Default 100 for a peer, 2000 for a bootstrap node. */
  maxConnections?: number;
  /** Gossipsub topics whose invalid messages cost their sender score. */
  scoredTopics?: string[];
  /** Short names of topics for metric labels, e.g. { '/swarm-node/main/tasks/1': 'tasks' }. */
  topicLabels?: Record<string, string>;
  /** Application score of a peer, added to its gossipsub score (weight 1). Default 0. */
  appSpecificScore?: (peerId: string) => number;
  /**
   * IPs exempt from gossipsub's many-peers-on-one-IP penalty. Default loopback: a local swarm's
   * processes all share 127.0.0.1.
   */
  ipColocationWhitelist?: string[];
  /** How often the keeper checks its peer count, ms. Default 5000. */
  keeperIntervalMs?: number;
  /** A bootstrap node's circuit-relay-v2 limits. Default RELAY_LIMITS. */
  relay?: Partial<RelayLimits>;
  /** Ask the router for a port mapping (UPnP / NAT-PMP). Default false: it opens a port on the operator's router. */
  upnp?: boolean;
}

/** What a seed's circuit-relay-v2 server grants each node behind NAT. */
export interface RelayLimits {
  /** Nodes that may hold a reservation (a `/p2p-circuit` address) at once. */
  maxReservations: number;
  /** How long one relayed connection may stay open, ms; then it is closed and the keeper dials again. */
  durationMs: number;
  /** Bytes one relayed connection may carry, both directions together; then likewise. */
  dataBytes: number;
}

/**
 * libp2p's defaults (2 min and 128 KiB a relayed connection) carry a few rounds of gossip at best.
 * A node publishes about 2.6 KiB of rollouts a round with the embedded model and receives its mesh
 * peers' (docs/BENCHMARKS.md: 20–70 KiB of wire a round in 8–16-node swarms). Measured through a
 * seed ("Relay" there), one relayed connection carried 17–44 KiB a round with 2–8 NAT'd nodes, so
 * 64 MiB carries about 1 500–3 900 rounds (at those nodes' pace the data, not the hour, closed it:
 * after 30–68 min; the keeper redials), or 128 of the largest legal rollout messages (512 KiB). The cost to
 * the relay: every relayed byte crosses it twice (in and out), so one relayed connection is at most
 * 128 MiB of the seed's traffic in its hour; R reserved nodes each reached by k peers cost at most
 * R·k·128 MiB an hour (R ≤ maxReservations; k is about --min-peers).
 */
export const RELAY_LIMITS: RelayLimits = { maxReservations: 128, durationMs: 60 * 60_000, dataBytes: 64 * 2 ** 20 };

export type Services = {
  pubsub: GossipSub;
  dht: KadDHT;
  ping: Ping;
  identify: unknown;
  autoNAT: unknown;
  relay?: CircuitRelayService;
  dcutr?: unknown;
  upnp?: unknown;
};

const log = logger('swarm-node:host');

function relayLimits(relay: Partial<RelayLimits> = {}): RelayLimits {
  const limits = { ...RELAY_LIMITS, ...relay };
  for (const [key, value] of Object.entries(limits)) {
    if (!Number.isSafeInteger(value) || value < 1) {
      throw new NodeError(
        'BAD_CONFIG',
        `relay limit ${key} must be a positive whole number (got ${value}); leave it out for the default ${RELAY_LIMITS[key as keyof RelayLimits]}`,
      );
    }
  }
  return limits;
}

/** Gossipsub's router has these; its published interface does not list them. */
export interface RouterView {
  getScore(peerId: string): number;
  getMeshPeers(topic: string): string[];
}

export interface Host {
  libp2p: Libp2p<Services>;
  /** The identity key the host runs with (what signs this node's task messages). */
  privateKey: PrivateKey;
  pubsub: GossipSub & RouterView;
  /** Prometheus registry holding libp2p's, gossipsub's and the node's own metrics. */
  registry: Registry;
  addresses(): string[];
  /** The bootstrap peers: connected or why not. */
  seeds: SeedWatch;
  stop(): Promise<void>;
}

/** Gossipsub score thresholds (the defaults of the gossipsub spec), named here because tests and docs rely on them. */
export const SCORE_THRESHOLDS: PeerScoreThresholds = {
  gossipThreshold: -10,
  publishThreshold: -50,
  graylistThreshold: -80,
  acceptPXThreshold: 10,
  opportunisticGraftThreshold: 20,
};

/**
 * Scoring per topic. Our topics are slow (a message per node per round, rounds of seconds to
 * minutes), so no delivery rate is demanded of mesh peers; what costs score is an invalid message:
 * −10 × (count)², decaying by 1 % a second. Three rejects give −90 here (back above −80 in about
 * 6 s) plus −30 of application score (halving every 10 minutes, gossip-transport.ts): below the
 * graylist threshold (−80) for about a minute, and repeated offences keep it there.
 */
export const TOPIC_SCORE: Partial<TopicScoreParams> = {
  topicWeight: 1,
  timeInMeshWeight: 0.01,
  timeInMeshQuantum: 1000,
  timeInMeshCap: 300,
  firstMessageDeliveriesWeight: 0.5,
  firstMessageDeliveriesDecay: 0.9,
  firstMessageDeliveriesCap: 10,
  meshMessageDeliveriesWeight: 0,
  meshFailurePenaltyWeight: 0,
  invalidMessageDeliveriesWeight: -10,
  invalidMessageDeliveriesDecay: 0.99,
};

const LOOPBACK = ['127.0.0.1', '::1'];

/**
 * Connection settings by role (the gossip benchmark's bare stack uses the same ones, so that it
 * differs from ours only in the gossip layer).
 *
 * Liveness: libp2p's connection monitor pings every link and closes one whose ping fails. On a busy
 * machine a ping can take seconds, so the monitor waits 20–60 s (adaptive) rather than 5 s; and the
 * ping *responder* must wait as long, or its own 10 s default aborts the stream, the pinger sees the
 * stream end and closes a healthy link, losing the messages on it (a 16-process loopback swarm lost
 * a connection in two this way within 40 s).
 */
export function connectionSettings(role: 'peer' | 'bootstrap') {
  return {
    connectionManager: {
      maxConnections: role === 'bootstrap' ? 2000 : 100,
      // Seeds take the whole swarm's first dials; the default (5 a second per host) refuses local swarms.
      inboundConnectionThreshold: role === 'bootstrap' ? 1000 : 50,
      maxIncomingPendingConnections: role === 'bootstrap' ? 256 : 32,
    },
    connectionMonitor: { pingInterval: 30_000, pingTimeout: { minTimeout: 20_000, maxTimeout: 60_000 } },
    ping: { timeout: 60_000 },
  };
}

/**
 * Every message reaches a node once from each mesh peer, and gossipsub verifies a message's signature
 * before it looks the message up among those seen. Under StrictSign a message's id is its author and
 * sequence number, so a copy is known by those two bytes strings alone: looked up first, copies are
 * dropped without a signature check. Only messages that passed it are remembered this way, so a
 * forgery cannot shadow the real message.
 */
export function fastMessageId(message: RPC.Message): string {
  const base64 = (bytes: Uint8Array | undefined) =>
    bytes === undefined ? '' : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
  return `${base64(message.from)}:${base64(message.seqno)}`;
}

/** The DHT protocol of a swarm: peers of other swarms never enter its routing table. */
export const dhtProtocol = (swarmId: string) => `/swarm-node/${swarmId}/kad/1.0.0`;

/** Parses a multiaddr from the operator, or says which one is wrong and what it should look like. */
export function parseMultiaddr(text: string, what: string, needPeerId = false): Multiaddr {
  let address: Multiaddr;
  try {
    address = multiaddr(text);
  } catch (error) {
    throw new NodeError(
      'BAD_ADDRESS',
      `${what} ${JSON.stringify(text)} is not a multiaddr (${(error as Error).message}); expected e.g. /ip4/203.0.113.7/tcp/4117${needPeerId ? '/p2p/12D3KooW…' : ''}`,
    );
  }
  const id = address.getComponents().find((c) => c.name === 'p2p')?.value;
  if (id !== undefined) {
    try {
      peerIdFromString(id);
    } catch {
      throw new NodeError(
        'BAD_ADDRESS',
        `${what} ${text}: ${JSON.stringify(id)} is not a peer id (they look like 12D3KooW…)`,
      );
    }
  }
  if (needPeerId && id === undefined) {
    throw new NodeError(
      'BAD_ADDRESS',
      `${what} ${text} has no /p2p/<peer id>: a bootstrap address must name the peer, e.g. ${text}/p2p/12D3KooW…`,
    );
  }
  return address;
}

/** A libp2p host for a swarm node or seed: its transports, services, limits and the keeper (the module comment has the whole). */
export async function createHost(options: HostOptions): Promise<Host> {
  const role = options.role ?? 'peer';
  const listen = options.listen ?? ['/ip4/0.0.0.0/tcp/0'];
  for (const address of listen) parseMultiaddr(address, 'listen address');
  for (const address of options.announce ?? []) parseMultiaddr(address, 'announce address');
  const bootstrapList = options.bootstrap ?? [];
  for (const address of bootstrapList) parseMultiaddr(address, 'bootstrap address', true);
  const bootstrapIds = new Set(bootstrapList.map((seed) => expectedPeer(multiaddr(seed))));
  const registry = new Registry();
  const appScore = options.appSpecificScore ?? (() => 0);

  const topicScore = createTopicScoreParams(TOPIC_SCORE);
  const connections = connectionSettings(role);
  const relay = relayLimits(options.relay);
  // A peer with seeds reserves a slot on one (the relay transport does it for a /p2p-circuit listen
  // address), so that peers can reach it through the seed when its own addresses are behind NAT.
  const relayListen = role === 'peer' && bootstrapList.length > 0 ? ['/p2p-circuit'] : [];
  // A peer whose seeds are on the internet is likely behind NAT: it starts as a DHT client (others'
  // queries could not reach it) and kad-dht turns it into a server once it has a public address that
  // AutoNAT v2 confirmed (self:peer:update). Seeds, and local and LAN swarms (private or loopback
  // seeds, or none), serve from the start: their private addresses are the reachable ones.
  const dhtClientUntilPublic = role === 'peer' && bootstrapList.some((a) => !isPrivate(multiaddr(a)));
  let libp2p: Libp2p<Services>;
  try {
    libp2p = await createLibp2p<Services>({
      privateKey: options.privateKey,
      addresses: { listen: [...listen, ...relayListen], announce: options.announce ?? [] },
      transports: [tcp(), ...(role === 'peer' ? [circuitRelayTransport()] : [])],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      ...(options.psk === undefined ? {} : { connectionProtector: preSharedKey({ psk: options.psk }) }),
      peerDiscovery: [
        ...(bootstrapList.length > 0 ? [bootstrap({ list: bootstrapList })] : []),
        ...(options.mdns === false ? [] : [mdns({ serviceTag: `swarm-node-${options.swarmId}.local` })]),
      ],
      connectionManager: {
        ...connections.connectionManager,
        ...(options.maxConnections === undefined ? {} : { maxConnections: options.maxConnections }),
      },
      connectionMonitor: connections.connectionMonitor,
      metrics: prometheusMetrics({ registry, collectDefaultMetrics: false }),
      services: {
        identify: identify(),
        ping: ping(connections.ping),
        // Seeds answer dial-back requests; peers learn from them which of their addresses are reachable.
        autoNAT: autoNATv2(),
        ...(role === 'bootstrap'
          ? {
              relay: circuitRelayServer({
                reservations: {
                  maxReservations: relay.maxReservations,
                  // ms here, and the server closes relayed connections on time; it sends the same number
                  // to the nodes, whose relay transport reads it as seconds (the spec's unit), so their
                  // own view of the limit is 1000 times too long. Harmless: the server is the one enforcing it.
                  defaultDurationLimit: relay.durationMs,
                  defaultDataLimit: BigInt(relay.dataBytes),
                },
              }),
            }
          : { dcutr: dcutr() }),
        ...(options.upnp === true ? { upnp: uPnPNAT() } : {}),
        dht: kadDHT({
          protocol: dhtProtocol(options.swarmId),
          // Private addresses kept: local and LAN swarms are first-class.
          ...(dhtClientUntilPublic ? {} : { clientMode: false }),
          peerInfoMapper: passthroughMapper,
        }),
        pubsub: gossipsub({
          globalSignaturePolicy: 'StrictSign',
          fastMsgIdFn: fastMessageId,
          allowPublishToZeroTopicPeers: true,
          emitSelf: false,
          // Relayed connections are limited ones; without this, nodes behind NAT get no gossip.
          runOnLimitedConnection: true,
          doPX: role === 'bootstrap',
          scoreParams: createPeerScoreParams({
            topics: Object.fromEntries((options.scoredTopics ?? []).map((topic) => [topic, topicScore])),
            // Configured seeds may send peer exchange (acceptPXThreshold is 10) until they misbehave.
            appSpecificScore: (peer: string) =>
              appScore(peer) + (bootstrapIds.has(peer) ? SCORE_THRESHOLDS.acceptPXThreshold : 0),
            appSpecificWeight: 1,
            IPColocationFactorWhitelist: new Set(options.ipColocationWhitelist ?? LOOPBACK),
          }),
          scoreThresholds: SCORE_THRESHOLDS,
          metricsRegister: gossipMetricsRegister(registry),
          metricsTopicStrToLabel: new Map(Object.entries(options.topicLabels ?? {})),
        }),
      },
    });
  } catch (error) {
    throw hostError(error, listen);
  }

  try {
    await libp2p.start();
  } catch (error) {
    await Promise.resolve(libp2p.stop()).catch(() => {});
    throw hostError(error, listen);
  }
  if (role === 'bootstrap') {
    libp2p.services.relay?.addEventListener('relay:reservation', (event) =>
      log('relay reservation for %s until %s', event.detail.addr, event.detail.expiry.toISOString()),
    );
  }
  libp2p.addEventListener('self:peer:update', () => log('addresses now %s', libp2p.getMultiaddrs().join(' ')));
  libp2p.addEventListener('connection:open', ({ detail: connection }) =>
    log(
      'connection %s %s%s',
      connection.direction,
      connection.remoteAddr,
      connection.limits === undefined ? '' : ' (limited: relayed)',
    ),
  );
  const seeds = new SeedWatch(libp2p, bootstrapList, { swarmId: options.swarmId, psk: options.psk !== undefined });
  const keeper = startKeeper(libp2p, seeds, bootstrapList, options.minPeers ?? 4, options.keeperIntervalMs ?? 5000);
  return {
    libp2p,
    privateKey: options.privateKey,
    pubsub: libp2p.services.pubsub as GossipSub & RouterView,
    registry,
    addresses: () => libp2p.getMultiaddrs().map((a) => a.toString()),
    seeds,
    async stop() {
      keeper.stop();
      seeds.stop();
      await libp2p.stop();
    },
  };
}

function hostError(error: unknown, listen: string[]): Error {
  const code = (error as NodeJS.ErrnoException).code;
  const message = (error as Error).message ?? String(error);
  if (code === 'EADDRINUSE' || /EADDRINUSE|address already in use/i.test(message)) {
    return new NodeError(
      'PORT_IN_USE',
      `cannot listen on ${listen.join(', ')}: the port is in use. Stop the other process or choose another port with --listen.`,
      { cause: error },
    );
  }
  if (code === 'EADDRNOTAVAIL' || code === 'EACCES' || /EADDRNOTAVAIL|EACCES|NoValidAddresses/i.test(message)) {
    return new NodeError('BAD_ADDRESS', `cannot listen on ${listen.join(', ')}: ${message}`, { cause: error });
  }
  return error as Error;
}

/** Redial waits per key: 1 s doubling to 5 min after each failure, and no second dial while one is in flight. */
export class Backoff {
  /** Peers that failed, least recently first; the oldest past `max` are forgotten (dialled again sooner, no harm). */
  readonly #state = new Map<string, { next: number; delay: number }>();
  readonly #max: number;

  constructor(max = 4096) {
    this.#max = max;
  }

  get size(): number {
    return this.#state.size;
  }

  ready(key: string, now = Date.now()): boolean {
    return (this.#state.get(key)?.next ?? 0) <= now;
  }

  attempt(key: string, dial: () => Promise<unknown>): void {
    if (!this.ready(key)) return;
    const delay = this.#state.get(key)?.delay ?? 1000;
    this.#set(key, { next: Number.POSITIVE_INFINITY, delay });
    dial().then(
      () => this.#state.delete(key),
      () => this.#set(key, { next: Date.now() + delay, delay: Math.min(delay * 2, 300_000) }),
    );
  }

  #set(key: string, value: { next: number; delay: number }): void {
    this.#state.delete(key);
    this.#state.set(key, value);
    if (this.#state.size > this.#max) this.#state.delete(this.#state.keys().next().value as string);
  }
}

/** Authors of gossip remembered as peers to dial: a DHT client is in nobody's routing table, so gossip is how others learn of it. */
const MAX_AUTHORS = 256;

/**
 * Keeps at least `minPeers` connections: libp2p dials discovered peers only once and bootstrap
 * peers once at start. Each tick below the minimum it redials seeds whose backoff has passed
 * (SeedWatch: 1 s doubling to 5 min, each failure diagnosed), dials a few other peers it knows
 * (from the peer store, or as authors of gossip it received), and walks the DHT towards a random
 * key to learn new ones. A peer that cannot be dialled directly (behind
 * NAT) is dialled through each connected seed's relay, where it may hold a reservation.
 */
function startKeeper(
  libp2p: Libp2p<Services>,
  seeds: SeedWatch,
  seedList: string[],
  minPeers: number,
  intervalMs: number,
) {
  const backoff = new Backoff();
  const seedAddresses = new Map(seedList.map((seed) => [expectedPeer(multiaddr(seed)), seed]));
  const self = libp2p.peerId.toString();
  const authors = new Set<string>();
  libp2p.services.pubsub.addEventListener('message', ({ detail: message }) => {
    if (message.type !== 'signed') return;
    const author = message.from.toString();
    authors.delete(author);
    authors.add(author);
    if (authors.size > MAX_AUTHORS) authors.delete(authors.values().next().value as string);
  });
  const reach = async (id: string) => {
    try {
      return await libp2p.dial(peerIdFromString(id));
    } catch (direct) {
      const connected = new Set(libp2p.getPeers().map((p) => p.toString()));
      for (const [seedId, seed] of seedAddresses) {
        if (!connected.has(seedId)) continue;
        try {
          const connection = await libp2p.dial(multiaddr(`${seed}/p2p-circuit/p2p/${id}`));
          log('reached %s through the relay of seed %s (direct: %s)', id, seedId, (direct as Error).message);
          return connection;
        } catch (error) {
          log('cannot reach %s through the relay of seed %s: %s', id, seedId, (error as Error).message);
        }
      }
      throw direct;
    }
  };
  let walking = false;
  const tick = async () => {
    if (minPeers <= 0 || libp2p.status !== 'started') return;
    const connected = new Set(libp2p.getPeers().map((p) => p.toString()));
    if (connected.size >= minPeers) return;
    seeds.redial(connected);
    const known = new Set([
      ...(await libp2p.peerStore.all()).filter((p) => p.addresses.length > 0).map((p) => p.id.toString()),
      ...authors,
    ]);
    const now = Date.now();
    const candidates = [...known].filter(
      (id) => id !== self && !connected.has(id) && !seedAddresses.has(id) && backoff.ready(id, now),
    );
    // A random few each tick, so peers with stale addresses at the front do not block the rest.
    for (const id of shuffle(candidates).slice(0, minPeers - connected.size)) backoff.attempt(id, () => reach(id));
    if (!walking && connected.size > 0) {
      walking = true;
      walk(libp2p).finally(() => {
        walking = false;
      });
    }
  };
  const timer = setInterval(() => void tick().catch(() => {}), intervalMs);
  timer.unref();
  void tick().catch(() => {});
  return { stop: () => clearInterval(timer) };
}

function shuffle<T>(items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [items[i], items[j]] = [items[j] as T, items[i] as T];
  }
  return items;
}

/** One random walk: ask the DHT for the peers closest to a random key, adding them to the peer store. */
async function walk(libp2p: Libp2p<Services>): Promise<void> {
  const signal = AbortSignal.timeout(10_000);
  try {
    for await (const _event of libp2p.services.dht.getClosestPeers(randomBytes(32), { signal })) {
      // Peers found on the way land in the peer store; the next tick dials them.
    }
  } catch {
    // A walk that times out or finds nobody is not an error: the next tick tries again.
  }
}

export type { PeerId };
