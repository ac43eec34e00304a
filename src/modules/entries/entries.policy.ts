import { sql } from 'drizzle-orm';
import type { NamespaceSettings } from '../../auth/access.js';
import type { DatabaseHandle } from '../../db/client.js';
import { badInput, StatehouseError } from '../../domain/errors.js';
import { isSealed, ValueCipher } from '../../domain/value-cipher.js';
import type { ConfigService, TenantConfig } from '../tenants/config.service.js';

/** A written value as the quota check measures it: its place and its JSON text. */
export interface QuotaWrite {
  namespace: string;
  scope: string;
  key: string;
  value: string | null;
}

/**
 * What every writer of values obeys, per tenant: the value size limit, the entry and byte quotas,
 * and the sealing of sensitive namespaces' values (AES-256-GCM, see ValueCipher).
 */
export class ValuePolicy {
  constructor(
    private readonly database: Pick<DatabaseHandle, 'rows'>,
    private readonly config: Pick<ConfigService, 'get'>,
    /** null without STATEHOUSE_ENCRYPTION_KEY: then no namespace may be sensitive. */
    private readonly cipher: ValueCipher | null,
  ) {}

  get canSeal(): boolean {
    return this.cipher !== null;
  }

  async limits(tenantId: string): Promise<TenantConfig['limits']> {
    return (await this.config.get(tenantId)).limits;
  }

  /** The JSON text to store for a value written at a place: sealed in a sensitive namespace. */
  stored(tenantId: string, settings: Pick<NamespaceSettings, 'name' | 'sensitive'>, scope: string, key: string, json: string): string {
    if (!settings.sensitive) return json;
    return JSON.stringify(this.requireCipher().seal(json, ValueCipher.placeOf(tenantId, settings.name, scope, key)));
  }

  /** The value inside a stored one (sealed values of sensitive namespaces are opened). */
  open(tenantId: string, row: { namespace: string; scope: string; key: string; value: unknown }): unknown {
    if (!isSealed(row.value)) return row.value;
    return this.requireCipher().open(row.value, ValueCipher.placeOf(tenantId, row.namespace, row.scope, row.key));
  }

  /**
   * Patch, increment and value filters work on the plaintext inside PostgreSQL, which never sees
   * sensitive values: they are refused there (read, change and setEntry with expectedVersion instead).
   */
  refuseSensitive(settings: Pick<NamespaceSettings, 'name' | 'sensitive'>, field: string, what: string): void {
    if (settings.sensitive) {
      throw badInput(field, `${what} cannot run on the encrypted values of sensitive namespace ${settings.name}; use setEntry`);
    }
  }

  /**
   * QUOTA_EXCEEDED when the writes would take the tenant past `maxEntries` or `maxBytes`. Costs a
   * query only when a quota is set. Checked before the write: concurrent writers may together pass
   * a quota by at most what they write at that moment.
   */
  async checkQuota(tenantId: string, writes: readonly QuotaWrite[]): Promise<void> {
    if (writes.length === 0) return;
    const { maxEntries, maxBytes } = (await this.config.get(tenantId)).quotas;
    if (maxEntries === null && maxBytes === null) return;
    const live = sql.raw('NOT e.deleted AND (e.expires_at IS NULL OR e.expires_at > now())');
    const [usage] = await this.database.rows<{ entries: string; bytes: string }>(sql`
      WITH k AS (
        SELECT * FROM unnest(${sql.param(writes.map((w) => w.namespace))}::text[], ${sql.param(writes.map((w) => w.scope))}::text[],
                             ${sql.param(writes.map((w) => w.key))}::text[], ${sql.param(writes.map((w) => w.value))}::text[]::jsonb[])
          AS k(namespace, scope, key, value)
      ), now_used AS (
        SELECT count(*) AS entries, coalesce(sum(pg_column_size(e.value)), 0) AS bytes FROM entries e
        WHERE e.tenant_id = ${tenantId} AND ${live}
      ), touched AS (
        SELECT count(*) FILTER (WHERE k.value IS NOT NULL) - count(e.key) FILTER (WHERE k.value IS NOT NULL)
                 - count(e.key) FILTER (WHERE k.value IS NULL) AS entries,
               coalesce(sum(pg_column_size(k.value)), 0) - coalesce(sum(pg_column_size(e.value)), 0) AS bytes
        FROM k LEFT JOIN entries e ON e.tenant_id = ${tenantId} AND e.namespace = k.namespace AND e.scope = k.scope
                                  AND e.key = k.key AND ${live}
      )
      SELECT (now_used.entries + touched.entries)::text AS entries, (now_used.bytes + touched.bytes)::text AS bytes
      FROM now_used, touched`);
    const entries = Number(usage?.entries ?? 0);
    const bytes = Number(usage?.bytes ?? 0);
    if (maxEntries !== null && entries > maxEntries) {
      throw new StatehouseError('QUOTA_EXCEEDED', `The tenant may hold at most ${maxEntries} entries`, {
        quota: 'maxEntries',
        limit: maxEntries,
      });
    }
    if (maxBytes !== null && bytes > maxBytes) {
      throw new StatehouseError('QUOTA_EXCEEDED', `The tenant may hold at most ${maxBytes} bytes of values`, {
        quota: 'maxBytes',
        limit: maxBytes,
      });
    }
  }

  private requireCipher(): ValueCipher {
    if (!this.cipher) throw new Error('A sensitive namespace needs STATEHOUSE_ENCRYPTION_KEY');
    return this.cipher;
  }
}
