/**
 * Metrics (issue 6, "Metrics"; API.md §4 recordMetrics, metricSummary, metricSeries, §5 Config):
 * batches as the calling agent, summaries and series computed in SQL and exact on known data,
 * windows, retention, and bad input refused with nothing stored.
 */
import { sql } from 'drizzle-orm';
import { PgDialect } from 'drizzle-orm/pg-core';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { ADMIN_TOKEN, type Gateway, startGateway } from './support/gateway.js';

const RECORD = 'mutation($metrics: [MetricInput!]!) { recordMetrics(metrics: $metrics) }';
const SUMMARY = `query($name: String, $agentId: ID, $since: DateTime, $groupByAgent: Boolean) {
  metricSummary(name: $name, agentId: $agentId, since: $since, groupByAgent: $groupByAgent) {
    name unit agentId count min max avg p50 p95 p99 last
  }
}`;
const SERIES = `query($name: String!, $agentId: ID, $since: DateTime, $bucketSeconds: Int) {
  metricSeries(name: $name, agentId: $agentId, since: $since, bucketSeconds: $bucketSeconds) { at count avg min max }
}`;

const dialect = new PgDialect();
const ago = (ms: number) => new Date(Date.now() - ms).toISOString();
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

describe('metrics', () => {
  let gw: Gateway;
  let alpha: string;
  let beta: string;
  let reader: string;
  beforeAll(async () => {
    gw = await startGateway();
    alpha = await gw.registerAgent('alpha');
    beta = await gw.registerAgent('beta');
    reader = (await gw.createToken('dashboard', 'READER')).token;
  });
  afterAll(() => gw.close());

  const errorOf = (result: { errors?: { extensions?: Record<string, unknown> }[] }) => result.errors?.[0]?.extensions;
  const stored = async (name: string) => {
    const [row] = await gw.db.handle.rows<{ count: number }>(sql`SELECT count(*)::int AS count FROM metrics WHERE name = ${name}`);
    return Number(row?.count);
  };
  const summary = async (token: string, variables: Record<string, unknown>) =>
    (await gw.ok(token, SUMMARY, variables)).metricSummary as Record<string, unknown>[];

  it('summarizes exactly: percentiles interpolate between the nearest ranks (percentile_cont)', async () => {
    // 1..10, recorded out of order; the latest point (by at) has the value 3.
    const values = [7, 1, 10, 4, 9, 2, 6, 8, 5, 3];
    const metrics = values.map((value, i) => ({ name: 'exact.ten', value, unit: 'ms', at: ago((values.length - i) * 1000) }));
    expect((await gw.ok(alpha, RECORD, { metrics })).recordMetrics).toBe(10);
    // Position p·(n−1) in the sorted values: p50 → 4.5 → 5 + 0.5·(6−5); p95 → 8.55 → 9 + 0.55·1; p99 → 8.91 → 9.91.
    const [ten] = await summary(reader, { name: 'exact.ten' });
    expect(ten).toMatchObject({ name: 'exact.ten', unit: 'ms', agentId: null, count: 10, min: 1, max: 10, avg: 5.5, last: 3 });
    expect(ten?.p50).toBeCloseTo(5.5, 12);
    expect(ten?.p95).toBeCloseTo(9.55, 12);
    expect(ten?.p99).toBeCloseTo(9.91, 12);

    // Sorted 2 4 4 4 5 5 7 9 (n = 8): p50 at 3.5 → 4.5; p95 at 6.65 → 7 + 0.65·2 = 8.3; p99 at 6.93 → 8.86.
    const eight = [5, 4, 9, 2, 4, 7, 4, 5].map((value, i) => ({ name: 'exact.eight', value, at: ago((8 - i) * 1000) }));
    await gw.ok(alpha, RECORD, { metrics: eight });
    const [row] = await summary(reader, { name: 'exact.eight' });
    expect(row).toMatchObject({ count: 8, min: 2, max: 9, avg: 5, last: 5, unit: null });
    expect(row?.p50).toBeCloseTo(4.5, 12);
    expect(row?.p95).toBeCloseTo(8.3, 12);
    expect(row?.p99).toBeCloseTo(8.86, 12);

    // One point: every statistic is that value.
    await gw.ok(alpha, RECORD, { metrics: [{ name: 'exact.one', value: -2.25 }] });
    expect(await summary(reader, { name: 'exact.one' })).toEqual([
      {
        name: 'exact.one',
        unit: null,
        agentId: null,
        count: 1,
        min: -2.25,
        max: -2.25,
        avg: -2.25,
        p50: -2.25,
        p95: -2.25,
        p99: -2.25,
        last: -2.25,
      },
    ]);
  });

  it('stores points as the calling agent and summarizes by agent, for one agent or across agents', async () => {
    await gw.ok(alpha, RECORD, { metrics: [1, 2, 3].map((value) => ({ name: 'split.load', value })) });
    await gw.ok(beta, RECORD, { metrics: [10, 20].map((value) => ({ name: 'split.load', value })) });
    expect(await summary(reader, { name: 'split.load', groupByAgent: true })).toEqual([
      expect.objectContaining({ agentId: 'alpha', count: 3, min: 1, max: 3, avg: 2, p50: 2 }),
      expect.objectContaining({ agentId: 'beta', count: 2, min: 10, max: 20, avg: 15, p50: 15 }),
    ]);
    expect(await summary(reader, { name: 'split.load' })).toEqual([
      expect.objectContaining({ agentId: null, count: 5, min: 1, max: 20, avg: 7.2, p50: 3 }),
    ]);
    expect(await summary(ADMIN_TOKEN, { name: 'split.load', agentId: 'beta' })).toEqual([
      expect.objectContaining({ agentId: 'beta', count: 2, avg: 15 }),
    ]);
    // Without a name: one row per metric name, sorted.
    const names = (await summary(beta, {})).map((row) => row.name);
    expect(names).toEqual([...names].sort());
    expect(names).toEqual(expect.arrayContaining(['exact.eight', 'exact.ten', 'split.load']));
  });

  it('lets no field speak for another agent', async () => {
    const result = await gw.gql(alpha, RECORD, { metrics: [{ name: 'spoof', value: 1, agentId: 'beta' }] });
    expect(errorOf(result)).toMatchObject({ code: 'BAD_USER_INPUT' });
    await gw.ok(alpha, RECORD, { metrics: [{ name: 'spoof', value: 1 }] });
    expect(await summary(reader, { name: 'spoof', groupByAgent: true })).toEqual([expect.objectContaining({ agentId: 'alpha' })]);
  });

  it('lets only agents record: admins and readers are FORBIDDEN, no token is UNAUTHENTICATED', async () => {
    for (const token of [ADMIN_TOKEN, reader]) {
      expect(errorOf(await gw.gql(token, RECORD, { metrics: [{ name: 'denied', value: 1 }] }))?.code).toBe('FORBIDDEN');
    }
    expect(errorOf(await gw.gql(null, RECORD, { metrics: [{ name: 'denied', value: 1 }] }))?.code).toBe('UNAUTHENTICATED');
    expect(errorOf(await gw.gql(null, SUMMARY, {}))?.code).toBe('UNAUTHENTICATED');
    expect(await stored('denied')).toBe(0);
  });

  it('respects since, and by default looks back 24 hours', async () => {
    await gw.ok(alpha, RECORD, {
      metrics: [
        { name: 'window', value: 100, at: ago(30 * HOUR) },
        { name: 'window', value: 3, at: ago(3 * HOUR) },
        { name: 'window', value: 2, at: ago(2 * HOUR) },
        { name: 'window', value: 1, at: ago(HOUR) },
      ],
    });
    expect(await summary(reader, { name: 'window', since: ago(90 * MINUTE) })).toEqual([
      expect.objectContaining({ count: 1, min: 1, max: 1, last: 1 }),
    ]);
    expect(await summary(reader, { name: 'window', since: ago(150 * MINUTE) })).toEqual([
      expect.objectContaining({ count: 2, min: 1, max: 2, avg: 1.5, last: 1 }),
    ]);
    expect(await summary(reader, { name: 'window' })).toEqual([expect.objectContaining({ count: 3, max: 3 })]);
    expect(await summary(reader, { name: 'window', since: ago(48 * HOUR) })).toEqual([expect.objectContaining({ count: 4, max: 100 })]);
    expect(await summary(reader, { name: 'window', since: new Date(Date.now() + HOUR).toISOString() })).toEqual([]);
  });

  it('buckets a series by bucketSeconds, aligned to the epoch, in SQL', async () => {
    // A multiple of 10 minutes, so buckets of 60 and of 120 seconds both start there.
    const base = Math.floor((Date.now() - 20 * MINUTE) / (10 * MINUTE)) * 10 * MINUTE;
    const at = (ms: number) => new Date(base + ms).toISOString();
    await gw.ok(alpha, RECORD, {
      metrics: [
        { name: 'series', value: 1, at: at(5_000) },
        { name: 'series', value: 3, at: at(30_000) },
        { name: 'series', value: 10, at: at(65_000) },
        { name: 'series', value: 20, at: at(3 * MINUTE) },
      ],
    });
    await gw.ok(beta, RECORD, { metrics: [{ name: 'series', value: 7, at: at(6_000) }] });
    const { metricSeries } = await gw.ok(reader, SERIES, { name: 'series', since: new Date(base).toISOString() });
    expect(metricSeries).toEqual([
      { at: at(0), count: 3, avg: 11 / 3, min: 1, max: 7 },
      { at: at(MINUTE), count: 1, avg: 10, min: 10, max: 10 },
      { at: at(3 * MINUTE), count: 1, avg: 20, min: 20, max: 20 },
    ]);
    const alphaOnly = await gw.ok(reader, SERIES, { name: 'series', agentId: 'alpha', since: at(0), bucketSeconds: 120 });
    expect(alphaOnly.metricSeries).toEqual([
      { at: at(0), count: 3, avg: 14 / 3, min: 1, max: 10 },
      { at: at(2 * MINUTE), count: 1, avg: 20, min: 20, max: 20 },
    ]);
    // since cuts inside a bucket: only the points at or after it count.
    const cut = await gw.ok(reader, SERIES, { name: 'series', agentId: 'alpha', since: at(10_000), bucketSeconds: 60 });
    expect(cut.metricSeries[0]).toEqual({ at: at(0), count: 1, avg: 3, min: 3, max: 3 });
  });

  it('refuses bucketSeconds below 1 and windows of too many buckets', async () => {
    for (const bucketSeconds of [0, -5]) {
      expect(errorOf(await gw.gql(reader, SERIES, { name: 'series', bucketSeconds }))).toMatchObject({
        code: 'BAD_USER_INPUT',
        field: 'bucketSeconds',
      });
    }
    // The default window (24 h) in 1-second buckets: 86,400 buckets.
    expect(errorOf(await gw.gql(reader, SERIES, { name: 'series', bucketSeconds: 1 }))).toMatchObject({
      code: 'BAD_USER_INPUT',
      field: 'bucketSeconds',
    });
    expect(errorOf(await gw.gql(reader, SERIES, { name: 'series', bucketSeconds: 60, since: ago(30 * 24 * HOUR) }))).toMatchObject({
      code: 'BAD_USER_INPUT',
      field: 'since',
    });
    await gw.ok(reader, SERIES, { name: 'series', bucketSeconds: 1, since: ago(HOUR) });
  });

  it('refuses unknown agents in filters', async () => {
    for (const query of [SUMMARY, SERIES]) {
      expect(errorOf(await gw.gql(reader, query, { name: 'series', agentId: 'nobody' }))).toMatchObject({
        code: 'BAD_USER_INPUT',
        field: 'agentId',
      });
      expect(errorOf(await gw.gql(reader, query, { name: 'series', agentId: 'bad id!' }))).toMatchObject({
        code: 'BAD_USER_INPUT',
        field: 'agentId',
      });
    }
  });

  it('refuses bad points naming the field, and stores nothing of the batch', async () => {
    const good = { name: 'bad.batch', value: 1 };
    const cases: [Record<string, unknown>, string][] = [
      [{ name: '', value: 1 }, 'name'],
      [{ name: 'x'.repeat(201), value: 1 }, 'name'],
      [{ name: 'line\nbreak', value: 1 }, 'name'],
      [{ name: 'bad.batch', value: 1, unit: 'u'.repeat(51) }, 'unit'],
      [{ name: 'bad.batch', value: 1, unit: '' }, 'unit'],
      [{ name: 'bad.batch', value: 1, tags: ['a'] }, 'tags'],
      [{ name: 'bad.batch', value: 1, tags: 'host-1' }, 'tags'],
      [{ name: 'bad.batch', value: 1, tags: { blob: 'x'.repeat(5000) } }, 'tags'],
      [{ name: 'bad.batch', value: 1, tags: { nul: 'a\u0000b' } }, 'tags'],
      [{ name: 'bad.batch', value: 1, at: new Date(Date.now() + HOUR).toISOString() }, 'at'],
      [{ name: 'bad.batch', value: 1, at: '9999-12-31T00:00:00Z' }, 'at'],
      [{ name: 'bad.batch', value: 1, at: ago(200 * HOUR) }, 'at'],
      [{ name: 'bad.batch', value: 1, at: 'yesterday' }, 'at'],
      [{ name: 'bad.batch', value: 'one' }, 'value'],
    ];
    for (const [bad, field] of cases) {
      const result = await gw.gql(alpha, RECORD, { metrics: [good, bad, good] });
      expect(errorOf(result), JSON.stringify(bad)).toMatchObject({ code: 'BAD_USER_INPUT', field });
    }
    // A non-finite value can only come as a literal: graphql-js parses 1e400 to Infinity.
    const literal = await gw.gql(
      alpha,
      'mutation { recordMetrics(metrics: [{ name: "bad.batch", value: 1 }, { name: "bad.batch", value: 1e400 }]) }',
    );
    expect(errorOf(literal)).toMatchObject({ code: 'BAD_USER_INPUT', field: 'value' });
    // In JSON variables 1e400 is Infinity too, which Float refuses.
    const body =
      '{"query":"mutation($m: [MetricInput!]!) { recordMetrics(metrics: $m) }","variables":{"m":[{"name":"bad.batch","value":1e400}]}}';
    const response = await gw.app.fetch('http://localhost/graphql', {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${alpha}` },
      body,
    });
    expect(((await response.json()) as { errors: { extensions: unknown }[] }).errors[0]?.extensions).toMatchObject({
      code: 'BAD_USER_INPUT',
    });
    expect(await stored('bad.batch')).toBe(0);
  });

  it("holds a batch to the tenant's maxMetricsPerCall (default 1000)", async () => {
    const batch = (n: number) => Array.from({ length: n }, (_, i) => ({ name: 'limit.batch', value: i }));
    expect(errorOf(await gw.gql(alpha, RECORD, { metrics: batch(1001) }))).toMatchObject({ code: 'BAD_USER_INPUT', field: 'metrics' });
    expect(await stored('limit.batch')).toBe(0);
    expect((await gw.ok(alpha, RECORD, { metrics: batch(1000) })).recordMetrics).toBe(1000);
    expect((await gw.ok(alpha, RECORD, { metrics: [] })).recordMetrics).toBe(0);
    await gw.ok(ADMIN_TOKEN, 'mutation { updateConfig(patch: { limits: { maxMetricsPerCall: 3 } }) }');
    try {
      expect(errorOf(await gw.gql(alpha, RECORD, { metrics: batch(4) }))).toMatchObject({ code: 'BAD_USER_INPUT', field: 'metrics' });
      expect((await gw.ok(alpha, RECORD, { metrics: batch(3) })).recordMetrics).toBe(3);
    } finally {
      await gw.ok(ADMIN_TOKEN, 'mutation { updateConfig(patch: { limits: { maxMetricsPerCall: null } }) }');
    }
    expect(await stored('limit.batch')).toBe(1003);
  });

  it('stores a batch of 1000 points in one statement', async () => {
    const batch = Array.from({ length: 1000 }, (_, i) => ({ name: 'one.statement', value: i, tags: { i } }));
    await gw.ok(alpha, RECORD, { metrics: batch.slice(0, 1) });
    const rows = vi.spyOn(gw.db.handle, 'rows');
    // Statements on the metrics table (the background jobs may run others meanwhile).
    const onMetrics = () => rows.mock.calls.filter(([query]) => /\bmetrics\b/.test(dialect.sqlToQuery(query).sql)).length;
    try {
      expect((await gw.ok(alpha, RECORD, { metrics: batch })).recordMetrics).toBe(1000);
      expect(onMetrics()).toBe(1);
      rows.mockClear();
      await gw.ok(reader, SUMMARY, { name: 'one.statement', groupByAgent: true });
      expect(onMetrics()).toBe(1);
    } finally {
      rows.mockRestore();
    }
    const [row] = await summary(reader, { name: 'one.statement' });
    expect(row).toMatchObject({ count: 1001, min: 0, max: 999 });
    // 0, 0, 1, …, 999: position 0.5 × 1000 = 500 holds 499.
    expect(row?.p50).toBe(499);
  });

  it("removes points older than the tenant's retention, and reads ignore them at once", async () => {
    await gw.ok(ADMIN_TOKEN, 'mutation { updateConfig(patch: { metricsRetentionHours: 3 }) }');
    try {
      await gw.ok(beta, RECORD, {
        metrics: [
          { name: 'retained', value: 1, at: ago(150 * MINUTE) },
          { name: 'retained', value: 2, at: ago(90 * MINUTE) },
          { name: 'retained', value: 3 },
        ],
      });
      await gw.ok(ADMIN_TOKEN, 'mutation { updateConfig(patch: { metricsRetentionHours: 2 }) }');
      expect(await summary(reader, { name: 'retained', since: ago(24 * HOUR) })).toEqual([expect.objectContaining({ count: 2, min: 2 })]);
      expect(await stored('retained')).toBe(3);
      // Everything older than 2 hours goes, whatever its name.
      const before = await gw.db.handle.rows<{ count: number }>(
        sql`SELECT count(*)::int AS count FROM metrics WHERE at < now() - interval '2 hours'`,
      );
      expect(await gw.app.services.metrics.removeExpired()).toBe(Number(before[0]?.count));
      expect(await stored('retained')).toBe(2);
      expect(await gw.app.services.metrics.removeExpired()).toBe(0);
    } finally {
      await gw.ok(ADMIN_TOKEN, 'mutation { updateConfig(patch: { metricsRetentionHours: null }) }');
    }
  });
});
