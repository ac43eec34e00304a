import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, type Gateway, startGateway } from './support/gateway.js';

const EXPORT = 'query($ns: [String!]) { exportState(namespaces: $ns) }';
const IMPORT = 'mutation($data: JSON!, $mode: ImportMode) { importState(data: $data, mode: $mode) }';
const SET = 'mutation($input: SetEntryInput!) { setEntry(input: $input) { version } }';

describe('exportState and importState', () => {
  let gw: Gateway;
  let other: string;
  beforeAll(async () => {
    gw = await startGateway();
    await gw.createNamespace('port-a', { description: 'first', openAccess: false, schema: { type: 'object' }, historyLimit: 5 });
    await gw.createNamespace('port-b', { defaultValue: 0, defaultTtlSeconds: 3600 });
    for (const [namespace, scope, key, value] of [
      ['port-a', 'global', 'one', { n: 1 }],
      ['port-a', 'thread:7', 'one', { n: 2 }],
      ['port-b', 'global', 'count', 41],
      ['common', 'global', 'shared', 'yes'],
    ] as const) {
      await gw.ok(ADMIN_TOKEN, SET, { input: { namespace, scope, key, value } });
    }
    other = (await gw.ok(ADMIN_TOKEN, 'mutation { createTenant(name: "copy") { token } }')).createTenant.token;
  });
  afterAll(() => gw.close());

  const strip = (data: { namespaces: { entries: { expiresAt: string | null }[] }[] }) =>
    data.namespaces.map((ns) => ({ ...ns, entries: ns.entries.map((e) => ({ ...e, expiresAt: e.expiresAt !== null })) }));

  it('round-trips every namespace setting and entry into a new tenant', async () => {
    const { exportState } = await gw.ok(ADMIN_TOKEN, EXPORT);
    expect(exportState.format).toBe('statehouse-export');
    expect(exportState.namespaces.map((ns: { name: string }) => ns.name)).toEqual(['common', 'port-a', 'port-b', 'system']);
    expect((await gw.ok(other, IMPORT, { data: exportState })).importState).toBe(true);
    const copied = (await gw.ok(other, EXPORT)).exportState;
    expect(strip(copied)).toEqual(strip(exportState));
    const { namespace } = await gw.ok(other, '{ namespace(name: "port-a") { description openAccess schema historyLimit entryCount } }');
    expect(namespace).toEqual({ description: 'first', openAccess: false, schema: { type: 'object' }, historyLimit: 5, entryCount: 2 });
    const { changes } = await gw.ok(other, '{ changes { nodes { revision op key } } }');
    expect(new Set(changes.nodes.map((c: { revision: string }) => c.revision)).size).toBe(1);
    expect(changes.nodes).toHaveLength(4);
  });

  it('exports only the namespaces asked for', async () => {
    const { exportState } = await gw.ok(ADMIN_TOKEN, EXPORT, { ns: ['port-b'] });
    expect(exportState.namespaces).toHaveLength(1);
    expect(exportState.namespaces[0]).toMatchObject({
      name: 'port-b',
      defaultValue: 0,
      defaultTtlSeconds: 3600,
      entries: [{ key: 'count', value: 41 }],
    });
  });

  it('merges, or replaces the entries of the namespaces it holds', async () => {
    await gw.ok(other, SET, { input: { namespace: 'port-b', key: 'extra', value: 1 } });
    const data = (await gw.ok(ADMIN_TOKEN, EXPORT, { ns: ['port-b'] })).exportState;
    await gw.ok(other, IMPORT, { data, mode: 'MERGE' });
    const keys = async () =>
      (await gw.ok(other, '{ entries(namespace: "port-b") { nodes { key } } }')).entries.nodes.map((n: { key: string }) => n.key);
    expect(await keys()).toEqual(['count', 'extra']);
    await gw.ok(other, IMPORT, { data, mode: 'REPLACE' });
    expect(await keys()).toEqual(['count']);
    expect((await gw.ok(other, '{ entry(namespace: "common", key: "shared") { value } }')).entry).toEqual({ value: 'yes' });
    const { entryHistory } = await gw.ok(other, '{ entryHistory(namespace: "port-b", key: "extra") { op } }');
    expect(entryHistory[0]).toEqual({ op: 'DELETE' });
  });

  it('imports all or nothing, naming the bad part', async () => {
    const data = (await gw.ok(ADMIN_TOKEN, EXPORT, { ns: ['port-b'] })).exportState;
    const before = (await gw.ok(other, '{ changes(first: 1000) { nodes { revision } } }')).changes.nodes.length;
    const broken = {
      ...data,
      namespaces: [
        {
          ...data.namespaces[0],
          name: 'port-new',
          entries: [
            { scope: 'global', key: 'ok', value: 1 },
            { scope: 'bad scope', key: 'x', value: 1 },
          ],
        },
      ],
    };
    const result = await gw.gql(other, IMPORT, { data: broken });
    expect(result.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'namespaces[0].entries[1].scope' });
    expect((await gw.ok(other, '{ namespace(name: "port-new") { name } }')).namespace).toBeNull();
    expect((await gw.ok(other, '{ changes(first: 1000) { nodes { revision } } }')).changes.nodes).toHaveLength(before);
    expect((await gw.gql(other, IMPORT, { data: { hello: 'world' } })).errors?.[0]?.extensions).toMatchObject({
      code: 'BAD_USER_INPUT',
      field: 'data',
    });
  });

  it('is for admins only', async () => {
    const reader = (await gw.createToken('port-reader', 'READER')).token;
    expect((await gw.gql(reader, EXPORT)).errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
    expect((await gw.gql(reader, IMPORT, { data: {} })).errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
  });
});
