import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { getFamily } from '@swarm-node/tasks';
import { describe, expect, it } from 'vitest';

// The real command line in a real process, as a person runs it (needs `npm run build`).
const BIN = fileURLToPath(new URL('../bin/swarm-node.js', import.meta.url));

function swarmNode(...args: string[]) {
  const result = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8' });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe('swarm-node tasks', () => {
  it('lists at least ten families with their difficulty ranges as JSON', () => {
    const { code, stdout } = swarmNode('tasks', 'list', '--json');
    expect(code).toBe(0);
    const families = JSON.parse(stdout) as { name: string; difficulty: { min: number; max: number } }[];
    expect(families.length).toBeGreaterThanOrEqual(10);
    for (const family of families) expect(family.difficulty.max).toBeGreaterThan(family.difficulty.min);
  });

  it('lists families for people, one per line', () => {
    const { code, stdout } = swarmNode('tasks', 'list');
    expect(code).toBe(0);
    expect(stdout).toMatch(/^calendar_arithmetic +difficulty 1-5 +v1 +\S/m);
  });

  it('samples the same task the library generates, one JSON object per line', () => {
    const { code, stdout } = swarmNode(
      'tasks',
      'sample',
      '--family',
      'bf_trace',
      '--seed',
      '41',
      '--difficulty',
      '4',
      '--count',
      '2',
      '--json',
    );
    expect(code).toBe(0);
    const lines = stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line));
    expect(lines).toEqual([getFamily('bf_trace').generate(41, 4), getFamily('bf_trace').generate(42, 4)]);
  });

  it('shows a sample with its prompt and answer for people', () => {
    const task = getFamily('arithmetic').generate(5, 2);
    const { code, stdout } = swarmNode('tasks', 'sample', '-f', 'arithmetic', '-s', '5', '-d', '2');
    expect(code).toBe(0);
    expect(stdout).toContain(`prompt: ${task.prompt}`);
    expect(stdout).toContain(`answer: ${task.answer}`);
  });

  it('scores a completion with the family verifier', () => {
    const task = getFamily('sort').generate(3, 2);
    const right = swarmNode(
      'tasks',
      'score',
      '-f',
      'sort',
      '-s',
      '3',
      '-d',
      '2',
      '-c',
      `thinking\n<answer>${task.answer}</answer>`,
      '--json',
    );
    expect(JSON.parse(right.stdout)).toEqual({ reward: 1, answer: task.answer });
    const wrong = swarmNode('tasks', 'score', '-f', 'sort', '-s', '3', '-d', '2', '-c', '1 2');
    expect(wrong.stdout).toContain('reward 0');
  });

  it.each([
    [['tasks', 'sample', '-f', 'chess', '-s', '1', '-d', '1'], /Allowed choices are reverse, sort, count, arithmetic/],
    [
      ['tasks', 'sample', '-f', 'sort', '-s', '-1', '-d', '1'],
      /seed -1 is not valid; use an integer from 0 to 4294967295/,
    ],
    [['tasks', 'sample', '-f', 'sort', '-s', 'abc', '-d', '1'], /seed must be a whole number/],
    [
      ['tasks', 'sample', '-f', 'sort', '-s', '1', '-d', '9'],
      /difficulty 9 is not valid for family sort; use an integer from 1 to 5/,
    ],
    [['tasks', 'sample', '-f', 'sort', '-s', '1'], /required option '-d, --difficulty <n>' not specified/],
    [['tasks', 'sample', '-f', 'sort', '-s', '4294967295', '-d', '1', '-n', '2'], /--count must be at least 1/],
    [['tasks', 'dance'], /unknown command 'dance'/],
  ])('exits 2 with a clear message for %j', (args, message) => {
    const { code, stdout, stderr } = swarmNode(...args);
    expect(code).toBe(2);
    expect(stderr).toMatch(message);
    expect(stdout).toBe('');
  });

  it('shows help with exit code 0', () => {
    const { code, stdout } = swarmNode('tasks', 'sample', '--help');
    expect(code).toBe(0);
    expect(stdout).toContain('--difficulty <n>');
    expect(stdout).toContain('(default: 1)');
  });
});
