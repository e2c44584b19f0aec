/**
 * The solver: keeps a pool of tasks (its own proposer's and peers'), draws some each round and
 * samples G completions of each with this node's policy.
 */
import { generateText, type Policy, type SampleOptions, type Tokenizer } from '@swarm-node/sapo';
import { generateTask, type Task, TaskError } from '@swarm-node/tasks';
import { uniformInt } from 'pure-rand/distribution/uniformInt';
import type { RandomGenerator } from 'pure-rand/types/RandomGenerator';
import { type ProposedTask, type TaskMessage, taskMessageProblem } from './messages.js';
import type { Verdict } from './transport.js';

export interface SolvedGroup {
  spec: ProposedTask;
  task: Task;
  completions: string[];
  /** The sampled ids of each completion (ending with EOS when it finished). */
  tokens: number[][];
  /** log π(token) of each sampled id under the policy that sampled it (before temperature). */
  logProbs: number[][];
  /** The learner step of the policy that sampled the group; travels with the rollout. */
  policyVersion: number;
}

export interface SolveOptions {
  /** G: completions per task. */
  groupSize: number;
  sampling: SampleOptions;
  /** The learner step of `policy`. */
  policyVersion: number;
}

export interface TaskPoolOptions {
  capacity?: number;
  perProposer?: number;
  maxAgeMs?: number;
}

const keyOf = (spec: ProposedTask) => `${spec.proposer}\n${spec.round}\n${spec.index}`;

/**
 * Tasks waiting to be solved, newest kept when full; each is solved once. It also remembers the
 * specs it has seen (more than it holds), so that a rollout can be checked against the task its
 * proposer really published, and it caps how much of the pool one proposer may fill.
 */
export class TaskPool {
  readonly #capacity: number;
  readonly #perProposer: number;
  readonly #maxAgeMs: number;
  readonly #entries: { spec: ProposedTask; task: Task; added: number }[] = [];
  readonly #known = new Map<string, ProposedTask>();

  /**
   * `capacity` tasks (default 256), at most `perProposer` from one proposer (default a quarter of
   * the capacity); tasks older than `maxAgeMs` (default 10 minutes) leave the pool and free their
   * proposer's quota.
   */
  constructor(options: TaskPoolOptions = {}) {
    this.#capacity = options.capacity ?? 256;
    this.#perProposer = options.perProposer ?? Math.max(1, Math.floor(this.#capacity / 4));
    this.#maxAgeMs = options.maxAgeMs ?? 600_000;
  }

  get size(): number {
    return this.#entries.length;
  }

  /** Adds a task whose spec passed validation (throws a TaskError when it cannot be generated). */
  add(spec: ProposedTask, now: number): 'added' | 'duplicate' | 'proposer-quota' {
    const key = keyOf(spec);
    if (this.#known.has(key)) return 'duplicate';
    this.#dropExpired(now);
    if (this.#entries.filter((e) => e.spec.proposer === spec.proposer).length >= this.#perProposer)
      return 'proposer-quota';
    const task = generateTask(spec);
    this.#known.set(key, spec);
    if (this.#known.size > 16 * this.#capacity) this.#known.delete(this.#known.keys().next().value as string);
    this.#entries.push({ spec, task, added: now });
    if (this.#entries.length > this.#capacity) this.#entries.shift();
    return 'added';
  }

  /**
   * A peer's task message (anything at all) from `from`: added to the pool when valid, with the
   * verdict and, when not accepted, the reason. Rejected: broken schema, a seed not bound to its
   * proposer, a spec the generator refuses, a proposer other than the sender. Ignored: stale,
   * duplicate, over the proposer's quota, or a family or generator version this node lacks.
   */
  offer(message: unknown, from: string, now: number): [Verdict, string?] {
    const problem = taskMessageProblem(message);
    if (problem !== null) return ['reject', problem];
    const { task, time } = message as TaskMessage;
    if (task.proposer !== from) return ['reject', 'proposer-is-not-sender'];
    if (time < now - this.#maxAgeMs) return ['ignore', 'stale'];
    try {
      const added = this.add(task, now);
      return added === 'added' ? ['accept'] : ['ignore', added];
    } catch (error) {
      if (!(error instanceof TaskError)) throw error;
      const ahead = error.code === 'UNKNOWN_FAMILY' || error.code === 'GENERATOR_VERSION_MISMATCH';
      return [ahead ? 'ignore' : 'reject', error.code.toLowerCase().replaceAll('_', '-')];
    }
  }

  /** True when exactly this spec was added (published by its proposer, or proposed here). */
  knows(spec: ProposedTask): boolean {
    const known = this.#known.get(keyOf(spec));
    return (
      known !== undefined &&
      known.family === spec.family &&
      known.seed === spec.seed &&
      known.difficulty === spec.difficulty &&
      known.generatorVersion === spec.generatorVersion
    );
  }

  /** Up to `count` tasks drawn uniformly, removed from the pool; expired tasks are dropped first. */
  take(count: number, rng: RandomGenerator, now: number): { spec: ProposedTask; task: Task }[] {
    this.#dropExpired(now);
    const taken: { spec: ProposedTask; task: Task }[] = [];
    while (taken.length < count && this.#entries.length > 0) {
      const [entry] = this.#entries.splice(uniformInt(rng, 0, this.#entries.length - 1), 1);
      if (entry !== undefined) taken.push({ spec: entry.spec, task: entry.task });
    }
    return taken;
  }

  #dropExpired(now: number): void {
    for (let i = this.#entries.length - 1; i >= 0; i--) {
      if ((this.#entries[i]?.added ?? now) < now - this.#maxAgeMs) this.#entries.splice(i, 1);
    }
  }
}

/** G completions of each task, sampled in one batch. */
export function solve(
  policy: Policy,
  tokenizer: Tokenizer,
  tasks: readonly { spec: ProposedTask; task: Task }[],
  { groupSize, sampling, policyVersion }: SolveOptions,
): SolvedGroup[] {
  if (tasks.length === 0) return [];
  const prompts = tasks.flatMap(({ task }) => new Array<string>(groupSize).fill(task.prompt));
  const completions = generateText(policy, tokenizer, prompts, sampling);
  return tasks.map(({ spec, task }, t) => {
    const group = completions.slice(t * groupSize, (t + 1) * groupSize);
    return {
      spec,
      task,
      completions: group.map((c) => c.text),
      tokens: group.map((c) => c.tokens),
      logProbs: group.map((c) => c.logProbs),
      policyVersion,
    };
  });
}
