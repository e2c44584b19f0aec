/**
 * The round loop: a node's heartbeat, composing the three roles over a transport and a learner.
 *
 *   propose → solve → evaluate → publish → (peers' rollouts arrive, checked, buffered) →
 *   filter + SAPO step on I local + J external groups → every K rounds a held-out pass rate →
 *   one metrics record
 *
 * The learner is asynchronous (@swarm-node/sapo's Learner): in a node it is a worker thread, so
 * while it samples or trains, this thread keeps validating peers' messages. There is no swarm-wide
 * barrier: every rollout carries its producer, round, policy version and time, and the evaluator's
 * staleness bound, the bounded external buffer and the task pool's age limit keep what a node
 * learns from recent. Checkpoints are the caller's (one writer: the node).
 */
import type { Learner, RolloutGroup, SampleOptions, StepReport } from '@swarm-node/sapo';
import { FAMILIES, getFamily, MAX_SEED, scoreCompletion } from '@swarm-node/tasks';
import { mersenne } from 'pure-rand/generator/mersenne';
import { Evaluator } from './evaluator.js';
import { hashToSeed, LIMITS, type RolloutMessage, taskSigningBytes } from './messages.js';
import { Proposer, type ProposerOptions } from './proposer.js';
import { solve, TaskPool } from './solver.js';
import type { Transport, Verdict } from './transport.js';

export interface RoundLoopOptions {
  transport: Transport;
  learner: Learner;
  /** Task families this node proposes. Default: every built-in family. */
  families?: readonly string[];
  /** G: completions sampled per task. Default 8. */
  groupSize?: number;
  /** Tasks solved per round. Default: the learner's I (localGroups), at least 1. */
  tasksPerRound?: number;
  /**
   * Sampling settings. Default 48 new tokens. Training samples come from the policy itself:
   * temperature 1, no top-k or top-p, because SAPO's ratio compares π_θ with the π_old that sampled.
   */
  sampling?: Partial<Omit<SampleOptions, 'seed'>>;
  /** Peers' groups kept for learning, newest first. Default 256. */
  externalBufferSize?: number;
  /** Tasks and rollouts older than this are dropped. Default 10 minutes. */
  maxAgeMs?: number;
  proposer?: Omit<ProposerOptions, 'families'>;
  /** Whether this node proposes tasks; without, it solves peers' tasks only. Default true. */
  propose?: boolean;
  /**
   * Whether this node publishes its tasks and rollouts. Default true; false makes a free rider (a
   * "consumer"), which still learns from peers' rollouts and relays what gossip passes through it.
   */
  share?: boolean;
  /**
   * Every `every` rounds (0: never), the pass rate on held-out tasks at a fixed difficulty: the same
   * `tasks` seeds per family each time, so a change means the model changed, not the tasks.
   * Default every 0, difficulty 1, 2 tasks per family, 4 samples each.
   */
  heldOut?: { every: number; difficulty?: number; tasks?: number; samples?: number };
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
  /** Mean difficulty of the tasks solved this round (the reward was earned at it), overall and by family. */
  difficulty: number | null;
  difficultyByFamily: Record<string, number>;
  /** The held-out pass rate at its fixed difficulty, in the rounds it was measured. */
  heldOut: { difficulty: number; passRate: number; byFamily: Record<string, number> } | null;
  groups: {
    local: number;
    /** Own groups published this round: `local`, or 0 for a node that does not share. */
    published: number;
    localUsed: number;
    externalUsed: number;
    zeroSignal: { local: number; external: number };
    externalBuffered: number;
    skipped: Record<string, number>;
  };
  /** Verdicts on peers' messages since the last record, by reason. */
  received: { tasks: Record<string, number>; rollouts: Record<string, number> };
  /** Payload bytes sent and received since this node started (cumulative) and in this round. */
  bytes: { sent: number; received: number; round: { sent: number; received: number } };
  learner: Pick<StepReport, 'updated' | 'tokens' | 'losses' | 'gradNorms' | 'stats'>;
  proposer: ReturnType<Proposer['state']>;
  seconds: { solve: number; learn: number; heldOut: number };
}

const TRAINING_SAMPLING = { temperature: 1, topK: 0, topP: 1 } as const;

interface Buffered {
  group: RolloutGroup;
  producer: string;
  time: number;
}

export class RoundLoop {
  readonly transport: Transport;
  readonly learner: Learner;
  readonly proposer: Proposer;
  readonly evaluator: Evaluator;
  readonly pool: TaskPool;
  /** Peers' rollout groups accepted, by producer (the most recently heard 1 024 producers). */
  readonly acceptedByProducer = new Map<string, number>();
  readonly #options: Required<Omit<RoundLoopOptions, 'proposer' | 'heldOut'>>;
  readonly #heldOut: Required<NonNullable<RoundLoopOptions['heldOut']>>;
  readonly #external: Buffered[] = [];
  #taskVerdicts: Record<string, number> = {};
  #lastRollouts: Record<string, number> = {};
  #lastTraffic = { sent: 0, received: 0 };
  #round: number;

  constructor(options: RoundLoopOptions) {
    this.#options = {
      families: FAMILIES.map((f) => f.name),
      groupSize: 8,
      tasksPerRound: Math.max(1, options.learner.info.options.localGroups),
      sampling: {},
      externalBufferSize: 256,
      maxAgeMs: 600_000,
      seed: 0,
      startRound: 0,
      propose: true,
      share: true,
      now: Date.now,
      ...options,
    };
    this.#heldOut = { every: 0, difficulty: 1, tasks: 2, samples: 4, ...options.heldOut };
    for (const [name, value] of Object.entries(this.#heldOut)) {
      if (!Number.isSafeInteger(value) || value < (name === 'every' ? 0 : 1))
        throw new RangeError(
          `heldOut.${name} must be a ${name === 'every' ? 'non-negative' : 'positive'} integer, got ${value}`,
        );
    }
    for (const [key, value] of Object.entries(TRAINING_SAMPLING)) {
      const given = this.#options.sampling[key as keyof typeof TRAINING_SAMPLING];
      if (given !== undefined && given !== value) {
        throw new RangeError(
          `sampling.${key} = ${given}: training samples must come from the policy itself (temperature 1, no top-k or top-p), ` +
            "since SAPO's ratio compares the policy with the one that sampled; leave it at its default",
        );
      }
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
    this.pool = new TaskPool({
      maxAgeMs: this.#options.maxAgeMs,
      verify: (author, payload, signature) => this.transport.verify(author, payload, signature),
    });
    this.evaluator = new Evaluator({
      maxAgeMs: this.#options.maxAgeMs,
      recogniseTask: (task, proof, at) => this.pool.recognise(task, proof, at),
    });
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
    const { share } = this.#options;

    for (const task of this.#options.propose ? this.proposer.propose(round) : []) {
      // Signed, so that rollouts on it carry proof to nodes that never hear this message.
      const signature = await this.transport.sign(taskSigningBytes(task, now));
      this.pool.add(task, now, { time: now, signature });
      if (share) await this.transport.publish('tasks', { task, time: now, signature });
    }

    const solveStart = performance.now();
    const skipped: Record<string, number> = {};
    const count = (reason: string, n = 1) => {
      skipped[reason] = (skipped[reason] ?? 0) + n;
    };
    // Seeds depend on the node's seed and the round only, so a resumed node continues, not repeats.
    const draws = mersenne(hashToSeed('round-loop/draws', this.#options.seed, round));
    const tasks = this.pool.take(this.#options.tasksPerRound, draws, now);
    const solved = await solve(this.learner, tasks, {
      groupSize: this.#options.groupSize,
      sampling: {
        maxNewTokens: 48,
        ...this.#options.sampling,
        seed: hashToSeed('round-loop/sampling', this.#options.seed, round),
      },
    });
    count('prompt-exceeds-context', tasks.length - solved.length);
    const local: RolloutGroup[] = [];
    const passes: Record<string, number[]> = {};
    const difficulties: Record<string, number[]> = {};
    for (const { spec, proof, task, completions, tokens, finished, policyVersion } of solved) {
      const rewards = this.evaluator.score(task, completions);
      local.push({ prompt: task.prompt, completions, rewards, completionTokens: tokens, finished });
      passes[task.family] = [...(passes[task.family] ?? []), ...rewards];
      difficulties[task.family] = [...(difficulties[task.family] ?? []), task.difficulty];
      if (spec.proposer === me) this.proposer.observe(task.family, task.difficulty, rewards);
      if (!share) continue;
      const rollout: RolloutMessage = {
        task: spec,
        producer: me,
        round,
        policyVersion,
        time: now,
        completions,
        rewards,
        finished,
        ...(proof === undefined ? {} : { taskProof: proof }),
      };
      await this.transport.publish('rollouts', rollout);
    }
    const solveSeconds = (performance.now() - solveStart) / 1000;

    const learnStart = performance.now();
    const fresh = this.#freshExternal(now);
    const report = await this.learner.step(local, fresh);
    for (const [reason, n] of Object.entries(report.counts.skipped)) count(reason, n);
    const learnSeconds = (performance.now() - learnStart) / 1000;

    const heldOutStart = performance.now();
    const { every } = this.#heldOut;
    const heldOut = every > 0 && (round + 1) % every === 0 ? await this.heldOutPassRate() : null;
    const heldOutSeconds = (performance.now() - heldOutStart) / 1000;

    const rewards = Object.values(passes).flat();
    const traffic = this.transport.traffic();
    const metrics: RoundMetrics = {
      node: me,
      round,
      time: now,
      policyVersion: this.learner.steps,
      reward: rewards.length === 0 ? null : mean(rewards),
      passRateByFamily: Object.fromEntries(Object.entries(passes).map(([family, r]) => [family, mean(r)])),
      difficulty: solved.length === 0 ? null : mean(solved.map((s) => s.task.difficulty)),
      difficultyByFamily: Object.fromEntries(Object.entries(difficulties).map(([family, d]) => [family, mean(d)])),
      heldOut,
      groups: {
        local: local.length,
        published: share ? local.length : 0,
        localUsed: report.counts.local,
        externalUsed: report.counts.external,
        zeroSignal: report.counts.zeroSignal,
        externalBuffered: fresh.length,
        skipped,
      },
      received: { tasks: this.#taskVerdicts, rollouts: this.#rolloutVerdictsSinceLast() },
      bytes: {
        ...traffic,
        round: { sent: traffic.sent - this.#lastTraffic.sent, received: traffic.received - this.#lastTraffic.received },
      },
      learner: {
        updated: report.updated,
        tokens: report.tokens,
        losses: report.losses,
        gradNorms: report.gradNorms,
        stats: report.stats,
      },
      proposer: this.proposer.state(),
      seconds: { solve: solveSeconds, learn: learnSeconds, heldOut: heldOutSeconds },
    };
    this.#taskVerdicts = {};
    this.#lastTraffic = traffic;
    return metrics;
  }

  /**
   * Mean reward on held-out tasks: `tasks` per family at the fixed difficulty (clamped to each
   * family's range), from seeds no proposer derives (they are not bound to a proposer and round), and
   * a fixed sampling seed — the same prompts and draws every time it is measured.
   */
  async heldOutPassRate(): Promise<{ difficulty: number; passRate: number; byFamily: Record<string, number> }> {
    const { difficulty, tasks: perFamily, samples } = this.#heldOut;
    const tasks = this.#options.families.flatMap((name) => {
      const family = getFamily(name);
      const level = Math.min(family.difficulty.max, Math.max(family.difficulty.min, difficulty));
      return Array.from({ length: perFamily }, (_, i) =>
        family.generate(hashToSeed('round-loop/held-out', name, i) % (MAX_SEED + 1), level),
      );
    });
    const prompts = tasks.flatMap((task) => new Array<string>(samples).fill(task.prompt));
    const completions = await this.learner.sample(prompts, { maxNewTokens: 48, ...this.#options.sampling, seed: 2026 });
    const byFamily: Record<string, number[]> = {};
    completions.forEach((completion, i) => {
      const task = tasks[Math.floor(i / samples)];
      if (completion === null || task === undefined) return;
      byFamily[task.family] = [...(byFamily[task.family] ?? []), scoreCompletion(task, completion.text)];
    });
    const all = Object.values(byFamily).flat();
    return {
      difficulty,
      passRate: all.length === 0 ? 0 : mean(all),
      byFamily: Object.fromEntries(Object.entries(byFamily).map(([family, r]) => [family, mean(r)])),
    };
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
    const accepted = (this.acceptedByProducer.get(from) ?? 0) + 1;
    this.acceptedByProducer.delete(from);
    this.acceptedByProducer.set(from, accepted);
    if (this.acceptedByProducer.size > 1024)
      this.acceptedByProducer.delete(this.acceptedByProducer.keys().next().value as string);
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
