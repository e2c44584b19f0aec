/**
 * The solver: keeps a pool of tasks (its own proposer's and peers'), draws some each round and
 * samples G completions of each with this node's policy.
 */
import type { Learner, SampleOptions, TextCompletion } from '@swarm-node/sapo';
import type { Task } from '@swarm-node/tasks';
import { uniformInt } from 'pure-rand/distribution/uniformInt';
import type { RandomGenerator } from 'pure-rand/types/RandomGenerator';
import { KnownTasks, type KnownTasksOptions, type TaskVerdict } from './known-tasks.js';
import type { ProposedTask, TaskMessage, TaskProof } from './messages.js';

/** A task to solve: its spec, the proposer's proof when it came with one, and the generated task. */
export interface PoolTask {
  spec: ProposedTask;
  proof: TaskProof | undefined;
  task: Task;
}

export interface SolvedGroup extends PoolTask {
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
  readonly #entries: (PoolTask & { added: number })[] = [];

  constructor(options: TaskPoolOptions = {}) {
    this.known = new KnownTasks(options);
    this.#pending = options.pending ?? 256;
    this.#pendingPerProposer = options.pendingPerProposer ?? Math.max(1, Math.floor(this.#pending / 4));
  }

  /** Tasks waiting to be solved. */
  get size(): number {
    return this.#entries.length;
  }

  /** This node's own task, with its signature: always known, and queued to solve. False when it was known already. */
  add(spec: ProposedTask, now: number, proof?: TaskProof): boolean {
    const task = this.known.add(spec, now, proof);
    if (task !== null) this.#enqueue({ spec, proof, task }, now);
    return task !== null;
  }

  /** A peer's task message: checked (KnownTasks.offer), and queued when accepted. */
  offer(message: unknown, from: string, now: number): Omit<TaskVerdict, 'task'> {
    return this.#queueAccepted(message as TaskMessage, this.known.offer(message, from, now), now);
  }

  /** A rollout's task: KnownTasks.recognise, and a task learned from its proof is queued to solve too. */
  recognise(spec: ProposedTask, proof: TaskProof | undefined, now: number): Omit<TaskVerdict, 'task'> {
    return this.#queueAccepted({ task: spec }, this.known.recognise(spec, proof, now), now);
  }

  /** True when exactly this spec was published by its proposer, or proposed here. */
  knows(spec: ProposedTask): boolean {
    return this.known.knows(spec);
  }

  /** Up to `count` tasks drawn uniformly, removed from the pool; expired tasks are dropped first. */
  take(count: number, rng: RandomGenerator, now: number): PoolTask[] {
    this.#dropExpired(now);
    const taken: PoolTask[] = [];
    while (taken.length < count && this.#entries.length > 0) {
      const [entry] = this.#entries.splice(uniformInt(rng, 0, this.#entries.length - 1), 1);
      if (entry !== undefined) taken.push({ spec: entry.spec, proof: entry.proof, task: entry.task });
    }
    return taken;
  }

  /** Queues the task of an accepted verdict (its spec is `message.task`, which is valid once accepted). */
  #queueAccepted(
    message: Pick<TaskMessage, 'task'>,
    { verdict, reason, task }: TaskVerdict,
    now: number,
  ): Omit<TaskVerdict, 'task'> {
    const spec = message.task;
    if (task !== undefined) this.#enqueue({ spec, proof: this.known.proofOf(spec), task }, now);
    return reason === undefined ? { verdict } : { verdict, reason };
  }

  #enqueue(entry: PoolTask, now: number): void {
    this.#dropExpired(now);
    const mine = this.#entries.filter((e) => e.spec.proposer === entry.spec.proposer);
    const oldestOfMine = mine[0];
    if (mine.length >= this.#pendingPerProposer && oldestOfMine !== undefined)
      this.#entries.splice(this.#entries.indexOf(oldestOfMine), 1);
    this.#entries.push({ ...entry, added: now });
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
  tasks: readonly PoolTask[],
  { groupSize, sampling }: SolveOptions,
): Promise<SolvedGroup[]> {
  if (tasks.length === 0) return [];
  // The version of the policy that samples: read before the call, as the step comes after it.
  const policyVersion = learner.steps;
  const prompts = tasks.flatMap(({ task }) => new Array<string>(groupSize).fill(task.prompt));
  const completions = await learner.sample(prompts, sampling);
  return tasks.flatMap(({ spec, proof, task }, t) => {
    const group = completions.slice(t * groupSize, (t + 1) * groupSize);
    if (group.some((c) => c === null)) return [];
    const sampled = group as TextCompletion[];
    return [
      {
        spec,
        proof,
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
