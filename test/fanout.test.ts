import type { Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { ADMIN_TOKEN, eventually, type Gateway, type Subscription, startGateway, subscribe } from './support/gateway.js';

/**
 * Shared (multiplexed) entryChanged subscriptions over WebSocket: subscribers of one namespace with
 * the same document and variables are served by one group — one execution and one serialization
 * per change — while each keeps its own access checks, id and end.
 */

const KEY = 'b'.repeat(64);
let gw: Gateway;
beforeAll(async () => {
  gw = await startGateway({ app: { encryptionKey: KEY } });
});
afterAll(async () => {
  await gw?.close();
});

let counter = 0;
const unique = (label: string) => `${label}-${(++counter).toString(36)}-${Math.random().toString(36).slice(2, 8)}`;

const WATCH = 'subscription($ns: String!) { entryChanged(namespace: $ns) { namespace key value version } }';
const WATCH_KEYS = 'subscription($ns: String!) { entryChanged(namespace: $ns) { key } }';
const RESUME =
  'subscription($ns: String!, $after: Revision) { entryChanged(namespace: $ns, afterRevision: $after) { namespace key value version } }';
const WATCH_PREFIX = 'subscription($ns: String!, $p: String) { entryChanged(namespace: $ns, keyPrefix: $p) { key } }';
const SET =
  'mutation($ns: String!, $key: String!, $value: JSON!) { setEntry(input: { namespace: $ns, key: $key, value: $value }) { version revision } }';
const GRANT =
  'mutation($ns: String!, $agent: ID!) { grantAccess(input: { namespace: $ns, agentId: $agent, permission: READ }) { permission } }';
const REVOKE_ACCESS = 'mutation($ns: String!, $agent: ID!) { revokeAccess(input: { namespace: $ns, agentId: $agent }) }';
const REVOKE_TOKEN = 'mutation($id: ID!) { revokeToken(id: $id) }';

type Change = { namespace?: string; key: string; value?: unknown; version?: number };
const changesOf = (sub: Subscription<{ entryChanged: Change }>) =>
  sub.results.flatMap((result) => (result.data?.entryChanged ? [result.data.entryChanged] : []));
const keysOf = (sub: Subscription<{ entryChanged: Change }>) => changesOf(sub).map((change) => change.key);

async function namespace(settings: Record<string, unknown> = {}): Promise<string> {
  const name = unique('shared');
  await gw.createNamespace(name, settings);
  return name;
}

const set = (ns: string, key: string, value: unknown) => gw.ok(ADMIN_TOKEN, SET, { ns, key, value });

/** The shared groups of a namespace (null: of subscriptions without one) and their members, as the gateway counts them. */
const shared = (ns: string | null) => gw.app.fanout.stats(ns);

/** The length of the large values: 40 of them are past the unsent limit whatever the kernel buffers. */
const LARGE = 900_000;
const RESUME_VALUES = 'subscription($ns: String!, $after: Revision) { entryChanged(namespace: $ns, afterRevision: $after) { key value } }';

/** Sets `count` keys `<prefix>-NN` to values of LARGE characters, one after the other; returns the keys. */
async function setLargeValues(ns: string, prefix: string, count: number): Promise<string[]> {
  const keys = Array.from({ length: count }, (_, i) => `${prefix}-${String(i).padStart(2, '0')}`);
  for (const key of keys) await set(ns, key, `${key}:${'x'.repeat(LARGE)}`);
  return keys;
}

/** A client that subscribes, then stops reading its socket, until `readAgain`; that resolves with the close code. */
async function stalledSubscriber(query: string, variables: Record<string, unknown>) {
  const socket = new WebSocket(gw.wsUrl, 'graphql-transport-ws');
  const frames: { type?: string }[] = [];
  const closed = new Promise<number>((resolve) => socket.on('close', (code) => resolve(code)));
  socket.on('message', (data) => frames.push(JSON.parse(String(data))));
  await new Promise((resolve) => socket.once('open', resolve));
  socket.send(JSON.stringify({ type: 'connection_init', payload: { authorization: `Bearer ${ADMIN_TOKEN}` } }));
  await eventually(() => frames.some((frame) => frame.type === 'connection_ack'));
  const raw = (socket as unknown as { _socket: Socket })._socket;
  raw.pause();
  socket.send(JSON.stringify({ id: 's', type: 'subscribe', payload: { query, variables } }));
  return {
    readAgain: () => {
      raw.resume();
      return closed;
    },
    nexts: () => frames.filter((frame) => frame.type === 'next').length,
  };
}

/** Subscribes and waits until the subscription has joined a shared group. */
async function watch(token: string, query: string, variables: { ns: string } & Record<string, unknown>) {
  const before = shared(variables.ns).members;
  const sub = subscribe<{ entryChanged: Change }>(gw.ws(token), query, variables);
  await eventually(() => shared(variables.ns).members > before, 5_000, 'the subscription to join a shared group');
  return sub;
}

describe('shared entryChanged subscriptions', () => {
  it('serves subscribers of the same namespace and document from one group, each frame under its own id', async () => {
    const ns = await namespace();
    const agentId = unique('agent');
    const agent = await gw.registerAgent(agentId, [ns]);
    const { token: reader } = await gw.createToken(unique('reader'), 'READER');

    const subs = [await watch(ADMIN_TOKEN, WATCH, { ns }), await watch(agent, WATCH, { ns }), await watch(reader, WATCH, { ns })];
    const keysOnly = await watch(reader, WATCH_KEYS, { ns });
    expect(shared(ns)).toEqual({ groups: 2, members: 4 }); // one group per document

    const key = unique('k');
    await set(ns, key, { n: 1 });
    for (const sub of subs) {
      await sub.waitFor(1);
      expect(sub.results).toEqual([{ data: { entryChanged: { namespace: ns, key, value: { n: 1 }, version: 1 } } }]);
    }
    await keysOnly.waitFor(1);
    expect(keysOnly.results).toEqual([{ data: { entryChanged: { key } } }]);

    for (const sub of [...subs, keysOnly]) sub.stop();
    await eventually(() => shared(ns).groups === 0, 5_000, 'the groups to close after their last member left');
  });

  it('keeps one member’s stop from ending the others', async () => {
    const ns = await namespace();
    const [a, b] = [await watch(ADMIN_TOKEN, WATCH, { ns }), await watch(ADMIN_TOKEN, WATCH, { ns })];
    a.stop();
    const key = unique('after-stop');
    await set(ns, key, 1);
    await b.waitFor(1);
    expect(keysOf(b)).toEqual([key]);
    expect(a.results).toEqual([]);
    b.stop();
  });

  it('ends only the member whose grant was revoked, with FORBIDDEN, and keeps delivering to the rest', async () => {
    const ns = await namespace({ openAccess: false });
    const agentId = unique('agent');
    const agent = await gw.registerAgent(agentId);
    await gw.ok(ADMIN_TOKEN, GRANT, { ns, agent: agentId });
    const agentSub = await watch(agent, WATCH, { ns });
    const adminSub = await watch(ADMIN_TOKEN, WATCH, { ns });

    const first = unique('first');
    await set(ns, first, 1);
    await agentSub.waitFor(1);

    await gw.ok(ADMIN_TOKEN, REVOKE_ACCESS, { ns, agent: agentId });
    await agentSub.done;
    expect(agentSub.error).toBeUndefined();
    expect(agentSub.results).toHaveLength(2);
    expect(agentSub.results[1]?.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
    expect(agentSub.results[1]?.data ?? null).toBeNull();

    const later = unique('later');
    await set(ns, later, 2);
    await eventually(() => keysOf(adminSub).includes(later), 5_000, 'the admin to see the later change');
    expect(keysOf(adminSub)).toEqual([first, later]);
    expect(keysOf(agentSub)).toEqual([first]);
    adminSub.stop();
  });

  it('ends a member whose token was revoked with UNAUTHENTICATED', async () => {
    const ns = await namespace();
    const { id, token } = await gw.createToken(unique('reader'), 'READER');
    const sub = await watch(token, WATCH, { ns });
    const other = await watch(ADMIN_TOKEN, WATCH, { ns });
    await gw.ok(ADMIN_TOKEN, REVOKE_TOKEN, { id });
    await sub.done;
    expect(sub.results.at(-1)?.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
    const key = unique('after-revoke');
    await set(ns, key, 1);
    await other.waitFor(1);
    expect(keysOf(sub)).toEqual([]);
    other.stop();
  });

  it('groups by filter and variables: each member gets only the keys its own keyPrefix matches', async () => {
    const ns = await namespace();
    const plans = await watch(ADMIN_TOKEN, WATCH_PREFIX, { ns, p: 'plan/' });
    const notes = await watch(ADMIN_TOKEN, WATCH_PREFIX, { ns, p: 'note/' });
    const all = await watch(ADMIN_TOKEN, WATCH_PREFIX, { ns });
    for (const key of ['plan/a', 'note/a', 'other', 'plan/b']) await set(ns, key, 1);
    await all.waitFor(4);
    await plans.waitFor(2);
    await notes.waitFor(1);
    expect(keysOf(all)).toEqual(['plan/a', 'note/a', 'other', 'plan/b']);
    expect(keysOf(plans)).toEqual(['plan/a', 'plan/b']);
    expect(keysOf(notes)).toEqual(['note/a']);
    for (const sub of [plans, notes, all]) sub.stop();
  });

  it('does not share a sensitive namespace: a READER gets null values while an admin gets them opened', async () => {
    const ns = await namespace({ sensitive: true });
    const { token: reader } = await gw.createToken(unique('reader'), 'READER');
    const readerSub = subscribe<{ entryChanged: Change }>(gw.ws(reader), WATCH, { ns });
    const adminSub = subscribe<{ entryChanged: Change }>(gw.ws(ADMIN_TOKEN), WATCH, { ns });
    // Both are live once a probe write reaches them.
    await eventually(
      async () => {
        await set(ns, unique('probe'), 0);
        return readerSub.results.length > 0 && adminSub.results.length > 0;
      },
      5_000,
      'both subscriptions to go live',
    );
    expect(shared(ns)).toEqual({ groups: 0, members: 0 });
    const key = unique('secret');
    await set(ns, key, { password: 'hunter2' });
    await eventually(() => keysOf(readerSub).includes(key) && keysOf(adminSub).includes(key), 5_000, 'the secret change');
    expect(changesOf(readerSub).find((change) => change.key === key)?.value).toBeNull();
    expect(changesOf(adminSub).find((change) => change.key === key)?.value).toEqual({ password: 'hunter2' });
    expect(JSON.stringify(readerSub.results)).not.toContain('hunter2');
    readerSub.stop();
    adminSub.stop();
  });

  it('resumes with afterRevision in the same group: its own replay, then the shared changes, without gap or duplicate', async () => {
    const ns = await namespace();
    const live = await watch(ADMIN_TOKEN, RESUME, { ns });
    const revisions: string[] = [];
    for (const key of ['a', 'b', 'c']) revisions.push((await set(ns, key, key)).setEntry.revision);
    await live.waitFor(3);

    const resumed = await watch(ADMIN_TOKEN, RESUME, { ns, after: revisions[0] });
    expect(shared(ns)).toEqual({ groups: 1, members: 2 });
    await set(ns, 'd', 'd');
    await resumed.waitFor(3);
    await live.waitFor(4);
    expect(keysOf(resumed)).toEqual(['b', 'c', 'd']);
    expect(keysOf(live)).toEqual(['a', 'b', 'c', 'd']);
    live.stop();
    resumed.stop();
  });

  it('replays and goes live without gap or duplicate while writes keep coming', async () => {
    const ns = await namespace();
    const anchor = await watch(ADMIN_TOKEN, RESUME, { ns });
    const start = (await set(ns, 'start', 0)).setEntry.revision;
    const keys = Array.from({ length: 120 }, (_, i) => `k${String(i).padStart(3, '0')}`);
    const writing = (async () => {
      for (const key of keys) await set(ns, key, key);
    })();
    const resumers: Subscription<{ entryChanged: Change }>[] = [];
    for (let i = 0; i < 4; i++) {
      await new Promise((resolve) => setTimeout(resolve, 15));
      resumers.push(await watch(ADMIN_TOKEN, RESUME, { ns, after: start }));
    }
    await writing;
    for (const sub of resumers) {
      await sub.waitFor(keys.length);
      expect(keysOf(sub)).toEqual(keys);
    }
    expect(shared(ns).groups).toBe(1);
    for (const sub of [anchor, ...resumers]) sub.stop();
  });

  it('replays more than the unsent limit in large values to a subscriber that reads, without ending it as too slow', async () => {
    const ns = await namespace();
    const start = (await set(ns, 'start', 0)).setEntry.revision;
    // 36 MB in one page of the replay: past the 16 MiB a subscriber may leave unsent, with all the kernel's buffers.
    const keys = await setLargeValues(ns, 'big', 40);
    const resumed = await watch(ADMIN_TOKEN, RESUME_VALUES, { ns, after: start });
    await resumed.waitFor(keys.length, 20_000);
    expect(resumed.error).toBeUndefined();
    expect(changesOf(resumed).map((change) => [change.key, String(change.value).length])).toEqual(
      keys.map((key) => [key, key.length + 1 + LARGE]),
    );
    resumed.stop();
  });

  it('ends a member that stops reading with 1013 once 16 MiB wait unsent to it, and keeps serving the member that reads', async () => {
    const ns = await namespace();
    const reader = await watch(ADMIN_TOKEN, WATCH_KEYS, { ns });
    const stalled = await stalledSubscriber(WATCH, { ns });
    await eventually(() => shared(ns).members === 2, 5_000, 'the stalled subscriber to join');

    // 36 MB for the stalled member, a few hundred bytes of keys for the reader.
    const keys = await setLargeValues(ns, 'big', 40);
    await reader.waitFor(keys.length);
    expect(keysOf(reader)).toEqual(keys);
    await eventually(() => shared(ns).members === 1, 10_000, 'the stalled subscriber to be ended');

    expect(await stalled.readAgain()).toBe(1013);
    expect(stalled.nexts()).toBeLessThan(keys.length);
    reader.stop();
  });

  it('ends a resuming member with 1013 once the live changes held for it during its replay pass 16 MiB', async () => {
    const ns = await namespace();
    const start = (await set(ns, 'start', 0)).setEntry.revision;
    // A replay of 36 MB to a socket that is not read stays in its replay...
    await setLargeValues(ns, 'old', 40);
    const stalled = await stalledSubscriber(RESUME_VALUES, { ns, after: start });
    await eventually(() => shared(ns).members === 1, 5_000, 'the stalled subscriber to join');
    // ...while the group's live changes are held for it: 21.6 MB of them.
    await setLargeValues(ns, 'new', 24);
    await eventually(() => shared(ns).members === 0, 10_000, 'the stalled subscriber to be ended');

    expect(await stalled.readAgain()).toBe(1013);
    expect(stalled.nexts()).toBeLessThan(40);
  });

  it('shares admins’ and readers’ subscriptions without a namespace, not agents’; sealed values still per member', async () => {
    const WATCH_ALL = 'subscription { entryChanged { namespace key value } }';
    const [plain, secret] = [await namespace(), await namespace({ sensitive: true })];
    const agent = await gw.registerAgent(unique('agent'), [plain]);
    const { token: reader } = await gw.createToken(unique('reader'), 'READER');
    const before = shared(null).members;
    const adminSub = subscribe<{ entryChanged: Change }>(gw.ws(ADMIN_TOKEN), WATCH_ALL);
    const readerSub = subscribe<{ entryChanged: Change }>(gw.ws(reader), WATCH_ALL);
    await eventually(() => shared(null).members === before + 2, 5_000, 'both to join one shared group');
    expect(shared(null).groups).toBe(1);
    const agentSub = subscribe<{ entryChanged: Change }>(gw.ws(agent), WATCH_ALL);
    await eventually(
      async () => {
        await set(plain, unique('probe'), 0);
        return agentSub.results.length > 0;
      },
      5_000,
      'the agent’s subscription to go live',
    );
    expect(shared(null).members).toBe(before + 2);

    await set(plain, 'open', 1);
    await set(secret, 'hidden', { pin: 1234 });
    await eventually(() => keysOf(readerSub).includes('hidden') && keysOf(adminSub).includes('hidden'), 5_000, 'the sealed change');
    expect(changesOf(readerSub).find((change) => change.key === 'open')?.value).toBe(1);
    expect(changesOf(readerSub).find((change) => change.key === 'hidden')?.value).toBeNull();
    expect(changesOf(adminSub).find((change) => change.key === 'hidden')?.value).toEqual({ pin: 1234 });
    expect(keysOf(agentSub)).not.toContain('hidden');
    for (const sub of [adminSub, readerSub, agentSub]) sub.stop();
  });

  it('completes every shared subscription when the gateway stops', async () => {
    const other = await startGateway({ db: gw.db, app: { encryptionKey: KEY } });
    try {
      const ns = unique('stopping');
      await other.createNamespace(ns);
      const sub = subscribe<{ entryChanged: Change }>(other.ws(ADMIN_TOKEN), WATCH, { ns });
      await eventually(() => other.app.fanout.stats(ns).members === 1, 5_000, 'the subscription to join');
      await other.app.stop();
      await sub.done;
      expect(other.app.fanout.stats()).toEqual({ groups: 0, members: 0 });
    } finally {
      await other.close();
    }
  });
});
