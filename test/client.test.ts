/**
 * statehouse/client against a started gateway, over real sockets: the state API, watch(), lock(), the
 * fleet calls and the typed errors, as an agent's code uses them (issue 16).
 */
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import {
  BadUserInputError,
  type Change,
  type ChangeStream,
  ClientClosedError,
  ConnectionError,
  type ConnectOptions,
  connect,
  ForbiddenError,
  LockLostError,
  RevisionCompactedError,
  type StatehouseClient,
  UnauthenticatedError,
  ValidationFailedError,
  VersionConflictError,
} from '../src/client/index.js';
import { backend } from './support/database.js';
import { ADMIN_TOKEN, eventually, type Gateway, startGateway } from './support/gateway.js';

let gw: Gateway;
let agentToken: string;
let otherToken: string;
const clients: StatehouseClient[] = [];
const backgroundErrors: unknown[] = [];

/** The `ws` WebSocket, remembering every socket it opens, so a test can count or cut them. */
function trackedWebSocket(drop?: (data: string) => boolean) {
  const sockets: WebSocket[] = [];
  class Tracked extends WebSocket {
    constructor(...args: ConstructorParameters<typeof WebSocket>) {
      super(...args);
      sockets.push(this);
      // Cuts the connection when a chosen message arrives, before the client sees it.
      const inherited = Object.getOwnPropertyDescriptor(WebSocket.prototype, 'onmessage');
      Object.defineProperty(this, 'onmessage', {
        configurable: true,
        get: () => inherited?.get?.call(this),
        set: (listener: ((event: WebSocket.MessageEvent) => void) | null) =>
          inherited?.set?.call(
            this,
            listener && ((event: WebSocket.MessageEvent) => (drop?.(String(event.data)) ? this.terminate() : listener(event))),
          ),
      });
    }
  }
  return { Tracked, sockets, open: () => sockets.filter((socket) => socket.readyState !== WebSocket.CLOSED) };
}

function client(token: string, options: Partial<ConnectOptions> = {}): StatehouseClient {
  const made = connect({ url: gw.url, token, webSocket: WebSocket, onError: (error) => backgroundErrors.push(error), ...options });
  clients.push(made);
  return made;
}

/** The next `count` changes of a stream, failing with what did arrive if they take longer than 10 s. */
async function take<T>(stream: ChangeStream<T>, count: number): Promise<Change<T>[]> {
  const got: Change<T>[] = [];
  const timer = setTimeout(() => void stream.close(), 10_000);
  try {
    while (got.length < count) {
      const { value, done } = await stream.next();
      if (done) throw new Error(`the stream ended after ${got.length} of ${count} changes: ${JSON.stringify(got)}`);
      got.push(value);
    }
  } finally {
    clearTimeout(timer);
  }
  return got;
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection');
}

const ENTRY = 'query($ns: String!, $key: String!) { entry(namespace: $ns, key: $key) { value version updatedBy expiresAt } }';

beforeAll(async () => {
  gw = await startGateway();
  await gw.createNamespace('numbers');
  await gw.createNamespace('typed', { schema: { type: 'object', properties: { n: { type: 'integer' } }, required: ['n'] } });
  await gw.createNamespace('short', { historyLimit: 1 });
  await gw.createNamespace('secret', { openAccess: false });
  agentToken = await gw.registerAgent('producer', ['numbers', 'typed', 'short']);
  otherToken = await gw.registerAgent('consumer', ['numbers']);
});

afterAll(async () => {
  await Promise.allSettled(clients.map((made) => made.close()));
  await gw?.close();
});

describe(`statehouse/client state API (${backend})`, () => {
  it('writes, reads, patches, increments, deletes and keeps history, as the token`s agent', async () => {
    const numbers = client(agentToken).namespace<Record<string, unknown> | number>('numbers');
    const written = await numbers.set('n', { a: 1, b: 2 });
    expect(written).toMatchObject({
      namespace: 'numbers',
      scope: 'global',
      key: 'n',
      value: { a: 1, b: 2 },
      version: 1,
      updatedBy: 'producer',
    });
    expect(await numbers.get('n')).toMatchObject({ value: { a: 1, b: 2 }, version: 1 });
    expect(await numbers.patch('n', { b: null, c: 3 })).toMatchObject({ value: { a: 1, c: 3 }, version: 2 });
    expect(await numbers.increment('count', 2.5)).toMatchObject({ value: 2.5, version: 1 });
    expect(await numbers.increment('count')).toMatchObject({ value: 3.5, version: 2 });
    expect(await numbers.delete('n')).toBe(true);
    expect(await numbers.delete('n')).toBe(false);
    expect(await numbers.get('n')).toBeNull();
    const history = await numbers.history('n');
    expect(history.map((version) => [version.version, version.op])).toEqual([
      [3, 'DELETE'],
      [2, 'SET'],
      [1, 'SET'],
    ]);
    expect(await numbers.get('n', { atRevision: written.revision })).toMatchObject({ value: { a: 1, b: 2 } });
    // What the gateway holds, read past the client.
    expect((await gw.ok(ADMIN_TOKEN, ENTRY, { ns: 'numbers', key: 'count' })).entry).toMatchObject({ value: 3.5, updatedBy: 'producer' });
  });

  it('sets with expectedVersion, ttlSeconds and scope, and resolves a key along a scope chain', async () => {
    const numbers = client(agentToken).namespace('numbers');
    await numbers.set('cas', 1, { expectedVersion: 0 });
    const conflict = await rejection(numbers.set('cas', 2, { expectedVersion: 0 }));
    expect(conflict).toBeInstanceOf(VersionConflictError);
    expect((conflict as VersionConflictError).currentVersion).toBe(1);
    expect(await numbers.set('cas', 2, { expectedVersion: 1 })).toMatchObject({ version: 2, value: 2 });

    const expiring = await numbers.set('ttl', 'soon', { ttlSeconds: 60 });
    expect(Date.parse(expiring.expiresAt ?? '')).toBeGreaterThan(Date.now() + 50_000);

    await numbers.set('model', 'global-model');
    await numbers.set('model', 'agent-model', { scope: 'agent:producer' });
    expect(await numbers.get('model', { scope: 'agent:producer' })).toMatchObject({ value: 'agent-model', scope: 'agent:producer' });
    expect(await numbers.resolve('model', ['thread:1', 'agent:producer', 'global'])).toMatchObject({ value: 'agent-model' });
    expect(await numbers.resolve('model', ['thread:1', 'global'])).toMatchObject({ value: 'global-model', scope: 'global' });
    expect(await numbers.resolve('nothing', ['thread:1', 'global'])).toBeNull();
  });

  it('lists every entry of a prefix across pages', async () => {
    const numbers = client(agentToken).namespace<number>('numbers');
    await Promise.all(Array.from({ length: 7 }, (_, i) => numbers.set(`page:${i}`, i)));
    const keys: string[] = [];
    for await (const entry of numbers.list({ prefix: 'page:', pageSize: 3 })) keys.push(`${entry.key}=${entry.value}`);
    expect(keys).toEqual(Array.from({ length: 7 }, (_, i) => `page:${i}=${i}`));
    const matched: string[] = [];
    await numbers.set('obj:a', { kind: 'x' } as never);
    await numbers.set('obj:b', { kind: 'y' } as never);
    for await (const entry of numbers.list({ match: { kind: 'y' } })) matched.push(entry.key);
    expect(matched).toEqual(['obj:b']);
  });

  it('update() retries a compare-and-set that lost to another writer, so no increment is lost', async () => {
    const [a, b] = [client(agentToken).namespace<number>('numbers'), client(otherToken).namespace<number>('numbers')];
    let calls = 0;
    const bump = (current: number | undefined) => {
      calls++;
      return (current ?? 0) + 1;
    };
    await Promise.all(Array.from({ length: 12 }, (_, i) => (i % 2 ? a : b).update('counter', bump)));
    const { entry } = await gw.ok(ADMIN_TOKEN, ENTRY, { ns: 'numbers', key: 'counter' });
    expect(entry).toMatchObject({ value: 12, version: 12 });
    expect(calls).toBeGreaterThan(12); // some attempts lost and were read again
  });

  it('update() gives up after maxAttempts with the VersionConflictError of the last try', async () => {
    const numbers = client(agentToken).namespace<number>('numbers');
    await numbers.set('contested', 0);
    let calls = 0;
    const error = await rejection(
      numbers.update(
        'contested',
        async (current) => {
          calls++;
          // Another writer gets in between every read and write.
          await gw.ok(ADMIN_TOKEN, 'mutation { incrementEntry(input: { namespace: "numbers", key: "contested" }) { version } }');
          return (current ?? 0) + 100;
        },
        { maxAttempts: 3 },
      ),
    );
    expect(error).toBeInstanceOf(VersionConflictError);
    expect(calls).toBe(3);
    const { entry } = await gw.ok(ADMIN_TOKEN, ENTRY, { ns: 'numbers', key: 'contested' });
    expect(entry.value).toBe(3);
    expect((error as VersionConflictError).currentVersion).toBe(entry.version);
  });

  it('commits conditions and writes all together, or nothing', async () => {
    const numbers = client(agentToken).namespace('numbers');
    const total = await numbers.set('c:total', 10);
    const done = await numbers
      .commit()
      .ifVersion('c:total', total.version)
      .ifAbsent('c:new')
      .set('c:total', 20)
      .set('c:new', 'fresh', { ttlSeconds: 60 })
      .increment('c:writes', 1)
      .execute();
    expect(done.entries.map((entry) => [entry.key, entry.value, entry.revision])).toEqual([
      ['c:total', 20, done.revision],
      ['c:new', 'fresh', done.revision],
      ['c:writes', 1, done.revision],
    ]);
    const refused = await rejection(numbers.commit().ifVersion('c:total', total.version).set('c:total', 99).delete('c:new').execute());
    expect(refused).toBeInstanceOf(VersionConflictError);
    expect((await gw.ok(ADMIN_TOKEN, ENTRY, { ns: 'numbers', key: 'c:total' })).entry.value).toBe(20);
    expect((await gw.ok(ADMIN_TOKEN, ENTRY, { ns: 'numbers', key: 'c:new' })).entry.value).toBe('fresh');
  });
});

describe(`statehouse/client connection (${backend})`, () => {
  it('sends queries, mutations and subscriptions of one client over one socket, with the token in connectionParams', async () => {
    const { Tracked, sockets } = trackedWebSocket();
    const agent = client(agentToken, { webSocket: Tracked });
    const numbers = agent.namespace<number>('numbers');
    const stream = numbers.watch({ keyPrefix: 'one:' });
    await stream.ready;
    await Promise.all([numbers.set('one:a', 1), numbers.get('one:a'), agent.viewer(), numbers.increment('one:b')]);
    expect((await agent.viewer()).agent?.id).toBe('producer');
    expect((await take(stream, 2)).map((change) => change.key).sort()).toEqual(['one:a', 'one:b']);
    expect(sockets).toHaveLength(1);
  });

  it('closes its socket, ends its watches and refuses more work once closed (await using)', async () => {
    const { Tracked, open } = trackedWebSocket();
    let stream: ChangeStream | undefined;
    let outside: StatehouseClient | undefined;
    {
      await using agent = connect({ url: gw.url, token: agentToken, webSocket: Tracked });
      outside = agent;
      stream = agent.namespace('numbers').watch();
      await agent.namespace('numbers').set('closing', 1);
      expect(open()).toHaveLength(1);
    }
    await eventually(() => open().length === 0, 5_000, 'the socket to close');
    expect(await stream.next()).toEqual({ value: undefined, done: true });
    expect(await rejection(outside.namespace('numbers').get('closing'))).toBeInstanceOf(ClientClosedError);
  });

  it('connects at the first operation, closes the socket when idle and opens a new one for the next operation', async () => {
    const { Tracked, sockets, open } = trackedWebSocket();
    const states: string[] = [];
    const agent = client(agentToken, { webSocket: Tracked, idleCloseMs: 100, onConnectionChange: (state) => states.push(state) });
    expect(sockets).toHaveLength(0);
    await agent.namespace('numbers').set('idle', 1);
    expect(sockets).toHaveLength(1);
    await eventually(() => open().length === 0, 5_000, 'the idle socket to close');
    expect(await agent.namespace('numbers').get('idle')).toMatchObject({ value: 1 });
    expect(sockets).toHaveLength(2);
    expect(states.slice(0, 3)).toEqual(['connecting', 'connected', 'idle']);
  });

  it('uses HTTP for queries and mutations with transport: http, and a socket only for watch()', async () => {
    const { Tracked, sockets } = trackedWebSocket();
    const script = client(agentToken, { transport: 'http', webSocket: Tracked });
    const numbers = script.namespace<number>('numbers');
    expect(await numbers.set('http:a', 5)).toMatchObject({ value: 5, updatedBy: 'producer' });
    expect(await numbers.get('http:a')).toMatchObject({ value: 5 });
    expect(sockets).toHaveLength(0);
    const stream = await numbers.watch({ keyPrefix: 'http:' }).whenReady();
    await eventually(() => sockets.length === 1, 5_000, 'the socket of watch()');
    await numbers.set('http:b', 6);
    expect((await take(stream, 1))[0]).toMatchObject({ key: 'http:b', value: 6, op: 'SET' });
  });

  it('repeats a read whose answer was lost with the connection, but never a write that may have been applied', async () => {
    let cut: string | undefined;
    // The gateway's answer to the chosen operation is lost: the socket drops as it arrives.
    const { Tracked, sockets } = trackedWebSocket((data) => cut !== undefined && data.includes(cut) && !(cut = undefined));
    const numbers = client(agentToken, { webSocket: Tracked }).namespace<number>('numbers');
    await numbers.set('lost', 1);

    cut = '"incrementEntry"';
    const error = await rejection(numbers.increment('lost'));
    expect(error).toBeInstanceOf(ConnectionError);
    expect((error as ConnectionError).maybeApplied).toBe(true);
    expect((await gw.ok(ADMIN_TOKEN, ENTRY, { ns: 'numbers', key: 'lost' })).entry).toMatchObject({ value: 2, version: 2 });

    cut = '"entry"';
    expect(await numbers.get('lost')).toMatchObject({ value: 2 });
    expect(sockets.length).toBe(3); // one per dropped connection, and the one that answered
  });

  it('waits out RATE_LIMITED by retryAfterMs, so every write lands', async () => {
    const token = await gw.registerAgent('limited', ['numbers']);
    await gw.ok(ADMIN_TOKEN, 'mutation { updateConfig(patch: { rateLimit: { perTokenPerSecond: 3 } }) }');
    try {
      const numbers = client(token).namespace<number>('numbers');
      const written = await Promise.all(Array.from({ length: 8 }, (_, i) => numbers.set(`rate:${i}`, i)));
      expect(written.map((entry) => entry.value)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
      // The gateway did refuse some of them: the client waited and sent them again.
      await eventually(async () => {
        const { auditLog } = await gw.ok(ADMIN_TOKEN, '{ auditLog(actor: "limited", outcome: DENIED) { detail } }');
        return auditLog.some((event: { detail: { code?: string } }) => event.detail?.code === 'RATE_LIMITED');
      });
    } finally {
      await gw.ok(ADMIN_TOKEN, 'mutation { updateConfig(patch: { rateLimit: { perTokenPerSecond: null } }) }');
    }
  });
});

describe(`statehouse/client typed errors (${backend})`, () => {
  it('throws the class of each contract code, with its details', async () => {
    const agent = client(agentToken);
    const forbidden = await rejection(agent.namespace('secret').get('x'));
    expect(forbidden).toBeInstanceOf(ForbiddenError);
    expect(forbidden).toMatchObject({ code: 'FORBIDDEN' });

    const badKey = await rejection(agent.namespace('numbers').set('', 1));
    expect(badKey).toBeInstanceOf(BadUserInputError);
    expect((badKey as BadUserInputError).field).toBe('key');

    const invalid = await rejection(agent.namespace('typed').set('t', { n: 'one' }));
    expect(invalid).toBeInstanceOf(ValidationFailedError);
    expect(invalid).toMatchObject({ path: '/n' });
    expect((invalid as ValidationFailedError).reason).toBeTruthy();
  });

  it('throws UnauthenticatedError for a token the gateway refuses, over the socket and over HTTP', async () => {
    for (const transport of ['websocket', 'http'] as const) {
      const error = await rejection(client('sh_not-a-real-token-000000', { transport }).namespace('numbers').get('x'));
      expect(error, transport).toBeInstanceOf(UnauthenticatedError);
    }
  });
});

describe(`statehouse/client watch() (${backend})`, () => {
  it('delivers changes in order and resumes after a dropped connection with none missed or repeated', async () => {
    const { Tracked, sockets } = trackedWebSocket();
    const consumer = client(otherToken, { webSocket: Tracked });
    const writer = client(agentToken).namespace<number>('numbers');
    const stream = consumer.namespace<number>('numbers').watch({ keyPrefix: 'w1:' });
    // The stream knows where it starts before the first change (a drop before it loses nothing).
    expect(await stream.ready).toBe(stream.resumeAfter);
    await writer.set('w1:a', 1);
    await writer.set('w1:b', 2);
    expect((await take(stream, 2)).map((change) => change.value)).toEqual([1, 2]);

    sockets[0]?.terminate();
    await writer.set('w1:c', 3); // while the consumer is reconnecting
    await writer.commit().set('w1:d', 4).set('w1:e', 5).execute();
    await writer.delete('w1:a');
    const after = await take(stream, 4);
    expect(after.map((change) => [change.key, change.op, change.value])).toEqual([
      ['w1:c', 'SET', 3],
      ['w1:d', 'SET', 4],
      ['w1:e', 'SET', 5],
      ['w1:a', 'DELETE', null],
    ]);
    expect(sockets.length).toBeGreaterThan(1);
    await stream.close();
  });

  it.runIf(backend === 'postgres')(
    'starts "now" after the client`s own acknowledged writes, even while a transaction elsewhere holds the log back',
    async () => {
      const numbers = client(agentToken).namespace<number>('numbers');
      const other = postgres(process.env.TEST_DATABASE_URL ?? '', { max: 1, onnotice: () => {} });
      let release = () => {};
      try {
        // A transaction with an id, open on the server: writes after it are acknowledged but not yet final.
        await new Promise<void>((holding) => {
          const held = other.begin(async (tx) => {
            await tx`SELECT pg_current_xact_id()`;
            holding();
            await new Promise<void>((done) => (release = done));
          });
          void held.catch(() => {});
        });
        const before = await numbers.set('now:before', 1);
        const { systemOverview } = await gw.ok(ADMIN_TOKEN, '{ systemOverview { revision } }');
        expect(BigInt(systemOverview.revision)).toBeLessThan(BigInt(before.revision)); // the gateway's head is behind
        const stream = numbers.watch({ keyPrefix: 'now:' });
        let ready = false;
        void stream.ready.then(() => (ready = true));
        await numbers.get('now:before');
        expect(ready).toBe(false);
        release();
        expect(BigInt(await stream.ready)).toBeGreaterThanOrEqual(BigInt(before.revision));
        await numbers.set('now:after', 2);
        expect((await take(stream, 1)).map((change) => change.key)).toEqual(['now:after']);
      } finally {
        release();
        await other.end();
      }
    },
  );

  it('pauses for a slow consumer and resumes inside a commit without repeating its changes', async () => {
    const writer = client(agentToken).namespace<number>('numbers');
    const start = await writer.set('w2:start', 0);
    const batch = writer.commit();
    for (let i = 0; i < 7; i++) batch.set(`w2:${i}`, i);
    const { revision } = await batch.execute();
    await writer.set('w2:end', 99);
    // A buffer of 3 lets go of the subscription in the middle of the commit's 7 changes.
    const stream = client(otherToken)
      .namespace<number>('numbers')
      .watch({ keyPrefix: 'w2:', afterRevision: start.revision, bufferSize: 3 });
    const changes = await take(stream, 8);
    expect(changes.map((change) => change.key)).toEqual(['w2:0', 'w2:1', 'w2:2', 'w2:3', 'w2:4', 'w2:5', 'w2:6', 'w2:end']);
    expect(changes.slice(0, 7).every((change) => change.revision === revision)).toBe(true);
    expect(stream.resumeAfter).toBe(revision);
    await stream.close();
  });

  it('ends with RevisionCompactedError, naming oldestRevision, when asked to resume from compacted history', async () => {
    const writer = client(agentToken).namespace<number>('short');
    const first = await writer.set('k', 1);
    await writer.set('k', 2);
    await writer.set('k', 3);
    await gw.app.maintenance.compact();
    const stream = client(agentToken).namespace('short').watch({ afterRevision: first.revision });
    const error = await rejection(stream.next());
    expect(error).toBeInstanceOf(RevisionCompactedError);
    expect(BigInt((error as RevisionCompactedError).oldestRevision ?? '0')).toBeGreaterThan(BigInt(first.revision));
  });
});

describe(`statehouse/client lock() (${backend})`, () => {
  it('gives the lock to one contender at a time; a waiter gets it when it is released', async () => {
    const [a, b] = [client(agentToken), client(otherToken)];
    const held = await a.lock('leader', { ttlSeconds: 30, owner: 'producer' });
    expect((await gw.ok(ADMIN_TOKEN, ENTRY, { ns: 'common', key: 'lock:leader' })).entry.value).toMatchObject({ owner: 'producer' });
    expect(await b.tryLock('leader')).toBeNull();
    let acquired = false;
    const waiting = b.lock('leader', { ttlSeconds: 30 }).then((lock) => {
      acquired = true;
      return lock;
    });
    await held.release();
    const second = await waiting;
    expect(acquired).toBe(true);
    expect(held.held).toBe(false);
    expect(second.held).toBe(true);
    {
      await using _released = second;
    }
    expect((await gw.ok(ADMIN_TOKEN, ENTRY, { ns: 'common', key: 'lock:leader' })).entry).toBeNull();
  });

  it('takes a lock whose holder stopped renewing once its TTL has run out', async () => {
    // A holder that died: its lock entry stays until it expires.
    await gw.ok(
      ADMIN_TOKEN,
      'mutation { setEntry(input: { namespace: "common", key: "lock:orphaned", value: { holder: "dead" }, expectedVersion: 0, ttlSeconds: 1 }) { version } }',
    );
    const waiter = client(otherToken);
    expect(await waiter.tryLock('orphaned')).toBeNull();
    const lock = await waiter.lock('orphaned', { ttlSeconds: 30 });
    const { entry } = await gw.ok(ADMIN_TOKEN, ENTRY, { ns: 'common', key: 'lock:orphaned' });
    expect(entry.value).not.toEqual({ holder: 'dead' });
    expect(entry.updatedBy).toBe('consumer');
    await lock.release();
  });

  it('lets exactly one of ten contenders hold the lock at a time', async () => {
    const contenders = await Promise.all(
      Array.from({ length: 10 }, (_, i) => client(i % 2 ? agentToken : otherToken).tryLock('contended', { ttlSeconds: 30 })),
    );
    const winners = contenders.filter((lock) => lock !== null);
    expect(winners).toHaveLength(1);
    await winners[0]?.release();
  });

  it('renews the lock while held, past its TTL', async () => {
    const holder = client(agentToken);
    const lock = await holder.lock('renewed', { ttlSeconds: 1, renewEveryMs: 250 });
    const first = (await gw.ok(ADMIN_TOKEN, ENTRY, { ns: 'common', key: 'lock:renewed' })).entry;
    // Held well past one TTL: renewals moved it on and it never expired.
    await eventually(
      async () => (await gw.ok(ADMIN_TOKEN, ENTRY, { ns: 'common', key: 'lock:renewed' })).entry?.version >= first.version + 6,
    );
    expect(lock.held).toBe(true);
    expect(await client(otherToken).tryLock('renewed')).toBeNull();
    await lock.release();
  });

  it('signals a lost lock: onLost, its signal aborts, and release rejects with LockLostError', async () => {
    const holder = client(agentToken);
    const lost: LockLostError[] = [];
    const lock = await holder.lock('stolen', { ttlSeconds: 30, renewEveryMs: 100, onLost: (error) => lost.push(error) });
    // Someone overwrites it (an admin clearing a stale lock, say): the next renewal is refused.
    await gw.ok(
      ADMIN_TOKEN,
      'mutation { setEntry(input: { namespace: "common", key: "lock:stolen", value: { holder: "admin" } }) { version } }',
    );
    await eventually(() => lock.signal.aborted, 5_000, 'the lock to be lost');
    expect(lock.signal.reason).toBeInstanceOf(LockLostError);
    expect(lost).toHaveLength(1);
    expect(lock.held).toBe(false);
    expect(await rejection(lock.release())).toBeInstanceOf(LockLostError);
    expect((await gw.ok(ADMIN_TOKEN, ENTRY, { ns: 'common', key: 'lock:stolen' })).entry.value).toEqual({ holder: 'admin' });
  });
});

describe(`statehouse/client fleet (${backend})`, () => {
  it('sends heartbeats in the background until stopped, then a last status', async () => {
    const token = await gw.registerAgent('beater', []);
    const agent = client(token);
    let status: 'BUSY' | 'IDLE' = 'BUSY';
    const beats = agent.agent.startHeartbeats({ every: 50, status: () => status, data: () => ({ queue: 3 }) });
    await eventually(() => beats.sent >= 3, 5_000, 'three heartbeats');
    expect(await agent.fleet.agent('beater')).toMatchObject({ status: 'BUSY', active: true, heartbeat: { queue: 3 } });
    status = 'IDLE';
    await eventually(async () => (await agent.fleet.agent('beater'))?.status === 'IDLE');
    await beats.stop({ status: 'STOPPED' });
    const { agent: stopped } = await gw.ok(ADMIN_TOKEN, '{ agent(id: "beater") { status } }');
    expect(stopped.status).toBe('STOPPED');
  });

  it('sends metrics in batches by size, by time, and on close', async () => {
    const token = await gw.registerAgent('measurer', []);
    const agent = client(token, { idleCloseMs: 600_000, metrics: { batchSize: 400, flushIntervalMs: 600_000 } });
    for (let i = 0; i < 1_000; i++) agent.metrics.record('latency_ms', i, { route: 'a' });
    const summary = async () =>
      (await gw.ok(ADMIN_TOKEN, '{ metricSummary(name: "latency_ms", agentId: "measurer") { count max } }')).metricSummary[0];
    // Two full batches go at once; the 200 left over wait for the (long) interval, or for close.
    await eventually(async () => ((await summary())?.count ?? 0) >= 800, 30_000, 'two batches');
    expect(await summary()).toMatchObject({ count: 800, max: 799 });
    expect(agent.metrics.buffered).toBe(200);
    await agent.close();
    expect(await summary()).toMatchObject({ count: 1_000, max: 999 });
    expect(() => agent.metrics.record('latency_ms', 1)).toThrow(ClientClosedError);
    const { auditLog } = await gw.ok(ADMIN_TOKEN, '{ auditLog(actor: "measurer", action: "recordMetrics") { outcome } }');
    expect(auditLog).toHaveLength(3);

    const timed = client(token, { metrics: { flushIntervalMs: 50 } });
    timed.metrics.record('queue_depth', 7);
    await eventually(
      async () => (await gw.ok(ADMIN_TOKEN, '{ metricSummary(name: "queue_depth") { count } }')).metricSummary[0]?.count === 1,
    );
    expect(() => timed.metrics.record('queue_depth', Number.NaN)).toThrow(TypeError);
  });

  it('sends buffered metrics before it closes an idle socket, then closes it', async () => {
    const token = await gw.registerAgent('idler', []);
    const { Tracked, sockets, open } = trackedWebSocket();
    const states: string[] = [];
    const agent = client(token, {
      webSocket: Tracked,
      idleCloseMs: 100,
      onConnectionChange: (state) => states.push(state),
      metrics: { batchSize: 500, flushIntervalMs: 600_000 },
    });
    agent.metrics.record('idle_points', 1);
    agent.metrics.record('idle_points', 2);
    await agent.viewer(); // opens the socket; it goes idle once this is answered
    const count = async () =>
      (await gw.ok(ADMIN_TOKEN, '{ metricSummary(name: "idle_points", agentId: "idler") { count } }')).metricSummary[0]?.count ?? 0;
    await eventually(async () => (await count()) === 2, 10_000, 'the points sent at the idle close');
    await eventually(() => open().length === 0, 10_000, 'the idle socket to close');
    expect(sockets).toHaveLength(1); // sent on the socket that was open, not on a new one
    expect(agent.metrics.buffered).toBe(0);
    expect(states.at(-1)).toBe('idle');
  });

  it('reports errors, insights and optimizations, and reads them back as a dashboard does', async () => {
    const token = await gw.registerAgent('reporter', [], { type: 'importer' });
    const { agent, fleet } = client(token);
    await agent.heartbeat('BUSY', { queue: 1 });
    const first = await agent.reportError({ type: 'timeout', message: 'request 4711 timed out after 30s' });
    const second = await agent.reportError({ type: 'timeout', message: 'request 4712 timed out after 31s', context: { url: '/x' } });
    expect(second.fingerprint).toBe(first.fingerprint);
    expect(second).toMatchObject({ count: 2, agentIds: ['reporter'] });
    const insight = await agent.addInsight({ type: 'capacity', content: { hint: 'add a worker' }, priority: 'HIGH' });
    expect(insight).toMatchObject({ sourceAgentId: 'reporter', priority: 'HIGH', actedUpon: false });
    await agent.recordOptimization({
      type: 'batching',
      description: 'batch size 500',
      before: { p95: 80 },
      after: { p95: 40 },
      success: true,
    });

    expect((await fleet.agents({ type: 'importer' })).map((a) => [a.id, a.status])).toEqual([['reporter', 'BUSY']]);
    expect((await fleet.errorPatterns({ type: 'timeout' }))[0]).toMatchObject({ count: 2, fingerprint: first.fingerprint });
    expect((await fleet.insights({ minPriority: 'HIGH' })).map((i) => i.id)).toContain(insight.id);
    expect(await fleet.markInsightActedUpon(insight.id)).toMatchObject({ actedUpon: true });
    expect((await fleet.optimizations({ type: 'batching' }))[0]).toMatchObject({
      success: true,
      sourceAgentId: 'reporter',
      after: { p95: 40 },
    });
    expect(await fleet.overview()).toMatchObject({ agentsByStatus: expect.objectContaining({ BUSY: expect.any(Number) }) });
  });
});
