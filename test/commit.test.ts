import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, type Gateway, startGateway, subscribe } from './support/gateway.js';

const COMMIT =
  'mutation($input: CommitInput!) { commit(input: $input) { revision entries { namespace scope key value version revision } } }';
const ENTRY = 'query($ns: String!, $key: String!) { entry(namespace: $ns, key: $key) { value version } }';

describe('commit: conditions and operations, all or nothing', () => {
  let gw: Gateway;
  let agent: string;
  beforeAll(async () => {
    gw = await startGateway();
    await gw.createNamespace('tx');
    await gw.createNamespace('tx-locked', { openAccess: false });
    await gw.createNamespace('tx-typed', { schema: { type: 'object', properties: { n: { type: 'number' } }, required: ['n'] } });
    agent = await gw.registerAgent('tx-agent', ['tx', 'tx-locked', 'tx-typed']);
  });
  afterAll(() => gw.close());

  const snapshot = async (keys: string[], ns = 'tx') => {
    const values: Record<string, unknown> = {};
    for (const key of keys) values[key] = (await gw.ok(ADMIN_TOKEN, ENTRY, { ns, key })).entry;
    const { changes } = await gw.ok(ADMIN_TOKEN, '{ changes(first: 1000) { nodes { revision key } } }');
    return { values, changes: changes.nodes.length };
  };

  it('applies set, patch, increment and delete together under one revision', async () => {
    await gw.ok(agent, COMMIT, {
      input: { operations: [{ set: { namespace: 'tx', key: 'p', value: { a: 1 } } }, { set: { namespace: 'tx', key: 'gone', value: 1 } }] },
    });
    const { commit } = await gw.ok(agent, COMMIT, {
      input: {
        conditions: [{ namespace: 'tx', key: 'p', version: 1 }],
        operations: [
          { set: { namespace: 'tx', key: 's', value: 'v' } },
          { patch: { namespace: 'tx', key: 'p', patch: { b: 2 } } },
          { increment: { namespace: 'tx', key: 'c', by: 2.5 } },
          { delete: { namespace: 'tx', key: 'gone' } },
        ],
      },
    });
    expect(commit.entries.map((e: { key: string; value: unknown; version: number }) => [e.key, e.value, e.version])).toEqual([
      ['s', 'v', 1],
      ['p', { a: 1, b: 2 }, 2],
      ['c', 2.5, 1],
    ]);
    for (const entry of commit.entries) expect(entry.revision).toBe(commit.revision);
    expect((await gw.ok(agent, ENTRY, { ns: 'tx', key: 'gone' })).entry).toBeNull();
    const { changes } = await gw.ok(
      agent,
      `{ changes(namespace: "tx", afterRevision: "${BigInt(commit.revision) - 1n}") { nodes { revision op key version } } }`,
    );
    expect(changes.nodes).toEqual(
      expect.arrayContaining([
        { revision: commit.revision, op: 'SET', key: 's', version: 1 },
        { revision: commit.revision, op: 'SET', key: 'p', version: 2 },
        { revision: commit.revision, op: 'SET', key: 'c', version: 1 },
        { revision: commit.revision, op: 'DELETE', key: 'gone', version: 2 },
      ]),
    );
    expect(changes.nodes).toHaveLength(4);
  });

  it('changes nothing when one condition fails, and names the current version', async () => {
    await gw.ok(agent, COMMIT, { input: { operations: [{ set: { namespace: 'tx', key: 'k1', value: 1 } }] } });
    const before = await snapshot(['k1', 'k2']);
    const result = await gw.gql(agent, COMMIT, {
      input: {
        conditions: [
          { namespace: 'tx', key: 'k2', version: 0 },
          { namespace: 'tx', key: 'k1', version: 7 },
        ],
        operations: [{ set: { namespace: 'tx', key: 'k1', value: 2 } }, { set: { namespace: 'tx', key: 'k2', value: 2 } }],
      },
    });
    expect(result.errors?.[0]?.extensions).toMatchObject({ code: 'VERSION_CONFLICT', currentVersion: 1 });
    expect(await snapshot(['k1', 'k2'])).toEqual(before);
  });

  it('creates only what does not exist with version 0 conditions', async () => {
    const input = {
      conditions: [{ namespace: 'tx', key: 'once', version: 0 }],
      operations: [{ set: { namespace: 'tx', key: 'once', value: 1 } }],
    };
    await gw.ok(agent, COMMIT, { input });
    expect((await gw.gql(agent, COMMIT, { input })).errors?.[0]?.extensions).toMatchObject({ code: 'VERSION_CONFLICT', currentVersion: 1 });
  });

  it('changes nothing when one operation is forbidden', async () => {
    const other = await gw.registerAgent('tx-outsider', ['tx']);
    const before = await snapshot(['f1']);
    const result = await gw.gql(other, COMMIT, {
      input: { operations: [{ set: { namespace: 'tx', key: 'f1', value: 1 } }, { set: { namespace: 'tx-locked', key: 'f2', value: 1 } }] },
    });
    expect(result.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
    expect(await snapshot(['f1'])).toEqual(before);
  });

  it('changes nothing when one value breaks the namespace schema or is not a number', async () => {
    await gw.ok(agent, COMMIT, { input: { operations: [{ set: { namespace: 'tx', key: 'text', value: 'x' } }] } });
    const before = await snapshot(['v1', 'text']);
    const invalid = await gw.gql(agent, COMMIT, {
      input: {
        operations: [{ set: { namespace: 'tx', key: 'v1', value: 1 } }, { set: { namespace: 'tx-typed', key: 't', value: { n: 'no' } } }],
      },
    });
    expect(invalid.errors?.[0]?.extensions).toMatchObject({ code: 'VALIDATION_FAILED', path: '/n' });
    const patched = await gw.gql(agent, COMMIT, {
      input: {
        operations: [{ set: { namespace: 'tx', key: 'v1', value: 1 } }, { patch: { namespace: 'tx-typed', key: 't2', patch: { m: 1 } } }],
      },
    });
    expect(patched.errors?.[0]?.extensions?.code).toBe('VALIDATION_FAILED');
    const notANumber = await gw.gql(agent, COMMIT, {
      input: { operations: [{ set: { namespace: 'tx', key: 'v1', value: 1 } }, { increment: { namespace: 'tx', key: 'text' } }] },
    });
    expect(notANumber.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'operations[1]' });
    expect(await snapshot(['v1', 'text'])).toEqual(before);
  });

  it('refuses an increment whose sum is beyond the range of JSON numbers, and changes nothing', async () => {
    await gw.ok(agent, COMMIT, { input: { operations: [{ set: { namespace: 'tx', key: 'huge', value: 1e308 } }] } });
    const before = await snapshot(['v1', 'huge']);
    const result = await gw.gql(agent, COMMIT, {
      input: {
        operations: [{ set: { namespace: 'tx', key: 'v1', value: 7 } }, { increment: { namespace: 'tx', key: 'huge', by: 1e308 } }],
      },
    });
    expect(result.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'operations[1]' });
    expect(await snapshot(['v1', 'huge'])).toEqual(before);
  });

  it('refuses operations that set no field, several fields, or the same key twice', async () => {
    const cases = [
      [{}],
      [{ set: { namespace: 'tx', key: 'a', value: 1 }, delete: { namespace: 'tx', key: 'a' } }],
      [{ set: { namespace: 'tx', key: 'a', value: 1 } }, { increment: { namespace: 'tx', key: 'a' } }],
    ];
    for (const operations of cases) {
      const result = await gw.gql(agent, COMMIT, { input: { operations } });
      expect(result.errors?.[0]?.extensions, JSON.stringify(operations)).toMatchObject({ code: 'BAD_USER_INPUT' });
      expect(String(result.errors?.[0]?.extensions?.field)).toMatch(/^operations/);
    }
    const empty = await gw.gql(agent, COMMIT, { input: { operations: [] } });
    expect(empty.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'operations' });
    expect((await gw.ok(agent, ENTRY, { ns: 'tx', key: 'a' })).entry).toBeNull();
  });

  it('delivers every change of a commit to a subscriber, with one revision', async () => {
    const { setEntry } = await gw.ok(agent, 'mutation { setEntry(input: { namespace: "tx", key: "mark", value: 0 }) { revision } }');
    const sub = subscribe(
      gw.ws(agent),
      `subscription { entryChanged(namespace: "tx", afterRevision: "${setEntry.revision}") { revision key } }`,
    );
    const { commit } = await gw.ok(agent, COMMIT, {
      input: { operations: ['x', 'y', 'z'].map((key) => ({ set: { namespace: 'tx', key: `sub-${key}`, value: key } })) },
    });
    const results = await sub.waitFor(3);
    expect(results.map((r) => r.data?.entryChanged)).toEqual(
      ['x', 'y', 'z'].map((key) => ({ revision: commit.revision, key: `sub-${key}` })),
    );
  });
});
