/**
 * STATEHOUSE_WORKERS=2 (PostgreSQL only: the embedded database has one process): a real `src/main.ts`
 * cluster, reached over a new connection per request, so that the primary hands requests to both
 * workers in turn. MCP sessions answer on whichever worker a request lands (the session's own worker
 * answers through its private port), and a token's rate limit holds for the port, not per worker.
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { Readable } from 'node:stream';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { eventually } from './support/gateway.js';
import { INITIALIZE, type McpClient, structured, track } from './support/mcp.js';

const root = new URL('..', import.meta.url).pathname;
const ADMIN = 'workers-test-admin-token';

/** fetch over a connection of its own (no keep-alive): the cluster may hand each request to another worker. */
function freshFetch(input: string | URL | Request, init: RequestInit = {}): Promise<Response> {
  const url = new URL(input instanceof Request ? input.url : input);
  const headers: Record<string, string> = {};
  new Headers(init.headers).forEach((value, name) => (headers[name] = value));
  return new Promise((resolve, reject) => {
    const request = http.request(url, { method: init.method ?? 'GET', headers, agent: false }, (response) => {
      const answer = new Headers();
      for (const [name, value] of Object.entries(response.headers)) if (typeof value === 'string') answer.set(name, value);
      const empty = response.statusCode === 204 || init.method === 'HEAD';
      resolve(
        new Response(empty ? null : (Readable.toWeb(response) as unknown as ReadableStream), {
          status: response.statusCode,
          headers: answer,
        }),
      );
    });
    init.signal?.addEventListener('abort', () => request.destroy(), { once: true });
    request.on('error', reject);
    request.end(typeof init.body === 'string' ? init.body : undefined);
  });
}

let db: TestDatabase;
let child: ChildProcessWithoutNullStreams;
let output = '';
let base = '';

/** `{ data, errors }` of a GraphQL request over a new connection. */
async function gql(token: string, query: string, variables: Record<string, unknown> = {}): Promise<{ data?: any; errors?: any[] }> {
  const response = await freshFetch(`${base}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify({ query, variables }),
  });
  return (await response.json()) as { data?: any; errors?: any[] };
}

async function ok(token: string, query: string, variables: Record<string, unknown> = {}) {
  const answer = await gql(token, query, variables);
  if (answer.errors) throw new Error(JSON.stringify(answer.errors));
  return answer.data;
}

/** A raw request to /mcp over a new connection. */
async function raw(headers: Record<string, string>, body: unknown = { jsonrpc: '2.0', id: 1, method: 'tools/list' }, method = 'POST') {
  const response = await freshFetch(`${base}/mcp`, {
    method,
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers },
    body: method === 'POST' ? JSON.stringify(body) : undefined,
  });
  return { status: response.status, text: await response.text(), headers: response.headers };
}

/** Log lines of the cluster, parsed. */
const lines = () =>
  output
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, any>);
const workerPids = () => [
  ...new Set(
    lines()
      .filter((line) => line.msg === 'worker listening')
      .map((line) => line.worker as number),
  ),
];
const forwarded = () => lines().filter((line) => line.msg === 'forwarding an MCP request to the worker that owns its session');

let counter = 0;
const unique = (label: string) => `${label}-${(++counter).toString(36)}-${randomBytes(3).toString('hex')}`;

async function registerAgent(id: string): Promise<string> {
  return (
    await ok(ADMIN, 'mutation($input: RegisterAgentInput!) { registerAgent(input: $input) { token } }', {
      input: { id, name: id, type: 'worker' },
    })
  ).registerAgent.token;
}

/**
 * The SDK's Client, every request over a new connection. Before its GET stream it opens one more
 * connection, so that (the primary handing connections to the two workers in turn) the stream lands
 * on the worker that did not open the session.
 */
async function connect(token: string) {
  let ended!: () => void;
  const streamEnded = new Promise<void>((resolve) => (ended = resolve));
  let opened!: () => void;
  const streamOpened = new Promise<void>((resolve) => (opened = resolve));
  const transport = new StreamableHTTPClientTransport(new URL('/mcp', base), {
    requestInit: { headers: { authorization: `Bearer ${token}` } },
    reconnectionOptions: { maxRetries: 0, initialReconnectionDelay: 100, maxReconnectionDelay: 100, reconnectionDelayGrowFactor: 1 },
    fetch: async (input, init) => {
      if (init?.method === 'GET') await (await freshFetch(`${base}/health`)).text();
      const response = await freshFetch(input, init);
      if (init?.method !== 'GET' || !response.ok || !response.body) return response;
      opened();
      // Passed through; `streamEnded` resolves when it ends, whether closed or broken.
      const reader = response.body.getReader();
      const body = new ReadableStream<Uint8Array>({
        async pull(controller) {
          try {
            const chunk = await reader.read();
            if (chunk.done) {
              ended();
              controller.close();
            } else controller.enqueue(chunk.value);
          } catch (error) {
            ended();
            controller.error(error);
          }
        },
        cancel: (reason) => {
          ended();
          return reader.cancel(reason);
        },
      });
      return new Response(body, { status: response.status, headers: response.headers });
    },
  });
  const client = new Client({ name: 'workers-test', version: '1.0.0' });
  await client.connect(transport);
  // The SDK opens the stream after connect returns: nothing else may take a connection before it
  // reached a worker (its headers come with its first event, up to 15 s later).
  const owner = Number(transport.sessionId?.split('.')[0]);
  await eventually(
    () => forwarded().some((line) => line.method === 'GET' && line.owner === owner),
    15_000,
    `the GET stream of session ${transport.sessionId} forwarded by the other worker`,
  );
  const tracked: McpClient = track(client, transport);
  return { ...tracked, transport, sessionId: () => transport.sessionId, streamOpened, streamEnded };
}

describe.runIf(process.env.TEST_DATABASE_URL)('STATEHOUSE_WORKERS=2', { timeout: 120_000 }, () => {
  beforeAll(async () => {
    db = await createTestDatabase();
    child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
      cwd: root,
      env: {
        ...process.env,
        PORT: '0',
        HOST: '127.0.0.1',
        LOG_LEVEL: 'debug',
        DATABASE_URL: db.url ?? '',
        STATEHOUSE_WORKERS: '2',
        STATEHOUSE_ADMIN_TOKEN: ADMIN,
      },
    });
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    await eventually(() => /\(2 worker processes\)/.test(output), 60_000, `the cluster listening:\n${output}`);
    base = /http:\/\/127\.0\.0\.1:\d+/.exec(output)?.[0] ?? '';
    await eventually(() => workerPids().length === 2, 30_000, 'both workers listening');
  }, 90_000);
  afterAll(async () => {
    if (child && child.exitCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    }
    await db?.drop();
  });

  it('serves an MCP session on both workers: tools, a subscription told of a write made elsewhere, DELETE', async () => {
    const agent = await connect(await registerAgent(unique('agent')));
    const sessionId = agent.sessionId() ?? '';
    expect(sessionId).toMatch(/^\d+\.[A-Za-z0-9_-]{43}$/);
    const key = unique('k');
    const uri = `statehouse://common/global/${key}`;
    expect(structured(await agent.call('set_entry', { namespace: 'common', key, value: 1, expectedVersion: 0 })).entry.version).toBe(1);
    expect(structured(await agent.call('get_entry', { namespace: 'common', key })).entry.value).toBe(1);
    await agent.client.subscribeResource({ uri });
    for (let i = 0; i < 3; i++) expect(structured(await agent.call('list_namespaces')).role).toBe('AGENT');

    // Written by another client over GraphQL: the session's GET stream, opened on the other worker, tells it.
    const updated = agent.nextUpdate(uri);
    await ok(ADMIN, 'mutation($key: String!) { setEntry(input: { namespace: "common", key: $key, value: 2 }) { version } }', { key });
    await updated;

    // The requests did land on the worker that did not open the session, POSTs and the GET stream alike.
    const owner = Number(sessionId.split('.')[0]);
    const mine = forwarded().filter((line) => line.owner === owner);
    expect(mine.filter((line) => line.method === 'POST').length).toBeGreaterThanOrEqual(3);
    expect(mine.filter((line) => line.method === 'GET')).toHaveLength(1);
    expect(new Set(mine.map((line) => line.worker)).size).toBe(1);
    expect(workerPids()).toContain(mine[0]?.worker);

    await agent.transport.terminateSession();
    await agent.streamEnded;
    // Gone on both workers, whichever a request lands on.
    for (let i = 0; i < 2; i++) {
      expect(
        (await raw({ authorization: `Bearer ${ADMIN}`, 'mcp-session-id': sessionId, 'mcp-protocol-version': '2025-06-18' })).status,
      ).toBe(404);
    }
    await agent.close();
  });

  it('answers a forged or stale session id as one that does not exist, on every worker', async () => {
    const token = await registerAgent(unique('forger'));
    const unknown = await raw({ authorization: `Bearer ${token}`, 'mcp-session-id': randomBytes(32).toString('base64url') });
    expect(unknown.status).toBe(404);
    const random = randomBytes(32).toString('base64url');
    const ids = [`999.${random}`, `0.${random}`, `1.${random}`, `2.${random}`, `127.0.0.1:22/${random}`, `1.${random}/../graphql`, '1.'];
    for (const id of ids) {
      for (let i = 0; i < 2; i++) {
        const answer = await raw({ authorization: `Bearer ${token}`, 'mcp-session-id': id });
        expect(answer.status, id).toBe(404);
        expect(answer.text, id).toBe(unknown.text);
      }
    }
    // Another token's live session, reached through either worker: as one that does not exist.
    const owner = await connect(await registerAgent(unique('owner')));
    for (let i = 0; i < 2; i++) {
      const stolen = await raw({ authorization: `Bearer ${token}`, 'mcp-session-id': owner.sessionId() ?? '' });
      expect(stolen.status).toBe(404);
      expect(stolen.text).toBe(unknown.text);
    }
    // Without a valid token, nothing is forwarded: 401 as on one process.
    expect((await raw({ authorization: 'Bearer not-a-real-token-at-all', 'mcp-session-id': owner.sessionId() ?? '' })).status).toBe(401);
    expect(structured(await owner.call('list_namespaces')).role).toBe('AGENT');
    await owner.close();
  });

  it("refuses requests on a worker's private port that lack the cluster's secret", async () => {
    const ports = lines()
      .filter((line) => line.msg === 'taking MCP requests forwarded by sibling workers on 127.0.0.1')
      .map((line) => line.privatePort as number);
    expect(ports).toHaveLength(2);
    const token = await registerAgent(unique('sneaky'));
    const agent = await connect(token);
    for (const port of ports) {
      for (const [path, headers, body] of [
        ['/mcp', { 'mcp-session-id': agent.sessionId() ?? '' }, { jsonrpc: '2.0', id: 1, method: 'tools/list' }],
        ['/mcp', { 'x-statehouse-cluster-secret': 'guessed' }, INITIALIZE],
        ['/mcp', {}, INITIALIZE],
        ['/graphql', {}, { query: '{ viewer { role } }' }],
      ] as const) {
        const answer = await freshFetch(`http://127.0.0.1:${port}${path}`, {
          method: 'POST',
          headers: {
            authorization: `Bearer ${token}`,
            'content-type': 'application/json',
            accept: 'application/json, text/event-stream',
            ...headers,
          },
          body: JSON.stringify(body),
        });
        expect(answer.status, `${port}${path}`).toBe(403);
        expect(await answer.text()).not.toContain('jsonrpc');
      }
    }
    await agent.close();
  });

  it('answers 404 for the sessions of a worker that died, on every worker', { timeout: 120_000 }, async () => {
    const token = await registerAgent(unique('orphan'));
    const agent = await connect(token);
    const sessionId = agent.sessionId() ?? '';
    const owner = Number(sessionId.split('.')[0]);
    const pid = lines().find(
      (line) => line.msg === 'taking MCP requests forwarded by sibling workers on 127.0.0.1' && line.clusterWorker === owner,
    )?.worker as number;
    expect(workerPids()).toContain(pid);
    const replaced = workerPids().length + 1;
    // Its GET stream answered (headers come with its first event: the SDK's keep-alive, 15 s on).
    await agent.streamOpened;
    process.kill(pid, 'SIGKILL');
    // Its stream, held open through the other worker, ends with it.
    await agent.streamEnded;
    await eventually(() => workerPids().length === replaced, 60_000, 'a new worker in its place');
    for (let i = 0; i < 4; i++) {
      const answer = await raw({ authorization: `Bearer ${token}`, 'mcp-session-id': sessionId });
      expect(answer.status).toBe(404);
      expect(answer.text).toContain('Session not found');
    }
    await agent.close();
    // A new session works on the new pair of workers.
    const again = await connect(token);
    expect(structured(await again.call('list_namespaces')).role).toBe('AGENT');
    await again.close();
  });

  it("holds a token's rate limit across both workers, not once per worker", async () => {
    const perSecond = 10;
    const admin = (await ok(ADMIN, 'mutation($name: String!) { createTenant(name: $name) { token } }', { name: unique('limited') }))
      .createTenant.token as string;
    await ok(admin, 'mutation($patch: JSON!) { updateConfig(patch: $patch) }', { patch: { rateLimit: { perTokenPerSecond: perSecond } } });
    // Both workers hear of the new limit (through the database), and the bucket is full again.
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    const leasesBefore = lines().filter((line) => line.msg === 'drawing a rate-limit lease from the primary').length;

    let allowed = 0;
    let limited = 0;
    const started = performance.now();
    const seconds = 3;
    await Promise.all(
      Array.from({ length: 6 }, async () => {
        while (performance.now() - started < seconds * 1000) {
          const answer = await gql(admin, '{ viewer { role } }');
          if (answer.data?.viewer) allowed++;
          else if (answer.errors?.[0]?.extensions?.code === 'RATE_LIMITED') limited++;
          else throw new Error(JSON.stringify(answer));
        }
      }),
    );
    const elapsed = (performance.now() - started) / 1000;
    // One bucket: a second's burst, then perSecond a second; slack of one lease (1 here) per worker.
    const budget = perSecond + perSecond * elapsed;
    expect(limited, 'enough requests to exhaust the limit').toBeGreaterThan(2 * budget);
    expect(allowed).toBeLessThanOrEqual(budget + 2 + 1);
    expect(allowed).toBeGreaterThanOrEqual(0.7 * budget);
    // Both workers drew leases: each served some of them.
    const drawers = new Set(
      lines()
        .filter((line) => line.msg === 'drawing a rate-limit lease from the primary')
        .slice(leasesBefore)
        .map((line) => line.worker),
    );
    expect(drawers.size).toBe(2);
  });

  it('stops with 0 on SIGTERM while a session is held open through the other worker', async () => {
    const agent = await connect(await registerAgent(unique('last')));
    await agent.streamOpened;
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    await agent.streamEnded;
    expect(await exited).toBe(0);
    await agent.close();
  });
});
