/**
 * What nodes say to each other, before any encoding: a proposed task and a group of rollouts.
 * Every field of a message from a peer is checked here before anything else reads it.
 */
import { createHash } from 'node:crypto';
import type { TaskSpec } from '@swarm-node/tasks';

/** A task as proposed: its spec, bound to who proposed it, in which round, as which of that round's tasks. */
export interface ProposedTask extends TaskSpec {
  proposer: string;
  round: number;
  /** Position among the proposer's tasks of that round; part of the seed derivation. */
  index: number;
}

export interface TaskMessage {
  task: ProposedTask;
  /** Milliseconds since the epoch, on the sender's clock. */
  time: number;
  /**
   * The proposer's signature over `taskSigningBytes(task, time)` with its identity key. Solvers pass
   * it on in their rollouts, so a node that never heard this message can still check that the task
   * was really proposed. Absent (an older peer): the task is usable, its rollouts carry no proof.
   */
  signature?: Uint8Array;
}

/** A task message's time and signature, carried by rollouts on the task. */
export interface TaskProof {
  time: number;
  signature: Uint8Array;
}

/** G completions of one task by one producer, with the rewards the producer claims. */
export interface RolloutMessage {
  task: ProposedTask;
  producer: string;
  /** The producer's round when it sampled. */
  round: number;
  /** Optimizer steps the producer's policy had taken when it sampled. */
  policyVersion: number;
  time: number;
  completions: string[];
  rewards: number[];
  /**
   * Per completion: true when the producer's sampler stopped at its end-of-sequence token, false when
   * it ran out of tokens or context. Absent (an older peer): unknown, so receivers add no EOS.
   */
  finished?: boolean[];
  /** The proposer's signature of the task (TaskMessage.signature), when the producer had one. */
  taskProof?: TaskProof;
}

export const LIMITS = Object.freeze({
  /** Longest peer id accepted. */
  peerIdLength: 128,
  /** Group sizes a rollout may carry. */
  minGroupSize: 2,
  maxGroupSize: 64,
  /** Longest completion accepted, in UTF-16 code units. */
  completionLength: 2048,
  /** Tasks a proposer may publish per round (bounds `index`). */
  tasksPerRound: 64,
  /** Longest signature accepted, in bytes (an Ed25519 signature has 64). */
  signatureLength: 256,
});

/**
 * The seed of a proposer's `index`-th task in `round`: the first 32 bits of SHA-256 over the
 * three. A peer cannot pick seeds (say, ones it has memorised answers for); seeds of a round exist
 * only once the round is current, and the staleness bound keeps rounds current.
 */
export function deriveSeed(proposer: string, round: number, index: number): number {
  return hashToSeed('swarm-node/task-seed/v1', proposer, round, index);
}

/**
 * What a proposer signs for a task: UTF-8 of `swarm-node/task-signature/v1` and the spec's fields
 * and the message time, one per line, in a fixed order — the same bytes on every machine, whatever
 * the wire encoding.
 */
export function taskSigningBytes(task: ProposedTask, time: number): Uint8Array {
  const { proposer, round, index, family, seed, difficulty, generatorVersion } = task;
  return new TextEncoder().encode(
    ['swarm-node/task-signature/v1', proposer, round, index, family, seed, difficulty, generatorVersion, time].join(
      '\n',
    ),
  );
}

/** An unsigned 32-bit seed from the SHA-256 of the parts, one per line. */
export function hashToSeed(...parts: (string | number)[]): number {
  return createHash('sha256').update(parts.join('\n')).digest().readUInt32BE(0);
}

/** Why a message is unusable (a schema violation: the sender broke the protocol), or null. */
export function taskProblem(task: unknown): string | null {
  if (!isRecord(task)) return 'task-not-an-object';
  if (typeof task.family !== 'string' || task.family.length === 0 || task.family.length > 64) return 'bad-family';
  for (const key of ['seed', 'difficulty', 'generatorVersion', 'round', 'index'] as const) {
    if (!Number.isSafeInteger(task[key]) || (task[key] as number) < 0) return `bad-${key}`;
  }
  if ((task.index as number) >= LIMITS.tasksPerRound) return 'bad-index';
  if (!isPeerId(task.proposer)) return 'bad-proposer';
  if (task.seed !== deriveSeed(task.proposer as string, task.round as number, task.index as number))
    return 'seed-not-bound';
  return null;
}

export function taskMessageProblem(message: unknown): string | null {
  if (!isRecord(message)) return 'not-an-object';
  if (!Number.isFinite(message.time)) return 'bad-time';
  if (message.signature !== undefined && !isSignature(message.signature)) return 'bad-signature';
  return taskProblem(message.task);
}

export function rolloutMessageProblem(message: unknown): string | null {
  if (!isRecord(message)) return 'not-an-object';
  const problem = taskProblem(message.task);
  if (problem !== null) return problem;
  if (!isPeerId(message.producer)) return 'bad-producer';
  if (!Number.isSafeInteger(message.round) || (message.round as number) < 0) return 'bad-round';
  if (!Number.isSafeInteger(message.policyVersion) || (message.policyVersion as number) < 0)
    return 'bad-policy-version';
  if (!Number.isFinite(message.time)) return 'bad-time';
  const { completions, rewards } = message;
  if (!Array.isArray(completions) || !Array.isArray(rewards) || completions.length !== rewards.length)
    return 'malformed-group';
  if (completions.length < LIMITS.minGroupSize || completions.length > LIMITS.maxGroupSize) return 'bad-group-size';
  if (!completions.every((c) => typeof c === 'string')) return 'malformed-group';
  if (completions.some((c: string) => c.length > LIMITS.completionLength)) return 'completion-too-long';
  if (!rewards.every((r) => typeof r === 'number' && r >= 0 && r <= 1)) return 'reward-out-of-range';
  const { finished } = message;
  if (
    finished !== undefined &&
    (!Array.isArray(finished) ||
      finished.length !== completions.length ||
      !finished.every((f) => typeof f === 'boolean'))
  )
    return 'malformed-group';
  const { taskProof } = message;
  if (
    taskProof !== undefined &&
    (!isRecord(taskProof) || !Number.isFinite(taskProof.time) || !isSignature(taskProof.signature))
  )
    return 'bad-task-proof';
  return null;
}

const isSignature = (value: unknown): value is Uint8Array =>
  value instanceof Uint8Array && value.byteLength > 0 && value.byteLength <= LIMITS.signatureLength;

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

const isPeerId = (value: unknown): value is string =>
  typeof value === 'string' && value.length > 0 && value.length <= LIMITS.peerIdLength;
