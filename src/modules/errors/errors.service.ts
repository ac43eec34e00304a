import { type SQL, sql } from 'drizzle-orm';
import type { DatabaseHandle } from '../../db/client.js';
import { badInput } from '../../domain/errors.js';
import { checkLabel } from '../../domain/names.js';
import type { EventBus } from '../../events/bus.js';
import type { ConfigService } from '../tenants/config.service.js';
import { publishTopic, subscribeTopic, topic } from '../../events/topics.js';
import { fingerprint } from './fingerprint.js';
import { encodeSmallJson } from '../../domain/values.js';
import type { RawRow } from '../../db/rows.js';
import type { errorPatterns, tenants } from '../../db/schema.js';

type TenantIdRow = Pick<RawRow<typeof tenants>, 'id'>;

export interface ReportErrorInput {
  type: string;
  message: string;
  context?: unknown;
}

/** A pattern with its occurrences counted in a window. */
export interface ErrorPattern {
  id: string;
  type: string;
  fingerprint: string;
  sampleMessage: string;
  count: number;
  firstSeenAt: Date;
  lastSeenAt: Date;
  agentIds: string[];
}

export const ERROR_REPORTED = topic<ErrorPattern>('errorReported');

/** Occurrences are counted this far back when no `since` is given (API contract §5). */
export const DEFAULT_ERROR_WINDOW_HOURS = 24;
export const MAX_MESSAGE_LENGTH = 10_000;
/** The most patterns one `errorPatterns` answers, most frequent first. */
export const MAX_PATTERNS = 1_000;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** A pattern as its statements select it: the table's columns, with its occurrences counted in a window. */
type PatternRow = Pick<
  RawRow<typeof errorPatterns>,
  'id' | 'type' | 'fingerprint' | 'sample_message' | 'first_seen_at' | 'last_seen_at'
> & {
  count: number;
  agent_ids: string[] | null;
};

const toPattern = (row: PatternRow): ErrorPattern => ({
  id: row.id,
  type: row.type,
  fingerprint: row.fingerprint,
  sampleMessage: row.sample_message,
  count: Number(row.count),
  firstSeenAt: new Date(row.first_seen_at),
  lastSeenAt: new Date(row.last_seen_at),
  agentIds: row.agent_ids ?? [],
});

/** A pattern as a subscriber gets it: from another process it came as JSON, its times strings. */
export const revivePattern = (pattern: ErrorPattern): ErrorPattern => ({
  ...pattern,
  firstSeenAt: new Date(pattern.firstSeenAt),
  lastSeenAt: new Date(pattern.lastSeenAt),
});

/** Messages may span lines (stack traces), but must be storable text. */
function checkMessage(message: string): string {
  if (message.trim().length === 0 || message.length > MAX_MESSAGE_LENGTH || message.includes('\u0000') || LONE_SURROGATE.test(message)) {
    throw badInput('message', `message must be 1 to ${MAX_MESSAGE_LENGTH} characters of text`);
  }
  return message;
}

const windowStart = (since: Date | null | undefined): SQL => {
  if (since === null || since === undefined) return sql`now() - make_interval(hours => ${DEFAULT_ERROR_WINDOW_HOURS}::int)`;
  if (!Number.isFinite(since.getTime())) throw badInput('since', 'since must be a valid time');
  return sql`${since.toISOString()}::timestamptz`;
};

/**
 * Error patterns: each report is fingerprinted (see `fingerprint`) into a pattern per (type,
 * fingerprint) and stored as an occurrence; counts and agents are those of the occurrences inside
 * a window.
 */
export class ErrorsService {
  constructor(
    private readonly database: DatabaseHandle,
    private readonly bus: EventBus,
    private readonly config: ConfigService,
  ) {}

  /** Deletes occurrences older than each tenant's metricsRetentionHours (patterns stay); returns how many. */
  async removeExpired(): Promise<number> {
    const tenants = await this.database.rows<TenantIdRow>(sql`SELECT id FROM tenants ORDER BY id`);
    let total = 0;
    for (const { id } of tenants) {
      const { metricsRetentionHours } = await this.config.get(id);
      const [row] = await this.database.rows<{ count: number }>(sql`
        WITH gone AS (
          DELETE FROM error_occurrences o USING error_patterns p
          WHERE o.pattern_id = p.id AND p.tenant_id = ${id} AND o.at < now() - make_interval(hours => ${metricsRetentionHours}::int)
          RETURNING 1
        )
        SELECT count(*)::int AS count FROM gone`);
      total += Number(row?.count ?? 0);
    }
    return total;
  }

  /**
   * Records an occurrence as the calling agent, in one statement, and returns its pattern with the
   * count and agents of the default window (this occurrence included). The pattern's sample is the
   * latest message.
   */
  async report(tenantId: string, agentId: string, input: ReportErrorInput): Promise<ErrorPattern> {
    const type = checkLabel(input.type, 'type', 100);
    const message = checkMessage(input.message);
    let context: string | null = null;
    if (input.context !== null && input.context !== undefined) {
      context = encodeSmallJson(input.context, 'context');
    }
    const since = windowStart(null);
    // The statement's snapshot does not see its own occurrence: it is added to what was there.
    const [row] = await this.database.rows<PatternRow>(sql`
      WITH p AS (
        INSERT INTO error_patterns (tenant_id, type, fingerprint, sample_message)
        VALUES (${tenantId}, ${type}, ${fingerprint(message)}, ${message})
        ON CONFLICT (tenant_id, type, fingerprint) DO UPDATE SET sample_message = excluded.sample_message, last_seen_at = now()
        RETURNING *
      ), o AS (
        INSERT INTO error_occurrences (pattern_id, agent_id, message, context, at)
        SELECT id, ${agentId}, ${message}, ${context}::jsonb, last_seen_at FROM p
      )
      SELECT p.id::text AS id, p.type, p.fingerprint, p.sample_message, p.first_seen_at, p.last_seen_at,
             1 + (SELECT count(*) FROM error_occurrences e WHERE e.pattern_id = p.id AND e.at >= ${since})::int AS count,
             ARRAY(SELECT agent_id FROM error_occurrences e WHERE e.pattern_id = p.id AND e.at >= ${since} AND agent_id IS NOT NULL
                   UNION SELECT ${agentId}::text COLLATE "C" ORDER BY 1) AS agent_ids
      FROM p`);
    if (!row) throw new Error('reportError stored no pattern');
    const pattern = toPattern(row);
    publishTopic(this.bus, tenantId, ERROR_REPORTED, [pattern]);
    return pattern;
  }

  /**
   * Patterns with at least `minFrequency` occurrences at or after `since` (default: the last 24
   * hours), most frequent first (at most MAX_PATTERNS); counts and agents in the same query.
   */
  async patterns(
    tenantId: string,
    filter: { type?: string | null; minFrequency?: number | null; since?: Date | null },
  ): Promise<ErrorPattern[]> {
    const minFrequency = filter.minFrequency ?? 1;
    if (!Number.isInteger(minFrequency) || minFrequency < 1) throw badInput('minFrequency', 'minFrequency must be 1 or more');
    const since = windowStart(filter.since);
    const conditions = [sql`p.tenant_id = ${tenantId}`, sql`p.last_seen_at >= ${since}`];
    if (filter.type !== null && filter.type !== undefined) conditions.push(sql`p.type = ${checkLabel(filter.type, 'type', 100)}`);
    const rows = await this.database.rows<PatternRow>(sql`
      SELECT p.id::text AS id, p.type, p.fingerprint, p.sample_message, p.first_seen_at, p.last_seen_at, o.count, o.agent_ids
      FROM error_patterns p
      CROSS JOIN LATERAL (
        SELECT count(*)::int AS count,
               coalesce(array_agg(DISTINCT e.agent_id ORDER BY e.agent_id) FILTER (WHERE e.agent_id IS NOT NULL), '{}') AS agent_ids
        FROM error_occurrences e WHERE e.pattern_id = p.id AND e.at >= ${since}
      ) o
      WHERE ${sql.join(conditions, sql` AND `)} AND o.count >= ${minFrequency}::int
      ORDER BY o.count DESC, p.last_seen_at DESC, p.id
      LIMIT ${MAX_PATTERNS}::int`);
    return rows.map(toPattern);
  }

  /** Patterns as errors are reported from now on, optionally of one type; see `revivePattern`. */
  watch(tenantId: string, type: string | null | undefined): AsyncIterable<ErrorPattern> {
    const only = type === null || type === undefined ? null : checkLabel(type, 'type', 100);
    return subscribeTopic(this.bus, tenantId, ERROR_REPORTED, (pattern) => only === null || pattern.type === only);
  }
}
