import { uniformInt } from 'pure-rand/distribution/uniformInt';
import { mersenne } from 'pure-rand/generator/mersenne';
import type { RandomGenerator } from 'pure-rand/types/RandomGenerator';

/**
 * The only source of randomness a generator may use. Mersenne Twister from pure-rand with
 * integer-only uniform draws, so a seed yields the same task on every machine and engine.
 * (pure-rand's xoroshiro128+ seeds its state linearly from the seed, so neighbouring seeds start
 * with correlated draws; the twister's seeding decorrelates them.)
 */
export class Rng {
  readonly #generator: RandomGenerator;

  constructor(seed: number) {
    this.#generator = mersenne(seed);
  }

  /** A uniform integer in [min, max], both ends included. */
  int(min: number, max: number): number {
    return uniformInt(this.#generator, min, max);
  }

  /** True with probability 1/2. */
  coin(): boolean {
    return this.int(0, 1) === 1;
  }

  /** One element, uniformly. */
  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new RangeError('Rng.pick needs at least one item');
    return items[this.int(0, items.length - 1)] as T;
  }

  /** A new array in uniformly random order (Fisher–Yates). */
  shuffle<T>(items: readonly T[]): T[] {
    const out = [...items];
    for (let i = out.length - 1; i > 0; i--) {
      const j = this.int(0, i);
      [out[i], out[j]] = [out[j] as T, out[i] as T];
    }
    return out;
  }
}
