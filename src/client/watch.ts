/**
 * A change feed that survives disconnects. The gateway replays every change after a given revision and
 * then goes on live (`entryChanged(afterRevision:)`); the stream remembers where it is and, whenever the
 * subscription breaks (a lost socket, a gateway restart), subscribes again from there. So the consumer
 * sees every change exactly once, in revision order.
 *
 * The changes of one commit share a revision, and a subscription can break between them. The stream
 * therefore resumes from just before the revision it was in the middle of and skips the changes of that
 * revision it already has (told apart by namespace, scope and key, as the contract says).
 */
import { ClientClosedError, ConnectionError, RateLimitedError } from './errors.js';
import { type ChangeFieldsFragment, EntryChangedDocument, SystemOverviewDocument } from './generated/graphql.js';
import type { Runtime } from './runtime.js';
import { backoffDelay, deferred, sleep } from './timing.js';

/** How long `ready` waits for the gateway's head to reach what the client has seen. */
const NOW_WAIT_MS = 10_000;

/** One change: SET (value written), DELETE or EXPIRE (value null). */
export type Change<T = unknown> = Omit<ChangeFieldsFragment, 'value'> & { value: T | null };

export interface WatchOptions {
  /** Only this namespace; every namespace the token can read when left out. */
  namespace?: string;
  scope?: string;
  /** Only keys that start with this, literally. */
  keyPrefix?: string;
  /**
   * Start after this revision (replaying what came since, as far as history is kept). Left out: the
   * changes from now on — from when `ready` resolves.
   */
  afterRevision?: string;
  /**
   * Changes held for a consumer that reads slower than they come. When full, the stream lets go of its
   * subscription and takes it up again, from where it is, once the consumer has caught up. @default 1000
   */
  bufferSize?: number;
  /** Ends the stream. */
  signal?: AbortSignal;
}

type Filter = Pick<WatchOptions, 'namespace' | 'scope' | 'keyPrefix'>;

const identity = (change: { namespace: string; scope: string; key: string }) =>
  `${change.namespace}\u0000${change.scope}\u0000${change.key}`;

/**
 * An async iterator of changes. Ends (done) when closed — `break` out of `for await`, `close()`, the
 * signal, or the client closing — and throws a typed error when it cannot go on: RevisionCompactedError
 * (the resume point is older than the kept history; `oldestRevision` says what is left), ForbiddenError
 * (access was revoked), UnauthenticatedError (the token was).
 */
export class ChangeStream<T = unknown> implements AsyncIterableIterator<Change<T>> {
  private readonly queue: Change<T>[] = [];
  private wake: (() => void) | undefined;
  private failure: Error | undefined;
  private ended = false;
  private unsubscribe: (() => void) | undefined;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private failures = 0;
  private paused = false;
  /** Revision of the last change taken from the gateway, and the changes of that revision taken. */
  private revision: string | undefined;
  private readonly atRevision = new Set<string>();
  /** Every change up to this revision has been taken. */
  private complete: string | undefined;
  private readonly bufferSize: number;
  private readonly release: () => void;
  private readonly onAbort = () => void this.close();
  private readonly started = deferred<string>();

  constructor(
    private readonly runtime: Runtime,
    private readonly filter: Filter,
    private readonly options: WatchOptions,
  ) {
    this.bufferSize = Math.max(1, options.bufferSize ?? 1_000);
    this.started.promise.catch(() => {});
    this.release = runtime.own({ stage: 1, close: () => this.close() });
    options.signal?.addEventListener('abort', this.onAbort, { once: true });
    if (options.signal?.aborted) void this.close();
    else void this.begin();
  }

  /**
   * Resolves with the revision the stream starts after, once known. Without `afterRevision`, "now" is
   * when this resolves: the stream holds every change written after this resolves, and none this client had
   * already seen an answer with (its own acknowledged writes; `delete` answers no revision, so a
   * delete just before may still be delivered). Await it before writing what the
   * stream must see.
   */
  get ready(): Promise<string> {
    return this.started.promise;
  }

  /**
   * The stream itself once `ready` has resolved, for one line that cannot forget the wait:
   * `const changes = await numbers.watch().whenReady();` — every change written after this resolves is
   * delivered.
   */
  async whenReady(): Promise<this> {
    await this.started.promise;
    return this;
  }

  /**
   * Where a later stream should start (`afterRevision`) to miss nothing of what this one has not handed
   * out yet. Undefined until the starting point is known.
   */
  get resumeAfter(): string | undefined {
    return this.complete;
  }

  private async begin(): Promise<void> {
    try {
      // "From now on" must be a revision too, or a disconnect before the first change would lose changes.
      this.complete = this.options.afterRevision ?? (await this.now());
      this.started.resolve(this.complete);
      this.subscribe();
    } catch (error) {
      if (error instanceof ConnectionError && error.retryable) this.retryLater(() => void this.begin());
      else this.fail(error);
    }
  }

  /**
   * The newest revision of the change log that is final (below the gateway's watermark), once it has
   * caught up with everything this client has seen. A write is acknowledged when it commits, but it is
   * final only when every transaction that began before it has ended too; until then the gateway's head
   * is behind it, and a stream starting there would replay the client's own acknowledged writes as
   * news. Waits for the head with backoff, at most NOW_WAIT_MS; past that it starts at the head (some
   * changes from before may then be delivered, none is lost).
   */
  private async now(): Promise<string> {
    const seen = this.runtime.seenRevision;
    const deadline = Date.now() + NOW_WAIT_MS;
    for (let attempt = 0; ; attempt++) {
      const { revision } = (await this.runtime.query(SystemOverviewDocument, {})).systemOverview;
      if (BigInt(revision) >= seen || Date.now() >= deadline || this.ended) return revision;
      await sleep(backoffDelay(attempt, { initialDelayMs: 5, maxDelayMs: 200 }), this.runtime.closeSignal);
    }
  }

  /** The revision to resume after: just before the one in progress, or the last complete one. */
  private resumePoint(): string | undefined {
    if (this.revision === undefined) return this.complete;
    const previous = BigInt(this.revision) - 1n;
    return (previous < 0n ? 0n : previous).toString();
  }

  private subscribe(): void {
    if (this.ended) return;
    this.unsubscribe = this.runtime.subscribe(
      EntryChangedDocument,
      { ...this.filter, afterRevision: this.resumePoint() },
      {
        next: ({ entryChanged }) => this.take(entryChanged as Change<T>),
        error: (error) => {
          this.unsubscribe = undefined;
          const transient =
            (error instanceof ConnectionError && error.retryable) ||
            (error instanceof RateLimitedError && error.retryAfterMs !== undefined);
          if (error instanceof ClientClosedError) void this.close();
          else if (transient) this.retryLater(() => this.subscribe(), error instanceof RateLimitedError ? error.retryAfterMs : undefined);
          else this.fail(error);
        },
        // The gateway ends subscriptions when it shuts down: take it up again once it is back.
        complete: () => {
          this.unsubscribe = undefined;
          this.retryLater(() => this.subscribe());
        },
      },
    );
  }

  private take(change: Change<T>): void {
    if (this.ended || this.paused) return;
    const id = identity(change);
    if (this.revision !== undefined) {
      const order = compareRevisions(change.revision, this.revision);
      if (order < 0 || (order === 0 && this.atRevision.has(id))) return; // already taken before a resume
      if (order > 0) {
        this.complete = this.revision;
        this.atRevision.clear();
      }
    }
    this.revision = change.revision;
    this.atRevision.add(id);
    this.failures = 0;
    this.queue.push(change);
    this.wake?.();
    if (this.queue.length >= this.bufferSize) {
      this.paused = true;
      this.unsubscribe?.();
      this.unsubscribe = undefined;
    }
  }

  private retryLater(again: () => void, delayMs?: number): void {
    if (this.ended) return;
    const wait = delayMs ?? backoffDelay(this.failures++, this.runtime.retry);
    this.retryTimer = setTimeout(again, wait);
  }

  private fail(error: unknown): void {
    if (this.ended) return;
    this.failure = error instanceof Error ? error : new Error(String(error));
    this.started.reject(this.failure);
    this.stop();
  }

  private stop(): void {
    this.ended = true;
    this.started.reject(new Error('The stream ended before it started'));
    clearTimeout(this.retryTimer);
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    this.release();
    this.options.signal?.removeEventListener('abort', this.onAbort);
    this.wake?.();
  }

  async next(): Promise<IteratorResult<Change<T>, undefined>> {
    for (;;) {
      const change = this.queue.shift();
      if (change) {
        if (this.paused && this.queue.length === 0 && !this.ended) {
          this.paused = false;
          this.subscribe();
        }
        return { value: change, done: false };
      }
      if (this.failure) {
        const failure = this.failure;
        this.failure = undefined;
        throw failure;
      }
      if (this.ended) return { value: undefined, done: true };
      await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = undefined;
    }
  }

  async return(): Promise<IteratorResult<Change<T>, undefined>> {
    await this.close();
    return { value: undefined, done: true };
  }

  /** Ends the stream; changes not yet handed out are dropped. */
  async close(): Promise<void> {
    if (this.ended) return;
    this.queue.length = 0;
    this.stop();
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

export function openChangeStream<T>(runtime: Runtime, options: WatchOptions): ChangeStream<T> {
  const { namespace, scope, keyPrefix } = options;
  return new ChangeStream<T>(runtime, { namespace, scope, keyPrefix }, options);
}

function compareRevisions(a: string, b: string): number {
  const difference = BigInt(a) - BigInt(b);
  return difference < 0n ? -1 : difference > 0n ? 1 : 0;
}
