/**
 * What a hostile client's black-box probe found (issue 14), through the public surface: an import
 * that loosened a namespace, namespace names shown to agents that may not learn them, refusals that
 * flooded the audit log, metric points that broke aggregation, sockets and streams held open or
 * unread, foreign origins on WebSocket, and keys that display as something they are not. Every test
 * works in a tenant of its own.
 */
import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, eventually, type Gateway, type GraphQLResponse, startGateway, subscribe } from './support/gateway.js';
import WebSocket from 'ws';
import { openRawSocket, type RawSocket } from './support/raw-socket.js';
import { openSse } from './support/sse.js';

/** A gateway that can seal, so that sensitive namespaces can be tried too. */
let gw: Gateway;
beforeAll(async () => {
  gw = await startGateway({ app: { encryptionKey: randomBytes(32).toString('hex') } });
});
afterAll(async () => {
  await gw?.close();
});

let counter = 0;
/** A fresh name, valid as a tenant, namespace, agent id, key or token name. */
const unique = (label: string) => `${label}-${(++counter).toString(36)}-${Math.random().toString(36).slice(2, 8)}`;

/** The one error of `result`, which must carry `code` (and name `field` when given). */
function expectError(result: GraphQLResponse, code: string, field?: string): NonNullable<GraphQLResponse['errors']>[number] {
  const error = result.errors?.[0];
  if (error?.extensions?.code !== code || (field !== undefined && error.extensions.field !== field)) {
    throw new Error(`expected ${code}${field ? ` naming ${field}` : ''}, got ${JSON.stringify(result)}`);
  }
  return error;
}

/** A tenant of its own and its admin token. */
async function newTenant(label: string): Promise<string> {
  const data = await gw.ok(ADMIN_TOKEN, 'mutation($name: String!) { createTenant(name: $name) { token } }', { name: unique(label) });
  return data.createTenant.token as string;
}

async function addNamespace(admin: string, name: string, settings: Record<string, unknown> = {}): Promise<void> {
  await gw.ok(admin, 'mutation($input: CreateNamespaceInput!) { createNamespace(input: $input) { name } }', {
    input: { name, ...settings },
  });
}

async function addAgent(admin: string, id: string, stateNamespaces: string[] = []): Promise<string> {
  const data = await gw.ok(admin, 'mutation($input: RegisterAgentInput!) { registerAgent(input: $input) { token } }', {
    input: { id, name: id, type: 'worker', stateNamespaces },
  });
  return data.registerAgent.token as string;
}

const SET =
  'mutation($ns: String!, $key: String!, $value: JSON!) { setEntry(input: { namespace: $ns, key: $key, value: $value }) { key version } }';
const KEYS = 'query($ns: String!) { entries(namespace: $ns) { nodes { key } } }';
const IMPORT = 'mutation($data: JSON!, $mode: ImportMode) { importState(data: $data, mode: $mode) }';
const exportOf = (namespaces: unknown[]) => ({ format: 'statehouse-export', version: 1, namespaces });

describe('keys that display as something they are not', () => {
  const INVISIBLE: [string, string][] = [
    ['U+202E right-to-left override', '\u202e'],
    ['U+202A left-to-right embedding', '\u202a'],
    ['U+202B right-to-left embedding', '\u202b'],
    ['U+202C pop directional formatting', '\u202c'],
    ['U+202D left-to-right override', '\u202d'],
    ['U+2066 left-to-right isolate', '\u2066'],
    ['U+2067 right-to-left isolate', '\u2067'],
    ['U+2068 first strong isolate', '\u2068'],
    ['U+2069 pop directional isolate', '\u2069'],
    ['U+200E left-to-right mark', '\u200e'],
    ['U+200F right-to-left mark', '\u200f'],
    ['U+061C Arabic letter mark', '\u061c'],
    ['U+200B zero width space', '\u200b'],
    ['U+200C zero width non-joiner', '\u200c'],
    ['U+200D zero width joiner', '\u200d'],
    ['U+2060 word joiner', '\u2060'],
    ['U+FEFF zero width no-break space', '\ufeff'],
  ];

  let admin: string;
  beforeAll(async () => {
    admin = await newTenant('bidi');
  });

  it.each(INVISIBLE)(
    'refuses a key holding %s with BAD_USER_INPUT naming key, on every write path, and writes nothing',
    async (_name, char) => {
      const key = `invoice${char}fdp.exe`;
      expectError(await gw.gql(admin, SET, { ns: 'common', key, value: 1 }), 'BAD_USER_INPUT', 'key');
      expectError(
        await gw.gql(
          admin,
          'mutation($key: String!) { commit(input: { operations: [{ set: { namespace: "common", key: $key, value: 1 } }] }) { revision } }',
          {
            key,
          },
        ),
        'BAD_USER_INPUT',
        'key',
      );
      expectError(
        await gw.gql(admin, IMPORT, { data: exportOf([{ name: 'common', entries: [{ scope: 'global', key, value: 1 }] }]) }),
        'BAD_USER_INPUT',
        'namespaces[0].entries[0].key',
      );
      expectError(
        await gw.gql(admin, 'query($p: String!) { entries(namespace: "common", prefix: $p) { nodes { key } } }', { p: key }),
        'BAD_USER_INPUT',
        'prefix',
      );
      expect((await gw.ok(admin, KEYS, { ns: 'common' })).entries.nodes).toEqual([]);
    },
  );

  it('still takes keys in any script, with emoji and ordinary punctuation', async () => {
    const own = await newTenant('scripts');
    for (const key of ['naïve café', 'ключ', 'مفتاح', 'キー', '🔑 key', 'a/b:c@d#e']) {
      expect((await gw.ok(own, SET, { ns: 'common', key, value: 1 })).setEntry).toEqual({ key, version: 1 });
    }
  });
});

describe('importState never changes a setting it is not given', () => {
  const NAMESPACE =
    'query($name: String!) { namespace(name: $name) { openAccess schema description historyLimit defaultValue entryCount } }';
  const ENTRY = 'query($ns: String!, $key: String!) { entry(namespace: $ns, key: $key) { value } }';
  const PLAN_SCHEMA = { type: 'object', required: ['step'] };

  /** A tenant with a restricted, typed namespace, and an agent that lists it but has no grant. */
  async function restricted() {
    const admin = await newTenant('import');
    await addNamespace(admin, 'secretplans', { openAccess: false, schema: PLAN_SCHEMA, description: 'plans', historyLimit: 3 });
    await gw.ok(admin, SET, { ns: 'secretplans', key: 'plan', value: { step: 0 } });
    const agent = await addAgent(admin, unique('snoop'), ['secretplans']);
    expectError(await gw.gql(agent, ENTRY, { ns: 'secretplans', key: 'plan' }), 'FORBIDDEN');
    return { admin, agent };
  }

  it.each(['MERGE', 'REPLACE'])('keeps a namespace restricted and typed when a %s import gives only entries', async (mode) => {
    const { admin, agent } = await restricted();
    const data = exportOf([{ name: 'secretplans', entries: [{ key: 'plan', value: { step: 1 } }] }]);
    expect((await gw.ok(admin, IMPORT, { data, mode })).importState).toBe(true);
    expect((await gw.ok(admin, NAMESPACE, { name: 'secretplans' })).namespace).toEqual({
      openAccess: false,
      schema: PLAN_SCHEMA,
      description: 'plans',
      historyLimit: 3,
      defaultValue: null,
      entryCount: 1,
    });
    expect((await gw.ok(admin, ENTRY, { ns: 'secretplans', key: 'plan' })).entry).toEqual({ value: { step: 1 } });
    expectError(await gw.gql(agent, ENTRY, { ns: 'secretplans', key: 'plan' }), 'FORBIDDEN');
  });

  it("validates imported entries against the namespace's schema when the import gives none, and imports nothing of a failing document", async () => {
    const { admin } = await restricted();
    const data = exportOf([
      {
        name: 'secretplans',
        entries: [
          { key: 'fine', value: { step: 2 } },
          { key: 'plan', value: 'not an object' },
        ],
      },
    ]);
    const refused = expectError(await gw.gql(admin, IMPORT, { data }), 'VALIDATION_FAILED');
    expect(refused.extensions).toMatchObject({ field: 'namespaces[0].entries[1].value', path: '/' });
    expect((await gw.ok(admin, KEYS, { ns: 'secretplans' })).entries.nodes).toEqual([{ key: 'plan' }]);
    expect((await gw.ok(admin, ENTRY, { ns: 'secretplans', key: 'plan' })).entry).toEqual({ value: { step: 0 } });
  });

  it('changes exactly the settings an import gives: opening a namespace takes an explicit openAccess: true', async () => {
    const { admin, agent } = await restricted();
    await gw.ok(admin, IMPORT, { data: exportOf([{ name: 'secretplans', description: 'renamed', schema: null }]) });
    expect((await gw.ok(admin, NAMESPACE, { name: 'secretplans' })).namespace).toMatchObject({
      openAccess: false,
      schema: null,
      description: 'renamed',
      historyLimit: 3,
    });
    expectError(await gw.gql(agent, ENTRY, { ns: 'secretplans', key: 'plan' }), 'FORBIDDEN');

    await gw.ok(admin, IMPORT, { data: exportOf([{ name: 'secretplans', openAccess: true }]) });
    expect((await gw.ok(agent, ENTRY, { ns: 'secretplans', key: 'plan' })).entry).toEqual({ value: { step: 0 } });
  });

  it('refuses a setting of the wrong type, or a defaultValue the effective schema rejects, naming it, and changes nothing', async () => {
    const { admin } = await restricted();
    const before = (await gw.ok(admin, NAMESPACE, { name: 'secretplans' })).namespace;
    for (const [settings, field] of [
      [{ openAccess: 'yes' }, 'namespaces[0].openAccess'],
      [{ openAccess: 1 }, 'namespaces[0].openAccess'],
      [{ sensitive: 'false' }, 'namespaces[0].sensitive'],
      [{ description: 42 }, 'namespaces[0].description'],
      [{ defaultValue: 5 }, 'namespaces[0].defaultValue'],
    ] as const) {
      const data = exportOf([{ name: 'secretplans', ...settings }]);
      expectError(await gw.gql(admin, IMPORT, { data }), 'BAD_USER_INPUT', field);
    }
    expect((await gw.ok(admin, NAMESPACE, { name: 'secretplans' })).namespace).toEqual(before);
  });

  it('creates a namespace it does not hold with the defaults of createNamespace for what it leaves out', async () => {
    const admin = await newTenant('import-new');
    await gw.ok(admin, IMPORT, { data: exportOf([{ name: 'fresh', entries: [{ key: 'k', value: 1 }] }]) });
    expect((await gw.ok(admin, NAMESPACE, { name: 'fresh' })).namespace).toEqual({
      openAccess: true,
      schema: null,
      description: null,
      historyLimit: null,
      defaultValue: null,
      entryCount: 1,
    });
  });
});

describe('namespace names an agent may not learn', () => {
  const HEARTBEAT = 'mutation { heartbeat(input: { status: BUSY }) { id } }';

  /**
   * Agent `nosy` lists only `shared` and has a READ grant on `granted`; agent `keeper` lists every
   * namespace and has a grant on the restricted one. The hidden names are unique to this run, so
   * finding one in an answer to `nosy` can only mean it leaked.
   */
  async function fleet() {
    const admin = await newTenant('names');
    const hidden = { restricted: unique('restricted'), sensitive: unique('sensitive'), open: unique('unlisted'), absent: unique('absent') };
    const granted = unique('granted');
    await addNamespace(admin, 'shared');
    await addNamespace(admin, granted);
    await addNamespace(admin, hidden.restricted, { openAccess: false });
    await addNamespace(admin, hidden.sensitive, { sensitive: true });
    await addNamespace(admin, hidden.open);
    const keeperId = unique('keeper');
    const nosyId = unique('nosy');
    const listed = ['shared', granted, hidden.restricted, hidden.sensitive, hidden.open, hidden.absent];
    const keeper = await addAgent(admin, keeperId, listed);
    const nosy = await addAgent(admin, nosyId, ['shared', hidden.absent]);
    const grant =
      'mutation($ns: String!, $id: ID!, $p: Permission) { grantAccess(input: { namespace: $ns, agentId: $id, permission: $p }) { namespace } }';
    await gw.ok(admin, grant, { ns: hidden.restricted, id: keeperId, p: 'WRITE' });
    await gw.ok(admin, grant, { ns: granted, id: nosyId, p: 'READ' });
    return { admin, keeper, keeperId, nosy, nosyId, listed, granted, hidden: Object.values(hidden) };
  }

  it("shows an agent only the names it can reach in other agents' stateNamespaces, through agents, agent and viewer", async () => {
    const { admin, keeper, keeperId, nosy, listed, granted, hidden } = await fleet();
    const asked = `query($id: ID!) {
      agents { id stateNamespaces }
      agent(id: $id) { stateNamespaces }
      viewer { agent { stateNamespaces } }
    }`;
    const seen = await gw.gql(nosy, asked, { id: keeperId });
    expect(seen.errors).toBeUndefined();
    expect(seen.data?.agent).toEqual({ stateNamespaces: ['shared', granted] });
    expect(seen.data?.agents.find((agent: { id: string }) => agent.id === keeperId)).toEqual({
      id: keeperId,
      stateNamespaces: ['shared', granted],
    });
    // Its own list too: a name it lists but cannot reach (not created yet) is not shown.
    expect(seen.data?.viewer).toEqual({ agent: { stateNamespaces: ['shared'] } });
    for (const name of hidden) expect(JSON.stringify(seen)).not.toContain(name);

    // The agent that can reach them sees them; an admin and a reader see every name.
    expect((await gw.ok(keeper, asked, { id: keeperId })).agent.stateNamespaces).toEqual(listed.slice(0, 5));
    const reader = (
      await gw.ok(admin, 'mutation($name: String!) { createToken(input: { name: $name, role: READER }) { token } }', {
        name: unique('reader'),
      })
    ).createToken.token;
    for (const token of [admin, reader]) expect((await gw.ok(token, asked, { id: keeperId })).agent.stateNamespaces).toEqual(listed);
  });

  it('shows an agent only the names it can reach in agentChanged payloads', async () => {
    const { keeper, keeperId, nosy, granted, hidden } = await fleet();
    const watch = subscribe(gw.ws(nosy), 'subscription { agentChanged { id stateNamespaces } }');
    // The subscription is live once a heartbeat of its own arrives; then the other agent's.
    await eventually(async () => {
      await gw.ok(nosy, HEARTBEAT);
      return watch.results.length > 0;
    });
    await gw.ok(keeper, HEARTBEAT);
    await eventually(() => watch.results.some((result) => result.data?.agentChanged.id === keeperId));
    watch.stop();
    expect(watch.results[0]?.data?.agentChanged.stateNamespaces).toEqual(['shared']);
    expect(watch.results.at(-1)?.data?.agentChanged).toEqual({ id: keeperId, stateNamespaces: ['shared', granted] });
    for (const name of hidden) expect(JSON.stringify(watch.results)).not.toContain(name);
  });

  it('names no namespace an agent cannot reach anywhere it can ask: overview, namespaces, changes, fleet', async () => {
    const { admin, nosy, hidden } = await fleet();
    for (const ns of ['shared', hidden[0] as string]) await gw.ok(admin, SET, { ns, key: 'k', value: 1 });
    const everything = `{
      viewer { namespaces { namespace } agent { stateNamespaces } }
      namespaces { name }
      changes { nodes { namespace } }
      agents { stateNamespaces metadata heartbeat }
      systemOverview { namespaces entries }
      systemState
      errorPatterns { sampleMessage }
      insights { content }
    }`;
    const answer = await gw.gql(nosy, everything);
    expect(answer.errors).toBeUndefined();
    for (const name of hidden) expect(JSON.stringify(answer)).not.toContain(name);
  });
});

describe('metric points at the edge of float8', () => {
  const MAX = Number.MAX_VALUE;
  const RECORD = 'mutation($metrics: [MetricInput!]!) { recordMetrics(metrics: $metrics) }';
  const SUMMARY = 'query($name: String) { metricSummary(name: $name) { name count min max avg p50 p95 p99 last } }';
  // One bucket (366 days, the most) holds every point of the test.
  const SERIES = 'query($name: String!) { metricSeries(name: $name, bucketSeconds: 31622400) { count avg } }';

  it('summarizes and charts points whose sum or spread overflows float8, instead of failing the whole tenant', async () => {
    const admin = await newTenant('metrics');
    const agent = await addAgent(admin, unique('extreme'));
    const points = (name: string, values: number[]) => values.map((value) => ({ name, value }));
    await gw.ok(agent, RECORD, {
      metrics: [
        ...points('huge', [MAX, MAX]),
        ...points('wide', [-MAX, MAX]),
        ...points('squares', [1e200, -1e200]),
        ...points('plain', [1, 2, 3, 4]),
      ],
    });
    const summary = await gw.gql(admin, SUMMARY);
    expect(summary.errors).toBeUndefined();
    const byName = Object.fromEntries((summary.data?.metricSummary ?? []).map((row: { name: string }) => [row.name, row]));
    expect(byName.huge).toEqual({ name: 'huge', count: 2, min: MAX, max: MAX, avg: MAX, p50: MAX, p95: MAX, p99: MAX, last: MAX });
    expect(byName.wide).toMatchObject({ count: 2, min: -MAX, max: MAX, avg: 0, p50: 0 });
    // Linear interpolation between −MAX and MAX: −MAX + 0.95·2·MAX = 0.9·MAX.
    expect(byName.wide.p95 / MAX).toBeCloseTo(0.9, 12);
    expect(byName.wide.p99 / MAX).toBeCloseTo(0.98, 12);
    expect(byName.squares).toMatchObject({ count: 2, avg: 0, p50: 0 });
    // Ordinary points are summarized exactly as before.
    expect(byName.plain).toMatchObject({ count: 4, min: 1, max: 4, avg: 2.5, p50: 2.5 });
    expect(byName.plain.p95).toBeCloseTo(3.85, 12);

    for (const [name, avg] of [
      ['huge', MAX],
      ['wide', 0],
      ['squares', 0],
      ['plain', 2.5],
    ] as const) {
      const series = await gw.gql(admin, SERIES, { name });
      expect(series.errors).toBeUndefined();
      expect(series.data?.metricSeries).toEqual([{ count: name === 'plain' ? 4 : 2, avg }]);
    }
  });
});

describe('refusals in the audit log', () => {
  const AUDIT = `query($actor: String, $outcome: AuditOutcome) {
    auditLog(actor: $actor, outcome: $outcome, first: 1000) { action target outcome detail }
  }`;
  const auditOf = async (admin: string, actor: string, outcome?: string) =>
    (await gw.ok(admin, AUDIT, { actor, outcome })).auditLog as { action: string; target: string | null; outcome: string; detail: any }[];
  /** One HTTP request carrying `operations` as a batch; the answers, one per operation. */
  async function batch(token: string, operations: { query: string; variables?: Record<string, unknown> }[]): Promise<GraphQLResponse[]> {
    const response = await gw.app.fetch('http://localhost/graphql', {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify(operations),
    });
    return (await response.json()) as GraphQLResponse[];
  }
  // Beyond the tenant's maxAliases (30), below the gateway's document ceiling (1,000 aliases), which
  // refuses a document while it is parsed, before the caller is known, so no tenant's log records it.
  const MANY = 900;
  const aliases = (count: number) => `{ ${Array.from({ length: count }, (_, i) => `a${i}: viewer { role }`).join(' ')} }`;

  async function readerOf(admin: string): Promise<{ token: string; actor: string }> {
    const name = unique('prober');
    const issue = await gw.ok(admin, 'mutation($name: String!) { createToken(input: { name: $name, role: READER }) { token } }', { name });
    return { token: issue.createToken.token, actor: `reader:${name}` };
  }

  it('records a refused operation once, however many fields it asked for, with their count', async () => {
    const admin = await newTenant('aliases');
    await addNamespace(admin, 'vault', { openAccess: false });
    const agentId = unique('prober');
    const agent = await addAgent(admin, agentId);
    expectError(await gw.gql(agent, aliases(3_000)), 'QUERY_TOO_COMPLEX');
    expectError(await gw.gql(agent, aliases(MANY)), 'QUERY_TOO_COMPLEX');
    const reads = Array.from({ length: 5 }, (_, i) => `r${i}: entry(namespace: "vault", key: "k${i}") { value }`);
    const read = await gw.gql(agent, `{ ${reads.join(' ')} }`);
    expect(read.errors?.map((error) => error.extensions?.code)).toEqual(Array(5).fill('FORBIDDEN'));
    expect(await auditOf(admin, agentId)).toEqual([
      {
        action: 'entry',
        target: 'vault/global/k0',
        outcome: 'DENIED',
        detail: { code: 'FORBIDDEN', reason: expect.any(String), refusedFields: 5 },
      },
      {
        action: 'viewer',
        target: null,
        outcome: 'DENIED',
        detail: { code: 'QUERY_TOO_COMPLEX', reason: expect.any(String), refusedFields: MANY },
      },
    ]);
  });

  it('records the mutations after a refused one as nothing: they never ran', async () => {
    const admin = await newTenant('serial');
    const reader = await readerOf(admin);
    const sets = Array.from({ length: 5 }, (_, i) => `s${i}: setEntry(input: { namespace: "common", key: "k${i}", value: 1 }) { version }`);
    expectError(await gw.gql(reader.token, `mutation { ${sets.join(' ')} }`), 'FORBIDDEN');
    expect(await auditOf(admin, reader.actor)).toEqual([
      {
        action: 'setEntry',
        target: 'common/global/k0',
        outcome: 'DENIED',
        detail: { code: 'FORBIDDEN', reason: expect.any(String), refusedFields: 1 },
      },
    ]);
  });

  it('records a batch of refused operations as one record each', async () => {
    const admin = await newTenant('batch');
    const reader = await readerOf(admin);
    const answers = await batch(
      reader.token,
      Array.from({ length: 20 }, () => ({ query: aliases(MANY) })),
    );
    expect(answers.map((answer) => answer.errors?.[0]?.extensions?.code)).toEqual(Array(20).fill('QUERY_TOO_COMPLEX'));
    const events = await auditOf(admin, reader.actor);
    expect(events).toHaveLength(20);
    for (const event of events) expect(event.detail).toMatchObject({ code: 'QUERY_TOO_COMPLEX', refusedFields: MANY });
  });

  it("bounds the refusals recorded for one token, says once that the rest were dropped, and still records its allowed mutations and other tokens' refusals", async () => {
    const admin = await newTenant('flood');
    await addNamespace(admin, 'vault', { openAccess: false });
    const agentId = unique('flooder');
    const agent = await addAgent(admin, agentId, ['vault']);
    const reader = await readerOf(admin);
    const refused = { query: 'query($key: String!) { entry(namespace: "vault", key: $key) { value } }' };
    // Five batches of 20 refused operations, more than the limit of one window.
    for (let round = 0; round < 5; round++) {
      const answers = await batch(
        agent,
        Array.from({ length: 20 }, (_, i) => ({ ...refused, variables: { key: `k${round}-${i}` } })),
      );
      expect(new Set(answers.map((answer) => answer.errors?.[0]?.extensions?.code))).toEqual(new Set(['FORBIDDEN']));
    }
    await gw.ok(agent, SET, { ns: 'common', key: 'after-the-flood', value: 1 });
    expectError(await gw.gql(reader.token, SET, { ns: 'common', key: 'meanwhile', value: 1 }), 'FORBIDDEN');

    const events = await auditOf(admin, agentId);
    const dropped = events.filter((event) => event.action === 'auditDropped');
    expect(dropped).toEqual([
      {
        action: 'auditDropped',
        target: null,
        outcome: 'DENIED',
        detail: { code: 'RATE_LIMITED', reason: expect.any(String), limit: expect.any(Number), until: expect.any(String) },
      },
    ]);
    const limit = dropped[0]?.detail.limit as number;
    expect(limit).toBeLessThan(100);
    expect(events.filter((event) => event.action === 'entry')).toHaveLength(limit);
    expect(events[0]).toMatchObject({ action: 'setEntry', target: 'common/global/after-the-flood', outcome: 'ALLOWED' });
    expect(await auditOf(admin, reader.actor)).toEqual([expect.objectContaining({ action: 'setEntry', outcome: 'DENIED' })]);
  });
});

describe('WebSockets without a token', () => {
  const sockets: RawSocket[] = [];
  afterAll(() => {
    for (const socket of sockets) socket.close();
  });

  /** A raw socket that sent connection_init with `payload`; `acked` once the server acknowledged it (or null if it closed first). */
  async function initialized(payload: Record<string, unknown>) {
    const socket = await openRawSocket(gw.wsUrl);
    sockets.push(socket);
    socket.send({ type: 'connection_init', payload });
    const ack = await socket.waitFor((frame) => frame.type === 'connection_ack');
    return { socket, acked: ack !== null };
  }

  it('closes with 4401 a socket that gave no token and does not subscribe, and keeps the one beside it that gave a token', async () => {
    const [tokenless, authenticated] = await Promise.all([initialized({}), initialized({ authorization: `Bearer ${ADMIN_TOKEN}` })]);
    expect([tokenless.acked, authenticated.acked]).toEqual([true, true]);
    expect(await tokenless.socket.closed).toEqual({ code: 4401, reason: expect.any(String) });
    expect(authenticated.socket.isOpen()).toBe(true);
  });

  it('bounds the sockets without a token one address may hold: fifty are closed, none held, and sockets with a token are still admitted', async () => {
    const probes = await Promise.all(Array.from({ length: 50 }, () => initialized({})));
    const refused = probes.filter((probe) => !probe.acked);
    expect(refused.length).toBeGreaterThan(0);
    expect(new Set(await Promise.all(refused.map(async ({ socket }) => (await socket.closed).code)))).toEqual(new Set([4429]));
    // While this address holds its tokenless sockets, one with a token is still welcome.
    expect((await initialized({ authorization: `Bearer ${ADMIN_TOKEN}` })).acked).toBe(true);
    // Every acknowledged one is closed too, without having done anything.
    const acknowledged = probes.filter((probe) => probe.acked);
    expect(new Set(await Promise.all(acknowledged.map(async ({ socket }) => (await socket.closed).code)))).toEqual(new Set([4401]));
    // Their slots are free again.
    expect((await initialized({})).acked).toBe(true);
  });
});

describe('the origin of a WebSocket', () => {
  /** The HTTP status of a graphql-ws handshake sent with `origin` (101: upgraded). */
  const handshake = (wsUrl: string, origin?: string) =>
    new Promise<number>((resolve, reject) => {
      const socket = new WebSocket(wsUrl, 'graphql-transport-ws', origin === undefined ? {} : { origin });
      socket.once('open', () => {
        resolve(101);
        socket.terminate();
      });
      socket.once('unexpected-response', (_request, response) => {
        resolve(response.statusCode ?? 0);
        socket.terminate();
      });
      socket.once('error', reject);
    });
  const ownOrigin = (on: Gateway) => new URL(on.url).origin;

  it('refuses a page of a foreign origin with 403, and accepts clients without an Origin and pages of its own origin', async () => {
    expect(await handshake(gw.wsUrl, 'https://evil.example')).toBe(403);
    expect(await handshake(gw.wsUrl, 'null')).toBe(403);
    expect(await handshake(gw.wsUrl)).toBe(101);
    expect(await handshake(gw.wsUrl, ownOrigin(gw))).toBe(101);
  });

  it('accepts the origins STATEHOUSE_CORS_ORIGINS names, as CORS does for HTTP', async () => {
    const open = await startGateway({ app: { corsOrigins: ['https://app.example'] } });
    try {
      expect(await handshake(open.wsUrl, 'https://app.example')).toBe(101);
      expect(await handshake(open.wsUrl, 'https://evil.example')).toBe(403);
      expect(await handshake(open.wsUrl, ownOrigin(open))).toBe(101);
      const preflight = await fetch(open.url, {
        method: 'OPTIONS',
        headers: { origin: 'https://app.example', 'access-control-request-method': 'POST' },
      });
      expect(preflight.headers.get('access-control-allow-origin')).toBe('https://app.example');
    } finally {
      await open.close();
    }
  });
});

describe('an SSE subscriber that never reads', () => {
  const ENTRY_CHANGED = 'subscription { entryChanged(namespace: "common") { key value } }';

  /** An SSE subscription over a bare TCP socket, so the test decides when (and whether) it reads. */
  function rawSse(url: string, token: string, query: string) {
    const { hostname, port } = new URL(url);
    const body = JSON.stringify({ query });
    const socket: Socket = connect(Number(port), hostname);
    let received = '';
    let bytes = 0;
    socket.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      if (received.length < 1_000_000) received += chunk.toString('latin1');
    });
    socket.on('error', () => {});
    const ended = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.write(
      `POST /graphql HTTP/1.1\r\nHost: ${hostname}:${port}\r\nAuthorization: Bearer ${token}\r\nAccept: text/event-stream\r\n` +
        `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
    return { socket, ended, received: () => received, bytes: () => bytes };
  }

  it('ends the response once 16 MiB wait unsent, and keeps serving the subscriber that reads', { timeout: 180_000 }, async () => {
    const admin = await newTenant('slow-reader');
    const stalled = rawSse(gw.url, admin, ENTRY_CHANGED);
    const reading = openSse(gw.url, admin, ENTRY_CHANGED);
    // Both are live once a probe write reaches both; then the stalled one stops reading.
    let probes = 0;
    await eventually(async () => {
      await gw.ok(admin, SET, { ns: 'common', key: `probe-${++probes}`, value: 0 });
      return stalled.received().includes('"key":"probe-') && reading.results.length > 0;
    });
    stalled.socket.pause();
    const keysRead = () => reading.results.map((result) => result.data?.entryChanged.key as string);

    // 40 changes of 1 MB, far more than the limit and the kernel's socket buffers hold together, each
    // written once the reading subscriber has the one before: it never falls behind.
    const value = 'x'.repeat(1_000_000);
    const flood = 40;
    for (let i = 0; i < flood; i++) {
      await gw.ok(admin, SET, { ns: 'common', key: `big-${i}`, value });
      await eventually(() => keysRead().includes(`big-${i}`), 30_000, `the reading subscriber to get change ${i}`);
    }

    // The server has produced every change by now: a stalled stream it still held would go on delivering them all.
    stalled.socket.resume();
    const outcome = await Promise.race([
      stalled.ended.then(() => 'ended'),
      new Promise((resolve) => setTimeout(() => resolve('still open'), 20_000)),
    ]);
    expect(outcome).toBe('ended');
    expect(stalled.bytes()).toBeLessThan(flood * value.length);
    expect(keysRead().filter((key) => key.startsWith('big-'))).toEqual(Array.from({ length: flood }, (_, i) => `big-${i}`));
    reading.close();
  });
});
