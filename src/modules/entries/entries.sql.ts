import { type SQL, sql } from 'drizzle-orm';
import type { LogPosition } from '../../events/change-feed.js';
import type { Entry, EntryChange } from './entries.model.js';

/** SQL fragments and row shapes shared by the entry services. */

export interface EntryRow {
  namespace: string;
  scope: string;
  key: string;
  value: unknown;
  version: number;
  revision: string;
  created_at: string;
  updated_at: string;
  updated_by: string | null;
  expires_at: string | null;
}

/** A change as the driver returns it: times as text. */
export type ChangeRow = Omit<EntryChange, 'at'> & { at: string };

export const ENTRY_COLUMNS = sql.raw(
  'namespace, scope, key, value, version, revision::text AS revision, created_at, updated_at, updated_by, expires_at',
);
export const CHANGE_COLUMNS = sql.raw('revision::text AS revision, op, namespace, scope, key, version, value, at, actor');

/** The transaction id as revision: see README, Architecture. */
export const CURRENT_REVISION = sql.raw('pg_current_xact_id()::text::bigint');

/**
 * Writers of one key take its lock before their transaction id exists, so a later writer of the
 * key always gets a larger revision (its id is assigned only once the earlier one has committed).
 * A row lock alone would not do: the id could be assigned before waiting for it.
 *
 * It also reads the clock once the lock is held, for `updatedAt` and the change's `at`: a key's
 * later version then never carries an earlier time (now() is when the statement started, which may
 * be before it waited for the lock), so `entry(asOf)` finds the right version.
 */
export const keyLock = (tenantId: string, namespace: string, scope: string, key: string) =>
  sql`SELECT pg_advisory_xact_lock_shared(hashtextextended(${tenantLockName(tenantId)}, 0)),
             pg_advisory_xact_lock(hashtextextended(${lockName(tenantId, namespace, scope, key)}, 0)), clock_timestamp() AS at`;

/**
 * Every writer also holds its tenant's lock in shared mode; an import takes it exclusively, so it
 * can write a whole tenant in one transaction without a lock per key.
 */
export const tenantLockName = (tenantId: string) => `tenant\u001f${tenantId}`;
export const TENANT_LOCK_NAME = sql.raw(`concat_ws(chr(31), 'tenant', tenant_id)`);

/** The text a key's lock is named by; the sweeper builds the same in SQL (`KEY_LOCK_NAME`). */
export const lockName = (tenantId: string, namespace: string, scope: string, key: string) =>
  [tenantId, namespace, scope, key].join('\u001f');
export const KEY_LOCK_NAME = sql.raw(`concat_ws(chr(31), tenant_id, namespace, scope, key)`);

/**
 * Below the watermark every transaction has ended, so changes there are final and become visible
 * in revision order: the oldest transaction still running (PostgreSQL's snapshot xmin). It is
 * server-wide, so a long transaction anywhere on the server holds delivery back (never
 * correctness) until it ends — see README, Architecture. A watermark from Statehouse's own writers
 * only (pg_locks / pg_stat_activity) was tried and lost changes under load: a writer can become
 * visible in the reader's snapshot as running without yet being seen as a lock holder.
 */
export const WATERMARK = sql.raw('pg_snapshot_xmin(pg_current_snapshot())::text::bigint');
export const LIVE = sql.raw('NOT deleted AND (expires_at IS NULL OR expires_at > now())');

export function positionCondition(operator: '>' | '<=', position: LogPosition): SQL {
  const op = sql.raw(operator);
  if (position.namespace === undefined) return sql`revision ${op} ${position.revision}::bigint`;
  return sql`(revision, namespace, scope, key) ${op} (${position.revision}::bigint, ${position.namespace}, ${position.scope}, ${position.key})`;
}

export const toEntry = (row: EntryRow): Entry => ({
  namespace: row.namespace,
  scope: row.scope,
  key: row.key,
  value: row.value,
  version: row.version,
  revision: row.revision,
  createdAt: new Date(row.created_at),
  updatedAt: new Date(row.updated_at),
  updatedBy: row.updated_by,
  expiresAt: row.expires_at === null ? null : new Date(row.expires_at),
});

export const toChange = (row: ChangeRow): EntryChange => ({ ...row, at: new Date(row.at) });

export function keyRange(prefix: string): { from: string; to: string | null } {
  // In byte order (collation "C"), the keys that start with `prefix` lie in [prefix, successor).
  const codePoints = [...prefix].map((c) => c.codePointAt(0) ?? 0);
  while (codePoints.length > 0) {
    const last = codePoints.pop() ?? 0;
    if (last < 0x10ffff) {
      let next = last + 1;
      if (next >= 0xd800 && next <= 0xdfff) next = 0xe000;
      return { from: prefix, to: String.fromCodePoint(...codePoints, next) };
    }
  }
  return { from: prefix, to: null };
}
