import { sql } from 'drizzle-orm';
import { type AccessService, COMMON, SYSTEM } from '../../auth/access.js';
import { actorOf, type Principal } from '../../auth/principal.js';
import type { DatabaseHandle } from '../../db/client.js';
import { badInput } from '../../domain/errors.js';
import { checkSchema, validateValue } from '../../domain/json-schema.js';
import { checkKey, checkNamespace, checkScope } from '../../domain/names.js';
import type { EventBus } from '../../events/bus.js';
import { ValuePolicy } from '../entries/entries.policy.js';
import { CURRENT_REVISION, encodeValue, MAX_TTL_SECONDS, tenantLockName } from '../entries/entries.sql.js';

export const EXPORT_FORMAT = 'statehouse-export';

export interface ExportedEntry {
  scope: string;
  key: string;
  value: unknown;
  expiresAt: string | null;
}

export interface ExportedNamespace {
  name: string;
  description: string | null;
  openAccess: boolean;
  sensitive: boolean;
  schema: unknown;
  defaultValue: unknown;
  defaultTtlSeconds: number | null;
  historyLimit: number | null;
  entries: ExportedEntry[];
}

export interface Export {
  format: typeof EXPORT_FORMAT;
  version: 1;
  exportedAt: string;
  namespaces: ExportedNamespace[];
}

export type ImportMode = 'MERGE' | 'REPLACE';

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

/**
 * A tenant's namespaces (settings) and live entries as one JSON document, and back. An import is one
 * transaction holding the tenant's lock exclusively: all of it or nothing, every change in the log
 * under one revision.
 */
export class PortabilityService {
  constructor(
    private readonly database: DatabaseHandle,
    private readonly access: AccessService,
    private readonly bus: EventBus,
    private readonly policy = new ValuePolicy(),
  ) {}

  async export(tenantId: string, names: readonly string[] | null | undefined): Promise<Export> {
    const wanted = names?.map((name) => checkNamespace(name, 'namespaces')) ?? null;
    const settings = await this.access.namespaces(tenantId);
    const selected = [...settings.values()].filter((ns) => wanted === null || wanted.includes(ns.name));
    const rows = await this.database.rows<{ namespace: string; scope: string; key: string; value: unknown; expires_at: string | null }>(sql`
      SELECT namespace, scope, key, value, expires_at FROM entries
      WHERE tenant_id = ${tenantId} AND namespace = ANY(${sql.param(selected.map((ns) => ns.name))}::text[])
        AND NOT deleted AND (expires_at IS NULL OR expires_at > now())
      ORDER BY namespace, scope, key`);
    const entries = new Map<string, ExportedEntry[]>();
    for (const row of rows) {
      const list = entries.get(row.namespace) ?? [];
      list.push({
        scope: row.scope,
        key: row.key,
        value: this.policy.open(tenantId, row),
        expiresAt: row.expires_at && new Date(row.expires_at).toISOString(),
      });
      entries.set(row.namespace, list);
    }
    return {
      format: EXPORT_FORMAT,
      version: 1,
      exportedAt: new Date().toISOString(),
      namespaces: selected.map((ns) => ({
        name: ns.name,
        description: ns.description,
        openAccess: ns.openAccess,
        sensitive: ns.sensitive,
        schema: ns.schema ?? null,
        defaultValue: ns.defaultValue ?? null,
        defaultTtlSeconds: ns.defaultTtlSeconds,
        historyLimit: ns.historyLimit,
        entries: entries.get(ns.name) ?? [],
      })),
    };
  }

  /**
   * MERGE creates or updates the namespaces in `data` and sets their entries, leaving everything
   * else; REPLACE also deletes the entries of those namespaces that `data` does not hold. Namespaces
   * not in `data` are never touched.
   */
  async import(principal: Principal, data: unknown, mode: ImportMode): Promise<boolean> {
    const { tenantId } = principal;
    const limits = await this.policy.limits(tenantId);
    const existing = await this.access.namespaces(tenantId);
    const namespaces = this.parse(data, limits.maxValueBytes).map((ns) => {
      // An existing namespace keeps its sensitivity (import does not change it); its values are sealed if it has one.
      const settings = existing.get(ns.name) ?? ns;
      if (settings.sensitive && !this.policy.canSeal) {
        throw badInput('data', `Namespace ${ns.name} is sensitive: importing it needs STATEHOUSE_ENCRYPTION_KEY to be set on the gateway`);
      }
      const entries = ns.entries.map((entry) => ({
        ...entry,
        text: this.policy.stored(tenantId, settings, entry.scope, entry.key, entry.text),
      }));
      return { ...ns, entries };
    });
    await this.policy.checkQuota(
      tenantId,
      namespaces.flatMap((ns) =>
        ns.entries.map((entry) => ({ namespace: ns.name, scope: entry.scope, key: entry.key, value: entry.text })),
      ),
    );
    const actor = actorOf(principal);
    const revision = await this.database.transaction(async (rows) => {
      await rows(sql`SELECT pg_advisory_xact_lock(hashtextextended(${tenantLockName(tenantId)}, 0))`);
      for (const ns of namespaces) {
        await rows(sql`
          INSERT INTO namespaces (tenant_id, name, description, open_access, sensitive, schema, default_value, default_ttl_seconds, history_limit)
          VALUES (${tenantId}, ${ns.name}, ${ns.description}, ${ns.openAccess}, ${ns.sensitive}, ${json(ns.schema)}::jsonb,
                  ${json(ns.defaultValue)}::jsonb, ${ns.defaultTtlSeconds}, ${ns.historyLimit})
          ON CONFLICT (tenant_id, name) DO UPDATE SET description = excluded.description, open_access = excluded.open_access,
            schema = excluded.schema, default_value = excluded.default_value, default_ttl_seconds = excluded.default_ttl_seconds,
            history_limit = excluded.history_limit`);
      }
      const written: { revision: string | null }[] = [];
      if (mode === 'REPLACE') {
        const keep = namespaces.flatMap((ns) => ns.entries.map((entry) => [ns.name, entry.scope, entry.key].join('\u001f')));
        written.push(
          ...(await rows<{ revision: string | null }>(sql`
          WITH gone AS (
            UPDATE entries e SET deleted = true, value = NULL, version = e.version + 1, revision = ${CURRENT_REVISION},
                   updated_at = clock_timestamp(), updated_by = ${actor}, expires_at = NULL
            WHERE e.tenant_id = ${tenantId} AND e.namespace = ANY(${sql.param(namespaces.map((ns) => ns.name))}::text[]) AND NOT e.deleted
              AND concat_ws(chr(31), e.namespace, e.scope, e.key) NOT IN (SELECT unnest(${sql.param(keep)}::text[]))
            RETURNING e.*
          ), log AS (
            INSERT INTO changes (tenant_id, revision, namespace, scope, key, op, version, value, actor, at)
            SELECT tenant_id, revision, namespace, scope, key, 'DELETE', version, NULL, updated_by, updated_at FROM gone
          )
          SELECT max(revision)::text AS revision FROM gone`)),
        );
      }
      const entries = namespaces.flatMap((ns) => ns.entries.map((entry) => ({ namespace: ns.name, ...entry })));
      if (entries.length > 0) {
        written.push(
          ...(await rows<{ revision: string | null }>(sql`
          WITH input AS (
            SELECT * FROM unnest(${sql.param(entries.map((e) => e.namespace))}::text[], ${sql.param(entries.map((e) => e.scope))}::text[],
                                 ${sql.param(entries.map((e) => e.key))}::text[], ${sql.param(entries.map((e) => e.text))}::text[]::jsonb[],
                                 ${sql.param(entries.map((e) => e.expiresAt))}::text[]::timestamptz[])
              AS i(namespace, scope, key, value, expires_at)
          ), up AS (
            INSERT INTO entries AS e (tenant_id, namespace, scope, key, value, version, revision, deleted, created_at, updated_at, updated_by, expires_at)
            SELECT ${tenantId}, namespace, scope, key, value, 1, ${CURRENT_REVISION}, false, clock_timestamp(), clock_timestamp(), ${actor}, expires_at
            FROM input
            ON CONFLICT (tenant_id, namespace, scope, key) DO UPDATE SET
              value = excluded.value, version = e.version + 1, revision = excluded.revision, deleted = false,
              created_at = CASE WHEN e.deleted OR e.expires_at <= now() THEN excluded.created_at ELSE e.created_at END,
              updated_at = excluded.updated_at, updated_by = excluded.updated_by, expires_at = excluded.expires_at
            RETURNING e.*
          ), log AS (
            INSERT INTO changes (tenant_id, revision, namespace, scope, key, op, version, value, actor, at)
            SELECT tenant_id, revision, namespace, scope, key, 'SET', version, value, updated_by, updated_at FROM up
          )
          SELECT max(revision)::text AS revision FROM up`)),
        );
      }
      return written.map((row) => row.revision).find((r) => r !== null) ?? null;
    });
    await this.bus.publish({ type: 'access', tenantId });
    if (revision !== null) void this.bus.publish({ type: 'changes', tenantId, revision });
    return true;
  }

  /** Validates a whole export document before anything is written; every failure names its place. */
  private parse(data: unknown, maxValueBytes: number) {
    if (!isObject(data) || data.format !== EXPORT_FORMAT || data.version !== 1 || !Array.isArray(data.namespaces)) {
      throw badInput('data', `data must be an export of this gateway ({ format: "${EXPORT_FORMAT}", version: 1, namespaces: [...] })`);
    }
    const seen = new Set<string>();
    return data.namespaces.map((raw: unknown, index: number) => {
      const at = `namespaces[${index}]`;
      if (!isObject(raw)) throw badInput(at, `${at} must be an object`);
      const name = checkNamespace(String(raw.name ?? ''), `${at}.name`);
      if (seen.has(name)) throw badInput(`${at}.name`, `Namespace ${name} appears twice`);
      seen.add(name);
      const builtIn = name === COMMON || name === SYSTEM;
      const integer = (value: unknown, field: string, max: number) => {
        if (value === null || value === undefined) return null;
        if (!Number.isInteger(value) || (value as number) < 1 || (value as number) > max)
          throw badInput(`${at}.${field}`, `${field} must be from 1 to ${max}`);
        return value as number;
      };
      const schema = raw.schema ?? null;
      if (schema !== null) checkSchema(schema, `${at}.schema`);
      const entries = raw.entries ?? [];
      if (!Array.isArray(entries)) throw badInput(`${at}.entries`, 'entries must be a list');
      const keys = new Set<string>();
      return {
        name,
        description: typeof raw.description === 'string' ? raw.description.slice(0, 1000) : null,
        openAccess: builtIn ? true : raw.openAccess !== false,
        sensitive: raw.sensitive === true,
        schema,
        defaultValue: raw.defaultValue ?? null,
        defaultTtlSeconds: integer(raw.defaultTtlSeconds, 'defaultTtlSeconds', MAX_TTL_SECONDS),
        historyLimit: integer(raw.historyLimit, 'historyLimit', Number.MAX_SAFE_INTEGER),
        entries: entries.flatMap((entry: unknown, entryIndex: number) => {
          const where = `${at}.entries[${entryIndex}]`;
          if (!isObject(entry)) throw badInput(where, `${where} must be an object`);
          const scope = checkScope(String(entry.scope ?? 'global'), `${where}.scope`);
          const key = checkKey(String(entry.key ?? ''), `${where}.key`);
          if (keys.has(`${scope}\u001f${key}`)) throw badInput(`${where}.key`, `${scope}/${key} appears twice in ${name}`);
          keys.add(`${scope}\u001f${key}`);
          const text = encodeValue(entry.value, `${where}.value`, maxValueBytes);
          if (schema !== null) validateValue(schema, entry.value);
          const expiresAt = entry.expiresAt ? new Date(String(entry.expiresAt)) : null;
          if (expiresAt !== null && Number.isNaN(expiresAt.getTime())) throw badInput(`${where}.expiresAt`, 'expiresAt must be a date');
          // An entry that has expired since the export is not brought back.
          if (expiresAt !== null && expiresAt.getTime() <= Date.now()) return [];
          return [{ scope, key, text, expiresAt: expiresAt?.toISOString() ?? null }];
        }),
      };
    });
  }
}

const json = (value: unknown) => (value === null || value === undefined ? null : JSON.stringify(value));
