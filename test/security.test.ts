/**
 * The security features of issue 7 through the public surface (API.md §2, §3 and §5 Config, Limits,
 * Sensitive namespaces, Audit log): per-tenant query, body, batch and socket limits, rate limits,
 * quotas, introspection and GraphiQL switches, sealed sensitive namespaces, key rotation, and the
 * audit log. Every test that changes settings does so in a tenant of its own.
 */
import { randomBytes } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { buildSchema, getIntrospectionQuery, parse, validate } from 'graphql';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../src/app.js';
import { leakIn } from './support/leaks.js';
import { openSse } from './support/sse.js';
import { openRawSocket, type RawSocket } from './support/raw-socket.js';
import { ADMIN_TOKEN, eventually, type Gateway, type GraphQLResponse, startGateway, subscribe } from './support/gateway.js';

const KEY = randomBytes(32).toString('hex');

/** Sealing gateway (introspection and GraphiQL on), and one without a key with both turned off. */
let gw: Gateway;
let plain: Gateway;
beforeAll(async () => {
  [gw, plain] = await Promise.all([
    startGateway({ app: { encryptionKey: KEY } }),
    startGateway({ app: { introspection: false, graphiql: false } }),
  ]);
});
afterAll(async () => {
  await Promise.all([gw?.close(), plain?.close()]);
});

let counter = 0;
/** A fresh name, valid as a tenant, namespace, agent id, key or token name. */
const unique = (label: string) => `${label}-${(++counter).toString(36)}-${Math.random().toString(36).slice(2, 8)}`;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
/** A moment strictly after everything recorded so far, for `auditLog(since:)`. */
async function now(): Promise<string> {
  await sleep(5);
  const at = new Date().toISOString();
  await sleep(5);
  return at;
}

const codesOf = (result: { errors?: { extensions?: Record<string, unknown> }[] }) =>
  (result.errors ?? []).map((error) => error.extensions?.code);

/** The one error of `result`, which must carry `code` (and name `field` when given). */
function expectError(result: GraphQLResponse, code: string, field?: string): NonNullable<GraphQLResponse['errors']>[number] {
  const error = result.errors?.[0];
  if (error?.extensions?.code !== code || (field !== undefined && error.extensions.field !== field)) {
    throw new Error(`expected ${code}${field ? ` naming ${field}` : ''}, got ${JSON.stringify(result)}`);
  }
  return error;
}

const SET_CONFIG = 'mutation($patch: JSON!) { updateConfig(patch: $patch) }';
const SET =
  'mutation($ns: String!, $key: String!, $value: JSON!) { setEntry(input: { namespace: $ns, key: $key, value: $value }) { key value version } }';
const ENTRY = 'query($ns: String!, $key: String!) { entry(namespace: $ns, key: $key) { key value version } }';
const COMMIT = 'mutation($ops: [OperationInput!]!) { commit(input: { operations: $ops }) { revision entries { key value } } }';

/** A tenant of its own (with `config` patched in) and its admin token. */
async function newTenant(label: string, config?: Record<string, unknown>, on: Gateway = gw): Promise<string> {
  const data = await on.ok(ADMIN_TOKEN, 'mutation($name: String!) { createTenant(name: $name) { token } }', { name: unique(label) });
  const admin = data.createTenant.token as string;
  if (config) await on.ok(admin, SET_CONFIG, { patch: config });
  return admin;
}

async function addNamespace(admin: string, name: string, settings: Record<string, unknown> = {}, on: Gateway = gw): Promise<void> {
  await on.ok(admin, 'mutation($input: CreateNamespaceInput!) { createNamespace(input: $input) { name } }', {
    input: { name, ...settings },
  });
}

async function addAgent(admin: string, id: string, stateNamespaces: string[] = []): Promise<string> {
  const data = await gw.ok(admin, 'mutation($input: RegisterAgentInput!) { registerAgent(input: $input) { token } }', {
    input: { id, name: id, type: 'worker', stateNamespaces },
  });
  return data.registerAgent.token as string;
}

async function addToken(admin: string, name: string, role: 'ADMIN' | 'READER' = 'READER'): Promise<string> {
  const data = await gw.ok(admin, 'mutation($input: CreateTokenInput!) { createToken(input: $input) { token } }', {
    input: { name, role },
  });
  return data.createToken.token as string;
}

async function entryValue(token: string, ns: string, key: string): Promise<unknown> {
  const data = await gw.ok(token, ENTRY, { ns, key });
  return data.entry?.value ?? null;
}

/** POST /graphql over a real socket with any body. */
async function postRaw(url: string, token: string | null, body: string | unknown[], headers: Record<string, string> = {}) {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token === null ? {} : { authorization: `Bearer ${token}` }), ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: response.status, body: (await response.json()) as any };
}

async function expectHealthy(on: Gateway = gw): Promise<void> {
  expect((await fetch(on.url.replace('/graphql', '/health'))).status).toBe(200);
  expect((await on.ok(ADMIN_TOKEN, '{ viewer { role } }')).viewer.role).toBe('ADMIN');
}

describe('query limits', () => {
  it('refuses a query deeper than the tenant maxDepth with QUERY_TOO_COMPLEX, and exempts the full introspection query', async () => {
    const admin = await newTenant('depth', { limits: { maxDepth: 2 } });
    const deep = '{ viewer { namespaces { namespace } } }';
    expect((await gw.ok(ADMIN_TOKEN, deep)).viewer.namespaces.length).toBeGreaterThan(0);
    const refused = await gw.gql(admin, deep);
    expectError(refused, 'QUERY_TOO_COMPLEX');
    expect(refused.data ?? null).toBeNull();
    expect((await gw.ok(admin, '{ viewer { role } }')).viewer.role).toBe('ADMIN');

    // GraphiQL's introspection query nests ofType far deeper than 12, let alone 2.
    for (const token of [ADMIN_TOKEN, admin]) {
      const schema = await gw.ok(token, getIntrospectionQuery());
      expect(schema.__schema.queryType.name).toBe('Query');
    }
  });

  it('refuses more aliases than maxAliases (30 by default, per tenant when set)', async () => {
    const aliased = (n: number) => `{ ${Array.from({ length: n }, (_, i) => `a${i}: viewer { role }`).join(' ')} }`;
    expect(Object.keys(await gw.ok(ADMIN_TOKEN, aliased(30)))).toHaveLength(30);
    expectError(await gw.gql(ADMIN_TOKEN, aliased(31)), 'QUERY_TOO_COMPLEX');

    const admin = await newTenant('aliases', { limits: { maxAliases: 2 } });
    expectError(await gw.gql(admin, aliased(3)), 'QUERY_TOO_COMPLEX');
    expect(Object.keys(await gw.ok(admin, aliased(2)))).toHaveLength(2);
    // The same document stays within the default tenant's limit: verdicts are per tenant.
    expect(Object.keys(await gw.ok(ADMIN_TOKEN, aliased(3)))).toHaveLength(3);
  });

  it('refuses a query over maxCost, without counting page sizes', async () => {
    // Each fragment spreads the one before it twice: the cost triples at every level.
    const levels = Array.from({ length: 10 }, (_, i) => `fragment F${i + 1} on Query { ...F${i} ...F${i} }`);
    const fragmentBomb = `{ ...F10 } fragment F0 on Query { namespaces { name grants { agentId } } } ${levels.join(' ')}`;
    expectError(await gw.gql(ADMIN_TOKEN, fragmentBomb), 'QUERY_TOO_COMPLEX');
    // So many copies of one field that graphql-js gives up checking that they merge.
    const repeated = `{ ${'viewer { role namespaces { namespace permission } } '.repeat(1_000)} }`;
    expectError(await gw.gql(ADMIN_TOKEN, repeated), 'QUERY_TOO_COMPLEX');
    // The contract's own largest page is within the default cost.
    const page = await gw.ok(ADMIN_TOKEN, '{ changes(first: 1000) { nodes { key value } pageInfo { endCursor } } }');
    expect(Array.isArray(page.changes.nodes)).toBe(true);

    const admin = await newTenant('cost', { limits: { maxCost: 5 } });
    const modest = '{ viewer { role namespaces { namespace permission } } }';
    expectError(await gw.gql(admin, modest), 'QUERY_TOO_COMPLEX');
    await gw.ok(ADMIN_TOKEN, modest);
    await expectHealthy();
  });

  it('answers a query graphql-js gives up validating with QUERY_TOO_COMPLEX every time, leaving its shared "Validation aborted." error unchanged', async () => {
    // Not the document of the test above, which Yoga has cached by now.
    const repeated = `{ ${'viewer { role namespaces { namespace permission } } '.repeat(1_001)} }`;
    // graphql-js answers every aborted validation with one and the same error object.
    const shape = buildSchema(
      'type Query { viewer: V } type V { role: String namespaces: [N] } type N { namespace: String permission: String }',
    );
    const [aborted] = validate(shape, parse(repeated));
    expect(aborted?.message).toBe('Validation aborted.');
    // The second time, Yoga answers from its validation cache.
    for (let i = 0; i < 2; i++) expectError(await gw.gql(ADMIN_TOKEN, repeated), 'QUERY_TOO_COMPLEX');
    expect(validate(shape, parse(repeated))).toEqual([aborted]);
    expect(aborted?.extensions).toEqual({});
  });

  it('answers a batched HTTP request of more than maxBatchOperations with QUERY_TOO_COMPLEX and HTTP 400', async () => {
    const batch = (n: number) => Array.from({ length: n }, () => ({ query: '{ viewer { role } }' }));
    const within = await postRaw(gw.url, ADMIN_TOKEN, batch(20));
    expect(within.status).toBe(200);
    expect(within.body).toHaveLength(20);
    const over = await postRaw(gw.url, ADMIN_TOKEN, batch(21));
    expect(over.status).toBe(400);
    expect(codesOf(over.body)).toEqual(['QUERY_TOO_COMPLEX']);

    const admin = await newTenant('batch', { limits: { maxBatchOperations: 2 } });
    expect((await postRaw(gw.url, admin, batch(3))).status).toBe(400);
    expect((await postRaw(gw.url, admin, batch(2))).body).toHaveLength(2);
    await expectHealthy();
  });
});

describe('request and value sizes', () => {
  const bigValueBody = (ns: string, key: string, bytes: number) =>
    JSON.stringify({ query: SET, variables: { ns, key, value: 'x'.repeat(bytes) } });

  it('answers a body announced over twice maxValueBytes with HTTP 413 PAYLOAD_TOO_LARGE, and writes nothing', async () => {
    const key = unique('huge');
    const over = await postRaw(gw.url, ADMIN_TOKEN, bigValueBody('common', key, 2 * 1_048_576 + 100));
    expect(over.status).toBe(413);
    expect(codesOf(over.body)).toEqual(['PAYLOAD_TOO_LARGE']);
    expect(await entryValue(ADMIN_TOKEN, 'common', key)).toBeNull();
    await expectHealthy();
  });

  it('measures a chunked body without a Content-Length as it arrives', async () => {
    const chunked = (text: string) => {
      const bytes = new TextEncoder().encode(text);
      return new ReadableStream<Uint8Array>({
        start(controller) {
          for (let at = 0; at < bytes.length; at += 64 * 1024) controller.enqueue(bytes.subarray(at, at + 64 * 1024));
          controller.close();
        },
      });
    };
    const send = (text: string) =>
      gw.app.fetch('http://localhost/graphql', {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${ADMIN_TOKEN}` },
        body: chunked(text),
        duplex: 'half',
      } as RequestInit);
    const key = unique('chunked');
    const over = await send(bigValueBody('common', key, 2 * 1_048_576 + 100));
    expect(over.status).toBe(413);
    expect(codesOf((await over.json()) as any)).toEqual(['PAYLOAD_TOO_LARGE']);
    expect(await entryValue(ADMIN_TOKEN, 'common', key)).toBeNull();

    const small = await send(bigValueBody('common', key, 10));
    expect(small.status).toBe(200);
    expect(((await small.json()) as any).data.setEntry.version).toBe(1);
  });

  it("answers a value over the tenant's maxValueBytes with PAYLOAD_TOO_LARGE naming value, on setEntry and commit", async () => {
    const over = await gw.gql(ADMIN_TOKEN, SET, { ns: 'common', key: unique('mib'), value: 'x'.repeat(1_048_576) });
    expectError(over, 'PAYLOAD_TOO_LARGE', 'value');

    const admin = await newTenant('values', { limits: { maxValueBytes: 1000 } });
    const key = unique('k');
    expectError(await gw.gql(admin, SET, { ns: 'common', key, value: 'x'.repeat(1000) }), 'PAYLOAD_TOO_LARGE', 'value');
    const commit = await gw.gql(admin, COMMIT, { ops: [{ set: { namespace: 'common', key, value: 'x'.repeat(1000) } }] });
    expect(codesOf(commit)).toEqual(['PAYLOAD_TOO_LARGE']);
    expect(await entryValue(admin, 'common', key)).toBeNull();
    await gw.ok(admin, SET, { ns: 'common', key, value: 'x'.repeat(900) });
  });

  it("refuses a commit of more than the tenant's maxCommitOperations with BAD_USER_INPUT naming operations", async () => {
    const admin = await newTenant('commits', { limits: { maxCommitOperations: 3 } });
    const ops = (n: number) => Array.from({ length: n }, (_, i) => ({ set: { namespace: 'common', key: `op${i}`, value: i } }));
    expectError(await gw.gql(admin, COMMIT, { ops: ops(4) }), 'BAD_USER_INPUT', 'operations');
    expect(await entryValue(admin, 'common', 'op0')).toBeNull();
    expect((await gw.ok(admin, COMMIT, { ops: ops(3) })).commit.entries).toHaveLength(3);
  });

  it('fills in the socket limits in config and validates them in updateConfig', async () => {
    const admin = await newTenant('config');
    const { config } = await gw.ok(admin, '{ config }');
    expect(config.limits).toMatchObject({ maxConnectionsPerToken: 2000, maxSubscriptionsPerSocket: 100 });
    expectError(await gw.gql(admin, SET_CONFIG, { patch: { limits: { maxSubscriptionsPerSocket: 'many' } } }), 'BAD_USER_INPUT');
    const updated = await gw.ok(admin, SET_CONFIG, { patch: { limits: { maxConnectionsPerToken: 7 } } });
    expect(updated.updateConfig.limits).toMatchObject({ maxConnectionsPerToken: 7, maxSubscriptionsPerSocket: 100 });
  });
});

describe('rate limits and quotas', () => {
  it("refuses a token's operations beyond perTokenPerSecond with RATE_LIMITED and a retry hint, and no other token's", async () => {
    const admin = await newTenant('rate', { rateLimit: { perTokenPerSecond: 5 } });
    const [busy, quiet] = await Promise.all([addToken(admin, 'busy'), addToken(admin, 'quiet')]);
    const results = await Promise.all(Array.from({ length: 15 }, () => gw.gql(busy, '{ viewer { role } }')));
    const refused = results.filter((result) => codesOf(result).includes('RATE_LIMITED'));
    const served = results.filter((result) => result.data?.viewer?.role === 'READER');
    expect(served.length + refused.length, JSON.stringify(results.filter((r) => !refused.includes(r) && !served.includes(r)))).toBe(15);
    expect(served.length).toBeGreaterThanOrEqual(5);
    expect(served.length).toBeLessThanOrEqual(7);
    const retryAfter = refused.map((result) => result.errors?.[0]?.extensions?.retryAfterMs as number);
    for (const ms of retryAfter) expect(ms).toBeGreaterThan(0);
    expect(Math.max(...retryAfter)).toBeLessThanOrEqual(1_000);

    expect((await gw.ok(quiet, '{ viewer { role } }')).viewer.role).toBe('READER');
    await new Promise((resolve) => setTimeout(resolve, Math.max(...retryAfter) + 50));
    expect((await gw.ok(busy, '{ viewer { role } }')).viewer.role).toBe('READER');
  });

  it('refuses writes past maxEntries with QUOTA_EXCEEDED on every writer, still updates existing keys, and changes nothing', async () => {
    const admin = await newTenant('entries-quota', { quotas: { maxEntries: 3 } });
    await addNamespace(admin, 'q');
    for (const key of ['a', 'b', 'c']) await gw.ok(admin, SET, { ns: 'q', key, value: key });
    const { changes: before } = await gw.ok(admin, '{ changes(first: 1000) { nodes { revision } } }');

    expectError(await gw.gql(admin, SET, { ns: 'q', key: 'd', value: 'd' }), 'QUOTA_EXCEEDED');
    expectError(await gw.gql(admin, COMMIT, { ops: [{ set: { namespace: 'q', key: 'd', value: 'd' } }] }), 'QUOTA_EXCEEDED');
    expectError(
      await gw.gql(admin, 'mutation { patchEntry(input: { namespace: "q", key: "d", patch: { a: 1 } }) { version } }'),
      'QUOTA_EXCEEDED',
    );
    expectError(await gw.gql(admin, 'mutation { incrementEntry(input: { namespace: "q", key: "d" }) { version } }'), 'QUOTA_EXCEEDED');
    const data = {
      format: (await gw.ok(admin, '{ exportState(namespaces: ["q"]) }')).exportState.format,
      version: 1,
      namespaces: [{ name: 'q', entries: [{ scope: 'global', key: 'd', value: 'd' }] }],
    };
    expectError(await gw.gql(admin, 'mutation($data: JSON!) { importState(data: $data) }', { data }), 'QUOTA_EXCEEDED');
    expect(await entryValue(admin, 'q', 'd')).toBeNull();
    expect((await gw.ok(admin, '{ changes(first: 1000) { nodes { revision } } }')).changes.nodes).toHaveLength(before.nodes.length);

    // At the quota, existing keys still change, and a commit that deletes one entry may add another.
    expect((await gw.ok(admin, SET, { ns: 'q', key: 'a', value: 'again' })).setEntry.version).toBe(2);
    await gw.ok(admin, COMMIT, { ops: [{ delete: { namespace: 'q', key: 'c' } }, { set: { namespace: 'q', key: 'd', value: 'd' } }] });
    expect(await entryValue(admin, 'q', 'd')).toBe('d');
  });

  it('refuses a write that would pass maxBytes with QUOTA_EXCEEDED, while a same-size update passes', async () => {
    const admin = await newTenant('bytes-quota', { quotas: { maxBytes: 2_000 } });
    await gw.ok(admin, SET, { ns: 'common', key: 'one', value: 'x'.repeat(1_500) });
    expectError(await gw.gql(admin, SET, { ns: 'common', key: 'two', value: 'y'.repeat(1_000) }), 'QUOTA_EXCEEDED');
    expect(await entryValue(admin, 'common', 'two')).toBeNull();
    expect((await gw.ok(admin, SET, { ns: 'common', key: 'one', value: 'z'.repeat(1_500) })).setEntry.version).toBe(2);
    await gw.ok(admin, SET, { ns: 'common', key: 'two', value: 'small' });
  });
});

describe('WebSocket limits', () => {
  const ENTRY_CHANGED = 'subscription($ns: String) { entryChanged(namespace: $ns) { key } }';
  const sockets: RawSocket[] = [];
  afterAll(() => {
    for (const socket of sockets) socket.close();
  });

  /** A raw graphql-transport-ws socket, acknowledged for `token` (or closed: see `closed`). */
  async function connect(token: string, on: Gateway = gw): Promise<RawSocket & { acked: boolean }> {
    const socket = await openRawSocket(on.wsUrl);
    sockets.push(socket);
    socket.send({ type: 'connection_init', payload: { authorization: `Bearer ${token}` } });
    const ack = await socket.waitFor((frame) => frame.type === 'connection_ack');
    return Object.assign(socket, { acked: ack !== null });
  }

  const nextIds = (socket: RawSocket) => new Set(socket.frames.filter((frame) => frame.type === 'next').map((frame) => frame.id));
  const errorFrames = (socket: RawSocket) => socket.frames.filter((frame) => frame.type === 'error');

  it('closes a socket that sends no connection_init within 3 s with 4408', async () => {
    const socket = await openRawSocket(gw.wsUrl);
    sockets.push(socket);
    const started = Date.now();
    const closed = await socket.closed;
    expect(closed.code).toBe(4408);
    expect(Date.now() - started).toBeGreaterThanOrEqual(2_500);
    expect(Date.now() - started).toBeLessThan(6_000);
  });

  it("closes a token's socket beyond maxConnectionsPerToken with 4429, and admits one again when another closes", async () => {
    const admin = await newTenant('sockets', { limits: { maxConnectionsPerToken: 2 } });
    const [reader, other] = await Promise.all([addToken(admin, 'many'), addToken(admin, 'other')]);
    const first = await connect(reader);
    const second = await connect(reader);
    expect([first.acked, second.acked]).toEqual([true, true]);
    const third = await connect(reader);
    expect(third.acked).toBe(false);
    expect((await third.closed).code).toBe(4429);
    expect((await connect(other)).acked).toBe(true);

    first.close();
    await first.closed;
    await eventually(
      async () => {
        const again = await connect(reader);
        if (!again.acked) return false;
        again.close();
        return true;
      },
      5_000,
      'a socket admitted after another closed',
    );
  });

  it('refuses subscriptions beyond maxSubscriptionsPerSocket on one socket with RATE_LIMITED, and frees a slot on complete', async () => {
    const admin = await newTenant('subs', { limits: { maxSubscriptionsPerSocket: 3 } });
    const socket = await connect(admin);
    const subscribeTo = (id: string) =>
      socket.send({ id, type: 'subscribe', payload: { query: ENTRY_CHANGED, variables: { ns: 'common' } } });
    // A subscription is live once it has seen a write: write until the ones awaited have.
    let writes = 0;
    const liveOnceWritten = (live: () => boolean, what: string) =>
      eventually(
        async () => {
          await gw.ok(admin, SET, { ns: 'common', key: 'k', value: ++writes });
          return live();
        },
        5_000,
        what,
      );
    for (const id of ['1', '2', '3']) subscribeTo(id);
    await liveOnceWritten(() => nextIds(socket).size === 3, 'three live subscriptions');
    subscribeTo('4');
    const refused = await socket.waitFor((frame) => frame.type === 'error');
    expect(refused?.id).toBe('4');
    expect(refused?.payload?.[0]?.extensions?.code).toBe('RATE_LIMITED');
    expect([...nextIds(socket)].sort()).toEqual(['1', '2', '3']);

    socket.send({ id: '1', type: 'complete' });
    subscribeTo('5');
    await liveOnceWritten(() => nextIds(socket).has('5'), 'the subscription that took the freed slot');
    expect(errorFrames(socket)).toHaveLength(1);
  });

  it('keeps at most 100 of 10,000 subscriptions attempted from one token on one socket, and stays healthy', async () => {
    const admin = await newTenant('flood');
    const agent = await addAgent(admin, unique('flooder'), []);
    const socket = await connect(agent);
    const attempts = 10_000;
    for (let i = 0; i < attempts; i++) {
      socket.send({ id: `s${i}`, type: 'subscribe', payload: { query: ENTRY_CHANGED, variables: { ns: 'common' } } });
    }
    // Every attempt is refused or live: refusals arrive as error frames, the live ones see a write.
    await eventually(() => errorFrames(socket).length >= attempts - 100, 30_000, 'refusals of the attempts beyond the limit');
    const refused = errorFrames(socket);
    const live = attempts - refused.length;
    // A live one may attach after a write: write again until every one has seen a write.
    let writes = 0;
    await eventually(
      async () => {
        await gw.ok(admin, SET, { ns: 'common', key: 'flood', value: ++writes });
        return nextIds(socket).size === live;
      },
      10_000,
      `${live} live subscriptions to see a write`,
    );
    // Exactly the limit: a burst is neither let past it nor refused wholesale.
    expect(live).toBe(100);
    expect(new Set(refused.map((frame) => frame.payload?.[0]?.extensions?.code))).toEqual(new Set(['RATE_LIMITED']));
    expect(socket.isOpen()).toBe(true);
    socket.close();
    await expectHealthy();
  });
});

describe('introspection and GraphiQL switches', () => {
  it('refuses __schema and __type when introspection is off, and answers them when on', async () => {
    for (const query of ['{ __schema { queryType { name } } }', '{ __type(name: "Query") { name } }']) {
      const refused = await plain.gql(ADMIN_TOKEN, query);
      expect(refused.errors?.length).toBeGreaterThan(0);
      expect(refused.data ?? null).toBeNull();
      expect(JSON.stringify((await gw.ok(ADMIN_TOKEN, query)) ?? null)).toContain('Query');
    }
    expect((await plain.ok(ADMIN_TOKEN, '{ viewer { role } }')).viewer.role).toBe('ADMIN');
  });

  it('serves no GraphiQL page to a browser when GraphiQL is off', async () => {
    const page = (on: Gateway) => fetch(on.url, { headers: { accept: 'text/html' } });
    const on = await page(gw);
    expect(on.headers.get('content-type')).toMatch(/text\/html/);
    expect(await on.text()).toMatch(/graphiql/i);
    const off = await page(plain);
    expect(off.headers.get('content-type') ?? '').not.toMatch(/text\/html/);
    expect(await off.text()).not.toMatch(/graphiql/i);
  });
});

describe('sensitive namespaces', () => {
  /** One operation that reads a key's value every way a query can. */
  const EVERY_READ = `query($ns: String!, $key: String!) {
    entry(namespace: $ns, key: $key) { value }
    absent: entry(namespace: $ns, key: "absent") { value version }
    entries(namespace: $ns) { nodes { key value } }
    resolveEntry(namespace: $ns, key: $key, scopes: ["global"]) { value }
    entryHistory(namespace: $ns, key: $key) { value }
    changes(namespace: $ns) { nodes { value } }
    namespace(name: $ns) { sensitive defaultValue }
  }`;
  const STORED = sql`SELECT value::text AS value FROM entries UNION ALL SELECT value::text FROM changes`;

  interface Vault {
    admin: string;
    agent: string;
    agentId: string;
    reader: string;
    ns: string;
    secret: string;
  }
  /** A tenant with a sensitive namespace holding `key` = { secret } (written by the agent), and its principals. */
  async function vault(label: string, key = 'k'): Promise<Vault> {
    const admin = await newTenant(label);
    const ns = unique('vault');
    const secret = `plain-${randomBytes(8).toString('hex')}`;
    await addNamespace(admin, ns, { sensitive: true, defaultValue: { secret: `default-${secret}` } });
    const agentId = unique('agent');
    const [agent, reader] = await Promise.all([addAgent(admin, agentId, [ns]), addToken(admin, unique('reader'))]);
    await gw.ok(agent, SET, { ns, key, value: { secret } });
    return { admin, agent, agentId, reader, ns, secret };
  }

  const storedText = async () => (await gw.db.handle.rows<{ value: string | null }>(STORED)).map((row) => row.value ?? '').join('\n');

  it('needs an encryption key: without one, creating a sensitive namespace is BAD_USER_INPUT naming sensitive', async () => {
    const refused = await plain.gql(ADMIN_TOKEN, 'mutation { createNamespace(input: { name: "secrets", sensitive: true }) { name } }');
    expectError(refused, 'BAD_USER_INPUT', 'sensitive');
    expect((await plain.ok(ADMIN_TOKEN, '{ namespace(name: "secrets") { name } }')).namespace).toBeNull();
  });

  it('stores values sealed, shows them to ADMIN and AGENT, and to a READER only their metadata', async () => {
    const v = await vault('sealed');
    const stored = await storedText();
    expect(stored).not.toContain(v.secret);
    expect(stored).toContain('$sealed');

    for (const token of [v.admin, v.agent]) {
      const seen = await gw.ok(token, EVERY_READ, { ns: v.ns, key: 'k' });
      expect(seen.entry.value).toEqual({ secret: v.secret });
      expect(seen.absent).toEqual({ value: { secret: `default-${v.secret}` }, version: 0 });
      expect(seen.entries.nodes).toEqual([{ key: 'k', value: { secret: v.secret } }]);
      expect(seen.resolveEntry.value).toEqual({ secret: v.secret });
      expect(seen.entryHistory.map((version: { value: unknown }) => version.value)).toEqual([{ secret: v.secret }]);
      expect(seen.changes.nodes).toEqual([{ value: { secret: v.secret } }]);
      expect(seen.namespace).toEqual({ sensitive: true, defaultValue: { secret: `default-${v.secret}` } });
    }
    const committed = await gw.ok(v.agent, COMMIT, { ops: [{ set: { namespace: v.ns, key: 'c', value: { secret: v.secret } } }] });
    expect(committed.commit.entries).toEqual([{ key: 'c', value: { secret: v.secret } }]);

    const masked = await gw.ok(v.reader, EVERY_READ, { ns: v.ns, key: 'k' });
    expect(masked.entry.value).toBeNull();
    expect(masked.absent).toEqual({ value: null, version: 0 });
    expect(masked.entries.nodes).toEqual([
      { key: 'c', value: null },
      { key: 'k', value: null },
    ]);
    expect(masked.resolveEntry.value).toBeNull();
    expect(masked.entryHistory.map((version: { value: unknown }) => version.value)).toEqual([null]);
    expect(masked.changes.nodes).toEqual([{ value: null }, { value: null }]);
    expect(masked.namespace).toEqual({ sensitive: true, defaultValue: null });
    expect(JSON.stringify(masked)).not.toContain(v.secret);
    const unfiltered = await gw.ok(v.reader, '{ changes(first: 1000) { nodes { namespace value } } }');
    expect(JSON.stringify(unfiltered)).not.toContain(v.secret);
    expectError(await gw.gql(v.reader, '{ exportState }'), 'FORBIDDEN');
  });

  it('delivers entryChanged with the value to an AGENT and without it to a READER, on WebSocket and SSE', async () => {
    const v = await vault('feeds');
    const query = 'subscription($ns: String) { entryChanged(namespace: $ns) { key value } }';
    const readerWs = subscribe(gw.ws(v.reader), query, { ns: v.ns });
    const readerAll = subscribe(gw.ws(v.reader), query, {});
    const agentWs = subscribe(gw.ws(v.agent), query, { ns: v.ns });
    const readerSse = openSse(gw.url, v.reader, query, { ns: v.ns });
    type Result = { data?: { entryChanged?: { key: string; value: unknown } } | null };
    const live = (results: readonly Result[]) => results.filter((result) => result.data?.entryChanged?.key === 'live');
    const everyoneHasIt = () => [agentWs.results, readerWs.results, readerAll.results, readerSse.results].every((r) => live(r).length > 0);
    try {
      await readerSse.response;
      // A subscription is live once the server has attached it, which no message says: write until each has the change.
      const deadline = Date.now() + 15_000;
      while (!everyoneHasIt()) {
        expect(Date.now(), 'every subscription to receive the change').toBeLessThan(deadline);
        await gw.ok(v.admin, SET, { ns: v.ns, key: 'live', value: { secret: v.secret } });
        await eventually(everyoneHasIt, 500).catch(() => undefined);
      }
      expect(live(agentWs.results)[0]?.data).toEqual({ entryChanged: { key: 'live', value: { secret: v.secret } } });
      for (const results of [readerWs.results, readerAll.results, readerSse.results] as Result[][]) {
        expect(live(results)[0]?.data).toEqual({ entryChanged: { key: 'live', value: null } });
        // Nor did any other change a reader got carry a value (the vault's first write may arrive live too).
        expect(results.map((result) => result.data?.entryChanged?.value)).toEqual(results.map(() => null));
      }
      expect(readerSse.text()).not.toContain(v.secret);
    } finally {
      for (const feed of [readerWs, readerAll, agentWs]) feed.stop();
      readerSse.close();
    }
  });

  it('refuses patch, increment and value filters on a sensitive namespace with BAD_USER_INPUT, and restores versions', async () => {
    const v = await vault('jsonb');
    const refusals: [string, Record<string, unknown>, string][] = [
      ['mutation($ns: String!) { patchEntry(input: { namespace: $ns, key: "k", patch: { more: 1 } }) { version } }', {}, 'patch'],
      ['mutation($ns: String!) { incrementEntry(input: { namespace: $ns, key: "n" }) { version } }', {}, 'by'],
      ['query($ns: String!) { entries(namespace: $ns, match: { secret: "x" }) { nodes { key } } }', {}, 'match'],
      [COMMIT, { ops: [{ patch: { namespace: v.ns, key: 'k', patch: { more: 1 } } }] }, ''],
      [COMMIT, { ops: [{ increment: { namespace: v.ns, key: 'n' } }] }, ''],
    ];
    for (const [query, variables, field] of refusals) {
      expectError(await gw.gql(v.agent, query, { ns: v.ns, ...variables }), 'BAD_USER_INPUT', field || undefined);
    }
    expect(await entryValue(v.admin, v.ns, 'n')).toEqual({ secret: `default-${v.secret}` });
    expect((await gw.ok(v.admin, ENTRY, { ns: v.ns, key: 'k' })).entry.version).toBe(1);

    await gw.ok(v.agent, SET, { ns: v.ns, key: 'k', value: { secret: 'second' } });
    const restored = await gw.ok(
      v.agent,
      'mutation($ns: String!) { restoreEntry(input: { namespace: $ns, key: "k", version: 1 }) { value version } }',
      { ns: v.ns },
    );
    expect(restored.restoreEntry).toEqual({ value: { secret: v.secret }, version: 3 });
    expect(await storedText()).not.toContain(v.secret);
  });

  it('exports plaintext to an ADMIN and seals what importState brings back', async () => {
    const v = await vault('portable');
    const { exportState } = await gw.ok(v.admin, 'query($ns: String!) { exportState(namespaces: [$ns]) }', { ns: v.ns });
    expect(exportState.namespaces[0].entries).toMatchObject([{ key: 'k', value: { secret: v.secret } }]);
    const imported = `imported-${randomBytes(8).toString('hex')}`;
    exportState.namespaces[0].entries.push({ scope: 'global', key: 'new', value: { secret: imported } });
    await gw.ok(v.admin, 'mutation($data: JSON!) { importState(data: $data) }', { data: exportState });
    expect(await entryValue(v.admin, v.ns, 'new')).toEqual({ secret: imported });
    expect(await entryValue(v.reader, v.ns, 'new')).toBeNull();
    expect(await storedText()).not.toContain(imported);
  });

  it('does not open a sealed value copied to another key: a masked INTERNAL error, no detail', async () => {
    const v = await vault('copied');
    await gw.ok(v.agent, SET, { ns: v.ns, key: 'other', value: 'mine' });
    await gw.db.handle.rows(sql`
      UPDATE entries SET value = (SELECT value FROM entries WHERE namespace = ${v.ns} AND key = 'k')
      WHERE namespace = ${v.ns} AND key = 'other'`);
    const request = 'query($ns: String!) { entry(namespace: $ns, key: "other") { value } }';
    const result = await gw.gql(v.admin, request, { ns: v.ns });
    expectError(result, 'INTERNAL_SERVER_ERROR');
    const text = JSON.stringify(result);
    expect(leakIn(text, request)).toBeNull();
    expect(text).not.toMatch(/stack|sealed|decipher|auth tag|encryption key/i);
    expect(text).not.toContain(v.secret);
    expect(await entryValue(v.admin, v.ns, 'k')).toEqual({ secret: v.secret });
  });

  it('reads values sealed with a previous key after a rotation, and seals new writes with the new key', async () => {
    const v = await vault('rotation');
    const newKey = randomBytes(32).toString('hex');
    const rotated = await startGateway({ db: gw.db, app: { encryptionKey: newKey, previousEncryptionKeys: [KEY] } });
    try {
      const sealedWith = async (key: string) => {
        const [row] = await gw.db.handle.rows<{ sealed: string }>(
          sql`SELECT value->>'$sealed' AS sealed FROM entries WHERE namespace = ${v.ns} AND key = ${key}`,
        );
        return row?.sealed.split('.')[1];
      };
      expect((await rotated.ok(v.admin, ENTRY, { ns: v.ns, key: 'k' })).entry.value).toEqual({ secret: v.secret });
      await rotated.ok(v.agent, SET, { ns: v.ns, key: 'fresh', value: { secret: 'after rotation' } });
      expect((await rotated.ok(v.agent, ENTRY, { ns: v.ns, key: 'fresh' })).entry.value).toEqual({ secret: 'after rotation' });
      expect(await sealedWith('fresh')).not.toBe(await sealedWith('k'));
      // The old key alone does not open what the new one sealed.
      expectError(await gw.gql(v.admin, ENTRY, { ns: v.ns, key: 'fresh' }), 'INTERNAL_SERVER_ERROR');
    } finally {
      await rotated.close();
    }
  });

  it('refuses to start without a key once a sensitive namespace exists, naming STATEHOUSE_ENCRYPTION_KEY', async () => {
    await vault('startup');
    // The same database, without the cross-process bus, so that the refused start leaves nothing behind.
    const database = Object.assign(Object.create(gw.db.handle), { broadcast: undefined, listen: undefined });
    await expect(buildApp({ database, logger: pino({ level: 'silent' }) })).rejects.toThrow(/STATEHOUSE_ENCRYPTION_KEY/);
  });
});

describe('audit log', () => {
  const AUDIT = `query($actor: String, $action: String, $outcome: AuditOutcome, $since: DateTime, $first: Int) {
    auditLog(actor: $actor, action: $action, outcome: $outcome, since: $since, first: $first) { id at actor role action target outcome detail }
  }`;
  interface AuditEvent {
    id: string;
    at: string;
    actor: string | null;
    role: string | null;
    action: string;
    target: string | null;
    outcome: 'ALLOWED' | 'DENIED';
    detail: Record<string, unknown> | null;
  }
  const auditLog = async (admin: string, filter: Record<string, unknown> = {}): Promise<AuditEvent[]> =>
    (await gw.ok(admin, AUDIT, { first: 1000, ...filter })).auditLog;

  it('records every mutation with actor, role, action, target and outcome, and every denial with its reason', async () => {
    const admin = await newTenant('audited');
    const ns = unique('plans');
    const locked = unique('locked');
    await addNamespace(admin, ns);
    await addNamespace(admin, locked, { openAccess: false });
    const agentId = unique('agent');
    const readerName = unique('reader');
    const [agent, reader] = await Promise.all([addAgent(admin, agentId, [ns]), addToken(admin, readerName)]);
    const since = await now();

    await gw.ok(agent, SET, { ns, key: 'plan', value: { step: 1 } });
    const conflict = await gw.gql(
      agent,
      'mutation($ns: String!) { setEntry(input: { namespace: $ns, key: "plan", value: 2, expectedVersion: 7 }) { version } }',
      {
        ns,
      },
    );
    expectError(conflict, 'VERSION_CONFLICT');
    expectError(await gw.gql(agent, ENTRY, { ns: locked, key: 'x' }), 'FORBIDDEN');
    expectError(await gw.gql(reader, SET, { ns, key: 'plan', value: 3 }), 'FORBIDDEN');
    await gw.ok(admin, 'mutation($ns: String!) { deleteEntry(input: { namespace: $ns, key: "plan" }) }', { ns });

    const events = await auditLog(admin, { since });
    const pick = ({ actor, role, action, target, outcome }: AuditEvent) => ({ actor, role, action, target, outcome });
    // Newest first.
    expect(events.map(pick)).toEqual([
      { actor: 'admin:admin', role: 'ADMIN', action: 'deleteEntry', target: `${ns}/global/plan`, outcome: 'ALLOWED' },
      { actor: `reader:${readerName}`, role: 'READER', action: 'setEntry', target: `${ns}/global/plan`, outcome: 'DENIED' },
      { actor: agentId, role: 'AGENT', action: 'entry', target: `${locked}/global/x`, outcome: 'DENIED' },
      { actor: agentId, role: 'AGENT', action: 'setEntry', target: `${ns}/global/plan`, outcome: 'ALLOWED' },
      { actor: agentId, role: 'AGENT', action: 'setEntry', target: `${ns}/global/plan`, outcome: 'ALLOWED' },
    ]);
    expect(events[0]?.detail).toBeNull();
    for (const denied of [events[1], events[2]]) {
      expect(denied?.detail).toMatchObject({ code: 'FORBIDDEN', reason: expect.any(String) });
    }
    expect(events[3]?.detail).toEqual({ code: 'VERSION_CONFLICT' });
    expect(events[4]?.detail).toBeNull();
    expect(new Date(events[4]?.at ?? 0).getTime()).toBeGreaterThanOrEqual(new Date(since).getTime());

    // The filters.
    expect((await auditLog(admin, { actor: agentId, since })).map((event) => event.action)).toEqual(['entry', 'setEntry', 'setEntry']);
    expect((await auditLog(admin, { outcome: 'DENIED', since })).map((event) => event.role)).toEqual(['READER', 'AGENT']);
    expect((await auditLog(admin, { action: 'deleteEntry' })).length).toBe(1);
    expect(await auditLog(admin, { since, first: 2 })).toHaveLength(2);
  });

  it('lists newest first, also where the ids gain a digit', async () => {
    const admin = await newTenant('audit-order');
    const [row] = await gw.db.handle.rows<{ next: string }>(sql`SELECT (coalesce(max(id), 0) + 1)::text AS next FROM audit_events`);
    const boundary = 10n ** BigInt((row?.next ?? '1').length);
    await gw.db.handle.rows(sql`SELECT setval('audit_events_id_seq', ${(boundary - 4n).toString()}::bigint)`);
    for (let i = 0; i < 6; i++) await gw.ok(admin, SET, { ns: 'common', key: `k${i}`, value: i });
    const events = await auditLog(admin, { action: 'setEntry' });
    expect(events.map((event) => event.target)).toEqual([5, 4, 3, 2, 1, 0].map((i) => `common/global/k${i}`));
  });

  it('records a rate-limited operation as DENIED with its reason', async () => {
    const admin = await newTenant('audit-rate');
    const name = unique('hasty');
    const reader = await addToken(admin, name);
    await gw.ok(admin, SET_CONFIG, { patch: { rateLimit: { perTokenPerSecond: 2 } } });
    const results = await Promise.all(Array.from({ length: 6 }, () => gw.gql(reader, '{ viewer { role } }')));
    expect(results.some((result) => codesOf(result).includes('RATE_LIMITED'))).toBe(true);
    const [denied] = await auditLog(admin, { actor: `reader:${name}`, outcome: 'DENIED' });
    expect(denied).toMatchObject({ role: 'READER', action: 'viewer', detail: { code: 'RATE_LIMITED', reason: expect.any(String) } });
  });

  it('refuses a value nested deeper than 100 levels (even past the call stack) with BAD_USER_INPUT naming it, and audits that answer', async () => {
    const admin = await newTenant('audit-deep');
    const since = await now();
    const nested = (depth: number) => `${'['.repeat(depth)}1${']'.repeat(depth)}`;
    const body = (depth: number, key: string) =>
      `{"query":${JSON.stringify(SET)},"variables":{"ns":"common","key":"${key}","value":${nested(depth)}}}`;
    for (const depth of [101, 20_000]) {
      const answer = (await postRaw(gw.url, admin, body(depth, 'deep'))).body as { errors?: { extensions?: Record<string, unknown> }[] };
      expect(answer.errors?.map((error) => error.extensions)).toEqual([
        expect.objectContaining({ code: 'BAD_USER_INPUT', field: 'value', limit: 100 }),
      ]);
    }
    expect(codesOf((await postRaw(gw.url, admin, body(100, 'deep-enough'))).body)).toEqual([]);
    expect((await gw.ok(admin, 'query { entry(namespace: "common", key: "deep") { version } }')).entry).toBeNull();
    const events = await auditLog(admin, { action: 'setEntry', since });
    expect(events.filter((event) => event.target === 'common/global/deep')).toEqual([
      expect.objectContaining({ outcome: 'ALLOWED', detail: { code: 'BAD_USER_INPUT' } }),
      expect.objectContaining({ outcome: 'ALLOWED', detail: { code: 'BAD_USER_INPUT' } }),
    ]);
  });

  it('records reads of sensitive values once per operation, and not a READER who sees none', async () => {
    const admin = await newTenant('audit-reads');
    const ns = unique('vault');
    await addNamespace(admin, ns, { sensitive: true });
    const agentId = unique('agent');
    const [agent, reader] = await Promise.all([addAgent(admin, agentId, [ns]), addToken(admin, unique('reader'))]);
    await gw.ok(agent, SET, { ns, key: 'a', value: 'one' });
    await gw.ok(agent, SET, { ns, key: 'b', value: 'two' });
    const since = await now();
    const everything = `query($ns: String!) {
      entry(namespace: $ns, key: "a") { value }
      entries(namespace: $ns) { nodes { value } }
      changes(namespace: $ns) { nodes { value } }
    }`;
    await gw.ok(agent, everything, { ns });
    await gw.ok(reader, everything, { ns });
    await gw.ok(agent, '{ common: entries(namespace: "common") { nodes { value } } }');
    await gw.ok(agent, 'query($ns: String!) { entry(namespace: $ns, key: "a") { key version } }', { ns });
    expect(await auditLog(admin, { action: 'read', since })).toMatchObject([
      { actor: agentId, role: 'AGENT', target: ns, outcome: 'ALLOWED' },
    ]);

    await gw.ok(admin, 'query($ns: String!) { exportState(namespaces: [$ns]) }', { ns });
    expect(await auditLog(admin, { action: 'read', since })).toMatchObject([
      { actor: 'admin:admin', target: ns },
      { actor: agentId, target: ns },
    ]);
  });

  it('is for admins only', async () => {
    const admin = await newTenant('audit-admins');
    const [agent, reader] = await Promise.all([addAgent(admin, unique('agent')), addToken(admin, unique('reader'))]);
    for (const token of [agent, reader]) expectError(await gw.gql(token, AUDIT, {}), 'FORBIDDEN');
    // The refusals themselves are on record.
    expect((await auditLog(admin, { action: 'auditLog', outcome: 'DENIED' })).map((event) => event.role).sort()).toEqual([
      'AGENT',
      'READER',
    ]);
  });

  it('holds no token and no value anywhere, whatever was written, refused or read', async () => {
    const admin = await newTenant('audit-secrets');
    const ns = unique('vault');
    await addNamespace(admin, ns, { sensitive: true });
    await addNamespace(admin, 'typed', { schema: { type: 'object', properties: { n: { type: 'number' } } } });
    const agentId = unique('agent');
    const agent = await addAgent(admin, agentId, [ns, 'typed']);
    const readerIssue = await gw.ok(admin, 'mutation($name: String!) { createToken(input: { name: $name, role: READER }) { id token } }', {
      name: unique('reader'),
    });
    const reader = readerIssue.createToken.token as string;
    const value = (label: string) => `${label}-${randomBytes(8).toString('hex')}`;
    const values = [value('set'), value('commit'), value('typed'), value('system'), value('refused'), value('import'), value('insight')];
    const [set, committed, typed, system, refused, imported, insight] = values;

    await gw.ok(agent, SET, { ns, key: 'k', value: { secret: set } });
    await gw.ok(agent, COMMIT, { ops: [{ set: { namespace: 'common', key: 'c', value: committed } }] });
    expectError(await gw.gql(agent, SET, { ns: 'typed', key: 't', value: { n: typed } }), 'VALIDATION_FAILED');
    await gw.ok(admin, 'mutation($patch: JSON!) { updateSystemState(patch: $patch) }', { patch: { note: system } });
    expectError(await gw.gql(reader, SET, { ns: 'common', key: 'r', value: refused }), 'FORBIDDEN');
    await gw.ok(admin, 'mutation($data: JSON!) { importState(data: $data) }', {
      data: {
        format: (await gw.ok(admin, '{ exportState(namespaces: ["common"]) }')).exportState.format,
        version: 1,
        namespaces: [{ name: 'common', entries: [{ scope: 'global', key: 'i', value: imported }] }],
      },
    });
    await gw.ok(agent, 'mutation($content: JSON!) { addInsight(input: { type: "note", content: $content }) { id } }', {
      content: { insight },
    });
    await gw.ok(agent, ENTRY, { ns, key: 'k' });
    await gw.ok(admin, 'mutation($id: ID!) { revokeToken(id: $id) }', { id: readerIssue.createToken.id });

    const log = JSON.stringify(await auditLog(admin));
    expect(log).toContain('updateSystemState');
    expect(log).toContain('revokeToken');
    for (const secret of [admin, agent, reader, ...values]) expect(log).not.toContain(secret as string);
  });

  it('writes records in batches, without waiting for auditLog to flush them', async () => {
    const admin = await newTenant('audit-batch');
    const key = unique('batched');
    await gw.ok(admin, SET, { ns: 'common', key, value: 1 });
    const started = Date.now();
    await eventually(
      async () => (await gw.db.handle.rows(sql`SELECT 1 FROM audit_events WHERE target = ${`common/global/${key}`}`)).length === 1,
      2_000,
      'the audit record in the database',
    );
    expect(Date.now() - started).toBeLessThan(1_000);
  });
});
