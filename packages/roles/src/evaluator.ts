/**
 * The evaluator: scores this node's completions with the task verifiers, and re-checks every
 * rollout a peer sends — regenerating the task from its spec and re-scoring each completion —
 * before any of it can reach the learner. A peer's claimed reward is never trusted.
 */
import { generateTask, scoreCompletion, type Task, TaskError } from '@swarm-node/tasks';
import type { TaskVerdict } from './known-tasks.js';
import { type ProposedTask, type RolloutMessage, rolloutMessageProblem, type TaskProof } from './messages.js';
import type { Verdict } from './transport.js';

export interface EvaluatorOptions {
  /** Rollouts sampled longer ago than this are ignored as stale. Default 10 minutes. */
  maxAgeMs?: number;
  /** Rollouts stamped further ahead of our clock than this are ignored. Default 30 s. */
  maxClockSkewMs?: number;
  /** How many recent rollout ids are remembered to drop duplicates. Default 10 000. */
  duplicateMemory?: number;
  /**
   * Whether a rollout's task was really published by its proposer (KnownTasks.recognise: known, or
   * vouched for by the proof the rollout carries). Without this check anyone could compute seeds for
   * any proposer and round and send rollouts on tasks nobody proposed. Default: every task is
   * accepted (for tests of the other checks).
   */
  recogniseTask?: (task: ProposedTask, proof: TaskProof | undefined, now: number) => TaskVerdict;
}

export interface Checked {
  verdict: Verdict;
  /** Why, when not accepted; counted per reason. */
  reason?: string;
  /** The task regenerated from the spec, when accepted. */
  task?: Task;
}

/** The identity of a rollout: one producer's group on one proposed task. */
const rolloutKey = (producer: string, t: ProposedTask) =>
  `${producer}\n${t.proposer}\n${t.round}\n${t.index}\n${t.family}`;

export class Evaluator {
  readonly #options: Required<EvaluatorOptions>;
  readonly #seen = new Set<string>();
  /** Verdicts on peers' rollouts by reason, e.g. { accept: 10, 'reject:reward-mismatch': 2 }. */
  readonly counts: Record<string, number> = {};

  constructor(options: EvaluatorOptions = {}) {
    this.#options = {
      maxAgeMs: 600_000,
      maxClockSkewMs: 30_000,
      duplicateMemory: 10_000,
      recogniseTask: () => ({ verdict: 'accept' }),
      ...options,
    };
  }

  /** Rewards of completions of a task, by its family's verifier. */
  score(task: Task, completions: readonly string[]): number[] {
    return completions.map((completion) => scoreCompletion(task, completion));
  }

  /** Verdict on a peer's rollout message (anything at all), received from `from` at `now`. */
  check(message: unknown, from: string, now: number): Checked {
    const checked = this.#check(message, from, now);
    const key = checked.verdict === 'accept' ? 'accept' : `${checked.verdict}:${checked.reason}`;
    this.counts[key] = (this.counts[key] ?? 0) + 1;
    return checked;
  }

  #check(message: unknown, from: string, now: number): Checked {
    const problem = rolloutMessageProblem(message);
    if (problem !== null) return { verdict: 'reject', reason: problem };
    const rollout = message as RolloutMessage;
    if (rollout.producer !== from) return { verdict: 'reject', reason: 'producer-is-not-sender' };
    if (rollout.time < now - this.#options.maxAgeMs) return { verdict: 'ignore', reason: 'stale' };
    if (rollout.time > now + this.#options.maxClockSkewMs) return { verdict: 'ignore', reason: 'from-the-future' };
    // Not known and no proof may mean its task message is still on the way: dropped without blame.
    const recognised = this.#options.recogniseTask(rollout.task, rollout.taskProof, now);
    if (recognised.verdict !== 'accept') return { verdict: recognised.verdict, reason: recognised.reason as string };
    let task: Task;
    try {
      task = generateTask(rollout.task);
    } catch (error) {
      if (!(error instanceof TaskError)) throw error;
      // A family or generator version we lack is a peer ahead of us, not a liar; a bad range is a liar.
      const ahead = error.code === 'UNKNOWN_FAMILY' || error.code === 'GENERATOR_VERSION_MISMATCH';
      return { verdict: ahead ? 'ignore' : 'reject', reason: error.code.toLowerCase().replaceAll('_', '-') };
    }
    const key = rolloutKey(rollout.producer, rollout.task);
    if (this.#seen.has(key)) return { verdict: 'ignore', reason: 'duplicate' };
    const rewards = this.score(task, rollout.completions);
    if (rewards.some((reward, i) => reward !== rollout.rewards[i]))
      return { verdict: 'reject', reason: 'reward-mismatch' };
    this.#remember(key);
    return { verdict: 'accept', task };
  }

  #remember(key: string): void {
    this.#seen.add(key);
    if (this.#seen.size > this.#options.duplicateMemory) {
      // Sets iterate in insertion order: the first key is the oldest.
      this.#seen.delete(this.#seen.values().next().value as string);
    }
  }
}
