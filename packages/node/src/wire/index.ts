/**
 * The wire protocol (docs/PROTOCOL.md): topic names, protobuf encodings and the first checks on a
 * peer's bytes — size, decoding, protocol version — before the roles check what they mean.
 */
import type { RolloutMessage, TaskMessage, Topic, Topics } from '@swarm-node/roles';
import * as pb from './messages.js';

/** The version every message carries, and the last part of every topic name. */
export const PROTOCOL_VERSION = 1;

/**
 * Largest message accepted per topic, in bytes. A task spec is well under 1 KiB. A rollout holds at
 * most 64 completions of at most 2048 UTF-16 units (6 KiB of UTF-8) each, so 512 KiB covers every
 * legal rollout; gossipsub itself drops messages over 4 MiB silently.
 */
export const MAX_MESSAGE_BYTES: Readonly<Record<Topic, number>> = Object.freeze({ tasks: 1024, rollouts: 512 * 1024 });

export const TOPICS: readonly Topic[] = ['tasks', 'rollouts'];

/** The gossipsub topic of `topic` in swarm `swarmId`: `/swarm-node/<swarm>/<topic>/<version>`. */
export function topicName(swarmId: string, topic: Topic): string {
  return `/swarm-node/${swarmId}/${topic}/${PROTOCOL_VERSION}`;
}

/** A swarm id names topics and the DHT protocol, so it is restricted to characters safe in both. */
export function swarmIdProblem(swarmId: string): string | null {
  return /^[a-z0-9][a-z0-9._-]{0,63}$/.test(swarmId)
    ? null
    : 'a swarm id is 1-64 characters of a-z, 0-9, ".", "_" and "-", starting with a letter or digit';
}

export function encodeMessage<T extends Topic>(topic: T, message: Topics[T]): Uint8Array {
  // Absent optional fields (`signature`, `finished`, `taskProof`) are written as no field at all,
  // which older decoders never see.
  if (topic === 'tasks') {
    const { task, time, signature } = message as TaskMessage;
    return pb.TaskMessage.encode({
      protocolVersion: PROTOCOL_VERSION,
      task,
      timeMs: time,
      ...(signature === undefined ? {} : { signature: toArrayBuffer(signature) }),
    });
  }
  const { time, taskProof, ...rollout } = message as RolloutMessage;
  return pb.RolloutMessage.encode({
    protocolVersion: PROTOCOL_VERSION,
    ...rollout,
    timeMs: time,
    ...(taskProof === undefined
      ? {}
      : { taskTimeMs: taskProof.time, taskSignature: toArrayBuffer(taskProof.signature) }),
  });
}

/** protons types bytes fields as backed by an ArrayBuffer (not a SharedArrayBuffer). */
const toArrayBuffer = (bytes: Uint8Array): Uint8Array<ArrayBuffer> => new Uint8Array(bytes);

export type Decoded =
  | { ok: true; message: TaskMessage | RolloutMessage }
  | { ok: false; verdict: 'reject' | 'ignore'; reason: string };

/**
 * A peer's bytes as a message of the roles' shape, or why not. The message still has to pass the
 * roles' checks (schema, seeds, staleness, re-verification): decoding proves only its form.
 */
export function decodeMessage(topic: Topic, bytes: Uint8Array): Decoded {
  if (bytes.byteLength > MAX_MESSAGE_BYTES[topic]) return { ok: false, verdict: 'reject', reason: 'oversized' };
  let decoded: pb.TaskMessage | pb.RolloutMessage;
  try {
    decoded = topic === 'tasks' ? pb.TaskMessage.decode(bytes) : pb.RolloutMessage.decode(bytes);
  } catch {
    return { ok: false, verdict: 'reject', reason: 'undecodable' };
  }
  const { protocolVersion, task, timeMs, ...fields } = decoded;
  // The topic name carries the version, so a v1 topic holds v1 messages only; a later version gets
  // its own topics. (Ignoring "newer" versions instead would let junk that decodes as version 255 in
  // without costing its sender score.)
  if (protocolVersion !== PROTOCOL_VERSION)
    return { ok: false, verdict: 'reject', reason: 'protocol-version-mismatch' };
  if (task === undefined) return { ok: false, verdict: 'reject', reason: 'missing-task' };
  // protons decodes an absent field as its default ([], empty bytes, 0): optional fields that were
  // absent are left out rather than passed on as empty values.
  if ('signature' in fields) {
    const { signature, ...rest } = fields;
    const message: TaskMessage = { ...rest, task: { ...task }, time: timeMs };
    if (signature.byteLength > 0) message.signature = signature;
    return { ok: true, message };
  }
  const { finished, taskTimeMs, taskSignature, ...rest } = fields;
  const message: RolloutMessage = { ...rest, task: { ...task }, time: timeMs };
  if (finished.length > 0) message.finished = finished;
  if (taskSignature.byteLength > 0) message.taskProof = { time: taskTimeMs, signature: taskSignature };
  return { ok: true, message };
}
