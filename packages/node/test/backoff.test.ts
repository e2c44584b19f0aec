import { describe, expect, it } from 'vitest';
import { Backoff } from '../src/host.js';

const settle = () => new Promise((resolve) => setTimeout(resolve, 0));

describe("the keeper's redial backoff", () => {
  it('waits after a failed dial, not after a good one, and never dials one peer twice at once', async () => {
    const backoff = new Backoff();
    let dials = 0;
    const failing = () => {
      dials++;
      return Promise.reject(new Error('refused'));
    };
    backoff.attempt('a', failing);
    backoff.attempt('a', failing); // in flight: not dialled again
    expect(dials).toBe(1);
    await settle();
    expect(backoff.ready('a')).toBe(false);
    expect(backoff.ready('a', Date.now() + 1001)).toBe(true);
    backoff.attempt('b', () => Promise.resolve());
    await settle();
    expect(backoff.ready('b')).toBe(true);
    expect(backoff.size).toBe(1); // a good dial leaves nothing behind
  });

  it('remembers at most `max` failed peers, forgetting the oldest: a seed that runs for months does not grow it', async () => {
    const backoff = new Backoff(100);
    for (let i = 0; i < 1000; i++) backoff.attempt(`peer-${i}`, () => Promise.reject(new Error('gone')));
    await settle();
    expect(backoff.size).toBe(100);
    expect(backoff.ready('peer-0')).toBe(true); // forgotten: it may be dialled again
    expect(backoff.ready('peer-999')).toBe(false);
  });
});
