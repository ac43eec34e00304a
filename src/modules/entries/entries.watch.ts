import { Repeater } from '@repeaterjs/repeater';
import type { AccessService } from '../../auth/access.js';
import type { Principal } from '../../auth/principal.js';
import { mayRevoke, revocation } from '../../auth/revocation.js';
import type { StatehouseError } from '../../domain/errors.js';
import type { EventBus } from '../../events/bus.js';
import { type ChangeFeeds, type LogPosition, positionOf } from '../../events/change-feed.js';
import type { EntriesService } from './entries.service.js';
import type { EntryChange } from './entries.model.js';

export interface WatchFilter {
  namespace?: string | null;
  scope?: string | null;
  keyPrefix?: string | null;
  /** Replay every change after this revision first, then go live. */
  afterRevision?: string | null;
}

/** What a watcher receives: a change, or the reason it ends (access lost, token revoked). */
export type WatchEvent = { change: EntryChange } | { end: StatehouseError };

const REPLAY_PAGE = 500;

/**
 * Live changes for one subscriber: replay from `afterRevision` up to where the shared tenant feed
 * stood when the subscriber attached, then the feed's batches — no gap, no duplicate. Every
 * change is checked against the subscriber's current access; losing access to the watched
 * namespace, or the token, ends the watch.
 */
export class EntryWatcher {
  private readonly active = new Set<() => void>();

  constructor(
    private readonly entries: EntriesService,
    private readonly access: AccessService,
    private readonly feeds: ChangeFeeds<EntryChange>,
    private readonly bus: EventBus,
  ) {}

  watch(principal: Principal, filter: WatchFilter, reauthenticate: () => Promise<Principal | null>): AsyncIterable<WatchEvent> {
    const { tenantId } = principal;
    return new Repeater<WatchEvent>(async (push, stop) => {
      const close = () => stop();
      this.active.add(close);
      let current = principal;
      let ended = false;
      let live = false;
      const buffered: (readonly EntryChange[])[] = [];
      let chain: Promise<void> = Promise.resolve();
      const enqueue = (task: () => Promise<void>) => {
        chain = chain.then(() => (ended ? undefined : task())).catch((error: unknown) => stop(error));
      };
      const end = async (error: StatehouseError) => {
        ended = true;
        await push({ end: error });
        stop();
      };
      const afterRevision = filter.afterRevision ? BigInt(filter.afterRevision) : -1n;
      const matches = (change: EntryChange) =>
        (!filter.namespace || change.namespace === filter.namespace) &&
        (!filter.scope || change.scope === filter.scope) &&
        (!filter.keyPrefix || change.key.startsWith(filter.keyPrefix));
      const deliver = async (changes: readonly EntryChange[]) => {
        for (const change of changes) {
          if (ended) return;
          if (BigInt(change.revision) <= afterRevision || !matches(change)) continue;
          if (!(await this.access.canRead(current, change.namespace))) continue;
          await push({ change });
        }
      };

      const offBus = this.bus.on((event) => {
        if (!mayRevoke(event, tenantId, 'access')) return;
        enqueue(async () => {
          const now = await revocation(reauthenticate, { service: this.access, namespace: filter.namespace ?? null });
          if (now.reason) return end(now.reason);
          current = now.principal;
        });
      });
      const { position, detach } = await this.feeds.attach(tenantId, (changes) => {
        if (live) enqueue(() => deliver(changes));
        else buffered.push(changes);
      });

      enqueue(async () => {
        if (filter.afterRevision !== null && filter.afterRevision !== undefined) await this.replay(current, filter, position, deliver);
        for (const changes of buffered) await deliver(changes);
        buffered.length = 0;
        live = true;
      });

      await stop;
      ended = true;
      this.active.delete(close);
      detach();
      offBus();
    });
  }

  /** Ends every watch (shutdown): their subscriptions complete. */
  closeAll(): void {
    for (const close of this.active) close();
  }

  private async replay(
    principal: Principal,
    filter: WatchFilter,
    upTo: LogPosition,
    deliver: (changes: readonly EntryChange[]) => Promise<void>,
  ): Promise<void> {
    const namespaces = filter.namespace
      ? [filter.namespace]
      : principal.role === 'AGENT'
        ? (await this.access.reachable(principal)).map((access) => access.namespace)
        : null;
    let after: LogPosition = { revision: filter.afterRevision ?? '0' };
    for (;;) {
      const { changes } = await this.entries.changesPage(principal.tenantId, { after, upTo, namespaces, limit: REPLAY_PAGE });
      await deliver(changes);
      const last = changes.at(-1);
      if (!last || changes.length < REPLAY_PAGE) return;
      after = positionOf(last);
    }
  }
}
