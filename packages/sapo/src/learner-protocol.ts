/** The messages between a learner worker and its caller (learner.ts, learner-worker.ts), and its typed errors. */
import { CheckpointError, SapoError } from './errors.js';
import type { Learner, LearnerInfo } from './learner.js';

type Methods = 'sample' | 'step' | 'save' | 'memory' | 'close';
export type Request = {
  [M in Methods]: { id: number; method: M; args: Parameters<Learner[M]> };
}[Methods];

export interface SerializedError {
  name: string;
  message: string;
  code?: string;
  file?: string;
  stack?: string;
}

export type Reply =
  | { type: 'ready'; info: LearnerInfo }
  | { type: 'failed'; error: SerializedError }
  | { type: 'result'; id: number; value: unknown; steps: number }
  | { type: 'error'; id: number; error: SerializedError };

/** The learner worker stopped (an uncaught error, out of memory, killed): code LEARNER_CRASHED. */
export class LearnerCrashedError extends SapoError {
  constructor(message: string, options?: ErrorOptions) {
    super('LEARNER_CRASHED', message, options);
  }
}

export function serializeError(error: unknown): SerializedError {
  if (!(error instanceof Error)) return { name: 'Error', message: String(error) };
  const { name, message, stack } = error;
  const code = error instanceof SapoError ? error.code : undefined;
  const file = error instanceof CheckpointError ? error.file : undefined;
  return {
    name,
    message,
    ...(stack === undefined ? {} : { stack }),
    ...(code === undefined ? {} : { code }),
    ...(file === undefined ? {} : { file }),
  };
}

/** The same kind of error on this side: CheckpointError and SapoError keep their codes. */
export function deserializeError(error: SerializedError): Error {
  const revived =
    error.name === 'CheckpointError' && error.code !== undefined
      ? new CheckpointError(error.code, error.file ?? '', error.message)
      : error.code !== undefined
        ? new SapoError(error.code, error.message)
        : new Error(error.message);
  if (error.stack !== undefined)
    revived.stack = `${revived.name}: ${error.message}\n(in the learner worker)\n${error.stack}`;
  return revived;
}
