import { randomUUID } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { generateToken, hashToken } from '../../auth/tokens.js';
import type { DatabaseHandle } from '../../db/client.js';
import { badInput, unauthenticated } from '../../domain/errors.js';
import { checkAgentId, checkLabel, checkNamespace } from '../../domain/names.js';
import type { EventBus } from '../../events/bus.js';
import { publishTopic, subscribeTopic, topic } from '../../events/topics.js';
import type { ConfigService } from '../tenants/config.service.js';
import { encodeSmallJson } from '../../domain/values.js';
import type { RawRow } from '../../db/rows.js';
import type { agents } from '../../db/schema.js';

export type AgentStatus = 'STARTING' | 'IDLE' | 'BUSY' | 'ERROR' | 'STOPPED';

export interface Agent {
  id: string;
  name: string;
  type: string;
  capabilities: string[];
  stateNamespaces: string[];
  status: AgentStatus;
  lastHeartbeatAt: Date | null;
  heartbeat: unknown;
  metadata: unknown;
  registeredAt: Date;
}

export interface RegisterAgentInput {
  id?: string | null;
  name: string;
  type: string;
  capabilities?: string[] | null;
  stateNamespaces?: string[] | null;
  metadata?: unknown;
}

type AgentRow = Pick<
  RawRow<typeof agents>,
  'id' | 'name' | 'type' | 'capabilities' | 'state_namespaces' | 'status' | 'last_heartbeat_at' | 'heartbeat' | 'metadata' | 'registered_at'
>;

const toAgent = (row: AgentRow): Agent => ({
  id: row.id,
  name: row.name,
  type: row.type,
  capabilities: row.capabilities,
  stateNamespaces: row.state_namespaces,
  status: row.status,
  lastHeartbeatAt: row.last_heartbeat_at === null ? null : new Date(row.last_heartbeat_at),
  heartbeat: row.heartbeat,
  metadata: row.metadata,
  registeredAt: new Date(row.registered_at),
});

const MAX_LIST = 100;
const AGENT_CHANGED = topic<Agent>('agentChanged');

/** An agent that came through the bus from another process, its dates as JSON strings. */
export const reviveAgent = (agent: Agent): Agent => ({
  ...agent,
  lastHeartbeatAt: agent.lastHeartbeatAt === null ? null : new Date(agent.lastHeartbeatAt),
  registeredAt: new Date(agent.registeredAt),
});

function checkList(values: string[] | null | undefined, field: string, check: (value: string, field: string) => string): string[] {
  const list = values ?? [];
  if (list.length > MAX_LIST) throw badInput(field, `${field} may hold at most ${MAX_LIST} items`);
  return [...new Set(list.map((value) => check(value, field)))];
}

/** Registered agents; each gets an AGENT token bound to it, shown once. */
export class AgentsService {
  constructor(
    private readonly database: DatabaseHandle,
    private readonly bus: EventBus,
    private readonly config: ConfigService,
  ) {}

  /** Whether the last heartbeat is within the tenant's activeWindowSeconds. */
  async isActive(tenantId: string, agent: Agent): Promise<boolean> {
    if (agent.lastHeartbeatAt === null) return false;
    const { activeWindowSeconds } = await this.config.get(tenantId);
    return Date.now() - agent.lastHeartbeatAt.getTime() <= activeWindowSeconds * 1000;
  }

  /** An agent reports for itself: its status, and whatever it wants the fleet to see. */
  async heartbeat(tenantId: string, agentId: string, input: { status: AgentStatus; data?: unknown }): Promise<Agent> {
    const data = input.data === undefined || input.data === null ? null : encodeSmallJson(input.data, 'data');
    const [row] = await this.database.rows<AgentRow>(sql`
      UPDATE agents SET status = ${input.status}, last_heartbeat_at = now(), heartbeat = ${data}::jsonb
      WHERE tenant_id = ${tenantId} AND id = ${agentId} RETURNING *`);
    if (!row) throw unauthenticated('The agent is no longer registered');
    const agent = toAgent(row);
    publishTopic(this.bus, tenantId, AGENT_CHANGED, [agent]);
    return agent;
  }

  /**
   * Registrations, heartbeats and status changes, as they happen; `type` narrows to one agent type.
   * Agents from other processes arrive with their dates as strings: pass them through `reviveAgent`.
   */
  watch(tenantId: string, type: string | null | undefined): AsyncIterable<Agent> {
    return subscribeTopic(this.bus, tenantId, AGENT_CHANGED, (agent) => !type || agent.type === type);
  }

  async register(tenantId: string, input: RegisterAgentInput): Promise<{ agent: Agent; token: string }> {
    const id = input.id === null || input.id === undefined ? `agent-${randomUUID()}` : checkAgentId(input.id);
    const name = checkLabel(input.name, 'name');
    const type = checkLabel(input.type, 'type', 100);
    const capabilities = checkList(input.capabilities, 'capabilities', (value, field) => checkLabel(value, field, 100));
    const stateNamespaces = checkList(input.stateNamespaces, 'stateNamespaces', checkNamespace);
    const metadata = input.metadata === undefined || input.metadata === null ? null : encodeSmallJson(input.metadata, 'metadata');
    const token = generateToken();
    // The agent and its token in one statement: both or neither.
    const [row] = await this.database.rows<AgentRow>(sql`
      WITH a AS (
        INSERT INTO agents (tenant_id, id, name, type, capabilities, state_namespaces, metadata)
        VALUES (${tenantId}, ${id}, ${name}, ${type}, ${JSON.stringify(capabilities)}::jsonb, ${JSON.stringify(stateNamespaces)}::jsonb, ${metadata}::jsonb)
        ON CONFLICT DO NOTHING RETURNING *
      ), t AS (
        INSERT INTO tokens (id, tenant_id, name, role, agent_id, hash)
        SELECT ${randomUUID()}, tenant_id, id, 'AGENT', id, ${hashToken(token)} FROM a
      )
      SELECT * FROM a`);
    if (!row) throw badInput('id', `Agent ${id} is already registered`);
    // Another process may have cached this id as unknown.
    await this.bus.invalidate({ type: 'access', tenantId });
    const agent = toAgent(row);
    publishTopic(this.bus, tenantId, AGENT_CHANGED, [agent]);
    return { agent, token };
  }

  /** Removes the agent with its tokens and grants; false when there was none. */
  async deregister(tenantId: string, id: string): Promise<boolean> {
    checkAgentId(id);
    const rows = await this.database.rows(sql`DELETE FROM agents WHERE tenant_id = ${tenantId} AND id = ${id} RETURNING id`);
    if (rows.length > 0) await this.bus.invalidate({ type: 'tokens', tenantId });
    return rows.length > 0;
  }

  async byIds(tenantId: string, ids: readonly string[]): Promise<Map<string, Agent>> {
    const rows = await this.database.rows<AgentRow>(sql`
      SELECT * FROM agents WHERE tenant_id = ${tenantId} AND id = ANY(${sql.param([...ids])}::text[])`);
    return new Map(rows.map((row) => [row.id, toAgent(row)]));
  }

  async list(
    tenantId: string,
    filter: { activeWithinSeconds?: number | null; type?: string | null; status?: AgentStatus | null },
  ): Promise<Agent[]> {
    const conditions = [sql`tenant_id = ${tenantId}`];
    if (filter.activeWithinSeconds !== null && filter.activeWithinSeconds !== undefined) {
      if (filter.activeWithinSeconds < 1) throw badInput('activeWithinSeconds', 'activeWithinSeconds must be 1 or more');
      conditions.push(sql`last_heartbeat_at > now() - make_interval(secs => ${filter.activeWithinSeconds})`);
    }
    if (filter.type) conditions.push(sql`type = ${filter.type}`);
    if (filter.status) conditions.push(sql`status = ${filter.status}`);
    const rows = await this.database.rows<AgentRow>(sql`
      SELECT * FROM agents WHERE ${sql.join(conditions, sql` AND `)} ORDER BY registered_at, id LIMIT 10000`);
    return rows.map(toAgent);
  }
}
