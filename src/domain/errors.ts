/** The error codes of the API contract (§3): every failure a client sees carries one. */
export const ERROR_CODES = [
  'UNAUTHENTICATED',
  'FORBIDDEN',
  'NOT_FOUND',
  'BAD_USER_INPUT',
  'VERSION_CONFLICT',
  'VALIDATION_FAILED',
  'PAYLOAD_TOO_LARGE',
  'QUOTA_EXCEEDED',
  'RATE_LIMITED',
  'REVISION_COMPACTED',
  'QUERY_TOO_COMPLEX',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

/**
 * Domain failures, each with the stable code of the API contract (§3). Services throw these; the
 * GraphQL layer turns them into errors with `extensions.code`, and masks everything else.
 */
export class StatehouseError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = 'StatehouseError';
  }
}

export const unauthenticated = (message = 'A valid token is required') => new StatehouseError('UNAUTHENTICATED', message);

export const forbidden = (message = 'Not allowed') => new StatehouseError('FORBIDDEN', message);

/** An agent's answer for a namespace it cannot see, the same whether it exists or not, so that names do not leak. */
export const unreachableNamespace = () => forbidden('This agent has no access to that namespace, or it does not exist');

export const notFound = (message: string) => new StatehouseError('NOT_FOUND', message);

export const badInput = (field: string, message: string) => new StatehouseError('BAD_USER_INPUT', message, { field });

export const versionConflict = (currentVersion: number) =>
  new StatehouseError('VERSION_CONFLICT', `The current version is ${currentVersion}`, { currentVersion });

export const payloadTooLarge = (field: string, limit: number) =>
  new StatehouseError('PAYLOAD_TOO_LARGE', `${field} is larger than ${limit} bytes`, { field, limit });

export const revisionCompacted = (oldestRevision: string) =>
  new StatehouseError('REVISION_COMPACTED', `History before revision ${oldestRevision} was compacted`, { oldestRevision });
