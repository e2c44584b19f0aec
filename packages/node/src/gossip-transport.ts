/**
 * The roles' transport over gossipsub. Every peer message passes a topic validator before gossipsub
 * delivers or forwards it: rate limit → size cap → decode → protocol version → the roles' handler
 * (schema, seeds, staleness, duplicates, re-verification of every reward). Its verdict goes back to
 * gossipsub — Accept forwards, Reject drops and costs the sender score, Ignore just drops — and an
 * author whose messages keep failing re-verification, or that keeps sending messages which are only
 * ignored (past an allowance for honest races), also loses application score.
 */
import { type Message, TopicValidatorResult } from '@libp2p/gossipsub';
import { peerIdFromString } from '@libp2p/peer-id';
import { type Handler, LIMITS, type Topic, type Topics, type Transport, type Verdict } from '@swarm-node/roles';
import { Counter } from 'prom-client';
import type { Host } from './host.js';
import { decodeMessage, encodeMessage, MAX_MESSAGE_BYTES, TOPICS, topicName } from './wire/index.js';

export interface GossipTransportOptions {
  host: Host;
  swarmId: string;
  /**
   * Messages a second one author may have checked per topic, sustained. Default
   * LIMITS.tasksPerRound (64): a full round of tasks, or of rollouts, every second.
   */
  messagesPerSecond?: number;
  /** Messages one author may send in a burst per topic. Default 4 × LIMITS.tasksPerRound (256): four full rounds at once. */
  burst?: number;
  /** Half-life of a peer's rejected-message count in its application score, ms. Default 10 minutes. */
  penaltyHalfLifeMs?: number;
  /**
   * Ignored messages one author may cause for free, over all topics: honest races (a rollout before
   * its task, from an older peer that sends no task proofs) and stragglers (stale, duplicates).
   * Default 4 × LIMITS.tasksPerRound (256).
   */
  ignoreAllowance?: number;
  /** Free ignores given back per second. Default 1. Each ignore once none is left costs a tenth of a reject. */
  ignoreAllowancePerSecond?: number;
  now?: () => number;
}

/** Rate-limit buckets and penalties kept, per author (and topic); the oldest go first. */
const MAX_TRACKED_PEERS = 4096;

/** Application score lost per rejected message (after decay). */
const PENALTY_PER_REJECT = 10;

/** What an ignore past the author's allowance costs, in rejects. */
const EXCESS_IGNORE = 0.1;

/** Ignores that are this node's doing, not the author's: a bug of ours, a topic we left. */
const OUR_FAULT = new Set(['handler-error', 'not-subscribed']);

const RESULT: Record<Verdict, TopicValidatorResult> = {
  accept: TopicValidatorResult.Accept,
  reject: TopicValidatorResult.Reject,
  ignore: TopicValidatorResult.Ignore,
};

interface Bucket {
  tokens: number;
  at: number;
}

export class GossipTransport implements Transport {
  readonly peerId: string;
  readonly #host: Host;
  readonly #names: Record<Topic, string>;
  readonly #handlers = new Map<Topic, Handler>();
  readonly #options: Required<Omit<GossipTransportOptions, 'host' | 'swarmId'>>;
  readonly #buckets = new Map<string, Bucket>();
  readonly #penalties = new Map<string, { value: number; at: number }>();
  readonly #freeIgnores = new Map<string, Bucket>();
  readonly #verdicts: Counter<'topic' | 'verdict' | 'reason'>;
  readonly #bytes: Counter<'direction' | 'topic'>;
  /** Verdicts on peers' messages by topic and `verdict:reason` (`accept` alone when accepted). */
  readonly counts: Record<Topic, Record<string, number>> = { tasks: {}, rollouts: {} };
  #sent = 0;
  #received = 0;

  constructor(options: GossipTransportOptions) {
    this.#host = options.host;
    this.peerId = options.host.libp2p.peerId.toString();
    this.#options = {
      messagesPerSecond: LIMITS.tasksPerRound,
      burst: 4 * LIMITS.tasksPerRound,
      penaltyHalfLifeMs: 600_000,
      ignoreAllowance: 4 * LIMITS.tasksPerRound,
      ignoreAllowancePerSecond: 1,
      now: Date.now,
      ...options,
    };
    this.#names = { tasks: topicName(options.swarmId, 'tasks'), rollouts: topicName(options.swarmId, 'rollouts') };
    this.#verdicts = new Counter({
      name: 'swarm_node_messages_total',
      help: "Peers' messages by topic, verdict (accept, reject, ignore) and reason",
      labelNames: ['topic', 'verdict', 'reason'],
      registers: [options.host.registry],
    });
    this.#bytes = new Counter({
      name: 'swarm_node_payload_bytes_total',
      help: 'Message payload bytes published and received (first deliveries), by topic',
      labelNames: ['direction', 'topic'],
      registers: [options.host.registry],
    });
    for (const topic of TOPICS) {
      this.#host.pubsub.topicValidators.set(this.#names[topic], (_from, message) => this.#validate(topic, message));
    }
  }

  /** The gossipsub topic names of this swarm. */
  get topicNames(): Readonly<Record<Topic, string>> {
    return this.#names;
  }

  async publish<T extends Topic>(topic: T, message: Topics[T]): Promise<void> {
    const bytes = encodeMessage(topic, message);
    if (bytes.byteLength > MAX_MESSAGE_BYTES[topic]) {
      throw new RangeError(
        `a ${topic} message of ${bytes.byteLength} bytes exceeds the ${MAX_MESSAGE_BYTES[topic]}-byte limit peers enforce`,
      );
    }
    this.#sent += bytes.byteLength;
    this.#bytes.inc({ direction: 'sent', topic }, bytes.byteLength);
    await this.#host.pubsub.publish(this.#names[topic], bytes);
  }

  async sign(payload: Uint8Array): Promise<Uint8Array> {
    return await this.#host.privateKey.sign(payload);
  }

  /**
   * Checks `author`'s signature with the public key its peer id embeds (Ed25519 and secp256k1 ids
   * do; an RSA id does not, so its signatures count as unverifiable: false).
   */
  verify(author: string, payload: Uint8Array, signature: Uint8Array): boolean {
    let key: ReturnType<typeof peerIdFromString>['publicKey'];
    try {
      key = peerIdFromString(author).publicKey;
    } catch {
      return false; // not a peer id at all
    }
    // Node's Ed25519 verification is synchronous; a key type that answers with a promise cannot be used here.
    const valid = key?.verify(payload, signature);
    return valid === true;
  }

  subscribe(topic: Topic, handler: Handler): void {
    this.#handlers.set(topic, handler);
    this.#host.pubsub.subscribe(this.#names[topic]);
  }

  /** Peers known to subscribe to `topic`: they will hear what this node publishes there. */
  subscribers(topic: Topic): number {
    return this.#host.pubsub.getSubscribers(this.#names[topic]).length;
  }

  traffic(): { sent: number; received: number } {
    return { sent: this.#sent, received: this.#received };
  }

  /**
   * What this node holds against a peer, ≤ 0: minus 10 per rejected message and minus 1 per ignored
   * one past its allowance, halving every half-life (10 min).
   */
  applicationScore(peerId: string): number {
    const penalty = this.#penalties.get(peerId);
    if (penalty === undefined) return 0;
    return -PENALTY_PER_REJECT * this.#decayed(penalty);
  }

  async close(): Promise<void> {
    for (const topic of TOPICS) {
      this.#host.pubsub.topicValidators.delete(this.#names[topic]);
      if (this.#handlers.has(topic)) this.#host.pubsub.unsubscribe(this.#names[topic]);
    }
    this.#handlers.clear();
  }

  #validate(topic: Topic, message: Message): TopicValidatorResult {
    // StrictSign: gossipsub has already checked the signature, so `from` is the author.
    if (message.type !== 'signed') return this.#count(topic, null, 'reject', 'unsigned');
    const author = message.from.toString();
    this.#received += message.data.byteLength;
    this.#bytes.inc({ direction: 'received', topic }, message.data.byteLength);
    const { messagesPerSecond, burst } = this.#options;
    if (!this.#take(this.#buckets, `${topic}\n${author}`, messagesPerSecond, burst))
      return this.#count(topic, author, 'ignore', 'rate-limited');
    const decoded = decodeMessage(topic, message.data);
    if (!decoded.ok) return this.#count(topic, author, decoded.verdict, decoded.reason);
    const handler = this.#handlers.get(topic);
    if (handler === undefined) return this.#count(topic, author, 'ignore', 'not-subscribed');
    let verdict: Verdict;
    try {
      verdict = handler(decoded.message, author);
    } catch (error) {
      // A bug of ours must not cost an honest peer score, nor stop the node.
      console.error(`swarm-node: ${topic} handler failed: ${(error as Error).stack ?? error}`);
      return this.#count(topic, author, 'ignore', 'handler-error');
    }
    // The roles count their own reasons (evaluator counts, task verdicts); here the verdict is enough.
    return this.#count(topic, author, verdict, verdict === 'accept' ? '' : 'roles');
  }

  #count(topic: Topic, author: string | null, verdict: Verdict, reason: string): TopicValidatorResult {
    const key = verdict === 'accept' ? 'accept' : `${verdict}:${reason}`;
    this.counts[topic][key] = (this.counts[topic][key] ?? 0) + 1;
    this.#verdicts.inc({ topic, verdict, reason });
    if (author === null) return RESULT[verdict];
    // A reject costs its author; so does a sustained stream of ignores (a flood of rollouts on tasks
    // nobody proposed, or past the rate limit), beyond what honest races and stragglers cause.
    if (verdict === 'reject') this.#penalise(author, 1);
    if (verdict === 'ignore' && !OUR_FAULT.has(reason)) {
      const { ignoreAllowancePerSecond, ignoreAllowance } = this.#options;
      if (!this.#take(this.#freeIgnores, author, ignoreAllowancePerSecond, ignoreAllowance))
        this.#penalise(author, EXCESS_IGNORE);
    }
    return RESULT[verdict];
  }

  /** Adds `amount` rejects to an author's decaying count (bounded memory: the least recently penalised go first). */
  #penalise(author: string, amount: number): void {
    const current = this.#penalties.get(author);
    if (current === undefined && this.#penalties.size >= MAX_TRACKED_PEERS) {
      this.#penalties.delete(this.#penalties.keys().next().value as string);
    }
    this.#penalties.delete(author);
    this.#penalties.set(author, {
      value: (current === undefined ? 0 : this.#decayed(current)) + amount,
      at: this.#options.now(),
    });
  }

  #decayed(penalty: { value: number; at: number }): number {
    return penalty.value * 0.5 ** ((this.#options.now() - penalty.at) / this.#options.penaltyHalfLifeMs);
  }

  /** Takes a token from the bucket under `key` (full at first), refilled at `perSecond` up to `capacity`. */
  #take(buckets: Map<string, Bucket>, key: string, perSecond: number, capacity: number): boolean {
    const now = this.#options.now();
    // Authors are signed peer ids, but ids are free to make: forget the least recently seen first.
    if (!buckets.has(key) && buckets.size >= MAX_TRACKED_PEERS) buckets.delete(buckets.keys().next().value as string);
    const bucket = buckets.get(key) ?? { tokens: capacity, at: now };
    buckets.delete(key);
    bucket.tokens = Math.min(capacity, bucket.tokens + ((now - bucket.at) / 1000) * perSecond);
    bucket.at = now;
    buckets.set(key, bucket);
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    return true;
  }
}
