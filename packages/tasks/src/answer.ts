/**
 * How an answer is read out of a completion, and parsers shared by the verifiers.
 *
 * The convention (docs/TASKS.md): the answer is the content of the last complete
 * `<answer>…</answer>` pair; without one, the last non-empty line. Surrounding whitespace is
 * ignored. Anything longer than MAX_ANSWER_LENGTH characters is no answer at all, so that a
 * verifier never parses megabytes a peer sent.
 */
export const MAX_ANSWER_LENGTH = 1024;

const OPEN_TAG = '<answer>';
const CLOSE_TAG = '</answer>';

/** The answer part of a completion, or null when there is none (empty or over the length cap). */
export function extractAnswer(completion: string): string | null {
  const close = completion.lastIndexOf(CLOSE_TAG);
  const open = close < 0 ? -1 : completion.lastIndexOf(OPEN_TAG, close);
  const raw = open >= 0 ? completion.slice(open + OPEN_TAG.length, close) : lastNonEmptyLine(completion);
  const answer = raw.trim();
  return answer.length === 0 || answer.length > MAX_ANSWER_LENGTH ? null : answer;
}

function lastNonEmptyLine(text: string): string {
  let end = text.length;
  while (end > 0) {
    const start = text.lastIndexOf('\n', end - 1) + 1;
    const line = text.slice(start, end);
    if (line.trim().length > 0) return line;
    end = start - 1;
  }
  return '';
}

const INTEGER = /^[+-]?\d{1,30}$/;

/** A base-10 integer with an optional sign (leading zeros allowed), or null. */
export function parseInteger(text: string): bigint | null {
  const trimmed = text.trim();
  return INTEGER.test(trimmed) ? BigInt(trimmed) : null;
}

/**
 * A list of base-10 integers separated by spaces and/or commas, optionally inside one pair of
 * brackets: `1 2 3`, `1, 2, 3` and `[1,2,3]` are the same list. Null when any item is not an integer.
 */
export function parseIntegerList(text: string): bigint[] | null {
  let body = text.trim();
  if (body.startsWith('[') && body.endsWith(']')) body = body.slice(1, -1).trim();
  if (body.length === 0) return null;
  const values: bigint[] = [];
  for (const item of body.split(/[\s,]+/)) {
    const value = parseInteger(item);
    if (value === null) return null;
    values.push(value);
  }
  return values;
}

export function sameInteger(answer: string, expected: string): boolean {
  const value = parseInteger(answer);
  return value !== null && value === BigInt(expected);
}

export function sameIntegerList(answer: string, expected: string): boolean {
  const got = parseIntegerList(answer);
  const want = parseIntegerList(expected);
  return got !== null && want !== null && got.length === want.length && got.every((v, i) => v === want[i]);
}
