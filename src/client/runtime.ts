/**
 * What the parts of the client share: operations with the client's retry rules, the close signal, and the
 * register of things to end when the client closes.
 */
import type { TypedDocumentString } from './generated/graphql.js';
import type { Sink } from './transport.js';

export interface RetryOptions {
  /** Tries after the first for one operation that failed in a way that is safe to repeat. @default 8 */
  attempts?: number;
  /** @default 200 */
  initialDelayMs?: number;
  /** @default 5000 */
  maxDelayMs?: number;
}

/** Something the client ends when it closes, in `stage` order: 0 needs the connection (flush, release), 1 does not. */
export interface Owned {
  stage: 0 | 1;
  close(): Promise<void>;
}

export interface Runtime {
  /** A read: repeated after a lost connection or RATE_LIMITED. */
  query<R, V>(document: TypedDocumentString<R, V>, variables: V): Promise<R>;
  /** A write: repeated only when it surely did not reach the gateway, or was refused with RATE_LIMITED. */
  mutate<R, V>(document: TypedDocumentString<R, V>, variables: V): Promise<R>;
  subscribe<R, V>(document: TypedDocumentString<R, V>, variables: V, sink: Sink<R>): () => void;
  readonly retry: Required<RetryOptions>;
  /** True once `close()` has begun. */
  readonly closing: boolean;
  /** Aborted (with ClientClosedError) when the client closes. */
  readonly closeSignal: AbortSignal;
  /** Registers something to end on close; returns a function that unregisters it. */
  own(resource: Owned): () => void;
  /** Background failures nobody awaits (a heartbeat, a metrics batch). */
  reportError(error: unknown): void;
  /**
   * The newest revision in any answer this client has had (a write's, a read's): everything up to it
   * happened before now, so a stream starting "from now" must start at or after it.
   */
  readonly seenRevision: bigint;
}
