import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, eventually, type Gateway, startGateway, subscribe } from './support/gateway.js';
import { openSse } from './support/sse.js';

/**
 * GET /metrics (API.md §1): Prometheus text, no token needed, process and request figures only —
 * never a tenant, namespace, key, value or token.
 */

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

interface Scrape {
  status: number;
  contentType: string | null;
  text: string;
  samples: Sample[];
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

function parseSamples(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = SAMPLE.exec(line);
    if (!match) throw new Error(`not a Prometheus sample: ${JSON.stringify(line)}`);
    const labels = Object.fromEntries([...(match[2] ?? '').matchAll(LABEL)].map(([, name, value]) => [name, value]));
    samples.push({ name: match[1] ?? '', labels, value: Number(match[3]) });
  }
  return samples;
}

/** GET /metrics over a real socket, without a token. */
async function scrape(gateway: Gateway): Promise<Scrape> {
  const response = await fetch(gateway.url.replace(/\/graphql$/, '/metrics'));
  const text = await response.text();
  return {
    status: response.status,
    contentType: response.headers.get('content-type'),
    text,
    samples: response.ok ? parseSamples(text) : [],
  };
}

/** The sum of the samples of `name` that carry every label given; undefined when there is none. */
function value(scraped: Scrape, name: string, labels: Record<string, string> = {}): number | undefined {
  const matching = scraped.samples.filter(
    (sample) => sample.name === name && Object.entries(labels).every(([label, wanted]) => sample.labels[label] === wanted),
  );
  return matching.length === 0 ? undefined : matching.reduce((sum, sample) => sum + sample.value, 0);
}

/** How much each figure moved between two scrapes (0 for one absent from both). */
const delta = (before: Scrape, after: Scrape, name: string, labels: Record<string, string> = {}) =>
  (value(after, name, labels) ?? 0) - (value(before, name, labels) ?? 0);

let counter = 0;
const unique = (label: string) => `${label}-${(++counter).toString(36)}-${Math.random().toString(36).slice(2, 8)}`;

const SET =
  'mutation($ns: String!, $key: String!, $value: JSON!) { setEntry(input: { namespace: $ns, key: $key, value: $value }) { version } }';
const WATCH = 'subscription($ns: String!) { entryChanged(namespace: $ns) { key value } }';

let gw: Gateway;
beforeAll(async () => {
  // No background jobs: the database figures then move only with the requests of the test.
  gw = await startGateway({ app: { maintenance: false } });
});
afterAll(async () => {
  await gw?.close();
});

describe('GET /metrics', () => {
  it('answers Prometheus text without a token, with every documented metric', async () => {
    const scraped = await scrape(gw);
    expect(scraped.status).toBe(200);
    expect(scraped.contentType).toBe('text/plain; version=0.0.4; charset=utf-8');
    const documented: [string, string][] = [
      ['graphql_envelop_request', 'counter'],
      ['graphql_envelop_request_duration', 'histogram'],
      ['graphql_envelop_error_result', 'counter'],
      ['statehouse_websocket_connections', 'gauge'],
      ['statehouse_subscriptions', 'gauge'],
      ['statehouse_fanout_groups', 'gauge'],
      ['statehouse_fanout_members', 'gauge'],
      ['statehouse_change_feeds', 'gauge'],
      ['statehouse_change_feed_lag_revisions', 'gauge'],
      ['statehouse_db_pool_max_connections', 'gauge'],
      ['statehouse_db_statements_in_flight', 'gauge'],
      ['statehouse_db_transactions_open', 'gauge'],
      ['statehouse_db_query_duration_seconds', 'histogram'],
      ['statehouse_audit_pending_records', 'gauge'],
      ['process_cpu_seconds_total', 'counter'],
      ['process_resident_memory_bytes', 'gauge'],
      ['nodejs_eventloop_lag_p99_seconds', 'gauge'],
      ['nodejs_heap_size_used_bytes', 'gauge'],
    ];
    for (const [name, type] of documented) expect(scraped.text).toContain(`# TYPE ${name} ${type}\n`);
    expect(value(scraped, 'statehouse_db_pool_max_connections')).toBe(gw.db.url ? 20 : 1);
    expect(value(scraped, 'process_cpu_seconds_total')).toBeGreaterThan(0);
  });

  it('counts queries, mutations and refused operations by type, outcome and contract code', async () => {
    const ns = unique('closed');
    await gw.createNamespace(ns, { openAccess: false });
    const outsider = await gw.registerAgent(unique('outsider'));
    const before = await scrape(gw);

    await gw.ok(ADMIN_TOKEN, '{ viewer { role } }');
    await gw.ok(ADMIN_TOKEN, SET, { ns, key: 'k', value: 1 });
    await gw.ok(
      ADMIN_TOKEN,
      'mutation($ns: String!) { commit(input: { operations: [{ set: { namespace: $ns, key: "c", value: 2 } }] }) { revision } }',
      {
        ns,
      },
    );
    const forbidden = await gw.gql(outsider, SET, { ns, key: 'k', value: 2 });
    expect(forbidden.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
    const anonymous = await gw.gql(null, '{ viewer { role } }');
    expect(anonymous.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
    // Refused by a guard before execution starts: counted all the same.
    const tooManyAliases = await gw.gql(ADMIN_TOKEN, `{ ${Array.from({ length: 31 }, (_, n) => `a${n}: viewer { role }`).join(' ')} }`);
    expect(tooManyAliases.errors?.[0]?.extensions?.code).toBe('QUERY_TOO_COMPLEX');
    const unparsable = await gw.gql(ADMIN_TOKEN, '{ viewer { role }');
    expect(unparsable.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    const invalid = await gw.gql(ADMIN_TOKEN, '{ viewer { favouriteColour } }');
    expect(invalid.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    // The audit log is flushed by reading it, so no record is pending afterwards.
    await gw.ok(ADMIN_TOKEN, '{ auditLog(first: 1) { action } }');

    const after = await scrape(gw);
    const requests = (operationType: string, outcome: string) =>
      delta(before, after, 'graphql_envelop_request', { operationType, outcome });
    expect(requests('query', 'success')).toBe(2);
    expect(requests('mutation', 'success')).toBe(2);
    expect(requests('mutation', 'error')).toBe(1);
    expect(requests('query', 'error')).toBe(2);
    const timed = (operationType: string, outcome: string) =>
      delta(before, after, 'graphql_envelop_request_duration_count', { operationType, outcome });
    expect([timed('query', 'success'), timed('mutation', 'success'), timed('mutation', 'error'), timed('query', 'error')]).toEqual([
      2, 2, 1, 2,
    ]);

    const errors = (labels: Record<string, string>) => delta(before, after, 'graphql_envelop_error_result', labels);
    expect(errors({})).toBe(5);
    expect(errors({ operationType: 'mutation', phase: 'execute', code: 'FORBIDDEN' })).toBe(1);
    expect(errors({ operationType: 'query', phase: 'execute', code: 'UNAUTHENTICATED' })).toBe(1);
    expect(errors({ operationType: 'query', phase: 'execute', code: 'QUERY_TOO_COMPLEX' })).toBe(1);
    expect(errors({ operationType: 'unknown', phase: 'parse', code: 'BAD_USER_INPUT' })).toBe(1);
    expect(errors({ operationType: 'query', phase: 'validate', code: 'BAD_USER_INPUT' })).toBe(1);

    expect(delta(before, after, 'statehouse_db_query_duration_seconds_count', { kind: 'transaction' })).toBe(1);
    expect(delta(before, after, 'statehouse_db_query_duration_seconds_count', { kind: 'statement' })).toBeGreaterThan(0);
    expect(value(after, 'statehouse_db_statements_in_flight')).toBe(0);
    expect(value(after, 'statehouse_db_transactions_open')).toBe(0);
    expect(value(after, 'statehouse_audit_pending_records')).toBe(0);
  });

  it('shows open sockets, subscriptions per transport, fan-out groups and change feeds, and lets them fall when closed', async () => {
    const ns = unique('watched');
    await gw.createNamespace(ns);
    const idle = await scrape(gw);
    expect(value(idle, 'statehouse_websocket_connections')).toBe(0);
    expect(value(idle, 'statehouse_subscriptions', { transport: 'websocket' })).toBe(0);
    expect(value(idle, 'statehouse_subscriptions', { transport: 'http' })).toBe(0);
    expect(value(idle, 'statehouse_change_feeds')).toBe(0);

    const client = gw.ws(ADMIN_TOKEN);
    const shared = subscribe(client, WATCH, { ns });
    await eventually(async () => value(await scrape(gw), 'statehouse_fanout_groups') === 1, 10_000, 'a fan-out group');
    // A subscription of another kind on the same socket keeps a stream of its own.
    const own = subscribe(client, 'subscription { agentChanged { id } }');
    const sse = openSse(gw.url, ADMIN_TOKEN, 'subscription { insightAdded { id } }');
    expect((await sse.response).status).toBe(200);
    await eventually(
      async () => {
        const scraped = await scrape(gw);
        return (
          value(scraped, 'statehouse_subscriptions', { transport: 'websocket' }) === 2 &&
          value(scraped, 'statehouse_subscriptions', { transport: 'http' }) === 1
        );
      },
      10_000,
      'two WebSocket subscriptions and one over SSE',
    );

    await gw.ok(ADMIN_TOKEN, SET, { ns, key: 'k', value: 1 });
    await shared.waitFor(1);
    const open = await scrape(gw);
    expect(value(open, 'statehouse_websocket_connections')).toBe(1);
    expect(value(open, 'statehouse_fanout_groups')).toBe(1);
    expect(value(open, 'statehouse_fanout_members')).toBe(1);
    expect(value(open, 'statehouse_change_feeds')).toBe(1);
    // The change the subscriber received is the newest the feed was told of: nothing left to deliver.
    expect(value(open, 'statehouse_change_feed_lag_revisions')).toBe(0);

    shared.stop();
    own.stop();
    sse.close();
    await client.dispose();
    await eventually(
      async () => {
        const scraped = await scrape(gw);
        return [
          'statehouse_websocket_connections',
          'statehouse_subscriptions',
          'statehouse_fanout_groups',
          'statehouse_fanout_members',
          'statehouse_change_feeds',
        ].every((name) => value(scraped, name) === 0);
      },
      10_000,
      'every socket, subscription, group and feed to be counted out',
    );
  });

  it('counts a refused WebSocket subscription as a subscription that failed', async () => {
    const ns = unique('sealed');
    await gw.createNamespace(ns, { openAccess: false });
    const outsider = await gw.registerAgent(unique('outsider'));
    const before = await scrape(gw);
    const refused = subscribe(gw.ws(outsider), WATCH, { ns });
    await refused.waitFor(1);
    expect(refused.results[0]?.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
    const after = await scrape(gw);
    expect(delta(before, after, 'graphql_envelop_request', { operationType: 'subscription', outcome: 'error' })).toBe(1);
    expect(delta(before, after, 'graphql_envelop_error_result', { operationType: 'subscription', code: 'FORBIDDEN' })).toBe(1);
  });

  it('never shows a tenant, namespace, key, value, agent, token or operation name', async () => {
    const secrets = {
      tenant: unique('tenant-quokka'),
      namespace: unique('ns-narwhal'),
      key: unique('key-axolotl'),
      value: unique('value-pangolin'),
      agent: unique('agent-capybara'),
      reader: unique('reader-okapi'),
      operation: 'OperationWombat',
    };
    const tenantAdmin = (
      await gw.ok(ADMIN_TOKEN, 'mutation($name: String!) { createTenant(name: $name) { token } }', { name: secrets.tenant })
    ).createTenant.token as string;
    const run = (token: string | null, query: string, variables?: Record<string, unknown>) => gw.gql(token, query, variables);
    await run(tenantAdmin, 'mutation($name: String!) { createNamespace(input: { name: $name, openAccess: false }) { name } }', {
      name: secrets.namespace,
    });
    await run(tenantAdmin, SET, { ns: secrets.namespace, key: secrets.key, value: { note: secrets.value } });
    const agent = (
      await run(tenantAdmin, 'mutation($id: ID!) { registerAgent(input: { id: $id, name: $id, type: "worker" }) { token } }', {
        id: secrets.agent,
      })
    ).data?.registerAgent.token as string;
    const reader = (
      await run(tenantAdmin, 'mutation($name: String!) { createToken(input: { name: $name, role: READER }) { token } }', {
        name: secrets.reader,
      })
    ).data?.createToken.token as string;
    // Successes, refusals and errors whose messages name the namespace, the key or the operation.
    await run(tenantAdmin, `query ${secrets.operation}($ns: String!, $key: String!) { entry(namespace: $ns, key: $key) { value } }`, {
      ns: secrets.namespace,
      key: secrets.key,
    });
    await run(agent, SET, { ns: secrets.namespace, key: secrets.key, value: secrets.value });
    await run(reader, SET, { ns: secrets.namespace, key: secrets.key, value: secrets.value });
    await run(
      tenantAdmin,
      `query ${secrets.operation} { entry(namespace: "${secrets.namespace}", key: "${secrets.key}") { ${secrets.value} } }`,
    );
    await run(tenantAdmin, `query ${secrets.operation} { entry(namespace: "${secrets.namespace}", key: "${secrets.key}"`);
    const watching = subscribe(gw.ws(tenantAdmin), WATCH, { ns: secrets.namespace });
    await eventually(async () => value(await scrape(gw), 'statehouse_fanout_members') === 1, 10_000, 'the subscription to be live');
    await run(tenantAdmin, SET, { ns: secrets.namespace, key: secrets.key, value: secrets.value });
    await watching.waitFor(1);

    const { text } = await scrape(gw);
    for (const secret of [...Object.values(secrets), tenantAdmin, agent, reader, ADMIN_TOKEN]) expect(text).not.toContain(secret);
    expect(text).not.toContain('operationName');
    watching.stop();
  });

  it('labels operations with their names only when asked to, keeping at most 200 names', async () => {
    const named = await startGateway({ db: gw.db, app: { maintenance: false, metrics: { operationNames: true } } });
    try {
      await named.ok(ADMIN_TOKEN, 'query WhoAmI { viewer { role } }');
      await named.ok(ADMIN_TOKEN, '{ viewer { role } }');
      for (let n = 0; n < 205; n++) await named.ok(ADMIN_TOKEN, `query Named${n} { viewer { role } }`);
      const scraped = await scrape(named);
      expect(value(scraped, 'graphql_envelop_request', { operationName: 'WhoAmI', operationType: 'query', outcome: 'success' })).toBe(1);
      expect(value(scraped, 'graphql_envelop_request', { operationName: 'anonymous' })).toBe(1);
      const names = new Set(
        scraped.samples.filter((sample) => sample.name === 'graphql_envelop_request').map((sample) => sample.labels.operationName),
      );
      expect(names.size).toBe(202); // 200 kept (WhoAmI, then Named0 to Named198), anonymous and other
      expect(value(scraped, 'graphql_envelop_request', { operationName: 'other' })).toBe(6);
      expect(names.has('anonymous') && names.has('other') && names.has('Named198') && !names.has('Named199')).toBe(true);
    } finally {
      await named.close();
    }
  });

  it('answers 404 when metrics are turned off', async () => {
    const off = await startGateway({ db: gw.db, app: { maintenance: false, metrics: false } });
    try {
      expect((await scrape(off)).status).toBe(404);
    } finally {
      await off.close();
    }
  });
});
