/**
 * The roles talk to the swarm through this and nothing else: publish a message on a topic,
 * receive peers' messages on it. The node package implements it over libp2p gossipsub; the
 * in-memory network implements it in one process for tests and experiments.
 */
import type { RolloutMessage, TaskMessage } from './messages.js';

export interface Topics {
  tasks: TaskMessage;
  rollouts: RolloutMessage;
}
export type Topic = keyof Topics;

/** What a node says of a peer's message: keep and forward, drop and blame the sender, or just drop. */
export type Verdict = 'accept' | 'reject' | 'ignore';

/**
 * Receives a peer's message, as raw as the transport has it (never trusted), and says what to do
 * with it. Transports forward only accepted messages and may penalise senders of rejected ones.
 */
export type Handler = (message: unknown, from: string) => Verdict;

/**
 * True when `signature` is `author`'s signature over `payload`; false when it is not, or when the
 * author's key cannot be known from its id. Synchronous: it runs inside message validation.
 */
export type VerifySignature = (author: string, payload: Uint8Array, signature: Uint8Array) => boolean;

export interface Transport {
  /** This node's identity as peers see it. */
  readonly peerId: string;
  publish<T extends Topic>(topic: T, message: Topics[T]): Promise<void>;
  /** One handler per topic; a second call replaces the first. */
  subscribe(topic: Topic, handler: Handler): void;
  /** This node's signature over `payload` with its identity key (what peers check with `verify`). */
  sign(payload: Uint8Array): Promise<Uint8Array>;
  verify: VerifySignature;
  /** Bytes this node has sent and received so far, over every topic. */
  traffic(): { sent: number; received: number };
  close(): Promise<void>;
}
