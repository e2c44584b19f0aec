/**
 * The solver: keeps a pool of tasks (its own proposer's and peers'), draws some each round and
 * samples G completions of each with this node's policy.
 */
import type { Learner, SampleOptions, TextCompletion } from '@swarm-node/sapo';
import type { Task } from '@swarm-node/tasks';
import { uniformInt } from 'pure-rand/distribution/uniformInt';
import type { RandomGenerator } from 'pure-rand/types/RandomGenerator';
import { KnownTasks, type KnownTasksOptions } from './known-tasks.js';
import type { ProposedTask, TaskMessage } from './messages.js';
import type { Verdict } from './transport.js';

export interface SolvedGroup {
  spec: ProposedTask;
  task: Task;
  completions: string[];
  /** The sampled ids of each completion (ending with EOS when it finished). */
  tokens: number[][];
  /** Per completion: true when it ended with EOS, false when it ran out of tokens or context. */
  finished: boolean[];
  /** log π(token) of each sampled id under the policy that sampled it (before temperature). */
  logProbs: number[][];
  /** The learner step of the policy that sampled the group; travels with the rollout. */
  policyVersion: number;
}

export interface SolveOptions {
  /** G: completions per task. */
  groupSize: number;
  sampling: SampleOptions;
}

export interface TaskPoolOptions extends KnownTasksOptions {
  /** Tasks waiting to be solved; the newest are kept. Default 256. */
  pending?: number;
  /** Waiting tasks of one proposer; past it, its oldest make room. Default a quarter of `pending`. */
  pendingPerProposer?: number;
}

/**
 * Tasks waiting to be solved — this node's own and its peers' — each solved once. Every valid task
 * is known (its rollouts can be checked: see KnownTasks); only the newest `pending` wait to be
 * solved, at most a quarter from one proposer, so a busy swarm's many tasks crowd out the oldest
 * rather than being refused.
 */
export class TaskPool {
  readonly known: KnownTasks;
  readonly #pending: number;
  readonly #pendingPerProposer: number;
  readonly #entries: { spec: ProposedTask; task: Task; added: number }[] = [];

  constructor(options: TaskPoolOptions = {}) {
    this.known = new KnownTasks(options);
    this.#pending = options.pending ?? 256;
    this.#pendingPerProposer = options.pendingPerProposer ?? Math.max(1, Math.floor(this.#pending / 4));
  }

  /** Tasks waiting to be solved. */
  get size(): number {
    return this.#entries.length;
  }

  /** This node's own task: always known, and queued to solve. False when it was known already. */
  add(spec: ProposedTask, now: number): boolean {
    const task = this.known.add(spec, now);
    if (task !== null) this.#enqueue(spec, task, now);
    return task !== null;
  }

  /** A peer's task message: checked (KnownTasks.offer), and queued when accepted. */
  offer(message: unknown, from: string, now: number): { verdict: Verdict; reason?: string } {
    const { verdict, reason, task } = this.known.offer(message, from, now);
    if (task !== undefined) this.#enqueue((message as TaskMessage).task, task, now);
    return reason === undefined ? { verdict } : { verdict, reason };
  }

  /** True when exactly this spec was published by its proposer, or proposed here. */
  knows(spec: ProposedTask): boolean {
    return this.known.knows(spec);
  }

  /** KnownTasks.beforeFirstHeard. */
  beforeFirstHeard(spec: ProposedTask): boolean {
    return this.known.beforeFirstHeard(spec);
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

  #enqueue(spec: ProposedTask, task: Task, now: number): void {
    this.#dropExpired(now);
    const mine = this.#entries.filter((e) => e.spec.proposer === spec.proposer);
    const oldestOfMine = mine[0];
    if (mine.length >= this.#pendingPerProposer && oldestOfMine !== undefined)
      this.#entries.splice(this.#entries.indexOf(oldestOfMine), 1);
    this.#entries.push({ spec, task, added: now });
    if (this.#entries.length > this.#pending) this.#entries.shift();
  }

  #dropExpired(now: number): void {
    const oldest = now - this.known.maxAgeMs;
    for (let i = this.#entries.length - 1; i >= 0; i--) {
      if ((this.#entries[i]?.added ?? now) < oldest) this.#entries.splice(i, 1);
    }
  }
}

/**
 * G completions of each task, sampled in one batch by the learner. A task whose prompt leaves no room
 * in the model's context is left out (the result is shorter than `tasks`).
 */
export async function solve(
  learner: Learner,
  tasks: readonly { spec: ProposedTask; task: Task }[],
  { groupSize, sampling }: SolveOptions,
): Promise<SolvedGroup[]> {
  if (tasks.length === 0) return [];
  // The version of the policy that samples: read before the call, as the step comes after it.
  const policyVersion = learner.steps;
  const prompts = tasks.flatMap(({ task }) => new Array<string>(groupSize).fill(task.prompt));
  const completions = await learner.sample(prompts, sampling);
  return tasks.flatMap(({ spec, task }, t) => {
    const group = completions.slice(t * groupSize, (t + 1) * groupSize);
    if (group.some((c) => c === null)) return [];
    const sampled = group as TextCompletion[];
    return [
      {
        spec,
        task,
        completions: sampled.map((c) => c.text),
        tokens: sampled.map((c) => c.tokens),
        finished: sampled.map((c) => c.finished),
        logProbs: sampled.map((c) => c.logProbs),
        policyVersion,
      },
    ];
  });
}
