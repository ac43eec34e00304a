/**
 * The security features of issue 7 through the public surface (API.md §2, §3 and §5 Config, Limits,
 * Sensitive namespaces, Audit log): per-tenant query, body, batch and socket limits, rate limits,
 * quotas, introspection and GraphiQL switches, sealed sensitive namespaces, key rotation, and the
 * audit log. Every test that changes settings does so in a tenant of its own.
 */
import { randomBytes } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { getIntrospectionQuery } from 'graphql';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../src/app.js';
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
    expect(served.length + refused.length).toBe(15);
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
    for (const id of ['1', '2', '3', '4']) {
      socket.send({ id, type: 'subscribe', payload: { query: ENTRY_CHANGED, variables: { ns: 'common' } } });
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const refused = await socket.waitFor((frame) => frame.type === 'error');
    expect(refused?.id).toBe('4');
    expect(refused?.payload?.[0]?.extensions?.code).toBe('RATE_LIMITED');
    await gw.ok(admin, SET, { ns: 'common', key: 'k1', value: 1 });
    await eventually(() => nextIds(socket).size === 3, 5_000, 'three live subscriptions');
    expect([...nextIds(socket)].sort()).toEqual(['1', '2', '3']);

    socket.send({ id: '1', type: 'complete' });
    await new Promise((resolve) => setTimeout(resolve, 50));
    socket.send({ id: '5', type: 'subscribe', payload: { query: ENTRY_CHANGED, variables: { ns: 'common' } } });
    await new Promise((resolve) => setTimeout(resolve, 50));
    await gw.ok(admin, SET, { ns: 'common', key: 'k2', value: 2 });
    await eventually(() => nextIds(socket).has('5'), 5_000, 'the subscription that took the freed slot');
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
    await new Promise((resolve) => setTimeout(resolve, 200));
    await gw.ok(admin, SET, { ns: 'common', key: 'flood', value: 1 });
    const refused = errorFrames(socket);
    const live = attempts - refused.length;
    await eventually(() => nextIds(socket).size === live, 10_000, `${live} live subscriptions to see the write`);
    // Exactly the limit: a burst is neither let past it nor refused wholesale.
    expect(live).toBe(100);
    expect(new Set(refused.map((frame) => frame.payload?.[0]?.extensions?.code))).toEqual(new Set(['RATE_LIMITED']));
    expect(socket.isOpen()).toBe(true);
    socket.close();
    await expectHealthy();
  });
});
