import { type SQL, sql } from 'drizzle-orm';
import type { AccessService } from '../../auth/access.js';
import type { DatabaseHandle } from '../../db/client.js';
import type { RawRow } from '../../db/rows.js';
import type { metrics, tenants } from '../../db/schema.js';
import { badInput, StatehouseError } from '../../domain/errors.js';
import { checkAgentId, checkLabel } from '../../domain/names.js';
import type { EventBus } from '../../events/bus.js';
import { publishTopic, subscribeTopic, topic } from '../../events/topics.js';
import type { ConfigService } from '../tenants/config.service.js';
import { encodeValue } from '../../domain/values.js';

type TenantIdRow = Pick<RawRow<typeof tenants>, 'id'>;

export interface MetricInput {
  name: string;
  value: number;
  unit?: string | null;
  tags?: unknown;
  at?: Date | null;
}

/** A stored point, as `metricRecorded` delivers it. */
export interface Metric {
  name: string;
  value: number;
  unit: string | null;
  tags: unknown;
  agentId: string | null;
  at: Date;
}

export interface MetricSummary {
  name: string;
  unit: string | null;
  agentId: string | null;
  count: number;
  min: number;
  max: number;
  avg: number;
  p50: number;
  p95: number;
  p99: number;
  last: number;
}

export interface MetricPoint {
  at: Date;
  count: number;
  avg: number;
  min: number;
  max: number;
}

export const METRIC_RECORDED = topic<Metric>('metricRecorded');

/** Fleet reads look this far back when no `since` is given. */
export const DEFAULT_WINDOW_HOURS = 24;
/** How far ahead of the server clock a point's `at` may be (clock skew between agents and gateway). */
const MAX_FUTURE_SKEW_MS = 5 * 60_000;
const MAX_TAGS_BYTES = 4_096;
const MAX_UNIT_LENGTH = 50;
/** The most buckets one `metricSeries` window may span. */
export const MAX_SERIES_BUCKETS = 10_000;
const MAX_BUCKET_SECONDS = 366 * 24 * 3600;
const RETENTION_BATCH = 5_000;

/**
 * The mean of the group's values without overflow. float8's avg() also sums the squares, which
 * overflow from about 1e154, and a plain sum overflows at 1.8e308 — either way one agent's point
 * could break every summary of its tenant. Values from 1e270 up are summed scaled by 2^-64 (exact:
 * a power of two) and both parts divided by the count before they are added; below that the result
 * is avg()'s own, sum / count.
 */
const MEAN = sql.raw(`(coalesce(sum(value) FILTER (WHERE abs(value) < 1e270), 0) / count(*)
  + coalesce(sum(value * (2::float8 ^ -64)) FILTER (WHERE abs(value) >= 1e270), 0) / count(*) * (2::float8 ^ 64))`);

/**
 * percentile_cont interpolates as lo + p·(hi − lo), which is ±Infinity when hi − lo overflows (a
 * point near −1.8e308 and one near +1.8e308). Halving the values first and doubling the result
 * keeps every step finite and changes nothing else (both are exact for all but subnormal values).
 */
const percentile = (fraction: number) => sql.raw(`percentile_cont(${fraction}) WITHIN GROUP (ORDER BY value * 0.5) * 2`);

interface PointRow {
  at: string | Date;
  count: number;
  avg: number;
  min: number;
  max: number;
}

type MetricRow = Pick<RawRow<typeof metrics>, 'name' | 'value' | 'unit' | 'tags' | 'agent_id' | 'at'>;

const toMetric = (row: MetricRow): Metric => ({
  name: row.name,
  value: Number(row.value),
  unit: row.unit,
  tags: row.tags,
  agentId: row.agent_id,
  at: new Date(row.at),
});

/**
 * A point as a subscriber gets it: published in this process it is the object itself, from another
 * process it came as JSON, its time a string.
 */
export const reviveMetric = (metric: Metric): Metric => ({ ...metric, at: new Date(metric.at) });

/** A point made ready to store: its column values as text, or BAD_USER_INPUT naming the field. */
function checkPoint(metric: MetricInput, now: number, retentionHours: number) {
  const name = checkLabel(metric.name, 'name');
  if (!Number.isFinite(metric.value)) throw badInput('value', 'value must be a finite number');
  const unit = metric.unit === null || metric.unit === undefined ? null : checkLabel(metric.unit, 'unit', MAX_UNIT_LENGTH);
  let tags: string | null = null;
  if (metric.tags !== null && metric.tags !== undefined) {
    if (typeof metric.tags !== 'object' || Array.isArray(metric.tags)) throw badInput('tags', 'tags must be a JSON object');
    tags = encodeValue(metric.tags, 'tags');
    if (Buffer.byteLength(tags) > MAX_TAGS_BYTES) throw badInput('tags', `tags must be at most ${MAX_TAGS_BYTES} bytes as JSON`);
  }
  let at: string | null = null;
  if (metric.at !== null && metric.at !== undefined) {
    const time = metric.at.getTime();
    if (!Number.isFinite(time) || time > now + MAX_FUTURE_SKEW_MS) throw badInput('at', 'at may not be in the future');
    if (time < now - retentionHours * 3_600_000) throw badInput('at', `at is older than the retention of ${retentionHours} hours`);
    at = metric.at.toISOString();
  }
  return { name, value: String(metric.value), unit, tags, at };
}

/** Metric points reported by agents; summaries and series are aggregated in SQL. */
export class MetricsService {
  constructor(
    private readonly database: Pick<DatabaseHandle, 'rows'>,
    private readonly access: Pick<AccessService, 'agentExists'>,
    private readonly config: Pick<ConfigService, 'get'>,
    private readonly bus: Pick<EventBus, 'publish' | 'on'>,
  ) {}

  /**
   * Stores a batch as the calling agent in one statement and returns how many points were stored.
   * Every point is checked first: one bad point refuses the batch.
   */
  async record(tenantId: string, agentId: string, metrics: readonly MetricInput[]): Promise<number> {
    const { limits, metricsRetentionHours } = await this.config.get(tenantId);
    if (metrics.length > limits.maxMetricsPerCall) {
      throw badInput('metrics', `At most ${limits.maxMetricsPerCall} metrics may be recorded in one call`);
    }
    if (metrics.length === 0) return 0;
    const now = Date.now();
    const points = metrics.map((metric, index) => {
      try {
        return checkPoint(metric, now, metricsRetentionHours);
      } catch (error) {
        if (error instanceof StatehouseError && typeof error.details.field === 'string') {
          throw new StatehouseError(error.code, `metrics[${index}]: ${error.message}`, error.details);
        }
        throw error;
      }
    });
    const rows = await this.database.rows<MetricRow>(sql`
      INSERT INTO metrics (tenant_id, agent_id, name, value, unit, tags, at)
      SELECT ${tenantId}, ${agentId}, p.name, p.value, p.unit, p.tags, coalesce(p.at, now())
      FROM unnest(${sql.param(points.map((p) => p.name))}::text[], ${sql.param(points.map((p) => p.value))}::text[]::float8[],
                  ${sql.param(points.map((p) => p.unit))}::text[], ${sql.param(points.map((p) => p.tags))}::text[]::jsonb[],
                  ${sql.param(points.map((p) => p.at))}::text[]::timestamptz[]) AS p(name, value, unit, tags, at)
      RETURNING name, value, unit, tags, agent_id, at`);
    publishTopic(this.bus, tenantId, METRIC_RECORDED, rows.map(toMetric));
    return rows.length;
  }

  /**
   * count, min, max, avg, percentiles and the latest value per metric name (and agent, with
   * `groupByAgent`) over the points at or after `since` (default: the last 24 hours). Percentiles
   * are PostgreSQL's `percentile_cont`: linear interpolation between the two nearest ranks at
   * position p × (n − 1), as numpy's default, R's type 7 or Excel's PERCENTILE.INC.
   */
  async summary(
    tenantId: string,
    filter: { name?: string | null; agentId?: string | null; since?: Date | null; groupByAgent?: boolean | null },
  ): Promise<MetricSummary[]> {
    const conditions = await this.conditions(tenantId, filter);
    const byAgent = filter.groupByAgent === true;
    const keys = byAgent ? sql.raw('name, agent_id') : sql.raw('name');
    const agent = byAgent ? sql.raw('t.agent_id') : sql`${filter.agentId ?? null}::text`;
    const sameAgent = byAgent ? sql.raw('AND m.agent_id IS NOT DISTINCT FROM t.agent_id') : sql``;
    // The latest point of each group is an index lookup, not a second sort of the whole window.
    // Every figure is float8 or int, which both drivers return as numbers: the rows are summaries as they are.
    return this.database.rows<MetricSummary>(sql`
      WITH totals AS (
        SELECT ${keys}, count(*)::int AS count, min(value) AS min, max(value) AS max, ${MEAN} AS avg,
               ${percentile(0.5)} AS p50, ${percentile(0.95)} AS p95, ${percentile(0.99)} AS p99
        FROM metrics WHERE ${conditions} GROUP BY ${keys}
      )
      SELECT t.name, l.unit, ${agent} AS "agentId", t.count, t.min, t.max, t.avg, t.p50, t.p95, t.p99, l.value AS last
      FROM totals t
      CROSS JOIN LATERAL (
        SELECT m.value, m.unit FROM metrics m WHERE ${conditions} AND m.name = t.name ${sameAgent}
        ORDER BY m.at DESC, m.id DESC LIMIT 1
      ) l
      ORDER BY t.name${byAgent ? sql.raw(', t.agent_id') : sql``}`);
  }

  /**
   * One point per non-empty bucket of `bucketSeconds`, oldest first. Buckets are aligned to the
   * Unix epoch (`at` is the bucket's start), so the first one may hold only part of its span.
   */
  async series(
    tenantId: string,
    filter: { name: string; agentId?: string | null; since?: Date | null; bucketSeconds?: number | null },
  ): Promise<MetricPoint[]> {
    const bucketSeconds = filter.bucketSeconds ?? 60;
    if (!Number.isInteger(bucketSeconds) || bucketSeconds < 1 || bucketSeconds > MAX_BUCKET_SECONDS) {
      throw badInput('bucketSeconds', `bucketSeconds must be from 1 to ${MAX_BUCKET_SECONDS}`);
    }
    const since = filter.since ?? defaultSince();
    const buckets = (Date.now() - since.getTime()) / 1000 / bucketSeconds;
    if (buckets > MAX_SERIES_BUCKETS) {
      const field = filter.since ? 'since' : 'bucketSeconds';
      throw badInput(field, `The window spans more than ${MAX_SERIES_BUCKETS} buckets: give a later since or a larger bucketSeconds`);
    }
    const conditions = await this.conditions(tenantId, { ...filter, since });
    const rows = await this.database.rows<PointRow>(sql`
      SELECT to_timestamp(floor(extract(epoch FROM at) / ${bucketSeconds}::int) * ${bucketSeconds}::int) AS at,
             count(*)::int AS count, ${MEAN} AS avg, min(value) AS min, max(value) AS max
      FROM metrics WHERE ${conditions}
      GROUP BY 1 ORDER BY 1`);
    return rows.map((row) => ({
      at: new Date(row.at),
      count: Number(row.count),
      avg: Number(row.avg),
      min: Number(row.min),
      max: Number(row.max),
    }));
  }

  /** The points recorded from now on, filtered by name and agent; see `reviveMetric`. */
  async watch(tenantId: string, filter: { name?: string | null; agentId?: string | null }): Promise<AsyncIterable<Metric>> {
    const name = filter.name ? checkLabel(filter.name, 'name') : null;
    const agentId = filter.agentId ? await this.checkAgent(tenantId, filter.agentId) : null;
    return subscribeTopic(
      this.bus,
      tenantId,
      METRIC_RECORDED,
      (metric) => (name === null || metric.name === name) && (agentId === null || metric.agentId === agentId),
    );
  }

  /**
   * Deletes every tenant's points older than its `metricsRetentionHours`, a batch per statement so
   * no lock is held for long; returns how many were deleted.
   */
  async removeExpired(): Promise<number> {
    const tenants = await this.database.rows<TenantIdRow>(sql`SELECT id FROM tenants ORDER BY id`);
    let total = 0;
    for (const { id } of tenants) {
      const { metricsRetentionHours } = await this.config.get(id);
      for (;;) {
        const [row] = await this.database.rows<{ count: number }>(sql`
          WITH doomed AS (
            SELECT id FROM metrics WHERE tenant_id = ${id} AND at < now() - make_interval(hours => ${metricsRetentionHours}::int)
            ORDER BY at LIMIT ${RETENTION_BATCH}
          ), gone AS (
            DELETE FROM metrics m USING doomed d WHERE m.id = d.id RETURNING 1
          )
          SELECT count(*)::int AS count FROM gone`);
        const count = Number(row?.count ?? 0);
        total += count;
        if (count < RETENTION_BATCH) break;
      }
    }
    return total;
  }

  /** The filter of a read: tenant, window (never beyond the retention), name and agent. */
  private async conditions(tenantId: string, filter: { name?: string | null; agentId?: string | null; since?: Date | null }): Promise<SQL> {
    const { metricsRetentionHours } = await this.config.get(tenantId);
    const since = filter.since ?? defaultSince();
    if (!Number.isFinite(since.getTime())) throw badInput('since', 'since must be a valid time');
    const conditions = [
      sql`tenant_id = ${tenantId}`,
      sql`at >= ${since.toISOString()}::timestamptz`,
      sql`at >= now() - make_interval(hours => ${metricsRetentionHours}::int)`,
    ];
    if (filter.name !== null && filter.name !== undefined) conditions.push(sql`name = ${checkLabel(filter.name, 'name')}`);
    if (filter.agentId !== null && filter.agentId !== undefined) {
      conditions.push(sql`agent_id = ${await this.checkAgent(tenantId, filter.agentId)}`);
    }
    return sql.join(conditions, sql` AND `);
  }

  private async checkAgent(tenantId: string, agentId: string): Promise<string> {
    checkAgentId(agentId, 'agentId');
    if (!(await this.access.agentExists(tenantId, agentId))) throw badInput('agentId', `Agent ${agentId} is not registered`);
    return agentId;
  }
}

function defaultSince(): Date {
  return new Date(Date.now() - DEFAULT_WINDOW_HOURS * 3_600_000);
}
