/**
 * The MCP endpoint at /mcp, through the SDK's own Client over Streamable HTTP: its tools and
 * resources run the contract's GraphQL operations with the caller's token, so the access rule,
 * error codes and change feed are those of /graphql (API.md §2, §3, §5).
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { McpEndpoint } from '../src/transport/mcp/endpoint.js';
import { ADMIN_TOKEN, eventually, type Gateway, startGateway } from './support/gateway.js';
import { anotherProcess, connectHttp, INITIALIZE, type McpClient, rawMcp, structured, textOf } from './support/mcp.js';

let gw: Gateway;
const clients: McpClient[] = [];
const extraGateways: Gateway[] = [];

beforeAll(async () => {
  gw = await startGateway({ app: { corsOrigins: ['https://agents.example'] } });
});
afterEach(async () => {
  await Promise.allSettled(clients.splice(0).map((client) => client.close()));
});
afterAll(async () => {
  await Promise.allSettled(extraGateways.map((gateway) => gateway.close()));
  await gw?.close();
});

let counter = 0;
const unique = (label: string) => `${label}-${(++counter).toString(36)}-${randomBytes(3).toString('hex')}`;

async function connect(token: string, gateway = gw) {
  const client = await connectHttp(gateway, token);
  clients.push(client);
  return client;
}

const GRANT =
  'mutation($ns: String!, $agent: ID!, $perm: Permission!) { grantAccess(input: { namespace: $ns, agentId: $agent, permission: $perm }) { permission } }';
const REVOKE_ACCESS = 'mutation($ns: String!, $agent: ID!) { revokeAccess(input: { namespace: $ns, agentId: $agent }) }';
const ENTRY =
  'query($ns: String!, $key: String!, $scope: String) { entry(namespace: $ns, key: $key, scope: $scope) { value version updatedBy } }';
const SET =
  'mutation($ns: String!, $key: String!, $value: JSON!, $scope: String) { setEntry(input: { namespace: $ns, key: $key, value: $value, scope: $scope }) { version } }';

const TOOLS = [
  'add_insight',
  'commit',
  'delete_entry',
  'entry_history',
  'get_entry',
  'heartbeat',
  'increment_entry',
  'list_agents',
  'list_entries',
  'list_namespaces',
  'metric_summary',
  'patch_entry',
  'recent_changes',
  'record_metrics',
  'report_error',
  'resolve_entry',
  'restore_entry',
  'set_entry',
];

describe('tools', () => {
  it('lists every tool with a description and input and output schemas', async () => {
    const agent = await connect(await gw.registerAgent(unique('lister')));
    const { tools } = await agent.client.listTools();
    expect(tools.map((tool) => tool.name).sort()).toEqual(TOOLS);
    for (const tool of tools) {
      expect(tool.description?.length, tool.name).toBeGreaterThan(40);
      expect(tool.inputSchema.type).toBe('object');
      expect(tool.outputSchema?.type, tool.name).toBe('object');
    }
    const set = tools.find((tool) => tool.name === 'set_entry');
    expect(set?.inputSchema.required).toEqual(expect.arrayContaining(['namespace', 'key', 'value']));
    expect(Object.keys(set?.inputSchema.properties ?? {})).toEqual(expect.arrayContaining(['expectedVersion', 'ttlSeconds', 'scope']));
  });

  it('lets an agent set, read, run into a version conflict and recover', async () => {
    const id = unique('writer');
    const agent = await connect(await gw.registerAgent(id));
    const key = unique('plan');

    const created = structured(await agent.call('set_entry', { namespace: 'common', key, value: { step: 1 }, expectedVersion: 0 }));
    expect(created.entry).toMatchObject({ namespace: 'common', scope: 'global', key, value: { step: 1 }, version: 1, updatedBy: id });

    const read = await agent.call('get_entry', { namespace: 'common', key });
    expect(structured(read).entry).toMatchObject({ value: { step: 1 }, version: 1 });
    expect(textOf(read)).toContain('version 1');

    // Someone else writes through GraphQL: the agent's stale compare-and-set is refused and changes nothing.
    await gw.ok(ADMIN_TOKEN, SET, { ns: 'common', key, value: { step: 'admin' } });
    const conflict = await agent.call('set_entry', { namespace: 'common', key, value: { step: 2 }, expectedVersion: 1 });
    expect(conflict.isError).toBe(true);
    expect(textOf(conflict)).toMatch(/^VERSION_CONFLICT: .*current version 2.*get_entry.*expectedVersion 2/);
    expect((await gw.ok(ADMIN_TOKEN, ENTRY, { ns: 'common', key })).entry).toMatchObject({ value: { step: 'admin' }, version: 2 });

    // Recovery as the error says: read again, retry with the version read.
    const again = structured(await agent.call('get_entry', { namespace: 'common', key }));
    const retried = structured(
      await agent.call('set_entry', { namespace: 'common', key, value: { step: 2 }, expectedVersion: again.entry.version }),
    );
    expect(retried.entry).toMatchObject({ value: { step: 2 }, version: 3 });
    expect((await gw.ok(ADMIN_TOKEN, ENTRY, { ns: 'common', key })).entry).toEqual({ value: { step: 2 }, version: 3, updatedBy: id });
  });

  it('patches, increments, commits, lists, resolves, deletes and shows history', async () => {
    const agent = await connect(await gw.registerAgent(unique('worker')));
    const prefix = unique('k');
    expect(
      structured(await agent.call('patch_entry', { namespace: 'common', key: `${prefix}/cfg`, patch: { a: 1, b: 2 } })).entry.value,
    ).toEqual({
      a: 1,
      b: 2,
    });
    expect(
      structured(await agent.call('patch_entry', { namespace: 'common', key: `${prefix}/cfg`, patch: { b: null } })).entry.value,
    ).toEqual({ a: 1 });
    expect(structured(await agent.call('increment_entry', { namespace: 'common', key: `${prefix}/n`, by: 5 })).entry.value).toBe(5);
    const committed = structured(
      await agent.call('commit', {
        conditions: [{ namespace: 'common', key: `${prefix}/n`, version: 1 }],
        operations: [
          { increment: { namespace: 'common', key: `${prefix}/n` } },
          { set: { namespace: 'common', key: `${prefix}/x`, scope: 'thread:1', value: 'thread value' } },
        ],
      }),
    );
    expect(committed.entries).toHaveLength(2);
    const failed = await agent.call('commit', {
      conditions: [{ namespace: 'common', key: `${prefix}/n`, version: 1 }],
      operations: [{ delete: { namespace: 'common', key: `${prefix}/n` } }],
    });
    expect(textOf(failed)).toMatch(/^VERSION_CONFLICT/);

    const page1 = structured(await agent.call('list_entries', { namespace: 'common', prefix, first: 2 }));
    expect(page1.entries).toHaveLength(2);
    expect(page1.pageInfo.hasNextPage).toBe(true);
    const page2 = structured(await agent.call('list_entries', { namespace: 'common', prefix, first: 2, after: page1.pageInfo.endCursor }));
    expect([...page1.entries, ...page2.entries].map((entry: { key: string }) => entry.key).sort()).toEqual(
      [`${prefix}/cfg`, `${prefix}/n`, `${prefix}/x`].sort(),
    );

    const resolved = structured(
      await agent.call('resolve_entry', { namespace: 'common', key: `${prefix}/x`, scopes: ['thread:2', 'thread:1', 'global'] }),
    );
    expect(resolved.entry).toMatchObject({ scope: 'thread:1', value: 'thread value' });

    expect(structured(await agent.call('delete_entry', { namespace: 'common', key: `${prefix}/n` })).deleted).toBe(true);
    expect(structured(await agent.call('delete_entry', { namespace: 'common', key: `${prefix}/n` })).deleted).toBe(false);
    const history = structured(await agent.call('entry_history', { namespace: 'common', key: `${prefix}/n` }));
    expect(history.versions.map((version: { op: string; value: unknown }) => [version.op, version.value])).toEqual([
      ['DELETE', null],
      ['SET', 6],
      ['SET', 5],
    ]);
    const restored = structured(await agent.call('restore_entry', { namespace: 'common', key: `${prefix}/n`, version: 1 }));
    expect(restored.entry).toMatchObject({ value: 5, version: 4 });
    const recent = structured(await agent.call('recent_changes', { namespace: 'common', first: 3 }));
    expect(recent.changes.slice(0, 2)).toMatchObject([
      { op: 'SET', key: `${prefix}/n`, value: 5 },
      { op: 'DELETE', key: `${prefix}/n` },
    ]);
  });

  it('reports fleet calls as the agent itself and reads the fleet', async () => {
    const id = unique('fleet');
    const agent = await connect(await gw.registerAgent(id));
    expect(structured(await agent.call('heartbeat', { status: 'BUSY', data: { task: 'x' } })).agent).toMatchObject({
      id,
      status: 'BUSY',
      active: true,
    });
    expect(
      structured(
        await agent.call('record_metrics', {
          metrics: [
            { name: `${id}.latency`, value: 3 },
            { name: `${id}.latency`, value: 5 },
          ],
        }),
      ),
    ).toEqual({
      recorded: 2,
    });
    const summary = structured(await agent.call('metric_summary', { name: `${id}.latency` }));
    expect(summary.summaries[0]).toMatchObject({ count: 2, min: 3, max: 5 });
    expect(structured(await agent.call('report_error', { type: 'timeout', message: 'call 17 timed out' })).pattern).toMatchObject({
      count: 1,
      agentIds: [id],
    });
    expect(structured(await agent.call('add_insight', { type: 'note', content: { text: 'hi' }, priority: 'HIGH' })).insight).toMatchObject({
      sourceAgentId: id,
      priority: 'HIGH',
    });
    const agents = structured(await agent.call('list_agents', { type: 'worker' }));
    expect(agents.agents.map((a: { id: string }) => a.id)).toContain(id);
  });

  it("refuses a READER's writes with FORBIDDEN and writes nothing", async () => {
    const { token } = await gw.createToken(unique('reader'), 'READER');
    const reader = await connect(token);
    const key = unique('r');
    await gw.ok(ADMIN_TOKEN, SET, { ns: 'common', key, value: 'kept' });
    for (const [tool, args] of [
      ['set_entry', { namespace: 'common', key, value: 'overwritten' }],
      ['delete_entry', { namespace: 'common', key }],
      ['increment_entry', { namespace: 'common', key: unique('n') }],
    ] as const) {
      const refused = await reader.call(tool, args);
      expect(refused.isError, tool).toBe(true);
      expect(textOf(refused), tool).toMatch(/^FORBIDDEN: /);
    }
    expect((await gw.ok(ADMIN_TOKEN, ENTRY, { ns: 'common', key })).entry).toMatchObject({ value: 'kept', version: 1 });
    expect(structured(await reader.call('get_entry', { namespace: 'common', key })).entry).toMatchObject({ value: 'kept' });
    // An agent-only call, refused by the contract's rule for readers.
    expect(textOf(await reader.call('heartbeat', { status: 'IDLE' }))).toMatch(/^FORBIDDEN: /);
  });

  it('names the field of a bad argument, and refuses arguments outside the input schema', async () => {
    const agent = await connect(await gw.registerAgent(unique('careless')));
    const bad = await agent.call('set_entry', { namespace: 'Not A Namespace', key: 'k', value: 1 });
    expect(textOf(bad)).toMatch(/^BAD_USER_INPUT: .*`namespace`/);
    const unknownArgument = await agent.call('get_entry', { namespace: 'common', key: 'k', sneaky: true });
    expect(unknownArgument.isError).toBe(true);
    expect(textOf(unknownArgument)).toMatch(/sneaky/);
  });
});

describe('a restricted namespace', () => {
  it('tells an agent without a grant nothing: errors and resource lists as for a namespace that does not exist', async () => {
    const outsider = await connect(await gw.registerAgent(unique('outsider')));
    const secret = unique('vault');
    const missing = unique('vault');
    const before = await allResources(outsider);

    await gw.createNamespace(secret, { openAccess: false, description: 'the secret plans' });
    await gw.ok(ADMIN_TOKEN, SET, { ns: secret, key: 'plan', value: { launch: 'tomorrow' } });

    const asked = async (ns: string) => {
      const texts: string[] = [];
      for (const [tool, args] of [
        ['get_entry', { namespace: ns, key: 'plan' }],
        ['set_entry', { namespace: ns, key: 'plan', value: 1 }],
        ['list_entries', { namespace: ns }],
        ['entry_history', { namespace: ns, key: 'plan' }],
        ['recent_changes', { namespace: ns }],
      ] as const) {
        const result = await outsider.call(tool, args);
        expect(result.isError, tool).toBe(true);
        texts.push(textOf(result));
      }
      for (const uri of [`statehouse://${ns}/global/plan`, `statehouse://${ns}`]) {
        texts.push(await outsider.client.readResource({ uri }).then(String, (error: Error) => error.message.replaceAll(ns, 'NS')));
        texts.push(await outsider.client.subscribeResource({ uri }).then(String, (error: Error) => error.message.replaceAll(ns, 'NS')));
      }
      return texts.map((text) => text.replaceAll(ns, 'NS'));
    };
    const secretAnswers = await asked(secret);
    expect(secretAnswers).toEqual(await asked(missing));
    expect(secretAnswers[0]).toMatch(/^FORBIDDEN: /);

    expect(await allResources(outsider)).toEqual(before);
    const { namespaces } = structured(await outsider.call('list_namespaces'));
    expect(JSON.stringify(namespaces)).not.toContain(secret);

    // The same namespace, once granted, is listed and read: the lists above would show it if they could.
    const insiderId = unique('insider');
    const insider = await connect(await gw.registerAgent(insiderId));
    await gw.ok(ADMIN_TOKEN, GRANT, { ns: secret, agent: insiderId, perm: 'READ' });
    const uris = (await allResources(insider)).map((resource) => resource.uri);
    expect(uris).toEqual(expect.arrayContaining([`statehouse://${secret}`, `statehouse://${secret}/global/plan`]));
    const read = await insider.client.readResource({ uri: `statehouse://${secret}/global/plan` });
    expect(JSON.parse((read.contents[0] as { text: string }).text)).toMatchObject({ value: { launch: 'tomorrow' }, version: 1 });
  });
});

/** Every resource of resources/list, following nextCursor. */
async function allResources(client: McpClient) {
  const resources: { uri: string; name: string }[] = [];
  let cursor: string | undefined;
  do {
    const page = await client.client.listResources(cursor === undefined ? {} : { cursor });
    resources.push(...page.resources);
    cursor = page.nextCursor;
  } while (cursor !== undefined);
  return resources;
}

describe('resources', () => {
  it('lists, page by page, every namespace and entry the caller can read, each once', async () => {
    const ns = unique('many');
    await gw.createNamespace(ns);
    const id = unique('pager');
    const agent = await connect(await gw.registerAgent(id, [ns]));
    const keys = Array.from({ length: 130 }, (_, i) => `key-${i.toString().padStart(3, '0')}`);
    await gw.ok(ADMIN_TOKEN, 'mutation($ops: [OperationInput!]!) { commit(input: { operations: $ops }) { revision } }', {
      ops: keys.map((key) => ({ set: { namespace: ns, key, value: key } })),
    });
    const first = await agent.client.listResources();
    expect(first.nextCursor).toBeDefined();
    expect(first.resources.length).toBeLessThanOrEqual(101);
    const uris = (await allResources(agent)).map((resource) => resource.uri);
    expect(new Set(uris).size).toBe(uris.length);
    const mine = uris.filter((uri) => uri.startsWith(`statehouse://${ns}`));
    expect(mine).toEqual([`statehouse://${ns}`, ...keys.map((key) => `statehouse://${ns}/global/${key}`)]);
    expect(uris).toContain('statehouse://common');
    await expect(agent.client.listResources({ cursor: 'not-a-cursor' })).rejects.toThrow(/Invalid cursor/);
  });

  it('reads entries whose scope and key need encoding, and answers a missing one as not found', async () => {
    const agent = await connect(await gw.registerAgent(unique('reader')));
    const templates = await agent.client.listResourceTemplates();
    expect(templates.resourceTemplates.map((template) => template.uriTemplate).sort()).toEqual([
      'statehouse://{namespace}',
      'statehouse://{namespace}/{scope}/{key}',
    ]);
    for (const [scope, key] of [
      ['thread:1/a', 'a/b c?#%'],
      ['global', '..'],
    ] as const) {
      await gw.ok(ADMIN_TOKEN, SET, { ns: 'common', key, scope, value: { scope, key } });
      const uri = `statehouse://common/${encodeURIComponent(scope)}/${encodeURIComponent(key)}`;
      const { contents } = await agent.client.readResource({ uri });
      expect(contents[0]).toMatchObject({ uri, mimeType: 'application/json' });
      expect(JSON.parse((contents[0] as { text: string }).text)).toMatchObject({ namespace: 'common', scope, key, value: { scope, key } });
    }
    await expect(agent.client.readResource({ uri: `statehouse://common/global/${unique('absent')}` })).rejects.toThrow(/No entry at/);
    await expect(agent.client.readResource({ uri: 'https://example.com/x' })).rejects.toThrow(/Not a Statehouse resource/);
    const namespace = await agent.client.readResource({ uri: 'statehouse://common' });
    expect(JSON.parse((namespace.contents[0] as { text: string }).text)).toMatchObject({ namespace: 'common' });
  });
});

describe('subscriptions', () => {
  it('notifies of a change made through GraphQL on another gateway process, for an entry and a namespace', async () => {
    const writer = await anotherProcess(gw, extraGateways);
    const ns = unique('live');
    await gw.createNamespace(ns);
    const agent = await connect(await gw.registerAgent(unique('listener'), [ns]));
    const entryUri = `statehouse://${ns}/thread%3A7/status`;
    const otherUri = `statehouse://${ns}/global/other`;
    await agent.client.subscribeResource({ uri: entryUri });
    await agent.client.subscribeResource({ uri: `statehouse://${ns}` });

    const entryUpdated = agent.nextUpdate(entryUri);
    const namespaceUpdated = agent.nextUpdate(`statehouse://${ns}`);
    await writer.ok(ADMIN_TOKEN, SET, { ns, key: 'status', scope: 'thread:7', value: 'running' });
    await Promise.all([entryUpdated, namespaceUpdated]);

    // A key that only starts like the entry's is not the entry; the namespace hears of it.
    const namespaceAgain = agent.nextUpdate(`statehouse://${ns}`);
    await writer.ok(ADMIN_TOKEN, SET, { ns, key: 'status-2', scope: 'thread:7', value: 'x' });
    await namespaceAgain;

    // After unsubscribing, a change of the entry is not told, while one subscribed to still is.
    await agent.client.unsubscribeResource({ uri: entryUri });
    await agent.client.subscribeResource({ uri: otherUri });
    const otherUpdated = agent.nextUpdate(otherUri);
    await writer.ok(ADMIN_TOKEN, SET, { ns, key: 'status', scope: 'thread:7', value: 'done' });
    await writer.ok(ADMIN_TOKEN, SET, { ns, key: 'other', value: 1 });
    await otherUpdated;
    expect(agent.updates.filter((uri) => uri === entryUri)).toHaveLength(1);
  });

  it('ends a subscription when access is revoked: one last notice, then reads are FORBIDDEN and changes untold', async () => {
    const ns = unique('guarded');
    await gw.createNamespace(ns, { openAccess: false });
    const id = unique('guest');
    const agent = await connect(await gw.registerAgent(id));
    await gw.ok(ADMIN_TOKEN, GRANT, { ns, agent: id, perm: 'READ' });
    const uri = `statehouse://${ns}/global/k`;
    await agent.client.subscribeResource({ uri });
    await agent.client.subscribeResource({ uri: 'statehouse://common' });

    const lastNotice = agent.nextUpdate(uri);
    await gw.ok(ADMIN_TOKEN, REVOKE_ACCESS, { ns, agent: id });
    await lastNotice;
    await expect(agent.client.readResource({ uri })).rejects.toThrow(/FORBIDDEN/);

    const marker = agent.nextUpdate('statehouse://common');
    await gw.ok(ADMIN_TOKEN, SET, { ns, key: 'k', value: 'unseen' });
    await gw.ok(ADMIN_TOKEN, SET, { ns: 'common', key: unique('marker'), value: 1 });
    await marker;
    expect(agent.updates.filter((updated) => updated === uri)).toHaveLength(1);
  });
});

describe('sessions', () => {
  it('ends the session when its token is revoked (on another gateway process too): its streams close and its id answers no more', async () => {
    const revoker = await anotherProcess(gw, extraGateways);
    const { id, token } = await gw.createToken(unique('short-lived'), 'READER');
    const subscribed = await connect(token);
    await subscribed.client.subscribeResource({ uri: 'statehouse://common' });
    // A session that only listens, with no subscription whose end would tell it.
    const idle = await connect(token);
    const sessionId = idle.sessionId()!;
    expect(structured(await idle.call('list_namespaces')).role).toBe('READER');

    await revoker.ok(ADMIN_TOKEN, 'mutation($id: ID!) { revokeToken(id: $id) }', { id });
    await Promise.all([subscribed.streamEnded, idle.streamEnded]);
    const after = await rawMcp(gw, { authorization: `Bearer ${token}`, 'mcp-session-id': sessionId });
    expect(after.status).toBe(401);
    expect(after.text).toContain('unknown or revoked');
    await expect(idle.call('list_namespaces')).rejects.toThrow(/unknown or revoked/);
  });

  it('ends the sessions of a deregistered agent', async () => {
    const id = unique('retired');
    const agent = await connect(await gw.registerAgent(id));
    await gw.ok(ADMIN_TOKEN, 'mutation($id: ID!) { deregisterAgent(id: $id) }', { id });
    await agent.streamEnded;
  });

  it('closes a session idle for idleSessionMs, unless it holds a subscription', async () => {
    const endpoint = new McpEndpoint({ graphql: (request) => gw.app.fetch(request), services: gw.app.services, idleSessionMs: 300 });
    const token = await gw.registerAgent(unique('idler'));
    const post = async (body: unknown, sessionId?: string) => {
      const headers: Record<string, string> = {
        authorization: `Bearer ${token}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        'mcp-protocol-version': '2025-06-18',
      };
      if (sessionId) headers['mcp-session-id'] = sessionId;
      const response = await endpoint.handle(new Request('http://127.0.0.1/mcp', { method: 'POST', headers, body: JSON.stringify(body) }));
      await response.text();
      return response;
    };
    /** Opens a session and its GET stream; the stream's text so far, and when it ends. */
    const open = async () => {
      const sessionId = (await post(INITIALIZE)).headers.get('mcp-session-id')!;
      await post({ jsonrpc: '2.0', method: 'notifications/initialized' }, sessionId);
      const stream = await endpoint.handle(
        new Request('http://127.0.0.1/mcp', {
          headers: {
            authorization: `Bearer ${token}`,
            accept: 'text/event-stream',
            'mcp-session-id': sessionId,
            'mcp-protocol-version': '2025-06-18',
          },
        }),
      );
      const received = { text: '' };
      const ended = (async () => {
        const reader = stream.body!.pipeThrough(new TextDecoderStream()).getReader();
        for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) received.text += chunk.value;
      })();
      return { sessionId, received, ended };
    };
    const subscribed = await open();
    const key = unique('watched');
    const subscribe = { jsonrpc: '2.0', id: 1, method: 'resources/subscribe', params: { uri: `statehouse://common/global/${key}` } };
    expect((await post(subscribe, subscribed.sessionId)).status).toBe(200);
    // Opened after the other's last request: once it has timed out, so would the other have.
    const idle = await open();

    await idle.ended;
    expect((await post({ jsonrpc: '2.0', id: 2, method: 'tools/list' }, idle.sessionId)).status).toBe(404);
    // The subscribed session outlived the idle one, and still hears of its entry.
    await gw.ok(ADMIN_TOKEN, SET, { ns: 'common', key, value: 1 });
    await eventually(() => subscribed.received.text.includes('notifications/resources/updated'), 10_000, 'the update on the live session');
    await endpoint.close();
    await subscribed.ended;
  });

  it('answers a session id sent with another token as one that does not exist', async () => {
    const owner = await connect(await gw.registerAgent(unique('owner')));
    const other = await gw.registerAgent(unique('other'));
    const stolen = await rawMcp(gw, { authorization: `Bearer ${other}`, 'mcp-session-id': owner.sessionId()! });
    const unknown = await rawMcp(gw, { authorization: `Bearer ${other}`, 'mcp-session-id': randomBytes(32).toString('base64url') });
    expect(stolen.status).toBe(404);
    expect(stolen.text).toBe(unknown.text);
    expect(owner.sessionId()).toMatch(/^[A-Za-z0-9_-]{43}$/);
    // The owner's session goes on.
    expect(structured(await owner.call('list_namespaces')).role).toBe('AGENT');
  });

  it('requires a valid bearer token', async () => {
    const none = await rawMcp(gw, {}, INITIALIZE);
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toMatch(/^Bearer/);
    expect(none.text).toContain('Authorization: Bearer <token>');
    const bad = await rawMcp(gw, { authorization: 'Bearer not-a-real-token-at-all' }, INITIALIZE);
    expect(bad.status).toBe(401);
    expect(bad.text).toContain('unknown or revoked');
    const query = await fetch(new URL(`/mcp?token=${ADMIN_TOKEN}`, gw.url), {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify(INITIALIZE),
    });
    expect(query.status).toBe(401);
  });

  it("refuses a page of another origin, and accepts the gateway's own and configured ones", async () => {
    const token = await gw.registerAgent(unique('browser'));
    const evil = await rawMcp(gw, { authorization: `Bearer ${token}`, origin: 'https://evil.example' }, INITIALIZE);
    expect(evil.status).toBe(403);
    for (const origin of ['https://agents.example', new URL(gw.url).origin]) {
      const accepted = await rawMcp(gw, { authorization: `Bearer ${token}`, origin }, INITIALIZE);
      expect(accepted.status, origin).toBe(200);
      expect(accepted.headers.get('mcp-session-id')).toBeTruthy();
      // A page may read the session id: CORS lets it see the header.
      expect(accepted.headers.get('access-control-expose-headers'), origin).toBe('mcp-session-id');
    }
  });

  it('opens sessions with initialize only, and ends one on DELETE', async () => {
    const token = await gw.registerAgent(unique('raw'));
    const notInitialize = await rawMcp(gw, { authorization: `Bearer ${token}` });
    expect(notInitialize.status).toBe(400);
    const get = await rawMcp(gw, { authorization: `Bearer ${token}` }, undefined, 'GET');
    expect(get.status).toBe(400);

    const client = await connect(token);
    const sessionId = client.sessionId()!;
    const deleted = await rawMcp(gw, { authorization: `Bearer ${token}`, 'mcp-session-id': sessionId }, undefined, 'DELETE');
    expect(deleted.status).toBe(200);
    const after = await rawMcp(gw, { authorization: `Bearer ${token}`, 'mcp-session-id': sessionId });
    expect(after.status).toBe(404);
  });
});

describe("the gateway's own rules, unchanged", () => {
  it("applies a tenant's schema, value limit, quota, session and subscription limits, rate limit and audit log", async () => {
    const admin = (await gw.ok(ADMIN_TOKEN, 'mutation($name: String!) { createTenant(name: $name) { token } }', { name: unique('tenant') }))
      .createTenant.token as string;
    await gw.ok(admin, 'mutation($input: CreateNamespaceInput!) { createNamespace(input: $input) { name } }', {
      input: { name: 'typed', schema: { type: 'object', properties: { n: { type: 'number' } }, required: ['n'] } },
    });
    await gw.ok(admin, 'mutation($patch: JSON!) { updateConfig(patch: $patch) }', {
      patch: { quotas: { maxEntries: 1 }, limits: { maxValueBytes: 1024, maxConnectionsPerToken: 2, maxSubscriptionsPerSocket: 1 } },
    });
    const id = unique('ruled');
    const token = (
      await gw.ok(admin, 'mutation($input: RegisterAgentInput!) { registerAgent(input: $input) { token } }', {
        input: { id, name: id, type: 'worker', stateNamespaces: ['typed'] },
      })
    ).registerAgent.token as string;
    const agent = await connect(token);

    const invalid = await agent.call('set_entry', { namespace: 'typed', key: 'a', value: { n: 'not a number' } });
    expect(textOf(invalid)).toMatch(/^VALIDATION_FAILED: .*JSON Schema at \/n/);
    const large = await agent.call('set_entry', { namespace: 'common', key: 'big', value: 'x'.repeat(1_500) });
    expect(textOf(large)).toMatch(/^PAYLOAD_TOO_LARGE: .*limit 1024/);
    structured(await agent.call('set_entry', { namespace: 'typed', key: 'a', value: { n: 1 } }));
    expect(textOf(await agent.call('set_entry', { namespace: 'typed', key: 'b', value: { n: 2 } }))).toMatch(/^QUOTA_EXCEEDED: /);

    // Sessions count against maxConnectionsPerToken, subscriptions against maxSubscriptionsPerSocket.
    // Initializes sent together count each other: one more session fits beside the agent's.
    const opened = await Promise.all(Array.from({ length: 3 }, () => rawMcp(gw, { authorization: `Bearer ${token}` }, INITIALIZE)));
    expect(opened.map((answer) => answer.status).sort()).toEqual([200, 429, 429]);
    expect(opened.find((answer) => answer.status === 429)?.text).toContain('at most 2');
    await agent.client.subscribeResource({ uri: 'statehouse://typed' });
    await expect(agent.client.subscribeResource({ uri: 'statehouse://common' })).rejects.toThrow(/RATE_LIMITED: At most 1 subscriptions/);

    const audit = async () =>
      (await gw.ok(admin, 'query($actor: String) { auditLog(actor: $actor, first: 100) { action target outcome } }', { actor: id }))
        .auditLog;
    await eventually(
      async () => (await audit()).some((event: { outcome: string }) => event.outcome === 'DENIED'),
      10_000,
      'the denied write in the audit log',
    );
    expect(await audit()).toEqual(
      expect.arrayContaining([
        { action: 'setEntry', target: 'typed/global/a', outcome: 'ALLOWED' },
        expect.objectContaining({ action: 'setEntry', target: 'typed/global/b', outcome: 'DENIED' }),
      ]),
    );

    await gw.ok(admin, 'mutation($patch: JSON!) { updateConfig(patch: $patch) }', { patch: { rateLimit: { perTokenPerSecond: 1 } } });
    const answers = await Promise.all(Array.from({ length: 5 }, () => agent.call('get_entry', { namespace: 'typed', key: 'a' })));
    expect(answers.map(textOf).find((text) => text.startsWith('RATE_LIMITED'))).toMatch(/^RATE_LIMITED: .*wait a second and retry/);
  });
});

describe('examples/mcp/agent.ts', () => {
  it('runs as the README says: reads, writes with compare-and-set, recovers from a conflict and hears of its change', async () => {
    const token = await gw.registerAgent(unique('example'));
    const root = new URL('..', import.meta.url).pathname;
    const output = await new Promise<string>((resolve, reject) =>
      execFile(
        process.execPath,
        ['--import', 'tsx', 'examples/mcp/agent.ts', new URL('/mcp', gw.url).toString()],
        { cwd: root, env: { ...process.env, STATEHOUSE_TOKEN: token }, timeout: 60_000 },
        (error, stdout, stderr) => (error ? reject(new Error(`${error.message}\n${stdout}\n${stderr}`)) : resolve(stdout)),
      ),
    );
    expect(output).toContain('tools: get_entry');
    expect(output).toMatch(/set_entry → error: VERSION_CONFLICT: .*current version 1/);
    expect(output).toContain('updated: statehouse://common/global/example-plan');
    expect(output).toMatch(/resource: .*"value":\{"step":"final"\}.*"version":2/);
  });
});
