/**
 * Why a bootstrap peer (a seed) cannot be reached, said plainly. The keeper (host.ts) redials seeds
 * through a SeedWatch: each failed dial gets a diagnosis — nothing listens there, no answer, a
 * handshake that does not complete (another pre-shared key?), another peer there, another swarm — that is
 * logged, kept for /status, and reported to the operator once per seed, then again only when it
 * changes or every few minutes.
 */
import { connect } from 'node:net';
import type { Libp2p, PeerId } from '@libp2p/interface';
import { logger } from '@libp2p/logger';
import { peerIdFromString } from '@libp2p/peer-id';
import { tryGetNetConfig } from '@libp2p/utils';
import { type Multiaddr, multiaddr } from '@multiformats/multiaddr';

export type SeedProblem =
  | 'refused'
  | 'unresolvable'
  | 'timed-out'
  | 'handshake-failed'
  | 'wrong-peer-id'
  | 'different-swarm'
  | 'failed';

export interface Diagnosis {
  problem: SeedProblem;
  /** What it means and what to do, for the operator. */
  message: string;
}

export interface DiagnoseOptions {
  /** This node's swarm: a seed that speaks another swarm's DHT protocol and not this one's is of another swarm. */
  swarmId: string;
  /** Whether this node runs with a pre-shared key (it changes what a stalled handshake most likely means). */
  psk: boolean;
  /** How long a dial, and then the check that the seed identifies itself, may take. Default 10 s. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** Per seed, what /status shows. */
export interface SeedState {
  address: string;
  connected: boolean;
  /** The last failed dial's diagnosis (none while connected or before any dial failed). */
  diagnosis: Diagnosis | null;
  /** When the keeper dials it again (ISO), while it has a diagnosis and no connection. */
  nextTry: string | null;
}

/** What the operator is told: a diagnosis, or `diagnosis: null` when a seed answers after failing. */
export interface SeedReport {
  address: string;
  diagnosis: Diagnosis | null;
  nextTry: Date | null;
}

export const DIAL_TIMEOUT_MS = 10_000;
/** An unchanged diagnosis is told again this often, so a long-running node's log still shows it. */
export const REPEAT_REPORT_MS = 5 * 60_000;
const FIRST_DELAY_MS = 1000;
const MAX_DELAY_MS = 5 * 60_000;

const log = logger('swarm-node:seeds');

/**
 * Dials `address` (which names its peer with /p2p/) and returns null when it is a seed of this
 * swarm, or what is wrong. A seed of another swarm is hung up on: it is of no use to this node.
 */
export async function diagnoseDial(
  libp2p: Libp2p,
  address: Multiaddr,
  options: DiagnoseOptions,
): Promise<Diagnosis | null> {
  const timeoutMs = options.timeoutMs ?? DIAL_TIMEOUT_MS;
  const signals = [AbortSignal.timeout(timeoutMs), ...(options.signal === undefined ? [] : [options.signal])];
  const expected = peerIdFromString(expectedPeer(address));
  // Listening before the dial: identify may finish before the dial's promise resolves.
  const identified = identifiedProtocols(libp2p, expected, AbortSignal.any(signals));
  try {
    await libp2p.dial(address, { signal: AbortSignal.any(signals) });
  } catch (error) {
    identified.cancel();
    log('dial %s failed: %s', address, (error as Error).message);
    return classify(error, address, expected, { ...options, timeoutMs });
  }
  // Already identified when the connection existed before this dial.
  const known = (await libp2p.peerStore.get(expected).catch(() => undefined))?.protocols ?? [];
  const protocols = known.length > 0 ? known : await identified.protocols;
  if (known.length > 0) identified.cancel();
  if (protocols === null) {
    return {
      problem: 'timed-out',
      message: `connected, but the seed did not say which protocols it speaks (libp2p identify) within ${timeoutMs / 1000} s: it may be overloaded; this node keeps trying`,
    };
  }
  // The swarms whose DHT it serves (host.ts dhtProtocol). A peer of this swarm in DHT client mode
  // serves none: only another swarm's, and not this one's, is proof.
  const swarms = protocols.flatMap((p) => /^\/swarm-node\/(.+)\/kad\/1\.0\.0$/.exec(p)?.[1] ?? []);
  const other = swarms[0];
  if (other === undefined || swarms.includes(options.swarmId)) return null;
  await libp2p.hangUp(expected).catch(() => {});
  return {
    problem: 'different-swarm',
    message: `the seed runs swarm "${other}", not "${options.swarmId}": start this node with --swarm ${other}, or use a seed of swarm "${options.swarmId}"`,
  };
}

/** The peer id an address names (its last /p2p/…): a seed address, already checked to have one. */
export function expectedPeer(address: Multiaddr): string {
  const id = address.getComponents().findLast((c) => c.name === 'p2p')?.value;
  if (id === undefined) throw new TypeError(`${address} names no peer (/p2p/…)`);
  return id;
}

/** The protocols `peer` lists when it next identifies itself, or null if `signal` aborts first. */
function identifiedProtocols(libp2p: Libp2p, peer: PeerId, signal: AbortSignal) {
  let cancel = () => {};
  const protocols = new Promise<string[] | null>((resolve) => {
    const onIdentify = (event: CustomEvent<{ peerId: PeerId; protocols: string[] }>) => {
      if (event.detail.peerId.equals(peer)) finish(event.detail.protocols);
    };
    const finish = (result: string[] | null) => {
      libp2p.removeEventListener('peer:identify', onIdentify);
      signal.removeEventListener('abort', onAbort);
      resolve(result);
    };
    const onAbort = () => finish(null);
    cancel = onAbort;
    libp2p.addEventListener('peer:identify', onIdentify);
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
  });
  return { protocols, cancel: () => cancel() };
}

/** Every error in a chain of causes and aggregates. */
function errorsIn(error: unknown): { name?: string; code?: string; message?: string }[] {
  if (typeof error !== 'object' || error === null) return [];
  const { cause, errors } = error as { cause?: unknown; errors?: unknown };
  return [error, ...errorsIn(cause), ...(Array.isArray(errors) ? errors.flatMap(errorsIn) : [])];
}

async function classify(
  error: unknown,
  address: Multiaddr,
  expected: PeerId,
  options: DiagnoseOptions & { timeoutMs: number },
): Promise<Diagnosis> {
  const chain = errorsIn(error);
  // libp2p rewraps some errors by message alone (EncryptionFailedError), so codes are looked for there too.
  const hasCode = (...codes: string[]) =>
    chain.some((e) => codes.some((code) => e.code === code || (e.message ?? '').includes(code)));
  const net = tryGetNetConfig(address);
  const where = net === null ? address.toString() : `${net.host}:${net.port ?? '?'}`;
  const seedPrinted = 'what the seed printed at start (`listening …`, with /p2p/…)';
  if (hasCode('ECONNREFUSED')) {
    return {
      problem: 'refused',
      message: `nothing listens at ${where} (connection refused): check the address and port against ${seedPrinted}, and that the seed is running`,
    };
  }
  if (hasCode('ENOTFOUND', 'EAI_AGAIN')) {
    return {
      problem: 'unresolvable',
      message: `the name ${net?.host ?? where} does not resolve: check its spelling, or give the seed's IP address`,
    };
  }
  const mismatch = chain
    .map((e) => /identity key (\S+) does not match expected remote identity key/.exec(e.message ?? '')?.[1])
    .find((id) => id !== undefined);
  if (mismatch !== undefined || chain.some((e) => e.name === 'UnexpectedPeerError')) {
    return {
      problem: 'wrong-peer-id',
      message: `the node at ${where} is ${mismatch ?? 'another peer'}, not ${expected}: copy the address again from ${seedPrinted} (a seed started on a new data directory has a new peer id)`,
    };
  }
  // A key that differs garbles the bytes once the TCP connection is open: either side may stall or
  // give up first, as it happens, so both are one diagnosis (a flapping one would be told each retry).
  if (
    net?.protocol === 'tcp' &&
    net.port !== undefined &&
    (await tcpAnswers(net.host, net.port, options.timeoutMs / 2))
  ) {
    return {
      problem: 'handshake-failed',
      message: `${where} accepts connections but the libp2p handshake does not complete: the seed may use a different pre-shared key (--psk must name the same key file on both${options.psk ? '' : '; this node has none'}), or something other than a swarm-node listens there`,
    };
  }
  if (
    chain.some(
      (e) => e.name === 'TimeoutError' || e.name === 'AbortError' || /timed? ?out|aborted/i.test(e.message ?? ''),
    )
  ) {
    return {
      problem: 'timed-out',
      message: `no answer from ${where}: the host may be down, the address or port wrong, or a firewall drops the traffic (the seed must accept TCP on port ${net?.port ?? 'its port'})`,
    };
  }
  return { problem: 'failed', message: `the dial failed: ${chain[0]?.message ?? String(error)}` };
}

/** Whether a plain TCP connection to host:port opens within `timeoutMs`. */
function tcpAnswers(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port, timeout: timeoutMs });
    const done = (answered: boolean) => {
      socket.destroy();
      resolve(answered);
    };
    socket.once('connect', () => done(true));
    socket.once('timeout', () => done(false));
    socket.once('error', () => done(false));
  });
}

interface Seed {
  address: Multiaddr;
  peer: string;
  next: number;
  delay: number;
  dialling: boolean;
  diagnosis: Diagnosis | null;
  reported: { message: string | null; at: number };
}

/**
 * The seeds a node was given, redialled with backoff (1 s doubling to 5 min) while the keeper is
 * below its minimum, each failed dial diagnosed.
 */
export class SeedWatch {
  readonly #libp2p: Libp2p;
  readonly #options: Omit<DiagnoseOptions, 'signal'>;
  readonly #seeds: Seed[];
  readonly #listeners = new Set<(report: SeedReport) => void>();
  readonly #stopped = new AbortController();

  constructor(libp2p: Libp2p, seeds: string[], options: Omit<DiagnoseOptions, 'signal'>) {
    this.#libp2p = libp2p;
    this.#options = options;
    this.#seeds = seeds.map((text) => {
      const address = multiaddr(text);
      return {
        address,
        peer: expectedPeer(address),
        next: 0,
        delay: FIRST_DELAY_MS,
        dialling: false,
        diagnosis: null,
        reported: { message: null, at: 0 },
      };
    });
  }

  /** Dials every seed not in `connected` whose backoff has passed and that is not being dialled. */
  redial(connected: ReadonlySet<string>): void {
    const now = Date.now();
    for (const seed of this.#seeds) {
      if (connected.has(seed.peer) || seed.dialling || seed.next > now) continue;
      seed.dialling = true;
      void diagnoseDial(this.#libp2p, seed.address, { ...this.#options, signal: this.#stopped.signal })
        .then((diagnosis) => this.#settle(seed, diagnosis))
        .finally(() => {
          seed.dialling = false;
        });
    }
  }

  #settle(seed: Seed, diagnosis: Diagnosis | null): void {
    if (this.#stopped.signal.aborted) return;
    if (diagnosis === null) {
      seed.next = 0;
      seed.delay = FIRST_DELAY_MS;
      seed.diagnosis = null;
      if (seed.reported.message !== null) this.#report(seed, null);
      return;
    }
    seed.next = Date.now() + seed.delay;
    seed.delay = Math.min(seed.delay * 2, MAX_DELAY_MS);
    seed.diagnosis = diagnosis;
    log('seed %s: %s: %s; next try at %s', seed.address, diagnosis.problem, diagnosis.message, iso(seed.next));
    const changed = diagnosis.message !== seed.reported.message;
    if (changed || Date.now() - seed.reported.at >= REPEAT_REPORT_MS) this.#report(seed, diagnosis);
  }

  #report(seed: Seed, diagnosis: Diagnosis | null): void {
    seed.reported = { message: diagnosis?.message ?? null, at: Date.now() };
    const report = {
      address: seed.address.toString(),
      diagnosis,
      nextTry: diagnosis === null ? null : new Date(seed.next),
    };
    for (const listener of this.#listeners) listener(report);
  }

  /** Calls `listener` with each seed's standing diagnosis, then with every later report; returns the function that stops it. */
  onReport(listener: (report: SeedReport) => void): () => void {
    for (const seed of this.#seeds) {
      if (seed.diagnosis !== null) {
        listener({ address: seed.address.toString(), diagnosis: seed.diagnosis, nextTry: new Date(seed.next) });
      }
    }
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** True when every seed failed its last dial and no other peer is connected: the node is on its own. */
  alone(): boolean {
    const states = this.states();
    const failed = new Set(this.#seeds.filter((_, i) => states[i]?.diagnosis !== null).map((seed) => seed.peer));
    return (
      this.#seeds.length > 0 &&
      failed.size === this.#seeds.length &&
      this.#libp2p.getPeers().every((p) => failed.has(p.toString()))
    );
  }

  states(): SeedState[] {
    return this.#seeds.map((seed) => {
      const connected = this.#libp2p.getConnections(peerIdFromString(seed.peer)).length > 0;
      // A seed of another swarm connects back (its keeper dials the peers it knows) and is still of no use.
      const diagnosis = connected && seed.diagnosis?.problem !== 'different-swarm' ? null : seed.diagnosis;
      return {
        address: seed.address.toString(),
        connected,
        diagnosis,
        // Connected seeds are not redialled.
        nextTry: diagnosis === null || connected ? null : iso(seed.next),
      };
    });
  }

  /** Cancels the dials in flight; nothing is reported after. */
  stop(): void {
    this.#stopped.abort();
    this.#listeners.clear();
  }
}

const iso = (ms: number) => new Date(ms).toISOString();
