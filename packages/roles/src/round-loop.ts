/**
 * The round loop: a node's heartbeat, composing the three roles over a transport.
 *
 *   propose → solve → evaluate → publish → (peers' rollouts arrive, checked, buffered) →
 *   filter + SAPO step on I local + J external groups → periodic checkpoint → one metrics record
 *
 * There is no swarm-wide barrier: every rollout carries its producer, round, policy version and
 * time, and the evaluator's staleness bound, the bounded external buffer and the task pool's age
 * limit keep what a node learns from recent.
 */
import {
  learnerCheckpoint,
  type RolloutGroup,
  type SampleOptions,
  type SapoLearner,
  type StepReport,
  saveCheckpoint,
} from '@swarm-node/sapo';
import { FAMILIES } from '@swarm-node/tasks';
import { mersenne } from 'pure-rand/generator/mersenne';
import { Evaluator } from './evaluator.js';
import { hashToSeed, LIMITS, type RolloutMessage } from './messages.js';
import { Proposer, type ProposerOptions } from './proposer.js';
import { solve, TaskPool } from './solver.js';
import type { Transport, Verdict } from './transport.js';

export interface RoundLoopOptions {
  transport: Transport;
  learner: SapoLearner;
  /** Task families this node proposes. Default: every built-in family. */
  families?: readonly string[];
  /** G: completions sampled per task. Default 8. */
  groupSize?: number;
  /** Tasks solved per round. Default: the learner's I (localGroups), at least 1. */
  tasksPerRound?: number;
  /** Sampling settings. Default temperature 1, 48 new tokens. */
  sampling?: Partial<Omit<SampleOptions, 'seed'>>;
  /** Peers' groups kept for learning, newest first. Default 256. */
  externalBufferSize?: number;
  /** Tasks and rollouts older than this are dropped. Default 10 minutes. */
  maxAgeMs?: number;
  proposer?: Omit<ProposerOptions, 'families'>;
  /** Whether this node proposes tasks; without, it solves peers' tasks only. Default true. */
  propose?: boolean;
  /** Save the learner every `every` rounds into `dir`, keeping `keep` files. */
  checkpoint?: { dir: string; every: number; keep?: number };
  /** Seeds task draws and sampling (each round's seeds derive from it and the round). Default 0. */
  seed?: number;
  /** The first round's number, when resuming. Default 0. */
  startRound?: number;
  /** The clock (ms). Default Date.now. */
  now?: () => number;
}

export interface RoundMetrics {
  node: string;
  round: number;
  time: number;
  policyVersion: number;
  /** Mean reward of this round's own completions, overall and by family; null when it solved nothing. */
  reward: number | null;
  passRateByFamily: Record<string, number>;
  groups: {
    local: number;
    localUsed: number;
    externalUsed: number;
    zeroSignal: { local: number; external: number };
    externalBuffered: number;
    skipped: Record<string, number>;
  };
  /** Verdicts on peers' messages since the last record, by reason. */
  received: { tasks: Record<string, number>; rollouts: Record<string, number> };
  bytes: { sent: number; received: number };
  learner: Pick<StepReport, 'updated' | 'tokens' | 'losses' | 'gradNorms'>;
  proposer: ReturnType<Proposer['state']>;
  seconds: { solve: number; learn: number };
  /** The checkpoint file saved at the end of this round, if one was. */
  checkpoint: string | null;
}

interface Buffered {
  group: RolloutGroup;
  producer: string;
  time: number;
}

export class RoundLoop {
  readonly transport: Transport;
  readonly learner: SapoLearner;
  readonly proposer: Proposer;
  readonly evaluator: Evaluator;
  readonly pool: TaskPool;
  readonly #options: Required<Omit<RoundLoopOptions, 'checkpoint' | 'proposer'>> & Pick<RoundLoopOptions, 'checkpoint'>;
  readonly #external: Buffered[] = [];
  #taskVerdicts: Record<string, number> = {};
  #lastRollouts: Record<string, number> = {};
  #round: number;

  constructor(options: RoundLoopOptions) {
    this.#options = {
      families: FAMILIES.map((f) => f.name),
      groupSize: 8,
      tasksPerRound: Math.max(1, options.learner.options.localGroups),
      sampling: {},
      externalBufferSize: 256,
      maxAgeMs: 600_000,
      seed: 0,
      startRound: 0,
      propose: true,
      now: Date.now,
      ...options,
    };
    const every = options.checkpoint?.every;
    if (every !== undefined && (!Number.isInteger(every) || every < 1)) {
      throw new RangeError(`checkpoint.every must be a positive integer (rounds between saves), got ${every}`);
    }
    const { groupSize } = this.#options;
    if (!Number.isInteger(groupSize) || groupSize < 2 || groupSize > LIMITS.maxGroupSize) {
      throw new RangeError(
        `groupSize must be an integer from 2 (a group of one has no advantage) to ${LIMITS.maxGroupSize} (peers reject larger groups)`,
      );
    }
    this.transport = options.transport;
    this.learner = options.learner;
    this.proposer = new Proposer(this.transport.peerId, {
      tasksPerRound: this.#options.tasksPerRound,
      ...options.proposer,
      families: this.#options.families,
    });
    this.pool = new TaskPool({ maxAgeMs: this.#options.maxAgeMs });
    this.evaluator = new Evaluator({ maxAgeMs: this.#options.maxAgeMs, isKnownTask: (task) => this.pool.knows(task) });
    this.#round = this.#options.startRound;
    this.transport.subscribe('tasks', (message, from) => this.#onTask(message, from));
    this.transport.subscribe('rollouts', (message, from) => this.#onRollout(message, from));
  }

  get round(): number {
    return this.#round;
  }

  /** One round: propose, solve, evaluate, publish, learn; returns its metrics record. */
  async runRound(): Promise<RoundMetrics> {
    const round = this.#round++;
    const now = this.#options.now();
    const me = this.transport.peerId;

    for (const task of this.#options.propose ? this.proposer.propose(round) : []) {
      this.pool.add(task, now);
      await this.transport.publish('tasks', { task, time: now });
    }

    const solveStart = performance.now();
    const skipped: Record<string, number> = {};
    const { contextLength } = this.learner.policy.config;
    // Seeds depend on the node's seed and the round only, so a resumed node continues, not repeats.
    const draws = mersenne(hashToSeed('round-loop/draws', this.#options.seed, round));
    const tasks = this.pool.take(this.#options.tasksPerRound, draws, now).filter(({ task }) => {
      const fits = this.learner.tokenizer.encodePrompt(task.prompt).length < contextLength;
      if (!fits) skipped['prompt-exceeds-context'] = (skipped['prompt-exceeds-context'] ?? 0) + 1;
      return fits;
    });
    const solved = solve(this.learner.policy, this.learner.tokenizer, tasks, {
      groupSize: this.#options.groupSize,
      sampling: {
        temperature: 1,
        maxNewTokens: 48,
        ...this.#options.sampling,
        seed: hashToSeed('round-loop/sampling', this.#options.seed, round),
      },
      policyVersion: this.learner.steps,
    });
    const local: RolloutGroup[] = [];
    const passes: Record<string, number[]> = {};
    for (const { spec, task, completions, tokens, finished, policyVersion } of solved) {
      const rewards = this.evaluator.score(task, completions);
      local.push({ prompt: task.prompt, completions, rewards, completionTokens: tokens, finished });
      passes[task.family] = [...(passes[task.family] ?? []), ...rewards];
      if (spec.proposer === me) this.proposer.observe(task.family, task.difficulty, rewards);
      const rollout: RolloutMessage = {
        task: spec,
        producer: me,
        round,
        policyVersion,
        time: now,
        completions,
        rewards,
        finished,
      };
      await this.transport.publish('rollouts', rollout);
    }
    const solveSeconds = (performance.now() - solveStart) / 1000;

    const learnStart = performance.now();
    const fresh = this.#freshExternal(now);
    const report = this.learner.step(local, fresh);
    for (const [reason, n] of Object.entries(report.counts.skipped)) skipped[reason] = (skipped[reason] ?? 0) + n;
    const learnSeconds = (performance.now() - learnStart) / 1000;

    const { checkpoint } = this.#options;
    let saved: string | null = null;
    if (checkpoint !== undefined && (round + 1) % checkpoint.every === 0) {
      const state = await learnerCheckpoint(this.learner, { node: me, round: String(round) });
      try {
        saved = await saveCheckpoint(checkpoint.dir, state, { keep: checkpoint.keep ?? 3 });
      } finally {
        state.release();
      }
    }

    const rewards = Object.values(passes).flat();
    const metrics: RoundMetrics = {
      node: me,
      round,
      time: now,
      policyVersion: this.learner.steps,
      reward: rewards.length === 0 ? null : mean(rewards),
      passRateByFamily: Object.fromEntries(Object.entries(passes).map(([family, r]) => [family, mean(r)])),
      groups: {
        local: local.length,
        localUsed: report.counts.local,
        externalUsed: report.counts.external,
        zeroSignal: report.counts.zeroSignal,
        externalBuffered: fresh.length,
        skipped,
      },
      received: { tasks: this.#taskVerdicts, rollouts: this.#rolloutVerdictsSinceLast() },
      bytes: this.transport.traffic(),
      learner: { updated: report.updated, tokens: report.tokens, losses: report.losses, gradNorms: report.gradNorms },
      proposer: this.proposer.state(),
      seconds: { solve: solveSeconds, learn: learnSeconds },
      checkpoint: saved,
    };
    this.#taskVerdicts = {};
    return metrics;
  }

  /** Peers' groups young enough to learn from, newest first. */
  #freshExternal(now: number): RolloutGroup[] {
    while (this.#external.length > 0 && (this.#external.at(-1)?.time ?? now) < now - this.#options.maxAgeMs)
      this.#external.pop();
    return this.#external.map((entry) => entry.group);
  }

  #onTask(message: unknown, from: string): Verdict {
    const { verdict, reason } = this.pool.offer(message, from, this.#options.now());
    const key = verdict === 'accept' ? 'accept' : `${verdict}:${reason}`;
    this.#taskVerdicts[key] = (this.#taskVerdicts[key] ?? 0) + 1;
    return verdict;
  }

  #onRollout(message: unknown, from: string): Verdict {
    const checked = this.evaluator.check(message, from, this.#options.now());
    if (checked.verdict !== 'accept' || checked.task === undefined) return checked.verdict;
    const rollout = message as RolloutMessage;
    // At most our own G completions per group, so a peer's big groups cannot multiply our step's cost.
    const { groupSize, externalBufferSize } = this.#options;
    const group = {
      prompt: checked.task.prompt,
      completions: rollout.completions.slice(0, groupSize),
      rewards: rollout.rewards.slice(0, groupSize),
      ...(rollout.finished === undefined ? {} : { finished: rollout.finished.slice(0, groupSize) }),
    };
    // One producer may hold at most a quarter of the buffer: its newest groups replace its oldest.
    const mine = this.#external.filter((entry) => entry.producer === from);
    if (mine.length >= Math.max(1, Math.floor(externalBufferSize / 4))) {
      this.#external.splice(this.#external.lastIndexOf(mine.at(-1) as Buffered), 1);
    }
    this.#external.unshift({ group, producer: from, time: rollout.time });
    if (this.#external.length > externalBufferSize) this.#external.pop();
    if (rollout.task.proposer === this.transport.peerId) {
      this.proposer.observe(rollout.task.family, rollout.task.difficulty, rollout.rewards);
    }
    return 'accept';
  }

  #rolloutVerdictsSinceLast(): Record<string, number> {
    const since: Record<string, number> = {};
    for (const [key, total] of Object.entries(this.evaluator.counts)) {
      const delta = total - (this.#lastRollouts[key] ?? 0);
      if (delta > 0) since[key] = delta;
    }
    this.#lastRollouts = { ...this.evaluator.counts };
    return since;
  }
}

const mean = (values: readonly number[]) => values.reduce((a, b) => a + b, 0) / values.length;
