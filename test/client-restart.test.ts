/**
 * watch() across a gateway restart: the gateway goes away while a consumer watches and a writer writes —
 * stopped, or killed with SIGKILL as a separate process — a new one starts on the same database and port,
 * and the consumer must have received exactly the gateway's change log: every acknowledged change once,
 * in order, nothing else.
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import postgres from 'postgres';
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

type Address = { revision: string; namespace: string; scope: string; key: string };
const identity = (change: Address) => `${change.revision}/${change.namespace}/${change.scope}/${change.key}`;

/** An admin's GraphQL request to whichever gateway is up now. */
type Admin = (query: string, variables?: Record<string, unknown>) => Promise<any>;

/**
 * The scenario: a consumer watches `feed` and a writer writes (single sets and three-key commits) through
 * statehouse/client; once 40 writes are acknowledged `restart` takes the gateway away and brings a new one
 * up at the same URL (it may write there itself, returning what it acknowledged); 40 more writes later the
 * consumer must hold exactly the gateway's log since it started.
 */
async function watchAcrossRestart(url: string, admin: () => Admin, restart: () => Promise<Address[]>): Promise<void> {
  await admin()('mutation { createNamespace(input: { name: "feed" }) { name } }');
  const register = async (id: string) =>
    (
      await admin()(
        'mutation($id: ID!, $name: String!) { registerAgent(input: { id: $id, name: $name, type: "worker", stateNamespaces: ["feed"] }) { token } }',
        { id, name: id },
      )
    ).registerAgent.token as string;
  const [writerToken, readerToken] = [await register('writer'), await register('reader')];

  const options = { url, webSocket: WebSocket, retry: { attempts: 100, initialDelayMs: 50, maxDelayMs: 500 } };
  const consumer: StatehouseClient = connect({ ...options, token: readerToken });
  const writer: StatehouseClient = connect({ ...options, token: writerToken });
  cleanups.push(
    () => consumer.close(),
    () => writer.close(),
  );

  const stream = await consumer.namespace<number>('feed').watch().whenReady();
  const start = await stream.ready;
  const received: Change<number>[] = [];
  const consuming = (async () => {
    for await (const change of stream) received.push(change);
  })();

  const acknowledged: Address[] = [];
  let inDoubt = 0;
  let writing = true;
  const feed = writer.namespace<number>('feed');
  const writing$ = (async () => {
    for (let i = 0; writing; i++) {
      try {
        if (i % 5 === 4) {
          const { entries } = await feed.commit().set(`c${i}a`, i).set(`c${i}b`, i).increment('commits').execute();
          acknowledged.push(...(entries as Entry<unknown>[]));
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
  const beforeRestart = acknowledged.length;
  acknowledged.push(...(await restart()));
  await eventually(() => acknowledged.length >= beforeRestart + 40, 60_000, 'writes after the restart');
  writing = false;
  await writing$;

  const wanted = new Set(acknowledged.map(identity));
  await eventually(
    () => [...wanted].every((id) => received.some((change) => identity(change) === id)),
    30_000,
    'every acknowledged change at the consumer',
  );

  // The gateway's own log of the namespace since the stream started: the consumer got exactly it.
  const log: Address[] = [];
  let after: string | null = null;
  do {
    const page: any = await admin()(CHANGES, { after, afterRevision: start });
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
}

/** A gateway as its own process (`src/main.ts`), on `port` (0: any free one). */
async function startProcess(env: Record<string, string>, port = 0) {
  const child: ChildProcessWithoutNullStreams = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: new URL('..', import.meta.url).pathname,
    env: { ...process.env, HOST: '127.0.0.1', LOG_LEVEL: 'info', DATABASE_URL: '', ...env, PORT: String(port) },
  });
  const exited = new Promise<NodeJS.Signals | number | null>((resolve) => child.once('exit', (code, signal) => resolve(signal ?? code)));
  cleanups.push(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  });
  let output = '';
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no listening line within 60 s:\n${output}`)), 60_000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      const listening = /http:\/\/127\.0\.0\.1:\d+\/graphql/.exec(output);
      if (listening) {
        clearTimeout(timer);
        resolve(listening[0]);
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    void exited.then((how) => {
      clearTimeout(timer);
      reject(new Error(`exited with ${how} before listening:\n${output}`));
    });
  });
  const admin: Admin = async (query, variables) => {
    const response = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${ADMIN_TOKEN}` },
      body: JSON.stringify({ query, variables }),
    });
    const body = (await response.json()) as { data?: unknown; errors?: unknown[] };
    if (body.errors?.length || !body.data) throw new Error(`${query} → ${JSON.stringify(body)}`);
    return body.data;
  };
  return { child, url, admin, exited };
}

/** Where a gateway process keeps its data: a new PostgreSQL database, or a PGlite data directory. */
async function processDatabase(): Promise<Record<string, string>> {
  if (backend === 'pglite') {
    const dataDir = mkdtempSync(join(tmpdir(), 'statehouse-client-kill-'));
    cleanups.push(async () => rmSync(dataDir, { recursive: true, force: true }));
    return { STATEHOUSE_DATA_DIR: dataDir };
  }
  const server = postgres(process.env.TEST_DATABASE_URL ?? '', { max: 1, onnotice: () => {} });
  const name = `statehouse_test_${randomBytes(6).toString('hex')}`;
  await server.unsafe(`CREATE DATABASE ${name}`);
  cleanups.push(async () => {
    await server.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await server.end();
  });
  const url = new URL(process.env.TEST_DATABASE_URL ?? '');
  url.pathname = `/${name}`;
  return { DATABASE_URL: url.toString() };
}

describe(`statehouse/client across a gateway restart (${backend})`, () => {
  it('gives a watch() consumer every acknowledged change once and in order while the gateway restarts under a writer', async () => {
    const db: TestDatabase = await createTestDatabase();
    cleanups.push(() => db.drop());
    let gw: Gateway = await startGateway({ db });
    cleanups.push(() => gw.close());
    const port = Number(new URL(gw.url).port);
    await watchAcrossRestart(
      gw.url,
      () => (query, variables) => gw.ok(ADMIN_TOKEN, query, variables),
      async () => {
        await gw.app.stop();
        gw = await startGateway({ db, port });
        // Written at once, while the consumer is still waiting to reconnect: only resuming finds these.
        const written: Address[] = [];
        for (let i = 0; i < 5; i++) {
          const { setEntry } = await gw.ok(
            ADMIN_TOKEN,
            'mutation($key: String!) { setEntry(input: { namespace: "feed", key: $key, value: 0 }) { namespace scope key revision } }',
            { key: `gap${i}` },
          );
          written.push(setEntry);
        }
        return written;
      },
    );
  }, 120_000);

  it('does the same when the gateway process is killed with SIGKILL and started again', async () => {
    const env = { ...(await processDatabase()), STATEHOUSE_ADMIN_TOKEN: ADMIN_TOKEN };
    let gateway = await startProcess(env);
    const port = Number(new URL(gateway.url).port);
    await watchAcrossRestart(
      gateway.url,
      () => gateway.admin,
      async () => {
        gateway.child.kill('SIGKILL');
        expect(await gateway.exited).toBe('SIGKILL');
        gateway = await startProcess(env, port);
        return [];
      },
    );
  }, 180_000);
});
