/**
 * A relay: what a bootstrap node runs. It checks peers' messages exactly as a training node does —
 * task specs against the generator, every rollout's rewards by re-verification — so that it can sit
 * in the gossip meshes and forward what is valid, but it has no model and learns nothing.
 */
import { Evaluator } from './evaluator.js';
import { KnownTasks } from './known-tasks.js';
import type { Transport } from './transport.js';

export interface RelayOptions {
  /** Messages older than this are ignored. Default 10 minutes. */
  maxAgeMs?: number;
  now?: () => number;
}

export class Relay {
  readonly tasks: KnownTasks;
  readonly evaluator: Evaluator;
  /** Verdicts on task messages by `verdict:reason` (`accept` alone when accepted). */
  readonly taskCounts: Record<string, number> = {};

  constructor(transport: Transport, options: RelayOptions = {}) {
    const maxAgeMs = options.maxAgeMs ?? 600_000;
    const now = options.now ?? Date.now;
    this.tasks = new KnownTasks({
      maxAgeMs,
      verify: (author, payload, signature) => transport.verify(author, payload, signature),
    });
    this.evaluator = new Evaluator({
      maxAgeMs,
      recogniseTask: (task, proof, at) => this.tasks.recognise(task, proof, at),
    });
    transport.subscribe('tasks', (message, from) => {
      const { verdict, reason } = this.tasks.offer(message, from, now());
      const key = verdict === 'accept' ? 'accept' : `${verdict}:${reason}`;
      this.taskCounts[key] = (this.taskCounts[key] ?? 0) + 1;
      return verdict;
    });
    transport.subscribe('rollouts', (message, from) => this.evaluator.check(message, from, now()).verdict);
  }
}
