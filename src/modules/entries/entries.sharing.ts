import type { AccessService } from '../../auth/access.js';
import { mayRevoke, revocation } from '../../auth/revocation.js';
import type { Principal } from '../../auth/principal.js';
import type { StatehouseError } from '../../domain/errors.js';
import { isSealed } from '../../domain/value-cipher.js';
import type { EventBus } from '../../events/bus.js';
import { type ChangeFeeds, type LogPosition, positionOf } from '../../events/change-feed.js';
import type { ShareableField, SharedStream } from '../../events/shared-stream.js';
import type { EntriesService } from './entries.service.js';
import type { WatchEvent } from './entries.watch.js';
import type { EntryChange } from './entries.model.js';

const REPLAY_PAGE = 500;

interface Deps {
  feeds: ChangeFeeds<EntryChange>;
  entries: EntriesService;
  access: AccessService;
  bus: EventBus;
}

const text = (value: unknown): string | null => (typeof value === 'string' && value !== '' ? value : null);

/**
 * What `entryChanged` subscribers may share: those of one tenant with the same namespace, scope and
 * key prefix. An agent's subscription without a namespace is served alone (its access differs change
 * by change; admins' and readers' share), and so is one on a sensitive namespace. A sealed value is
 * never shared: it is executed per member, with its own principal (READER → null) and audit.
 */
export function entryChangedSharing(deps: Deps): ShareableField<EntryChange, LogPosition> {
  return {
    field: 'entryChanged',
    resumeArgument: 'afterRevision',
    share: async (principal, args) => {
      const namespace = text(args.namespace);
      if (namespace === null) {
        if (principal.role === 'AGENT') return null;
      } else {
        const settings = await deps.access.namespace(principal.tenantId, namespace);
        if (!settings || settings.sensitive) return null;
      }
      return changesOf(deps, principal, { namespace, scope: text(args.scope), keyPrefix: text(args.keyPrefix) });
    },
  };
}

interface Filter {
  /** null: every namespace (admins and readers only). */
  namespace: string | null;
  scope: string | null;
  keyPrefix: string | null;
}

function changesOf(deps: Deps, principal: Principal, filter: Filter): SharedStream<EntryChange, LogPosition> {
  const { tenantId } = principal;
  return {
    key: [tenantId, filter.namespace ?? '', filter.scope ?? '', filter.keyPrefix ?? ''].join('\u0000'),
    label: filter.namespace,
    attach: (onBatch) => deps.feeds.attach(tenantId, onBatch),
    positionOf,
    replay: async (resume, upTo, page) => {
      let after: LogPosition = { revision: resume };
      for (;;) {
        const { changes } = await deps.entries.changesPage(tenantId, {
          after,
          upTo,
          namespaces: filter.namespace === null ? null : [filter.namespace],
          limit: REPLAY_PAGE,
        });
        if (!(await page(changes))) return;
        const last = changes.at(-1);
        if (!last || changes.length < REPLAY_PAGE) return;
        after = positionOf(last);
      }
    },
    seen: (change, resume) => BigInt(change.revision) <= BigInt(resume),
    matches: (change) =>
      (!filter.namespace || change.namespace === filter.namespace) &&
      (!filter.scope || change.scope === filter.scope) &&
      (!filter.keyPrefix || change.key.startsWith(filter.keyPrefix)),
    perMember: (change) => isSealed(change.value),
    rootValue: (change): WatchEvent => ({ change }),
    endValue: (error): WatchEvent => ({ end: error as StatehouseError }),
    onAccessChange: (recheck) => deps.bus.on((event) => mayRevoke(event, tenantId, 'access') && recheck()),
    revoked: async (context) => (await revocation(context.reauthenticate, { service: deps.access, namespace: filter.namespace })).reason,
  };
}
