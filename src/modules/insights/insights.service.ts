import { sql } from 'drizzle-orm';
import type { DatabaseHandle } from '../../db/client.js';
import { badInput, notFound } from '../../domain/errors.js';
import { checkFirst, checkLabel } from '../../domain/names.js';
import type { EventBus } from '../../events/bus.js';
import { publishTopic, subscribeTopic, topic } from '../../events/topics.js';
import { encodeSmallJson } from '../../domain/values.js';
import type { RawRow } from '../../db/rows.js';
import type { insights } from '../../db/schema.js';

/** In rising order, as the PostgreSQL enum `priority` declares them (so `>=` compares ranks). */
export const PRIORITIES = ['LOW', 'MEDIUM', 'HIGH', 'CRITICAL'] as const;
export type Priority = (typeof PRIORITIES)[number];

export interface Insight {
  id: string;
  type: string;
  content: unknown;
  priority: Priority;
  sourceAgentId: string | null;
  createdAt: Date;
  actedUponAt: Date | null;
}

export interface AddInsightInput {
  type: string;
  content?: unknown;
  priority?: Priority | null;
}

export const INSIGHT_ADDED = topic<Insight>('insightAdded');
/** Insight ids are bigint identities: at most 19 digits. */
const ID = /^[1-9]\d{0,18}$/;

type InsightRow = Pick<
  RawRow<typeof insights>,
  'id' | 'type' | 'content' | 'priority' | 'source_agent_id' | 'created_at' | 'acted_upon_at'
>;

const COLUMNS = sql.raw('id::text AS id, type, content, priority, source_agent_id, created_at, acted_upon_at');

const toInsight = (row: InsightRow): Insight => ({
  id: row.id,
  type: row.type,
  content: row.content,
  priority: row.priority,
  sourceAgentId: row.source_agent_id,
  createdAt: new Date(row.created_at),
  actedUponAt: row.acted_upon_at === null ? null : new Date(row.acted_upon_at),
});

/** An insight as a subscriber gets it: from another process it came as JSON, its times strings. */
export const reviveInsight = (insight: Insight): Insight => ({
  ...insight,
  createdAt: new Date(insight.createdAt),
  actedUponAt: insight.actedUponAt === null ? null : new Date(insight.actedUponAt),
});

const rank = (priority: Priority) => PRIORITIES.indexOf(priority);

/** Insights: observations agents (or admins) share with the fleet, each acted upon at most once. */
export class InsightsService {
  constructor(
    private readonly database: DatabaseHandle,
    private readonly bus: EventBus,
  ) {}

  /** `sourceAgentId`: the calling agent, null for an admin. */
  async add(tenantId: string, sourceAgentId: string | null, input: AddInsightInput): Promise<Insight> {
    const type = checkLabel(input.type, 'type', 100);
    if (input.content === null || input.content === undefined) throw badInput('content', 'content is required');
    const content = encodeSmallJson(input.content, 'content');
    const priority = input.priority ?? 'MEDIUM';
    if (!PRIORITIES.includes(priority)) throw badInput('priority', `priority must be one of ${PRIORITIES.join(', ')}`);
    const [row] = await this.database.rows<InsightRow>(sql`
      INSERT INTO insights (tenant_id, type, content, priority, source_agent_id)
      VALUES (${tenantId}, ${type}, ${content}::jsonb, ${priority}, ${sourceAgentId})
      RETURNING ${COLUMNS}`);
    if (!row) throw new Error('addInsight stored nothing');
    const insight = toInsight(row);
    publishTopic(this.bus, tenantId, INSIGHT_ADDED, [insight]);
    return insight;
  }

  /**
   * Marks the insight acted upon; marking it again keeps the first time. An id that is not an
   * insight of the tenant is NOT_FOUND (as for any operation on a missing target); one that cannot
   * be an id at all is BAD_USER_INPUT.
   */
  async markActedUpon(tenantId: string, id: string): Promise<Insight> {
    if (!ID.test(id) || BigInt(id) > 9223372036854775807n) throw badInput('id', 'id must be an insight id');
    const [row] = await this.database.rows<InsightRow>(sql`
      UPDATE insights SET acted_upon_at = coalesce(acted_upon_at, now())
      WHERE tenant_id = ${tenantId} AND id = ${id}::bigint
      RETURNING ${COLUMNS}`);
    if (!row) throw notFound(`Insight ${id} does not exist`);
    return toInsight(row);
  }

  /** Newest first. */
  async list(
    tenantId: string,
    filter: { type?: string | null; minPriority?: Priority | null; actedUpon?: boolean | null; first?: number | null },
  ): Promise<Insight[]> {
    const first = checkFirst(filter.first ?? 100);
    const conditions = [sql`tenant_id = ${tenantId}`];
    if (filter.type !== null && filter.type !== undefined) conditions.push(sql`type = ${checkLabel(filter.type, 'type', 100)}`);
    if (filter.minPriority !== null && filter.minPriority !== undefined) {
      if (!PRIORITIES.includes(filter.minPriority)) throw badInput('minPriority', `minPriority must be one of ${PRIORITIES.join(', ')}`);
      conditions.push(sql`priority >= ${filter.minPriority}::priority`);
    }
    if (filter.actedUpon === true) conditions.push(sql`acted_upon_at IS NOT NULL`);
    if (filter.actedUpon === false) conditions.push(sql`acted_upon_at IS NULL`);
    const rows = await this.database.rows<InsightRow>(sql`
      SELECT ${COLUMNS} FROM insights WHERE ${sql.join(conditions, sql` AND `)}
      ORDER BY created_at DESC, id DESC LIMIT ${first}::int`);
    return rows.map(toInsight);
  }

  /** Insights as they are added, at or above `minPriority`; see `reviveInsight`. */
  watch(tenantId: string, minPriority: Priority | null | undefined): AsyncIterable<Insight> {
    const least = minPriority === null || minPriority === undefined ? 0 : rank(minPriority);
    if (least < 0) throw badInput('minPriority', `minPriority must be one of ${PRIORITIES.join(', ')}`);
    return subscribeTopic(this.bus, tenantId, INSIGHT_ADDED, (insight) => rank(insight.priority) >= least);
  }
}
