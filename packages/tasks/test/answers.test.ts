import { describe, expect, it } from 'vitest';
import { extractAnswer, getFamily, MAX_ANSWER_LENGTH, type Task } from '../src/index.js';

describe('extractAnswer: the last <answer> pair, else the last non-empty line', () => {
  it.each([
    ['42', '42'],
    ['  42  ', '42'],
    ['think\n\n42\n\n', '42'],
    ['a\r\nb\r\n', 'b'],
    ['<answer>7</answer>', '7'],
    ['<answer>1</answer> then <answer> 2 </answer> trailing text', '2'],
    ['<answer>multi\nline</answer>\nafter', 'multi\nline'],
    ['<answer>unclosed', '<answer>unclosed'],
    ['</answer><answer>', '</answer><answer>'],
    ['', null],
    ['   \n\t\n', null],
    ['<answer>   </answer>', null],
    ['x'.repeat(MAX_ANSWER_LENGTH + 1), null],
  ])('%j -> %j', (completion, expected) => {
    expect(extractAnswer(completion)).toBe(expected);
  });
});

/** The first task of `family` at `difficulty` whose reference answer satisfies `wanted`. */
function taskWhere(family: string, difficulty: number, wanted: (task: Task) => boolean): Task {
  for (let seed = 0; seed < 10_000; seed++) {
    const task = getFamily(family).generate(seed, difficulty);
    if (wanted(task)) return task;
  }
  throw new Error(`no ${family} task found`);
}

const score = (task: Task, completion: string) => getFamily(task.family).score(task, completion);

describe('equivalent forms are accepted only where the family has them', () => {
  it('decimal_arithmetic: any equal decimal, no fractions', () => {
    const task = taskWhere('decimal_arithmetic', 1, (t) => /^\d+\.\d$/.test(t.answer));
    expect(score(task, `${task.answer}0`)).toBe(1);
    expect(score(task, `+${task.answer}`)).toBe(1);
    expect(score(task, `0${task.answer}`)).toBe(1);
    const [whole, tenths] = task.answer.split('.') as [string, string];
    expect(score(task, `${Number(whole) * 10 + Number(tenths)}/10`)).toBe(0);
    const zero = taskWhere('decimal_arithmetic', 2, (t) => t.answer.startsWith('0.') || t.answer.startsWith('-0.'));
    expect(score(zero, zero.answer.replace('0.', '.'))).toBe(1);
  });

  it('fraction_simplification: lowest terms only, sign on either part, no decimals', () => {
    const task = getFamily('fraction_simplification').generate(1, 1);
    const [p, q] = task.answer.split('/').map(Number) as [number, number];
    expect(score(task, `${p} / ${q}`)).toBe(1);
    expect(score(task, `${2 * p}/${2 * q}`)).toBe(0);
    expect(score(task, String(p / q))).toBe(0);
    expect(score(task, `${p}/0`)).toBe(0);
    const negative = taskWhere('fraction_simplification', 5, (t) => t.answer.startsWith('-'));
    const [np, nq] = negative.answer.split('/') as [string, string];
    expect(score(negative, `${np.slice(1)}/-${nq}`)).toBe(1);
    expect(score(negative, `${np.slice(1)}/${nq}`)).toBe(0);
  });

  it('base_conversion: either case, leading zeros and the usual prefix', () => {
    const hex = taskWhere('base_conversion', 3, (t) => t.metadata.to === 16 && /[a-f]/.test(t.answer));
    expect(score(hex, hex.answer.toUpperCase())).toBe(1);
    expect(score(hex, `0x${hex.answer}`)).toBe(1);
    expect(score(hex, `00${hex.answer}`)).toBe(1);
    expect(score(hex, `0b${hex.answer}`)).toBe(0);
    const binary = getFamily('base_conversion').generate(5, 1);
    expect(score(binary, `0b${binary.answer}`)).toBe(1);
    expect(score(binary, `${binary.answer}2`)).toBe(0);
  });

  it('propositional_logic: T/F or true/false in any case', () => {
    const task = getFamily('propositional_logic').generate(3, 3);
    const word = task.answer === 'T' ? 'true' : 'false';
    const other = task.answer === 'T' ? 'F' : 'T';
    for (const form of [task.answer, task.answer.toLowerCase(), word, word.toUpperCase()])
      expect(score(task, form)).toBe(1);
    expect(score(task, other)).toBe(0);
    expect(score(task, 'constructor')).toBe(0);
    expect(score(task, '1')).toBe(0);
  });

  it('calendar_arithmetic: weekday names short or long, dates with or without zero padding, real dates only', () => {
    const weekday = getFamily('calendar_arithmetic').generate(0, 1);
    const long = {
      Sun: 'Sunday',
      Mon: 'Monday',
      Tue: 'Tuesday',
      Wed: 'Wednesday',
      Thu: 'Thursday',
      Fri: 'Friday',
      Sat: 'Saturday',
    }[weekday.answer] as string;
    expect(score(weekday, long.toLowerCase())).toBe(1);
    expect(score(weekday, weekday.answer.toUpperCase())).toBe(1);
    expect(score(weekday, long.slice(0, 2))).toBe(0);
    const date = taskWhere('calendar_arithmetic', 3, (t) => /-0\d-0\d$/.test(t.answer));
    expect(score(date, date.answer.replace(/-0/g, '-'))).toBe(1);
    const feb30 = taskWhere(
      'calendar_arithmetic',
      3,
      (t) => t.answer.endsWith('-03-02') && !t.answer.startsWith('2000') && Number(t.answer.slice(0, 4)) % 4 !== 0,
    );
    expect(score(feb30, feb30.answer.replace('-03-02', '-02-30'))).toBe(0);
    const days = taskWhere('calendar_arithmetic', 4, (t) => t.metadata.question === 'days');
    expect(score(days, `+${days.answer}`)).toBe(1);
  });

  it('binary_matrix: rows by / ; or newline, cells together or spaced', () => {
    const task = getFamily('binary_matrix').generate(2, 3);
    const rows = task.answer.split('/');
    expect(score(task, `<answer>${rows.join('\n')}</answer>`)).toBe(1);
    expect(score(task, rows.map((row) => [...row].join(' ')).join('; '))).toBe(1);
    expect(score(task, rows.map((row) => [...row].join(',')).join(' / '))).toBe(1);
    expect(score(task, rows.slice(0, -1).join('/'))).toBe(0);
    expect(score(task, `${task.answer}/`)).toBe(0);
  });

  it('sort, bf_trace, arc_1d: spaces, commas or brackets between items', () => {
    const sort = getFamily('sort').generate(1, 3);
    expect(score(sort, `[${sort.answer.replaceAll(' ', ', ')}]`)).toBe(1);
    expect(score(sort, sort.answer.split(' ').reverse().join(' '))).toBe(0);
    const bf = taskWhere('bf_trace', 5, (t) => t.answer.includes(' '));
    expect(score(bf, bf.answer.replaceAll(' ', ','))).toBe(1);
    const arc = getFamily('arc_1d').generate(1, 2);
    expect(score(arc, [...arc.answer].join(' '))).toBe(1);
    expect(score(arc, [...arc.answer].reverse().join(''))).toBe(
      arc.answer === [...arc.answer].reverse().join('') ? 1 : 0,
    );
  });

  it('reverse and count are exact', () => {
    const reverse = getFamily('reverse').generate(1, 2);
    expect(score(reverse, reverse.answer.toUpperCase())).toBe(0);
    const count = getFamily('count').generate(1, 2);
    expect(score(count, `0${count.answer}`)).toBe(1);
    expect(score(count, `${count.answer}.5`)).toBe(0);
  });
});
