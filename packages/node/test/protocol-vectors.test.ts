/**
 * docs/PROTOCOL.md's worked examples as test vectors, read out of the page itself so that the page
 * and the code cannot drift apart: the byte-level examples of section 5 (blocks marked
 * `<!-- test vector: NAME, N bytes[, after PREV] -->`) and the seed table of section 6.1 (marked
 * `<!-- test vector: deriveSeed -->`). The code is the reference: when this fails, fix the page.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { ProposedTask, RolloutMessage, TaskMessage } from '@swarm-node/roles';
import { deriveSeed, rolloutMessageProblem, taskMessageProblem, taskSigningBytes } from '@swarm-node/roles';
import { generateTask, scoreCompletion } from '@swarm-node/tasks';
import { describe, expect, it } from 'vitest';
import { decodeMessage, encodeMessage } from '../src/wire/index.js';

const PAGE = readFileSync(new URL('../../../docs/PROTOCOL.md', import.meta.url), 'utf8');

interface ByteVector {
  bytes: Uint8Array;
  /** The length the marker states. */
  length: number;
}

/**
 * Every marked hex block of the page, by name. A line's bytes are its leading two-digit hex tokens;
 * the first other token starts its commentary. A block marked `after PREV` continues PREV's bytes.
 */
function byteVectors(page: string): Map<string, ByteVector> {
  const vectors = new Map<string, ByteVector>();
  const marked = /<!-- test vector: ([a-z-]+), (\d+) bytes(?:, after ([a-z-]+))? -->\n```\n([\s\S]*?)```/g;
  for (const [, name, length, after, block] of page.matchAll(marked)) {
    const bytes: number[] = [];
    for (const line of (block as string).split('\n')) {
      for (const token of line.trim().split(/\s+/)) {
        if (!/^[0-9a-f]{2}$/.test(token)) break;
        bytes.push(Number.parseInt(token, 16));
      }
    }
    const before = after === undefined ? [] : [...(vectors.get(after)?.bytes ?? expect.fail(`no vector ${after}`))];
    vectors.set(name as string, { bytes: Uint8Array.from([...before, ...bytes]), length: Number(length) });
  }
  return vectors;
}

interface SeedVector {
  proposer: string;
  round: number;
  index: number;
  sha256Prefix: string;
  seedHex: string;
  seed: number;
}

/** The rows of the table after the `deriveSeed` marker. */
function seedVectors(page: string): SeedVector[] {
  const start = page.indexOf('<!-- test vector: deriveSeed -->');
  if (start < 0) return [];
  const rows: SeedVector[] = [];
  const lines = page.slice(start).split('\n').slice(1);
  for (const line of lines.slice(2)) {
    const row = /^\| `([^`]+)` \| (\d+) \| (\d+) \| `([0-9a-f]{16})` \| `0x([0-9a-f]{8})` = (\d+) \|$/.exec(line);
    if (row === null) break;
    const [, proposer, round, index, sha256Prefix, seedHex, seed] = row as unknown as string[];
    rows.push({
      proposer: proposer as string,
      round: Number(round),
      index: Number(index),
      sha256Prefix: sha256Prefix as string,
      seedHex: seedHex as string,
      seed: Number(seed),
    });
  }
  return rows;
}

// The messages the page's examples describe in words.
const proposer = '12D3KooWExample';
const task: ProposedTask = {
  family: 'reverse',
  seed: 3_886_210_275,
  difficulty: 1,
  generatorVersion: 1,
  proposer,
  round: 3,
  index: 0,
};
const time = 1_700_000_000_000;
const taskMessage: TaskMessage = { task, time };
const rollout: RolloutMessage = {
  task,
  producer: proposer,
  round: 3,
  policyVersion: 0,
  time,
  completions: ['ill', 'abc'],
  rewards: [1, 0],
};
const EXAMPLES: Record<string, { topic: 'tasks' | 'rollouts'; message: TaskMessage | RolloutMessage }> = {
  task: { topic: 'tasks', message: taskMessage },
  rollout: { topic: 'rollouts', message: rollout },
  'rollout-finished': { topic: 'rollouts', message: { ...rollout, finished: [true, false] } },
};

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');

describe('docs/PROTOCOL.md test vectors', () => {
  const vectors = byteVectors(PAGE);

  it('finds every byte-level example in the page, and only those the test knows', () => {
    expect([...vectors.keys()].sort()).toEqual(Object.keys(EXAMPLES).sort());
  });

  it.each(Object.keys(EXAMPLES))(
    'encodes the %s example to the hex printed in the page, of the stated length',
    (name) => {
      const { topic, message } = EXAMPLES[name] as (typeof EXAMPLES)[string];
      const vector = vectors.get(name) as ByteVector;
      expect(hex(encodeMessage(topic, message))).toBe(hex(vector.bytes));
      expect(vector.bytes.length).toBe(vector.length);
    },
  );

  it.each(Object.keys(EXAMPLES))('decodes the hex of the %s example back to the message, which is valid', (name) => {
    const { topic, message } = EXAMPLES[name] as (typeof EXAMPLES)[string];
    const decoded = decodeMessage(topic, (vectors.get(name) as ByteVector).bytes);
    expect(decoded).toEqual({ ok: true, message });
    const problem = topic === 'tasks' ? taskMessageProblem(message) : rolloutMessageProblem(message);
    expect(problem).toBeNull();
  });

  it("states the example task's prompt and answer, and rewards the verifier gives", () => {
    expect(task.seed).toBe(deriveSeed(proposer, 3, 0));
    const generated = generateTask(task);
    expect(PAGE).toContain(`That task's prompt is \`${generated.prompt}\` and its answer \`${generated.answer}\`.`);
    expect(rollout.completions.map((c) => scoreCompletion(generated, c))).toEqual(rollout.rewards);
  });

  it('derives the seeds of the seed table, with the SHA-256 bytes it prints', () => {
    const rows = seedVectors(PAGE);
    expect(rows.length).toBeGreaterThanOrEqual(3);
    for (const { proposer, round, index, sha256Prefix, seedHex, seed } of rows) {
      const digest = createHash('sha256')
        .update(['swarm-node/task-seed/v1', proposer, round, index].join('\n'))
        .digest();
      expect(digest.subarray(0, 8).toString('hex')).toBe(sha256Prefix);
      expect(Number.parseInt(seedHex, 16)).toBe(seed);
      expect(deriveSeed(proposer, round, index)).toBe(seed);
    }
    // The first row is the page's worked example, whose seed the conformance checklist quotes.
    expect(rows[0]).toMatchObject({ proposer, round: 3, index: 0, seed: 3_886_210_275 });
    expect(PAGE).toContain('(test vector 3886210275, §6.1)');
  });

  it('signs exactly the bytes of the task-signature example (§6.3)', () => {
    const example = /signs the (\d+) bytes\n`([^`]+)`/.exec(PAGE);
    expect(example).not.toBeNull();
    const [, length, text] = example as RegExpExecArray;
    const spec = {
      family: 'count',
      seed: deriveSeed(proposer, 3, 0),
      difficulty: 1,
      generatorVersion: 1,
      proposer,
      round: 3,
      index: 0,
    };
    const bytes = taskSigningBytes(spec, 1_795_000_000_000);
    expect(new TextDecoder().decode(bytes)).toBe((text as string).replaceAll('\\n', '\n'));
    expect(bytes.byteLength).toBe(Number(length));
  });
});
