import { sql } from 'drizzle-orm';
import type { DatabaseHandle } from '../../db/client.js';
import { LIVE, WATERMARK } from '../entries/entries.sql.js';
import type { ConfigService } from '../tenants/config.service.js';

export interface SystemOverview {
  agentsByStatus: Record<string, number>;
  activeAgents: number;
  namespaces: number;
  entries: number;
  revision: string;
  errorsLastHour: number;
  openInsights: number;
}

const STATUSES = ['STARTING', 'IDLE', 'BUSY', 'ERROR', 'STOPPED'] as const;

/** What a dashboard polls: the whole fleet's vital signs in one round trip. */
export class SystemService {
  constructor(
    private readonly database: DatabaseHandle,
    private readonly config: ConfigService,
  ) {}

  /** `namespaces`: those the caller may read, whose namespaces and entries are counted; null for all of the tenant's. */
  async overview(tenantId: string, namespaces: readonly string[] | null): Promise<SystemOverview> {
    const { activeWindowSeconds } = await this.config.get(tenantId);
    const names = namespaces === null ? null : sql.param([...namespaces]);
    const readableNamespace = names === null ? sql`true` : sql`name = ANY(${names}::text[])`;
    const inReadableNamespace = names === null ? sql`true` : sql`namespace = ANY(${names}::text[])`;
    const [row] = await this.database.rows<{
      agents_by_status: Record<string, number>;
      active_agents: number;
      namespaces: number;
      entries: number;
      revision: string;
      errors_last_hour: number;
      open_insights: number;
    }>(sql`
      SELECT
        (SELECT coalesce(jsonb_object_agg(status, n), '{}'::jsonb)
           FROM (SELECT status, count(*)::int AS n FROM agents WHERE tenant_id = ${tenantId} GROUP BY status) AS s) AS agents_by_status,
        (SELECT count(*)::int FROM agents WHERE tenant_id = ${tenantId}
           AND last_heartbeat_at > now() - make_interval(secs => ${activeWindowSeconds})) AS active_agents,
        (SELECT count(*)::int FROM namespaces WHERE tenant_id = ${tenantId} AND ${readableNamespace}) AS namespaces,
        (SELECT count(*)::int FROM entries WHERE tenant_id = ${tenantId} AND ${inReadableNamespace} AND ${LIVE}) AS entries,
        (SELECT coalesce(max(revision), 0)::text FROM changes WHERE tenant_id = ${tenantId}
           AND revision < ${WATERMARK}) AS revision,
        (SELECT count(*)::int FROM error_occurrences o JOIN error_patterns p ON p.id = o.pattern_id
           WHERE p.tenant_id = ${tenantId} AND o.at > now() - interval '1 hour') AS errors_last_hour,
        (SELECT count(*)::int FROM insights WHERE tenant_id = ${tenantId} AND acted_upon_at IS NULL) AS open_insights`);
    const byStatus = Object.fromEntries(STATUSES.map((status) => [status, Number(row?.agents_by_status[status] ?? 0)]));
    return {
      agentsByStatus: byStatus,
      activeAgents: Number(row?.active_agents ?? 0),
      namespaces: Number(row?.namespaces ?? 0),
      entries: Number(row?.entries ?? 0),
      revision: row?.revision ?? '0',
      errorsLastHour: Number(row?.errors_last_hour ?? 0),
      openInsights: Number(row?.open_insights ?? 0),
    };
  }
}
