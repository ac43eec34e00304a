/**
 * What a hostile client's black-box probe found (issue 14), through the public surface: an import
 * that loosened a namespace, namespace names shown to agents that may not learn them, refusals that
 * flooded the audit log, metric points that broke aggregation, sockets and streams held open or
 * unread, foreign origins on WebSocket, and keys that display as something they are not. Every test
 * works in a tenant of its own.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, type Gateway, type GraphQLResponse, startGateway } from './support/gateway.js';

let gw: Gateway;
beforeAll(async () => {
  gw = await startGateway();
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
