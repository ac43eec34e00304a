import { sql } from 'drizzle-orm';
import type { DatabaseHandle } from '../../db/client.js';
import { badInput } from '../../domain/errors.js';
import { checkLabel } from '../../domain/names.js';
import { encodeSmallJson } from '../../domain/values.js';
import type { RawRow } from '../../db/rows.js';
import type { optimizations } from '../../db/schema.js';

export interface OptimizationRecord {
  id: string;
  type: string;
  description: string | null;
  before: unknown;
  after: unknown;
  success: boolean;
  sourceAgentId: string | null;
  at: Date;
}

export interface RecordOptimizationInput {
  type: string;
  description?: string | null;
  before?: unknown;
  after?: unknown;
  success: boolean;
}

const MAX_DESCRIPTION_LENGTH = 2_000;
/** The most records one `optimizations` answers, newest first. */
export const MAX_OPTIMIZATIONS = 1_000;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

type OptimizationRow = Pick<
  RawRow<typeof optimizations>,
  'id' | 'type' | 'description' | 'before' | 'after' | 'success' | 'source_agent_id' | 'at'
>;

const COLUMNS = sql.raw('id::text AS id, type, description, before, after, success, source_agent_id, at');

const toRecord = (row: OptimizationRow): OptimizationRecord => ({
  id: row.id,
  type: row.type,
  description: row.description,
  before: row.before,
  after: row.after,
  success: row.success,
  sourceAgentId: row.source_agent_id,
  at: new Date(row.at),
});

function encodeState(value: unknown, field: string): string | null {
  if (value === null || value === undefined) return null;
  return encodeSmallJson(value, field);
}

/** What agents tried to improve, with the state before and after and whether it worked. */
export class OptimizationsService {
  constructor(private readonly database: DatabaseHandle) {}

  /** `sourceAgentId`: the calling agent, null for an admin. */
  async record(tenantId: string, sourceAgentId: string | null, input: RecordOptimizationInput): Promise<OptimizationRecord> {
    const type = checkLabel(input.type, 'type', 100);
    const description = input.description ?? null;
    if (
      description !== null &&
      (description.length > MAX_DESCRIPTION_LENGTH || description.includes('\u0000') || LONE_SURROGATE.test(description))
    ) {
      throw badInput('description', `description must be at most ${MAX_DESCRIPTION_LENGTH} characters of text`);
    }
    const before = encodeState(input.before, 'before');
    const after = encodeState(input.after, 'after');
    const [row] = await this.database.rows<OptimizationRow>(sql`
      INSERT INTO optimizations (tenant_id, type, description, before, after, success, source_agent_id)
      VALUES (${tenantId}, ${type}, ${description}, ${before}::jsonb, ${after}::jsonb, ${input.success}, ${sourceAgentId})
      RETURNING ${COLUMNS}`);
    if (!row) throw new Error('recordOptimization stored nothing');
    return toRecord(row);
  }

  /** Newest first, at most MAX_OPTIMIZATIONS; `since` unset: no lower bound. */
  async list(
    tenantId: string,
    filter: { type?: string | null; since?: Date | null; successOnly?: boolean | null },
  ): Promise<OptimizationRecord[]> {
    const conditions = [sql`tenant_id = ${tenantId}`];
    if (filter.type !== null && filter.type !== undefined) conditions.push(sql`type = ${checkLabel(filter.type, 'type', 100)}`);
    if (filter.since !== null && filter.since !== undefined) {
      if (!Number.isFinite(filter.since.getTime())) throw badInput('since', 'since must be a valid time');
      conditions.push(sql`at >= ${filter.since.toISOString()}::timestamptz`);
    }
    if (filter.successOnly === true) conditions.push(sql`success`);
    const rows = await this.database.rows<OptimizationRow>(sql`
      SELECT ${COLUMNS} FROM optimizations WHERE ${sql.join(conditions, sql` AND `)}
      ORDER BY at DESC, id DESC LIMIT ${MAX_OPTIMIZATIONS}::int`);
    return rows.map(toRecord);
  }
}
