import type { Logger } from '../logger.js';
import type { EventBus } from './bus.js';

/** The least a change must tell the feed: its place in the log. */
export interface LoggedChange {
  revision: string;
  namespace: string;
  scope: string;
  key: string;
}

/**
 * A place in a tenant's change log: after all of `revision`, or — with namespace, scope and key —
 * after that one change of it (a page may end inside a commit).
 */
export interface LogPosition {
  revision: string;
  namespace?: string;
  scope?: string;
  key?: string;
}

export interface ChangeSource<C extends LoggedChange> {
  /** The newest revision below the watermark. */
  head(tenantId: string): Promise<string>;
  /** Changes after `after`, oldest first, below the watermark; and the watermark itself. */
  page(tenantId: string, after: LogPosition, limit: number): Promise<{ changes: C[]; watermark: string }>;
}

export type FeedListener<C> = (changes: readonly C[]) => void;

const PAGE = 1_000;
const SAFETY_POLL_MS = 2_000;

export const positionOf = (change: LoggedChange): LogPosition => ({
  revision: change.revision,
  namespace: change.namespace,
  scope: change.scope,
  key: change.key,
});

/**
 * One reader of a tenant's change log per process, shared by all its subscriptions: a commit costs
 * one query here however many subscribers there are. It wakes on change notices (from this
 * process or, through LISTEN/NOTIFY, from others) and reads only below the watermark — the oldest
 * transaction still running — so it never delivers revision r+1 before r.
 */
class TenantFeed<C extends LoggedChange> {
  private readonly listeners = new Set<FeedListener<C>>();
  private notified = 0n;
  /** Every change below this revision has been delivered (the watermark of the last read that was not a full page). */
  private readBelow = 0n;
  private pumping = false;
  private again = false;
  private retry: NodeJS.Timeout | undefined;
  private retryDelay = 1;
  private readonly poll: NodeJS.Timeout;

  constructor(
    private readonly tenantId: string,
    private readonly source: ChangeSource<C>,
    private readonly logger: Logger,
    /** Everything up to here has been delivered. */
    public position: LogPosition,
  ) {
    // Covers a notice lost while the LISTEN connection was down.
    this.poll = setInterval(() => this.wake(), SAFETY_POLL_MS);
    this.poll.unref();
  }

  get size(): number {
    return this.listeners.size;
  }

  /**
   * How far delivery trails the newest revision this feed was told of; 0 when caught up. A notified
   * revision may have no change left to deliver (its namespace deleted meanwhile): a read that
   * reached the watermark covers it all the same.
   */
  get lag(): bigint {
    const delivered = BigInt(this.position.revision);
    const through = delivered > this.readBelow - 1n ? delivered : this.readBelow - 1n;
    return this.notified > through ? this.notified - through : 0n;
  }

  /** Adds a listener; the returned position is where its live changes begin (exclusive). */
  attach(listener: FeedListener<C>): { position: LogPosition; detach: () => void } {
    this.listeners.add(listener);
    return { position: this.position, detach: () => this.listeners.delete(listener) };
  }

  close(): void {
    clearInterval(this.poll);
    clearTimeout(this.retry);
    this.listeners.clear();
  }

  wake(revision?: string): void {
    if (revision !== undefined && BigInt(revision) > this.notified) this.notified = BigInt(revision);
    if (this.pumping) {
      this.again = true;
      return;
    }
    void this.pump();
  }

  private async pump(): Promise<void> {
    this.pumping = true;
    clearTimeout(this.retry);
    this.retry = undefined;
    try {
      do {
        this.again = false;
        const { changes, watermark } = await this.source.page(this.tenantId, this.position, PAGE);
        const last = changes.at(-1);
        if (last) {
          this.position = positionOf(last);
          this.retryDelay = 1;
          for (const listener of this.listeners) listener(changes);
        }
        if (changes.length === PAGE) this.again = true;
        else {
          this.readBelow = BigInt(watermark);
          // A notified revision not yet below the watermark waits for an older transaction to end.
          if (this.notified >= this.readBelow) this.scheduleRetry();
        }
      } while (this.again);
    } catch (error) {
      this.logger.error({ err: error, tenantId: this.tenantId }, 'change feed read failed; retrying');
      this.scheduleRetry();
    } finally {
      this.pumping = false;
    }
  }

  private scheduleRetry(): void {
    if (this.retry) return;
    this.retry = setTimeout(() => {
      this.retry = undefined;
      this.wake();
    }, this.retryDelay);
    this.retryDelay = Math.min(this.retryDelay * 2, 200);
  }
}

/** The tenant feeds of this process, opened on the first subscriber and closed after the last. */
export class ChangeFeeds<C extends LoggedChange> {
  private readonly feeds = new Map<string, Promise<TenantFeed<C>>>();
  /** The feeds of `feeds` once open, for a synchronous look (metrics). */
  private readonly open = new Set<TenantFeed<C>>();

  constructor(
    private readonly source: ChangeSource<C>,
    bus: EventBus,
    private readonly logger: Logger,
  ) {
    bus.on((event) => {
      if (event.type !== 'changes') return;
      void this.feeds.get(event.tenantId)?.then((feed) => feed.wake(event.revision));
    });
  }

  /** Wakes every feed: after a reconnection to the database, when notices may have been missed. */
  wakeAll(): void {
    for (const feed of this.feeds.values()) void feed.then((f) => f.wake());
  }

  async attach(tenantId: string, listener: FeedListener<C>): Promise<{ position: LogPosition; detach: () => void }> {
    let feed = this.feeds.get(tenantId);
    if (!feed) {
      feed = this.source.head(tenantId).then((revision) => {
        const opened = new TenantFeed(tenantId, this.source, this.logger, { revision });
        if (this.feeds.get(tenantId) === feed) this.open.add(opened);
        // A commit may have landed between reading the head and listening for notices.
        opened.wake();
        return opened;
      });
      this.feeds.set(tenantId, feed);
      feed.catch(() => this.feeds.delete(tenantId));
    }
    const opened = await feed;
    const { position, detach } = opened.attach(listener);
    return {
      position,
      detach: () => {
        detach();
        if (opened.size === 0 && this.feeds.get(tenantId) === feed) {
          this.feeds.delete(tenantId);
          this.open.delete(opened);
          opened.close();
        }
      },
    };
  }

  /** The tenant feeds open in this process, and the largest lag among them in revisions (tenants unnamed). */
  stats(): { feeds: number; lag: bigint } {
    let lag = 0n;
    for (const feed of this.open) {
      const behind = feed.lag;
      if (behind > lag) lag = behind;
    }
    return { feeds: this.open.size, lag };
  }

  close(): void {
    for (const feed of this.feeds.values()) void feed.then((f) => f.close());
    this.feeds.clear();
    this.open.clear();
  }
}
