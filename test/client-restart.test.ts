/**
 * watch() across a gateway restart: the gateway stops while a consumer watches and a writer writes, a
 * new one starts on the same database and port, and the consumer must have received exactly the
 * gateway's change log — every acknowledged change once, in order, nothing else.
 */
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { type Change, ConnectionError, connect, type Entry, type StatehouseClient } from '../src/client/index.js';
import { backend, createTestDatabase, type TestDatabase } from './support/database.js';
import { ADMIN_TOKEN, eventually, type Gateway, startGateway } from './support/gateway.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => {});
});

const CHANGES = `query($after: String, $afterRevision: Revision) {
  changes(namespace: "feed", afterRevision: $afterRevision, first: 1000, after: $after) {
    nodes { revision namespace scope key version op } pageInfo { hasNextPage endCursor }
  }
}`;

const identity = (change: { revision: string; namespace: string; scope: string; key: string }) =>
  `${change.revision}/${change.namespace}/${change.scope}/${change.key}`;

describe(`statehouse/client across a gateway restart (${backend})`, () => {
  it('gives a watch() consumer every acknowledged change once and in order while the gateway restarts under a writer', async () => {
    const db: TestDatabase = await createTestDatabase();
    cleanups.push(() => db.drop());
    let gw: Gateway = await startGateway({ db });
    cleanups.push(() => gw.close());
    const port = Number(new URL(gw.url).port);
    await gw.createNamespace('feed');
    const writerToken = await gw.registerAgent('writer', ['feed']);
    const readerToken = await gw.registerAgent('reader', ['feed']);

    const options = { url: gw.url, webSocket: WebSocket, retry: { attempts: 100, initialDelayMs: 50, maxDelayMs: 500 } };
    const consumer: StatehouseClient = connect({ ...options, token: readerToken });
    const writer: StatehouseClient = connect({ ...options, token: writerToken });
    cleanups.push(
      () => consumer.close(),
      () => writer.close(),
    );

    const stream = consumer.namespace<number>('feed').watch();
    const start = await stream.ready;
    const received: Change<number>[] = [];
    const consuming = (async () => {
      for await (const change of stream) received.push(change);
    })();

    // Single writes and three-key commits (whose changes share a revision), until told to stop.
    const acknowledged: Entry<unknown>[] = [];
    let inDoubt = 0;
    let writing = true;
    const feed = writer.namespace<number>('feed');
    const writing$ = (async () => {
      for (let i = 0; writing; i++) {
        try {
          if (i % 5 === 4) {
            const { entries } = await feed.commit().set(`c${i}a`, i).set(`c${i}b`, i).increment('commits').execute();
            acknowledged.push(...entries);
          } else {
            acknowledged.push(await feed.set(`k${i}`, i));
          }
        } catch (error) {
          // Sent when the gateway went away: it may or may not have been applied, and is not repeated.
          if (error instanceof ConnectionError && error.maybeApplied) inDoubt++;
          else throw error;
        }
      }
    })();

    await eventually(() => acknowledged.length >= 40, 20_000, 'writes before the restart');
    await gw.app.stop();
    const beforeRestart = acknowledged.length;
    gw = await startGateway({ db, port });
    // Written at once, while the consumer is still waiting to reconnect: only resuming finds these.
    for (let i = 0; i < 5; i++) {
      const { setEntry } = await gw.ok(
        ADMIN_TOKEN,
        'mutation($key: String!) { setEntry(input: { namespace: "feed", key: $key, value: 0 }) { namespace scope key revision } }',
        {
          key: `gap${i}`,
        },
      );
      acknowledged.push(setEntry);
    }
    await eventually(() => acknowledged.length >= beforeRestart + 40, 30_000, 'writes after the restart');
    writing = false;
    await writing$;

    const wanted = new Set(acknowledged.map((entry) => identity({ ...entry, revision: entry.revision })));
    await eventually(
      () => [...wanted].every((id) => received.some((change) => identity(change) === id)),
      20_000,
      'every acknowledged change at the consumer',
    );

    // The gateway's own log of the namespace since the stream started: the consumer got exactly it.
    const log: { revision: string; namespace: string; scope: string; key: string }[] = [];
    let after: string | null = null;
    do {
      const page: any = await gw.ok(ADMIN_TOKEN, CHANGES, { after, afterRevision: start });
      log.push(...page.changes.nodes);
      after = page.changes.pageInfo.hasNextPage ? page.changes.pageInfo.endCursor : null;
    } while (after);
    await eventually(() => received.length >= log.length, 10_000, 'the consumer to catch up with the log');
    expect(received.map(identity)).toEqual(log.map(identity));
    expect(new Set(received.map(identity)).size).toBe(received.length);
    expect(acknowledged.length).toBeGreaterThanOrEqual(80);
    expect(log.length - acknowledged.length).toBeLessThanOrEqual(inDoubt * 3);

    await stream.close();
    await consuming;
  }, 120_000);
});
