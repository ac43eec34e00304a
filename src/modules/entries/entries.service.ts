import { type SQL, sql } from 'drizzle-orm';
import type { AccessService, NamespaceSettings } from '../../auth/access.js';
import { actorOf, type Principal } from '../../auth/principal.js';
import { type DatabaseHandle, sqlState } from '../../db/client.js';
import { decodeCursor, encodeCursor, isRevision } from '../../domain/cursor.js';
import { badInput, notFound, payloadTooLarge, revisionCompacted, versionConflict } from '../../domain/errors.js';
import { validateValue } from '../../domain/json-schema.js';
import { checkFirst, checkKey, checkNamespace, checkScope, GLOBAL_SCOPE } from '../../domain/names.js';
import type { EventBus } from '../../events/bus.js';
import type { LogPosition } from '../../events/change-feed.js';
import { ValuePolicy } from './entries.policy.js';

import {
  CHANGE_COLUMNS,
  type ChangeRow,
  CURRENT_REVISION,
  ENTRY_COLUMNS,
  type EntryRow,
  keyLock,
  keyRange,
  LIVE,
  positionCondition,
  toChange,
  toEntry,
  WATERMARK,
} from './entries.sql.js';
import { encodeValue, MAX_TTL_SECONDS } from '../../domain/values.js';
import type { ChangeOp, Entry, EntryAddress, EntryChange, EntryVersion, Page } from './entries.model.js';

/**
 * Entries and their change log. Every write is one SQL statement (one round trip, one
 * transaction) that checks the version, writes the entry and appends its change.
 */
export class EntriesService {
  /** The newest revision each tenant is known to have committed (from change notices). */
  private readonly committed = new Map<string, bigint>();
  /** The point read, the hottest query: compiled once. */
  private readonly liveEntry: (at: { tenantId: string; namespace: string; scope: string; key: string }) => Promise<EntryRow[]>;

  constructor(
    private readonly database: DatabaseHandle,
    private readonly access: AccessService,
    private readonly bus: EventBus,
    private readonly policy = new ValuePolicy(),
  ) {
    this.liveEntry = database.prepare<EntryRow>(sql`
      SELECT ${ENTRY_COLUMNS} FROM entries
      WHERE tenant_id = ${sql.placeholder('tenantId')} AND namespace = ${sql.placeholder('namespace')}
        AND scope = ${sql.placeholder('scope')} AND key = ${sql.placeholder('key')} AND ${LIVE}`);
    bus.on((event) => {
      if (event.type !== 'changes') return;
      const revision = BigInt(event.revision);
      if (revision > (this.committed.get(event.tenantId) ?? 0n)) this.committed.set(event.tenantId, revision);
    });
  }

  /**
   * Read-your-writes for `changes`: a write this process has acknowledged is below the watermark
   * within moments, unless an unrelated transaction on the server holds the watermark back. Wait
   * for it (bounded), so a client that just wrote sees its write in the log.
   */
  private async awaitCommitted(tenantId: string): Promise<void> {
    const wanted = this.committed.get(tenantId);
    if (wanted === undefined) return;
    const deadline = Date.now() + 2_000;
    for (let delay = 2; ; delay = Math.min(delay * 2, 50)) {
      const [row] = await this.database.rows<{ watermark: string }>(sql`SELECT ${WATERMARK}::text AS watermark`);
      if (BigInt(row?.watermark ?? '0') > wanted || Date.now() > deadline) return;
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }

  private async settings(tenantId: string, namespace: string): Promise<NamespaceSettings> {
    const settings = await this.access.namespace(tenantId, namespace);
    if (!settings) throw notFound(`Namespace ${namespace} does not exist`);
    return settings;
  }

  private address(input: EntryAddress) {
    return {
      namespace: checkNamespace(input.namespace),
      key: checkKey(input.key),
      scope: checkScope(input.scope ?? GLOBAL_SCOPE),
    };
  }

  private expiry(ttlSeconds: number | null | undefined, settings: NamespaceSettings): SQL {
    if (ttlSeconds !== null && ttlSeconds !== undefined) {
      if (!Number.isInteger(ttlSeconds) || ttlSeconds < 1 || ttlSeconds > MAX_TTL_SECONDS) {
        throw badInput('ttlSeconds', `ttlSeconds must be from 1 to ${MAX_TTL_SECONDS}`);
      }
    }
    const ttl = ttlSeconds ?? settings.defaultTtlSeconds;
    return ttl ? sql`now() + make_interval(secs => ${ttl})` : sql`NULL::timestamptz`;
  }

  private checkExpectedVersion(expectedVersion: number | null | undefined): number | null {
    if (expectedVersion === null || expectedVersion === undefined) return null;
    if (!Number.isInteger(expectedVersion) || expectedVersion < 0) {
      throw badInput('expectedVersion', 'expectedVersion must be 0 or more');
    }
    return expectedVersion;
  }

  async get(tenantId: string, input: EntryAddress & { atRevision?: string | null; asOf?: Date | null }): Promise<Entry | null> {
    const { namespace, key, scope } = this.address(input);
    const settings = await this.settings(tenantId, namespace);
    if (input.atRevision !== null && input.atRevision !== undefined && input.asOf) {
      throw badInput('asOf', 'Give atRevision or asOf, not both');
    }
    if ((input.atRevision !== null && input.atRevision !== undefined) || input.asOf) {
      return this.getAt(tenantId, { namespace, scope, key }, settings, input.atRevision ?? null, input.asOf ?? null);
    }
    const [row] = await this.liveEntry({ tenantId, namespace, scope, key });
    if (row) return toEntry(row);
    return this.defaultEntry(tenantId, settings, scope, key);
  }

  /**
   * The entry as it was at a revision or a time, from the change log: its newest change at or before
   * then. REVISION_COMPACTED when older versions were compacted away and that moment is among them.
   */
  private async getAt(
    tenantId: string,
    at: { namespace: string; scope: string; key: string },
    settings: NamespaceSettings,
    atRevision: string | null,
    asOf: Date | null,
  ): Promise<Entry | null> {
    const { namespace, scope, key } = at;
    const sameKey = sql`tenant_id = ${tenantId} AND namespace = ${namespace} AND scope = ${scope} AND key = ${key}`;
    // Times reach clients in milliseconds: a version's own updatedAt must find that version.
    const when =
      atRevision !== null
        ? sql`revision <= ${atRevision}::bigint`
        : sql`date_trunc('milliseconds', at) <= ${asOf?.toISOString()}::timestamptz`;
    const [row] = await this.database.rows<
      ChangeRow & { created_at: string | null; oldest_version: number | null; oldest_revision: string | null; next_revision: string }
    >(sql`
      WITH hit AS (
        SELECT * FROM changes WHERE ${sameKey} AND ${when} ORDER BY version DESC LIMIT 1
      ), oldest AS (${oldestKept(sameKey, settings.historyLimit)})
      SELECT hit.revision::text AS revision, hit.op, hit.version, hit.value, hit.at, hit.actor,
             (SELECT min(c.at) FROM changes c WHERE ${sameKey} AND c.version <= hit.version
                AND c.version > coalesce((SELECT max(d.version) FROM changes d
                                          WHERE ${sameKey} AND d.op <> 'SET' AND d.version < hit.version), 0)) AS created_at,
             (SELECT version FROM oldest) AS oldest_version, (SELECT revision::text FROM oldest) AS oldest_revision,
             pg_snapshot_xmax(pg_current_snapshot())::text AS next_revision
      FROM (SELECT 1) AS one LEFT JOIN hit ON true`);
    if (atRevision !== null && BigInt(atRevision) >= BigInt(row?.next_revision ?? '0')) {
      throw badInput('atRevision', 'atRevision is in the future');
    }
    if (!row?.op) {
      if (row?.oldest_version && row.oldest_version > 1) throw revisionCompacted(row.oldest_revision ?? '0');
      return this.defaultEntry(tenantId, settings, scope, key);
    }
    if (row.oldest_version !== null && row.version < row.oldest_version) throw revisionCompacted(row.oldest_revision ?? '0');
    if (row.op !== 'SET') return this.defaultEntry(tenantId, settings, scope, key);
    return {
      namespace,
      scope,
      key,
      value: row.value,
      version: row.version,
      revision: row.revision,
      createdAt: new Date(row.created_at ?? row.at),
      updatedAt: new Date(row.at),
      updatedBy: row.actor,
      expiresAt: null,
    };
  }

  /**
   * Every version of an entry, newest first: sets, deletes and expiries, at most the namespace's
   * historyLimit of them even before compaction has removed the older ones.
   */
  async history(tenantId: string, input: EntryAddress & { first?: number | null }): Promise<EntryVersion[]> {
    const { namespace, key, scope } = this.address(input);
    const first = checkFirst(input.first ?? 50);
    const { historyLimit } = await this.settings(tenantId, namespace);
    const rows = await this.database.rows<ChangeRow>(sql`
      SELECT ${CHANGE_COLUMNS} FROM changes
      WHERE tenant_id = ${tenantId} AND namespace = ${namespace} AND scope = ${scope} AND key = ${key}
      ORDER BY version DESC LIMIT ${historyLimit === null ? first : Math.min(first, historyLimit)}`);
    return rows.map(toChange);
  }

  /** Writes an old version's value as a new version. */
  async restore(principal: Principal, input: EntryAddress & { version: number }): Promise<Entry> {
    const { namespace, key, scope } = this.address(input);
    if (!Number.isInteger(input.version) || input.version < 1) throw badInput('version', 'version must be 1 or more');
    const settings = await this.settings(principal.tenantId, namespace);
    const sameKey = sql`tenant_id = ${principal.tenantId} AND namespace = ${namespace} AND scope = ${scope} AND key = ${key}`;
    const [row] = await this.database.rows<{
      op: ChangeOp | null;
      value: unknown;
      oldest_version: number | null;
      oldest_revision: string | null;
    }>(sql`
      WITH oldest AS (${oldestKept(sameKey, settings.historyLimit)})
      SELECT hit.op, hit.value, (SELECT version FROM oldest) AS oldest_version, (SELECT revision::text FROM oldest) AS oldest_revision
      FROM (SELECT 1) AS one LEFT JOIN (SELECT op, value FROM changes WHERE ${sameKey} AND version = ${input.version}) AS hit ON true`);
    if (row?.oldest_version && input.version < row.oldest_version) throw revisionCompacted(row.oldest_revision ?? '0');
    if (!row?.op) {
      throw badInput('version', `${key} has no version ${input.version}`);
    }
    if (row.op !== 'SET') throw badInput('version', `Version ${input.version} of ${key} is a deletion, not a value`);
    // A sensitive value is opened and sealed again: set seals what it is given.
    const value = settings.sensitive ? this.policy.open(principal.tenantId, { namespace, scope, key, value: row.value }) : row.value;
    return this.set(principal, { namespace, scope, key, value });
  }

  /**
   * Checks a revision a client resumes from: a decimal string (the scalar saw to that), not in the
   * future, and not before changes that history compaction removed from `namespaces` (null: all).
   */
  async checkResumeRevision(tenantId: string, revision: string, field: string, namespaces: readonly string[] | null): Promise<void> {
    const [row] = await this.database.rows<{ next_revision: string }>(sql`
      SELECT pg_snapshot_xmax(pg_current_snapshot())::text AS next_revision`);
    if (BigInt(revision) >= BigInt(row?.next_revision ?? '0')) throw badInput(field, `${field} is in the future`);
    const settings = await this.access.namespaces(tenantId);
    let compacted: bigint | null = null;
    for (const [name, namespace] of settings) {
      if (namespaces !== null && !namespaces.includes(name)) continue;
      if (namespace.compactedRevision !== null && (compacted === null || BigInt(namespace.compactedRevision) > compacted)) {
        compacted = BigInt(namespace.compactedRevision);
      }
    }
    if (compacted !== null && BigInt(revision) < compacted) throw revisionCompacted(String(compacted));
  }

  /** A namespace with a `defaultValue` answers reads of a missing entry with it, at version 0. */
  private defaultEntry(tenantId: string, settings: NamespaceSettings, scope: string, key: string): Entry | null {
    if (settings.defaultValue === null || settings.defaultValue === undefined) return null;
    return {
      namespace: settings.name,
      scope,
      key,
      // Sealed like a stored value, so that it reaches callers (and hides from readers) the same way.
      value: settings.sensitive
        ? JSON.parse(this.policy.stored(tenantId, settings, scope, key, JSON.stringify(settings.defaultValue)))
        : settings.defaultValue,
      version: 0,
      revision: '0',
      createdAt: settings.createdAt,
      updatedAt: settings.createdAt,
      updatedBy: null,
      expiresAt: null,
    };
  }

  async resolve(tenantId: string, input: { namespace: string; key: string; scopes: string[] }): Promise<Entry | null> {
    const namespace = checkNamespace(input.namespace);
    const key = checkKey(input.key);
    if (input.scopes.length < 1 || input.scopes.length > 50) throw badInput('scopes', 'scopes must hold 1 to 50 scopes');
    const scopes = input.scopes.map((scope) => checkScope(scope, 'scopes'));
    const settings = await this.settings(tenantId, namespace);
    const [row] = await this.database.rows<EntryRow>(sql`
      SELECT ${ENTRY_COLUMNS} FROM entries
      WHERE tenant_id = ${tenantId} AND namespace = ${namespace} AND key = ${key}
        AND scope = ANY(${sql.param(scopes)}::text[]) AND ${LIVE}
      ORDER BY array_position(${sql.param(scopes)}::text[], scope::text) LIMIT 1`);
    if (row) return toEntry(row);
    return scopes[0] === undefined ? null : this.defaultEntry(tenantId, settings, scopes[0], key);
  }

  async list(
    tenantId: string,
    input: {
      namespace: string;
      scope?: string | null;
      prefix?: string | null;
      match?: unknown;
      first?: number | null;
      after?: string | null;
    },
  ): Promise<Page<Entry>> {
    const namespace = checkNamespace(input.namespace);
    const first = checkFirst(input.first ?? 100);
    const conditions: SQL[] = [sql`tenant_id = ${tenantId}`, sql`namespace = ${namespace}`, LIVE];
    if (input.scope !== null && input.scope !== undefined) conditions.push(sql`scope = ${checkScope(input.scope)}`);
    if (input.prefix !== null && input.prefix !== undefined && input.prefix !== '') {
      checkKey(input.prefix, 'prefix');
      const { from, to } = keyRange(input.prefix);
      conditions.push(sql`key >= ${from}`);
      if (to !== null) conditions.push(sql`key < ${to}`);
    }
    const settings = await this.settings(tenantId, namespace);
    if (input.match !== null && input.match !== undefined) {
      this.policy.refuseSensitive(settings, 'match', 'A value filter');
      conditions.push(sql`value @> ${encodeValue(input.match, 'match')}::jsonb`);
    }
    if (input.after) {
      const [scope, key] = decodeCursor(input.after, 'after', 2);
      conditions.push(sql`(scope, key) > (${scope}, ${key})`);
    }
    const rows = await this.database.rows<EntryRow>(sql`
      SELECT ${ENTRY_COLUMNS} FROM entries WHERE ${sql.join(conditions, sql` AND `)}
      ORDER BY scope, key LIMIT ${first + 1}`);
    const nodes = rows.slice(0, first).map(toEntry);
    const last = nodes.at(-1);
    return {
      nodes,
      pageInfo: { hasNextPage: rows.length > first, endCursor: last ? encodeCursor([last.scope, last.key]) : null },
    };
  }

  /** The value inside a stored one: opens the sealed values of sensitive namespaces. */
  open(tenantId: string, row: { namespace: string; scope: string; key: string; value: unknown }): unknown {
    return this.policy.open(tenantId, row);
  }

  /** Live entry counts of the given namespaces (for `Namespace.entryCount`, batched). */
  async count(tenantId: string, namespaces: readonly string[]): Promise<Map<string, number>> {
    const rows = await this.database.rows<{ namespace: string; count: number | string }>(sql`
      SELECT namespace, count(*)::int AS count FROM entries
      WHERE tenant_id = ${tenantId} AND namespace = ANY(${sql.param([...namespaces])}::text[]) AND ${LIVE}
      GROUP BY namespace`);
    return new Map(rows.map((row) => [row.namespace, Number(row.count)]));
  }

  async set(
    principal: Principal,
    input: EntryAddress & { value?: unknown; expectedVersion?: number | null; ttlSeconds?: number | null },
  ): Promise<Entry> {
    const { namespace, key, scope } = this.address(input);
    const { tenantId } = principal;
    const text = encodeValue(input.value, 'value', (await this.policy.limits(tenantId)).maxValueBytes);
    const expected = this.checkExpectedVersion(input.expectedVersion);
    const settings = await this.settings(tenantId, namespace);
    if (settings.schema !== null && settings.schema !== undefined) validateValue(settings.schema, input.value);
    const expiresAt = this.expiry(input.ttlSeconds, settings);
    const value = this.policy.stored(tenantId, settings, scope, key, text);
    await this.policy.checkQuota(tenantId, [{ namespace, scope, key, value }]);
    return this.upsert(principal, { namespace, scope, key }, expected, {
      inserted: sql`${value}::jsonb`,
      updated: sql`excluded.value`,
      expiresAt,
    });
  }

  async patch(principal: Principal, input: EntryAddress & { patch?: unknown; expectedVersion?: number | null }): Promise<Entry> {
    const { namespace, key, scope } = this.address(input);
    const maxBytes = (await this.policy.limits(principal.tenantId)).maxValueBytes;
    const patch = encodeValue(input.patch, 'patch', maxBytes);
    const expected = this.checkExpectedVersion(input.expectedVersion);
    const settings = await this.settings(principal.tenantId, namespace);
    this.policy.refuseSensitive(settings, 'patch', 'A merge patch');
    await this.policy.checkQuota(principal.tenantId, [{ namespace, scope, key, value: patch }]);
    const base = JSON.stringify(settings.defaultValue ?? {});
    return this.upsert(
      principal,
      { namespace, scope, key },
      expected,
      {
        inserted: sql`statehouse_limit_size(statehouse_merge_patch(${base}::jsonb, ${patch}::jsonb), ${maxBytes})`,
        updated: sql`CASE WHEN e.deleted OR e.expires_at <= now() THEN excluded.value
                          ELSE statehouse_limit_size(statehouse_merge_patch(e.value, ${patch}::jsonb), ${maxBytes}) END`,
        expiresAt: this.expiry(null, settings),
      },
      settings,
    ).catch((error: unknown) => {
      if (sqlState(error) === 'SH413') throw payloadTooLarge('patch', maxBytes);
      throw error;
    });
  }

  async increment(principal: Principal, input: EntryAddress & { by?: number | null }): Promise<Entry> {
    const { namespace, key, scope } = this.address(input);
    const by = input.by ?? 1;
    if (!Number.isFinite(by)) throw badInput('by', 'by must be a finite number');
    const settings = await this.settings(principal.tenantId, namespace);
    this.policy.refuseSensitive(settings, 'by', 'An increment');
    await this.policy.checkQuota(principal.tenantId, [{ namespace, scope, key, value: '0' }]);
    const base = typeof settings.defaultValue === 'number' ? settings.defaultValue : 0;
    if (!Number.isFinite(base + by)) throw outOfRange();
    // numeric, not float: 0.1 + 0.2 stays 0.3 and large counters stay exact. A sum beyond double
    // range is refused: JSON readers (JavaScript's included) would read it back as Infinity or null.
    const sum = sql`(e.value #>> '{}')::numeric + ${String(by)}::numeric`;
    const entry = await this.upsert(
      principal,
      { namespace, scope, key },
      null,
      {
        inserted: sql`to_jsonb(${String(base)}::numeric + ${String(by)}::numeric)`,
        updated: sql`CASE WHEN e.deleted OR e.expires_at <= now() THEN excluded.value
                          ELSE to_jsonb(${sum}) END`,
        expiresAt: this.expiry(null, settings),
        condition: sql`(e.deleted OR e.expires_at <= now() OR (jsonb_typeof(e.value) = 'number' AND abs(${sum}) <= ${MAX_JSON_NUMBER}))`,
      },
      settings,
    ).catch((error: unknown) => {
      if (error instanceof NotANumber) throw badInput('key', `The value of ${key} is not a number`);
      throw error;
    });
    return entry;
  }

  /**
   * Insert or update one entry and append its change, in one statement. `expected` is the CAS
   * version (0: must not exist). When `check` is given (typed namespaces), the statement runs in a
   * transaction and the resulting value is validated before commit.
   */
  private async upsert(
    principal: Principal,
    at: { namespace: string; scope: string; key: string },
    expected: number | null,
    value: { inserted: SQL; updated: SQL; expiresAt: SQL; condition?: SQL },
    check?: NamespaceSettings,
  ): Promise<Entry> {
    const { tenantId } = principal;
    const { namespace, scope, key } = at;
    const actor = actorOf(principal);
    const expectedCheck =
      expected === null ? sql`true` : sql`(CASE WHEN e.deleted OR e.expires_at <= now() THEN 0 ELSE e.version END) = ${expected}`;
    const query = sql`
      WITH locked AS (${keyLock(tenantId, namespace, scope, key)}),
      existing AS (
        SELECT 1 FROM entries WHERE tenant_id = ${tenantId} AND namespace = ${namespace} AND scope = ${scope} AND key = ${key}
      ), up AS (
        INSERT INTO entries AS e (tenant_id, namespace, scope, key, value, version, revision, deleted, created_at, updated_at, updated_by, expires_at)
        SELECT ${tenantId}, ${namespace}, ${scope}, ${key}, ${value.inserted}, 1, ${CURRENT_REVISION}, false, locked.at, locked.at, ${actor}, ${value.expiresAt}
        FROM locked WHERE ${expected === null || expected === 0 ? sql`true` : sql`EXISTS (SELECT 1 FROM existing)`}
        ON CONFLICT (tenant_id, namespace, scope, key) DO UPDATE SET
          value = ${value.updated},
          version = e.version + 1,
          revision = excluded.revision,
          deleted = false,
          created_at = CASE WHEN e.deleted OR e.expires_at <= now() THEN excluded.created_at ELSE e.created_at END,
          updated_at = excluded.updated_at,
          updated_by = excluded.updated_by,
          expires_at = excluded.expires_at
        WHERE ${expectedCheck} AND ${value.condition ?? sql`true`}
        RETURNING e.*
      ), log AS (
        INSERT INTO changes (tenant_id, revision, namespace, scope, key, op, version, value, actor, at)
        SELECT tenant_id, revision, namespace, scope, key, 'SET', version, value, updated_by, updated_at FROM up
      )
      SELECT up.namespace, up.scope, up.key, up.value, up.version, up.revision::text AS revision, up.created_at,
             up.updated_at, up.updated_by, up.expires_at
      FROM (SELECT 1) AS one LEFT JOIN up ON true`;
    const needsCheck = check?.schema !== null && check?.schema !== undefined;
    for (let attempt = 1; ; attempt++) {
      const row = needsCheck
        ? await this.database.transaction(async (rows) => {
            const [written] = await rows<EntryRow>(query);
            if (written?.version !== null && written?.version !== undefined) validateValue(check?.schema, written.value);
            return written;
          })
        : (await this.database.rows<EntryRow>(query))[0];
      if (row && row.version !== null && row.version !== undefined) {
        this.bus.publish({ type: 'changes', tenantId, revision: row.revision });
        return toEntry(row);
      }
      const current = await this.current(tenantId, at);
      if (value.condition) throw current.notANumber ? new NotANumber() : outOfRange();
      if (current.version === expected && attempt === 1) continue;
      throw versionConflict(current.version);
    }
  }

  /**
   * A key's version (0 when absent) and whether its value is not a number, read after a write was
   * refused. The write's statement cannot tell: it reads from its snapshot, taken before it waited
   * for the key's lock, so the writer it waited for is not in it. A second read costs a round trip
   * on the refusal only. If it shows the very version the write expected, the statement judged the
   * entry absent while it was being created (its row is in no earlier snapshot): the write is tried
   * once more — the row now exists for every later snapshot.
   */
  private async current(tenantId: string, at: { namespace: string; scope: string; key: string }) {
    const [row] = await this.database.rows<{ version: number; not_a_number: boolean }>(sql`
      SELECT CASE WHEN ${LIVE} THEN version ELSE 0 END AS version, ${LIVE} AND jsonb_typeof(value) <> 'number' AS not_a_number
      FROM entries
      WHERE tenant_id = ${tenantId} AND namespace = ${at.namespace} AND scope = ${at.scope} AND key = ${at.key}`);
    return { version: row?.version ?? 0, notANumber: row?.not_a_number ?? false };
  }

  async delete(principal: Principal, input: EntryAddress & { expectedVersion?: number | null }): Promise<boolean> {
    const { namespace, key, scope } = this.address(input);
    const expected = this.checkExpectedVersion(input.expectedVersion);
    const { tenantId } = principal;
    await this.settings(tenantId, namespace);
    for (let attempt = 1; ; attempt++) {
      const [row] = await this.database.rows<{ revision: string | null }>(sql`
        WITH locked AS (${keyLock(tenantId, namespace, scope, key)}),
        up AS (
          UPDATE entries e SET deleted = true, value = NULL, version = e.version + 1, revision = ${CURRENT_REVISION},
                 updated_at = locked.at, updated_by = ${actorOf(principal)}, expires_at = NULL
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
      if (row?.revision) {
        this.bus.publish({ type: 'changes', tenantId, revision: row.revision });
        return true;
      }
      if (expected === null) return false;
      // As in upsert: the version after the lock, and once more if the statement missed a new entry.
      const current = (await this.current(tenantId, { namespace, scope, key })).version;
      if (current === 0 && expected === 0) return false;
      if (current !== expected || attempt > 1) throw versionConflict(current);
    }
  }

  /**
   * A page of the change log after `after` (exclusive), oldest first, limited to `namespaces`
   * (null: all), to `upTo` (inclusive) and to revisions below the watermark, so that a later page
   * never shows an older revision.
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

  /** The newest final revision of a tenant: where a live feed starts. */
  async headRevision(tenantId: string): Promise<string> {
    const [row] = await this.database.rows<{ revision: string | null }>(sql`
      SELECT max(revision)::text AS revision FROM changes WHERE tenant_id = ${tenantId} AND revision < ${WATERMARK}`);
    return row?.revision ?? '0';
  }

  /**
   * The newest `first` changes of `namespaces` (null: all), newest first. Read below the watermark as
   * `changes` is, so a feed that resumes after the newest of them (`entryChanged(afterRevision:)`)
   * continues the list with no gap and no duplicate.
   */
  async latestChanges(tenantId: string, input: { namespaces: readonly string[] | null; first?: number | null }): Promise<EntryChange[]> {
    const first = checkFirst(input.first ?? 100);
    await this.awaitCommitted(tenantId);
    // Ordered by the table's columns: a bare `revision` would be the text one of CHANGE_COLUMNS.
    const rows = await this.database.rows<ChangeRow>(sql`
      SELECT ${CHANGE_COLUMNS} FROM changes
      WHERE tenant_id = ${tenantId} AND revision < ${WATERMARK} AND ${inNamespaces(input.namespaces)}
      ORDER BY changes.revision DESC, changes.namespace DESC, changes.scope DESC, changes.key DESC LIMIT ${first}`);
    return rows.map(toChange);
  }

  async changes(
    tenantId: string,
    input: { namespaces: readonly string[] | null; afterRevision?: string | null; first?: number | null; after?: string | null },
  ): Promise<Page<EntryChange>> {
    const first = checkFirst(input.first ?? 100);
    await this.awaitCommitted(tenantId);
    if (input.afterRevision && !input.after)
      await this.checkResumeRevision(tenantId, input.afterRevision, 'afterRevision', input.namespaces);
    let after: LogPosition = { revision: input.afterRevision ?? '0' };
    if (input.after) {
      const [revision = '', namespace, scope, key] = decodeCursor(input.after, 'after', 4);
      if (!isRevision(revision)) throw badInput('after', 'after is not a cursor of this list');
      after = { revision, namespace, scope, key };
    }
    const { changes } = await this.changesPage(tenantId, { after, namespaces: input.namespaces, limit: first + 1 });
    const nodes = changes.slice(0, first);
    const last = nodes.at(-1);
    return {
      nodes,
      pageInfo: {
        hasNextPage: changes.length > first,
        endCursor: last ? encodeCursor([last.revision, last.namespace, last.scope, last.key]) : null,
      },
    };
  }
}

const inNamespaces = (namespaces: readonly string[] | null): SQL =>
  namespaces === null ? sql`true` : sql`namespace = ANY(${sql.param([...namespaces])}::text[])`;

class NotANumber extends Error {}

/** The largest finite double, as SQL numeric. */
const MAX_JSON_NUMBER = sql.raw(`'${Number.MAX_VALUE}'::numeric`);
const outOfRange = () => badInput('by', 'The result would be beyond the range of JSON numbers');

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
