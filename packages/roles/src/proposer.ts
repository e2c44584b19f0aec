/**
 * The proposer: each round it publishes a few tasks, seeds bound to its identity and the round,
 * and it moves each family's difficulty toward where groups carry signal.
 *
 * Its reward (a metric, not trained on): 1 − |2p − 1| for a family whose recent pass rate is p,
 * highest (1) when half the completions pass, 0 when all or none do — the groups SAPO learns most
 * from are the ones whose rewards differ.
 */
import { getFamily, type TaskFamily } from '@swarm-node/tasks';
import { deriveSeed, LIMITS, type ProposedTask } from './messages.js';

export interface ProposerOptions {
  /** Families to propose, in turn. */
  families: readonly string[];
  /** Tasks published per round. Default 4. */
  tasksPerRound?: number;
  /** Starting difficulty of every family (clamped to its range). Default 1. */
  startDifficulty?: number;
  /** Move up when the recent pass rate is above this. Default 0.75. */
  raiseAbove?: number;
  /** Move down when it is below this. Default 0.25. */
  lowerBelow?: number;
  /** Weight of the newest group in the running pass rate. Default 0.2. */
  smoothing?: number;
  /** Groups seen at a level before it may move again. Default 8. */
  patience?: number;
  /** Move difficulty at all. Default true; experiments that compare rewards fix it. */
  adapt?: boolean;
}

interface Level {
  family: TaskFamily;
  difficulty: number;
  /** Running pass rate at the current difficulty, or null before any group. */
  passRate: number | null;
  groupsAtLevel: number;
}

export class Proposer {
  readonly peerId: string;
  readonly #levels: Level[];
  readonly #options: Required<Omit<ProposerOptions, 'families'>>;
  #turn = 0;

  constructor(peerId: string, options: ProposerOptions) {
    this.peerId = peerId;
    this.#options = {
      tasksPerRound: 4,
      startDifficulty: 1,
      raiseAbove: 0.75,
      lowerBelow: 0.25,
      smoothing: 0.2,
      patience: 8,
      adapt: true,
      ...options,
    };
    if (options.families.length === 0) throw new RangeError('the proposer needs at least one task family');
    if (this.#options.tasksPerRound < 1 || this.#options.tasksPerRound > LIMITS.tasksPerRound) {
      throw new RangeError(`tasksPerRound must be from 1 to ${LIMITS.tasksPerRound}`);
    }
    this.#levels = options.families.map((name) => {
      const family = getFamily(name);
      const { min, max } = family.difficulty;
      return {
        family,
        difficulty: Math.min(max, Math.max(min, this.#options.startDifficulty)),
        passRate: null,
        groupsAtLevel: 0,
      };
    });
  }

  /** This round's tasks: families in turn at their current difficulty, seeds derived, not chosen. */
  propose(round: number): ProposedTask[] {
    return Array.from({ length: this.#options.tasksPerRound }, (_, index) => {
      const level = this.#levels[this.#turn++ % this.#levels.length] as Level;
      return {
        family: level.family.name,
        seed: deriveSeed(this.peerId, round, index),
        difficulty: level.difficulty,
        generatorVersion: level.family.version,
        proposer: this.peerId,
        round,
        index,
      };
    });
  }

  /** Feeds back how a group on one of our families did (its rewards), from any solver. */
  observe(family: string, difficulty: number, rewards: readonly number[]): void {
    const level = this.#levels.find((l) => l.family.name === family);
    if (level === undefined || level.difficulty !== difficulty || rewards.length === 0) return;
    const pass = rewards.reduce((a, b) => a + b, 0) / rewards.length;
    const { smoothing, raiseAbove, lowerBelow, patience } = this.#options;
    level.passRate = level.passRate === null ? pass : (1 - smoothing) * level.passRate + smoothing * pass;
    level.groupsAtLevel++;
    if (!this.#options.adapt || level.groupsAtLevel < patience) return;
    const { min, max } = level.family.difficulty;
    const next =
      level.passRate > raiseAbove
        ? Math.min(max, level.difficulty + 1)
        : level.passRate < lowerBelow
          ? Math.max(min, level.difficulty - 1)
          : level.difficulty;
    if (next !== level.difficulty) Object.assign(level, { difficulty: next, passRate: null, groupsAtLevel: 0 });
  }

  /** Current difficulty, recent pass rate and proposer reward per family. */
  state(): { family: string; difficulty: number; passRate: number | null; reward: number | null }[] {
    return this.#levels.map((l) => ({
      family: l.family.name,
      difficulty: l.difficulty,
      passRate: l.passRate,
      reward: l.passRate === null ? null : 1 - Math.abs(2 * l.passRate - 1),
    }));
  }
}
