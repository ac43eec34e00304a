import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, attached, eventually, type Gateway, startGateway, subscribe } from './support/gateway.js';

/**
 * The background-agents flow of the seeds, end to end through the API: two agents register and
 * report; a dashboard with a READER token polls the overview and watches four live feeds.
 */
describe('a fleet of two agents and a dashboard', () => {
  let gw: Gateway;
  beforeAll(async () => {
    gw = await startGateway();
  });
  afterAll(() => gw.close());

  it('shows the dashboard every registration, heartbeat, metric, error and insight as it happens', async () => {
    const dashboard = (await gw.createToken('dashboard', 'READER')).token;
    const socket = gw.ws(dashboard);
    const agents = subscribe(socket, 'subscription { agentChanged { id status } }');
    const insights = subscribe(socket, 'subscription { insightAdded(minPriority: HIGH) { type priority sourceAgentId } }');
    const errors = subscribe(socket, 'subscription { errorReported { type fingerprint count agentIds } }');
    const metrics = subscribe(socket, 'subscription { metricRecorded(name: "rows_imported") { name value agentId } }');
    // The probes come from an agent of the test's own, deregistered before the flow with its insights
    // acted upon; its metrics and errors stay, so the summary is the importer's and errors are counted from here.
    const probe = await gw.registerAgent('probe', [], { type: 'probe' });
    const probeInsights: string[] = [];
    await attached(
      agents,
      (kind) =>
        gw.ok(probe, 'mutation($s: AgentStatus!) { heartbeat(input: { status: $s }) { id } }', { s: kind === 'fence' ? 'ERROR' : 'IDLE' }),
      (result) => result.data?.agentChanged.status === 'ERROR',
    );
    await attached(
      metrics,
      (kind) =>
        gw.ok(probe, 'mutation($v: Float!) { recordMetrics(metrics: [{ name: "rows_imported", value: $v }]) }', {
          v: kind === 'fence' ? -2 : -1,
        }),
      (result) => result.data?.metricRecorded.value === -2,
    );
    await attached(
      errors,
      (kind) => gw.ok(probe, 'mutation($m: String!) { reportError(input: { type: "probe", message: $m }) { id } }', { m: kind }),
      (result) => result.data?.errorReported.fingerprint === 'fence',
    );
    await attached(
      insights,
      async (kind) => {
        const { addInsight } = await gw.ok(
          probe,
          'mutation($p: Priority!) { addInsight(input: { type: "probe", content: 0, priority: $p }) { id } }',
          {
            p: kind === 'fence' ? 'CRITICAL' : 'HIGH',
          },
        );
        probeInsights.push(addInsight.id);
      },
      (result) => result.data?.insightAdded.priority === 'CRITICAL',
    );
    for (const id of probeInsights) await gw.ok(ADMIN_TOKEN, 'mutation($id: ID!) { markInsightActedUpon(id: $id) { id } }', { id });
    await gw.ok(ADMIN_TOKEN, 'mutation { deregisterAgent(id: "probe") }');
    const probeErrors = (await gw.ok(dashboard, '{ systemOverview { errorsLastHour } }')).systemOverview.errorsLastHour;

    const importer = await gw.registerAgent('profile-importer', [], { type: 'executor', capabilities: ['import'] });
    const bridge = await gw.registerAgent('langsmith-bridge', [], { type: 'bridge', capabilities: ['trace'] });
    for (const [token, status] of [
      [importer, 'BUSY'],
      [bridge, 'IDLE'],
    ] as const) {
      await gw.ok(token, 'mutation($s: AgentStatus!) { heartbeat(input: { status: $s }) { id } }', { s: status });
    }
    await gw.ok(
      importer,
      'mutation { recordMetrics(metrics: [{ name: "rows_imported", value: 120 }, { name: "rows_imported", value: 80 }]) }',
    );
    await gw.ok(bridge, 'mutation { recordMetrics(metrics: [{ name: "traces_forwarded", value: 7 }]) }');
    for (const [token, id] of [
      [importer, 1042],
      [bridge, 77],
    ] as const) {
      await gw.ok(token, 'mutation($m: String!) { reportError(input: { type: "timeout", message: $m }) { id } }', {
        m: `profile ${id} timed out after 30 seconds`,
      });
    }
    await gw.ok(importer, 'mutation { addInsight(input: { type: "capacity", content: { hint: "add a worker" }, priority: HIGH }) { id } }');
    await gw.ok(bridge, 'mutation { addInsight(input: { type: "note", content: "quiet night", priority: LOW }) { id } }');
    await gw.ok(bridge, 'mutation { recordOptimization(input: { type: "batch", description: "batch 50 → 100", success: true }) { id } }');

    expect((await agents.waitFor(4)).map((r) => r.data?.agentChanged)).toEqual([
      { id: 'profile-importer', status: 'STARTING' },
      { id: 'langsmith-bridge', status: 'STARTING' },
      { id: 'profile-importer', status: 'BUSY' },
      { id: 'langsmith-bridge', status: 'IDLE' },
    ]);
    expect((await metrics.waitFor(2)).map((r) => r.data?.metricRecorded)).toEqual([
      { name: 'rows_imported', value: 120, agentId: 'profile-importer' },
      { name: 'rows_imported', value: 80, agentId: 'profile-importer' },
    ]);
    const reported = (await errors.waitFor(2)).map((r) => r.data?.errorReported);
    expect(reported[1]).toMatchObject({
      type: 'timeout',
      count: 2,
      agentIds: expect.arrayContaining(['profile-importer', 'langsmith-bridge']),
    });
    expect(reported[0].fingerprint).toBe(reported[1].fingerprint);
    expect((await insights.waitFor(1)).map((r) => r.data?.insightAdded)).toEqual([
      { type: 'capacity', priority: 'HIGH', sourceAgentId: 'profile-importer' },
    ]);

    const overview = async () =>
      (await gw.ok(dashboard, '{ systemOverview { agentsByStatus activeAgents errorsLastHour openInsights } }')).systemOverview;
    await eventually(async () => (await overview()).errorsLastHour === probeErrors + 2, 5_000, 'the overview to count both errors');
    expect(await overview()).toEqual({
      agentsByStatus: { STARTING: 0, IDLE: 1, BUSY: 1, ERROR: 0, STOPPED: 0 },
      activeAgents: 2,
      errorsLastHour: probeErrors + 2,
      openInsights: 2,
    });
    const { optimizations, metricSummary } = await gw.ok(
      dashboard,
      '{ optimizations { type success sourceAgentId } metricSummary(name: "rows_imported", agentId: "profile-importer") { count avg } }',
    );
    expect(optimizations).toEqual([{ type: 'batch', success: true, sourceAgentId: 'langsmith-bridge' }]);
    expect(metricSummary).toEqual([{ count: 2, avg: 100 }]);
    expect(await gw.app.services.errors.removeExpired()).toBe(0);
  });
});
