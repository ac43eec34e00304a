/**
 * statehouse/langgraph: StatehouseStore against LangGraph's own InMemoryStore on the same seeded random
 * sequences of operations (their answers must be equal, times aside), its namespace layout with any
 * characters, and access control — against a started gateway, through statehouse/client.
 */
import { InMemoryStore, type Item, type Operation } from '@langchain/langgraph-checkpoint';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { connect, ForbiddenError, type StatehouseClient } from '../src/client/index.js';
import { SemanticSearchUnsupportedError, StatehouseStore } from '../src/langgraph/index.js';
import { backend } from './support/database.js';
import { ADMIN_TOKEN, type Gateway, startGateway } from './support/gateway.js';

let gw: Gateway;
let agentToken: string;
const clients: StatehouseClient[] = [];

function client(token: string): StatehouseClient {
  const made = connect({ url: gw.url, token, webSocket: WebSocket });
  clients.push(made);
  return made;
}

beforeAll(async () => {
  gw = await startGateway({ app: { encryptionKey: 'b2'.repeat(32) } }); // for a sensitive namespace
  await gw.createNamespace('memory');
  await gw.createNamespace('other');
  await gw.createNamespace('secret', { openAccess: false });
  agentToken = await gw.registerAgent('graph', ['memory', 'other']);
});

afterAll(async () => {
  await Promise.allSettled(clients.map((made) => made.close()));
  await gw?.close();
});

/** mulberry32: a small seeded generator, so a failing sequence can be run again by its seed. */
function random(seed: number) {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  const pick = <T>(items: readonly T[]): T => items[int(items.length)] as T;
  return { next, int, pick };
}

// Labels that are prefixes of one another, or hold the layout's separator and escape, in both stores'
// rules (the InMemoryStore refuses '.', ':' and empty labels).
const LABELS = ['a', 'ab', 'a b', 'a/b', 'b', '%', '%002F', 'ü', '😀', 'A'];
const KEYS = ['k', 'k/1', '%k', 'K', 'k k', '😀', ''];

function operationGenerator(seed: number) {
  const r = random(seed);
  const namespace = () => Array.from({ length: 1 + r.int(3) }, () => r.pick(LABELS));
  const prefix = () => Array.from({ length: r.int(3) }, () => r.pick(LABELS));
  const pattern = () => Array.from({ length: 1 + r.int(2) }, () => (r.int(4) === 0 ? '*' : r.pick(LABELS)));
  const value = () => ({
    n: r.int(6),
    tag: r.pick(['x', 'y']),
    flag: r.int(2) === 1,
    ...(r.int(3) === 0 ? { deep: { list: [r.int(3)] } } : {}),
  });
  const filter = () =>
    r.pick<Record<string, unknown> | undefined>([
      undefined,
      { tag: 'x' },
      { n: { $gt: 2 } },
      { flag: true, n: { $lte: 3 } },
      { n: { $in: [1, 2] } },
      { tag: { $ne: 'x' }, n: { $gte: 1 } },
      { n: { $nin: [0, 5] } },
    ]);
  const one = (): Operation => {
    const roll = r.int(100);
    if (roll < 50) return { namespace: namespace(), key: r.pick(KEYS), value: value() };
    if (roll < 62) return { namespace: namespace(), key: r.pick(KEYS), value: null };
    if (roll < 74) return { namespace: namespace(), key: r.pick(KEYS) };
    if (roll < 88) {
      const limit = r.int(3) === 0 ? undefined : 1 + r.int(6);
      return { namespacePrefix: prefix(), filter: filter(), limit, offset: r.int(3) === 0 ? r.int(4) : undefined } as Operation;
    }
    const matchConditions = [
      ...(r.int(2) ? [{ matchType: 'prefix' as const, path: pattern() }] : []),
      ...(r.int(3) === 0 ? [{ matchType: 'suffix' as const, path: pattern() }] : []),
    ];
    return {
      matchConditions: matchConditions.length ? matchConditions : undefined,
      maxDepth: r.int(3) === 0 ? 1 + r.int(2) : undefined,
      limit: r.pick([1, 3, 100]),
      offset: r.pick([0, 0, 1, 2]),
    };
  };
  return () => (r.int(12) === 0 ? Array.from({ length: 2 + r.int(4) }, one) : [one()]);
}

/** The documented order of search results: namespace label by label (a prefix first), then key, by code units. */
function documentedOrder(a: Item, b: Item): number {
  const text = (x: string, y: string) => (x < y ? -1 : x > y ? 1 : 0);
  for (let i = 0; i < Math.min(a.namespace.length, b.namespace.length); i++) {
    const order = text(a.namespace[i] ?? '', b.namespace[i] ?? '');
    if (order) return order;
  }
  return a.namespace.length - b.namespace.length || text(a.key, b.key);
}

/**
 * LangGraph's InMemoryStore, with the two differences StatehouseStore documents: search results in the
 * documented order (the InMemoryStore keeps insertion order), and a namespace listed only while it holds
 * items (the InMemoryStore remembers every namespace it ever saw, even one only deleted from).
 */
async function reference(memory: InMemoryStore, operations: Operation[]): Promise<unknown[]> {
  const widened = operations.map((op) => ('namespacePrefix' in op ? { ...op, limit: Number.MAX_SAFE_INTEGER, offset: 0 } : op));
  const results = await memory.batch(widened);
  const data = (memory as unknown as { data: Map<string, Map<string, unknown>> }).data;
  for (const [namespace, items] of data) if (items.size === 0) data.delete(namespace);
  return results.map((result, i) => {
    const op = operations[i] as Operation;
    if (!('namespacePrefix' in op)) return result;
    const offset = op.offset ?? 0;
    return (result as Item[]).sort(documentedOrder).slice(offset, offset + (op.limit ?? 10));
  });
}

/** An answer without its times, comparable with toEqual. */
function timeless(result: unknown): unknown {
  const strip = (item: Item | null) => item && { namespace: item.namespace, key: item.key, value: item.value };
  if (Array.isArray(result)) return result.map((entry) => (Array.isArray(entry) ? entry : strip(entry as Item)));
  return result === undefined || result === null ? null : strip(result as Item);
}

describe(`statehouse/langgraph StatehouseStore (${backend})`, () => {
  it('answers seeded random sequences of operations exactly as LangGraph`s InMemoryStore does', async () => {
    const agent = client(agentToken);
    for (let seed = 1; seed <= 12; seed++) {
      const memory = new InMemoryStore();
      // A scope of its own per sequence, so each starts empty.
      const store = new StatehouseStore({ client: agent, namespace: 'memory', scope: `seed:${seed}`, pageSize: 7 });
      const next = operationGenerator(seed);
      for (let step = 0; step < 60; step++) {
        const operations = next();
        const [expected, actual] = [await reference(memory, operations), await store.batch(operations)];
        expect(actual.map(timeless), `seed ${seed} step ${step}: ${JSON.stringify(operations)}`).toEqual(expected.map(timeless));
      }
      const everything = [{ namespacePrefix: [], limit: 1_000 }] as Operation[];
      const [all] = await store.batch(everything);
      expect(timeless(all), `seed ${seed}: the whole store`).toEqual(timeless((await reference(memory, everything))[0]));
    }
  }, 180_000);

  it('gives items times, and its put, get, delete and search methods work as BaseStore`s', async () => {
    const store = new StatehouseStore({ client: client(agentToken), namespace: 'memory', scope: 'methods' });
    const before = Date.now();
    await store.put(['users', 'u1'], 'prefs', { theme: 'dark' });
    const item = await store.get(['users', 'u1'], 'prefs');
    expect(item).toMatchObject({ namespace: ['users', 'u1'], key: 'prefs', value: { theme: 'dark' } });
    expect(item?.createdAt).toBeInstanceOf(Date);
    expect(item?.updatedAt.getTime()).toBeGreaterThanOrEqual(before - 5_000);
    await store.put(['users', 'u1'], 'prefs', { theme: 'light' });
    const updated = await store.get(['users', 'u1'], 'prefs');
    expect(updated?.value).toEqual({ theme: 'light' });
    expect(updated?.createdAt.getTime()).toBe(item?.createdAt.getTime());
    expect((await store.search(['users'])).map((found) => found.key)).toEqual(['prefs']);
    expect(await store.listNamespaces()).toEqual([['users', 'u1']]);
    await store.delete(['users', 'u1'], 'prefs');
    expect(await store.get(['users', 'u1'], 'prefs')).toBeNull();
    expect(await store.listNamespaces()).toEqual([]);
  });

  it('keeps prefixes exact for labels and keys with any characters, in the documented layout', async () => {
    const store = new StatehouseStore({ client: client(agentToken), namespace: 'memory', scope: 'layout' });
    const labels = ['a', 'a.b', 'a:b', 'a/b', 'a%', '%002F', '', 'ab', '\u0001', 'x\u202ey', '😀', 'a b'];
    // batch() takes what put() refuses by LangGraph's rules ('.', ':', empty labels): the layout holds them.
    await store.batch(
      labels.flatMap((label) => [
        { namespace: [label], key: 'k', value: { label } },
        { namespace: ['a', label], key: `${label}/`, value: { label } },
      ]),
    );
    // LangGraph's methods keep LangGraph's label rules, so the odd labels are read through batch() too.
    const search = async (prefix: string[]) =>
      ((await store.batch([{ namespacePrefix: prefix, limit: 100 }]))[0] as Item[]).map((item) => item.namespace);
    const get = async (namespace: string[], key: string) => (await store.batch([{ namespace, key }]))[0];
    const byLabel = (x: string[], y: string[]) => ((x[1] ?? '') < (y[1] ?? '') ? -1 : 1);
    for (const label of labels) {
      expect(await search([label]), label).toEqual(
        label === 'a' ? [['a'], ...labels.map((inner) => ['a', inner]).sort(byLabel)] : [[label]],
      );
      expect(await search(['a', label]), label).toEqual([['a', label]]);
      expect(await get([label], 'k'), label).toMatchObject({ namespace: [label], key: 'k', value: { label } });
      expect(await get(['a', label], `${label}/`), label).toMatchObject({ namespace: ['a', label], key: `${label}/` });
    }
    expect(await store.listNamespaces({ prefix: ['a'], maxDepth: 1 })).toEqual([['a']]);
    expect(await store.listNamespaces({ suffix: ['a/b'] })).toEqual(expect.arrayContaining([['a/b'], ['a', 'a/b']]));
    expect((await store.listNamespaces({ suffix: ['a/b'] })).length).toBe(2);

    // What the gateway holds: each label escaped and ended by "/", the key after the last one.
    const { entries } = await gw.ok(
      ADMIN_TOKEN,
      '{ entries(namespace: "memory", scope: "layout", prefix: "a/", first: 100) { nodes { key } } }',
    );
    const keys = entries.nodes.map((node: { key: string }) => node.key);
    expect(keys).toEqual(
      expect.arrayContaining([
        'a/k',
        'a/a%002Fb/a%002Fb%002F',
        'a/a%0025/a%0025%002F',
        'a//%002F',
        'a/%0001/%0001%002F',
        'a/x%202Ey/x%202Ey%002F',
      ]),
    );
  });

  it('maps LangGraph`s TTL (minutes) to the entry`s ttlSeconds, per put or by default', async () => {
    const store = new StatehouseStore({ client: client(agentToken), namespace: 'memory', scope: 'ttl', ttl: { defaultTtl: 10 } });
    await store.put(['t'], 'default', { a: 1 });
    await store.put(['t'], 'own', { a: 1 }, undefined, { ttl: 0.5 });
    await store.batch([{ namespace: ['t'], key: 'batched', value: { a: 1 }, ttl: 2 } as Operation]);
    const expiry = async (key: string) => {
      const { entry } = await gw.ok(
        ADMIN_TOKEN,
        'query($key: String!) { entry(namespace: "memory", scope: "ttl", key: $key) { expiresAt } }',
        {
          key: `t/${key}`,
        },
      );
      return (Date.parse(entry.expiresAt) - Date.now()) / 1000;
    };
    expect(await expiry('default')).toBeGreaterThan(590);
    expect(await expiry('default')).toBeLessThanOrEqual(600);
    expect(await expiry('own')).toBeLessThanOrEqual(30);
    expect(await expiry('own')).toBeGreaterThan(20);
    expect(await expiry('batched')).toBeGreaterThan(110);
  });

  it('filters in a sensitive namespace, whose encrypted values the gateway cannot filter', async () => {
    await gw.createNamespace('vault', { sensitive: true });
    const token = await gw.registerAgent('vault-graph', ['vault']);
    const store = new StatehouseStore({ client: client(token), namespace: 'vault' });
    await store.put(['docs'], 'a', { tag: 'x', n: 1 });
    await store.put(['docs'], 'b', { tag: 'y', n: 2 });
    expect((await store.search(['docs'], { filter: { tag: 'y' } })).map((item) => item.key)).toEqual(['b']);
    expect((await store.search(['docs'], { filter: { n: { $gte: 1 }, tag: 'x' } })).map((item) => item.key)).toEqual(['a']);
  });

  it('refuses a semantic query: there is no vector index', async () => {
    const store = new StatehouseStore({ client: client(agentToken), namespace: 'memory', scope: 'query' });
    await expect(store.search(['docs'], { query: 'python tutorials' })).rejects.toBeInstanceOf(SemanticSearchUnsupportedError);
  });

  it('sees only what the token`s grants allow', async () => {
    const agent = client(agentToken);
    const memory = new StatehouseStore({ client: agent, namespace: 'memory', scope: 'grants' });
    const other = new StatehouseStore({ client: agent, namespace: 'other', scope: 'grants' });
    await memory.put(['shared'], 'k', { in: 'memory' });
    await other.put(['shared'], 'k', { in: 'other' });
    expect((await memory.search(['shared'])).map((item) => item.value)).toEqual([{ in: 'memory' }]);
    expect((await other.search(['shared'])).map((item) => item.value)).toEqual([{ in: 'other' }]);

    const secret = new StatehouseStore({ client: agent, namespace: 'secret' });
    await expect(secret.put(['x'], 'k', { a: 1 })).rejects.toBeInstanceOf(ForbiddenError);
    await expect(secret.get(['x'], 'k')).rejects.toBeInstanceOf(ForbiddenError);
    await expect(secret.search(['x'])).rejects.toBeInstanceOf(ForbiddenError);
    // Nothing was written where the agent may not write.
    const { entries } = await gw.ok(ADMIN_TOKEN, '{ entries(namespace: "secret") { nodes { key } } }');
    expect(entries.nodes).toEqual([]);
  });
});
