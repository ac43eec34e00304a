import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, type Gateway, startGateway } from './support/gateway.js';

const CREATE =
  'mutation($input: CreateNamespaceInput!) { createNamespace(input: $input) { name description openAccess sensitive schema defaultValue defaultTtlSeconds historyLimit entryCount } }';
const UPDATE =
  'mutation($input: UpdateNamespaceInput!) { updateNamespace(input: $input) { name description openAccess schema defaultTtlSeconds } }';
const DELETE = 'mutation($name: String!) { deleteNamespace(name: $name) }';
const SET = 'mutation($input: SetEntryInput!) { setEntry(input: $input) { version revision } }';

describe('namespaces and agents, as an admin manages them', () => {
  let gw: Gateway;
  beforeAll(async () => {
    gw = await startGateway();
  });
  afterAll(() => gw.close());

  const codeOf = (result: { errors?: { extensions?: Record<string, unknown> }[] }) => result.errors?.[0]?.extensions;

  it('creates a namespace with the contract defaults and lists it', async () => {
    const { createNamespace } = await gw.ok(ADMIN_TOKEN, CREATE, { input: { name: 'ns-defaults' } });
    expect(createNamespace).toEqual({
      name: 'ns-defaults',
      description: null,
      openAccess: true,
      sensitive: false,
      schema: null,
      defaultValue: null,
      defaultTtlSeconds: null,
      historyLimit: null,
      entryCount: 0,
    });
    const { namespaces } = await gw.ok(ADMIN_TOKEN, '{ namespaces { name } }');
    expect(namespaces.map((n: { name: string }) => n.name)).toEqual(expect.arrayContaining(['common', 'system', 'ns-defaults']));
  });

  it('refuses a duplicate or badly named namespace, naming the field', async () => {
    await gw.createNamespace('ns-dup');
    expect(codeOf(await gw.gql(ADMIN_TOKEN, CREATE, { input: { name: 'ns-dup' } }))).toMatchObject({
      code: 'BAD_USER_INPUT',
      field: 'name',
    });
    expect(codeOf(await gw.gql(ADMIN_TOKEN, CREATE, { input: { name: 'common' } }))).toMatchObject({
      code: 'BAD_USER_INPUT',
      field: 'name',
    });
    for (const name of ['Upper', '-lead', 'has space', 'x'.repeat(64), '']) {
      expect(codeOf(await gw.gql(ADMIN_TOKEN, CREATE, { input: { name } })), name).toMatchObject({ code: 'BAD_USER_INPUT', field: 'name' });
    }
    for (const [field, value] of [
      ['defaultTtlSeconds', 0],
      ['historyLimit', 0],
      ['schema', { type: 12 }],
    ] as const) {
      expect(codeOf(await gw.gql(ADMIN_TOKEN, CREATE, { input: { name: 'ns-bad-setting', [field]: value } }))).toMatchObject({
        code: 'BAD_USER_INPUT',
        field,
      });
    }
    const { namespace } = await gw.ok(ADMIN_TOKEN, '{ namespace(name: "ns-bad-setting") { name } }');
    expect(namespace).toBeNull();
  });

  it('refuses a defaultValue that breaks the namespace schema', async () => {
    const result = await gw.gql(ADMIN_TOKEN, CREATE, {
      input: { name: 'ns-typed-default', schema: { type: 'number' }, defaultValue: 'text' },
    });
    expect(codeOf(result)).toMatchObject({ code: 'BAD_USER_INPUT', field: 'defaultValue' });
  });

  it('updates only the settings given, and null clears one', async () => {
    await gw.ok(ADMIN_TOKEN, CREATE, {
      input: { name: 'ns-upd', description: 'before', schema: { type: 'object' }, defaultTtlSeconds: 60 },
    });
    const { updateNamespace } = await gw.ok(ADMIN_TOKEN, UPDATE, { input: { name: 'ns-upd', openAccess: false, schema: null } });
    expect(updateNamespace).toEqual({ name: 'ns-upd', description: 'before', openAccess: false, schema: null, defaultTtlSeconds: 60 });
    expect(codeOf(await gw.gql(ADMIN_TOKEN, UPDATE, { input: { name: 'ns-missing', description: 'x' } }))).toMatchObject({
      code: 'NOT_FOUND',
    });
  });

  it('answers an admin about a namespace that does not exist with null or NOT_FOUND', async () => {
    const { namespace } = await gw.ok(ADMIN_TOKEN, '{ namespace(name: "ns-never") { name } }');
    expect(namespace).toBeNull();
    const read = await gw.gql(ADMIN_TOKEN, '{ entry(namespace: "ns-never", key: "k") { value } }');
    expect(codeOf(read)).toMatchObject({ code: 'NOT_FOUND' });
    const write = await gw.gql(ADMIN_TOKEN, SET, { input: { namespace: 'ns-never', key: 'k', value: 1 } });
    expect(codeOf(write)).toMatchObject({ code: 'NOT_FOUND' });
  });

  it('deletes a namespace with its entries and change log; a namespace of the same name starts empty', async () => {
    await gw.createNamespace('ns-del');
    await gw.ok(ADMIN_TOKEN, SET, { input: { namespace: 'ns-del', key: 'a', value: 1 } });
    expect((await gw.ok(ADMIN_TOKEN, DELETE, { name: 'ns-del' })).deleteNamespace).toBe(true);
    expect((await gw.ok(ADMIN_TOKEN, DELETE, { name: 'ns-del' })).deleteNamespace).toBe(false);
    await gw.createNamespace('ns-del');
    const after = await gw.ok(
      ADMIN_TOKEN,
      '{ entries(namespace: "ns-del") { nodes { key } } changes(namespace: "ns-del") { nodes { key } } }',
    );
    expect(after).toEqual({ entries: { nodes: [] }, changes: { nodes: [] } });
  });

  it('keeps the built-in namespaces', async () => {
    for (const name of ['common', 'system']) {
      expect(codeOf(await gw.gql(ADMIN_TOKEN, DELETE, { name }))).toMatchObject({ code: 'BAD_USER_INPUT', field: 'name' });
    }
  });

  it('grants and revokes, refusing unknown agents and namespaces by field', async () => {
    await gw.createNamespace('ns-grants', { openAccess: false });
    await gw.registerAgent('grantee');
    const GRANT = 'mutation($input: GrantAccessInput!) { grantAccess(input: $input) { namespace agentId permission grantedAt } }';
    const { grantAccess } = await gw.ok(ADMIN_TOKEN, GRANT, { input: { namespace: 'ns-grants', agentId: 'grantee' } });
    expect(grantAccess).toMatchObject({ namespace: 'ns-grants', agentId: 'grantee', permission: 'WRITE' });
    const { namespace } = await gw.ok(ADMIN_TOKEN, '{ namespace(name: "ns-grants") { grants { agentId permission } } }');
    expect(namespace.grants).toEqual([{ agentId: 'grantee', permission: 'WRITE' }]);

    expect(codeOf(await gw.gql(ADMIN_TOKEN, GRANT, { input: { namespace: 'ns-grants', agentId: 'nobody' } }))).toMatchObject({
      code: 'BAD_USER_INPUT',
      field: 'agentId',
    });
    expect(codeOf(await gw.gql(ADMIN_TOKEN, GRANT, { input: { namespace: 'ns-nowhere', agentId: 'grantee' } }))).toMatchObject({
      code: 'BAD_USER_INPUT',
      field: 'namespace',
    });
    const REVOKE = 'mutation($input: RevokeAccessInput!) { revokeAccess(input: $input) }';
    expect((await gw.ok(ADMIN_TOKEN, REVOKE, { input: { namespace: 'ns-grants', agentId: 'grantee' } })).revokeAccess).toBe(true);
    expect((await gw.ok(ADMIN_TOKEN, REVOKE, { input: { namespace: 'ns-grants', agentId: 'grantee' } })).revokeAccess).toBe(false);
  });

  it('registers agents once, validates their fields, and deregisters them', async () => {
    const REGISTER =
      'mutation($input: RegisterAgentInput!) { registerAgent(input: $input) { token agent { id name type capabilities stateNamespaces status active } } }';
    const { registerAgent } = await gw.ok(ADMIN_TOKEN, REGISTER, {
      input: { id: 'agent-a', name: 'A', type: 'importer', capabilities: ['read'], stateNamespaces: ['ns-x'] },
    });
    expect(registerAgent.token).toMatch(/^sh_/);
    expect(registerAgent.agent).toEqual({
      id: 'agent-a',
      name: 'A',
      type: 'importer',
      capabilities: ['read'],
      stateNamespaces: ['ns-x'],
      status: 'STARTING',
      active: false,
    });
    expect(codeOf(await gw.gql(ADMIN_TOKEN, REGISTER, { input: { id: 'agent-a', name: 'A', type: 't' } }))).toMatchObject({
      code: 'BAD_USER_INPUT',
      field: 'id',
    });
    expect(codeOf(await gw.gql(ADMIN_TOKEN, REGISTER, { input: { name: 'B', type: 't', stateNamespaces: ['Not Valid'] } }))).toMatchObject({
      code: 'BAD_USER_INPUT',
      field: 'stateNamespaces',
    });
    const generated = await gw.ok(ADMIN_TOKEN, REGISTER, { input: { name: 'C', type: 't' } });
    expect(generated.registerAgent.agent.id).toMatch(/^agent-/);

    const { agents } = await gw.ok(ADMIN_TOKEN, '{ agents(type: "importer") { id } }');
    expect(agents).toEqual([{ id: 'agent-a' }]);
    expect((await gw.ok(ADMIN_TOKEN, 'mutation { deregisterAgent(id: "agent-a") }')).deregisterAgent).toBe(true);
    expect((await gw.ok(ADMIN_TOKEN, 'mutation { deregisterAgent(id: "agent-a") }')).deregisterAgent).toBe(false);
    expect((await gw.ok(ADMIN_TOKEN, '{ agent(id: "agent-a") { id } }')).agent).toBeNull();
  });

  it('counts entries per namespace in one batch', async () => {
    await gw.createNamespace('ns-count-a');
    await gw.createNamespace('ns-count-b');
    for (const key of ['1', '2', '3']) await gw.ok(ADMIN_TOKEN, SET, { input: { namespace: 'ns-count-a', key, value: 1 } });
    await gw.ok(ADMIN_TOKEN, SET, { input: { namespace: 'ns-count-b', key: 'x', value: 1 } });
    await gw.ok(ADMIN_TOKEN, 'mutation { deleteEntry(input: { namespace: "ns-count-a", key: "3" }) }');
    const { namespaces } = await gw.ok(ADMIN_TOKEN, '{ namespaces { name entryCount } }');
    const counts = Object.fromEntries(namespaces.map((n: { name: string; entryCount: number }) => [n.name, n.entryCount]));
    expect(counts).toMatchObject({ 'ns-count-a': 2, 'ns-count-b': 1 });
  });
});
