import { sql } from 'drizzle-orm';
import type { DatabaseHandle } from '../db/client.js';
import type { RawRow } from '../db/rows.js';
import type { agents, namespaces } from '../db/schema.js';
import type { EventBus } from '../events/bus.js';
import type { Permission, Principal } from './principal.js';

type NamespaceRow = Pick<
  RawRow<typeof namespaces>,
  'name' | 'description' | 'open_access' | 'sensitive' | 'schema' | 'default_value' | 'default_ttl_seconds' | 'history_limit' | 'created_at'
>;

export const COMMON = 'common';
export const SYSTEM = 'system';

/** A namespace's settings as every write and read needs them; cached per tenant. */
export interface NamespaceSettings {
  name: string;
  description: string | null;
  openAccess: boolean;
  sensitive: boolean;
  schema: unknown;
  defaultValue: unknown;
  defaultTtlSeconds: number | null;
  historyLimit: number | null;
  /** Replaying from before this revision is REVISION_COMPACTED (history compaction removed changes). */
  compactedRevision: string | null;
  createdAt: Date;
}

interface AgentAccess {
  stateNamespaces: ReadonlySet<string>;
  grants: ReadonlyMap<string, Permission>;
}

export interface NamespaceAccess {
  namespace: string;
  permission: Permission;
}

/**
 * The access rule of the API contract (§2), evaluated on cached namespace settings and agent
 * grants. Caches are per tenant and dropped on every `access` event (namespace, grant or agent
 * changes, from this process or another), so a revoked grant stops the very next operation.
 */
export class AccessService {
  private readonly namespaceCache = new Map<string, Promise<Map<string, NamespaceSettings>>>();
  private readonly agentCache = new Map<string, Promise<AgentAccess | null>>();
  private readonly generations = new Map<string, number>();

  constructor(
    private readonly database: DatabaseHandle,
    bus: EventBus,
  ) {
    bus.on((event) => {
      if (event.type === 'access' || event.type === 'tokens') this.invalidate(event.tenantId);
      if (event.type === 'reset')
        for (const tenantId of new Set([...this.namespaceCache.keys(), ...this.generations.keys()])) this.invalidate(tenantId);
    });
  }

  private invalidate(tenantId: string): void {
    this.generations.set(tenantId, (this.generations.get(tenantId) ?? 0) + 1);
    this.namespaceCache.delete(tenantId);
    for (const key of this.agentCache.keys()) if (key.startsWith(`${tenantId}\u0000`)) this.agentCache.delete(key);
  }

  /** Loads through `cache`, keeping the result only if no invalidation happened meanwhile. */
  private cached<T>(cache: Map<string, Promise<T>>, key: string, tenantId: string, load: () => Promise<T>): Promise<T> {
    const hit = cache.get(key);
    if (hit) return hit;
    const generation = this.generations.get(tenantId) ?? 0;
    const promise = load().then(
      (value) => {
        if ((this.generations.get(tenantId) ?? 0) !== generation) cache.delete(key);
        return value;
      },
      (error: unknown) => {
        cache.delete(key);
        throw error;
      },
    );
    cache.set(key, promise);
    return promise;
  }

  namespaces(tenantId: string): Promise<Map<string, NamespaceSettings>> {
    return this.cached(this.namespaceCache, tenantId, tenantId, async () => {
      const rows = await this.database.rows<NamespaceRow & { compacted: string | null }>(
        sql`SELECT *, compacted_revision::text AS compacted FROM namespaces WHERE tenant_id = ${tenantId} ORDER BY name`,
      );
      return new Map(
        rows.map((row) => [
          row.name,
          {
            name: row.name,
            description: row.description,
            openAccess: row.open_access,
            sensitive: row.sensitive,
            schema: row.schema,
            defaultValue: row.default_value,
            defaultTtlSeconds: row.default_ttl_seconds,
            historyLimit: row.history_limit,
            compactedRevision: row.compacted,
            createdAt: new Date(row.created_at),
          },
        ]),
      );
    });
  }

  async namespace(tenantId: string, name: string): Promise<NamespaceSettings | undefined> {
    return (await this.namespaces(tenantId)).get(name);
  }

  private agent(tenantId: string, agentId: string): Promise<AgentAccess | null> {
    return this.cached(this.agentCache, `${tenantId}\u0000${agentId}`, tenantId, async () => {
      const [row] = await this.database.rows<Pick<RawRow<typeof agents>, 'state_namespaces'> & { grants: Record<string, Permission> }>(sql`
        SELECT a.state_namespaces,
               coalesce((SELECT jsonb_object_agg(g.namespace, g.permission) FROM grants g
                         WHERE g.tenant_id = a.tenant_id AND g.agent_id = a.id), '{}'::jsonb) AS grants
        FROM agents a WHERE a.tenant_id = ${tenantId} AND a.id = ${agentId}`);
      if (!row) return null;
      return { stateNamespaces: new Set(row.state_namespaces), grants: new Map(Object.entries(row.grants)) };
    });
  }

  /** What `principal` may do on namespace `name`; null when nothing (or when it does not exist). */
  async permission(principal: Principal, name: string): Promise<Permission | null> {
    const namespaces = await this.namespaces(principal.tenantId);
    const settings = namespaces.get(name);
    if (principal.role === 'ADMIN') return settings ? 'WRITE' : null;
    if (principal.role === 'READER') return settings ? 'READ' : null;
    if (!principal.agentId) return null;
    const agent = await this.agent(principal.tenantId, principal.agentId);
    return agent ? decide(name, settings, agent) : null;
  }

  async canRead(principal: Principal, name: string): Promise<boolean> {
    return (await this.permission(principal, name)) !== null;
  }

  /** Every namespace the principal can reach, by name. */
  async reachable(principal: Principal): Promise<NamespaceAccess[]> {
    const namespaces = await this.namespaces(principal.tenantId);
    if (principal.role !== 'AGENT') {
      const permission: Permission = principal.role === 'ADMIN' ? 'WRITE' : 'READ';
      return [...namespaces.keys()].map((namespace) => ({ namespace, permission }));
    }
    return this.reachableByAgent(principal.tenantId, principal.agentId ?? '');
  }

  async reachableByAgent(tenantId: string, agentId: string): Promise<NamespaceAccess[]> {
    const [namespaces, agent] = await Promise.all([this.namespaces(tenantId), this.agent(tenantId, agentId)]);
    if (!agent) return [];
    const result: NamespaceAccess[] = [];
    for (const [name, settings] of namespaces) {
      const permission = decide(name, settings, agent);
      if (permission) result.push({ namespace: name, permission });
    }
    return result;
  }

  async agentExists(tenantId: string, agentId: string): Promise<boolean> {
    return (await this.agent(tenantId, agentId)) !== null;
  }
}

/** The five steps of the access rule for an agent; the first that applies decides. */
function decide(name: string, settings: NamespaceSettings | undefined, agent: AgentAccess): Permission | null {
  if (name === COMMON) return 'WRITE';
  if (name === SYSTEM) return agent.grants.get(SYSTEM) === 'WRITE' ? 'WRITE' : 'READ';
  if (!settings) return null;
  const granted = agent.grants.get(name);
  if (granted) return granted;
  if (settings.openAccess && agent.stateNamespaces.has(name)) return 'WRITE';
  return null;
}
