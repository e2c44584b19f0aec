/**
 * Typed errors of the learner. Each carries a stable `code` for programs and a message that
 * tells a person what to do next.
 */
export class SapoError extends Error {
  readonly code: string;

  constructor(code: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/**
 * A checkpoint that cannot be saved or loaded as asked. `file` is its path, or the label given to
 * decodeCheckpoint. Codes: CHECKPOINT_NOT_FOUND, CHECKPOINT_UNREADABLE, CHECKPOINT_TRUNCATED,
 * CHECKPOINT_CORRUPT, CHECKPOINT_UNSUPPORTED (another format, format version or dtype),
 * CHECKPOINT_MISMATCH (config, tokenizer or shapes differ from the model's) and
 * CHECKPOINT_INVALID (what was handed to save cannot be stored).
 */
export class CheckpointError extends SapoError {
  readonly file: string;

  constructor(code: string, file: string, message: string, options?: ErrorOptions) {
    super(code, message, options);
    this.file = file;
  }
}
