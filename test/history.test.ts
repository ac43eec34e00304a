import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, eventually, type Gateway, startGateway, subscribe } from './support/gateway.js';

const SET = 'mutation($input: SetEntryInput!) { setEntry(input: $input) { version revision updatedAt } }';
const AT =
  'query($key: String!, $r: Revision, $t: DateTime, $ns: String = "hist") { entry(namespace: $ns, key: $key, atRevision: $r, asOf: $t) { value version revision } }';
const HISTORY =
  'query($key: String!, $ns: String = "hist", $first: Int) { entryHistory(namespace: $ns, key: $key, first: $first) { version revision op value actor } }';
const RESTORE = 'mutation($input: RestoreEntryInput!) { restoreEntry(input: $input) { value version } }';

describe('history, time travel and expiry', () => {
  let gw: Gateway;
  let agent: string;
  beforeAll(async () => {
    // No background compaction during the run: reads must honour historyLimit before anything is removed.
    gw = await startGateway({ app: { maintenance: { compactIntervalMs: 3_600_000 } } });
    await gw.createNamespace('hist');
    await gw.createNamespace('short', { historyLimit: 2 });
    await gw.createNamespace('ttl', { defaultTtlSeconds: 1 });
    agent = await gw.registerAgent('historian', ['hist', 'short', 'ttl']);
  });
  afterAll(() => gw.close());

  const set = async (key: string, value: unknown, ns = 'hist', extra: Record<string, unknown> = {}) =>
    (await gw.ok(agent, SET, { input: { namespace: ns, key, value, ...extra } })).setEntry;
  const code = (result: { errors?: { extensions?: Record<string, unknown> }[] }) => result.errors?.[0]?.extensions;

  it('lists every version newest first, deletes included', async () => {
    await set('h', 1);
    await set('h', 2);
    await gw.ok(agent, 'mutation { deleteEntry(input: { namespace: "hist", key: "h" }) }');
    await set('h', 3);
    const { entryHistory } = await gw.ok(agent, HISTORY, { key: 'h' });
    expect(entryHistory.map((v: { version: number; op: string; value: unknown }) => [v.version, v.op, v.value])).toEqual([
      [4, 'SET', 3],
      [3, 'DELETE', null],
      [2, 'SET', 2],
      [1, 'SET', 1],
    ]);
    expect(entryHistory.every((v: { actor: string }) => v.actor === 'historian')).toBe(true);
    const revisions = entryHistory.map((v: { revision: string }) => BigInt(v.revision));
    expect([...revisions].sort((a, b) => (a < b ? 1 : -1))).toEqual(revisions);
    expect((await gw.ok(agent, HISTORY, { key: 'h', first: 2 })).entryHistory).toHaveLength(2);
  });

  it('reads an entry as it was at a revision and at a time', async () => {
    const v1 = await set('tt', 'one');
    await new Promise((resolve) => setTimeout(resolve, 20));
    const v2 = await set('tt', 'two');
    await gw.ok(agent, 'mutation { deleteEntry(input: { namespace: "hist", key: "tt" }) }');
    const at = async (vars: Record<string, unknown>) => (await gw.ok(agent, AT, { key: 'tt', ...vars })).entry;
    expect(await at({ r: v1.revision })).toEqual({ value: 'one', version: 1, revision: v1.revision });
    expect(await at({ r: String(BigInt(v2.revision) - 1n) })).toMatchObject({ value: 'one' });
    expect(await at({ r: v2.revision })).toMatchObject({ value: 'two', version: 2 });
    expect(await at({ r: String(BigInt(v1.revision) - 1n) })).toBeNull();
    expect(await at({})).toBeNull();
    expect(await at({ t: v1.updatedAt })).toMatchObject({ value: 'one' });
    expect(await at({ t: v2.updatedAt })).toMatchObject({ value: 'two' });
    expect(await at({ t: new Date(Date.parse(v1.updatedAt) - 60_000).toISOString() })).toBeNull();
  });

  it('refuses a revision from the future, or both atRevision and asOf', async () => {
    const future = await gw.gql(agent, AT, { key: 'tt', r: '9000000000000000000' });
    expect(code(future)).toMatchObject({ code: 'BAD_USER_INPUT', field: 'atRevision' });
    const both = await gw.gql(agent, AT, { key: 'tt', r: '1', t: new Date().toISOString() });
    expect(code(both)).toMatchObject({ code: 'BAD_USER_INPUT' });
    const changes = await gw.gql(agent, '{ changes(afterRevision: "9000000000000000000") { nodes { revision } } }');
    expect(code(changes)).toMatchObject({ code: 'BAD_USER_INPUT', field: 'afterRevision' });
  });

  it('restores an old version as a new one', async () => {
    await set('r', { n: 1 });
    await set('r', { n: 2 });
    const { restoreEntry } = await gw.ok(agent, RESTORE, { input: { namespace: 'hist', key: 'r', version: 1 } });
    expect(restoreEntry).toEqual({ value: { n: 1 }, version: 3 });
    expect(code(await gw.gql(agent, RESTORE, { input: { namespace: 'hist', key: 'r', version: 9 } }))).toMatchObject({
      code: 'BAD_USER_INPUT',
      field: 'version',
    });
  });

  it('honours historyLimit at once, then compacts what is beyond it without changing an answer', async () => {
    const first = await set('c', 1, 'short');
    await set('c', 2, 'short');
    const third = await set('c', 3, 'short');
    const last = await set('c', 4, 'short');
    const answers = async () => {
      const { entryHistory } = await gw.ok(agent, HISTORY, { key: 'c', ns: 'short' });
      expect(entryHistory.map((v: { version: number }) => v.version)).toEqual([4, 3]);
      const old = await gw.gql(agent, AT, { key: 'c', ns: 'short', r: first.revision });
      expect(code(old)).toMatchObject({ code: 'REVISION_COMPACTED', oldestRevision: third.revision });
      const before = await gw.gql(agent, AT, { key: 'c', ns: 'short', r: String(BigInt(first.revision) - 1n) });
      expect(code(before)).toMatchObject({ code: 'REVISION_COMPACTED', oldestRevision: third.revision });
      const byTime = await gw.gql(agent, AT, { key: 'c', ns: 'short', t: first.updatedAt });
      expect(code(byTime)?.code).toBe('REVISION_COMPACTED');
      expect((await gw.ok(agent, AT, { key: 'c', ns: 'short', r: third.revision })).entry).toMatchObject({ value: 3 });
      expect((await gw.ok(agent, AT, { key: 'c', ns: 'short', r: last.revision })).entry).toMatchObject({ value: 4 });
      for (const version of [1, 2]) {
        const restore = await gw.gql(agent, RESTORE, { input: { namespace: 'short', key: 'c', version } });
        expect(code(restore)).toMatchObject({ code: 'REVISION_COMPACTED', oldestRevision: third.revision });
      }
    };
    await answers();
    expect(await gw.app.maintenance.compact()).toBe(2);
    await answers();
    const resume = await gw.gql(agent, `{ changes(namespace: "short", afterRevision: "${first.revision}") { nodes { revision } } }`);
    expect(code(resume)?.code).toBe('REVISION_COMPACTED');
    const sub = subscribe(
      gw.ws(agent),
      `subscription { entryChanged(namespace: "short", afterRevision: "${first.revision}") { revision } }`,
    );
    const [result] = await sub.waitFor(1);
    expect(result?.errors?.[0]?.extensions).toMatchObject({ code: 'REVISION_COMPACTED' });
    expect(result?.data ?? null).toBeNull();
    const { restoreEntry } = await gw.ok(agent, RESTORE, { input: { namespace: 'short', key: 'c', version: 3 } });
    expect(restoreEntry).toEqual({ value: 3, version: 5 });
  });

  it('applies a lowered historyLimit to reads at once', async () => {
    for (const value of [1, 2, 3]) await set('lowered', value);
    expect((await gw.ok(agent, HISTORY, { key: 'lowered' })).entryHistory).toHaveLength(3);
    await gw.ok(ADMIN_TOKEN, 'mutation { updateNamespace(input: { name: "hist", historyLimit: 1 }) { historyLimit } }');
    try {
      const { entryHistory } = await gw.ok(agent, HISTORY, { key: 'lowered' });
      expect(entryHistory.map((v: { value: number }) => v.value)).toEqual([3]);
      const restore = await gw.gql(agent, RESTORE, { input: { namespace: 'hist', key: 'lowered', version: 2 } });
      expect(code(restore)?.code).toBe('REVISION_COMPACTED');
    } finally {
      await gw.ok(ADMIN_TOKEN, 'mutation { updateNamespace(input: { name: "hist", historyLimit: null }) { historyLimit } }');
    }
    expect((await gw.ok(agent, HISTORY, { key: 'lowered' })).entryHistory).toHaveLength(3);
  });

  it('reads an expired entry as absent at once and records its expiry as an EXPIRE change', async () => {
    const { revision } = await set('soon', 'x', 'hist', { ttlSeconds: 1 });
    const sub = subscribe(
      gw.ws(agent),
      `subscription { entryChanged(namespace: "hist", keyPrefix: "soon", afterRevision: "${revision}") { op key version } }`,
    );
    await eventually(
      async () => (await gw.ok(agent, '{ entry(namespace: "hist", key: "soon") { value } }')).entry === null,
      3_000,
      'expiry',
    );
    const [event] = await sub.waitFor(1, 5_000);
    expect(event?.data?.entryChanged).toEqual({ op: 'EXPIRE', key: 'soon', version: 2 });
    const { entryHistory } = await gw.ok(agent, HISTORY, { key: 'soon' });
    expect(entryHistory[0]).toMatchObject({ version: 2, op: 'EXPIRE', actor: null });
  });

  it('applies a namespace defaultTtlSeconds, and a later write without ttl keeps it', async () => {
    await set('d', 1, 'ttl');
    const { entry } = await gw.ok(agent, '{ entry(namespace: "ttl", key: "d") { expiresAt } }');
    expect(Date.parse(entry.expiresAt) - Date.now()).toBeLessThanOrEqual(1_500);
    await set('p', 1, 'hist', { ttlSeconds: 60 });
    await set('p', 2, 'hist');
    expect((await gw.ok(agent, '{ entry(namespace: "hist", key: "p") { expiresAt } }')).entry.expiresAt).toBeNull();
  });

  it('gives a lock to exactly one of ten contenders (create-only set with a TTL), renews with CAS and releases with delete', async () => {
    const contenders = await Promise.all(Array.from({ length: 10 }, (_, i) => gw.registerAgent(`contender-${i}`, ['hist'])));
    const acquire = (token: string, owner: string) =>
      gw.gql(token, SET, { input: { namespace: 'hist', key: 'lock:leader', value: { owner }, expectedVersion: 0, ttlSeconds: 30 } });
    const attempts = await Promise.all(contenders.map((token, i) => acquire(token, `contender-${i}`)));
    const winners = attempts.filter((attempt) => !attempt.errors);
    expect(winners).toHaveLength(1);
    expect(attempts.filter((attempt) => code(attempt)?.code === 'VERSION_CONFLICT')).toHaveLength(9);
    const holder = attempts.findIndex((attempt) => !attempt.errors);
    const version = winners[0]?.data?.setEntry.version;
    const renew = await gw.gql(contenders[holder] ?? '', SET, {
      input: { namespace: 'hist', key: 'lock:leader', value: { owner: `contender-${holder}` }, expectedVersion: version, ttlSeconds: 30 },
    });
    expect(renew.errors).toBeUndefined();
    const release = await gw.ok(
      contenders[holder] ?? '',
      'mutation($v: Int) { deleteEntry(input: { namespace: "hist", key: "lock:leader", expectedVersion: $v }) }',
      {
        v: renew.data?.setEntry.version,
      },
    );
    expect(release.deleteEntry).toBe(true);
    expect((await acquire(contenders[(holder + 1) % 10] ?? '', 'next')).errors).toBeUndefined();
  });

  it('is readable by the admin too', async () => {
    expect((await gw.ok(ADMIN_TOKEN, HISTORY, { key: 'h' })).entryHistory).toHaveLength(4);
  });
});
