import { type SQL, type SQLChunk, sql } from 'drizzle-orm';
import type { LogPosition } from '../../events/change-feed.js';
import type { Entry, EntryChange } from './entries.model.js';
import type { RawRow } from '../../db/rows.js';
import type { changes, entries } from '../../db/schema.js';

/*
 * The SQL every writer and reader of entries shares: the row shapes and their mapping, the
 * revision, the locks and the watermark (the store, the batched writes, commit, maintenance,
 * import and the system queries).
 */

/** An entry as its statements select it (ENTRY_COLUMNS). */
export type EntryRow = Pick<
  RawRow<typeof entries>,
  'namespace' | 'scope' | 'key' | 'value' | 'version' | 'revision' | 'created_at' | 'updated_at' | 'updated_by' | 'expires_at'
>;

/** A change as the driver returns it: times as text. */
export type ChangeRow = Pick<
  RawRow<typeof changes>,
  'revision' | 'op' | 'namespace' | 'scope' | 'key' | 'version' | 'value' | 'actor' | 'at'
>;

export const ENTRY_COLUMNS = sql.raw(
  'namespace, scope, key, value, version, revision::text AS revision, created_at, updated_at, updated_by, expires_at',
);
export const CHANGE_COLUMNS = sql.raw('revision::text AS revision, op, namespace, scope, key, version, value, at, actor');

/**
 * What an upsert's `ON CONFLICT DO UPDATE` sets besides `value` and `deleted`: the next version at
 * the inserted row's revision and time, and a new `created_at` when the old value had ended.
 */
export const NEXT_VERSION = sql.raw(`version = e.version + 1,
          revision = excluded.revision,
          created_at = CASE WHEN e.deleted OR e.expires_at <= now() THEN excluded.created_at ELSE e.created_at END,
          updated_at = excluded.updated_at,
          updated_by = excluded.updated_by,
          expires_at = excluded.expires_at`);

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
  locksOf(tenantLockName(tenantId), lockName(tenantId, namespace, scope, key));

export const locksOf = (tenantLock: SQLChunk, keyLockName: SQLChunk) =>
  sql`SELECT pg_advisory_xact_lock_shared(hashtextextended(${tenantLock}, 0)),
             pg_advisory_xact_lock(hashtextextended(${keyLockName}, 0)), clock_timestamp() AS at`;

/**
 * The locks of many keys, as `keyLock`'s of one: the tenant's shared, then every key's, always in
 * the same order (their names in byte order), so that two writers of several keys cannot deadlock.
 * `names`: a FROM item with a `name` column.
 */
export const locksOfKeys = (tenantLock: SQLChunk, names: SQL) =>
  sql`SELECT pg_advisory_xact_lock_shared(hashtextextended(${tenantLock}, 0)),
             (SELECT count(pg_advisory_xact_lock(hashtextextended(name, 0)))
              FROM (SELECT name FROM ${names} ORDER BY name COLLATE "C") AS ordered),
             clock_timestamp() AS at`;

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

/** Where an entry is: its namespace, scope and key within a tenant. */
export type EntryAt = { namespace: string; scope: string; key: string };
