import { randomUUID } from 'node:crypto';
import type { Broadcast } from '../db/client.js';
import type { Logger } from '../logger.js';

/** What one gateway process tells the others (and itself) about a tenant. */
export type BusEvent =
  /** New changes up to `revision` are committed. */
  | { type: 'changes'; tenantId: string; revision: string }
  /** Namespaces, grants or agents changed: access decisions must be recomputed. */
  | { type: 'access'; tenantId: string }
  /** Tokens were revoked (or their agent deregistered): drop cached principals. */
  | { type: 'tokens'; tenantId: string }
  /** Fleet events (agents, metrics, errors, insights) for live subscriptions; see events/topics.ts. */
  | { type: 'topic'; tenantId: string; topic: string; items: unknown[] };

type Handler = (event: BusEvent) => void;

/**
 * In-process pub/sub that also reaches the other gateway processes on the same PostgreSQL through
 * LISTEN/NOTIFY. Change notices are coalesced to one NOTIFY per tenant per tick, sent after the
 * write commits: a NOTIFY inside the write transaction would serialize all writers on the
 * notification queue lock.
 */
export class EventBus {
  private readonly handlers = new Set<Handler>();
  private readonly origin = randomUUID();
  private readonly pendingChanges = new Map<string, string>();
  private flushScheduled = false;

  constructor(
    private readonly broadcast: Broadcast | undefined,
    private readonly logger: Logger,
  ) {}

  on(handler: Handler): () => void {
    this.handlers.add(handler);
    return () => this.handlers.delete(handler);
  }

  publish(event: BusEvent): void {
    this.deliver(event);
    if (!this.broadcast) return;
    if (event.type === 'changes') {
      const previous = this.pendingChanges.get(event.tenantId);
      if (previous === undefined || BigInt(previous) < BigInt(event.revision)) this.pendingChanges.set(event.tenantId, event.revision);
      this.scheduleFlush();
    } else {
      this.send(event);
    }
  }

  /** Takes a message from another process (LISTEN). */
  receive(payload: string): void {
    try {
      const { origin, event } = JSON.parse(payload) as { origin: string; event: BusEvent };
      if (origin !== this.origin) this.deliver(event);
    } catch (error) {
      this.logger.warn({ err: error }, 'ignored a malformed bus message');
    }
  }

  private deliver(event: BusEvent): void {
    for (const handler of this.handlers) {
      try {
        handler(event);
      } catch (error) {
        this.logger.error({ err: error, event: event.type }, 'bus handler failed');
      }
    }
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      for (const [tenantId, revision] of this.pendingChanges) this.send({ type: 'changes', tenantId, revision });
      this.pendingChanges.clear();
    });
  }

  private send(event: BusEvent): void {
    this.broadcast?.(JSON.stringify({ origin: this.origin, event })).catch((error: unknown) => {
      this.logger.warn({ err: error, event: event.type }, 'could not notify other gateway processes');
    });
  }
}
