import { Ajv2020 } from 'ajv/dist/2020.js';
import { sql } from 'drizzle-orm';
import type { DatabaseHandle } from '../../db/client.js';
import type { RawRow } from '../../db/rows.js';
import type { tenants } from '../../db/schema.js';
import { badInput } from '../../domain/errors.js';
import type { EventBus } from '../../events/bus.js';
import { MAX_VALUE_BYTES } from '../../domain/values.js';

/** A tenant's settings (API contract §5, Config), every one filled in. */
export interface TenantConfig {
  activeWindowSeconds: number;
  metricsRetentionHours: number;
  limits: {
    maxValueBytes: number;
    maxCommitOperations: number;
    maxMetricsPerCall: number;
    maxDepth: number;
    maxAliases: number;
    maxCost: number;
    maxBatchOperations: number;
    maxConnectionsPerToken: number;
    maxSubscriptionsPerSocket: number;
  };
  quotas: { maxEntries: number | null; maxBytes: number | null };
  rateLimit: { perTokenPerSecond: number | null };
}

/** The largest `limits.maxValueBytes` a tenant may set. */
export const MAX_VALUE_BYTES_SETTING = 16 * MAX_VALUE_BYTES;

const positive = (maximum: number) => ({ type: 'integer', minimum: 1, maximum });
const optionalPositive = (maximum: number) => ({ type: ['integer', 'null'], minimum: 1, maximum });

/** What updateConfig accepts: the contract's settings, nothing else, each of its type. */
const CONFIG_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['activeWindowSeconds', 'metricsRetentionHours', 'limits', 'quotas', 'rateLimit'],
  properties: {
    activeWindowSeconds: positive(31_536_000),
    metricsRetentionHours: positive(87_600),
    limits: {
      type: 'object',
      additionalProperties: false,
      properties: {
        maxValueBytes: positive(MAX_VALUE_BYTES_SETTING),
        maxCommitOperations: positive(10_000),
        maxMetricsPerCall: positive(100_000),
        maxDepth: positive(100),
        maxAliases: positive(1_000),
        maxCost: positive(1_000_000),
        maxBatchOperations: positive(1_000),
        maxConnectionsPerToken: positive(100_000),
        maxSubscriptionsPerSocket: positive(10_000),
      },
    },
    quotas: {
      type: 'object',
      additionalProperties: false,
      properties: { maxEntries: optionalPositive(Number.MAX_SAFE_INTEGER), maxBytes: optionalPositive(Number.MAX_SAFE_INTEGER) },
    },
    rateLimit: {
      type: 'object',
      additionalProperties: false,
      properties: { perTokenPerSecond: optionalPositive(1_000_000) },
    },
  },
};

const validate = new Ajv2020({ allErrors: false, strict: false }).compile(CONFIG_SCHEMA);

export function defaultConfig(activeWindowSeconds: number): TenantConfig {
  return {
    activeWindowSeconds,
    metricsRetentionHours: 168,
    limits: {
      maxValueBytes: MAX_VALUE_BYTES,
      maxCommitOperations: 500,
      maxMetricsPerCall: 1000,
      maxDepth: 12,
      maxAliases: 30,
      maxCost: 5000,
      maxBatchOperations: 20,
      // Enough for a benchmark's thousand subscriber sockets on one agent token.
      maxConnectionsPerToken: 2_000,
      maxSubscriptionsPerSocket: 100,
    },
    quotas: { maxEntries: null, maxBytes: null },
    rateLimit: { perTokenPerSecond: null },
  };
}

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

/** RFC 7396 merge of `patch` into `target`. */
function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isObject(patch)) return patch;
  const result: Record<string, unknown> = isObject(target) ? { ...target } : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete result[key];
    // defineProperty, so that a key such as "__proto__" stays a key (refused as not a setting) instead of a prototype.
    else
      Object.defineProperty(result, key, { value: mergePatch(result[key], value), enumerable: true, writable: true, configurable: true });
  }
  return result;
}

/**
 * Tenant settings: the stored overrides merged over the defaults, cached per tenant and reloaded
 * in every process when they change.
 */
export class ConfigService {
  private readonly cache = new Map<string, Promise<TenantConfig>>();

  constructor(
    private readonly database: DatabaseHandle,
    private readonly bus: EventBus,
    private readonly activeWindowSeconds: number,
  ) {
    bus.on((event) => {
      if (event.type === 'access') this.cache.delete(event.tenantId);
      if (event.type === 'reset') this.cache.clear();
    });
  }

  get(tenantId: string): Promise<TenantConfig> {
    let config = this.cache.get(tenantId);
    if (!config) {
      config = this.load(tenantId);
      this.cache.set(tenantId, config);
      config.catch(() => this.cache.delete(tenantId));
    }
    return config;
  }

  private async load(tenantId: string): Promise<TenantConfig> {
    const [row] = await this.database.rows<Pick<RawRow<typeof tenants>, 'settings'>>(
      sql`SELECT settings FROM tenants WHERE id = ${tenantId}`,
    );
    return mergePatch(defaultConfig(this.activeWindowSeconds), row?.settings ?? {}) as TenantConfig;
  }

  /**
   * Merges `patch` (RFC 7396; null restores a default) into the settings. An unknown setting or a
   * value of the wrong type is BAD_USER_INPUT naming it, and nothing changes.
   */
  async update(tenantId: string, patch: unknown): Promise<TenantConfig> {
    if (!isObject(patch)) throw badInput('patch', 'patch must be a JSON object');
    const [row] = await this.database.rows<Pick<RawRow<typeof tenants>, 'settings'>>(
      sql`SELECT settings FROM tenants WHERE id = ${tenantId}`,
    );
    const overrides = mergePatch(row?.settings ?? {}, patch);
    const merged = mergePatch(defaultConfig(this.activeWindowSeconds), overrides);
    if (!validate(merged)) {
      const [error] = validate.errors ?? [];
      const path = [
        ...(error?.instancePath ?? '').split('/').filter(Boolean),
        ...(error?.keyword === 'additionalProperties' ? [String(error.params.additionalProperty)] : []),
      ].join('.');
      const reason = error?.keyword === 'additionalProperties' ? 'is not a setting' : (error?.message ?? 'is invalid');
      throw badInput(path || 'patch', `${path || 'patch'} ${reason}`);
    }
    await this.database.rows(sql`UPDATE tenants SET settings = ${JSON.stringify(overrides)}::jsonb WHERE id = ${tenantId}`);
    await this.bus.invalidate({ type: 'access', tenantId });
    return merged as unknown as TenantConfig;
  }
}
