/**
 * Failures of statehouse/client. A GraphQL error from the gateway becomes the class of its contract code
 * (`extensions.code`), so callers catch what they mean: `catch (e) { if (e instanceof VersionConflictError) … }`.
 * Losing or never reaching the gateway is a ConnectionError, which says whether a write may have happened.
 */

/** One GraphQL error as the gateway sends it. */
export interface GraphQLErrorBody {
  message: string;
  path?: readonly (string | number)[];
  extensions?: Record<string, unknown>;
}

/** A failure the gateway answered with; `code` is its `extensions.code` (API.md §3). */
export class StatehouseError extends Error {
  readonly code: string;
  readonly extensions: Record<string, unknown>;
  /** Every error of the answer; this error is the first. */
  readonly errors: readonly GraphQLErrorBody[];

  constructor(error: GraphQLErrorBody, errors: readonly GraphQLErrorBody[] = [error]) {
    super(error.message);
    this.name = new.target.name;
    this.extensions = error.extensions ?? {};
    this.code = typeof this.extensions.code === 'string' ? this.extensions.code : 'UNKNOWN';
    this.errors = errors;
  }
}

/** The token is missing, unknown or revoked. */
export class UnauthenticatedError extends StatehouseError {}

/** Not allowed — also the answer for a namespace that does not exist, so names do not leak. */
export class ForbiddenError extends StatehouseError {}

export class NotFoundError extends StatehouseError {}

/** The input is wrong; `field` names the argument or input field. */
export class BadUserInputError extends StatehouseError {
  get field(): string | undefined {
    return stringOf(this.extensions.field);
  }
}

/** `expectedVersion` (or a commit condition) did not match; nothing was written. */
export class VersionConflictError extends StatehouseError {
  /** The entry's version when the write was refused (0: it does not exist). */
  get currentVersion(): number {
    return typeof this.extensions.currentVersion === 'number' ? this.extensions.currentVersion : Number.NaN;
  }
}

/** The value breaks the namespace's JSON Schema; nothing was written. */
export class ValidationFailedError extends StatehouseError {
  /** JSON pointer of the first offending part of the value. */
  get path(): string | undefined {
    return stringOf(this.extensions.path);
  }
  get reason(): string | undefined {
    return stringOf(this.extensions.reason);
  }
}

export class PayloadTooLargeError extends StatehouseError {}

export class QuotaExceededError extends StatehouseError {}

/** Too many operations; the client waits `retryAfterMs` and tries again by itself before throwing this. */
export class RateLimitedError extends StatehouseError {
  get retryAfterMs(): number | undefined {
    return typeof this.extensions.retryAfterMs === 'number' ? this.extensions.retryAfterMs : undefined;
  }
}

/** The asked moment, or a feed's resume point, is older than the kept history. */
export class RevisionCompactedError extends StatehouseError {
  /** The oldest revision still kept: resume from here (after a full re-read), or read state afresh. */
  get oldestRevision(): string | undefined {
    return stringOf(this.extensions.oldestRevision);
  }
}

export class QueryTooComplexError extends StatehouseError {}

/** The gateway failed in a way it does not explain (the details are in its log). */
export class InternalServerError extends StatehouseError {}

const CLASSES: Record<string, new (error: GraphQLErrorBody, errors: readonly GraphQLErrorBody[]) => StatehouseError> = {
  UNAUTHENTICATED: UnauthenticatedError,
  FORBIDDEN: ForbiddenError,
  NOT_FOUND: NotFoundError,
  BAD_USER_INPUT: BadUserInputError,
  VERSION_CONFLICT: VersionConflictError,
  VALIDATION_FAILED: ValidationFailedError,
  PAYLOAD_TOO_LARGE: PayloadTooLargeError,
  QUOTA_EXCEEDED: QuotaExceededError,
  RATE_LIMITED: RateLimitedError,
  REVISION_COMPACTED: RevisionCompactedError,
  QUERY_TOO_COMPLEX: QueryTooComplexError,
  INTERNAL_SERVER_ERROR: InternalServerError,
};

/** The typed error for a GraphQL answer's errors (the first one decides the class). */
export function errorFromGraphQL(errors: readonly GraphQLErrorBody[]): StatehouseError {
  const first = errors[0] ?? { message: 'The gateway answered with an empty error list' };
  const code = first.extensions?.code;
  const ErrorClass = (typeof code === 'string' && Object.hasOwn(CLASSES, code) ? CLASSES[code] : undefined) ?? StatehouseError;
  return new ErrorClass(first, errors);
}

/**
 * The gateway could not be reached, or the connection was lost before an answer came. When
 * `maybeApplied` is true a mutation had been sent: it may or may not have taken effect, so it was not
 * repeated (read the state to find out). Operations that were not sent, and reads, are retried with
 * backoff before this is thrown.
 */
export class ConnectionError extends Error {
  readonly maybeApplied: boolean;
  /** False when trying again cannot help (the gateway refused the protocol, say). */
  readonly retryable: boolean;
  /** The WebSocket close code, when a socket closed. */
  readonly closeCode: number | undefined;

  constructor(message: string, options: { maybeApplied: boolean; retryable?: boolean; closeCode?: number; cause?: unknown }) {
    super(message, { cause: options.cause });
    this.name = 'ConnectionError';
    this.maybeApplied = options.maybeApplied;
    this.retryable = options.retryable ?? true;
    this.closeCode = options.closeCode;
  }
}

/** The client was closed; no more operations run on it. */
export class ClientClosedError extends Error {
  constructor() {
    super('The Statehouse client is closed');
    this.name = 'ClientClosedError';
  }
}

/** A lock held by this client was lost: renewal was refused (someone else holds it now) or came too late. */
export class LockLostError extends Error {
  readonly lockName: string;
  constructor(lockName: string, reason: string, options: { cause?: unknown } = {}) {
    super(`Lock ${JSON.stringify(lockName)} was lost: ${reason}`, options);
    this.name = 'LockLostError';
    this.lockName = lockName;
  }
}

/** The lock is held by someone else (tryLock, or lock with a wait that ran out). */
export class LockHeldError extends Error {
  readonly lockName: string;
  constructor(lockName: string) {
    super(`Lock ${JSON.stringify(lockName)} is held by someone else`);
    this.name = 'LockHeldError';
    this.lockName = lockName;
  }
}

function stringOf(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}
