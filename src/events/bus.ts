import { randomUUID } from 'node:crypto';
import type { Broadcast } from '../db/client.js';
import type { Logger } from '../logger.js';
import type { ProcessRegistry } from './processes.js';

/** What one gateway process tells the others (and itself) about a tenant. */
export type BusEvent =
  /** New changes up to `revision` are committed. */
  | { type: 'changes'; tenantId: string; revision: string }
  /** Namespaces, grants, agents or settings changed: access decisions must be recomputed. */
  | { type: 'access'; tenantId: string }
  /** Tokens were revoked (or their agent deregistered): drop cached principals. */
  | { type: 'tokens'; tenantId: string }
  /** Fleet events (agents, metrics, errors, insights) for live subscriptions; see events/topics.ts. */
  | { type: 'topic'; tenantId: string; topic: string; items: unknown[] }
  /** This process may have missed messages (its LISTEN connection was re-established): drop every cache. */
  | { type: 'reset' }
  /** A gateway process joined: others start sending it change notices. */
  | { type: 'hello' };

type Handler = (event: BusEvent) => void;

const NOTIFY_INTERVAL_MS = 2;

/** Events after which every process must drop caches before the mutation that caused them returns. */
export type Invalidation = Extract<BusEvent, { type: 'access' | 'tokens' }>;
/** Every other event: sent on without waiting for anyone. */
export type Notice = Exclude<BusEvent, Invalidation>;

/**
 * In-process pub/sub that also reaches the other gateway processes on the same PostgreSQL through
 * LISTEN/NOTIFY. Change notices are coalesced to one NOTIFY per tenant per tick, sent after the
 * write commits: a NOTIFY inside the write transaction would serialize all writers on the
 * notification queue lock. Invalidations are numbered and acknowledged by every live process
 * (see ProcessRegistry) before `publish` resolves.
 */
export class EventBus {
  private readonly handlers = new Set<Handler>();
  private readonly origin = randomUUID();
  private readonly pendingChanges = new Map<string, string>();
  private flushScheduled = false;
  private sending: Promise<void> = Promise.resolve();

  constructor(
    private readonly broadcast: Broadcast | undefined,
    private readonly logger: Logger,
    private readonly processes?: ProcessRegistry,
  ) {}

  on(handler: Handler): () => void {
    this.handlers.add(handler);
    return () => this.handlers.delete(handler);
  }

  /**
   * A notice (changes, topic items, reset, hello): delivered here at once and sent on to the other
   * processes in the background. Change notices are coalesced, one NOTIFY per tenant per tick.
   */
  publish(event: Notice): void {
    this.deliver(event);
    if (!this.broadcast || event.type === 'reset') return;
    if (event.type === 'changes') {
      if (this.processes && this.processes.peers === 0) return;
      const previous = this.pendingChanges.get(event.tenantId);
      if (previous === undefined || BigInt(previous) < BigInt(event.revision)) this.pendingChanges.set(event.tenantId, event.revision);
      this.scheduleFlush();
      return;
    }
    this.send({ event });
  }

  /**
   * An invalidation (access or tokens): delivered here at once; resolves when every other live
   * process has applied it, so the mutation that caused it returns only then.
   */
  async invalidate(event: Invalidation): Promise<void> {
    this.deliver(event);
    if (!this.broadcast) return;
    if (!this.processes) {
      this.send({ event });
      return;
    }
    try {
      const seq = await this.processes.nextSequence();
      this.send({ event, seq });
      await this.processes.waitForOthers(seq);
    } catch (error) {
      this.logger.warn({ err: error, event: event.type }, 'could not confirm a cache invalidation with other gateway processes');
    }
  }

  /** Takes a message from another process (LISTEN), and acknowledges invalidations once applied. */
  receive(payload: string): void {
    try {
      const { origin, event, seq } = JSON.parse(payload) as { origin: string; event: BusEvent; seq?: string };
      if (origin === this.origin) return;
      if (event.type === 'hello') this.processes?.countPeers().catch(() => {});
      this.deliver(event);
      if (seq !== undefined) {
        this.processes
          ?.acknowledge(seq)
          .catch((error: unknown) => this.logger.warn({ err: error }, 'could not acknowledge an invalidation'));
      }
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

  /** One NOTIFY per tenant per few milliseconds: each is a durable commit serialized on the notification queue. */
  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setTimeout(() => {
      this.flushScheduled = false;
      for (const [tenantId, revision] of this.pendingChanges) this.send({ event: { type: 'changes', tenantId, revision } });
      this.pendingChanges.clear();
    }, NOTIFY_INTERVAL_MS);
  }

  /**
   * One NOTIFY at a time, in publish order: sent at once, each on whichever pooled connection is free,
   * two could commit in the other order, and other processes would see insight 6 before insight 5.
   */
  private send(message: { event: BusEvent; seq?: string }): void {
    const payload = JSON.stringify({ origin: this.origin, ...message });
    this.sending = this.sending
      .then(() => this.broadcast?.(payload))
      .catch((error: unknown) => {
        this.logger.warn({ err: error, event: message.event.type }, 'could not notify other gateway processes');
      });
  }
}
