import { sql } from 'drizzle-orm';
import { type AccessService, COMMON, type NamespaceSettings, SYSTEM } from '../../auth/access.js';
import { actorOf, type Principal } from '../../auth/principal.js';
import type { DatabaseHandle } from '../../db/client.js';
import type { RawRow } from '../../db/rows.js';
import type { entries as entriesTable } from '../../db/schema.js';
import { badInput, StatehouseError } from '../../domain/errors.js';
import { checkSchema, validateValue } from '../../domain/json-schema.js';
import { checkKey, checkNamespace, checkScope, GLOBAL_SCOPE } from '../../domain/names.js';
import type { EventBus } from '../../events/bus.js';
import type { ValuePolicy } from '../entries/entries.policy.js';
import { CURRENT_REVISION, tenantLockName } from '../entries/entries.sql.js';
import { encodeValue, MAX_TTL_SECONDS } from '../../domain/values.js';

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
    private readonly policy: ValuePolicy,
  ) {}

  async export(tenantId: string, names: readonly string[] | null | undefined): Promise<Export> {
    const wanted = names?.map((name) => checkNamespace(name, 'namespaces')) ?? null;
    const settings = await this.access.namespaces(tenantId);
    const selected = [...settings.values()].filter((ns) => wanted === null || wanted.includes(ns.name));
    const rows = await this.database.rows<Pick<RawRow<typeof entriesTable>, 'namespace' | 'scope' | 'key' | 'value' | 'expires_at'>>(sql`
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
    const namespaces = this.parse(data, limits.maxValueBytes, existing).map((ns) => {
      if (ns.sensitive && !this.policy.canSeal) {
        throw badInput('data', `Namespace ${ns.name} is sensitive: importing it needs STATEHOUSE_ENCRYPTION_KEY to be set on the gateway`);
      }
      const entries = ns.entries.map((entry) => ({
        ...entry,
        text: this.policy.stored(tenantId, ns, entry.scope, entry.key, entry.text),
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
        // Only the settings the data gives change an existing namespace; the others keep their current values.
        const updates = ns.given.map((setting) => sql.raw(`${COLUMNS[setting]} = excluded.${COLUMNS[setting]}`));
        await rows(sql`
          INSERT INTO namespaces (tenant_id, name, description, open_access, sensitive, schema, default_value, default_ttl_seconds, history_limit)
          VALUES (${tenantId}, ${ns.name}, ${ns.description}, ${ns.openAccess}, ${ns.sensitive}, ${json(ns.schema)}::jsonb,
                  ${json(ns.defaultValue)}::jsonb, ${ns.defaultTtlSeconds}, ${ns.historyLimit})
          ON CONFLICT (tenant_id, name) DO ${updates.length > 0 ? sql`UPDATE SET ${sql.join(updates, sql`, `)}` : sql`NOTHING`}`);
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
    await this.bus.invalidate({ type: 'access', tenantId });
    if (revision !== null) this.bus.publish({ type: 'changes', tenantId, revision });
    return true;
  }

  /**
   * Validates a whole export document before anything is written; every failure names its place.
   * A namespace's settings are those the data gives, and for the others its current ones (a new
   * namespace: createNamespace's defaults), so leaving a setting out never changes it — an import
   * cannot loosen access or drop a schema by omission. Entries are checked against the schema the
   * namespace will have.
   */
  private parse(data: unknown, maxValueBytes: number, existing: ReadonlyMap<string, NamespaceSettings>) {
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
      const current = existing.get(name);
      const given = this.givenSettings(raw, at, name);
      const settings = { ...(current ?? NEW_NAMESPACE), ...given };
      const asked = this.flag(raw, 'sensitive', at) === true;
      // An existing namespace keeps its sensitivity: sealing is fixed at creation.
      const sensitive = current ? current.sensitive : asked;
      if (settings.schema !== null && settings.defaultValue !== null) {
        try {
          validateValue(settings.schema, settings.defaultValue);
        } catch {
          throw badInput(`${at}.defaultValue`, 'defaultValue does not match the schema');
        }
      }
      const entries = raw.entries ?? [];
      if (!Array.isArray(entries)) throw badInput(`${at}.entries`, 'entries must be a list');
      const keys = new Set<string>();
      return {
        name,
        ...settings,
        sensitive,
        given: Object.keys(given) as (keyof ImportedSettings)[],
        entries: entries.flatMap((entry: unknown, entryIndex: number) => {
          const where = `${at}.entries[${entryIndex}]`;
          if (!isObject(entry)) throw badInput(where, `${where} must be an object`);
          const scope = checkScope(String(entry.scope ?? GLOBAL_SCOPE), `${where}.scope`);
          const key = checkKey(String(entry.key ?? ''), `${where}.key`);
          if (keys.has(`${scope}\u001f${key}`)) throw badInput(`${where}.key`, `${scope}/${key} appears twice in ${name}`);
          keys.add(`${scope}\u001f${key}`);
          const text = encodeValue(entry.value, `${where}.value`, maxValueBytes);
          if (settings.schema !== null) validateEntry(settings.schema, entry.value, `${where}.value`);
          const expiresAt = entry.expiresAt ? new Date(String(entry.expiresAt)) : null;
          if (expiresAt !== null && Number.isNaN(expiresAt.getTime())) throw badInput(`${where}.expiresAt`, 'expiresAt must be a date');
          // An entry that has expired since the export is not brought back.
          if (expiresAt !== null && expiresAt.getTime() <= Date.now()) return [];
          return [{ scope, key, text, expiresAt: expiresAt?.toISOString() ?? null }];
        }),
      };
    });
  }

  /** The settings `raw` gives, checked; null clears a setting, as in updateNamespace. */
  private givenSettings(raw: Record<string, unknown>, at: string, name: string): Partial<ImportedSettings> {
    const given: Partial<ImportedSettings> = {};
    const integer = (setting: 'defaultTtlSeconds' | 'historyLimit', max: number) => {
      const value = raw[setting];
      if (value === null) return null;
      if (!Number.isInteger(value) || (value as number) < 1 || (value as number) > max)
        throw badInput(`${at}.${setting}`, `${setting} must be from 1 to ${max}`);
      return value as number;
    };
    if (this.isGiven(raw, 'description')) {
      const { description } = raw;
      if (description !== null && typeof description !== 'string') throw badInput(`${at}.description`, 'description must be a string');
      given.description = description === null ? null : description.slice(0, 1000);
    }
    const openAccess = this.flag(raw, 'openAccess', at);
    // common and system are open by definition (access rule steps 1 and 2).
    if (name === COMMON || name === SYSTEM) given.openAccess = true;
    else if (openAccess !== undefined) given.openAccess = openAccess;
    if (this.isGiven(raw, 'schema')) {
      given.schema = raw.schema ?? null;
      if (given.schema !== null) checkSchema(given.schema, `${at}.schema`);
    }
    if (this.isGiven(raw, 'defaultValue')) given.defaultValue = raw.defaultValue ?? null;
    if (this.isGiven(raw, 'defaultTtlSeconds')) given.defaultTtlSeconds = integer('defaultTtlSeconds', MAX_TTL_SECONDS);
    if (this.isGiven(raw, 'historyLimit')) given.historyLimit = integer('historyLimit', Number.MAX_SAFE_INTEGER);
    return given;
  }

  /** A setting is given when its key is there, null included. */
  private isGiven(raw: Record<string, unknown>, setting: keyof ImportedSettings): boolean {
    return Object.hasOwn(raw, setting);
  }

  /** A boolean setting: undefined when left out or null, BAD_USER_INPUT when not a boolean (a string "false" must not read as true). */
  private flag(raw: Record<string, unknown>, setting: 'openAccess' | 'sensitive', at: string): boolean | undefined {
    const value = raw[setting];
    if (value === undefined || value === null) return undefined;
    if (typeof value !== 'boolean') throw badInput(`${at}.${setting}`, `${setting} must be true or false`);
    return value;
  }
}

/** The settings of a namespace an import may change. */
interface ImportedSettings {
  description: string | null;
  openAccess: boolean;
  schema: unknown;
  defaultValue: unknown;
  defaultTtlSeconds: number | null;
  historyLimit: number | null;
}

const COLUMNS: Record<keyof ImportedSettings, string> = {
  description: 'description',
  openAccess: 'open_access',
  schema: 'schema',
  defaultValue: 'default_value',
  defaultTtlSeconds: 'default_ttl_seconds',
  historyLimit: 'history_limit',
};

/** A namespace an import creates, for the settings the data leaves out: as createNamespace makes it. */
const NEW_NAMESPACE: ImportedSettings = {
  description: null,
  openAccess: true,
  schema: null,
  defaultValue: null,
  defaultTtlSeconds: null,
  historyLimit: null,
};

/** VALIDATION_FAILED as for any write, naming the entry's value in the document. */
function validateEntry(schema: unknown, value: unknown, field: string): void {
  try {
    validateValue(schema, value);
  } catch (error) {
    if (!(error instanceof StatehouseError)) throw error;
    throw new StatehouseError(error.code, `${field}: ${error.message}`, { ...error.details, field });
  }
}

const json = (value: unknown) => (value === null || value === undefined ? null : JSON.stringify(value));
