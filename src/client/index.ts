/**
 * statehouse/client — the agents' SDK for a Statehouse gateway. Runs in Node.js ≥ 22 and in browsers;
 * imports nothing of the server.
 */
export { type ConnectOptions, connect, StatehouseClient, type Viewer } from './client.js';
export {
  BadUserInputError,
  ClientClosedError,
  ConnectionError,
  ForbiddenError,
  type GraphQLErrorBody,
  InternalServerError,
  LockHeldError,
  LockLostError,
  NotFoundError,
  PayloadTooLargeError,
  QueryTooComplexError,
  QuotaExceededError,
  RateLimitedError,
  RevisionCompactedError,
  StatehouseError,
  UnauthenticatedError,
  ValidationFailedError,
  VersionConflictError,
} from './errors.js';
export {
  type Agent,
  AgentApi,
  type AgentStatus,
  type ErrorPattern,
  FleetApi,
  type HeartbeatOptions,
  Heartbeats,
  type Insight,
  MetricsApi,
  type MetricPoint,
  type MetricSummary,
  type MetricsOptions,
  type OptimizationRecord,
  type Priority,
  type SystemOverview,
} from './fleet.js';
export { Lock, type LockOptions, lockKey } from './lock.js';
export type { RetryOptions } from './runtime.js';
export {
  CommitBuilder,
  type CommitResult,
  type Entry,
  type EntryVersion,
  type GetOptions,
  type ListOptions,
  Namespace,
  type SetOptions,
  type UpdateOptions,
} from './state.js';
export type { ConnectionState } from './transport.js';
export { type Change, ChangeStream, type WatchOptions } from './watch.js';
