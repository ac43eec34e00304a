import { type SQL, type SQLChunk, sql } from 'drizzle-orm';
import { type Statements, sqlState } from '../../db/client.js';
import { payloadTooLarge } from '../../domain/errors.js';
import type { LogPosition } from '../../events/change-feed.js';
import type { ChangeOp, Entry, EntryChange } from './entries.model.js';
import { ReadBatcher } from './entries.read-batch.js';
import { SetBatcher } from './entries.batch.js';
import {
  CHANGE_COLUMNS,
  type ChangeRow,
  CURRENT_REVISION,
  ENTRY_COLUMNS,
  type EntryAt,
  type EntryRow,
  keyLock,
  LIVE,
  lockName,
  NEXT_VERSION,
  locksOf,
  positionCondition,
  tenantLockName,
  toChange,
  toEntry,
  WATERMARK,
} from './entries.sql.js';

/*
 * The EntriesStore's statements and their row mapping (the fragments every entry writer shares are
 * in entries.sql.ts). Validation, policy and paging are EntriesService's.
 */

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

/**
 * A value of a statement, by name: the value itself as a parameter, or a placeholder of a statement
 * compiled once and filled with the values on each call (`placeholder`). Both render the same SQL
 * text and parameters.
 */
export type Bind = (name: string) => SQLChunk;
const placeholder: Bind = (name) => sql.placeholder(name);
const direct =
  (values: Record<string, unknown>): Bind =>
  (name) =>
    sql.param(values[name]);

/** How a write computes the entry's value: on insert, on update (`e` is the row), and when it may run. */
export interface ValueWriteSql {
  inserted: SQL;
  updated: SQL;
  expiresAt: SQL;
  condition?: SQL;
}

export interface ValueWrite {
  /** Writes of one shape differ in their values only, so their statement is compiled once. */
  shape: string;
  /** The write's SQL, its values bound by `bind`. */
  sql: (bind: Bind) => ValueWriteSql;
  values: Record<string, unknown>;
  /** The write has a condition of its own (an increment's: the value is a number, the sum in range). */
  conditional?: boolean;
  /** The error for a value the statement found too large (SQLSTATE SH413, raised by statehouse_limit_size). */
  tooLarge?: () => Error;
  /** A plain set (the value as given): writes of it that arrive together may share one statement. */
  set?: { value: string; ttlSeconds: number | null };
}

const expiresIn = (ttlSeconds: number | null, bind: Bind): SQL =>
  ttlSeconds ? sql`now() + make_interval(secs => ${bind('ttlSeconds')})` : sql`NULL::timestamptz`;
const ttlShape = (ttlSeconds: number | null) => (ttlSeconds ? 'ttl' : 'forever');

/** The largest finite double, as SQL numeric. */
const MAX_JSON_NUMBER = sql.raw(`'${Number.MAX_VALUE}'::numeric`);

/** How each kind of write computes the entry's value; `ttlSeconds`: how long it lives, null: for ever. */
export const valueWrites = {
  /** The value as given (JSON text). */
  set: (value: string, ttlSeconds: number | null): ValueWrite => ({
    shape: `set/${ttlShape(ttlSeconds)}`,
    values: { value, ttlSeconds },
    set: { value, ttlSeconds },
    sql: (bind) => ({
      inserted: sql`${bind('value')}::jsonb`,
      updated: sql`excluded.value`,
      expiresAt: expiresIn(ttlSeconds, bind),
    }),
  }),
  /** RFC 7396 merge patch onto the live value (or `base` when there is none); a result past `maxBytes` is PAYLOAD_TOO_LARGE. */
  mergePatch: (base: string, patch: string, maxBytes: number, ttlSeconds: number | null): ValueWrite => ({
    shape: `mergePatch/${ttlShape(ttlSeconds)}`,
    values: { base, patch, maxBytes, ttlSeconds },
    tooLarge: () => payloadTooLarge('patch', maxBytes),
    sql: (bind) => ({
      inserted: sql`statehouse_limit_size(statehouse_merge_patch(${bind('base')}::jsonb, ${bind('patch')}::jsonb), ${bind('maxBytes')})`,
      updated: sql`CASE WHEN e.deleted OR e.expires_at <= now() THEN excluded.value
                        ELSE statehouse_limit_size(statehouse_merge_patch(e.value, ${bind('patch')}::jsonb), ${bind('maxBytes')}) END`,
      expiresAt: expiresIn(ttlSeconds, bind),
    }),
  }),
  /**
   * Adds `by` to the live number (or to `base` when there is none). numeric, not float: 0.1 + 0.2
   * stays 0.3 and large counters stay exact. A sum beyond double range is refused (the write's
   * condition fails): JSON readers (JavaScript's included) would read it back as Infinity or null.
   */
  increment: (base: number, by: number, ttlSeconds: number | null): ValueWrite => ({
    shape: `increment/${ttlShape(ttlSeconds)}`,
    values: { base: String(base), by: String(by), ttlSeconds },
    conditional: true,
    sql: (bind) => {
      const sum = sql`(e.value #>> '{}')::numeric + ${bind('by')}::numeric`;
      return {
        inserted: sql`to_jsonb(${bind('base')}::numeric + ${bind('by')}::numeric)`,
        updated: sql`CASE WHEN e.deleted OR e.expires_at <= now() THEN excluded.value
                          ELSE to_jsonb(${sum}) END`,
        expiresAt: expiresIn(ttlSeconds, bind),
        condition: sql`(e.deleted OR e.expires_at <= now() OR (jsonb_typeof(e.value) = 'number' AND abs(${sum}) <= ${MAX_JSON_NUMBER}))`,
      };
    },
  }),
};

const inNamespaces = (namespaces: readonly string[] | null): SQL =>
  namespaces === null ? sql`true` : sql`namespace = ANY(${sql.param([...namespaces])}::text[])`;

/**
 * The oldest version of a key that reads may show: the newest `historyLimit` versions are kept, so
 * older ones read as compacted at once, before the background compaction removes them.
 */
function oldestKept(sameKey: SQL, historyLimit: number | null): SQL {
  const physical = sql`(SELECT version, revision FROM changes WHERE ${sameKey} ORDER BY version LIMIT 1)`;
  if (historyLimit === null) return physical;
  return sql`SELECT version, revision FROM (
    ${physical}
    UNION ALL (SELECT version, revision FROM changes WHERE ${sameKey} ORDER BY version DESC OFFSET ${historyLimit - 1} LIMIT 1)
  ) AS candidates ORDER BY version DESC LIMIT 1`;
}

/** The entries and change-log statements of EntriesService: each one round trip. */
export class EntriesStore {
  /** The point read, the hottest query: compiled once. */
  private readonly liveEntry: (at: { tenantId: string } & EntryAt) => Promise<EntryRow[]>;

  /** The single-entry writes without a check in Node, by shape: each compiled once. */
  private readonly compiledUpserts = new Map<string, (values: Record<string, unknown>) => Promise<EntryRow[]>>();

  /** Plain sets that arrive together, sent as one statement. */
  private readonly sets: SetBatcher;

  /** Point reads that arrive together, sent as one statement. */
  private readonly reads: ReadBatcher;

  constructor(private readonly database: Statements) {
    this.sets = new SetBatcher(database, (write) =>
      this.upsertOne(write.tenantId, write.at, write.actor, write.expected, valueWrites.set(write.value, write.ttlSeconds)),
    );
    this.liveEntry = database.prepare<EntryRow>(sql`
      SELECT ${ENTRY_COLUMNS} FROM entries
      WHERE tenant_id = ${sql.placeholder('tenantId')} AND namespace = ${sql.placeholder('namespace')}
        AND scope = ${sql.placeholder('scope')} AND key = ${sql.placeholder('key')} AND ${LIVE}`);
    this.reads = new ReadBatcher(database, async (tenantId, at) => (await this.liveEntry({ tenantId, ...at }))[0]);
  }

  async live(tenantId: string, at: EntryAt): Promise<Entry | null> {
    const row = await this.reads.read(tenantId, at);
    return row ? toEntry(row) : null;
  }

  /** The oldest transaction still running: changes below it are final (see WATERMARK). */
  async watermark(): Promise<bigint> {
    const [row] = await this.database.rows<{ watermark: string }>(sql`SELECT ${WATERMARK}::text AS watermark`);
    return BigInt(row?.watermark ?? '0');
  }

  /** The revision the next transaction would get: a revision at or past it is in the future. */
  async nextRevision(): Promise<bigint> {
    const [row] = await this.database.rows<{ next_revision: string }>(sql`
      SELECT pg_snapshot_xmax(pg_current_snapshot())::text AS next_revision`);
    return BigInt(row?.next_revision ?? '0');
  }

  /**
   * A key's newest change at or before a revision or a time, with when its current life began,
   * the oldest version reads may show (historyLimit), and the next revision.
   */
  async versionAt(
    tenantId: string,
    at: EntryAt,
    when: { atRevision: string } | { asOf: Date },
    historyLimit: number | null,
  ): Promise<{
    change: (Omit<EntryChange, 'namespace' | 'scope' | 'key'> & { createdAt: Date }) | null;
    oldest: { version: number; revision: string } | null;
    nextRevision: bigint;
  }> {
    const sameKey = sql`tenant_id = ${tenantId} AND namespace = ${at.namespace} AND scope = ${at.scope} AND key = ${at.key}`;
    // Times reach clients in milliseconds: a version's own updatedAt must find that version.
    const condition =
      'atRevision' in when
        ? sql`revision <= ${when.atRevision}::bigint`
        : sql`date_trunc('milliseconds', at) <= ${when.asOf.toISOString()}::timestamptz`;
    const [row] = await this.database.rows<
      ChangeRow & { created_at: string | null; oldest_version: number | null; oldest_revision: string | null; next_revision: string }
    >(sql`
      WITH hit AS (
        SELECT * FROM changes WHERE ${sameKey} AND ${condition} ORDER BY version DESC LIMIT 1
      ), oldest AS (${oldestKept(sameKey, historyLimit)})
      SELECT hit.revision::text AS revision, hit.op, hit.version, hit.value, hit.at, hit.actor,
             (SELECT min(c.at) FROM changes c WHERE ${sameKey} AND c.version <= hit.version
                AND c.version > coalesce((SELECT max(d.version) FROM changes d
                                          WHERE ${sameKey} AND d.op <> 'SET' AND d.version < hit.version), 0)) AS created_at,
             (SELECT version FROM oldest) AS oldest_version, (SELECT revision::text FROM oldest) AS oldest_revision,
             pg_snapshot_xmax(pg_current_snapshot())::text AS next_revision
      FROM (SELECT 1) AS one LEFT JOIN hit ON true`);
    return {
      change: row?.op
        ? {
            revision: row.revision,
            op: row.op,
            version: row.version,
            value: row.value,
            at: new Date(row.at),
            actor: row.actor,
            createdAt: new Date(row.created_at ?? row.at),
          }
        : null,
      oldest: row?.oldest_version ? { version: row.oldest_version, revision: row.oldest_revision ?? '0' } : null,
      nextRevision: BigInt(row?.next_revision ?? '0'),
    };
  }

  /** A key's newest `limit` versions, newest first. */
  async history(tenantId: string, at: EntryAt, limit: number): Promise<EntryChange[]> {
    const rows = await this.database.rows<ChangeRow>(sql`
      SELECT ${CHANGE_COLUMNS} FROM changes
      WHERE tenant_id = ${tenantId} AND namespace = ${at.namespace} AND scope = ${at.scope} AND key = ${at.key}
      ORDER BY version DESC LIMIT ${limit}`);
    return rows.map(toChange);
  }

  /** One version of a key (null op: there is none), with the oldest version reads may show. */
  async version(
    tenantId: string,
    at: EntryAt,
    version: number,
    historyLimit: number | null,
  ): Promise<{ op: ChangeOp | null; value: unknown; oldest: { version: number; revision: string } | null }> {
    const sameKey = sql`tenant_id = ${tenantId} AND namespace = ${at.namespace} AND scope = ${at.scope} AND key = ${at.key}`;
    const [row] = await this.database.rows<{
      op: ChangeOp | null;
      value: unknown;
      oldest_version: number | null;
      oldest_revision: string | null;
    }>(sql`
      WITH oldest AS (${oldestKept(sameKey, historyLimit)})
      SELECT hit.op, hit.value, (SELECT version FROM oldest) AS oldest_version, (SELECT revision::text FROM oldest) AS oldest_revision
      FROM (SELECT 1) AS one LEFT JOIN (SELECT op, value FROM changes WHERE ${sameKey} AND version = ${version}) AS hit ON true`);
    return {
      op: row?.op ?? null,
      value: row?.value,
      oldest: row?.oldest_version ? { version: row.oldest_version, revision: row.oldest_revision ?? '0' } : null,
    };
  }

  /** The live entry of the first of `scopes` that has one. */
  async firstOf(tenantId: string, namespace: string, key: string, scopes: readonly string[]): Promise<Entry | null> {
    const [row] = await this.database.rows<EntryRow>(sql`
      SELECT ${ENTRY_COLUMNS} FROM entries
      WHERE tenant_id = ${tenantId} AND namespace = ${namespace} AND key = ${key}
        AND scope = ANY(${sql.param([...scopes])}::text[]) AND ${LIVE}
      ORDER BY array_position(${sql.param([...scopes])}::text[], scope::text) LIMIT 1`);
    return row ? toEntry(row) : null;
  }

  /** Live entries of a namespace in (scope, key) order, after a position, filtered; `limit` of them. */
  async list(
    tenantId: string,
    filter: {
      namespace: string;
      scope: string | null;
      keys: { from: string; to: string | null } | null;
      /** JSON text the value must contain (jsonb @>). */
      contains: string | null;
      after: { scope: string | undefined; key: string | undefined } | null;
    },
    limit: number,
  ): Promise<Entry[]> {
    const conditions: SQL[] = [sql`tenant_id = ${tenantId}`, sql`namespace = ${filter.namespace}`, LIVE];
    if (filter.scope !== null) conditions.push(sql`scope = ${filter.scope}`);
    if (filter.keys) {
      conditions.push(sql`key >= ${filter.keys.from}`);
      if (filter.keys.to !== null) conditions.push(sql`key < ${filter.keys.to}`);
    }
    if (filter.contains !== null) conditions.push(sql`value @> ${filter.contains}::jsonb`);
    if (filter.after) conditions.push(sql`(scope, key) > (${filter.after.scope}, ${filter.after.key})`);
    const rows = await this.database.rows<EntryRow>(sql`
      SELECT ${ENTRY_COLUMNS} FROM entries WHERE ${sql.join(conditions, sql` AND `)}
      ORDER BY scope, key LIMIT ${limit}`);
    return rows.map(toEntry);
  }

  /** Live entry counts of the given namespaces. */
  async count(tenantId: string, namespaces: readonly string[]): Promise<Map<string, number>> {
    const rows = await this.database.rows<{ namespace: string; count: number | string }>(sql`
      SELECT namespace, count(*)::int AS count FROM entries
      WHERE tenant_id = ${tenantId} AND namespace = ANY(${sql.param([...namespaces])}::text[]) AND ${LIVE}
      GROUP BY namespace`);
    return new Map(rows.map((row) => [row.namespace, Number(row.count)]));
  }

  /**
   * Inserts or updates one entry and appends its change, in one statement (plain sets that arrive
   * together share one: SetBatcher); null when the version check (`expected`, 0: must not exist) or
   * `value.condition` refused it. `validate`, when given, runs on the written value inside the
   * statement's transaction, before commit.
   */
  async upsert(
    tenantId: string,
    at: EntryAt,
    actor: string,
    expected: number | null,
    value: ValueWrite,
    validate?: (value: unknown) => void,
  ): Promise<Entry | null> {
    const row =
      value.set && !validate
        ? await this.sets.write({ tenantId, at, actor, expected, ...value.set })
        : await this.upsertOne(tenantId, at, actor, expected, value, validate);
    return row && row.version !== null && row.version !== undefined ? toEntry(row) : null;
  }

  /** One write, one statement (see upsert): its row, with a null version when refused. */
  private async upsertOne(
    tenantId: string,
    at: EntryAt,
    actor: string,
    expected: number | null,
    value: ValueWrite,
    validate?: (value: unknown) => void,
  ): Promise<EntryRow | undefined> {
    const { namespace, scope, key } = at;
    const statement = (bind: Bind) => {
      const expectedCheck =
        expected === null ? sql`true` : sql`(CASE WHEN e.deleted OR e.expires_at <= now() THEN 0 ELSE e.version END) = ${bind('expected')}`;
      const write = value.sql(bind);
      const [t, n, s, k] = [bind('tenantId'), bind('namespace'), bind('scope'), bind('key')];
      return sql`
      WITH locked AS (${locksOf(bind('tenantLock'), bind('keyLock'))}),
      existing AS (
        SELECT 1 FROM entries WHERE tenant_id = ${t} AND namespace = ${n} AND scope = ${s} AND key = ${k}
      ), up AS (
        INSERT INTO entries AS e (tenant_id, namespace, scope, key, value, version, revision, deleted, created_at, updated_at, updated_by, expires_at)
        SELECT ${t}, ${n}, ${s}, ${k}, ${write.inserted}, 1, ${CURRENT_REVISION}, false, locked.at, locked.at, ${bind('actor')}, ${write.expiresAt}
        FROM locked WHERE ${expected === null || expected === 0 ? sql`true` : sql`EXISTS (SELECT 1 FROM existing)`}
        ON CONFLICT (tenant_id, namespace, scope, key) DO UPDATE SET
          value = ${write.updated},
          deleted = false,
          ${NEXT_VERSION}
        WHERE ${expectedCheck} AND ${write.condition ?? sql`true`}
        RETURNING e.*
      ), log AS (
        INSERT INTO changes (tenant_id, revision, namespace, scope, key, op, version, value, actor, at)
        SELECT tenant_id, revision, namespace, scope, key, 'SET', version, value, updated_by, updated_at FROM up
      )
      SELECT up.namespace, up.scope, up.key, up.value, up.version, up.revision::text AS revision, up.created_at,
             up.updated_at, up.updated_by, up.expires_at
      FROM (SELECT 1) AS one LEFT JOIN up ON true`;
    };
    const values: Record<string, unknown> = {
      ...value.values,
      tenantLock: tenantLockName(tenantId),
      keyLock: lockName(tenantId, namespace, scope, key),
      tenantId,
      namespace,
      scope,
      key,
      actor,
      expected,
    };
    let run: Promise<EntryRow | undefined>;
    if (validate) {
      run = this.database.transaction(async (rows) => {
        const [written] = await rows<EntryRow>(statement(direct(values)));
        if (written?.version !== null && written?.version !== undefined) validate(written.value);
        return written;
      });
    } else {
      // Without a check in Node (all but typed namespaces) the statement is compiled once per shape.
      const shape = `${value.shape}/${expected === null ? 'any' : expected === 0 ? 'absent' : 'version'}`;
      let compiled = this.compiledUpserts.get(shape);
      if (!compiled) this.compiledUpserts.set(shape, (compiled = this.database.prepare<EntryRow>(statement(placeholder))));
      run = compiled(values).then(([written]) => written);
    }
    return run.catch((error: unknown) => {
      if (value.tooLarge && sqlState(error) === 'SH413') throw value.tooLarge();
      throw error;
    });
  }

  /** A key's version now (0 when absent) and whether its live value is not a number. */
  async current(tenantId: string, at: EntryAt): Promise<{ version: number; notANumber: boolean }> {
    const [row] = await this.database.rows<{ version: number; not_a_number: boolean }>(sql`
      SELECT CASE WHEN ${LIVE} THEN version ELSE 0 END AS version, ${LIVE} AND jsonb_typeof(value) <> 'number' AS not_a_number
      FROM entries
      WHERE tenant_id = ${tenantId} AND namespace = ${at.namespace} AND scope = ${at.scope} AND key = ${at.key}`);
    return { version: row?.version ?? 0, notANumber: row?.not_a_number ?? false };
  }

  /** Deletes a live entry (at version `expected`, when given) and appends its change: the change's revision, or null when none was deleted. */
  async delete(tenantId: string, at: EntryAt, actor: string, expected: number | null): Promise<string | null> {
    const { namespace, scope, key } = at;
    const [row] = await this.database.rows<{ revision: string | null }>(sql`
      WITH locked AS (${keyLock(tenantId, namespace, scope, key)}),
      up AS (
        UPDATE entries e SET deleted = true, value = NULL, version = e.version + 1, revision = ${CURRENT_REVISION},
               updated_at = locked.at, updated_by = ${actor}, expires_at = NULL
        FROM locked
        WHERE tenant_id = ${tenantId} AND namespace = ${namespace} AND scope = ${scope} AND key = ${key}
          AND NOT e.deleted AND (e.expires_at IS NULL OR e.expires_at > now())
          ${expected === null ? sql.empty() : sql`AND e.version = ${expected}`}
        RETURNING e.*
      ), log AS (
        INSERT INTO changes (tenant_id, revision, namespace, scope, key, op, version, value, actor, at)
        SELECT tenant_id, revision, namespace, scope, key, 'DELETE', version, NULL, updated_by, updated_at FROM up
      )
      SELECT (SELECT revision::text FROM up) AS revision`);
    return row?.revision ?? null;
  }

  /**
   * A page of the change log after `after` (exclusive), oldest first, limited to `namespaces`
   * (null: all), to `upTo` (inclusive) and to revisions below the watermark.
   */
  async changesPage(
    tenantId: string,
    options: { after: LogPosition; namespaces: readonly string[] | null; upTo?: LogPosition; limit: number },
  ): Promise<{ changes: EntryChange[]; watermark: string }> {
    const filter = inNamespaces(options.namespaces);
    const upTo = options.upTo === undefined ? sql`true` : positionCondition('<=', options.upTo);
    const rows = await this.database.rows<ChangeRow & { watermark: string }>(sql`
      WITH w AS (SELECT ${WATERMARK} AS watermark)
      SELECT c.*, w.watermark::text AS watermark FROM w LEFT JOIN LATERAL (
        SELECT ${CHANGE_COLUMNS} FROM changes
        WHERE tenant_id = ${tenantId} AND revision < w.watermark AND ${filter} AND ${upTo}
          AND ${positionCondition('>', options.after)}
        ORDER BY changes.revision, changes.namespace, changes.scope, changes.key LIMIT ${options.limit}
      ) c ON true`);
    return { changes: rows.filter((row) => row.revision !== null).map(toChange), watermark: rows[0]?.watermark ?? '0' };
  }

  /** The newest final revision of a tenant. */
  async headRevision(tenantId: string): Promise<string> {
    const [row] = await this.database.rows<{ revision: string | null }>(sql`
      SELECT max(revision)::text AS revision FROM changes WHERE tenant_id = ${tenantId} AND revision < ${WATERMARK}`);
    return row?.revision ?? '0';
  }

  /** The newest `limit` final changes of `namespaces` (null: all), newest first. */
  async latestChanges(tenantId: string, namespaces: readonly string[] | null, limit: number): Promise<EntryChange[]> {
    // Ordered by the table's columns: a bare `revision` would be the text one of CHANGE_COLUMNS.
    const rows = await this.database.rows<ChangeRow>(sql`
      SELECT ${CHANGE_COLUMNS} FROM changes
      WHERE tenant_id = ${tenantId} AND revision < ${WATERMARK} AND ${inNamespaces(namespaces)}
      ORDER BY changes.revision DESC, changes.namespace DESC, changes.scope DESC, changes.key DESC LIMIT ${limit}`);
    return rows.map(toChange);
  }
}
