/**
 * Error patterns, insights and optimizations (issue 6; API.md §4, §5 "Error patterns"), and the
 * fleet subscriptions metricRecorded, errorReported and insightAdded over a real WebSocket — across
 * two gateways on one database on PostgreSQL.
 */
import { sql } from 'drizzle-orm';
import { PgDialect } from 'drizzle-orm/pg-core';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { fingerprint } from '../src/modules/errors/fingerprint.js';
import { backend } from './support/database.js';
import { ADMIN_TOKEN, attached, type Gateway, startGateway, subscribe } from './support/gateway.js';

const REPORT = `mutation($input: ReportErrorInput!) {
  reportError(input: $input) { id type fingerprint sampleMessage count firstSeenAt lastSeenAt agentIds }
}`;
const PATTERNS = `query($type: String, $minFrequency: Int, $since: DateTime) {
  errorPatterns(type: $type, minFrequency: $minFrequency, since: $since) { id type fingerprint sampleMessage count agentIds }
}`;
const ADD_INSIGHT = `mutation($input: AddInsightInput!) {
  addInsight(input: $input) { id type content priority sourceAgentId createdAt actedUpon actedUponAt }
}`;
const MARK = 'mutation($id: ID!) { markInsightActedUpon(id: $id) { id actedUpon actedUponAt } }';
const INSIGHTS = `query($type: String, $minPriority: Priority, $actedUpon: Boolean, $first: Int) {
  insights(type: $type, minPriority: $minPriority, actedUpon: $actedUpon, first: $first) { id type priority actedUpon }
}`;
const RECORD_OPTIMIZATION = `mutation($input: RecordOptimizationInput!) {
  recordOptimization(input: $input) { id type description before after success sourceAgentId at }
}`;
const OPTIMIZATIONS = `query($type: String, $since: DateTime, $successOnly: Boolean) {
  optimizations(type: $type, since: $since, successOnly: $successOnly) { id type success sourceAgentId }
}`;
const RECORD_METRICS = 'mutation($metrics: [MetricInput!]!) { recordMetrics(metrics: $metrics) }';

const HOUR = 3_600_000;
const ago = (ms: number) => new Date(Date.now() - ms).toISOString();
const dialect = new PgDialect();
const errorOf = (result: { errors?: { extensions?: Record<string, unknown> }[] }) => result.errors?.[0]?.extensions;

describe('fingerprint', () => {
  it.each([
    ['User 42 not found', 'User 7 not found'],
    ['value -5.5 out of range', 'value 1e10 out of range'],
    ['Timeout after 3000ms connecting to 10.0.0.12:5432', 'Timeout after 120ms connecting to 192.168.1.7:6543'],
    ['task 3f2a9c1e-8b7d-4e6f-a5b4-0c1d2e3f4a5b failed', 'task 00000000-0000-0000-0000-000000000000 failed'],
    ['segfault at 0xDEADBEEF', 'segfault at 0x1f'],
    ['object 9f86d081884c7d65 is gone', 'object req_Zk82Qx is gone'],
    ['agent-42 crashed', 'agent-7 crashed'],
    [`Key 'alpha' missing in "x y"`, 'Key `beta` missing in "z"'],
    ["can't open the agent's file 12", "can't open the agent's file 9"],
    ['at 2024-01-05T10:22:33.123Z\n  retrying', 'at 1999-12-31T23:59:59.9Z   retrying'],
  ])('gives %j and %j one fingerprint', (a, b) => {
    expect(fingerprint(a)).toBe(fingerprint(b));
  });

  it.each([
    ['Connection refused', 'Connection reset'],
    ['User 42 not found', 'Group 42 not found'],
    ["can't open the agent's file", "can't close the agent's file"],
  ])('tells %j and %j apart', (a, b) => {
    expect(fingerprint(a)).not.toBe(fingerprint(b));
  });

  it('shows the shape with placeholders, keeping apostrophes', () => {
    expect(fingerprint(`User 42 can't read 'cfg' at 0x1f (req 3f2a9c1e-8b7d-4e6f-a5b4-0c1d2e3f4a5b, job a1b2c3)`)).toBe(
      "User <num> can't read <str> at <hex> (req <uuid>, job <id>)",
    );
  });
});

describe('error patterns, insights and optimizations', () => {
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

  it('groups messages that differ only in variable parts, counting occurrences and agents', async () => {
    const first = (await gw.ok(alpha, REPORT, { input: { type: 'db', message: 'Timeout after 3000ms on shard 4', context: { q: 1 } } }))
      .reportError;
    expect(first).toMatchObject({ type: 'db', fingerprint: 'Timeout after <num> on shard <num>', count: 1, agentIds: ['alpha'] });
    const second = (await gw.ok(beta, REPORT, { input: { type: 'db', message: 'Timeout after 15ms on shard 12' } })).reportError;
    expect(second).toMatchObject({ id: first.id, count: 2, agentIds: ['alpha', 'beta'], sampleMessage: 'Timeout after 15ms on shard 12' });
    expect(second.firstSeenAt).toBe(first.firstSeenAt);
    expect(new Date(second.lastSeenAt).getTime()).toBeGreaterThanOrEqual(new Date(first.lastSeenAt).getTime());
    const third = (await gw.ok(alpha, REPORT, { input: { type: 'db', message: 'Timeout after 1ms on shard 1' } })).reportError;
    expect(third).toMatchObject({ id: first.id, count: 3, agentIds: ['alpha', 'beta'] });
    // Another message, and the same message under another type, are other patterns.
    const other = (await gw.ok(alpha, REPORT, { input: { type: 'db', message: 'Deadlock detected' } })).reportError;
    const otherType = (await gw.ok(alpha, REPORT, { input: { type: 'net', message: 'Timeout after 5ms on shard 2' } })).reportError;
    expect(new Set([first.id, other.id, otherType.id]).size).toBe(3);

    const { errorPatterns } = await gw.ok(reader, PATTERNS, { type: 'db' });
    expect(errorPatterns).toEqual([
      expect.objectContaining({ id: first.id, count: 3, agentIds: ['alpha', 'beta'] }),
      expect.objectContaining({ id: other.id, count: 1, agentIds: ['alpha'] }),
    ]);
    expect((await gw.ok(reader, PATTERNS, { type: 'db', minFrequency: 2 })).errorPatterns.map((p: { id: string }) => p.id)).toEqual([
      first.id,
    ]);
    expect((await gw.ok(ADMIN_TOKEN, PATTERNS, {})).errorPatterns).toHaveLength(3);
  });

  it('reads durations and sizes as numbers whatever their unit, so one timeout or limit is one pattern', async () => {
    for (const [type, messages, shape] of [
      [
        'timeout',
        ['timed out after 30s', 'timed out after 45s', 'timed out after 1.5s', 'timed out after 250ms', 'timed out after 2h'],
        'timed out after <num>',
      ],
      ['size', ['payload of 10MB exceeds 512KiB', 'payload of 2.5GB exceeds 1024kb'], 'payload of <num> exceeds <num>'],
    ] as const) {
      const patterns = [];
      for (const message of messages) patterns.push((await gw.ok(alpha, REPORT, { input: { type, message } })).reportError);
      expect(patterns.map((pattern) => pattern.fingerprint)).toEqual(messages.map(() => shape));
      expect(new Set(patterns.map((pattern) => pattern.id)).size).toBe(1);
      expect(patterns.at(-1)).toMatchObject({ count: messages.length, sampleMessage: messages.at(-1) });
    }
  });

  it('counts only the occurrences inside the window (since, default 24 hours)', async () => {
    for (const message of ['Disk 1 full', 'Disk 2 full', 'Disk 3 full']) {
      await gw.ok(beta, REPORT, { input: { type: 'disk', message } });
    }
    await gw.ok(alpha, REPORT, { input: { type: 'disk', message: 'Disk 4 full' } });
    // Two of beta's occurrences happened 30 hours ago, one 3 hours ago.
    await gw.db.handle.rows(sql`
      WITH old AS (
        SELECT o.ctid, row_number() OVER (ORDER BY o.at) AS n FROM error_occurrences o
        JOIN error_patterns p ON p.id = o.pattern_id WHERE p.type = 'disk' AND o.agent_id = 'beta'
      )
      UPDATE error_occurrences o SET at = now() - CASE WHEN old.n <= 2 THEN interval '30 hours' ELSE interval '3 hours' END
      FROM old WHERE o.ctid = old.ctid`);
    const count = async (variables: Record<string, unknown>) =>
      (await gw.ok(reader, PATTERNS, { type: 'disk', ...variables })).errorPatterns;
    expect(await count({})).toEqual([expect.objectContaining({ count: 2, agentIds: ['alpha', 'beta'] })]);
    expect(await count({ since: ago(48 * HOUR) })).toEqual([expect.objectContaining({ count: 4, agentIds: ['alpha', 'beta'] })]);
    expect(await count({ since: ago(HOUR) })).toEqual([expect.objectContaining({ count: 1, agentIds: ['alpha'] })]);
    expect(await count({ since: ago(HOUR), minFrequency: 2 })).toEqual([]);
    expect(await count({ since: new Date(Date.now() + HOUR).toISOString() })).toEqual([]);
  });

  it('lists patterns with their counts and agents in one query', async () => {
    for (let i = 0; i < 5; i++) await gw.ok(alpha, REPORT, { input: { type: `many-${i}`, message: `failure ${i}` } });
    const rows = vi.spyOn(gw.db.handle, 'rows');
    try {
      const { errorPatterns } = await gw.ok(reader, PATTERNS, {});
      expect(errorPatterns.length).toBeGreaterThanOrEqual(5);
      const queries = rows.mock.calls.filter(([query]) => /error_(patterns|occurrences)/.test(dialect.sqlToQuery(query).sql));
      expect(queries).toHaveLength(1);
    } finally {
      rows.mockRestore();
    }
  });

  it('takes error reports from agents only, each as itself, and refuses bad input', async () => {
    for (const token of [ADMIN_TOKEN, reader]) {
      expect(errorOf(await gw.gql(token, REPORT, { input: { type: 'x', message: 'nope' } }))?.code).toBe('FORBIDDEN');
    }
    expect(errorOf(await gw.gql(alpha, REPORT, { input: { type: 'x', message: 'm', agentId: 'beta' } }))?.code).toBe('BAD_USER_INPUT');
    const cases: [Record<string, unknown>, string][] = [
      [{ type: '', message: 'm' }, 'type'],
      [{ type: 't'.repeat(101), message: 'm' }, 'type'],
      [{ type: 'bad\ttype', message: 'm' }, 'type'],
      [{ type: 'bad', message: '' }, 'message'],
      [{ type: 'bad', message: '   ' }, 'message'],
      [{ type: 'bad', message: 'm'.repeat(10_001) }, 'message'],
      [{ type: 'bad', message: 'nul \u0000' }, 'message'],
      [{ type: 'bad', message: 'm', context: { blob: 'x'.repeat(70_000) } }, 'context'],
      [{ type: 'bad', message: 'm', context: { nul: '\u0000' } }, 'context'],
    ];
    for (const [input, field] of cases) {
      expect(errorOf(await gw.gql(alpha, REPORT, { input })), JSON.stringify(input).slice(0, 80)).toMatchObject({
        code: 'BAD_USER_INPUT',
        field,
      });
    }
    expect(errorOf(await gw.gql(reader, PATTERNS, { minFrequency: 0 }))).toMatchObject({ code: 'BAD_USER_INPUT', field: 'minFrequency' });
    expect((await gw.ok(reader, PATTERNS, { type: 'bad' })).errorPatterns).toEqual([]);
    const [row] = await gw.db.handle.rows<{ count: number }>(
      sql`SELECT count(*)::int AS count FROM error_patterns WHERE type IN ('x', 'bad')`,
    );
    expect(Number(row?.count)).toBe(0);
    // A multi-line message (a stack trace) is fine.
    const trace = (await gw.ok(alpha, REPORT, { input: { type: 'trace', message: 'Error: boom 1\n    at f (a.js:10:5)' } })).reportError;
    expect(trace.fingerprint).toBe('Error: boom <num> at f (a.js:<num>:<num>)');
  });

  it('adds insights as an agent or an admin, newest first, filtered by type, priority and acted upon', async () => {
    const add = async (token: string, input: Record<string, unknown>) => (await gw.ok(token, ADD_INSIGHT, { input })).addInsight;
    const low = await add(alpha, { type: 'cost', content: { saving: 1 }, priority: 'LOW' });
    const medium = await add(beta, { type: 'cost', content: 'plain text' });
    const high = await add(ADMIN_TOKEN, { type: 'perf', content: [1, 2], priority: 'HIGH' });
    const critical = await add(alpha, { type: 'perf', content: { page: true }, priority: 'CRITICAL' });
    expect(low).toMatchObject({
      type: 'cost',
      content: { saving: 1 },
      priority: 'LOW',
      sourceAgentId: 'alpha',
      actedUpon: false,
      actedUponAt: null,
    });
    expect(medium).toMatchObject({ priority: 'MEDIUM', sourceAgentId: 'beta', content: 'plain text' });
    expect(high).toMatchObject({ priority: 'HIGH', sourceAgentId: null });

    const ids = async (variables: Record<string, unknown>) =>
      (await gw.ok(reader, INSIGHTS, variables)).insights.map((insight: { id: string }) => insight.id);
    expect(await ids({})).toEqual([critical.id, high.id, medium.id, low.id]);
    expect(await ids({ minPriority: 'HIGH' })).toEqual([critical.id, high.id]);
    expect(await ids({ minPriority: 'MEDIUM', type: 'cost' })).toEqual([medium.id]);
    expect(await ids({ first: 2 })).toEqual([critical.id, high.id]);

    const marked = (await gw.ok(beta, MARK, { id: low.id })).markInsightActedUpon;
    expect(marked).toMatchObject({ id: low.id, actedUpon: true });
    expect(marked.actedUponAt).not.toBeNull();
    // Marking again keeps the first time.
    expect((await gw.ok(ADMIN_TOKEN, MARK, { id: low.id })).markInsightActedUpon.actedUponAt).toBe(marked.actedUponAt);
    expect(await ids({ actedUpon: true })).toEqual([low.id]);
    expect(await ids({ actedUpon: false })).toEqual([critical.id, high.id, medium.id]);
  });

  it('refuses insight writes by readers and bad insight input, storing nothing', async () => {
    expect(errorOf(await gw.gql(reader, ADD_INSIGHT, { input: { type: 't', content: 1 } }))?.code).toBe('FORBIDDEN');
    const { id } = (await gw.ok(alpha, ADD_INSIGHT, { input: { type: 'mark-me', content: 1 } })).addInsight;
    expect(errorOf(await gw.gql(reader, MARK, { id }))?.code).toBe('FORBIDDEN');
    expect(errorOf(await gw.gql(alpha, MARK, { id: '999999999' }))?.code).toBe('NOT_FOUND');
    for (const bad of ['abc', '0', '-1', '99999999999999999999']) {
      expect(errorOf(await gw.gql(alpha, MARK, { id: bad })), bad).toMatchObject({ code: 'BAD_USER_INPUT', field: 'id' });
    }
    const cases: [Record<string, unknown>, string][] = [
      [{ type: 'bad', content: 1, priority: 'URGENT' }, 'priority'],
      [{ type: 'bad', content: null }, 'content'],
      [{ type: 'bad' }, 'content'],
      [{ type: '', content: 1 }, 'type'],
      [{ type: 'bad', content: { blob: 'x'.repeat(70_000) } }, 'content'],
    ];
    for (const [input, field] of cases) {
      expect(errorOf(await gw.gql(alpha, ADD_INSIGHT, { input })), JSON.stringify(input).slice(0, 80)).toMatchObject({
        code: 'BAD_USER_INPUT',
        field,
      });
    }
    const literal = await gw.gql(alpha, 'mutation { addInsight(input: { type: "bad", content: 1, priority: URGENT }) { id } }');
    expect(errorOf(literal)).toMatchObject({ code: 'BAD_USER_INPUT', field: 'priority' });
    expect(errorOf(await gw.gql(reader, INSIGHTS, { minPriority: 'SEVERE' }))).toMatchObject({
      code: 'BAD_USER_INPUT',
      field: 'minPriority',
    });
    expect(errorOf(await gw.gql(reader, INSIGHTS, { first: 0 }))).toMatchObject({ code: 'BAD_USER_INPUT', field: 'first' });
    expect((await gw.ok(reader, INSIGHTS, { type: 'bad' })).insights).toEqual([]);
  });

  it('records optimizations as an agent or an admin and lists them by type, window and success', async () => {
    const record = async (token: string, input: Record<string, unknown>) =>
      (await gw.ok(token, RECORD_OPTIMIZATION, { input })).recordOptimization;
    const cache = await record(alpha, {
      type: 'cache',
      description: 'bigger cache',
      before: { size: 1 },
      after: { size: 2 },
      success: true,
    });
    expect(cache).toMatchObject({
      type: 'cache',
      description: 'bigger cache',
      before: { size: 1 },
      after: { size: 2 },
      success: true,
      sourceAgentId: 'alpha',
    });
    const failed = await record(ADMIN_TOKEN, { type: 'cache', success: false });
    expect(failed).toMatchObject({ description: null, before: null, after: null, success: false, sourceAgentId: null });
    const batch = await record(beta, { type: 'batching', success: true });

    const ids = async (variables: Record<string, unknown>) =>
      (await gw.ok(reader, OPTIMIZATIONS, variables)).optimizations.map((o: { id: string }) => o.id);
    expect(await ids({})).toEqual([batch.id, failed.id, cache.id]);
    expect(await ids({ type: 'cache' })).toEqual([failed.id, cache.id]);
    expect(await ids({ successOnly: true })).toEqual([batch.id, cache.id]);
    expect(await ids({ type: 'cache', successOnly: true })).toEqual([cache.id]);
    expect(await ids({ since: new Date(Date.now() + HOUR).toISOString() })).toEqual([]);
    await gw.db.handle.rows(sql`UPDATE optimizations SET at = now() - interval '2 days' WHERE id = ${cache.id}::bigint`);
    expect(await ids({ since: ago(HOUR) })).toEqual([batch.id, failed.id]);

    expect(errorOf(await gw.gql(reader, RECORD_OPTIMIZATION, { input: { type: 'x', success: true } }))?.code).toBe('FORBIDDEN');
    const cases: [Record<string, unknown>, string][] = [
      [{ type: '', success: true }, 'type'],
      [{ type: 'x', description: 'd'.repeat(2001), success: true }, 'description'],
      [{ type: 'x', before: { blob: 'x'.repeat(70_000) }, success: true }, 'before'],
      [{ type: 'x', after: { nul: '\u0000' }, success: true }, 'after'],
      [{ type: 'x' }, 'success'],
    ];
    for (const [input, field] of cases) {
      expect(errorOf(await gw.gql(alpha, RECORD_OPTIMIZATION, { input })), JSON.stringify(input).slice(0, 80)).toMatchObject({
        code: 'BAD_USER_INPUT',
        field,
      });
    }
    expect(await ids({ type: 'x' })).toEqual([]);
  });
});

describe.each(backend === 'postgres' ? ['one gateway', 'two gateways on one database'] : ['one gateway'])(
  'fleet subscriptions over graphql-ws (%s)',
  (mode) => {
    let gw: Gateway;
    /** Where the dashboard subscribes: the same gateway, or another process on the same database. */
    let watched: Gateway;
    let alpha: string;
    let beta: string;
    let reader: string;
    beforeAll(async () => {
      gw = await startGateway();
      watched = mode === 'one gateway' ? gw : await startGateway({ db: gw.db, database: await gw.db.open() });
      alpha = await gw.registerAgent('alpha');
      beta = await gw.registerAgent('beta');
      reader = (await gw.createToken('dashboard', 'READER')).token;
    });
    afterAll(async () => {
      if (watched !== gw) await watched.close();
      await gw.close();
    });

    it('delivers metricRecorded to a reader, filtered by name and agent', async () => {
      const sub = subscribe(
        watched.ws(reader),
        'subscription($name: String, $agentId: ID) { metricRecorded(name: $name, agentId: $agentId) { name value unit tags agentId at } }',
        { name: 'cpu', agentId: 'beta' },
      );
      await attached(
        sub,
        (kind) => gw.ok(beta, RECORD_METRICS, { metrics: [{ name: 'cpu', value: kind === 'fence' ? -2 : -1 }] }),
        (result) => result.data?.metricRecorded.value === -2,
      );
      const at = new Date(Date.now() - 1000).toISOString();
      await gw.ok(alpha, RECORD_METRICS, { metrics: [{ name: 'cpu', value: 99 }] });
      await gw.ok(beta, RECORD_METRICS, {
        metrics: [
          { name: 'mem', value: 5 },
          { name: 'cpu', value: 0.25, unit: '%', tags: { host: 'h1' }, at },
          { name: 'cpu', value: 0.5 },
        ],
      });
      const results = await sub.waitFor(2);
      expect(results.map((r) => r.data?.metricRecorded)).toEqual([
        { name: 'cpu', value: 0.25, unit: '%', tags: { host: 'h1' }, agentId: 'beta', at },
        expect.objectContaining({ name: 'cpu', value: 0.5, unit: null, tags: null, agentId: 'beta' }),
      ]);
      sub.stop();
    });

    it('delivers errorReported with the pattern, filtered by type', async () => {
      const sub = subscribe(
        watched.ws(reader),
        'subscription { errorReported(type: "db") { id type fingerprint count agentIds firstSeenAt } }',
      );
      await attached(
        sub,
        (kind) => gw.ok(alpha, REPORT, { input: { type: 'db', message: kind } }),
        (result) => result.data?.errorReported.fingerprint === 'fence',
      );
      await gw.ok(alpha, REPORT, { input: { type: 'net', message: 'Connection reset by 10.0.0.1' } });
      await gw.ok(alpha, REPORT, { input: { type: 'db', message: 'Lock wait on row 17' } });
      await gw.ok(beta, REPORT, { input: { type: 'db', message: 'Lock wait on row 18' } });
      const results = await sub.waitFor(2);
      const [first, second] = results.map((r) => r.data?.errorReported);
      expect(first).toMatchObject({ type: 'db', fingerprint: 'Lock wait on row <num>', count: 1, agentIds: ['alpha'] });
      expect(second).toMatchObject({ id: first.id, count: 2, agentIds: ['alpha', 'beta'], firstSeenAt: first.firstSeenAt });
      sub.stop();
    });

    it('delivers insightAdded at or above minPriority', async () => {
      const sub = subscribe(
        watched.ws(reader),
        'subscription { insightAdded(minPriority: HIGH) { id type priority content sourceAgentId createdAt actedUpon } }',
      );
      await attached(
        sub,
        (kind) => gw.ok(ADMIN_TOKEN, ADD_INSIGHT, { input: { type: kind, content: 0, priority: 'CRITICAL' } }),
        (result) => result.data?.insightAdded.type === 'fence',
      );
      await gw.ok(alpha, ADD_INSIGHT, { input: { type: 'minor', content: 1, priority: 'MEDIUM' } });
      await gw.ok(alpha, ADD_INSIGHT, { input: { type: 'minor', content: 2, priority: 'LOW' } });
      const high = (await gw.ok(alpha, ADD_INSIGHT, { input: { type: 'major', content: { a: 1 }, priority: 'HIGH' } })).addInsight;
      await gw.ok(beta, ADD_INSIGHT, { input: { type: 'major', content: 3, priority: 'CRITICAL' } });
      const results = await sub.waitFor(2);
      expect(results.map((r) => r.data?.insightAdded)).toEqual([
        {
          id: high.id,
          type: 'major',
          priority: 'HIGH',
          content: { a: 1 },
          sourceAgentId: 'alpha',
          createdAt: high.createdAt,
          actedUpon: false,
        },
        expect.objectContaining({ priority: 'CRITICAL', sourceAgentId: 'beta', content: 3 }),
      ]);
      sub.stop();
    });

    it('refuses bad subscription arguments and callers without a token', async () => {
      const badAgent = subscribe(watched.ws(reader), 'subscription { metricRecorded(agentId: "nobody") { name } }');
      await badAgent.done;
      expect(badAgent.results[0]?.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'agentId' });
      const badPriority = subscribe(watched.ws(reader), 'subscription { insightAdded(minPriority: URGENT) { id } }');
      await badPriority.done;
      expect(JSON.stringify(badPriority.error ?? badPriority.results)).toMatch(/URGENT/);
      const anonymous = subscribe(watched.ws(null), 'subscription { errorReported { id } }');
      await anonymous.done;
      expect(anonymous.results).toEqual([]);
    });
  },
);
