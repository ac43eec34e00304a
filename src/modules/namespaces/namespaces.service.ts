import { sql } from 'drizzle-orm';
import { type AccessService, COMMON, type NamespaceSettings, SYSTEM } from '../../auth/access.js';
import type { Permission } from '../../auth/principal.js';
import type { DatabaseHandle } from '../../db/client.js';
import type { RawRow } from '../../db/rows.js';
import type { grants, namespaces } from '../../db/schema.js';
import { badInput, notFound } from '../../domain/errors.js';
import { checkSchema, validateValue } from '../../domain/json-schema.js';
import { checkAgentId, checkNamespace } from '../../domain/names.js';
import type { EventBus } from '../../events/bus.js';
import { MAX_TTL_SECONDS } from '../../domain/values.js';

export interface NamespaceInput {
  name: string;
  description?: string | null;
  openAccess?: boolean | null;
  sensitive?: boolean | null;
  schema?: unknown;
  defaultValue?: unknown;
  defaultTtlSeconds?: number | null;
  historyLimit?: number | null;
}

export interface AccessGrant {
  namespace: string;
  agentId: string;
  permission: Permission;
  grantedAt: Date;
}

/** The namespaces every tenant has (API contract §2, rules 1 and 2). */
export const BUILT_IN_NAMESPACES = [
  { name: COMMON, description: 'Shared by every agent: read and write' },
  { name: SYSTEM, description: 'System state: every agent reads, writes need a grant' },
];

function checkSettings(input: NamespaceInput, current?: NamespaceSettings): void {
  if (input.description !== null && input.description !== undefined && input.description.length > 1000) {
    throw badInput('description', 'description must be at most 1000 characters');
  }
  const ttl = input.defaultTtlSeconds;
  if (ttl !== null && ttl !== undefined && (ttl < 1 || ttl > MAX_TTL_SECONDS)) {
    throw badInput('defaultTtlSeconds', `defaultTtlSeconds must be from 1 to ${MAX_TTL_SECONDS}`);
  }
  if (input.historyLimit !== null && input.historyLimit !== undefined && input.historyLimit < 1) {
    throw badInput('historyLimit', 'historyLimit must be 1 or more');
  }
  if (input.schema !== null && input.schema !== undefined) checkSchema(input.schema);
  const schema = input.schema !== undefined ? input.schema : current?.schema;
  const defaultValue = input.defaultValue !== undefined ? input.defaultValue : current?.defaultValue;
  if (schema !== null && schema !== undefined && defaultValue !== null && defaultValue !== undefined) {
    try {
      validateValue(schema, defaultValue);
    } catch {
      throw badInput('defaultValue', 'defaultValue does not match the schema');
    }
  }
}

const json = (value: unknown) => (value === null || value === undefined ? null : JSON.stringify(value));

/** Namespaces and grants. Every change publishes an `access` event: caches everywhere recompute. */
/** Values of sensitive namespaces cannot be read or written without the key: say so at start, not at the first read. */
export async function refuseSensitiveWithoutKey(database: Pick<DatabaseHandle, 'rows'>): Promise<void> {
  const [row] = await database.rows<{ name: string }>(sql`SELECT tenant_id || '/' || name AS name FROM namespaces WHERE sensitive LIMIT 1`);
  if (row) {
    throw new Error(
      `Namespace ${row.name} is sensitive and STATEHOUSE_ENCRYPTION_KEY is not set: set the key its values were encrypted with (64 hex characters)`,
    );
  }
}

export class NamespacesService {
  constructor(
    private readonly database: DatabaseHandle,
    private readonly access: AccessService,
    private readonly bus: EventBus,
    /** Whether an encryption key is configured, without which no namespace may be sensitive. */
    private readonly canSeal = false,
  ) {}

  async create(tenantId: string, input: NamespaceInput): Promise<NamespaceSettings> {
    const name = checkNamespace(input.name, 'name');
    checkSettings(input);
    if (input.sensitive && !this.canSeal) {
      throw badInput('sensitive', 'A sensitive namespace needs STATEHOUSE_ENCRYPTION_KEY to be set on the gateway');
    }
    const [row] = await this.database.rows<Pick<RawRow<typeof namespaces>, 'name'>>(sql`
      INSERT INTO namespaces (tenant_id, name, description, open_access, sensitive, schema, default_value, default_ttl_seconds, history_limit)
      VALUES (${tenantId}, ${name}, ${input.description ?? null}, ${input.openAccess ?? true}, ${input.sensitive ?? false},
              ${json(input.schema)}::jsonb, ${json(input.defaultValue)}::jsonb, ${input.defaultTtlSeconds ?? null}, ${input.historyLimit ?? null})
      ON CONFLICT DO NOTHING RETURNING name`);
    if (!row) throw badInput('name', `Namespace ${name} already exists`);
    return this.changed(tenantId, name);
  }

  async update(tenantId: string, input: NamespaceInput): Promise<NamespaceSettings> {
    const name = checkNamespace(input.name, 'name');
    const current = await this.access.namespace(tenantId, name);
    if (!current) throw notFound(`Namespace ${name} does not exist`);
    checkSettings(input, current);
    const sets = [
      input.description !== undefined && sql`description = ${input.description}`,
      input.openAccess !== undefined && input.openAccess !== null && sql`open_access = ${input.openAccess}`,
      input.schema !== undefined && sql`schema = ${json(input.schema)}::jsonb`,
      input.defaultValue !== undefined && sql`default_value = ${json(input.defaultValue)}::jsonb`,
      input.defaultTtlSeconds !== undefined && sql`default_ttl_seconds = ${input.defaultTtlSeconds}`,
      input.historyLimit !== undefined && sql`history_limit = ${input.historyLimit}`,
    ].filter((set) => set !== false);
    if (sets.length > 0) {
      await this.database.rows(sql`UPDATE namespaces SET ${sql.join(sets, sql`, `)} WHERE tenant_id = ${tenantId} AND name = ${name}`);
    }
    return this.changed(tenantId, name);
  }

  /** Deletes the namespace with its entries, change log and grants; false when there was none. */
  async delete(tenantId: string, name: string): Promise<boolean> {
    checkNamespace(name, 'name');
    if (name === COMMON || name === SYSTEM) throw badInput('name', `Namespace ${name} always exists and cannot be deleted`);
    const rows = await this.database.rows(sql`DELETE FROM namespaces WHERE tenant_id = ${tenantId} AND name = ${name} RETURNING name`);
    if (rows.length > 0) await this.bus.invalidate({ type: 'access', tenantId });
    return rows.length > 0;
  }

  private async changed(tenantId: string, name: string): Promise<NamespaceSettings> {
    await this.bus.invalidate({ type: 'access', tenantId });
    const settings = await this.access.namespace(tenantId, name);
    if (!settings) throw notFound(`Namespace ${name} does not exist`);
    return settings;
  }

  async grant(tenantId: string, input: { namespace: string; agentId: string; permission?: Permission | null }): Promise<AccessGrant> {
    const namespace = checkNamespace(input.namespace);
    const agentId = checkAgentId(input.agentId, 'agentId');
    const permission = input.permission ?? 'WRITE';
    if (!(await this.access.namespace(tenantId, namespace))) throw badInput('namespace', `Namespace ${namespace} does not exist`);
    if (!(await this.access.agentExists(tenantId, agentId))) throw badInput('agentId', `Agent ${agentId} is not registered`);
    const [row] = await this.database.rows<Pick<RawRow<typeof grants>, 'granted_at'>>(sql`
      INSERT INTO grants (tenant_id, namespace, agent_id, permission) VALUES (${tenantId}, ${namespace}, ${agentId}, ${permission})
      ON CONFLICT (tenant_id, namespace, agent_id) DO UPDATE SET permission = excluded.permission, granted_at = now()
      RETURNING granted_at`);
    await this.bus.invalidate({ type: 'access', tenantId });
    return { namespace, agentId, permission, grantedAt: new Date(row?.granted_at ?? Date.now()) };
  }

  async revoke(tenantId: string, input: { namespace: string; agentId: string }): Promise<boolean> {
    const namespace = checkNamespace(input.namespace);
    const agentId = checkAgentId(input.agentId, 'agentId');
    const rows = await this.database.rows(sql`
      DELETE FROM grants WHERE tenant_id = ${tenantId} AND namespace = ${namespace} AND agent_id = ${agentId} RETURNING agent_id`);
    await this.bus.invalidate({ type: 'access', tenantId });
    return rows.length > 0;
  }

  /** Grants of the given namespaces (for `Namespace.grants`, batched). */
  async grantsOf(tenantId: string, names: readonly string[]): Promise<Map<string, AccessGrant[]>> {
    const rows = await this.database.rows<Pick<RawRow<typeof grants>, 'namespace' | 'agent_id' | 'permission' | 'granted_at'>>(sql`
      SELECT namespace, agent_id, permission, granted_at FROM grants
      WHERE tenant_id = ${tenantId} AND namespace = ANY(${sql.param([...names])}::text[]) ORDER BY namespace, agent_id`);
    const result = new Map<string, AccessGrant[]>();
    for (const row of rows) {
      const list = result.get(row.namespace) ?? [];
      list.push({ namespace: row.namespace, agentId: row.agent_id, permission: row.permission, grantedAt: new Date(row.granted_at) });
      result.set(row.namespace, list);
    }
    return result;
  }
}
