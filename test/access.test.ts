import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ADMIN_TOKEN,
  eventually,
  type Gateway,
  type GraphQLResponse,
  type Subscription,
  startGateway,
  subscribe,
} from './support/gateway.js';
import { openRawSocket } from './support/raw-socket.js';

/**
 * The access rule and the principals of API.md §2 (with the error codes of §3), through HTTP
 * (in-process fetch) and graphql-ws. Every test uses namespaces and agents of its own.
 */

let gw: Gateway;
beforeAll(async () => {
  gw = await startGateway();
});
afterAll(async () => {
  await gw?.close();
});

let counter = 0;
/** A fresh name, valid as a namespace, agent id, key or token name. */
const unique = (label: string) => `${label}-${(++counter).toString(36)}-${Math.random().toString(36).slice(2, 8)}`;

const ENTRY = 'query($ns: String!, $key: String!) { entry(namespace: $ns, key: $key) { namespace key value version } }';
const ENTRIES = 'query($ns: String!) { entries(namespace: $ns) { nodes { namespace key value } } }';
const RESOLVE =
  'query($ns: String!, $key: String!) { resolveEntry(namespace: $ns, key: $key, scopes: ["global"]) { namespace key value } }';
const CHANGES =
  'query($ns: String, $after: Revision) { changes(namespace: $ns, afterRevision: $after, first: 1000) { nodes { namespace key value revision } } }';
const NAMESPACE = 'query($name: String!) { namespace(name: $name) { name openAccess } }';
const NAMESPACES = '{ namespaces { name openAccess } }';
const SET =
  'mutation($ns: String!, $key: String!, $value: JSON!) { setEntry(input: { namespace: $ns, key: $key, value: $value }) { namespace key value version revision } }';
const VIEWER = '{ viewer { role namespaces { namespace permission } } }';
const FOR_AGENT = 'query($id: ID!) { namespacesForAgent(agentId: $id) { namespace permission } }';
const GRANT =
  'mutation($ns: String!, $agent: ID!, $perm: Permission!) { grantAccess(input: { namespace: $ns, agentId: $agent, permission: $perm }) { namespace agentId permission } }';
const REVOKE_ACCESS = 'mutation($ns: String!, $agent: ID!) { revokeAccess(input: { namespace: $ns, agentId: $agent }) }';
const REVOKE_TOKEN = 'mutation($id: ID!) { revokeToken(id: $id) }';
const DEREGISTER = 'mutation($id: ID!) { deregisterAgent(id: $id) }';
const GRANTS = 'query($name: String!) { namespace(name: $name) { name grants { agentId permission } } }';
const AGENT = 'query($id: ID!) { agent(id: $id) { id } }';
const REGISTER = 'mutation($id: ID!) { registerAgent(input: { id: $id, name: "escalated", type: "worker" }) { token } }';
const ENTRY_CHANGED =
  'subscription($ns: String, $after: Revision) { entryChanged(namespace: $ns, afterRevision: $after) { namespace key value revision } }';

type Permission = 'READ' | 'WRITE';
interface Access {
  namespace: string;
  permission: Permission;
}
interface Change {
  namespace: string;
  key: string;
  value: unknown;
  revision: string;
}

const codeOf = (response: GraphQLResponse) => response.errors?.[0]?.extensions?.code;

/** The response carries no data: `data` is null, or every root field in it is. */
const dataOf = (response: GraphQLResponse) =>
  response.data === null || response.data === undefined || Object.values(response.data).every((value) => value === null)
    ? null
    : response.data;

/** Just before `revision`, so that `changes(afterRevision:)` starts with it. */
const justBefore = (revision: string) => (BigInt(revision) - 1n).toString();

const byNamespace = (list: Access[]) => [...list].sort((a, b) => (a.namespace < b.namespace ? -1 : a.namespace > b.namespace ? 1 : 0));

async function createNamespace(label: string, settings: { openAccess?: boolean } = {}): Promise<string> {
  const name = unique(label);
  await gw.createNamespace(name, settings);
  return name;
}

async function adminSet(namespace: string, key: string, value: unknown): Promise<string> {
  const data = await gw.ok(ADMIN_TOKEN, SET, { ns: namespace, key, value });
  return data.setEntry.revision as string;
}

async function adminEntry(namespace: string, key: string): Promise<{ value: unknown; version: number } | null> {
  const data = await gw.ok(ADMIN_TOKEN, ENTRY, { ns: namespace, key });
  return data.entry ? { value: data.entry.value, version: data.entry.version } : null;
}

async function grant(namespace: string, agentId: string, permission: Permission): Promise<void> {
  const data = await gw.ok(ADMIN_TOKEN, GRANT, { ns: namespace, agent: agentId, perm: permission });
  expect(data.grantAccess).toEqual({ namespace, agentId, permission });
}

/** An admin-written entry that reads must return. */
async function seed(namespace: string): Promise<{ key: string; value: unknown; revision: string }> {
  const key = unique('seed');
  const value = { seededIn: namespace, key };
  const revision = await adminSet(namespace, key, value);
  return { key, value, revision };
}

/** entry, entries, resolveEntry and changes(namespace) all answer with the seeded entry. */
async function expectCanRead(token: string, namespace: string): Promise<void> {
  const { key, value, revision } = await seed(namespace);
  const entry = await gw.ok(token, ENTRY, { ns: namespace, key });
  expect(entry.entry).toMatchObject({ namespace, key, value });
  const entries = await gw.ok(token, ENTRIES, { ns: namespace });
  expect(entries.entries.nodes).toContainEqual({ namespace, key, value });
  const resolved = await gw.ok(token, RESOLVE, { ns: namespace, key });
  expect(resolved.resolveEntry).toEqual({ namespace, key, value });
  const changes = await gw.ok(token, CHANGES, { ns: namespace, after: justBefore(revision) });
  expect(changes.changes.nodes).toContainEqual({ namespace, key, value, revision });
}

/** entry, entries, resolveEntry and changes(namespace) are all FORBIDDEN and show nothing of the namespace. */
async function expectCannotRead(token: string, namespace: string): Promise<void> {
  const { key, revision } = await seed(namespace);
  const attempts: [string, Record<string, unknown>][] = [
    [ENTRY, { ns: namespace, key }],
    [ENTRIES, { ns: namespace }],
    [RESOLVE, { ns: namespace, key }],
    [CHANGES, { ns: namespace, after: justBefore(revision) }],
  ];
  for (const [query, variables] of attempts) {
    const response = await gw.gql(token, query, variables);
    expect(codeOf(response), query).toBe('FORBIDDEN');
    expect(JSON.stringify(response)).not.toContain(key);
  }
}

/** setEntry succeeds and the admin then reads the written value. */
async function expectCanWrite(token: string, namespace: string): Promise<void> {
  const key = unique('written');
  const value = { writtenTo: namespace };
  const data = await gw.ok(token, SET, { ns: namespace, key, value });
  expect(data.setEntry).toMatchObject({ namespace, key, value, version: 1 });
  expect(await adminEntry(namespace, key)).toEqual({ value, version: 1 });
}

/** setEntry is FORBIDDEN and writes nothing. */
async function expectCannotWrite(token: string, namespace: string): Promise<void> {
  const key = unique('refused');
  const response = await gw.gql(token, SET, { ns: namespace, key, value: { attempted: true } });
  expect(codeOf(response)).toBe('FORBIDDEN');
  expect(dataOf(response)).toBeNull();
  expect(await adminEntry(namespace, key)).toBeNull();
}

/** Resolves when the subscription has ended; fails after `ms`. */
async function ended(subscription: Subscription, ms = 10_000): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`subscription still open after ${ms} ms: ${JSON.stringify(subscription.results)}`)), ms);
  });
  try {
    await Promise.race([subscription.done, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

const changesOf = (subscription: Subscription<{ entryChanged: Change }>) =>
  subscription.results.flatMap((result) => (result.data?.entryChanged ? [result.data.entryChanged] : []));

describe('the access rule for an agent', () => {
  it('lets every agent read and write common', async () => {
    const agent = await gw.registerAgent(unique('agent'));
    await expectCanRead(agent, 'common');
    await expectCanWrite(agent, 'common');
  });

  it('lets every agent read system but not write it without a grant', async () => {
    const agent = await gw.registerAgent(unique('agent'));
    await expectCanRead(agent, 'system');
    await expectCannotWrite(agent, 'system');
  });

  it('does not let a READ grant on system give write', async () => {
    const id = unique('agent');
    const agent = await gw.registerAgent(id);
    await grant('system', id, 'READ');
    await expectCanRead(agent, 'system');
    await expectCannotWrite(agent, 'system');
  });

  it('lets an agent write system with an explicit WRITE grant', async () => {
    const id = unique('agent');
    const agent = await gw.registerAgent(id);
    await grant('system', id, 'WRITE');
    await expectCanRead(agent, 'system');
    await expectCanWrite(agent, 'system');
  });

  it('gives an explicit READ grant reads only: setEntry is FORBIDDEN', async () => {
    const ns = await createNamespace('restricted', { openAccess: false });
    const id = unique('agent');
    const agent = await gw.registerAgent(id);
    await expectCannotRead(agent, ns);
    await grant(ns, id, 'READ');
    await expectCanRead(agent, ns);
    await expectCannotWrite(agent, ns);
  });

  it('gives an explicit WRITE grant reads and writes', async () => {
    const ns = await createNamespace('restricted', { openAccess: false });
    const id = unique('agent');
    const agent = await gw.registerAgent(id);
    await expectCannotWrite(agent, ns);
    await grant(ns, id, 'WRITE');
    await expectCanRead(agent, ns);
    await expectCanWrite(agent, ns);
  });

  it('makes an explicit READ grant on a listed open namespace read-only', async () => {
    const ns = await createNamespace('open');
    const id = unique('agent');
    const agent = await gw.registerAgent(id, [ns]);
    await expectCanWrite(agent, ns);
    await grant(ns, id, 'READ');
    await expectCanRead(agent, ns);
    await expectCannotWrite(agent, ns);
  });

  it('lets an agent read and write an open namespace it lists in stateNamespaces', async () => {
    const ns = await createNamespace('open');
    const agent = await gw.registerAgent(unique('agent'), [ns]);
    await expectCanRead(agent, ns);
    await expectCanWrite(agent, ns);
  });

  it('forbids an open namespace the agent does not list', async () => {
    const ns = await createNamespace('open');
    const other = await createNamespace('open');
    const agent = await gw.registerAgent(unique('agent'), [other]);
    await expectCannotRead(agent, ns);
    await expectCannotWrite(agent, ns);
  });

  it('keeps a restricted namespace the agent lists closed until it is granted', async () => {
    const ns = await createNamespace('restricted', { openAccess: false });
    const id = unique('agent');
    const agent = await gw.registerAgent(id, [ns]);
    await expectCannotRead(agent, ns);
    await expectCannotWrite(agent, ns);
    await grant(ns, id, 'WRITE');
    await expectCanRead(agent, ns);
    await expectCanWrite(agent, ns);
  });
});

describe('missing and forbidden namespaces', () => {
  /** Three namespaces an agent cannot reach: restricted (listed), open but unlisted, and one that does not exist. */
  async function setup() {
    const restricted = await createNamespace('hidden', { openAccess: false });
    const unlisted = await createNamespace('unlisted');
    const missing = unique('missing');
    const secretKey = unique('secret-key');
    const secretValue = unique('secret-value');
    const revision = await adminSet(restricted, secretKey, { secret: secretValue });
    await adminSet(unlisted, secretKey, { secret: secretValue });
    const id = unique('agent');
    const agent = await gw.registerAgent(id, [restricted, missing]);
    return { restricted, unlisted, missing, secretKey, secretValue, revision, id, agent };
  }

  const operations: { name: string; query: string; variables: (ns: string, key: string) => Record<string, unknown> }[] = [
    { name: 'entry', query: ENTRY, variables: (ns, key) => ({ ns, key }) },
    { name: 'entries', query: ENTRIES, variables: (ns) => ({ ns }) },
    { name: 'setEntry', query: SET, variables: (ns, key) => ({ ns, key, value: { overwritten: true } }) },
    { name: 'changes(namespace)', query: CHANGES, variables: (ns) => ({ ns, after: '0' }) },
    { name: 'namespace(name)', query: NAMESPACE, variables: (name) => ({ name }) },
    { name: 'resolveEntry', query: RESOLVE, variables: (ns, key) => ({ ns, key }) },
  ];

  it.each(operations)('answers $name on a forbidden namespace exactly as on a missing one (FORBIDDEN)', async ({ query, variables }) => {
    const { restricted, unlisted, missing, secretKey, secretValue, agent } = await setup();
    const onMissing = await gw.gql(agent, query, variables(missing, secretKey));
    expect(codeOf(onMissing)).toBe('FORBIDDEN');
    for (const forbidden of [restricted, unlisted]) {
      const response = await gw.gql(agent, query, variables(forbidden, secretKey));
      expect(codeOf(response)).toBe('FORBIDDEN');
      expect(response.errors?.[0]?.message).toBe(onMissing.errors?.[0]?.message);
      // Same status, data, message, path and extensions: nothing tells the two apart.
      expect(response).toEqual(onMissing);
      const text = JSON.stringify(response);
      expect(text).not.toContain(secretKey);
      expect(text).not.toContain(secretValue);
      // A refused write changed nothing.
      expect(await adminEntry(forbidden, secretKey)).toEqual({ value: { secret: secretValue }, version: 1 });
    }
    const created = await gw.ok(ADMIN_TOKEN, NAMESPACE, { name: missing });
    expect(created.namespace).toBeNull();
  });

  it('never shows a forbidden namespace or its keys and values in lists, change feeds or the viewer', async () => {
    const { restricted, unlisted, secretKey, secretValue, revision, id, agent } = await setup();
    const readable = await adminSet('common', unique('visible'), { visible: true });
    const changes = await gw.ok(agent, CHANGES, { ns: null, after: justBefore(revision) });
    const namespacesSeen = changes.changes.nodes.map((change: Change) => change.namespace);
    expect(namespacesSeen).toContain('common');
    expect(changes.changes.nodes.map((change: Change) => change.revision)).toContain(readable);
    expect(namespacesSeen).not.toContain(restricted);
    expect(namespacesSeen).not.toContain(unlisted);

    const namespaces = await gw.ok(agent, NAMESPACES);
    const names = namespaces.namespaces.map((namespace: { name: string }) => namespace.name);
    expect(names).toContain('common');
    expect(names).not.toContain(restricted);
    expect(names).not.toContain(unlisted);

    const viewer = await gw.ok(agent, VIEWER);
    const forAgent = await gw.ok(agent, FOR_AGENT, { id });
    for (const response of [changes, namespaces, viewer, forAgent]) {
      const text = JSON.stringify(response);
      expect(text).not.toContain(secretKey);
      expect(text).not.toContain(secretValue);
      expect(text).not.toContain(restricted);
      expect(text).not.toContain(unlisted);
    }
  });
});

describe('viewer.namespaces and namespacesForAgent', () => {
  it('list exactly the namespaces an agent can reach, with their permissions', async () => {
    const listedOpen = await createNamespace('listed-open');
    const listedReadGranted = await createNamespace('listed-read');
    const restrictedWrite = await createNamespace('restricted-write', { openAccess: false });
    const restrictedRead = await createNamespace('restricted-read', { openAccess: false });
    const restrictedListed = await createNamespace('restricted-listed', { openAccess: false });
    const unlistedOpen = await createNamespace('unlisted-open');
    const missing = unique('missing');
    const id = unique('agent');
    const agent = await gw.registerAgent(id, [listedOpen, listedReadGranted, restrictedListed, missing]);
    await grant(listedReadGranted, id, 'READ');
    await grant(restrictedWrite, id, 'WRITE');
    await grant(restrictedRead, id, 'READ');

    const expected = byNamespace([
      { namespace: 'common', permission: 'WRITE' },
      { namespace: 'system', permission: 'READ' },
      { namespace: listedOpen, permission: 'WRITE' },
      { namespace: listedReadGranted, permission: 'READ' },
      { namespace: restrictedWrite, permission: 'WRITE' },
      { namespace: restrictedRead, permission: 'READ' },
    ]);
    const viewer = await gw.ok(agent, VIEWER);
    expect(viewer.viewer.role).toBe('AGENT');
    expect(byNamespace(viewer.viewer.namespaces)).toEqual(expected);
    const own = await gw.ok(agent, FOR_AGENT, { id });
    expect(byNamespace(own.namespacesForAgent)).toEqual(expected);
    const asAdmin = await gw.ok(ADMIN_TOKEN, FOR_AGENT, { id });
    expect(byNamespace(asAdmin.namespacesForAgent)).toEqual(expected);

    // `namespaces` (those the caller can read) agrees.
    const namespaces = await gw.ok(agent, NAMESPACES);
    const names = namespaces.namespaces.map((namespace: { name: string }) => namespace.name).sort();
    expect(names).toEqual(expected.map((access) => access.namespace).sort());
    expect(names).not.toContain(restrictedListed);
    expect(names).not.toContain(unlistedOpen);
  });

  it('list system as WRITE for an agent with a WRITE grant on it', async () => {
    const id = unique('agent');
    const agent = await gw.registerAgent(id);
    await grant('system', id, 'WRITE');
    const expected = [
      { namespace: 'common', permission: 'WRITE' },
      { namespace: 'system', permission: 'WRITE' },
    ];
    const viewer = await gw.ok(agent, VIEWER);
    expect(byNamespace(viewer.viewer.namespaces)).toEqual(expected);
    const own = await gw.ok(agent, FOR_AGENT, { id });
    expect(byNamespace(own.namespacesForAgent)).toEqual(expected);
  });

  it('forbid an agent to ask namespacesForAgent about another agent', async () => {
    const secret = await createNamespace('other-secret', { openAccess: false });
    const otherId = unique('other');
    await gw.registerAgent(otherId);
    await grant(secret, otherId, 'WRITE');
    const agent = await gw.registerAgent(unique('agent'));
    const response = await gw.gql(agent, FOR_AGENT, { id: otherId });
    expect(codeOf(response)).toBe('FORBIDDEN');
    expect(dataOf(response)).toBeNull();
    expect(JSON.stringify(response)).not.toContain(secret);
  });

  it('let an admin ask namespacesForAgent about any agent', async () => {
    const ns = await createNamespace('restricted', { openAccess: false });
    const open = await createNamespace('open');
    const id = unique('agent');
    await gw.registerAgent(id, [open]);
    await grant(ns, id, 'READ');
    const data = await gw.ok(ADMIN_TOKEN, FOR_AGENT, { id });
    expect(byNamespace(data.namespacesForAgent)).toEqual(
      byNamespace([
        { namespace: 'common', permission: 'WRITE' },
        { namespace: 'system', permission: 'READ' },
        { namespace: open, permission: 'WRITE' },
        { namespace: ns, permission: 'READ' },
      ]),
    );
  });
});

describe('READER and AGENT tokens', () => {
  it('lets a READER read entries, changes and namespaces, restricted ones included', async () => {
    const restricted = await createNamespace('restricted', { openAccess: false });
    const open = await createNamespace('open');
    const { token } = await gw.createToken(unique('reader'), 'READER');
    await expectCanRead(token, restricted);
    await expectCanRead(token, open);
    await expectCanRead(token, 'common');
    await expectCanRead(token, 'system');

    const first = await seed(restricted);
    const second = await seed(open);
    const changes = await gw.ok(token, CHANGES, { ns: null, after: justBefore(first.revision) });
    expect(changes.changes.nodes).toContainEqual({ namespace: restricted, key: first.key, value: first.value, revision: first.revision });
    expect(changes.changes.nodes).toContainEqual({ namespace: open, key: second.key, value: second.value, revision: second.revision });

    const namespaces = await gw.ok(token, NAMESPACES);
    expect(namespaces.namespaces).toContainEqual({ name: restricted, openAccess: false });
    expect(namespaces.namespaces).toContainEqual({ name: open, openAccess: true });
    const one = await gw.ok(token, NAMESPACE, { name: restricted });
    expect(one.namespace).toEqual({ name: restricted, openAccess: false });

    const viewer = await gw.ok(token, VIEWER);
    expect(viewer.viewer.role).toBe('READER');
    expect(viewer.viewer.namespaces).toContainEqual({ namespace: restricted, permission: 'READ' });
    expect(viewer.viewer.namespaces).toContainEqual({ namespace: 'common', permission: 'READ' });
    expect(viewer.viewer.namespaces.every((access: Access) => access.permission === 'READ')).toBe(true);
  });

  it('forbids a READER every mutation and changes nothing', async () => {
    const ns = await createNamespace('target', { openAccess: false });
    const key = unique('key');
    const revision = await adminSet(ns, key, { n: 1 });
    const grantee = unique('grantee');
    const granteeToken = await gw.registerAgent(grantee);
    await grant(ns, grantee, 'READ');
    const victim = await gw.createToken(unique('victim'), 'READER');
    const { token } = await gw.createToken(unique('reader'), 'READER');
    const newNamespace = unique('new');
    const newAgent = unique('new-agent');

    const mutations: [string, string, Record<string, unknown>][] = [
      ['setEntry', SET, { ns, key, value: { n: 2 } }],
      [
        'patchEntry',
        'mutation($ns: String!, $key: String!) { patchEntry(input: { namespace: $ns, key: $key, patch: { n: 3 } }) { version } }',
        { ns, key },
      ],
      [
        'incrementEntry',
        'mutation($ns: String!, $key: String!) { incrementEntry(input: { namespace: $ns, key: $key, by: 1 }) { version } }',
        { ns, key: unique('counter') },
      ],
      ['deleteEntry', 'mutation($ns: String!, $key: String!) { deleteEntry(input: { namespace: $ns, key: $key }) }', { ns, key }],
      ['createNamespace', 'mutation($name: String!) { createNamespace(input: { name: $name }) { name } }', { name: newNamespace }],
      ['updateNamespace', 'mutation($name: String!) { updateNamespace(input: { name: $name, openAccess: true }) { name } }', { name: ns }],
      ['deleteNamespace', 'mutation($name: String!) { deleteNamespace(name: $name) }', { name: ns }],
      ['grantAccess', GRANT, { ns, agent: grantee, perm: 'WRITE' }],
      ['revokeAccess', REVOKE_ACCESS, { ns, agent: grantee }],
      ['registerAgent', REGISTER, { id: newAgent }],
      ['deregisterAgent', DEREGISTER, { id: grantee }],
      [
        'createToken',
        'mutation($name: String!) { createToken(input: { name: $name, role: ADMIN }) { token } }',
        { name: unique('escalate') },
      ],
      ['revokeToken', REVOKE_TOKEN, { id: victim.id }],
    ];
    for (const [name, query, variables] of mutations) {
      const response = await gw.gql(token, query, variables);
      expect(codeOf(response), name).toBe('FORBIDDEN');
      expect(response.errors?.[0]?.message, name).toBe('READER tokens cannot write');
      expect(dataOf(response), name).toBeNull();
    }

    // Nothing changed.
    expect(await adminEntry(ns, key)).toEqual({ value: { n: 1 }, version: 1 });
    const changes = await gw.ok(ADMIN_TOKEN, CHANGES, { ns, after: justBefore(revision) });
    expect(changes.changes.nodes).toHaveLength(1);
    const settings = await gw.ok(ADMIN_TOKEN, GRANTS, { name: ns });
    expect(settings.namespace).toEqual({ name: ns, grants: [{ agentId: grantee, permission: 'READ' }] });
    expect((await gw.ok(ADMIN_TOKEN, NAMESPACE, { name: ns })).namespace).toEqual({ name: ns, openAccess: false });
    expect((await gw.ok(ADMIN_TOKEN, NAMESPACE, { name: newNamespace })).namespace).toBeNull();
    expect((await gw.ok(ADMIN_TOKEN, AGENT, { id: newAgent })).agent).toBeNull();
    expect((await gw.ok(granteeToken, VIEWER)).viewer.role).toBe('AGENT');
    expect((await gw.ok(victim.token, VIEWER)).viewer.role).toBe('READER');
  });

  it('forbids an AGENT the admin mutations and changes nothing', async () => {
    const restricted = await createNamespace('restricted', { openAccess: false });
    const readOnly = await createNamespace('read-only', { openAccess: false });
    const id = unique('agent');
    const agent = await gw.registerAgent(id);
    await grant(readOnly, id, 'READ');
    const otherId = unique('other');
    const otherToken = await gw.registerAgent(otherId);
    const reader = await gw.createToken(unique('reader'), 'READER');
    const newNamespace = unique('new');
    const newAgent = unique('new-agent');

    const mutations: [string, string, Record<string, unknown>, string][] = [
      [
        'createNamespace',
        'mutation($name: String!) { createNamespace(input: { name: $name }) { name } }',
        { name: newNamespace },
        'Agents cannot create namespaces',
      ],
      [
        'updateNamespace',
        'mutation($name: String!) { updateNamespace(input: { name: $name, openAccess: true }) { name } }',
        { name: restricted },
        'Agents cannot change namespaces',
      ],
      [
        'deleteNamespace',
        'mutation($name: String!) { deleteNamespace(name: $name) }',
        { name: readOnly },
        'Agents cannot delete namespaces',
      ],
      ['grantAccess (to itself)', GRANT, { ns: restricted, agent: id, perm: 'WRITE' }, 'Agents cannot grant access'],
      ['grantAccess (upgrade)', GRANT, { ns: readOnly, agent: id, perm: 'WRITE' }, 'Agents cannot grant access'],
      ['revokeAccess', REVOKE_ACCESS, { ns: readOnly, agent: id }, 'Agents cannot revoke access'],
      ['registerAgent', REGISTER, { id: newAgent }, 'Agents cannot register agents'],
      [
        'createToken',
        'mutation($name: String!) { createToken(input: { name: $name, role: ADMIN }) { token } }',
        { name: unique('escalate') },
        'Agents cannot create tokens',
      ],
      ['revokeToken', REVOKE_TOKEN, { id: reader.id }, 'Agents cannot revoke tokens'],
      ['deregisterAgent (another)', DEREGISTER, { id: otherId }, 'Agents cannot deregister agents'],
      ['deregisterAgent (itself)', DEREGISTER, { id }, 'Agents cannot deregister agents'],
      ['updateConfig', 'mutation { updateConfig(patch: { activeWindowSeconds: 1 }) }', {}, "Agents cannot change the tenant's config"],
      ['importState', 'mutation { importState(data: { namespaces: [] }) }', {}, 'Agents cannot import state'],
      [
        'createTenant',
        'mutation { createTenant(name: "escape") { token } }',
        {},
        'Only the bootstrap admin token of tenant default may create tenants',
      ],
    ];
    for (const [name, query, variables, message] of mutations) {
      const response = await gw.gql(agent, query, variables);
      expect(codeOf(response), name).toBe('FORBIDDEN');
      expect(response.errors?.[0]?.message, name).toBe(message);
      expect(dataOf(response), name).toBeNull();
    }

    // Nothing changed.
    await expectCannotRead(agent, restricted);
    await expectCanRead(agent, readOnly);
    await expectCannotWrite(agent, readOnly);
    expect((await gw.ok(ADMIN_TOKEN, NAMESPACE, { name: restricted })).namespace).toEqual({ name: restricted, openAccess: false });
    expect((await gw.ok(ADMIN_TOKEN, NAMESPACE, { name: readOnly })).namespace).toEqual({ name: readOnly, openAccess: false });
    expect((await gw.ok(ADMIN_TOKEN, NAMESPACE, { name: newNamespace })).namespace).toBeNull();
    expect((await gw.ok(ADMIN_TOKEN, AGENT, { id: newAgent })).agent).toBeNull();
    expect((await gw.ok(ADMIN_TOKEN, GRANTS, { name: restricted })).namespace.grants).toEqual([]);
    expect((await gw.ok(ADMIN_TOKEN, GRANTS, { name: readOnly })).namespace.grants).toEqual([{ agentId: id, permission: 'READ' }]);
    expect((await gw.ok(reader.token, VIEWER)).viewer.role).toBe('READER');
    expect((await gw.ok(otherToken, VIEWER)).viewer.role).toBe('AGENT');
    expect((await gw.ok(agent, VIEWER)).viewer.role).toBe('AGENT');
  });

  it('shows Namespace.grants to admins only', async () => {
    const ns = await createNamespace('granted', { openAccess: false });
    const id = unique('agent');
    const agent = await gw.registerAgent(id);
    await grant(ns, id, 'READ');
    const { token: reader } = await gw.createToken(unique('reader'), 'READER');

    const asAdmin = await gw.ok(ADMIN_TOKEN, GRANTS, { name: ns });
    expect(asAdmin.namespace).toEqual({ name: ns, grants: [{ agentId: id, permission: 'READ' }] });

    for (const [who, token] of [
      ['reader', reader],
      ['agent', agent],
    ] as const) {
      const one = await gw.gql(token, GRANTS, { name: ns });
      expect(codeOf(one), who).toBe('FORBIDDEN');
      expect(one.errors?.[0]?.message, who).toBe(who === 'agent' ? 'Agents cannot read grants' : 'READER tokens cannot read grants');
      expect(one.data?.namespace ?? null, who).toBeNull();
      const all = await gw.gql(token, '{ namespaces { name grants { agentId permission } } }');
      expect(codeOf(all), who).toBe('FORBIDDEN');
      expect(JSON.stringify(all.data ?? null), who).not.toContain('"grants"');
    }
  });
});

describe('refusals that say why', () => {
  const messageOf = (response: GraphQLResponse) => response.errors?.[0]?.message;

  it('tells a READER its token cannot write, and which admin-only read it cannot make', async () => {
    const { token } = await gw.createToken(unique('reader'), 'READER');
    const writes: [string, Record<string, unknown>][] = [
      ['mutation { addInsight(input: { type: "t", content: 1 }) { id } }', {}],
      ['mutation { recordOptimization(input: { type: "t", success: true }) { id } }', {}],
      ['mutation { updateSystemState(patch: { a: 1 }) }', {}],
      ['mutation { commit(input: { operations: [{ set: { namespace: "common", key: "k", value: 1 } }] }) { revision } }', {}],
      ['mutation { heartbeat(input: { status: IDLE }) { id } }', {}],
    ];
    for (const [query, variables] of writes) {
      const response = await gw.gql(token, query, variables);
      expect(codeOf(response), query).toBe('FORBIDDEN');
      expect(messageOf(response), query).toBe('READER tokens cannot write');
    }
    for (const [query, message] of [
      ['{ auditLog { id } }', 'READER tokens cannot read the audit log'],
      ['{ exportState }', 'READER tokens cannot export state'],
    ] as const) {
      const response = await gw.gql(token, query);
      expect(codeOf(response), query).toBe('FORBIDDEN');
      expect(messageOf(response), query).toBe(message);
    }
  });

  it('tells an admin token that an agent reports heartbeats, metrics and errors as itself', async () => {
    const reports: [string, string][] = [
      ['mutation { heartbeat(input: { status: IDLE }) { id } }', 'Admin tokens do not send heartbeats (an agent reports as itself)'],
      ['mutation { recordMetrics(metrics: [{ name: "m", value: 1 }]) }', 'Admin tokens do not record metrics (an agent reports as itself)'],
      [
        'mutation { reportError(input: { type: "t", message: "m" }) { id } }',
        'Admin tokens do not report errors (an agent reports as itself)',
      ],
    ];
    for (const [query, message] of reports) {
      const response = await gw.gql(ADMIN_TOKEN, query);
      expect(codeOf(response), query).toBe('FORBIDDEN');
      expect(messageOf(response), query).toBe(message);
    }
  });

  it('tells an agent that may read a namespace but not write it so, naming the namespace, on every write', async () => {
    const readOnly = await createNamespace('read-only', { openAccess: false });
    const id = unique('agent');
    const agent = await gw.registerAgent(id);
    await grant(readOnly, id, 'READ');
    const key = unique('key');
    const writes: [string, Record<string, unknown>, string][] = [
      [SET, { ns: readOnly, key, value: 1 }, readOnly],
      ['mutation($ns: String!) { deleteEntry(input: { namespace: $ns, key: "k" }) }', { ns: readOnly }, readOnly],
      ['mutation($ns: String!) { incrementEntry(input: { namespace: $ns, key: "k" }) { version } }', { ns: readOnly }, readOnly],
      [
        'mutation($ns: String!) { commit(input: { operations: [{ set: { namespace: "common", key: "k", value: 1 } }, { set: { namespace: $ns, key: "k", value: 1 } }] }) { revision } }',
        { ns: readOnly },
        readOnly,
      ],
      [SET, { ns: 'system', key, value: 1 }, 'system'],
      ['mutation { updateSystemState(patch: { a: 1 }) }', {}, 'system'],
    ];
    for (const [query, variables, namespace] of writes) {
      const response = await gw.gql(agent, query, variables);
      expect(codeOf(response), query).toBe('FORBIDDEN');
      expect(messageOf(response), query).toBe(`This agent may read ${namespace} but not write it`);
    }
    expect(await adminEntry(readOnly, key)).toBeNull();
    expect((await gw.ok(ADMIN_TOKEN, ENTRY, { ns: 'common', key: 'k' })).entry).toBeNull();
  });

  it('answers an agent about namespaces it cannot see byte for byte alike, whether they exist or not', async () => {
    const restricted = await createNamespace('hidden', { openAccess: false });
    const unlisted = await createNamespace('unlisted');
    await adminSet(restricted, 'k', { secret: true });
    const agent = await gw.registerAgent(unique('agent'), [restricted]);
    const name = 'the-namespace';
    const attempts = [
      'query($ns: String!) { entryHistory(namespace: $ns, key: "k") { version } }',
      'mutation($ns: String!) { patchEntry(input: { namespace: $ns, key: "k", patch: {} }) { version } }',
      'mutation($ns: String!) { deleteEntry(input: { namespace: $ns, key: "k", expectedVersion: 1 }) }',
      'mutation($ns: String!) { restoreEntry(input: { namespace: $ns, key: "k", version: 1 }) { version } }',
      'mutation($ns: String!) { commit(input: { conditions: [{ namespace: $ns, key: "k", version: 1 }], operations: [{ set: { namespace: "common", key: "c", value: 1 } }] }) { revision } }',
      'mutation($ns: String!) { commit(input: { operations: [{ delete: { namespace: $ns, key: "k" } }] }) { revision } }',
      'query($ns: String!) { namespace(name: $ns) { name } }',
    ];
    for (const query of attempts) {
      const text = async (ns: string) => JSON.stringify(await gw.gql(agent, query, { ns })).replaceAll(ns, name);
      const onMissing = await text(unique('missing'));
      expect(onMissing, query).toContain('This agent has no access to that namespace, or it does not exist');
      for (const hidden of [restricted, unlisted]) expect(await text(hidden), query).toBe(onMissing);
    }
    expect(await adminEntry(restricted, 'k')).toEqual({ value: { secret: true }, version: 1 });
  });
});

describe('authentication', () => {
  it('answers a request without a token with UNAUTHENTICATED', async () => {
    const key = unique('anonymous');
    const attempts: [string, Record<string, unknown>][] = [
      [VIEWER, {}],
      [NAMESPACES, {}],
      [ENTRY, { ns: 'common', key }],
      [SET, { ns: 'common', key, value: 1 }],
    ];
    for (const [query, variables] of attempts) {
      const response = await gw.gql(null, query, variables);
      expect(codeOf(response), query).toBe('UNAUTHENTICATED');
      expect(dataOf(response), query).toBeNull();
    }
    expect(await adminEntry('common', key)).toBeNull();
  });

  it('answers an unknown token with UNAUTHENTICATED', async () => {
    const key = unique('unknown');
    for (const token of [`unknown-token-${unique('t')}`, 'short']) {
      for (const [query, variables] of [
        [VIEWER, {}],
        [SET, { ns: 'common', key, value: 1 }],
      ] as const) {
        const response = await gw.gql(token, query, variables);
        expect(codeOf(response), `${token} ${query}`).toBe('UNAUTHENTICATED');
        expect(dataOf(response)).toBeNull();
      }
    }
    expect(await adminEntry('common', key)).toBeNull();
  });

  it('tells a caller what to send when its Authorization header is missing, not "Bearer <token>", or names no token', async () => {
    const key = unique('malformed');
    const cases: [string | null, string][] = [
      [null, 'A token is required: send Authorization: Bearer <token>'],
      [ADMIN_TOKEN, 'Malformed Authorization header: send Authorization: Bearer <token>'],
      [`Token ${ADMIN_TOKEN}`, 'Malformed Authorization header: send Authorization: Bearer <token>'],
      ['Bearer', 'Malformed Authorization header: send Authorization: Bearer <token>'],
      [`Bearer ${unique('unknown-token')}`, 'The token is unknown or revoked'],
    ];
    for (const [authorization, message] of cases) {
      const response = await fetch(gw.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(authorization === null ? {} : { authorization }) },
        body: JSON.stringify({ query: SET, variables: { ns: 'common', key, value: 1 } }),
      });
      const body = (await response.json()) as GraphQLResponse;
      expect(
        body.errors?.map((error) => [error.extensions?.code, error.message]),
        String(authorization),
      ).toEqual([['UNAUTHENTICATED', message]]);
    }
    expect(await adminEntry('common', key)).toBeNull();
  });

  it('refuses createToken with role AGENT as BAD_USER_INPUT on field role', async () => {
    const response = await gw.gql(
      ADMIN_TOKEN,
      'mutation($name: String!) { createToken(input: { name: $name, role: AGENT }) { id token role } }',
      {
        name: unique('agent-token'),
      },
    );
    expect(codeOf(response)).toBe('BAD_USER_INPUT');
    expect(response.errors?.[0]?.extensions?.field).toBe('role');
    expect(dataOf(response)).toBeNull();
  });
});

describe('revocation takes effect at once', () => {
  it("refuses an agent's very next setEntry and entry once its grant is revoked", async () => {
    const ns = await createNamespace('revoked', { openAccess: false });
    const id = unique('agent');
    const agent = await gw.registerAgent(id);
    await grant(ns, id, 'WRITE');
    const key = unique('key');
    await gw.ok(agent, SET, { ns, key, value: 1 });
    expect((await gw.ok(agent, ENTRY, { ns, key })).entry).toMatchObject({ value: 1, version: 1 });

    const revoked = await gw.ok(ADMIN_TOKEN, REVOKE_ACCESS, { ns, agent: id });
    expect(revoked.revokeAccess).toBe(true);
    const write = await gw.gql(agent, SET, { ns, key, value: 2 });
    expect(codeOf(write)).toBe('FORBIDDEN');
    const read = await gw.gql(agent, ENTRY, { ns, key });
    expect(codeOf(read)).toBe('FORBIDDEN');
    expect(read.data?.entry ?? null).toBeNull();
    expect(await adminEntry(ns, key)).toEqual({ value: 1, version: 1 });
  });

  it("refuses a revoked token's very next request as UNAUTHENTICATED", async () => {
    const { id, token } = await gw.createToken(unique('reader'), 'READER');
    expect((await gw.ok(token, VIEWER)).viewer.role).toBe('READER');
    expect((await gw.ok(ADMIN_TOKEN, REVOKE_TOKEN, { id })).revokeToken).toBe(true);
    const viewer = await gw.gql(token, VIEWER);
    expect(codeOf(viewer)).toBe('UNAUTHENTICATED');
    expect(dataOf(viewer)).toBeNull();
    const read = await gw.gql(token, ENTRIES, { ns: 'common' });
    expect(codeOf(read)).toBe('UNAUTHENTICATED');
  });

  it("refuses a revoked token's very next operation on the socket it already holds open, as UNAUTHENTICATED", async () => {
    const { id, token } = await gw.createToken(unique('reader'), 'READER');
    const socket = await openRawSocket(gw.wsUrl);
    socket.send({ type: 'connection_init', payload: { authorization: `Bearer ${token}` } });
    expect(await socket.waitFor((frame) => frame.type === 'connection_ack')).not.toBeNull();
    socket.send({ id: 'before', type: 'subscribe', payload: { query: VIEWER } });
    const before = await socket.waitFor((frame) => frame.type === 'next' && frame.id === 'before');
    expect(before?.payload?.data?.viewer?.role).toBe('READER');
    expect((await gw.ok(ADMIN_TOKEN, REVOKE_TOKEN, { id })).revokeToken).toBe(true);
    // The same socket, already authenticated for its earlier messages: the token is checked again for this one.
    socket.send({ id: 'after', type: 'subscribe', payload: { query: VIEWER } });
    const after = await socket.waitFor((frame) => frame.type === 'next' && frame.id === 'after');
    expect(after?.payload?.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
    expect(after?.payload?.data).toBeNull();
    socket.close();
  });

  it("refuses a deregistered agent's token at its very next request as UNAUTHENTICATED", async () => {
    const id = unique('agent');
    const agent = await gw.registerAgent(id);
    await gw.ok(agent, SET, { ns: 'common', key: unique('before'), value: 1 });
    expect((await gw.ok(ADMIN_TOKEN, DEREGISTER, { id })).deregisterAgent).toBe(true);
    const key = unique('after');
    const write = await gw.gql(agent, SET, { ns: 'common', key, value: 2 });
    expect(codeOf(write)).toBe('UNAUTHENTICATED');
    const viewer = await gw.gql(agent, VIEWER);
    expect(codeOf(viewer)).toBe('UNAUTHENTICATED');
    expect(await adminEntry('common', key)).toBeNull();
  });
});

describe('subscriptions over WebSocket', () => {
  it('ends an agent’s entryChanged with FORBIDDEN when its grant is revoked, and delivers nothing after', async () => {
    const ns = await createNamespace('watched', { openAccess: false });
    const id = unique('agent');
    const agent = await gw.registerAgent(id);
    await grant(ns, id, 'READ');
    const start = await adminSet(ns, unique('start'), 0);
    const { token: observerToken } = await gw.createToken(unique('observer'), 'READER');

    // The agent's subscription on a raw socket that stays open: what the server sends after the end is seen.
    const socket = await openRawSocket(gw.wsUrl);
    socket.send({ type: 'connection_init', payload: { authorization: `Bearer ${agent}` } });
    expect(await socket.waitFor((frame) => frame.type === 'connection_ack')).not.toBeNull();
    socket.send({ id: 'watch', type: 'subscribe', payload: { query: ENTRY_CHANGED, variables: { ns, after: start } } });
    const observer = subscribe<{ entryChanged: Change }>(gw.ws(observerToken), ENTRY_CHANGED, { ns, after: start });
    const firstKey = unique('first');
    await adminSet(ns, firstKey, 1);
    const first = await socket.waitFor((frame) => frame.type === 'next' && frame.payload?.data?.entryChanged?.key === firstKey);
    expect(first?.payload?.errors).toBeUndefined();
    expect(first?.payload?.data?.entryChanged).toMatchObject({ namespace: ns, key: firstKey, value: 1 });

    expect((await gw.ok(ADMIN_TOKEN, REVOKE_ACCESS, { ns, agent: id })).revokeAccess).toBe(true);
    expect(await socket.waitFor((frame) => frame.type === 'complete' && frame.id === 'watch')).not.toBeNull();
    const frames = socket.frames.filter((frame) => frame.id === 'watch').map((frame) => frame.type);
    expect(frames).toEqual(['next', 'next', 'complete']); // the change, the end, completed (not a transport error)
    const last = socket.frames.filter((frame) => frame.id === 'watch')[1];
    expect(last?.payload?.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
    expect(last?.payload?.data ?? null).toBeNull();

    // A later change reaches a subscriber that may read it, but not the revoked agent's socket, still open.
    const laterKey = unique('later');
    await adminSet(ns, laterKey, 2);
    await eventually(() => changesOf(observer).some((change) => change.key === laterKey), 10_000, 'the observer to see the later change');
    expect(socket.isOpen()).toBe(true);
    expect(socket.frames.filter((frame) => frame.id === 'watch')).toHaveLength(3);
    expect(JSON.stringify(socket.frames)).not.toContain(laterKey);
    observer.stop();
    socket.close();
  });

  it('answers entryChanged on a namespace the agent cannot read with FORBIDDEN at once', async () => {
    const restricted = await createNamespace('restricted', { openAccess: false });
    const unlisted = await createNamespace('unlisted');
    const missing = unique('missing');
    const agent = await gw.registerAgent(unique('agent'), [restricted, missing]);
    for (const ns of [restricted, unlisted, missing]) {
      const sub = subscribe<{ entryChanged: Change }>(gw.ws(agent), ENTRY_CHANGED, { ns, after: '0' });
      await ended(sub);
      expect(sub.error, ns).toBeUndefined();
      expect(sub.results, ns).toHaveLength(1);
      expect(sub.results[0]?.errors?.[0]?.extensions?.code, ns).toBe('FORBIDDEN');
      expect(sub.results[0]?.data ?? null, ns).toBeNull();
    }
  });

  it('delivers to an unfiltered entryChanged the changes of readable namespaces only', async () => {
    const listed = await createNamespace('listed');
    const granted = await createNamespace('granted', { openAccess: false });
    const restricted = await createNamespace('restricted', { openAccess: false });
    const unlisted = await createNamespace('unlisted');
    const id = unique('agent');
    const agent = await gw.registerAgent(id, [listed, restricted]);
    await grant(granted, id, 'READ');
    const start = await adminSet('common', unique('start'), 0);
    const secret = unique('secret');

    // Written before subscribing: replayed from afterRevision.
    await adminSet(restricted, unique('replayed'), secret);
    await adminSet(unlisted, unique('replayed'), secret);
    const replayedListed = await adminSet(listed, unique('replayed'), 1);
    const replayedGranted = await adminSet(granted, unique('replayed'), 2);

    const sub = subscribe<{ entryChanged: Change }>(gw.ws(agent), ENTRY_CHANGED, { ns: null, after: start });
    // The replay has arrived, so the subscription is attached: what follows is delivered live.
    await eventually(() => changesOf(sub).some((change) => change.revision === replayedGranted), 10_000, 'the replay');
    // Live: written while subscribed.
    await adminSet(unlisted, unique('live'), secret);
    const liveListed = await adminSet(listed, unique('live'), 3);
    await adminSet(restricted, unique('live'), secret);
    const liveGranted = await adminSet(granted, unique('live'), 4);
    await adminSet(unlisted, unique('live'), secret);
    const markerKey = unique('marker');
    const marker = await adminSet('common', markerKey, 'marker');

    await eventually(() => changesOf(sub).some((change) => change.key === markerKey), 10_000, 'the marker');
    const delivered = changesOf(sub);
    expect(sub.results.every((result) => result.errors === undefined)).toBe(true);
    const mine = delivered.filter((change) => [listed, granted, restricted, unlisted].includes(change.namespace));
    expect(mine.map((change) => change.revision)).toEqual([replayedListed, replayedGranted, liveListed, liveGranted]);
    expect(delivered.map((change) => change.revision)).toContain(marker);
    expect(delivered.map((change) => change.namespace)).not.toContain(restricted);
    expect(delivered.map((change) => change.namespace)).not.toContain(unlisted);
    expect(JSON.stringify(sub.results)).not.toContain(secret);
    sub.stop();
  });

  it('ends an open subscription with UNAUTHENTICATED when its READER token is revoked', async () => {
    const ns = await createNamespace('watched');
    const start = await adminSet(ns, unique('start'), 0);
    const { id, token } = await gw.createToken(unique('reader'), 'READER');
    const sub = subscribe<{ entryChanged: Change }>(gw.ws(token), ENTRY_CHANGED, { ns, after: start });
    const firstKey = unique('first');
    await adminSet(ns, firstKey, 1);
    const [first] = await sub.waitFor(1);
    expect(first?.data?.entryChanged).toMatchObject({ namespace: ns, key: firstKey, value: 1 });

    expect((await gw.ok(ADMIN_TOKEN, REVOKE_TOKEN, { id })).revokeToken).toBe(true);
    await ended(sub);
    expect(sub.error).toBeUndefined();
    expect(sub.results).toHaveLength(2);
    expect(sub.results[1]?.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
    expect(sub.results[1]?.data ?? null).toBeNull();

    await adminSet(ns, unique('later'), 2);
    expect(changesOf(sub).map((change) => change.key)).toEqual([firstKey]);
  });
});
