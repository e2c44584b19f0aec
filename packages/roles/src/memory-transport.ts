/**
 * Many nodes in one process: a fully connected network whose messages travel serialized (v8's
 * structured clone, so receivers get fresh, untrusted objects and bytes are counted) with optional
 * delay, loss and the reordering that random delays cause. Each member has an Ed25519 key, so task
 * signatures are real. For tests and fast experiments, beside libp2p, not instead.
 */
import { generateKeyPairSync, type KeyObject, sign, verify } from 'node:crypto';
import { deserialize, serialize } from 'node:v8';
import { uniformFloat64 } from 'pure-rand/distribution/uniformFloat64';
import { mersenne } from 'pure-rand/generator/mersenne';
import type { RandomGenerator } from 'pure-rand/types/RandomGenerator';
import type { Handler, Topic, Topics, Transport, Verdict } from './transport.js';

export interface MemoryNetworkOptions {
  /** Delivery delay per message and receiver, uniform in [min, max] milliseconds. Default [0, 0]. */
  delayMs?: readonly [number, number];
  /** Probability that a message is lost on its way to one receiver. Default 0. */
  loss?: number;
  /** Seeds the delay and loss draws. Default 0. */
  seed?: number;
}

interface Member {
  handlers: Map<Topic, Handler>;
  sent: number;
  received: number;
  open: boolean;
}

export class MemoryNetwork {
  readonly #members = new Map<string, Member>();
  readonly #keys = new Map<string, KeyObject>();
  readonly #options: Required<MemoryNetworkOptions>;
  readonly #rng: RandomGenerator;
  readonly #inFlight = new Set<Promise<void>>();
  /** Verdicts receivers gave each sender's messages: what a gossip score would be built from. */
  readonly verdicts = new Map<string, Record<Verdict, number>>();
  /** Errors handlers threw (a handler must return a verdict, never throw: this should stay empty). */
  readonly errors: unknown[] = [];

  constructor(options: MemoryNetworkOptions = {}) {
    this.#options = { delayMs: [0, 0], loss: 0, seed: 0, ...options };
    this.#rng = mersenne(this.#options.seed);
  }

  /** A transport for a new node on this network. */
  join(peerId: string): Transport {
    if (this.#members.has(peerId)) throw new Error(`peer ${peerId} already joined this network`);
    const { publicKey, privateKey } = generateKeyPairSync('ed25519');
    const member: Member = { handlers: new Map(), sent: 0, received: 0, open: true };
    this.#members.set(peerId, member);
    this.#keys.set(peerId, publicKey);
    return {
      peerId,
      publish: async <T extends Topic>(topic: T, message: Topics[T]) => {
        if (member.open) this.#broadcast(peerId, member, topic, serialize(message));
      },
      subscribe: (topic, handler) => {
        member.handlers.set(topic, handler);
      },
      sign: async (payload) => new Uint8Array(sign(null, payload, privateKey)),
      // Keys stay known after a member leaves, as a peer id keeps its key.
      verify: (author, payload, signature) => {
        const key = this.#keys.get(author);
        return key !== undefined && verify(null, payload, key, signature);
      },
      traffic: () => ({ sent: member.sent, received: member.received }),
      close: async () => {
        member.open = false;
        this.#members.delete(peerId);
      },
    };
  }

  /** Resolves when every message sent so far has been delivered or lost. */
  async settle(): Promise<void> {
    while (this.#inFlight.size > 0) await Promise.all([...this.#inFlight]);
  }

  #broadcast(from: string, sender: Member, topic: Topic, data: Buffer): void {
    const bytes = data.byteLength;
    const [minDelay, maxDelay] = this.#options.delayMs;
    for (const [peerId, receiver] of this.#members) {
      if (peerId === from) continue;
      sender.sent += bytes;
      if (this.#options.loss > 0 && uniformFloat64(this.#rng) < this.#options.loss) continue;
      const delay = minDelay + uniformFloat64(this.#rng) * (maxDelay - minDelay);
      const delivery = new Promise<void>((resolve) => setTimeout(resolve, delay))
        .then(() => {
          const handler = receiver.handlers.get(topic);
          if (!receiver.open || handler === undefined) return;
          receiver.received += bytes;
          this.#record(from, handler(deserialize(data), from));
        })
        .catch((error: unknown) => {
          this.errors.push(error);
        });
      this.#inFlight.add(delivery);
      void delivery.finally(() => this.#inFlight.delete(delivery));
    }
  }

  #record(from: string, verdict: Verdict): void {
    const counts = this.verdicts.get(from) ?? { accept: 0, reject: 0, ignore: 0 };
    counts[verdict]++;
    this.verdicts.set(from, counts);
  }
}
