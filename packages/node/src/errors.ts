/**
 * Errors an operator can act on: each has a stable code and a message that says what to do.
 * The command line prints the message and exits with EXIT_RUNTIME (1) or, for bad settings, 2.
 */
export type NodeErrorCode =
  | 'BAD_CONFIG'
  | 'BAD_ADDRESS'
  | 'DATA_DIR_UNUSABLE'
  | 'IDENTITY_CORRUPT'
  | 'PORT_IN_USE'
  | 'STATUS_UNREACHABLE'
  | 'LEARNER_CRASHED'
  | 'CHECKPOINTS_OF_ANOTHER_MODEL';

const USAGE_CODES: ReadonlySet<NodeErrorCode> = new Set(['BAD_CONFIG', 'BAD_ADDRESS']);

export class NodeError extends Error {
  readonly code: NodeErrorCode;

  constructor(code: NodeErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'NodeError';
    this.code = code;
  }

  /** True when the operator's settings are wrong (exit 2), not the machine or the network (exit 1). */
  get isUsage(): boolean {
    return USAGE_CODES.has(this.code);
  }
}
