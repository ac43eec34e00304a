/**
 * The gateway as an attacker meets it (issue 7; API.md §2, §3, §5): two tenants, agents with and
 * without grants and a reader try to read, change, watch or learn the names of what they may not —
 * over HTTP, SSE and WebSocket — and throw injection strings at every string argument. Every refused
 * attempt must carry the contract's code, show no stack, path or SQL, and change nothing: each test
 * compares the tenants' whole state (export, agents, grants, fleet data, config, head revision)
 * before and after. test/access.test.ts covers the access rule itself; this file covers the rest.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, attached, eventually, type Gateway, type GraphQLResponse, startGateway, subscribe } from './support/gateway.js';
import { errorProblems } from './support/leaks.js';
import { openRawSocket } from './support/raw-socket.js';
import { openSse, type SseStream } from './support/sse.js';

let gw: Gateway;

/** Unique per run, so that finding one in an answer can only mean it leaked. */
const mark = (label: string) => `${label}-${Math.random().toString(36).slice(2, 10)}`;
const SECRET_A = mark('secret-of-a');
const SECRET_B = mark('secret-of-b');

/** Tenant A is `default` (the bootstrap admin's); tenant B is created by it. */
const A = {
  admin: ADMIN_TOKEN,
  reader: { id: '', token: '' },
  spy: '', // AGENT listing `shared` and the restricted `vault` (which needs a grant), no grants
  insider: '', // AGENT with a WRITE grant on `vault`
  watcher: '', // AGENT with a READ grant on `watchlist`
  insightId: '',
  revision: '',
};
const B = { admin: '', spy: '', reader: '' };

const ENTRY = 'query($ns: String!, $key: String!) { entry(namespace: $ns, key: $key) { namespace key value version } }';
const SET = `mutation($ns: String!, $key: String!, $value: JSON!, $scope: String) {
  setEntry(input: { namespace: $ns, key: $key, value: $value, scope: $scope }) { namespace scope key value version revision }
}`;
const CHANGES = `query($ns: String, $after: Revision, $cursor: String, $first: Int) {
  changes(namespace: $ns, afterRevision: $after, after: $cursor, first: $first) { nodes { revision namespace scope key value } pageInfo { hasNextPage endCursor } }
}`;
const ENTRY_CHANGED = `subscription($ns: String, $scope: String, $prefix: String, $after: Revision) {
  entryChanged(namespace: $ns, scope: $scope, keyPrefix: $prefix, afterRevision: $after) { revision namespace scope key value }
}`;
const VIEWER = '{ viewer { tenant role } }';
const REGISTER =
  'mutation($input: RegisterAgentInput!) { registerAgent(input: $input) { agent { id name type capabilities stateNamespaces metadata } token } }';
const DEREGISTER = 'mutation($id: ID!) { deregisterAgent(id: $id) }';
const REVOKE_TOKEN = 'mutation($id: ID!) { revokeToken(id: $id) }';
const HEARTBEAT = 'mutation($input: HeartbeatInput!) { heartbeat(input: $input) { id status heartbeat } }';
const RECORD_METRICS = 'mutation($metrics: [MetricInput!]!) { recordMetrics(metrics: $metrics) }';
const REPORT_ERROR = 'mutation($input: ReportErrorInput!) { reportError(input: $input) { type sampleMessage agentIds } }';
const ADD_INSIGHT = 'mutation($input: AddInsightInput!) { addInsight(input: $input) { id type content sourceAgentId } }';
const RECORD_OPTIMIZATION = `mutation($input: RecordOptimizationInput!) {
  recordOptimization(input: $input) { id type description before after sourceAgentId }
}`;
const EXPORT = 'query($ns: [String!]) { exportState(namespaces: $ns) }';
const IMPORT = 'mutation($data: JSON!, $mode: ImportMode) { importState(data: $data, mode: $mode) }';

/** Everything of a tenant an attack could change, as its admin sees it. */
// No revision here: it is the newest change below the server-wide watermark, which may still move
// for earlier writes while other test files hold transactions open on the same server.
const STATE = `{
  exportState
  agents { id name type capabilities stateNamespaces metadata status lastHeartbeatAt heartbeat }
  namespaces { name description openAccess sensitive schema defaultValue defaultTtlSeconds historyLimit entryCount grants { agentId permission } }
  systemOverview { entries namespaces openInsights }
  insights { id type content sourceAgentId actedUpon }
  errorPatterns { type fingerprint count agentIds }
  metricSummary(groupByAgent: true) { name agentId count }
  optimizations { id type sourceAgentId }
  systemState
  config
}`;

async function stateOf(adminToken: string): Promise<unknown> {
  const data = await gw.ok(adminToken, STATE);
  delete data.exportState.exportedAt;
  return data;
}

/** Both tenants' state, and that every token still works as before. */
async function world(): Promise<unknown> {
  const roles: string[] = [];
  for (const token of [A.reader.token, A.spy, A.insider, A.watcher, B.spy, B.reader]) {
    roles.push((await gw.ok(token, VIEWER)).viewer.role);
  }
  return { a: await stateOf(A.admin), b: await stateOf(B.admin), roles };
}

/** One request; whatever it answers, no status 500, every error with a contract code and no internals. */
async function call(token: string | null, query: string, variables?: Record<string, unknown>): Promise<GraphQLResponse<any>> {
  const response = await gw.gql(token, query, variables);
  expect(response.status, query).toBeLessThan(500);
  expect(errorProblems(response.errors, query + JSON.stringify(variables ?? {})), query).toEqual([]);
  return response;
}

const codeOf = (response: GraphQLResponse) => response.errors?.[0]?.extensions?.code;
const dataOf = (response: GraphQLResponse) =>
  response.data === null || response.data === undefined || Object.values(response.data).every((value) => value === null)
    ? null
    : response.data;

/** The request is refused with `code` and answers no data. */
async function refused(code: string, token: string | null, query: string, variables?: Record<string, unknown>, label = query) {
  const response = await call(token, query, variables);
  expect(codeOf(response), label).toBe(code);
  expect(dataOf(response), label).toBeNull();
  return response;
}

function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: still waiting after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function adminSet(token: string, ns: string, key: string, value: unknown, scope?: string): Promise<string> {
  return (await gw.ok(token, SET, { ns, key, value, scope })).setEntry.revision;
}

/** Waits until an SSE stream has delivered a change of `key` (or has ended). */
const sseKeys = (stream: SseStream) => stream.results.map((result) => result.data?.entryChanged?.key as string | undefined);

beforeAll(async () => {
  gw = await startGateway();
  B.admin = (await gw.ok(A.admin, 'mutation { createTenant(name: "rival") { token } }')).createTenant.token;

  for (const [name, openAccess] of [
    ['vault', false],
    ['plans', true],
    ['shared', true],
    ['watchlist', false],
  ] as const) {
    await gw.createNamespace(name, { openAccess });
  }
  A.spy = await gw.registerAgent('spy', ['shared', 'vault']);
  A.insider = await gw.registerAgent('insider');
  A.watcher = await gw.registerAgent('watcher', ['shared']);
  const grant =
    'mutation($ns: String!, $id: ID!, $p: Permission!) { grantAccess(input: { namespace: $ns, agentId: $id, permission: $p }) { permission } }';
  await gw.ok(A.admin, grant, { ns: 'vault', id: 'insider', p: 'WRITE' });
  await gw.ok(A.admin, grant, { ns: 'watchlist', id: 'watcher', p: 'READ' });
  A.reader = await gw.createToken('auditor', 'READER');
  await adminSet(A.admin, 'vault', 'plan', { secret: SECRET_A });
  await adminSet(A.admin, 'vault', 'plan', { secret: SECRET_A, v: 2 });
  await adminSet(A.admin, 'vault', 'plan', { secret: SECRET_A }, 'agent:spy');
  await adminSet(A.admin, 'plans', 'plan', { secret: SECRET_A });
  await adminSet(A.admin, 'watchlist', 'plan', { watched: true });
  await adminSet(A.admin, 'shared', 'plan', { shared: true });
  A.revision = await adminSet(A.admin, 'common', 'plan', { common: true });
  await gw.ok(A.insider, HEARTBEAT, { input: { status: 'BUSY', data: { secret: SECRET_A } } });
  await gw.ok(A.insider, RECORD_METRICS, { metrics: [{ name: `latency-${SECRET_A}`, value: 1 }] });
  await gw.ok(A.insider, REPORT_ERROR, { input: { type: 'db', message: `lost ${SECRET_A}` } });
  A.insightId = (await gw.ok(A.insider, ADD_INSIGHT, { input: { type: 'hint', content: { secret: SECRET_A } } })).addInsight.id;
  await gw.ok(A.insider, RECORD_OPTIMIZATION, { input: { type: 'opt', description: SECRET_A, success: true } });

  // Tenant B has a namespace and an agent of the same names as tenant A's.
  const createVault = 'mutation { createNamespace(input: { name: "vault", openAccess: false }) { name } }';
  await gw.ok(B.admin, createVault);
  B.spy = (await gw.ok(B.admin, REGISTER, { input: { id: 'spy', name: 'spy', type: 'worker' } })).registerAgent.token;
  B.reader = (await gw.ok(B.admin, 'mutation { createToken(input: { name: "auditor", role: READER }) { token } }')).createToken.token;
  await adminSet(B.admin, 'vault', 'plan', { secret: SECRET_B });
});

afterAll(async () => {
  await gw?.close();
});

describe('tenants', () => {
  it("gives a second tenant's admin nothing of the first tenant to read, list, export or change", async () => {
    const before = await world();
    const seen: unknown[] = [];
    const read = async (query: string, variables?: Record<string, unknown>) => {
      const response = await call(B.admin, query, variables);
      seen.push(response);
      return response;
    };

    // A namespace of the same name is the tenant's own.
    expect((await read(ENTRY, { ns: 'vault', key: 'plan' })).data?.entry.value).toEqual({ secret: SECRET_B });
    // A namespace only the other tenant has is NOT_FOUND, like one nobody has.
    for (const query of [
      ENTRY,
      'query($ns: String!, $key: String!) { entries(namespace: $ns, prefix: $key) { nodes { key } } }',
      'query($ns: String!, $key: String!) { entryHistory(namespace: $ns, key: $key) { value } }',
      'query($ns: String!, $key: String!) { entry(namespace: $ns, key: $key, atRevision: "1") { value } }',
      'query($ns: String!, $key: String!) { resolveEntry(namespace: $ns, key: $key, scopes: ["global"]) { value } }',
      'query($ns: String!) { changes(namespace: $ns) { nodes { key } } }',
      SET,
    ]) {
      const theirs = await read(query, { ns: 'plans', key: 'plan', value: 'overwritten' });
      const nobodys = await read(query, { ns: 'nobodys', key: 'plan', value: 'overwritten' });
      expect(codeOf(theirs), query).toBe('NOT_FOUND');
      expect(JSON.stringify(theirs).replaceAll('plans', 'NS'), query).toBe(JSON.stringify(nobodys).replaceAll('nobodys', 'NS'));
    }
    const changes = await read(CHANGES, { after: '0', first: 1000 });
    expect(changes.data?.changes.nodes.map((change: { namespace: string }) => change.namespace)).toEqual(['vault']);
    const exported = (await read(EXPORT)).data?.exportState;
    expect(exported.namespaces.map((ns: { name: string }) => ns.name).sort()).toEqual(['common', 'system', 'vault']);
    expect((await read(EXPORT, { ns: ['plans'] })).data?.exportState.namespaces).toEqual([]);
    expect((await read('{ namespaces { name } }')).data?.namespaces.map((ns: { name: string }) => ns.name).sort()).toEqual([
      'common',
      'system',
      'vault',
    ]);
    expect((await read('{ agents { id } }')).data?.agents).toEqual([{ id: 'spy' }]);
    expect((await read('{ agent(id: "insider") { id } }')).data?.agent).toBeNull();
    expect(codeOf(await read('{ namespacesForAgent(agentId: "insider") { namespace } }'))).toBe('BAD_USER_INPUT');
    for (const query of [
      '{ insights { id content } }',
      '{ errorPatterns { sampleMessage } }',
      '{ metricSummary { name } }',
      '{ optimizations { description } }',
      '{ systemState }',
      '{ systemOverview { entries namespaces openInsights errorsLastHour activeAgents } }',
    ]) {
      const response = await read(query);
      expect(response.errors, query).toBeUndefined();
    }
    expect((await read('{ systemOverview { entries namespaces openInsights activeAgents } }')).data?.systemOverview).toEqual({
      entries: 1,
      namespaces: 3,
      openInsights: 0,
      activeAgents: 0,
    });

    // Mutations aimed at the other tenant's names reach nothing there.
    const attempts: [string, Record<string, unknown>, string | boolean][] = [
      ['mutation { updateNamespace(input: { name: "plans", openAccess: false }) { name } }', {}, 'NOT_FOUND'],
      ['mutation { deleteNamespace(name: "plans") }', {}, false],
      ['mutation { grantAccess(input: { namespace: "vault", agentId: "insider" }) { permission } }', {}, 'BAD_USER_INPUT'],
      ['mutation { revokeAccess(input: { namespace: "vault", agentId: "insider" }) }', {}, false],
      [REVOKE_TOKEN, { id: A.reader.id }, false],
      [DEREGISTER, { id: 'insider' }, false],
      ['mutation($id: ID!) { markInsightActedUpon(id: $id) { id } }', { id: A.insightId }, 'NOT_FOUND'],
      ['mutation { createTenant(name: "third") { token } }', {}, 'FORBIDDEN'],
      ['mutation { restoreEntry(input: { namespace: "plans", key: "plan", version: 1 }) { version } }', {}, 'NOT_FOUND'],
      [
        'mutation { commit(input: { operations: [{ set: { namespace: "plans", key: "plan", value: 1 } }] }) { revision } }',
        {},
        'NOT_FOUND',
      ],
      ['mutation { deleteEntry(input: { namespace: "plans", key: "plan" }) }', {}, 'NOT_FOUND'],
    ];
    for (const [query, variables, expected] of attempts) {
      const response = await read(query, variables);
      if (typeof expected === 'boolean') expect(Object.values(response.data ?? {}), query).toEqual([expected]);
      else expect(codeOf(response), query).toBe(expected);
    }
    expect(JSON.stringify(seen)).not.toContain(SECRET_A);
    expect(await world()).toEqual(before);
  });

  it("keeps an import into one tenant out of the other, even with the other's namespace names", async () => {
    const before = (await world()) as { a: unknown };
    const data = {
      format: 'statehouse-export',
      version: 1,
      namespaces: [{ name: 'plans', openAccess: true, entries: [{ scope: 'global', key: 'plan', value: { overwritten: 'by b' } }] }],
    };
    expect((await call(B.admin, IMPORT, { data, mode: 'REPLACE' })).data?.importState).toBe(true);
    expect((await gw.ok(B.admin, ENTRY, { ns: 'plans', key: 'plan' })).entry.value).toEqual({ overwritten: 'by b' });
    expect((await gw.ok(A.admin, ENTRY, { ns: 'plans', key: 'plan' })).entry.value).toEqual({ secret: SECRET_A });
    expect(((await world()) as { a: unknown }).a).toEqual(before.a);
    await gw.ok(B.admin, 'mutation { deleteNamespace(name: "plans") }');
  });

  it('lets an agent of one tenant act only in its own, when the other tenant has an agent of the same id', async () => {
    const before = (await world()) as { b: unknown };
    await gw.ok(A.spy, HEARTBEAT, { input: { status: 'ERROR', data: { from: 'a' } } });
    await gw.ok(A.spy, RECORD_METRICS, { metrics: [{ name: 'same-id', value: 1 }] });
    expect((await gw.ok(B.admin, '{ agent(id: "spy") { status heartbeat } }')).agent).toEqual({ status: 'STARTING', heartbeat: null });
    expect((await gw.ok(B.admin, '{ metricSummary(name: "same-id") { count } }')).metricSummary).toEqual([]);
    expect((await call(A.spy, ENTRY, { ns: 'vault', key: 'plan' })).data?.entry ?? null).toBeNull();
    expect(((await world()) as { b: unknown }).b).toEqual(before.b);
  });

  it("carries no change or fleet event of one tenant to another tenant's subscriptions, on WebSocket and SSE", async () => {
    const client = gw.ws(B.admin);
    const subs = {
      entries: subscribe(client, ENTRY_CHANGED, { after: '0' }),
      agents: subscribe(client, 'subscription { agentChanged { id heartbeat } }'),
      insights: subscribe(client, 'subscription { insightAdded { content } }'),
      errors: subscribe(client, 'subscription { errorReported { sampleMessage } }'),
      metrics: subscribe(client, 'subscription { metricRecorded { name } }'),
    };
    const sse = openSse(gw.url, B.reader, ENTRY_CHANGED, { after: '0' });
    try {
      // B's existing change is replayed: both change feeds are attached. The fleet feeds replay nothing: B probes them.
      await subs.entries.waitFor(1);
      await eventually(() => sseKeys(sse).includes('plan'), 10_000, 'the SSE replay');
      await attached(
        subs.agents,
        (kind) => gw.ok(B.spy, HEARTBEAT, { input: { status: 'IDLE', data: { probe: kind } } }),
        (result) => result.data?.agentChanged.heartbeat?.probe === 'fence',
      );
      await attached(
        subs.insights,
        (kind) => gw.ok(B.spy, ADD_INSIGHT, { input: { type: 'hint', content: { probe: kind } } }),
        (result) => result.data?.insightAdded.content?.probe === 'fence',
      );
      await attached(
        subs.errors,
        (kind) => gw.ok(B.spy, REPORT_ERROR, { input: { type: 'db', message: kind } }),
        (result) => result.data?.errorReported.sampleMessage === 'fence',
      );
      await attached(
        subs.metrics,
        (kind) => gw.ok(B.spy, RECORD_METRICS, { metrics: [{ name: kind, value: 1 }] }),
        (result) => result.data?.metricRecorded.name === 'fence',
      );

      const secret = mark('a-live');
      await adminSet(A.admin, 'vault', secret, secret);
      await adminSet(A.admin, 'common', secret, secret);
      await gw.ok(A.insider, HEARTBEAT, { input: { status: 'IDLE', data: { secret } } });
      await gw.ok(A.insider, ADD_INSIGHT, { input: { type: 'hint', content: { secret } } });
      await gw.ok(A.insider, REPORT_ERROR, { input: { type: 'db', message: secret } });
      await gw.ok(A.insider, RECORD_METRICS, { metrics: [{ name: secret, value: 1 }] });

      const marker = mark('b-marker');
      await adminSet(B.admin, 'common', marker, marker);
      await gw.ok(B.spy, HEARTBEAT, { input: { status: 'IDLE', data: { marker } } });
      await gw.ok(B.spy, ADD_INSIGHT, { input: { type: 'hint', content: { marker } } });
      await gw.ok(B.spy, REPORT_ERROR, { input: { type: 'db', message: marker } });
      await gw.ok(B.spy, RECORD_METRICS, { metrics: [{ name: marker, value: 1 }] });

      for (const [name, sub] of Object.entries(subs)) {
        await eventually(() => JSON.stringify(sub.results).includes(marker), 10_000, `B's ${name} marker`);
        expect(JSON.stringify(sub.results), name).not.toContain(secret);
        expect(sub.results.filter((result) => result.errors)).toEqual([]);
      }
      await eventually(() => sseKeys(sse).includes(marker), 10_000, "B's SSE marker");
      expect(sse.text()).not.toContain(secret);
      expect(sseKeys(sse)).toEqual(['plan', marker]);
    } finally {
      sse.close();
      for (const sub of Object.values(subs)) sub.stop();
      await client.dispose();
    }
  });
});

describe('an agent reaching past its namespaces', () => {
  const FORBIDDEN_READS: [string, string, Record<string, unknown>][] = [
    ['entryHistory', 'query($ns: String!) { entryHistory(namespace: $ns, key: "plan") { version value } }', {}],
    ['entryHistory in a scope', 'query($ns: String!) { entryHistory(namespace: $ns, key: "plan", scope: "agent:spy") { value } }', {}],
    ['entry(atRevision)', 'query($ns: String!, $r: Revision) { entry(namespace: $ns, key: "plan", atRevision: $r) { value } }', {}],
    ['entry(asOf)', 'query($ns: String!) { entry(namespace: $ns, key: "plan", asOf: "2020-01-01T00:00:00Z") { value } }', {}],
    ['entry in a scope', 'query($ns: String!) { entry(namespace: $ns, key: "plan", scope: "agent:spy") { value } }', {}],
    ['entries(prefix)', 'query($ns: String!) { entries(namespace: $ns, prefix: "pl") { nodes { key value } } }', {}],
    ['entries(match)', 'query($ns: String!) { entries(namespace: $ns, match: { secret: "x" }) { nodes { key } } }', {}],
    ['entries(scope)', 'query($ns: String!) { entries(namespace: $ns, scope: "agent:spy") { nodes { key } } }', {}],
    [
      'resolveEntry through its own scope',
      'query($ns: String!) { resolveEntry(namespace: $ns, key: "plan", scopes: ["agent:spy", "global"]) { scope value } }',
      {},
    ],
    ['changes(namespace)', 'query($ns: String!) { changes(namespace: $ns, afterRevision: "0") { nodes { key value } } }', {}],
    ['namespace(name)', 'query($ns: String!) { namespace(name: $ns) { name entryCount } }', {}],
  ];
  /** [name, mutation, whether a READ permission is enough to be refused (false: a reader of the namespace may do it)] */
  const FORBIDDEN_WRITES: [string, string, boolean][] = [
    [
      'patchEntry',
      'mutation($ns: String!) { patchEntry(input: { namespace: $ns, key: "plan", patch: { secret: null } }) { version } }',
      true,
    ],
    ['incrementEntry', 'mutation($ns: String!) { incrementEntry(input: { namespace: $ns, key: "counter" }) { version } }', true],
    ['deleteEntry', 'mutation($ns: String!) { deleteEntry(input: { namespace: $ns, key: "plan" }) }', true],
    ['deleteEntry in a scope', 'mutation($ns: String!) { deleteEntry(input: { namespace: $ns, key: "plan", scope: "agent:spy" }) }', true],
    ['restoreEntry', 'mutation($ns: String!) { restoreEntry(input: { namespace: $ns, key: "plan", version: 1 }) { version } }', true],
    [
      'setEntry with expectedVersion',
      'mutation($ns: String!) { setEntry(input: { namespace: $ns, key: "plan", value: 1, expectedVersion: 2 }) { version } }',
      true,
    ],
    [
      'commit writing it and common',
      `mutation($ns: String!) { commit(input: { operations: [
        { set: { namespace: "common", key: "smuggled", value: 1 } }, { set: { namespace: $ns, key: "plan", value: 1 } }] }) { revision } }`,
      true,
    ],
    [
      'commit conditioned on it',
      `mutation($ns: String!) { commit(input: { conditions: [{ namespace: $ns, key: "plan", version: 2 }],
        operations: [{ set: { namespace: "common", key: "smuggled", value: 1 } }] }) { revision } }`,
      false,
    ],
    [
      'commit deleting in it',
      'mutation($ns: String!) { commit(input: { operations: [{ delete: { namespace: $ns, key: "plan" } }] }) { revision } }',
      true,
    ],
  ];

  it.each(FORBIDDEN_READS)('answers %s on a forbidden namespace exactly as on a missing one (FORBIDDEN)', async (_name, query) => {
    const r = A.revision;
    const onMissing = await refused('FORBIDDEN', A.spy, query, { ns: 'no-such-namespace', r });
    for (const ns of ['vault', 'plans', 'watchlist']) {
      const response = await refused('FORBIDDEN', A.spy, query, { ns, r }, `${query} on ${ns}`);
      expect(response).toEqual(onMissing);
      expect(JSON.stringify(response)).not.toContain(SECRET_A);
    }
    // The same query works for an agent that may read: the refusal is about access, not the query.
    const allowed = await call(A.insider, query, { ns: 'vault', r });
    expect(codeOf(allowed), query).toBeUndefined();
  });

  it.each(FORBIDDEN_WRITES)(
    'refuses %s on a forbidden namespace like on a missing one, on a read-only one saying so, and changes nothing',
    async (_name, query, readOnlyToo) => {
      const before = await world();
      const onMissing = await refused('FORBIDDEN', A.spy, query, { ns: 'no-such-namespace' });
      for (const ns of ['vault', 'plans']) {
        const response = await refused('FORBIDDEN', A.spy, query, { ns }, `${query} on ${ns}`);
        expect(response).toEqual(onMissing);
      }
      // A namespace the agent reads is no secret to it: the refusal names it and says why.
      const readOnly: [string, string][] = readOnlyToo
        ? [
            [A.watcher, 'watchlist'],
            [A.spy, 'system'],
          ]
        : [];
      for (const [token, ns] of readOnly) {
        const response = await refused('FORBIDDEN', token, query, { ns }, `${query} on ${ns}`);
        expect(response.errors?.[0]?.message).toBe(`This agent may read ${ns} but not write it`);
      }
      expect(await world()).toEqual(before);
    },
  );

  it('refuses updateSystemState to an agent without a WRITE grant on system, and changes nothing', async () => {
    const before = await world();
    for (const token of [A.spy, A.watcher, A.reader.token]) {
      await refused('FORBIDDEN', token, 'mutation { updateSystemState(patch: { owned: true }) }');
    }
    expect(await world()).toEqual(before);
  });

  it('counts in systemOverview only the namespaces and entries the caller may read (all of them for ADMIN and READER)', async () => {
    const OVERVIEW = '{ systemOverview { namespaces entries } }';
    const counts = new Map<string, number>(
      (await gw.ok(A.admin, '{ namespaces { name entryCount } }')).namespaces.map((ns: { name: string; entryCount: number }) => [
        ns.name,
        ns.entryCount,
      ]),
    );
    const overviewOf = (names: string[]) => ({
      namespaces: names.length,
      entries: names.reduce((sum, name) => sum + (counts.get(name) ?? 0), 0),
    });
    for (const token of [A.admin, A.reader.token]) {
      expect((await gw.ok(token, OVERVIEW)).systemOverview).toEqual(overviewOf([...counts.keys()]));
    }
    for (const [token, readable] of [
      [A.spy, ['common', 'shared', 'system']],
      [A.watcher, ['common', 'shared', 'system', 'watchlist']],
    ] as const) {
      expect((await gw.ok(token, OVERVIEW)).systemOverview).toEqual(overviewOf([...readable]));
    }
  });

  it('never shows another namespace in changes without a namespace, paged, resumed, or with a forged cursor', async () => {
    const readable = new Set(['common', 'system', 'shared']);
    const pages: { namespace: string; value: unknown }[] = [];
    let cursor: string | null = null;
    for (let page = 0; page < 100; page++) {
      const response: GraphQLResponse<any> = await call(A.spy, CHANGES, { after: '0', cursor, first: 1 });
      pages.push(...response.data?.changes.nodes);
      if (!response.data?.changes.pageInfo.hasNextPage) break;
      cursor = response.data.changes.pageInfo.endCursor;
    }
    expect(pages.length).toBeGreaterThan(0);
    const everything = (await gw.ok(A.admin, CHANGES, { after: '0', first: 1000 })).changes.nodes as { namespace: string; key: string }[];
    expect(pages.map((change) => change.namespace)).toEqual(
      everything.filter((change) => readable.has(change.namespace)).map((change) => change.namespace),
    );

    // A cursor lifted from the admin's feed, pointing into the vault, or forged to point there.
    const vaultIndex = everything.findIndex((change) => change.namespace === 'vault');
    const lifted = (await gw.ok(A.admin, CHANGES, { after: '0', first: vaultIndex + 1 })).changes.pageInfo.endCursor;
    const forged = Buffer.from(JSON.stringify(['0', 'vault', 'global', ''])).toString('base64url');
    for (const [variables, what] of [
      [{ cursor: lifted }, 'a lifted cursor'],
      [{ cursor: forged }, 'a forged cursor'],
      [{ ns: '', after: '0' }, 'an empty namespace'],
      [{ after: '0', first: 1000 }, 'one page'],
    ] as const) {
      const response = await call(A.spy, CHANGES, variables);
      const namespaces = (response.data?.changes.nodes ?? []).map((change: { namespace: string }) => change.namespace);
      expect(
        namespaces.filter((ns: string) => !readable.has(ns)),
        what,
      ).toEqual([]);
      expect(JSON.stringify(response), what).not.toContain(SECRET_A);
    }
  });

  it('delivers an unfiltered entryChanged over SSE only from readable namespaces, replayed and live', async () => {
    const secret = mark('sse-secret');
    await adminSet(A.admin, 'vault', 'replayed', secret);
    await adminSet(A.admin, 'plans', 'replayed', secret);
    const replayed = mark('replayed-shared');
    await adminSet(A.admin, 'shared', replayed, 1);

    const streams = [
      openSse(gw.url, A.spy, ENTRY_CHANGED, { after: A.revision }),
      openSse(gw.url, A.spy, ENTRY_CHANGED, { after: A.revision, scope: 'global' }, { method: 'GET' }),
      openSse(gw.url, A.spy, ENTRY_CHANGED, { after: A.revision, prefix: 'live-' }),
    ];
    try {
      for (const stream of streams) expect((await stream.response).status).toBe(200);
      await eventually(() => sseKeys(streams[0] as SseStream).includes(replayed), 10_000, 'the replay');
      // The third stream replays nothing yet; it reads from A.revision on, so it gets the live writes however late it attaches.
      await eventually(() => sseKeys(streams[1] as SseStream).includes(replayed), 10_000, 'the GET replay');
      await adminSet(A.admin, 'vault', 'live-secret', secret);
      await adminSet(A.admin, 'plans', 'live-secret', secret);
      await adminSet(A.admin, 'watchlist', 'live-secret', secret);
      const marker = `live-${mark('marker')}`;
      await adminSet(A.admin, 'shared', marker, 2);
      for (const stream of streams) {
        await eventually(() => sseKeys(stream).includes(marker), 10_000, 'the live marker');
        const namespaces = stream.results.map((result) => result.data?.entryChanged?.namespace);
        expect(namespaces.filter((ns) => !['common', 'system', 'shared'].includes(ns))).toEqual([]);
        expect(stream.text()).not.toContain(secret);
        expect(stream.results.filter((result) => result.errors)).toEqual([]);
      }
      expect(sseKeys(streams[2] as SseStream)).toEqual([marker]);
    } finally {
      for (const stream of streams) stream.close();
    }
  });

  it('delivers an entryChanged filtered by scope or keyPrefix, without a namespace, over WebSocket only from readable namespaces', async () => {
    const client = gw.ws(A.spy);
    const byScope = subscribe(client, ENTRY_CHANGED, { scope: 'agent:spy', after: A.revision });
    const byPrefix = subscribe(client, ENTRY_CHANGED, { prefix: 'pl', after: '0' });
    try {
      const secret = mark('ws-secret');
      await adminSet(A.admin, 'vault', 'plan', secret, 'agent:spy');
      await adminSet(A.admin, 'plans', 'plan', secret, 'agent:spy');
      const marker = `pl-${mark('marker')}`;
      await adminSet(A.admin, 'shared', marker, 1, 'agent:spy');
      for (const sub of [byScope, byPrefix]) {
        await eventually(() => JSON.stringify(sub.results).includes(marker), 10_000, 'the marker');
        expect(JSON.stringify(sub.results)).not.toContain(secret);
        expect(JSON.stringify(sub.results)).not.toContain(SECRET_A);
        const namespaces = sub.results.map((result) => result.data?.entryChanged?.namespace);
        expect(namespaces.filter((ns) => !['common', 'system', 'shared'].includes(ns))).toEqual([]);
      }
    } finally {
      byScope.stop();
      byPrefix.stop();
      await client.dispose();
    }
  });

  it('answers entryChanged on a forbidden namespace over SSE with FORBIDDEN, as on a missing one, and ends', async () => {
    const answers: unknown[] = [];
    for (const ns of ['vault', 'plans', 'no-such-namespace']) {
      const stream = openSse(gw.url, A.spy, ENTRY_CHANGED, { ns, after: '0' });
      try {
        await within(stream.ended, 10_000, `the SSE stream on ${ns} ending`);
        expect(stream.results, ns).toHaveLength(1);
        expect(stream.results[0]?.data ?? null).toBeNull();
        expect(stream.results[0]?.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
        expect(stream.text()).not.toContain(SECRET_A);
        answers.push(stream.results[0]);
      } finally {
        stream.close();
      }
    }
    expect(answers[0]).toEqual(answers[2]);
    expect(answers[1]).toEqual(answers[2]);
  });

  it('refuses exportState and importState to agents and readers, and changes nothing', async () => {
    const before = await world();
    const data = (await gw.ok(A.admin, EXPORT)).exportState;
    data.namespaces = data.namespaces.map((ns: { name: string; entries: unknown[] }) => ({ ...ns, entries: [] }));
    for (const token of [A.spy, A.insider, A.reader.token]) {
      for (const ns of [null, ['vault'], ['shared']]) await refused('FORBIDDEN', token, EXPORT, { ns });
      await refused('FORBIDDEN', token, IMPORT, { data, mode: 'REPLACE' });
    }
    expect(await world()).toEqual(before);
  });

  it('answers namespacesForAgent about another agent and about no agent alike', async () => {
    const query = 'query($id: ID!) { namespacesForAgent(agentId: $id) { namespace permission } }';
    const another = await refused('FORBIDDEN', A.spy, query, { id: 'insider' });
    const nobody = await refused('FORBIDDEN', A.spy, query, { id: 'nobody-at-all' });
    expect(JSON.stringify(another).replaceAll('insider', 'X')).toBe(JSON.stringify(nobody).replaceAll('nobody-at-all', 'X'));
    expect(JSON.stringify(another)).not.toContain('vault');
  });

  it('gives an agent no field to report heartbeats, metrics, errors, insights or optimizations as another agent', async () => {
    const { __schema } = await gw.ok(
      A.spy,
      '{ __schema { types { name inputFields { name } } mutationType { fields { name args { name } } } } }',
    );
    const inputs = ['HeartbeatInput', 'MetricInput', 'ReportErrorInput', 'AddInsightInput', 'RecordOptimizationInput'];
    for (const name of inputs) {
      const type = __schema.types.find((candidate: { name: string }) => candidate.name === name);
      const fields = type.inputFields.map((field: { name: string }) => field.name);
      expect(
        fields.filter((field: string) => /agent|source|actor|^id$|owner/i.test(field)),
        name,
      ).toEqual([]);
    }
    for (const field of __schema.mutationType.fields.filter((candidate: { name: string }) =>
      ['heartbeat', 'recordMetrics', 'reportError', 'addInsight', 'recordOptimization'].includes(candidate.name),
    )) {
      expect(
        field.args.map((arg: { name: string }) => arg.name),
        field.name,
      ).toEqual([field.name === 'recordMetrics' ? 'metrics' : 'input']);
    }

    const before = await world();
    const insiderBefore = (await gw.ok(A.admin, '{ agent(id: "insider") { status lastHeartbeatAt } }')).agent;
    const impersonations: [string, Record<string, unknown>][] = [
      [HEARTBEAT, { input: { status: 'STOPPED', agentId: 'insider' } }],
      [HEARTBEAT, { input: { status: 'STOPPED', id: 'insider' } }],
      [RECORD_METRICS, { metrics: [{ name: 'forged', value: 1, agentId: 'insider' }] }],
      [REPORT_ERROR, { input: { type: 'forged', message: 'forged', agentId: 'insider' } }],
      [ADD_INSIGHT, { input: { type: 'forged', content: {}, sourceAgentId: 'insider' } }],
      [RECORD_OPTIMIZATION, { input: { type: 'forged', success: true, sourceAgentId: 'insider' } }],
      ['mutation { heartbeat(input: { status: STOPPED }, agentId: "insider") { id } }', {}],
      ['mutation { recordMetrics(metrics: [{ name: "forged", value: 1 }], agentId: "insider") }', {}],
    ];
    for (const [query, variables] of impersonations) {
      await refused('BAD_USER_INPUT', A.spy, query, variables);
    }
    // Admins and readers are no agent at all.
    for (const token of [A.admin, A.reader.token]) {
      await refused('FORBIDDEN', token, HEARTBEAT, { input: { status: 'STOPPED' } });
      await refused('FORBIDDEN', token, RECORD_METRICS, { metrics: [{ name: 'forged', value: 1 }] });
      await refused('FORBIDDEN', token, REPORT_ERROR, { input: { type: 'forged', message: 'forged' } });
    }
    expect(await world()).toEqual(before);

    // What the spy does report is its own.
    expect((await gw.ok(A.spy, HEARTBEAT, { input: { status: 'IDLE' } })).heartbeat.id).toBe('spy');
    expect((await gw.ok(A.spy, REPORT_ERROR, { input: { type: 'own', message: 'own' } })).reportError.agentIds).toEqual(['spy']);
    expect((await gw.ok(A.spy, ADD_INSIGHT, { input: { type: 'own', content: { own: true } } })).addInsight.sourceAgentId).toBe('spy');
    expect((await gw.ok(A.spy, RECORD_OPTIMIZATION, { input: { type: 'own', success: true } })).recordOptimization.sourceAgentId).toBe(
      'spy',
    );
    await gw.ok(A.spy, RECORD_METRICS, { metrics: [{ name: 'own-metric', value: 1 }] });
    const summary = await gw.ok(A.admin, '{ metricSummary(name: "own-metric", groupByAgent: true) { agentId count } }');
    expect(summary.metricSummary).toEqual([{ agentId: 'spy', count: 1 }]);
    const written = await gw.ok(A.spy, 'mutation { setEntry(input: { namespace: "shared", key: "own", value: 1 }) { updatedBy } }');
    expect(written.setEntry.updatedBy).toBe('spy');
    const insider = await gw.ok(A.admin, '{ agent(id: "insider") { status lastHeartbeatAt } }');
    expect(insider.agent).toEqual(insiderBefore);
  });
});

describe('a READER', () => {
  it('is refused every mutation beyond those of the access tests, and changes nothing', async () => {
    const before = await world();
    const data = { format: 'statehouse-export', version: 1, namespaces: [{ name: 'shared', entries: [] }] };
    const mutations: [string, Record<string, unknown>][] = [
      ['mutation { restoreEntry(input: { namespace: "vault", key: "plan", version: 1 }) { version } }', {}],
      ['mutation { commit(input: { operations: [{ set: { namespace: "common", key: "r", value: 1 } }] }) { revision } }', {}],
      ['mutation { commit(input: { operations: [{ delete: { namespace: "vault", key: "plan" } }] }) { revision } }', {}],
      [HEARTBEAT, { input: { status: 'BUSY' } }],
      [RECORD_METRICS, { metrics: [{ name: 'r', value: 1 }] }],
      [REPORT_ERROR, { input: { type: 'r', message: 'r' } }],
      [ADD_INSIGHT, { input: { type: 'r', content: { r: 1 } } }],
      ['mutation($id: ID!) { markInsightActedUpon(id: $id) { actedUpon } }', { id: A.insightId }],
      [RECORD_OPTIMIZATION, { input: { type: 'r', success: true } }],
      ['mutation { updateSystemState(patch: { r: 1 }) }', {}],
      [IMPORT, { data, mode: 'REPLACE' }],
      ['mutation { createTenant(name: "readers-own") { token } }', {}],
      ['mutation { updateConfig(patch: { rateLimit: { perTokenPerSecond: 1 } }) }', {}],
      ['mutation { patchEntry(input: { namespace: "common", key: "plan", patch: { r: 1 } }) { version } }', {}],
      ['mutation { incrementEntry(input: { namespace: "common", key: "r" }) { version } }', {}],
    ];
    for (const [query, variables] of mutations) await refused('FORBIDDEN', A.reader.token, query, variables);
    expect(await world()).toEqual(before);
  });
});

describe('revoked and deregistered tokens', () => {
  it("ends a deregistered agent's open subscriptions on WebSocket and SSE and refuses everything after", async () => {
    const id = mark('doomed');
    const token = await gw.registerAgent(id, ['shared']);
    const start = await adminSet(A.admin, 'shared', mark('start'), 0);
    const client = gw.ws(token);
    const entries = subscribe(client, ENTRY_CHANGED, { ns: 'shared', after: start });
    const unfiltered = subscribe(client, ENTRY_CHANGED, { after: start });
    const agents = subscribe(client, 'subscription { agentChanged { id status } }');
    const sse = openSse(gw.url, token, ENTRY_CHANGED, { ns: 'shared', after: start });
    // The same subscription on a raw socket that stays open: what the server sends after the end is seen.
    const raw = await openRawSocket(gw.wsUrl);
    raw.send({ type: 'connection_init', payload: { authorization: `Bearer ${token}` } });
    expect(await raw.waitFor((frame) => frame.type === 'connection_ack')).not.toBeNull();
    raw.send({ id: 'raw', type: 'subscribe', payload: { query: ENTRY_CHANGED, variables: { ns: 'shared', after: start } } });
    const first = mark('first');
    await adminSet(A.admin, 'shared', first, 1);
    await entries.waitFor(1);
    await unfiltered.waitFor(1);
    await eventually(() => sseKeys(sse).includes(first), 10_000, 'the first change over SSE');
    expect(await raw.waitFor((frame) => frame.id === 'raw' && frame.payload?.data?.entryChanged?.key === first)).not.toBeNull();
    await attached(
      agents,
      (kind) => gw.ok(token, HEARTBEAT, { input: { status: kind === 'fence' ? 'BUSY' : 'IDLE' } }),
      (result) => result.data?.agentChanged.status === 'BUSY',
    );

    expect((await gw.ok(A.admin, DEREGISTER, { id })).deregisterAgent).toBe(true);
    for (const sub of [entries, unfiltered, agents]) {
      await within(sub.done, 10_000, 'the subscription ending');
      const last = sub.results.at(-1);
      expect(last?.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
      expect(last?.data ?? null).toBeNull();
    }
    await within(sse.ended, 10_000, 'the SSE stream ending');
    expect(sse.results.at(-1)?.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');

    expect(await raw.waitFor((frame) => frame.type === 'complete' && frame.id === 'raw')).not.toBeNull();
    const rawFrames = raw.frames.filter((frame) => frame.id === 'raw');
    expect(rawFrames.at(-2)?.payload?.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');

    // A later change reaches a subscriber that may read it, but not the dead token's socket.
    const observer = subscribe(gw.ws(A.admin), ENTRY_CHANGED, { ns: 'shared', after: start });
    const later = mark('later');
    await adminSet(A.admin, 'shared', later, 2);
    await eventually(() => JSON.stringify(observer.results).includes(later), 10_000, 'the observer to see the later change');
    expect(raw.frames.filter((frame) => frame.id === 'raw')).toHaveLength(rawFrames.length);
    expect(JSON.stringify(raw.frames)).not.toContain(later);
    observer.stop();
    raw.close();
    const before = await world();
    for (const [query, variables] of [
      [VIEWER, {}],
      [SET, { ns: 'common', key: later, value: 1 }],
      [HEARTBEAT, { input: { status: 'IDLE' } }],
      [RECORD_METRICS, { metrics: [{ name: 'ghost', value: 1 }] }],
    ] as const) {
      await refused('UNAUTHENTICATED', token, query, variables);
    }
    const reconnect = subscribe(gw.ws(token), ENTRY_CHANGED, { ns: 'shared' });
    await within(reconnect.done, 10_000, 'a new socket with the dead token');
    expect(reconnect.results).toEqual([]);
    expect((reconnect.error as { code?: number } | undefined)?.code).toBe(4403);
    expect(await world()).toEqual(before);
    await client.dispose();
  });

  it("keeps a deregistered agent's old token dead when an agent of the same id is registered again", async () => {
    const id = mark('reborn');
    const old = await gw.registerAgent(id, ['shared']);
    await gw.ok(A.admin, DEREGISTER, { id });
    const reborn = await gw.registerAgent(id, ['shared']);
    await refused('UNAUTHENTICATED', old, VIEWER);
    await refused('UNAUTHENTICATED', old, HEARTBEAT, { input: { status: 'IDLE' } });
    expect((await gw.ok(reborn, '{ viewer { agent { id } } }')).viewer.agent.id).toBe(id);
  });

  it('refuses a revoked token at connection_init (4403), on SSE, and for every admin mutation', async () => {
    const admin = await gw.createToken(mark('second-admin'), 'ADMIN');
    const reader = await gw.createToken(mark('reader'), 'READER');
    const sse = openSse(gw.url, reader.token, ENTRY_CHANGED, { ns: 'shared', after: A.revision });
    await eventually(() => sse.results.length > 0, 10_000, 'the SSE replay');
    for (const { id } of [admin, reader]) expect((await gw.ok(A.admin, REVOKE_TOKEN, { id })).revokeToken).toBe(true);
    await within(sse.ended, 10_000, 'the SSE stream ending');
    expect(sse.results.at(-1)?.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');

    const socket = await openRawSocket(gw.wsUrl);
    socket.send({ type: 'connection_init', payload: { authorization: `Bearer ${reader.token}` } });
    expect((await within(socket.closed, 5_000, 'the socket closing')).code).toBe(4403);
    expect(socket.frames.map((frame) => frame.type)).not.toContain('connection_ack');

    const before = await world();
    for (const query of [
      'mutation { createNamespace(input: { name: "by-revoked" }) { name } }',
      'mutation { registerAgent(input: { id: "by-revoked", name: "x", type: "x" }) { token } }',
      'mutation { createToken(input: { name: "by-revoked", role: ADMIN }) { token } }',
      'mutation { grantAccess(input: { namespace: "vault", agentId: "spy" }) { permission } }',
      'mutation { updateConfig(patch: { activeWindowSeconds: 1 }) }',
      '{ exportState }',
    ]) {
      await refused('UNAUTHENTICATED', admin.token, query);
    }
    expect(await world()).toEqual(before);
  });
});

/** Strings an attacker tries in every string argument. */
const INJECTIONS: string[] = [
  "'; DROP TABLE entries; --",
  "' OR '1'='1",
  '" OR ""="',
  '1; SELECT pg_sleep(10); --',
  '$$; DELETE FROM tokens; $$',
  '%',
  '_',
  'a%b_c',
  '\\',
  "\\'; --",
  '$1',
  '${process.env.STATEHOUSE_ADMIN_TOKEN}',
  "{{constructor.constructor('return process')()}}",
  '<script>alert(1)</script>',
  '../../../etc/passwd',
  'ключ-鍵-🔑-𝕊',
  'e\u0301\u202eevil\u200b\ufeff',
  'line\nbreak',
  ' ',
  '',
  '__proto__',
  'constructor',
  'null',
  'x'.repeat(513),
  'y'.repeat(100_000),
];

/** What PostgreSQL cannot store in text or jsonb: U+0000 and a lone surrogate (which it would turn into U+FFFD). */
const UNSTORABLE: string[] = ['a\u0000b', '\u0000', '\ud800'];

const JSON_INJECTIONS: unknown[] = [
  JSON.parse('{"__proto__": {"polluted": "yes"}, "constructor": {"prototype": {"polluted": "yes"}}}'),
  JSON.parse('{"a": {"__proto__": {"polluted": "yes"}}, "toString": "x", "hasOwnProperty": 1}'),
  { sql: "'; DROP TABLE entries; --", "'; DROP TABLE entries; --": "'" },
  ["'; DROP TABLE entries; --", { '%': '_' }],
  'a string that ends in a backslash \\',
];

/** Compares two JSON values by their canonical text: own `__proto__` keys count like any other. */
const canonical = (value: unknown): string =>
  JSON.stringify(value, (_key, inner) =>
    inner && typeof inner === 'object' && !Array.isArray(inner)
      ? Object.fromEntries(
          Object.keys(inner)
            .sort()
            .map((key) => [key, inner[key]]),
        )
      : inner,
  );

interface Target {
  name: string;
  /** What a refusal must name in `extensions.field`: the argument or input field (or its variable, which these queries name alike). */
  field: string;
  run(value: string): Promise<GraphQLResponse<any>>;
  /** The value as stored, read back; absent for filters and lookups, where an answer without error is enough. */
  readBack?(value: string, response: GraphQLResponse<any>): Promise<unknown>;
  /** The contract's rule for the argument: true, it must be taken; false, refused; undefined, either. */
  valid?(value: string): boolean | undefined;
  /** Codes other than BAD_USER_INPUT that a well-formed value may meet (an agent asking for a namespace it cannot read). */
  alsoAllowed?: string[];
}

const NAMESPACE_RULE = /^[a-z0-9][a-z0-9._-]{0,62}$/;
const SCOPE_RULE = /^[A-Za-z0-9._:/@-]{1,200}$/;
const keyRule = (key: string) =>
  [...key].length >= 1 &&
  [...key].length <= 512 &&
  !/[\u0000-\u001f\u007f-\u009f]/.test(key) &&
  !/[\u061c\u200b-\u200f\u202a-\u202e\u2060\u2066-\u2069\ufeff]/.test(key) &&
  !/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(key);
/** Names must follow the rule; a name that does may still be refused for access. */
const namespaceRule = (name: string) => (NAMESPACE_RULE.test(name) ? undefined : false);

const cursorOf = (parts: string[]) => Buffer.from(JSON.stringify(parts)).toString('base64url');
const short = (value: string) => JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…(${value.length})` : value);

describe('injection strings', () => {
  let counter = 0;
  const fresh = (label: string) => `${label}-${++counter}`;
  /** A request whose answer attack() judges, so that every problem is listed, not just the first. */
  const ask = (token: string, query: string, variables: Record<string, unknown>) => gw.gql(token, query, variables);

  /** Runs every target with every value and lists what went against the contract. */
  async function attack(targets: Target[], values: string[]): Promise<string[]> {
    const problems: string[] = [];
    for (const target of targets) {
      for (const value of values) {
        const label = `${target.name} ← ${short(value)}`;
        const response = await target.run(value);
        if (response.status >= 500) problems.push(`${label}: HTTP ${response.status}`);
        for (const problem of errorProblems(response.errors, JSON.stringify(value))) problems.push(`${label}: ${problem}`);
        const error = response.errors?.[0];
        const rule = target.valid?.(value);
        if (error) {
          const { code, field } = error.extensions ?? {};
          const expected = (code === 'BAD_USER_INPUT' && field === target.field) || target.alsoAllowed?.includes(code as string);
          if (!expected)
            problems.push(`${label}: refused with ${JSON.stringify(error.extensions)}, not BAD_USER_INPUT naming ${target.field}`);
          if (rule === true) problems.push(`${label}: a valid value was refused: ${error.message}`);
        } else if (rule === false) {
          problems.push(`${label}: accepted, but the contract refuses it`);
        } else if (target.readBack) {
          const stored = await target.readBack(value, response);
          if (stored !== value) problems.push(`${label}: stored as ${short(String(stored))}`);
        }
      }
    }
    return problems;
  }

  const SET_INPUT = 'mutation($input: SetEntryInput!) { setEntry(input: $input) { scope key value } }';
  const register = (input: Record<string, unknown>) => ask(A.admin, REGISTER, { input: { name: 'n', type: 't', ...input } });
  const agentOf = (response: GraphQLResponse<any>) => response.data?.registerAgent.agent;
  /** A filter or lookup by one argument: any answer without error will do. */
  const lookup = (name: string, field: string, token: string, query: string): Target => ({
    name,
    field,
    run: (value) => ask(token, query, { [field]: value }),
  });

  /** Every string argument of the entry API. */
  const entryTargets = (): Target[] => [
    {
      name: 'setEntry.key',
      field: 'key',
      valid: keyRule,
      run: (key) => ask(A.admin, SET_INPUT, { input: { namespace: 'common', key, value: 1 } }),
      readBack: async (key) => (await gw.ok(A.admin, ENTRY, { ns: 'common', key })).entry?.key,
    },
    {
      name: 'setEntry.value',
      field: 'value',
      run: (value) => ask(A.admin, SET_INPUT, { input: { namespace: 'common', key: fresh('value'), value } }),
      readBack: async (_value, response) => (await gw.ok(A.admin, ENTRY, { ns: 'common', key: response.data?.setEntry.key })).entry?.value,
    },
    {
      name: 'setEntry.scope',
      field: 'scope',
      valid: (scope) => SCOPE_RULE.test(scope),
      run: (scope) => ask(A.admin, SET_INPUT, { input: { namespace: 'common', key: 'scoped', value: 1, scope } }),
      readBack: async (_value, response) => response.data?.setEntry.scope,
    },
    {
      name: 'setEntry.namespace (as an agent)',
      field: 'namespace',
      valid: namespaceRule,
      alsoAllowed: ['FORBIDDEN'],
      run: (namespace) => ask(A.spy, SET_INPUT, { input: { namespace, key: 'k', value: 1 } }),
    },
    {
      name: 'patchEntry.key',
      field: 'key',
      valid: keyRule,
      run: (key) =>
        ask(A.admin, 'mutation($key: String!) { patchEntry(input: { namespace: "common", key: $key, patch: { p: 1 } }) { key } }', {
          key,
        }),
      readBack: async (_value, response) => response.data?.patchEntry.key,
    },
    {
      name: 'incrementEntry.key',
      field: 'key',
      valid: keyRule,
      run: (key) => ask(A.admin, 'mutation($key: String!) { incrementEntry(input: { namespace: "shared", key: $key }) { key } }', { key }),
      readBack: async (key) => (await gw.ok(A.admin, ENTRY, { ns: 'shared', key })).entry?.key,
    },
    {
      name: 'commit.operations.set.key',
      field: 'key',
      valid: keyRule,
      run: (key) =>
        ask(A.admin, 'mutation($operations: [OperationInput!]!) { commit(input: { operations: $operations }) { entries { key } } }', {
          operations: [{ set: { namespace: 'common', key, value: { stored: key } } }],
        }),
      readBack: async (_value, response) => response.data?.commit.entries[0]?.key,
    },
    {
      name: 'deleteEntry.key',
      field: 'key',
      valid: keyRule,
      run: (key) => ask(A.admin, 'mutation($key: String!) { deleteEntry(input: { namespace: "watchlist", key: $key }) }', { key }),
    },
    { name: 'entry.key', field: 'key', valid: keyRule, run: (key) => ask(A.spy, ENTRY, { ns: 'shared', key }) },
    {
      name: 'entryHistory.scope',
      field: 'scope',
      valid: (scope) => SCOPE_RULE.test(scope),
      run: (scope) =>
        ask(A.spy, 'query($scope: String!) { entryHistory(namespace: "shared", key: "plan", scope: $scope) { version } }', { scope }),
    },
    {
      name: 'entries.prefix',
      field: 'prefix',
      valid: (prefix) => prefix === '' || keyRule(prefix),
      run: (prefix) => ask(A.spy, 'query($prefix: String) { entries(namespace: "shared", prefix: $prefix) { nodes { key } } }', { prefix }),
    },
    {
      name: 'entries.scope',
      field: 'scope',
      valid: (scope) => SCOPE_RULE.test(scope),
      run: (scope) => ask(A.spy, 'query($scope: String) { entries(namespace: "shared", scope: $scope) { nodes { key } } }', { scope }),
    },
    {
      name: 'entries.match',
      field: 'match',
      run: (value) =>
        ask(A.spy, 'query($match: JSON) { entries(namespace: "shared", match: $match) { nodes { key } } }', {
          match: { [value]: value },
        }),
    },
    {
      name: 'entries.after',
      field: 'after',
      run: (after) => ask(A.spy, 'query($after: String) { entries(namespace: "shared", after: $after) { nodes { key } } }', { after }),
    },
    {
      name: 'entries.after (a forged cursor)',
      field: 'after',
      run: (value) =>
        ask(A.spy, 'query($after: String) { entries(namespace: "shared", after: $after) { nodes { key } } }', {
          after: cursorOf([value, value]),
        }),
    },
    {
      name: 'changes.after (a forged cursor)',
      field: 'after',
      run: (value) =>
        ask(A.spy, 'query($after: String) { changes(after: $after) { nodes { key } } }', { after: cursorOf(['1', value, value, value]) }),
    },
    {
      name: 'resolveEntry.scopes',
      field: 'scopes',
      valid: (scope) => SCOPE_RULE.test(scope),
      run: (scope) =>
        ask(A.spy, 'query($scopes: [String!]!) { resolveEntry(namespace: "shared", key: "plan", scopes: $scopes) { key } }', {
          scopes: ['global', scope],
        }),
    },
    {
      name: 'entry.atRevision',
      field: 'atRevision',
      valid: () => false,
      run: (atRevision) =>
        ask(A.spy, 'query($atRevision: Revision) { entry(namespace: "shared", key: "plan", atRevision: $atRevision) { key } }', {
          atRevision,
        }),
    },
    {
      name: 'entry.asOf',
      field: 'asOf',
      valid: () => false,
      run: (asOf) => ask(A.spy, 'query($asOf: DateTime) { entry(namespace: "shared", key: "plan", asOf: $asOf) { key } }', { asOf }),
    },
    {
      name: 'namespace.name (as an agent)',
      field: 'name',
      valid: namespaceRule,
      alsoAllowed: ['FORBIDDEN'],
      run: (name) => ask(A.spy, 'query($name: String!) { namespace(name: $name) { name } }', { name }),
    },
  ];

  /** Every string argument of the fleet and admin API. */
  const fleetTargets = (): Target[] => [
    {
      name: 'registerAgent.id',
      field: 'id',
      valid: (id) => (/^[A-Za-z0-9._:@-]{1,128}$/.test(id) ? undefined : false),
      run: (id) => register({ id }),
      readBack: async (_value, response) => agentOf(response).id,
    },
    {
      name: 'registerAgent.name',
      field: 'name',
      run: (name) => register({ id: fresh('agent'), name }),
      readBack: async (_v, r) => agentOf(r).name,
    },
    {
      name: 'registerAgent.type',
      field: 'type',
      run: (type) => register({ id: fresh('agent'), type }),
      readBack: async (_v, r) => agentOf(r).type,
    },
    {
      name: 'registerAgent.capabilities',
      field: 'capabilities',
      run: (value) => register({ id: fresh('agent'), capabilities: [value] }),
      readBack: async (_value, response) => agentOf(response).capabilities[0],
    },
    {
      name: 'registerAgent.stateNamespaces',
      field: 'stateNamespaces',
      valid: namespaceRule,
      run: (value) => register({ id: fresh('agent'), stateNamespaces: [value] }),
      readBack: async (_value, response) => agentOf(response).stateNamespaces[0],
    },
    {
      name: 'registerAgent.metadata',
      field: 'metadata',
      run: (value) => register({ id: fresh('agent'), metadata: { [value]: value } }),
      readBack: async (value, response) => agentOf(response).metadata[value],
    },
    {
      name: 'createToken.name',
      field: 'name',
      run: (name) => ask(A.admin, 'mutation($name: String!) { createToken(input: { name: $name, role: READER }) { role } }', { name }),
    },
    {
      name: 'createNamespace.name',
      field: 'name',
      valid: namespaceRule,
      run: (name) => ask(A.admin, 'mutation($name: String!) { createNamespace(input: { name: $name }) { name } }', { name }),
      readBack: async (_value, response) => response.data?.createNamespace.name,
    },
    {
      name: 'createNamespace.description',
      field: 'description',
      run: (description) =>
        ask(A.admin, 'mutation($input: CreateNamespaceInput!) { createNamespace(input: $input) { description } }', {
          input: { name: fresh('described'), description },
        }),
      readBack: async (_value, response) => response.data?.createNamespace.description,
    },
    {
      name: 'createTenant.name',
      field: 'name',
      run: (name) => ask(A.admin, 'mutation($name: String!) { createTenant(name: $name) { role } }', { name }),
    },
    { name: 'recordMetrics.name', field: 'name', run: (name) => ask(A.spy, RECORD_METRICS, { metrics: [{ name, value: 1 }] }) },
    {
      name: 'recordMetrics.unit',
      field: 'unit',
      run: (unit) => ask(A.spy, RECORD_METRICS, { metrics: [{ name: 'units', value: 1, unit }] }),
    },
    {
      name: 'recordMetrics.tags',
      field: 'tags',
      run: (value) => ask(A.spy, RECORD_METRICS, { metrics: [{ name: 'tagged', value: 1, tags: { [value]: value } }] }),
    },
    {
      name: 'reportError.type',
      field: 'type',
      run: (type) => ask(A.spy, REPORT_ERROR, { input: { type, message: 'm' } }),
      readBack: async (_value, response) => response.data?.reportError.type,
    },
    {
      name: 'reportError.message',
      field: 'message',
      run: (message) => ask(A.spy, REPORT_ERROR, { input: { type: 'injected', message } }),
      readBack: async (_value, response) => response.data?.reportError.sampleMessage,
    },
    {
      name: 'reportError.context',
      field: 'context',
      run: (value) => ask(A.spy, REPORT_ERROR, { input: { type: 'injected', message: 'm', context: { [value]: value } } }),
    },
    {
      name: 'addInsight.type',
      field: 'type',
      run: (type) => ask(A.spy, ADD_INSIGHT, { input: { type, content: { v: type } } }),
      readBack: async (_value, response) => response.data?.addInsight.type,
    },
    {
      name: 'recordOptimization.description',
      field: 'description',
      run: (description) => ask(A.spy, RECORD_OPTIMIZATION, { input: { type: 'injected', description, success: true } }),
      readBack: async (_value, response) => response.data?.recordOptimization.description,
    },
    {
      name: 'updateSystemState.patch',
      field: 'patch',
      run: (value) => ask(A.admin, 'mutation($patch: JSON!) { updateSystemState(patch: $patch) }', { patch: { injected: value } }),
      readBack: async (_value, response) => response.data?.updateSystemState.injected,
    },
    lookup('agents.type', 'type', A.spy, 'query($type: String) { agents(type: $type) { id } }'),
    lookup('agent.id', 'id', A.spy, 'query($id: ID!) { agent(id: $id) { id } }'),
    lookup('errorPatterns.type', 'type', A.spy, 'query($type: String) { errorPatterns(type: $type) { id } }'),
    lookup('insights.type', 'type', A.spy, 'query($type: String) { insights(type: $type) { id } }'),
    lookup('optimizations.type', 'type', A.spy, 'query($type: String) { optimizations(type: $type) { id } }'),
    lookup('metricSummary.name', 'name', A.spy, 'query($name: String) { metricSummary(name: $name) { count } }'),
    lookup('metricSeries.agentId', 'agentId', A.spy, 'query($agentId: ID) { metricSeries(name: "m", agentId: $agentId) { count } }'),
    lookup(
      'namespacesForAgent.agentId',
      'agentId',
      A.admin,
      'query($agentId: ID!) { namespacesForAgent(agentId: $agentId) { namespace } }',
    ),
    {
      name: 'grantAccess.agentId',
      field: 'agentId',
      run: (agentId) =>
        ask(A.admin, 'mutation($agentId: ID!) { grantAccess(input: { namespace: "shared", agentId: $agentId }) { agentId } }', {
          agentId,
        }),
    },
    lookup('revokeToken.id', 'id', A.admin, REVOKE_TOKEN),
    lookup('deregisterAgent.id', 'id', A.admin, DEREGISTER),
    {
      name: 'markInsightActedUpon.id',
      field: 'id',
      alsoAllowed: ['NOT_FOUND'],
      run: (id) => ask(A.admin, 'mutation($id: ID!) { markInsightActedUpon(id: $id) { id } }', { id }),
    },
  ];

  it('stores every entry argument literally or refuses it with BAD_USER_INPUT naming the field, and changes nothing else', async () => {
    const before = await stateOf(B.admin);
    const canary = (await gw.ok(A.admin, ENTRY, { ns: 'vault', key: 'plan' })).entry;
    const problems = await attack(entryTargets(), INJECTIONS);
    expect(problems).toEqual([]);

    expect((await gw.ok(A.admin, ENTRY, { ns: 'vault', key: 'plan' })).entry).toEqual(canary);
    expect(await stateOf(B.admin)).toEqual(before);
  });

  it('stores every fleet and admin string argument literally or refuses it with BAD_USER_INPUT naming the field', async () => {
    const before = await stateOf(B.admin);
    const canary = (await gw.ok(A.admin, ENTRY, { ns: 'vault', key: 'plan' })).entry;
    const problems = await attack(fleetTargets(), INJECTIONS);
    expect(problems).toEqual([]);

    expect((await gw.ok(A.admin, ENTRY, { ns: 'vault', key: 'plan' })).entry).toEqual(canary);
    expect(await stateOf(B.admin)).toEqual(before);
    for (const token of [A.reader.token, A.spy, A.insider, A.watcher]) expect(codeOf(await call(token, VIEWER))).toBeUndefined();
  });

  it('stores JSON with __proto__, constructor and SQL in keys and values as data, everywhere JSON is taken, and pollutes nothing', async () => {
    const problems: string[] = [];
    let n = 0;
    const check = async (
      name: string,
      query: string,
      variables: (value: unknown) => Record<string, unknown>,
      stored: (data: any) => unknown,
    ) => {
      for (const value of JSON_INJECTIONS) {
        const response = await call(A.insider, query, variables(value));
        if (response.errors) problems.push(`${name} ← ${canonical(value)}: ${JSON.stringify(response.errors[0])}`);
        else if (canonical(stored(response.data)) !== canonical(value)) {
          problems.push(`${name} ← ${canonical(value)}: stored as ${canonical(stored(response.data))}`);
        }
      }
    };
    await check(
      'setEntry.value',
      SET,
      (value) => ({ ns: 'vault', key: `json-${++n}`, value }),
      (data) => data.setEntry.value,
    );
    await check(
      'patchEntry.patch onto {}',
      'mutation($key: String!, $patch: JSON!) { patchEntry(input: { namespace: "vault", key: $key, patch: $patch }) { value } }',
      (value) => ({ key: `patched-${++n}`, patch: { wrapped: value } }),
      (data) => data.patchEntry.value.wrapped,
    );
    await check(
      'heartbeat.data',
      HEARTBEAT,
      (data) => ({ input: { status: 'IDLE', data } }),
      (data) => data.heartbeat.heartbeat,
    );
    await check(
      'addInsight.content',
      ADD_INSIGHT,
      (content) => ({ input: { type: 'json', content } }),
      (data) => data.addInsight.content,
    );
    await check(
      'recordOptimization.before',
      RECORD_OPTIMIZATION,
      (before) => ({ input: { type: 'json', success: true, before, after: [before] } }),
      (data) => data.recordOptimization.before,
    );
    const matched = await call(A.insider, 'query($match: JSON) { entries(namespace: "vault", match: $match) { nodes { key } } }', {
      match: JSON_INJECTIONS[0],
    });
    expect(matched.data?.entries.nodes.length).toBeGreaterThan(0);
    expect(problems).toEqual([]);
    // Nothing in this process (the gateway runs in it) picked up a property from those keys.
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  /** Sends each patch to updateConfig: every one must be BAD_USER_INPUT naming a field, and the config stays as it was. */
  async function expectUnknownSettings(patches: unknown[]): Promise<void> {
    const before = await stateOf(A.admin);
    for (const patch of patches) {
      const response = await call(A.admin, 'mutation($patch: JSON!) { updateConfig(patch: $patch) }', { patch });
      expect(codeOf(response), canonical(patch)).toBe('BAD_USER_INPUT');
      expect(response.errors?.[0]?.extensions?.field, canonical(patch)).toBeDefined();
    }
    expect(await stateOf(A.admin)).toEqual(before);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  }

  it('answers updateConfig with constructor, toString or SQL as a key as an unknown setting (BAD_USER_INPUT), and changes nothing', async () => {
    await expectUnknownSettings([
      { constructor: { prototype: { polluted: 'yes' } } },
      { limits: { constructor: { prototype: { polluted: 'yes' } } } },
      { toString: 1, hasOwnProperty: 1 },
      { "'; DROP TABLE tenants; --": 1 },
      { limits: { "maxDepth'; --": 1 } },
    ]);
  });

  it('refuses a __proto__ key in updateConfig (top level or inside limits) as BAD_USER_INPUT, not a silent no-op', async () => {
    await expectUnknownSettings([
      JSON.parse('{"__proto__": {"limits": {"maxDepth": 1}}}'),
      JSON.parse('{"limits": {"__proto__": {"maxDepth": 1}}}'),
    ]);
  });

  it('refuses U+0000 and lone surrogates in every string, JSON argument, filter, id and cursor with BAD_USER_INPUT naming the field, and never stores U+FFFD for them', async () => {
    const problems = await attack([...entryTargets(), ...fleetTargets()], UNSTORABLE);
    expect(problems).toEqual([]);
  });

  it('refuses a forged changes(after:) cursor whose revision is beyond bigint as BAD_USER_INPUT naming after', async () => {
    for (const revision of ['9223372036854775808', '9999999999999999999']) {
      const response = await gw.gql(A.spy, 'query($after: String) { changes(after: $after) { nodes { key } } }', {
        after: cursorOf([revision, 'common', 'global', 'k']),
      });
      expect(response.errors?.[0]?.extensions).toEqual({ code: 'BAD_USER_INPUT', field: 'after' });
    }
  });

  it('answers every string argument of entryChanged over WebSocket with the subscription or BAD_USER_INPUT naming it', async () => {
    const socket = await openRawSocket(gw.wsUrl);
    socket.send({ type: 'connection_init', payload: { authorization: `Bearer ${A.spy}` } });
    expect(await socket.waitFor((frame) => frame.type === 'connection_ack')).not.toBeNull();
    const sent: { id: string; field: string; variable: string; value: string; mustRefuse: boolean }[] = [];
    for (const [field, variable, rule] of [
      ['keyPrefix', 'prefix', keyRule],
      ['scope', 'scope', (value: string) => SCOPE_RULE.test(value)],
      ['namespace', 'ns', (value: string) => NAMESPACE_RULE.test(value)],
    ] as const) {
      for (const value of [...INJECTIONS, ...UNSTORABLE]) {
        const id = `${field}-${sent.length}`;
        // An empty string is no filter at all, so it need not be refused.
        sent.push({ id, field, variable, value, mustRefuse: value !== '' && !rule(value) });
        socket.send({ id, type: 'subscribe', payload: { query: ENTRY_CHANGED, variables: { [variable]: value } } });
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    const problems: string[] = [];
    if (!socket.isOpen()) problems.push(`the socket closed: ${JSON.stringify(await socket.closed)}`);
    for (const { id, field, variable, value, mustRefuse } of sent) {
      const label = `${field} ← ${short(value)}`;
      const answers = socket.frames.filter((frame) => frame.id === id);
      const errors = answers.flatMap((frame) => (frame.type === 'error' ? frame.payload : (frame.payload?.errors ?? [])));
      for (const problem of errorProblems(errors, JSON.stringify(value))) problems.push(`${label}: ${problem}`);
      const error = errors[0];
      const named = error?.extensions?.code === 'BAD_USER_INPUT' && [field, variable].includes(error.extensions.field);
      // A well-formed name of a namespace the agent may not read is FORBIDDEN, as for any other.
      const forbiddenName = field === 'namespace' && error?.extensions?.code === 'FORBIDDEN' && NAMESPACE_RULE.test(value);
      if (error && !named && !forbiddenName) problems.push(`${label}: refused with ${JSON.stringify(error.extensions)}`);
      if (mustRefuse && !error) problems.push(`${label}: accepted, but the contract refuses it`);
    }
    socket.close();
    expect(problems).toEqual([]);
  });

  it('matches % and _ in prefixes and keyPrefix literally', async () => {
    await gw.createNamespace('literal');
    const start = await adminSet(A.admin, 'literal', 'start', 0);
    const client = gw.ws(A.admin);
    const percent = subscribe(client, ENTRY_CHANGED, { ns: 'literal', prefix: 'lit%', after: start });
    const underscore = subscribe(client, ENTRY_CHANGED, { prefix: 'lit_', after: start });
    for (const key of ['lit%x', 'litAx', 'lit_y', 'litBy', 'lit\\z', 'lit\\\\z', 'lit', '%', '_'])
      await adminSet(A.admin, 'literal', key, key);
    const list = async (prefix: string) =>
      (
        await gw.ok(A.admin, 'query($prefix: String) { entries(namespace: "literal", prefix: $prefix) { nodes { key } } }', { prefix })
      ).entries.nodes.map((node: { key: string }) => node.key);
    expect(await list('lit%')).toEqual(['lit%x']);
    expect(await list('lit_')).toEqual(['lit_y']);
    expect(await list('lit\\')).toEqual(['lit\\\\z', 'lit\\z']);
    expect(await list('%')).toEqual(['%']);
    expect(await list('_')).toEqual(['_']);
    await adminSet(A.admin, 'literal', 'lit%-marker', 1);
    await adminSet(A.admin, 'literal', 'lit_-marker', 1);
    const keysOf = (sub: typeof percent) => sub.results.map((result) => result.data?.entryChanged?.key);
    await eventually(() => keysOf(percent).includes('lit%-marker') && keysOf(underscore).includes('lit_-marker'), 10_000, 'the markers');
    expect(keysOf(percent)).toEqual(['lit%x', 'lit%-marker']);
    expect(keysOf(underscore)).toEqual(['lit_y', 'lit_-marker']);
    percent.stop();
    underscore.stop();
    await client.dispose();
  });
});

describe('a socket with a bad subscribe on it', () => {
  /** A socket of the admin's with a live subscription on `common`, which must outlive whatever else is sent on it. */
  async function expectSocketSurvives(payload: Record<string, unknown>): Promise<void> {
    const socket = await openRawSocket(gw.wsUrl);
    try {
      socket.send({ type: 'connection_init', payload: { authorization: `Bearer ${A.admin}` } });
      expect(await socket.waitFor((frame) => frame.type === 'connection_ack')).not.toBeNull();
      const start = await adminSet(A.admin, 'common', mark('socket-start'), 0);
      socket.send({ id: 'watch', type: 'subscribe', payload: { query: ENTRY_CHANGED, variables: { ns: 'common', after: start } } });
      const warmup = mark('warmup');
      await adminSet(A.admin, 'common', warmup, 0);
      expect(await socket.waitFor((frame) => frame.payload?.data?.entryChanged?.key === warmup)).not.toBeNull();

      socket.send({ id: 'bad', type: 'subscribe', payload });
      const answer = await socket.waitFor((frame) => frame.id === 'bad');
      const errors = answer?.type === 'error' ? answer.payload : answer?.payload?.errors;
      expect(errors?.[0]?.extensions?.code, JSON.stringify({ answer, closed: socket.isOpen() ? null : await socket.closed })).toBe(
        'BAD_USER_INPUT',
      );
      expect(errorProblems(errors, JSON.stringify(payload))).toEqual([]);
      const later = mark('later');
      await adminSet(A.admin, 'common', later, 1);
      expect(await socket.waitFor((frame) => frame.payload?.data?.entryChanged?.key === later)).not.toBeNull();
      expect(socket.isOpen()).toBe(true);
    } finally {
      socket.close();
    }
  }

  it.each([
    ['an unknown field', { query: 'subscription { entryChanged { nope } }' }],
    ['two root fields', { query: 'subscription { entryChanged { key } agentChanged { id } }' }],
    ['a variable of the wrong type', { query: ENTRY_CHANGED, variables: { after: 'not a revision' } }],
    ['a key prefix with a control character', { query: ENTRY_CHANGED, variables: { prefix: 'a\u0001' } }],
  ])('answers %s with BAD_USER_INPUT and keeps the socket and its other subscriptions', async (_what, payload) => {
    await expectSocketSurvives(payload);
  });

  it('answers a subscribe whose query does not parse with BAD_USER_INPUT and keeps the socket', async () => {
    await expectSocketSurvives({ query: 'subscription { entryChanged { key ' });
  });
});

describe('races and odd values', () => {
  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
  /** What `promise` answered, or 'no answer' after `ms`. */
  const answerWithin = (promise: Promise<GraphQLResponse>, ms: number) =>
    Promise.race([promise.then((response) => codeOf(response) ?? 'ok'), sleep(ms).then(() => 'no answer')]);
  const AUDIT = 'query($outcome: AuditOutcome) { auditLog(outcome: $outcome, first: 1000) { actor action target outcome } }';

  it("records a tenant's denied attempts in its own audit log only, never in another tenant's", async () => {
    const evidence = mark('evidence');
    await refused('FORBIDDEN', B.reader, SET, { ns: 'vault', key: evidence, value: 1 });
    // The audit log is written in batches after the response.
    await eventually(
      async () => JSON.stringify((await gw.ok(B.admin, AUDIT, { outcome: 'DENIED' })).auditLog).includes(`vault/global/${evidence}`),
      10_000,
      'the denied attempt in the audit log',
    );
    const own = await gw.ok(B.admin, AUDIT, { outcome: 'DENIED' });
    expect(own.auditLog).toContainEqual(
      expect.objectContaining({ action: 'setEntry', outcome: 'DENIED', target: `vault/global/${evidence}` }),
    );
    expect(JSON.stringify((await gw.ok(A.admin, AUDIT, {})).auditLog)).not.toContain(evidence);
    for (const token of [B.reader, B.spy, A.spy]) await refused('FORBIDDEN', token, AUDIT, {});
  });

  it('writes the audit batch beside a request whose target holds U+0000 or a lone surrogate, so no one can erase the trail of what they do beside it', async () => {
    const evidence: string[] = [];
    for (let round = 0; round < 5; round++) {
      const key = mark('evidence');
      evidence.push(key);
      await Promise.all([
        gw.gql(B.reader, SET, { ns: 'vault', key, value: 1 }),
        gw.gql(A.spy, 'mutation($key: String!) { deleteEntry(input: { namespace: "vault", key: $key }) }', { key: `\u0000${round}` }),
        gw.gql(A.spy, 'mutation($key: String!) { deleteEntry(input: { namespace: "vault", key: $key }) }', { key: `\ud800${round}` }),
      ]);
    }
    const targets = async () =>
      (await gw.ok(B.admin, AUDIT, { outcome: 'DENIED' })).auditLog.map((event: { target: string }) => event.target) as string[];
    await eventually(
      async () => (await targets()).filter((target) => evidence.some((key) => target === `vault/global/${key}`)).length === evidence.length,
      10_000,
      'every round in the audit log',
    );
    const written = await targets();
    for (const key of evidence) expect(written).toContain(`vault/global/${key}`);
  });

  it('completes a commit while another request changes access settings (updateNamespace, createNamespace, grants…), on PGlite too, where reading the limits outside the transaction deadlocked the embedded database', async () => {
    const own = await startGateway();
    try {
      const answers: unknown[] = [];
      for (let round = 0; round < 10; round++) {
        answers.push(
          await Promise.all([
            answerWithin(
              own.gql(ADMIN_TOKEN, `mutation { updateNamespace(input: { name: "common", description: "round ${round}" }) { name } }`),
              5_000,
            ),
            answerWithin(
              own.gql(
                ADMIN_TOKEN,
                'mutation { commit(input: { operations: [{ set: { namespace: "common", key: "c", value: 1 } }] }) { revision } }',
              ),
              5_000,
            ),
          ]),
        );
      }
      expect(answers).toEqual(Array.from({ length: 10 }, () => ['ok', 'ok']));
      expect(await answerWithin(own.gql(ADMIN_TOKEN, '{ entries(namespace: "common") { nodes { key } } }'), 5_000)).toBe('ok');
    } finally {
      void own.close().catch(() => {});
    }
  });

  it('answers a write racing deleteNamespace of its namespace with success or NOT_FOUND, never an internal error', async () => {
    const seen = new Set<string>();
    for (let round = 0; round < 10; round++) {
      const ns = mark('doomed');
      await gw.createNamespace(ns);
      const results = await Promise.all([
        gw.gql(A.admin, 'mutation($ns: String!) { deleteNamespace(name: $ns) }', { ns }),
        gw.gql(A.admin, SET, { ns, key: 'k', value: 1 }),
        gw.gql(A.admin, 'mutation($ns: String!) { incrementEntry(input: { namespace: $ns, key: "n" }) { version } }', { ns }),
        gw.gql(A.admin, 'mutation($ns: String!) { patchEntry(input: { namespace: $ns, key: "p", patch: { a: 1 } }) { version } }', {
          ns,
        }),
      ]);
      for (const result of results.slice(1)) seen.add(String(codeOf(result) ?? 'ok'));
    }
    expect([...seen].filter((code) => !['ok', 'NOT_FOUND'].includes(code))).toEqual([]);
  });

  it('refuses a JSON number beyond double range (1e309) with BAD_USER_INPUT naming the field, instead of storing null or deleting the patched field', async () => {
    const before = await world();
    for (const [query, field] of [
      ['mutation { setEntry(input: { namespace: "common", key: "infinite", value: 1e309 }) { value } }', 'value'],
      ['mutation { setEntry(input: { namespace: "common", key: "infinite", value: { a: -1e309 } }) { value } }', 'value'],
      ['mutation { patchEntry(input: { namespace: "common", key: "plan", patch: { common: 1e309 } }) { value } }', 'patch'],
      ['mutation { updateSystemState(patch: 1e309) }', 'patch'],
      ['mutation { updateSystemState(patch: { a: 1e309 }) }', 'patch'],
    ] as const) {
      const response = await call(A.admin, query);
      expect(response.errors?.[0]?.extensions, query).toEqual({ code: 'BAD_USER_INPUT', field });
    }
    expect(await world()).toEqual(before);
  });

  it('answers a subscription inside a batched HTTP request with an error carrying a contract code, not an empty {}', async () => {
    const response = await gw.app.fetch('http://localhost/graphql', {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${A.admin}` },
      body: JSON.stringify([{ query: 'subscription { entryChanged { key } }' }, { query: '{ viewer { role } }' }]),
    });
    const [subscription, query] = (await response.json()) as GraphQLResponse[];
    expect(subscription?.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    expect(query?.data).toEqual({ viewer: { role: 'ADMIN' } });
  });
});
