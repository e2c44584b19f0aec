/**
 * The task specs a node has seen published: what a rollout is checked against ("was this task
 * really proposed?"). Every valid spec is accepted, never refused for a quota: refusing an honest
 * proposer's task would make its rollouts unknown here and throw them away. Memory stays bounded
 * instead by age (a spec older than the staleness bound can have no fresh rollouts), by a total
 * capacity, and by a share per proposer — a proposer past its share evicts its own oldest specs,
 * never another's. How fast one author may publish at all is the transport's rate limit.
 */
import { generateTask, type Task, TaskError } from '@swarm-node/tasks';
import {
  type ProposedTask,
  type TaskMessage,
  type TaskProof,
  taskMessageProblem,
  taskSigningBytes,
} from './messages.js';
import type { Verdict, VerifySignature } from './transport.js';

export interface KnownTasksOptions {
  /** Specs remembered in all. Default 65 536 (about 13 MB). */
  capacity?: number;
  /** Specs remembered per proposer. Default a quarter of the capacity. */
  perProposer?: number;
  /** Specs older than this are forgotten. Default 10 minutes (the rollouts' staleness bound). */
  maxAgeMs?: number;
  /**
   * Checks proposers' signatures (Transport.verify). Default: none can be checked, so a signed task
   * message is rejected and a rollout's task proof never vouches for a task.
   */
  verify?: VerifySignature;
}

/** A verdict, with its reason when not accepted, and the task when accepted. */
export interface TaskVerdict {
  verdict: Verdict;
  reason?: string;
  task?: Task;
}

interface Entry {
  spec: ProposedTask;
  added: number;
  proof: TaskProof | undefined;
}

export const taskKey = (spec: ProposedTask) => `${spec.proposer}\n${spec.round}\n${spec.index}`;

export class KnownTasks {
  readonly #capacity: number;
  readonly #perProposer: number;
  readonly maxAgeMs: number;
  readonly #verify: VerifySignature;
  /** Insertion order is age order: the first entry is the oldest. */
  readonly #entries = new Map<string, Entry>();
  /** Each proposer's keys, oldest first. */
  readonly #byProposer = new Map<string, string[]>();
  /** The first round each proposer was heard of in (the oldest proposers forgotten first past the capacity). */
  readonly #firstRound = new Map<string, number>();

  constructor(options: KnownTasksOptions = {}) {
    this.#capacity = options.capacity ?? 65_536;
    this.#perProposer = options.perProposer ?? Math.max(1, Math.floor(this.#capacity / 4));
    this.maxAgeMs = options.maxAgeMs ?? 600_000;
    this.#verify = options.verify ?? (() => false);
  }

  get size(): number {
    return this.#entries.size;
  }

  /**
   * Records a spec that passed validation, with its proposer's proof when it has one, and returns its
   * task (throws a TaskError when it cannot be generated), or null when this spec is already known.
   */
  add(spec: ProposedTask, now: number, proof?: TaskProof): Task | null {
    const key = taskKey(spec);
    if (this.#entries.has(key)) return null;
    const task = generateTask(spec);
    this.#forgetOlderThan(now - this.maxAgeMs);
    const mine = this.#byProposer.get(spec.proposer) ?? [];
    if (mine.length >= this.#perProposer) this.#entries.delete(mine.shift() as string);
    if (this.#entries.size >= this.#capacity) this.#forgetOldest();
    mine.push(key);
    this.#byProposer.set(spec.proposer, mine);
    if (!this.#firstRound.has(spec.proposer)) {
      if (this.#firstRound.size >= this.#capacity)
        this.#firstRound.delete(this.#firstRound.keys().next().value as string);
      this.#firstRound.set(spec.proposer, spec.round);
    }
    this.#entries.set(key, { spec: { ...spec }, added: now, proof });
    return task;
  }

  /**
   * A peer's task message (anything at all) from `from`, and its verdict: accepted with its task when
   * valid and new. Rejected: broken schema, a seed not bound to its proposer, a spec the generator
   * refuses, a proposer other than the sender, a signature that is not the proposer's. Ignored:
   * stale, duplicate, or a family or generator version this node lacks (a peer ahead of us, not a liar).
   */
  offer(message: unknown, from: string, now: number): TaskVerdict {
    const problem = taskMessageProblem(message);
    if (problem !== null) return { verdict: 'reject', reason: problem };
    const { task: spec, time, signature } = message as TaskMessage;
    if (spec.proposer !== from) return { verdict: 'reject', reason: 'proposer-is-not-sender' };
    if (time < now - this.maxAgeMs) return { verdict: 'ignore', reason: 'stale' };
    if (this.#entries.has(taskKey(spec))) return { verdict: 'ignore', reason: 'duplicate' };
    if (signature !== undefined && !this.#verify(spec.proposer, taskSigningBytes(spec, time), signature))
      return { verdict: 'reject', reason: 'bad-signature' };
    try {
      const task = this.add(spec, now, signature === undefined ? undefined : { time, signature });
      return task === null ? { verdict: 'ignore', reason: 'duplicate' } : { verdict: 'accept', task };
    } catch (error) {
      if (!(error instanceof TaskError)) throw error;
      const ahead = error.code === 'UNKNOWN_FAMILY' || error.code === 'GENERATOR_VERSION_MISMATCH';
      return { verdict: ahead ? 'ignore' : 'reject', reason: error.code.toLowerCase().replaceAll('_', '-') };
    }
  }

  /** The proposer's proof of a known spec, for rollouts on it; undefined when it came without one. */
  proofOf(spec: ProposedTask): TaskProof | undefined {
    return this.knows(spec) ? this.#entries.get(taskKey(spec))?.proof : undefined;
  }

  /**
   * Whether a rollout's task (R13 of docs/PROTOCOL.md) is one its proposer really published. Known:
   * accepted. Unknown but carrying the proposer's proof: checked exactly as the task message would
   * have been — accepted and remembered (with `task` set: the caller may queue it to solve), or
   * rejected for a forged proof, or ignored as stale. Unknown without proof: ignored, as
   * `task-before-join` (published before we heard of its proposer — or invented) or `unknown-task`.
   */
  recognise(spec: ProposedTask, proof: TaskProof | undefined, now: number): TaskVerdict {
    if (this.knows(spec)) return { verdict: 'accept' };
    if (proof === undefined) {
      const first = this.#firstRound.get(spec.proposer);
      const beforeJoin = first === undefined || spec.round < first;
      return { verdict: 'ignore', reason: beforeJoin ? 'task-before-join' : 'unknown-task' };
    }
    const offered = this.offer({ task: spec, time: proof.time, signature: proof.signature }, spec.proposer, now);
    // Known under this (proposer, round, index) but with other fields: not the task proposed.
    if (offered.reason === 'duplicate') return { verdict: 'ignore', reason: 'unknown-task' };
    if (offered.verdict === 'accept') return offered;
    return { verdict: offered.verdict, reason: `task-proof-${offered.reason}` };
  }

  /** True when exactly this spec was published by its proposer (or proposed here) and is remembered. */
  knows(spec: ProposedTask): boolean {
    const known = this.#entries.get(taskKey(spec))?.spec;
    return (
      known !== undefined &&
      known.family === spec.family &&
      known.seed === spec.seed &&
      known.difficulty === spec.difficulty &&
      known.generatorVersion === spec.generatorVersion
    );
  }

  #forgetOlderThan(time: number): void {
    for (const entry of this.#entries.values()) {
      if (entry.added >= time) return;
      this.#forgetOldest();
    }
  }

  #forgetOldest(): void {
    const [key, entry] = this.#entries.entries().next().value as [string, Entry];
    this.#entries.delete(key);
    // The globally oldest entry is also the oldest of its proposer.
    const mine = this.#byProposer.get(entry.spec.proposer);
    mine?.shift();
    if (mine?.length === 0) this.#byProposer.delete(entry.spec.proposer);
  }
}
