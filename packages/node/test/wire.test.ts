import type { RolloutMessage, TaskMessage } from '@swarm-node/roles';
import { deriveSeed, rolloutMessageProblem } from '@swarm-node/roles';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeMessage, encodeMessage, MAX_MESSAGE_BYTES, swarmIdProblem, topicName } from '../src/wire/index.js';
import * as pb from '../src/wire/messages.js';

const proposer = '12D3KooWExampleProposer';
const task = {
  family: 'count',
  seed: deriveSeed(proposer, 7, 1),
  difficulty: 2,
  generatorVersion: 1,
  proposer,
  round: 7,
  index: 1,
};
const taskMessage: TaskMessage = { task, time: 1_795_000_000_123 };
const rollout: RolloutMessage = {
  task,
  producer: '12D3KooWExampleProducer',
  round: 9,
  policyVersion: 41,
  time: 1_795_000_000_456,
  completions: ['<answer>3</answer>', '', 'ünïcödé ✓ 🙂'],
  rewards: [1, 0, 1 / 3],
};

describe('the wire protocol', () => {
  it('round-trips tasks and rollouts exactly (rewards as doubles, times in ms)', () => {
    expect(decodeMessage('tasks', encodeMessage('tasks', taskMessage))).toEqual({ ok: true, message: taskMessage });
    expect(decodeMessage('rollouts', encodeMessage('rollouts', rollout))).toEqual({ ok: true, message: rollout });
  });

  it('writes rewards unpacked, as the schema and docs/PROTOCOL.md say (tag 0x41 and 8 bytes each)', () => {
    const bytes = encodeMessage('rollouts', { ...rollout, rewards: [1, 0, 0.5], completions: ['a', 'b', 'c'] });
    const tail = [...bytes.subarray(bytes.length - 27)];
    expect([tail[0], tail[9], tail[18]]).toEqual([0x41, 0x41, 0x41]);
    expect(new DataView(Uint8Array.from(tail.slice(19)).buffer).getFloat64(0, true)).toBe(0.5);
  });

  it('round-trips finished flags (false ones included) and writes them unpacked after the rewards', () => {
    for (const finished of [
      [true, false, true],
      [false, false, false],
    ]) {
      const message = { ...rollout, finished };
      expect(decodeMessage('rollouts', encodeMessage('rollouts', message))).toEqual({ ok: true, message });
    }
    // Field 9 unpacked: tag 0x48 (field 9, varint) and one byte per flag, appended to the bytes of
    // the same rollout without flags, so a decoder from before the field skips it and reads the rest.
    const without = encodeMessage('rollouts', rollout);
    const withFlags = encodeMessage('rollouts', { ...rollout, finished: [true, false, true] });
    expect([...withFlags]).toEqual([...without, 0x48, 0x01, 0x48, 0x00, 0x48, 0x01]);
  });

  it("round-trips a task's signature and a rollout's task proof, appended as fields a decoder from before them skips", () => {
    const signature = Uint8Array.from({ length: 64 }, (_, i) => i);
    const signed: TaskMessage = { ...taskMessage, signature };
    const decodedTask = decodeMessage('tasks', encodeMessage('tasks', signed));
    expect(decodedTask).toEqual({ ok: true, message: signed });
    const proven: RolloutMessage = { ...rollout, taskProof: { time: taskMessage.time, signature } };
    expect(decodeMessage('rollouts', encodeMessage('rollouts', proven))).toEqual({ ok: true, message: proven });
    // Field 4 (tag 0x22) and fields 10 (0x50) and 11 (0x5a) come after everything older peers read.
    expect([...encodeMessage('tasks', signed)]).toEqual([
      ...encodeMessage('tasks', taskMessage),
      0x22,
      64,
      ...signature,
    ]);
    const tail = [...encodeMessage('rollouts', proven)].slice(encodeMessage('rollouts', rollout).length);
    expect(tail[0]).toBe(0x50);
    expect(tail.slice(-66)).toEqual([0x5a, 64, ...signature]);
    expect(pb.TaskMessage.decode(encodeMessage('tasks', signed)).task).toEqual(task);
  });

  it('decodes a rollout without field 9 (an older producer) as finished unknown, and skips unknown fields', () => {
    // A rollout as encoded before field 9 existed (the example of docs/PROTOCOL.md section 5).
    const before = Buffer.from(
      '080112260a077265766572736510e3b98bbd0e180120012a0f313244334b6f6f574578616d706c6530031a0f313244334b6f6f' +
        '574578616d706c6520033080d095ffbc313a03696c6c3a0361626341000000000000f03f410000000000000000',
      'hex',
    );
    const decoded = decodeMessage('rollouts', before);
    expect(decoded).toMatchObject({ ok: true, message: { completions: ['ill', 'abc'], rewards: [1, 0] } });
    expect(decoded.ok && 'finished' in decoded.message).toBe(false);
    expect(decoded.ok && rolloutMessageProblem(decoded.message)).toBeNull();
    // A message without flags encodes no field 9 at all: same bytes as before the field.
    expect(decodeMessage('rollouts', encodeMessage('rollouts', rollout))).toEqual({ ok: true, message: rollout });
    expect(decoded.ok && Buffer.from(encodeMessage('rollouts', decoded.message as RolloutMessage)).equals(before)).toBe(
      true,
    );
    // Unknown fields are skipped, as an older decoder skips field 9 (here field 15, varint 1).
    expect(decodeMessage('rollouts', Uint8Array.from([...before, 0x78, 0x01]))).toEqual(decoded);
  });

  it('passes on finished flags of the wrong count for the roles to reject as a malformed group', () => {
    for (const finished of [[true], [true, false, true, false]]) {
      const bytes = encodeMessage('rollouts', { ...rollout, finished });
      const decoded = decodeMessage('rollouts', bytes);
      expect(decoded).toMatchObject({ ok: true, message: { finished } });
      expect(decoded.ok && rolloutMessageProblem(decoded.message)).toBe('malformed-group');
    }
  });

  it('rejects 65 finished flags as undecodable, and a packed field 9 one way or the other', () => {
    const many = pb.RolloutMessage.encode({
      ...rollout,
      protocolVersion: 1,
      timeMs: 1,
      finished: new Array(65).fill(true),
    });
    expect(decodeMessage('rollouts', many)).toMatchObject({ verdict: 'reject', reason: 'undecodable' });
    // Packed (tag 0x4a and a length, the proto3 default): undecodable, or read as one flag at most.
    const bytes = encodeMessage('rollouts', rollout);
    for (const packed of [
      [0x4a, 0x03, 0x01, 0x00, 0x01],
      [0x4a, 0x03, 0x00, 0x00, 0x00],
    ]) {
      const decoded = decodeMessage('rollouts', Uint8Array.from([...bytes, ...packed]));
      if (decoded.ok) expect(rolloutMessageProblem(decoded.message)).toBe('malformed-group');
      else expect(decoded).toMatchObject({ verdict: 'reject', reason: 'undecodable' });
    }
  });

  it('names topics per swarm and version, and restricts swarm ids', () => {
    expect(topicName('lab-1', 'rollouts')).toBe('/swarm-node/lab-1/rollouts/1');
    expect(swarmIdProblem('lab-1')).toBeNull();
    for (const bad of ['', 'Lab', 'a/b', '-x', 'x'.repeat(65)]) expect(swarmIdProblem(bad)).not.toBeNull();
  });

  it("rejects oversized and undecodable bytes, and any protocol version but the topic's", () => {
    expect(decodeMessage('tasks', new Uint8Array(MAX_MESSAGE_BYTES.tasks + 1))).toMatchObject({
      verdict: 'reject',
      reason: 'oversized',
    });
    expect(decodeMessage('rollouts', Uint8Array.of(0x0a, 0xff))).toMatchObject({
      verdict: 'reject',
      reason: 'undecodable',
    });
    // Junk that happens to decode as a version: rejected, so it costs its sender.
    expect(decodeMessage('rollouts', Uint8Array.of(0x0a, 0xff, 0x01))).toMatchObject({ verdict: 'reject' });
    const bytes = encodeMessage('rollouts', rollout);
    expect(decodeMessage('rollouts', bytes.subarray(0, bytes.length - 3))).toMatchObject({
      verdict: 'reject',
      reason: 'undecodable',
    });
    const newer = pb.TaskMessage.encode({ protocolVersion: 2, task, timeMs: 1 });
    expect(decodeMessage('tasks', newer)).toMatchObject({ verdict: 'reject', reason: 'protocol-version-mismatch' });
    const unversioned = pb.TaskMessage.encode({ protocolVersion: 0, task, timeMs: 1 });
    expect(decodeMessage('tasks', unversioned)).toMatchObject({
      verdict: 'reject',
      reason: 'protocol-version-mismatch',
    });
    const noTask = pb.RolloutMessage.encode({ ...rollout, protocolVersion: 1, task: undefined, timeMs: 1 } as never);
    expect(decodeMessage('rollouts', noTask)).toMatchObject({ verdict: 'reject', reason: 'missing-task' });
  });

  it('rejects a rollout with more completions than any legal group', () => {
    const many = pb.RolloutMessage.encode({
      ...rollout,
      protocolVersion: 1,
      timeMs: 1,
      completions: new Array(65).fill('x'),
      rewards: [],
    });
    expect(decodeMessage('rollouts', many)).toMatchObject({ verdict: 'reject', reason: 'undecodable' });
  });

  it('never throws on arbitrary bytes', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 2048 }),
        fc.constantFrom('tasks' as const, 'rollouts' as const),
        (bytes, topic) => {
          const decoded = decodeMessage(topic, bytes);
          expect(typeof decoded.ok).toBe('boolean');
        },
      ),
      { numRuns: 5000 },
    );
  });
});
