/**
 * The solver: keeps a pool of tasks (its own proposer's and peers'), draws some each round and
 * samples G completions of each with this node's policy.
 */
import { generateText, type Policy, type SampleOptions, type Tokenizer } from '@swarm-node/sapo';
import { generateTask, type Task } from '@swarm-node/tasks';
import { uniformInt } from 'pure-rand/distribution/uniformInt';
import type { RandomGenerator } from 'pure-rand/types/RandomGenerator';
import type { ProposedTask } from './messages.js';

export interface SolvedGroup {
  spec: ProposedTask;
  task: Task;
  completions: string[];
}

/** Tasks waiting to be solved, newest kept when full; each is solved once. */
export class TaskPool {
  readonly #capacity: number;
  readonly #entries: { spec: ProposedTask; task: Task; added: number }[] = [];
  readonly #known = new Set<string>();

  constructor(capacity = 256) {
    this.#capacity = capacity;
  }

  get size(): number {
    return this.#entries.length;
  }

  /** Adds a task whose spec passed validation; false when it was already known or cannot be generated. */
  add(spec: ProposedTask, now: number): boolean {
    const key = `${spec.proposer}\n${spec.round}\n${spec.index}`;
    if (this.#known.has(key)) return false;
    this.#known.add(key);
    if (this.#known.size > 16 * this.#capacity) this.#known.delete(this.#known.values().next().value as string);
    this.#entries.push({ spec, task: generateTask(spec), added: now });
    if (this.#entries.length > this.#capacity) this.#entries.shift();
    return true;
  }

  /** Up to `count` tasks drawn uniformly, removed from the pool; tasks older than `maxAgeMs` are dropped first. */
  take(count: number, rng: RandomGenerator, now: number, maxAgeMs: number): { spec: ProposedTask; task: Task }[] {
    for (let i = this.#entries.length - 1; i >= 0; i--) {
      if ((this.#entries[i]?.added ?? now) < now - maxAgeMs) this.#entries.splice(i, 1);
    }
    const taken: { spec: ProposedTask; task: Task }[] = [];
    while (taken.length < count && this.#entries.length > 0) {
      const [entry] = this.#entries.splice(uniformInt(rng, 0, this.#entries.length - 1), 1);
      if (entry !== undefined) taken.push({ spec: entry.spec, task: entry.task });
    }
    return taken;
  }
}

/** G completions of each task, sampled in one batch. */
export function solve(
  policy: Policy,
  tokenizer: Tokenizer,
  tasks: readonly { spec: ProposedTask; task: Task }[],
  groupSize: number,
  sampling: SampleOptions,
): SolvedGroup[] {
  if (tasks.length === 0) return [];
  const prompts = tasks.flatMap(({ task }) => new Array<string>(groupSize).fill(task.prompt));
  const completions = generateText(policy, tokenizer, prompts, sampling);
  return tasks.map(({ spec, task }, t) => ({
    spec,
    task,
    completions: completions.slice(t * groupSize, (t + 1) * groupSize).map((c) => c.text),
  }));
}
