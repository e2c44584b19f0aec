/**
 * @swarm-node/roles: what a swarm-node does — propose tasks, solve them, evaluate its own and
 * peers' rollouts — and the round loop that composes the three, over a small transport interface.
 */
export { type Checked, Evaluator, type EvaluatorOptions } from './evaluator.js';
export { KnownTasks, type KnownTasksOptions, type TaskVerdict } from './known-tasks.js';
export { MemoryNetwork, type MemoryNetworkOptions } from './memory-transport.js';
export {
  deriveSeed,
  hashToSeed,
  LIMITS,
  type ProposedTask,
  type RolloutMessage,
  rolloutMessageProblem,
  type TaskMessage,
  type TaskProof,
  taskMessageProblem,
  taskProblem,
  taskSigningBytes,
} from './messages.js';
export {
  evaluatePassRates,
  formatPassRateTable,
  PASS_RATE_DEFAULTS,
  type PassRateCell,
  type PassRateOptions,
} from './pass-rates.js';
export { Proposer, type ProposerOptions } from './proposer.js';
export { Relay, type RelayOptions } from './relay.js';
export { RoundLoop, type RoundLoopOptions, type RoundMetrics } from './round-loop.js';
export { type SolvedGroup, type SolveOptions, solve, TaskPool, type TaskPoolOptions } from './solver.js';
export type { Handler, Topic, Topics, Transport, Verdict, VerifySignature } from './transport.js';
