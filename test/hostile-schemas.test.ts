/**
 * Issue 14: a tenant's JSON Schema must not let one write stall the gateway. Patterns run on RE2
 * (linear time), uniqueItems is checked in linear time, and the work of checking one value is
 * bounded (README, Security). Each test would hang past its timeout on the engines this replaced,
 * or be answered differently.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, type Gateway, type GraphQLResponse, startGateway } from './support/gateway.js';

let gw: Gateway;
let agent: string;
const namespaces: string[] = [];
beforeAll(async () => {
  gw = await startGateway();
});
afterAll(() => gw?.close());

const CREATE = 'mutation($input: CreateNamespaceInput!) { createNamespace(input: $input) { name schema } }';
const UPDATE = 'mutation($input: UpdateNamespaceInput!) { updateNamespace(input: $input) { name schema } }';
const SET = 'mutation($input: SetEntryInput!) { setEntry(input: $input) { version } }';
const COMMIT = 'mutation($ops: [OperationInput!]!) { commit(input: { operations: $ops }) { revision } }';
const ENTRY = 'query($ns: String!, $key: String!) { entry(namespace: $ns, key: $key) { version } }';

let counter = 0;
/** A namespace of its own with `schema`, writable by the test's agent. */
async function typed(schema: unknown): Promise<string> {
  const name = `typed-${++counter}`;
  await gw.ok(ADMIN_TOKEN, CREATE, { input: { name, schema } });
  namespaces.push(name);
  agent = await gw.registerAgent(`writer-${counter}`, [...namespaces]);
  return name;
}

function expectError(result: GraphQLResponse, code: string, extensions: Record<string, unknown> = {}) {
  expect(result.errors?.[0]?.extensions, JSON.stringify(result).slice(0, 500)).toMatchObject({ code, ...extensions });
  return result.errors?.[0];
}

const write = (namespace: string, key: string, value: unknown) => gw.gql(agent, SET, { input: { namespace, key, value } });

async function expectNothingWritten(namespace: string, key: string) {
  expect((await gw.ok(agent, ENTRY, { ns: namespace, key })).entry).toBeNull();
}

describe('patterns', () => {
  it('matches a catastrophic pattern against 10,000 characters in linear time, with VALIDATION_FAILED or success as it should', async () => {
    const ns = await typed({ type: 'object', properties: { word: { type: 'string', pattern: '^(a+)+$' } } });
    const error = expectError(await write(ns, 'k', { word: `${'a'.repeat(10_000)}!` }), 'VALIDATION_FAILED', { path: '/word' });
    expect(error?.extensions?.reason).toMatch(/must match pattern/);
    await expectNothingWritten(ns, 'k');
    expect(await gw.ok(agent, SET, { input: { namespace: ns, key: 'k', value: { word: 'a'.repeat(10_000) } } })).toEqual({
      setEntry: { version: 1 },
    });
  });

  it('matches property names against patterns in linear time too (patternProperties, propertyNames)', async () => {
    const ns = await typed({ type: 'object', patternProperties: { '^(a+)+$': { type: 'number' } }, propertyNames: { pattern: '^(a+)+$' } });
    const key = `${'a'.repeat(5_000)}!`;
    expectError(await write(ns, 'k', { [key]: 1 }), 'VALIDATION_FAILED');
    expectError(await write(ns, 'k', { [key.slice(0, -1)]: 'not a number' }), 'VALIDATION_FAILED');
    expect(await gw.ok(agent, SET, { input: { namespace: ns, key: 'k', value: { [key.slice(0, -1)]: 1 } } })).toEqual({
      setEntry: { version: 1 },
    });
  });

  it.each([
    ['a lookahead', '(?=a)b', /lookahead/],
    ['a negative lookahead', '^(?!admin)', /lookahead/],
    ['a lookbehind', '(?<=x)y', /lookbehind/],
    ['a backreference', '^(a)\\1$', /backreference/],
    ['a named backreference', '(?<q>a)\\k<q>', /backreference/],
  ])('refuses a schema with %s at creation and update, with BAD_USER_INPUT naming schema and why', async (_what, pattern, why) => {
    const schema = { type: 'object', properties: { id: { type: 'string', pattern } } };
    const refused = expectError(await gw.gql(ADMIN_TOKEN, CREATE, { input: { name: `refused-${++counter}`, schema } }), 'BAD_USER_INPUT', {
      field: 'schema',
    });
    expect(refused?.message).toMatch(why);
    expect(refused?.message).toContain(JSON.stringify(pattern));

    const name = `plain-${++counter}`;
    await gw.ok(ADMIN_TOKEN, CREATE, { input: { name } });
    expectError(
      await gw.gql(ADMIN_TOKEN, UPDATE, { input: { name, schema: { patternProperties: { [pattern]: {} } } } }),
      'BAD_USER_INPUT',
      {
        field: 'schema',
      },
    );
    const { namespace } = await gw.ok(ADMIN_TOKEN, 'query($name: String!) { namespace(name: $name) { schema } }', { name });
    expect(namespace.schema).toBeNull();
  });

  it('accepts what RE2 runs as JavaScript does: classes, escapes, Unicode properties, named groups', async () => {
    const ns = await typed({
      type: 'object',
      properties: {
        code: { type: 'string', pattern: '^[A-Z]{3}-\\d{4}$' },
        name: { type: 'string', pattern: '^\\p{L}+$' },
        date: { type: 'string', pattern: '^(?<year>\\d{4})-(?<month>\\d{2})$' },
        path: { type: 'string', pattern: '^/[^/]+(/[^/]+)*$' },
      },
    });
    await gw.ok(agent, SET, {
      input: { namespace: ns, key: 'k', value: { code: 'ABC-1234', name: 'Zoë', date: '2024-05', path: '/a/b' } },
    });
    for (const [field, bad] of [
      ['code', 'abc-1234'],
      ['name', 'Zoë1'],
      ['date', '2024-5'],
      ['path', 'a/b'],
    ]) {
      expectError(await write(ns, 'k', { [field as string]: bad }), 'VALIDATION_FAILED', { path: `/${field}` });
    }
  });

  it('refuses a value whose text would take too long to match, with VALIDATION_FAILED saying so', async () => {
    const ns = await typed({ type: 'string', pattern: '^[a-z]+$' });
    const error = expectError(await write(ns, 'k', 'a'.repeat(200_000)), 'VALIDATION_FAILED');
    expect(error?.extensions?.reason).toMatch(/too long to match the schema's patterns/);
    await expectNothingWritten(ns, 'k');
  });
});

describe('the work of checking one value', () => {
  // Arrays of arrays: ajv compared every pair with deep equality (5 × 10⁹ comparisons here).
  const pairs = (count: number) => Array.from({ length: count }, (_, i) => [i]);

  it('checks uniqueItems over 100,000 arrays in linear time, naming the duplicate pair', async () => {
    const ns = await typed({ type: 'array', uniqueItems: true });
    const items = pairs(100_000);
    expect(await gw.ok(agent, SET, { input: { namespace: ns, key: 'unique', value: items } })).toEqual({ setEntry: { version: 1 } });
    const error = expectError(await write(ns, 'twice', [...items, [5]]), 'VALIDATION_FAILED', { path: '/' });
    expect(error?.extensions?.reason).toBe('must NOT have duplicate items (items ## 5 and 100000 are identical)');
    // Equal as JSON whatever the order of keys.
    expectError(
      await write(ns, 'objects', [
        { a: 1, b: [2] },
        { b: [2], a: 1 },
      ]),
      'VALIDATION_FAILED',
    );
    await expectNothingWritten(ns, 'twice');
  });

  it('bounds a schema whose branches multiply at every level: VALIDATION_FAILED instead of 2⁴⁰ steps', async () => {
    const branch = { type: 'array', items: { $ref: '#/$defs/tree' } };
    const ns = await typed({ $defs: { tree: { anyOf: [{ ...branch, contains: false }, branch] } }, $ref: '#/$defs/tree' });
    let nested: unknown = [];
    for (let i = 0; i < 40; i++) nested = [nested];
    const error = expectError(await write(ns, 'deep', nested), 'VALIDATION_FAILED', { path: '/' });
    expect(error?.extensions?.reason).toMatch(/too many steps/);
    // The same schema checks a shallow value as usual.
    expect(await gw.ok(agent, SET, { input: { namespace: ns, key: 'shallow', value: [[[]], []] } })).toEqual({ setEntry: { version: 1 } });
    expectError(await gw.gql(agent, COMMIT, { ops: [{ set: { namespace: ns, key: 'deep', value: nested } }] }), 'VALIDATION_FAILED');
    await expectNothingWritten(ns, 'deep');
  });

  it('bounds the work of a large enum applied to every item', async () => {
    const ns = await typed({ type: 'array', items: { enum: Array.from({ length: 5_000 }, (_, i) => i) } });
    expect(await gw.ok(agent, SET, { input: { namespace: ns, key: 'few', value: [1, 4_999] } })).toEqual({ setEntry: { version: 1 } });
    const error = expectError(
      await write(
        ns,
        'many',
        Array.from({ length: 50_000 }, () => 4_999),
      ),
      'VALIDATION_FAILED',
    );
    expect(error?.extensions?.reason).toMatch(/too many steps/);
  });

  it('checks large values against simple schemas, item by item', async () => {
    const ns = await typed({ type: 'array', items: { anyOf: [{ type: 'string' }, { type: 'integer', minimum: 0 }] } });
    const value = Array.from({ length: 100_000 }, (_, i) => i);
    expect(await gw.ok(agent, SET, { input: { namespace: ns, key: 'k', value } })).toEqual({ setEntry: { version: 1 } });
    expectError(await write(ns, 'k', [...value, -1]), 'VALIDATION_FAILED', { path: '/100000' });
  });

  it('refuses a schema with more than 500 subschemas, with BAD_USER_INPUT naming schema', async () => {
    const properties = (count: number) => Object.fromEntries(Array.from({ length: count }, (_, i) => [`p${i}`, { type: 'string' }]));
    const refused = expectError(
      await gw.gql(ADMIN_TOKEN, CREATE, { input: { name: `huge-${++counter}`, schema: { type: 'object', properties: properties(500) } } }),
      'BAD_USER_INPUT',
      { field: 'schema' },
    );
    expect(refused?.message).toMatch(/more than 500 subschemas/);
    await typed({ type: 'object', properties: properties(499) });
  });
});
