import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, attached, eventually, type Gateway, startGateway, subscribe } from './support/gateway.js';
import { openRawSocket } from './support/raw-socket.js';

const HEARTBEAT = 'mutation($input: HeartbeatInput!) { heartbeat(input: $input) { id status active lastHeartbeatAt heartbeat } }';

describe('the fleet: agents, system state, overview, config and tenants', () => {
  let gw: Gateway;
  let worker: string;
  let reader: string;
  beforeAll(async () => {
    gw = await startGateway();
    worker = await gw.registerAgent('worker-1', [], { type: 'importer', capabilities: ['import'] });
    reader = (await gw.createToken('dashboard', 'READER')).token;
  });
  afterAll(() => gw.close());

  const code = (result: { errors?: { extensions?: Record<string, unknown> }[] }) => result.errors?.[0]?.extensions;

  it('takes heartbeats from an agent for itself only and marks it active', async () => {
    const { heartbeat } = await gw.ok(worker, HEARTBEAT, { input: { status: 'BUSY', data: { queue: 3 } } });
    expect(heartbeat).toMatchObject({ id: 'worker-1', status: 'BUSY', active: true, heartbeat: { queue: 3 } });
    for (const token of [ADMIN_TOKEN, reader]) {
      expect(code(await gw.gql(token, HEARTBEAT, { input: { status: 'IDLE' } }))?.code).toBe('FORBIDDEN');
    }
    const { agents } = await gw.ok(reader, '{ agents(activeWithinSeconds: 60) { id status } }');
    expect(agents).toEqual([{ id: 'worker-1', status: 'BUSY' }]);
    expect((await gw.ok(reader, '{ agents(status: IDLE) { id } }')).agents).toEqual([]);
  });

  it('tells subscribers of registrations and heartbeats, filtered by type', async () => {
    const sub = subscribe(gw.ws(reader), 'subscription { agentChanged(type: "scout") { id status } }');
    // A scout of the test's own sends the probes, and is gone before the overview counts the fleet.
    const probe = await gw.registerAgent('scout-probe', [], { type: 'scout' });
    await attached(
      sub,
      (kind) => gw.ok(probe, HEARTBEAT, { input: { status: kind === 'fence' ? 'ERROR' : 'IDLE' } }),
      (result) => result.data?.agentChanged.status === 'ERROR',
    );
    await gw.ok(ADMIN_TOKEN, 'mutation { deregisterAgent(id: "scout-probe") }');
    const scout = await gw.registerAgent('scout-1', [], { type: 'scout' });
    await gw.ok(worker, HEARTBEAT, { input: { status: 'IDLE' } });
    await gw.ok(scout, HEARTBEAT, { input: { status: 'BUSY' } });
    const results = await sub.waitFor(2);
    expect(results.map((r) => r.data?.agentChanged)).toEqual([
      { id: 'scout-1', status: 'STARTING' },
      { id: 'scout-1', status: 'BUSY' },
    ]);
  });

  it('keeps system state in system/global/state under the access rule', async () => {
    expect((await gw.ok(reader, '{ systemState }')).systemState).toEqual({});
    const denied = await gw.gql(worker, 'mutation { updateSystemState(patch: { mode: "x" }) }');
    expect(code(denied)?.code).toBe('FORBIDDEN');
    await gw.ok(ADMIN_TOKEN, 'mutation { grantAccess(input: { namespace: "system", agentId: "worker-1" }) { permission } }');
    const { updateSystemState } = await gw.ok(worker, 'mutation { updateSystemState(patch: { mode: "run", limits: { a: 1 } }) }');
    expect(updateSystemState).toEqual({ mode: 'run', limits: { a: 1 } });
    await gw.ok(worker, 'mutation { updateSystemState(patch: { limits: { a: null, b: 2 } }) }');
    expect((await gw.ok(reader, '{ systemState }')).systemState).toEqual({ mode: 'run', limits: { b: 2 } });
    const { entry } = await gw.ok(reader, '{ entry(namespace: "system", key: "state") { version updatedBy } }');
    expect(entry).toEqual({ version: 2, updatedBy: 'worker-1' });
  });

  it('gives a dashboard the overview in one query', async () => {
    const { systemOverview } = await gw.ok(
      reader,
      '{ systemOverview { agentsByStatus activeAgents namespaces entries revision errorsLastHour openInsights } }',
    );
    expect(systemOverview.agentsByStatus).toEqual({ STARTING: 0, IDLE: 1, BUSY: 1, ERROR: 0, STOPPED: 0 });
    expect(systemOverview.activeAgents).toBe(2);
    expect(systemOverview.namespaces).toBe(2);
    expect(systemOverview.entries).toBe(1);
    // The revision counts final changes only: below the server-wide watermark, which other test files'
    // transactions on the same PostgreSQL can hold back for a moment.
    await eventually(
      async () => BigInt((await gw.ok(reader, '{ systemOverview { revision } }')).systemOverview.revision) > 0n,
      10_000,
      'the overview revision to pass 0',
    );
  });

  it('fills config defaults and merges valid patches only', async () => {
    const { config } = await gw.ok(reader, '{ config }');
    expect(config).toEqual({
      activeWindowSeconds: 300,
      metricsRetentionHours: 168,
      limits: {
        maxValueBytes: 1048576,
        maxCommitOperations: 500,
        maxMetricsPerCall: 1000,
        maxDepth: 12,
        maxAliases: 30,
        maxCost: 5000,
        maxBatchOperations: 20,
        maxConnectionsPerToken: 2000,
        maxSubscriptionsPerSocket: 100,
      },
      quotas: { maxEntries: null, maxBytes: null },
      rateLimit: { perTokenPerSecond: null },
    });
    const UPDATE = 'mutation($patch: JSON!) { updateConfig(patch: $patch) }';
    for (const [patch, field] of [
      [{ nope: 1 }, 'nope'],
      [{ limits: { maxDepth: 'deep' } }, 'limits.maxDepth'],
      [{ limits: { unknownLimit: 3 } }, 'limits.unknownLimit'],
      [{ activeWindowSeconds: 0 }, 'activeWindowSeconds'],
    ] as const) {
      expect(code(await gw.gql(ADMIN_TOKEN, UPDATE, { patch })), JSON.stringify(patch)).toMatchObject({ code: 'BAD_USER_INPUT', field });
    }
    expect(code(await gw.gql(reader, UPDATE, { patch: { activeWindowSeconds: 10 } }))?.code).toBe('FORBIDDEN');
    const { updateConfig } = await gw.ok(ADMIN_TOKEN, UPDATE, { patch: { activeWindowSeconds: 1, quotas: { maxEntries: 10 } } });
    expect(updateConfig).toMatchObject({ activeWindowSeconds: 1, quotas: { maxEntries: 10, maxBytes: null } });
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    expect((await gw.ok(reader, '{ agent(id: "worker-1") { active } }')).agent.active).toBe(false);
    const restored = await gw.ok(ADMIN_TOKEN, UPDATE, { patch: { activeWindowSeconds: null, quotas: null } });
    expect(restored.updateConfig).toEqual(config);
  });

  it('lets only the bootstrap admin create tenants, and keeps tenants apart', async () => {
    const other = await gw.createToken('second-admin', 'ADMIN');
    expect(code(await gw.gql(other.token, 'mutation { createTenant(name: "acme") { token } }'))?.code).toBe('FORBIDDEN');
    const { createTenant } = await gw.ok(ADMIN_TOKEN, 'mutation { createTenant(name: "acme") { token role } }');
    expect(createTenant.role).toBe('ADMIN');
    expect(code(await gw.gql(ADMIN_TOKEN, 'mutation { createTenant(name: "acme") { token } }'))).toMatchObject({
      code: 'BAD_USER_INPUT',
      field: 'name',
    });
    expect(code(await gw.gql(ADMIN_TOKEN, 'mutation { createTenant(name: "Not OK") { token } }'))).toMatchObject({
      code: 'BAD_USER_INPUT',
      field: 'name',
    });
    const acme = createTenant.token;
    expect((await gw.ok(acme, '{ viewer { tenant } }')).viewer.tenant).toBe('acme');
    expect((await gw.ok(acme, '{ agents { id } }')).agents).toEqual([]);
    expect((await gw.ok(acme, '{ systemState }')).systemState).toEqual({});
    const { namespaces } = await gw.ok(acme, '{ namespaces { name entryCount } }');
    expect(namespaces).toEqual([
      { name: 'common', entryCount: 0 },
      { name: 'system', entryCount: 0 },
    ]);
    expect((await gw.ok(acme, '{ changes { nodes { key } } }')).changes.nodes).toEqual([]);
    expect(
      code(await gw.gql(acme, 'mutation { grantAccess(input: { namespace: "common", agentId: "worker-1" }) { permission } }')),
    ).toMatchObject({
      code: 'BAD_USER_INPUT',
      field: 'agentId',
    });
  });

  it('ends fleet subscriptions when their token is revoked, and delivers nothing after', async () => {
    const watcher = await gw.createToken('short-lived', 'READER');
    // The watcher's subscription on a raw socket that stays open: what the server sends after the end is seen.
    const socket = await openRawSocket(gw.wsUrl);
    socket.send({ type: 'connection_init', payload: { authorization: `Bearer ${watcher.token}` } });
    expect(await socket.waitFor((frame) => frame.type === 'connection_ack')).not.toBeNull();
    socket.send({ id: 'watch', type: 'subscribe', payload: { query: 'subscription { agentChanged { id status } }' } });
    const watched = () => socket.frames.filter((frame) => frame.id === 'watch');
    await eventually(
      async () => {
        await gw.ok(worker, HEARTBEAT, { input: { status: 'IDLE' } });
        return watched().length > 0;
      },
      10_000,
      'the subscription to attach',
    );

    await gw.ok(ADMIN_TOKEN, 'mutation($id: ID!) { revokeToken(id: $id) }', { id: watcher.id });
    expect(await socket.waitFor((frame) => frame.type === 'complete' && frame.id === 'watch')).not.toBeNull();
    const end = watched().findIndex((frame) => frame.payload?.errors);
    expect(watched()[end]?.payload?.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
    expect(
      watched()
        .slice(end + 1)
        .map((frame) => frame.type),
    ).toEqual(['complete']);

    // Later heartbeats (the probes and fence that attach the observer) reach a subscriber that may read
    // them, but not the revoked token's socket, still open.
    const observer = subscribe(gw.ws(reader), 'subscription { agentChanged { id status } }');
    await attached(
      observer,
      (kind) => gw.ok(worker, HEARTBEAT, { input: { status: kind === 'fence' ? 'BUSY' : 'IDLE' } }),
      (result) => result.data?.agentChanged.status === 'BUSY',
    );
    expect(socket.isOpen()).toBe(true);
    expect(
      watched()
        .slice(end + 1)
        .map((frame) => frame.type),
    ).toEqual(['complete']);
    observer.stop();
    socket.close();
  });
});
