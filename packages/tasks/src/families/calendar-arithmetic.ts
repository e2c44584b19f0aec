import { sameInteger } from '../answer.js';
import { defineFamily } from '../family.js';
import type { Rng } from '../rng.js';

const WEEKDAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'] as const;
const DAY_MS = 86_400_000;

type Question = 'weekday' | 'date' | 'days';

// Day numbers since 1970-01-01; Date.UTC and getUTC* are exact integer arithmetic on every engine.
const dayNumber = (year: number, month: number, day: number) => Date.UTC(year, month - 1, day) / DAY_MS;
const weekdayOf = (days: number) => (((days % 7) + 7 + 4) % 7) as 0 | 1 | 2 | 3 | 4 | 5 | 6; // 1970-01-01 was a Thursday
const dayCount = (count: number) => (count === 1 ? '1 day' : `${count} days`);
const short = (weekday: number) => (WEEKDAYS[weekday] ?? 'Sunday').slice(0, 3);

function isoDate(days: number): string {
  const date = new Date(days * DAY_MS);
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${date.getUTCFullYear()}-${pad(date.getUTCMonth() + 1)}-${pad(date.getUTCDate())}`;
}

function drawDay(rng: Rng, firstYear: number, lastYear: number): number {
  return rng.int(dayNumber(firstYear, 1, 1), dayNumber(lastYear, 12, 31));
}

// One question builder per difficulty; each returns the prompt, the answer and what kind it is.
const LEVELS: readonly ((rng: Rng) => { prompt: string; answer: string; question: Question })[] = [
  (rng) => {
    const start = rng.int(0, 6);
    const offset = rng.int(1, 7);
    return {
      prompt: `Weekday ${dayCount(offset)} after ${short(start)}?`,
      answer: short((start + offset) % 7),
      question: 'weekday',
    };
  },
  (rng) => {
    const start = rng.int(0, 6);
    const offset = rng.int(1, 60);
    const after = rng.coin();
    const answer = short((((start + (after ? offset : -offset)) % 7) + 7) % 7);
    return {
      prompt: `Weekday ${dayCount(offset)} ${after ? 'after' : 'before'} ${short(start)}?`,
      answer,
      question: 'weekday',
    };
  },
  (rng) => {
    const start = drawDay(rng, 2000, 2030);
    const offset = rng.int(1, 31);
    return {
      prompt: `Date ${dayCount(offset)} after ${isoDate(start)}?`,
      answer: isoDate(start + offset),
      question: 'date',
    };
  },
  (rng) => {
    const start = drawDay(rng, 1950, 2050);
    const span = rng.int(32, 365);
    if (rng.coin()) {
      return {
        prompt: `Days from ${isoDate(start)} to ${isoDate(start + span)}?`,
        answer: String(span),
        question: 'days',
      };
    }
    return { prompt: `Date ${span} days before ${isoDate(start)}?`, answer: isoDate(start - span), question: 'date' };
  },
  (rng) => {
    // A reference weekday makes this a reasoning task rather than a memorised calendar.
    const reference = drawDay(rng, 1900, 2100);
    const day = reference + rng.pick([-1, 1]) * rng.int(1, 365);
    return {
      prompt: `${isoDate(reference)} is ${short(weekdayOf(reference))}. Weekday of ${isoDate(day)}?`,
      answer: short(weekdayOf(day)),
      question: 'weekday',
    };
  },
];

export const calendarArithmetic = defineFamily({
  name: 'calendar_arithmetic',
  description:
    'Weekdays and dates some days apart, days between dates; weekdays as Mon or Monday, dates as YYYY-MM-DD.',
  version: 1,
  levels: LEVELS,
  build(rng, ask) {
    const { prompt, answer, question } = ask(rng);
    return { prompt, answer, metadata: { question } };
  },
  check(answer, task) {
    switch (task.metadata.question as Question) {
      case 'weekday':
        return parseWeekday(answer) === parseWeekday(task.answer);
      case 'date': {
        const got = parseDate(answer);
        return got !== null && got === parseDate(task.answer);
      }
      case 'days':
        return sameInteger(answer, task.answer);
    }
  },
});

/** Index 0-6 for a full or three-letter English weekday name in any case, else -1. */
function parseWeekday(text: string): number {
  const lower = text.toLowerCase();
  return WEEKDAYS.findIndex((name) => lower === name.toLowerCase() || lower === name.slice(0, 3).toLowerCase());
}

/** Day number of a real calendar date `YYYY-M-D` (zero padding optional), or null. */
function parseDate(text: string): number | null {
  const match = /^(\d{4})-(\d{1,2})-(\d{1,2})$/.exec(text);
  if (match === null) return null;
  const [year, month, day] = [Number(match[1]), Number(match[2]), Number(match[3])];
  const days = dayNumber(year, month, day);
  // Date.UTC rolls 2023-02-30 over to March; a real date survives the round trip.
  return isoDate(days) === `${match[1]}-${String(month).padStart(2, '0')}-${String(day).padStart(2, '0')}`
    ? days
    : null;
}
