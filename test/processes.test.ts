/**
 * Several gateway processes on one database, and the durability of a real process (issue 5: "Several
 * processes, one truth", "Durability"; API.md §1, §2 grants and revocation, §5 "Change feed").
 *
 * On PostgreSQL two gateways built in this process each have their own pool and their own LISTEN
 * connection, so they talk only through the database, like two processes; real `src/main.ts`
 * processes are spawned too. The durability test (SIGKILL during a write loop) and the ordering test
 * run on both backends.
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Client, createClient } from 'graphql-ws';
import postgres from 'postgres';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { MIGRATION_LOCK } from '../src/db/migrate.js';
import { backend, createTestDatabase, type TestDatabase } from './support/database.js';
import {
  ADMIN_TOKEN,
  eventually,
  type Gateway,
  type GraphQLResponse,
  type Subscription,
  startGateway,
  subscribe,
} from './support/gateway.js';

interface Change {
  revision: string;
  op: string;
  namespace: string;
  scope: string;
  key: string;
  version: number;
  value: unknown;
}
interface Written {
  key: string;
  version: number;
  revision: string;
  value: unknown;
}
interface Page {
  changes: { nodes: Change[]; pageInfo: { hasNextPage: boolean; endCursor: string | null } };
}

const SET =
  'mutation($ns: String!, $key: String!, $value: JSON!) { setEntry(input: { namespace: $ns, key: $key, value: $value }) { key version revision value } }';
const CHANGES = `query($ns: String, $afterRevision: Revision, $after: String) {
  changes(namespace: $ns, afterRevision: $afterRevision, first: 1000, after: $after) {
    nodes { revision op namespace scope key version value } pageInfo { hasNextPage endCursor }
  }
}`;
const ENTRIES = `query($ns: String!, $after: String) {
  entries(namespace: $ns, first: 1000, after: $after) { nodes { key version value revision } pageInfo { hasNextPage endCursor } }
}`;
const ENTRY_CHANGED = `subscription($ns: String, $afterRevision: Revision) {
  entryChanged(namespace: $ns, afterRevision: $afterRevision) { revision op namespace scope key version value }
}`;
const GRANT =
  'mutation($ns: String!, $agent: ID!, $perm: Permission!) { grantAccess(input: { namespace: $ns, agentId: $agent, permission: $perm }) { permission } }';
const REVOKE_ACCESS = 'mutation($ns: String!, $agent: ID!) { revokeAccess(input: { namespace: $ns, agentId: $agent }) }';
const REVOKE_TOKEN = 'mutation($id: ID!) { revokeToken(id: $id) }';
const VIEWER = '{ viewer { role } }';
const COMMIT = 'mutation($operations: [OperationInput!]!) { commit(input: { operations: $operations }) { revision } }';

let counter = 0;
/** A fresh name, valid as a namespace, agent id or key. */
const unique = (label: string) => `${label}-${(++counter).toString(36)}-${randomBytes(3).toString('hex')}`;

/** One GraphQL request to some gateway; never throws on GraphQL errors. */
type Gql = (token: string | null, query: string, variables?: Record<string, unknown>) => Promise<GraphQLResponse<any>>;

async function ok<T = any>(gql: Gql, token: string | null, query: string, variables?: Record<string, unknown>): Promise<T> {
  const result = await gql(token, query, variables);
  if (result.errors?.length || !result.data) throw new Error(`${query} ${JSON.stringify(variables)} → ${JSON.stringify(result)}`);
  return result.data as T;
}

const codeOf = (result: GraphQLResponse) => result.errors?.[0]?.extensions?.code;

/** POST /graphql over a real socket (a spawned process). */
const httpGql =
  (url: string): Gql =>
  async (token, query, variables) => {
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (token !== null) headers.authorization = `Bearer ${token}`;
    const response = await fetch(url, { method: 'POST', headers, body: JSON.stringify({ query, variables }) });
    return { ...((await response.json()) as GraphQLResponse<any>), status: response.status };
  };

/** Every change of `ns` after `afterRevision`, paged with the cursor as API.md §5 says. */
async function allChanges(gql: Gql, ns: string, afterRevision: string): Promise<Change[]> {
  const nodes: Change[] = [];
  let after: string | null = null;
  for (;;) {
    const { changes }: Page = await ok<Page>(gql, ADMIN_TOKEN, CHANGES, { ns, afterRevision, after });
    nodes.push(...changes.nodes);
    if (!changes.pageInfo.hasNextPage) return nodes;
    after = changes.pageInfo.endCursor;
  }
}

/** Waits until every revision in `revisions` is visible in `changes` (a commit on another database may hold the watermark). */
async function changesIncluding(gql: Gql, ns: string, afterRevision: string, revisions: Iterable<string>): Promise<Change[]> {
  const wanted = new Set(revisions);
  let changes: Change[] = [];
  await eventually(
    async () => {
      changes = await allChanges(gql, ns, afterRevision);
      const seen = new Set(changes.map((change) => change.revision));
      return [...wanted].every((revision) => seen.has(revision));
    },
    15_000,
    'every acknowledged write to appear in changes',
  );
  return changes;
}

const changesOf = (sub: Subscription<{ entryChanged: Change }>) =>
  sub.results.flatMap((result) => (result.data?.entryChanged ? [result.data.entryChanged] : []));
const tuple = (change: { revision: string; namespace: string; key: string; version: number }) =>
  `${change.revision}|${change.namespace}|${change.key}|${change.version}`;

/**
 * The places where a change does not come after the one before it in log order: revision, then
 * namespace, scope and key (changes of one commit, or of writes that arrived together, share a revision).
 */
function outOfOrder(changes: readonly { revision: string; namespace: string; scope?: string; key: string; version: number }[]): string[] {
  const faults: string[] = [];
  for (let i = 1; i < changes.length; i++) {
    const [before, after] = [changes[i - 1], changes[i]];
    if (!before || !after) continue;
    const revisions = BigInt(after.revision) - BigInt(before.revision);
    const rest =
      [after.namespace, after.scope ?? '', after.key].join('\u001f') > [before.namespace, before.scope ?? '', before.key].join('\u001f');
    if (revisions < 0n || (revisions === 0n && !rest)) faults.push(`${tuple(before)} then ${tuple(after)}`);
  }
  return faults;
}

/** The positions where a revision is not greater than the one before it. */
function notIncreasing(revisions: readonly string[]): string[] {
  const faults: string[] = [];
  for (let i = 1; i < revisions.length; i++) {
    if (BigInt(revisions[i] as string) <= BigInt(revisions[i - 1] as string)) faults.push(`${revisions[i - 1]} then ${revisions[i]}`);
  }
  return faults;
}

const median = (values: readonly number[]) => [...values].sort((x, y) => x - y)[Math.floor(values.length / 2)] ?? 0;

/** Rejects with `what` when `promise` takes longer than `ms`. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// ---------------------------------------------------------------------------------------------
// Real processes: `node --import tsx src/main.ts`, as `npm start` runs it. Every one started here
// is killed after its test, whatever happened.

const root = new URL('..', import.meta.url).pathname;

interface Process {
  child: ChildProcessWithoutNullStreams;
  url: string;
  wsUrl: string;
  gql: Gql;
  output: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const children = new Set<ChildProcessWithoutNullStreams>();
const sockets = new Set<Client>();
const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  await Promise.allSettled([...sockets].map((client) => client.dispose()));
  sockets.clear();
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
  await Promise.allSettled(
    [...children].map((child) =>
      child.exitCode === null && child.signalCode === null ? new Promise((resolve) => child.once('exit', resolve)) : undefined,
    ),
  );
  children.clear();
  for (const cleanup of cleanups.splice(0).reverse()) {
    try {
      await cleanup();
    } catch (error) {
      console.error('cleanup failed', error);
    }
  }
});

function startProcess(env: Record<string, string>): Promise<Process> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: root,
    env: { ...process.env, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info', DATABASE_URL: '', ...env },
  });
  children.add(child);
  let output = '';
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no listening line within 60 s:\n${output}`)), 60_000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      const match = /http:\/\/127\.0\.0\.1:(\d+)\/graphql/.exec(output);
      if (match) {
        clearTimeout(timer);
        const url = match[0];
        resolve({ child, url, wsUrl: `ws://127.0.0.1:${match[1]}/graphql`, gql: httpGql(url), output: () => output, exited });
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`exited with ${code ?? signal} before listening:\n${output}`));
    });
  });
}

/** A graphql-ws client on a real socket to `wsUrl`, closed after the test. */
function wsClient(wsUrl: string, token: string): Client {
  const client = createClient({
    url: wsUrl,
    webSocketImpl: WebSocket,
    retryAttempts: 0,
    lazy: true,
    connectionParams: { authorization: `Bearer ${token}` },
  });
  sockets.add(client);
  return client;
}

/** A new, empty (not migrated) database on the test server, dropped after the test. */
async function emptyPostgresDatabase(): Promise<string> {
  const server = process.env.TEST_DATABASE_URL ?? '';
  const name = `statehouse_test_${randomBytes(6).toString('hex')}`;
  const admin = postgres(server, { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`CREATE DATABASE ${name}`);
  } catch (error) {
    await admin.end();
    throw error;
  }
  cleanups.push(async () => {
    await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.end();
  });
  const url = new URL(server);
  url.pathname = `/${name}`;
  return url.toString();
}

/** Where a fresh gateway process keeps its data on this backend: a new database, or a new PGlite directory. */
async function freshDataEnv(): Promise<Record<string, string>> {
  if (backend === 'postgres') return { DATABASE_URL: await emptyPostgresDatabase() };
  const dataDir = mkdtempSync(join(tmpdir(), 'statehouse-processes-'));
  cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
  return { STATEHOUSE_DATA_DIR: dataDir };
}

// ---------------------------------------------------------------------------------------------
// Two gateways on one database (PostgreSQL); on PGlite only `a`, which has one process only.

let db: TestDatabase;
let a: Gateway;
let b: Gateway | undefined;

beforeAll(async () => {
  db = await createTestDatabase();
  a = await startGateway({ db });
  if (backend === 'postgres') b = await startGateway({ db, database: await db.open() });
});
afterAll(async () => {
  await Promise.allSettled([b?.close(), a?.close()]);
  await db?.drop();
});

/** The second gateway; only PostgreSQL tests ask for it. */
const other = (): Gateway => {
  if (!b) throw new Error('a second gateway runs on PostgreSQL only');
  return b;
};

describe.runIf(backend === 'postgres')('two gateways on one PostgreSQL database', () => {
  it('delivers a write made on one gateway to a subscriber on the other at once (LISTEN/NOTIFY)', async () => {
    const b = other();
    const ns = unique('live');
    await a.createNamespace(ns);
    const start = (await a.ok(ADMIN_TOKEN, SET, { ns, key: 'start', value: 0 })).setEntry.revision;
    const sub = subscribe<{ entryChanged: Change }>(a.ws(ADMIN_TOKEN), ENTRY_CHANGED, { ns, afterRevision: start });
    // Once a change written on A arrives, the subscription is attached and live.
    await a.ok(ADMIN_TOKEN, SET, { ns, key: 'ready', value: 0 });
    await sub.waitFor(1);

    // Each write on B arrives within 2 s, and typically well before the feed's 2 s safety poll would
    // have found it: a poll-only delivery of writes made right after the previous one arrived takes
    // almost 2 s each, so the median would be far above 1 s.
    const latencies: number[] = [];
    for (let i = 0; i < 5; i++) {
      const key = `from-b-${i}`;
      const began = Date.now();
      const written = (await b.ok(ADMIN_TOKEN, SET, { ns, key, value: i })).setEntry as Written;
      await within(
        eventually(() => changesOf(sub).some((change) => change.key === key), 5_000, `${key} on A`),
        2_000,
        `delivering ${key} from B to A`,
      );
      latencies.push(Date.now() - began);
      expect(changesOf(sub).at(-1)).toMatchObject({ namespace: ns, key, version: 1, revision: written.revision, value: i, op: 'SET' });
    }
    expect(median(latencies), `latencies ${latencies.join(', ')} ms`).toBeLessThan(1_000);
    expect(sub.results.every((result) => result.errors === undefined)).toBe(true);
    expect(outOfOrder(changesOf(sub))).toEqual([]);
    sub.stop();
  });

  it('resumes on the other gateway after a disconnect with no gap and no duplicate while 4 writers write on both', async () => {
    const b = other();
    const ns = unique('resume');
    await a.createNamespace(ns);
    const start = (await a.ok(ADMIN_TOKEN, SET, { ns, key: 'start', value: 0 })).setEntry.revision as string;

    const firstClient = a.ws(ADMIN_TOKEN);
    const first = subscribe<{ entryChanged: Change }>(firstClient, ENTRY_CHANGED, { ns, afterRevision: start });

    const acknowledged: Written[] = [];
    // The writers hold after 50 writes each until the subscriber has left, so it leaves mid-stream.
    let leave!: () => void;
    const left = new Promise<void>((resolve) => (leave = resolve));
    const writer = async (gateway: Gateway, w: number) => {
      for (let i = 0; i < 100; i++) {
        if (i === 50) await left;
        // Keys shared between writers: versions interleave across processes.
        const data = await gateway.ok(ADMIN_TOKEN, SET, { ns, key: `k${(w + i) % 11}`, value: { w, i } });
        acknowledged.push(data.setEntry as Written);
      }
    };
    const writing = Promise.all([writer(a, 0), writer(a, 1), writer(b, 2), writer(b, 3)]);
    writing.catch(() => {});

    await first.waitFor(100, 20_000);
    await firstClient.dispose();
    leave();
    const beforeDisconnect = changesOf(first);
    // Writes that arrive together share a revision, so the last one seen may not have been seen whole:
    // resume after the one before it, as statehouse/client does, and skip what was seen.
    const lastSeen = beforeDisconnect.at(-1)?.revision ?? start;
    const resumeAfter = lastSeen === start ? start : String(BigInt(lastSeen) - 1n);
    const writtenAtResume = acknowledged.length;
    const second = subscribe<{ entryChanged: Change }>(b.ws(ADMIN_TOKEN), ENTRY_CHANGED, { ns, afterRevision: resumeAfter });

    await writing;
    expect(writtenAtResume, 'the subscriber resumed while the writers were still writing').toBeLessThan(400);
    const expected = await changesIncluding(
      a.gql,
      ns,
      start,
      acknowledged.map((write) => write.revision),
    );
    expect(expected).toHaveLength(400);
    const lastRevision = expected.at(-1)?.revision;
    await eventually(() => changesOf(second).at(-1)?.revision === lastRevision || second.results.length > 400, 15_000, 'the resumed feed');

    const resumed = changesOf(second);
    expect([...first.results, ...second.results].filter((result) => result.errors !== undefined)).toEqual([]);
    expect(outOfOrder(beforeDisconnect), 'first connection').toEqual([]);
    expect(outOfOrder(resumed), 'second connection').toEqual([]);
    // The replay starts with the whole of the last revision seen (and only it is seen twice).
    const seenBefore = new Set(beforeDisconnect.map(tuple));
    expect(resumed.filter((change) => seenBefore.has(tuple(change))).every((change) => change.revision === lastSeen)).toBe(true);
    const afterResume = resumed.filter((change) => change.revision !== lastSeen || !seenBefore.has(tuple(change)));
    const received = [...beforeDisconnect, ...afterResume].map(tuple);
    expect(new Set(received).size, 'no duplicate').toBe(received.length);
    expect(received.sort()).toEqual(expected.map(tuple).sort());
    expect(new Set(expected.map((change) => change.revision))).toEqual(new Set(acknowledged.map((write) => write.revision)));
    second.stop();
  });

  describe('caches are dropped in every process', () => {
    it('ends an agent’s subscription on B with FORBIDDEN and refuses its next write there when A revokes its grant', async () => {
      const b = other();
      const ns = unique('restricted');
      await a.createNamespace(ns, { openAccess: false });
      const agentId = unique('agent');
      const agent = await a.registerAgent(agentId);
      await a.ok(ADMIN_TOKEN, GRANT, { ns, agent: agentId, perm: 'WRITE' });
      // B has the grant cached: the agent wrote there.
      const start = (await b.ok(agent, SET, { ns, key: 'start', value: 0 })).setEntry.revision;
      const sub = subscribe<{ entryChanged: Change }>(b.ws(agent), ENTRY_CHANGED, { ns, afterRevision: start });
      await b.ok(agent, SET, { ns, key: 'seen', value: 1 });
      await sub.waitFor(1);
      expect(changesOf(sub).map((change) => change.key)).toEqual(['seen']);

      expect((await a.ok(ADMIN_TOKEN, REVOKE_ACCESS, { ns, agent: agentId })).revokeAccess).toBe(true);
      // The very next operation on B, with no pause: "take effect at once" (soft, to report the subscription too).
      const refused = await b.gql(agent, SET, { ns, key: 'after-revoke', value: 2 });
      expect.soft(codeOf(refused), `the revoked agent's next write on B: ${JSON.stringify(refused)}`).toBe('FORBIDDEN');
      expect
        .soft(await a.ok(ADMIN_TOKEN, 'query($ns: String!) { entry(namespace: $ns, key: "after-revoke") { key } }', { ns }))
        .toEqual({ entry: null });

      await within(sub.done, 5_000, 'ending the subscription on B');
      expect(sub.error).toBeUndefined(); // completed with the error as its last result, not a transport error
      expect(sub.results.at(-1)?.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
      expect(sub.results.at(-1)?.data ?? null).toBeNull();
      expect(changesOf(sub).map((change) => change.key)).toEqual(['seen']);
    });

    it('refuses a token revoked through A at its next request on B and ends its subscription there with UNAUTHENTICATED', async () => {
      const b = other();
      const ns = unique('watched');
      await a.createNamespace(ns);
      const { id, token } = await a.createToken(unique('reader'), 'READER');
      // B has the token cached.
      expect(await b.ok(token, VIEWER)).toEqual({ viewer: { role: 'READER' } });
      const start = (await a.ok(ADMIN_TOKEN, SET, { ns, key: 'start', value: 0 })).setEntry.revision;
      const sub = subscribe<{ entryChanged: Change }>(b.ws(token), ENTRY_CHANGED, { ns, afterRevision: start });
      await a.ok(ADMIN_TOKEN, SET, { ns, key: 'seen', value: 1 });
      await sub.waitFor(1);

      expect((await a.ok(ADMIN_TOKEN, REVOKE_TOKEN, { id })).revokeToken).toBe(true);
      // The very next request on B, with no pause (soft, to report the subscription too).
      const refused = await b.gql(token, VIEWER);
      expect.soft(codeOf(refused), `the revoked token's next request on B: ${JSON.stringify(refused)}`).toBe('UNAUTHENTICATED');

      await within(sub.done, 5_000, 'ending the subscription on B');
      expect(sub.error).toBeUndefined();
      expect(sub.results).toHaveLength(2);
      expect(sub.results[1]?.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
      expect(sub.results[1]?.data ?? null).toBeNull();
    });

    it('lets B write at once to a namespace created through A', async () => {
      const b = other();
      // Several rounds, each with B's namespace list cached (without the new one) before A creates it.
      for (let round = 0; round < 5; round++) {
        const ns = unique('new');
        const agent = await a.registerAgent(unique('agent'), [ns]);
        expect(codeOf(await b.gql(agent, SET, { ns, key: 'early', value: 0 })), `round ${round}`).toBe('FORBIDDEN');
        expect(['NOT_FOUND', 'FORBIDDEN']).toContain(codeOf(await b.gql(ADMIN_TOKEN, SET, { ns, key: 'early', value: 0 })));

        await a.createNamespace(ns);
        const byAgent = await b.gql(agent, SET, { ns, key: 'by-agent', value: round });
        expect(byAgent.data?.setEntry, `round ${round}: ${JSON.stringify(byAgent)}`).toMatchObject({ key: 'by-agent', version: 1 });
        const byAdmin = await b.gql(ADMIN_TOKEN, SET, { ns, key: 'by-admin', value: round });
        expect(byAdmin.data?.setEntry, `round ${round}: ${JSON.stringify(byAdmin)}`).toMatchObject({ key: 'by-admin', version: 1 });
      }
    });

    it('lets an agent use at once on B a grant given through A, and stops it at once when A revokes it', async () => {
      const b = other();
      const agentId = unique('agent');
      const agent = await a.registerAgent(agentId);
      // Several rounds, each cache warm on B before the change made through A.
      for (let round = 0; round < 5; round++) {
        const ns = unique('granted');
        await a.createNamespace(ns, { openAccess: false });
        expect(codeOf(await b.gql(agent, SET, { ns, key: 'before', value: round })), `round ${round}`).toBe('FORBIDDEN');
        await a.ok(ADMIN_TOKEN, GRANT, { ns, agent: agentId, perm: 'WRITE' });
        const granted = await b.gql(agent, SET, { ns, key: 'after', value: round });
        expect(granted.errors, `round ${round}: ${JSON.stringify(granted)}`).toBeUndefined();
        await a.ok(ADMIN_TOKEN, REVOKE_ACCESS, { ns, agent: agentId });
        const revoked = await b.gql(agent, SET, { ns, key: 'revoked', value: round });
        expect(codeOf(revoked), `round ${round}: ${JSON.stringify(revoked)}`).toBe('FORBIDDEN');
      }
    });
  });

  it('starts two real processes at once on a fresh database; writes on each reach a subscriber on the other; SIGTERM stops both with 0', async () => {
    const url = await emptyPostgresDatabase();
    const env = { DATABASE_URL: url, STATEHOUSE_ADMIN_TOKEN: ADMIN_TOKEN };

    // Both must migrate the empty database at the same moment: the gate holds the migration lock
    // until both wait on it, then lets go; the lock must then let one migrate at a time. (A session
    // lock, not an open transaction: a transaction id held here would stall every change feed on
    // the server, other test files' included.)
    const gate = postgres(url, { max: 2, onnotice: () => {} });
    cleanups.push(() => gate.end({ timeout: 1 }));
    const held = await gate.reserve();
    await held`SELECT pg_advisory_lock(${MIGRATION_LOCK})`;
    const starting = Promise.all([startProcess(env), startProcess(env)]);
    starting.catch(() => {});
    const databaseName = new URL(url).pathname.slice(1);
    await eventually(
      async () => {
        const [row] = await gate<{ waiting: number }[]>`
          SELECT count(*)::int AS waiting FROM pg_stat_activity WHERE datname = ${databaseName} AND wait_event_type = 'Lock'`;
        return (row?.waiting ?? 0) >= 2;
      },
      60_000,
      'both processes to reach their migrations',
    );
    await held`SELECT pg_advisory_unlock(${MIGRATION_LOCK})`;
    held.release();
    const [one, two] = await starting;

    for (const p of [one, two]) {
      expect((await fetch(p.url.replace('/graphql', '/ready'))).status, p.output()).toBe(200);
      expect(await ok(p.gql, ADMIN_TOKEN, VIEWER)).toEqual({ viewer: { role: 'ADMIN' } });
    }
    const journal = JSON.parse(readFileSync(join(root, 'drizzle/meta/_journal.json'), 'utf8')) as { entries: unknown[] };
    const [applied] = await gate<{ count: number }[]>`SELECT count(*)::int AS count FROM drizzle.__drizzle_migrations`;
    expect(applied?.count, 'every migration applied once').toBe(journal.entries.length);

    const ns = unique('processes');
    await ok(one.gql, ADMIN_TOKEN, 'mutation($ns: String!) { createNamespace(input: { name: $ns }) { name } }', { ns });
    const start = (await ok(one.gql, ADMIN_TOKEN, SET, { ns, key: 'start', value: 0 })).setEntry.revision;
    const onOne = subscribe<{ entryChanged: Change }>(wsClient(one.wsUrl, ADMIN_TOKEN), ENTRY_CHANGED, { ns, afterRevision: start });
    const onTwo = subscribe<{ entryChanged: Change }>(wsClient(two.wsUrl, ADMIN_TOKEN), ENTRY_CHANGED, { ns, afterRevision: start });
    await ok(one.gql, ADMIN_TOKEN, SET, { ns, key: 'ready', value: 0 });
    await Promise.all([onOne.waitFor(1), onTwo.waitFor(1)]);

    // Written on one process, seen by the other's subscriber within 2 s, typically well before its 2 s safety poll.
    const latencies: number[] = [];
    for (let i = 0; i < 5; i++) {
      const [writer, sub] = i % 2 === 0 ? [two, onOne] : [one, onTwo];
      const key = `write-${i}`;
      const began = Date.now();
      const written = (await ok(writer.gql, ADMIN_TOKEN, SET, { ns, key, value: { i } })).setEntry as Written;
      await within(
        eventually(() => changesOf(sub).some((change) => change.key === key), 5_000, `${key} from the other process`),
        2_000,
        'delivery between processes',
      );
      latencies.push(Date.now() - began);
      expect(changesOf(sub).at(-1)).toMatchObject({ namespace: ns, key, version: 1, revision: written.revision, value: { i } });
    }

    expect(median(latencies), `latencies ${latencies.join(', ')} ms`).toBeLessThan(1_000);

    const [exitOne, exitTwo] = await Promise.all(
      [one, two].map((p) => {
        p.child.kill('SIGTERM');
        return within(p.exited, 20_000, 'SIGTERM');
      }),
    );
    expect(exitOne, one.output()).toEqual({ code: 0, signal: null });
    expect(exitTwo, two.output()).toEqual({ code: 0, signal: null });
    await within(Promise.all([onOne.done, onTwo.done]), 5_000, 'the subscriptions ending at shutdown');
  }, 120_000);
});

// ---------------------------------------------------------------------------------------------

describe(`durability (${backend})`, () => {
  it('keeps every acknowledged write, and its change, after kill -9 during a write loop', async () => {
    // One process: the one that acknowledged the writes is the one killed (workers would only exit after it).
    const env = { ...(await freshDataEnv()), STATEHOUSE_ADMIN_TOKEN: ADMIN_TOKEN, STATEHOUSE_WORKERS: '1' };
    const first = await startProcess(env);
    const ns = unique('durable');
    await ok(first.gql, ADMIN_TOKEN, 'mutation($ns: String!) { createNamespace(input: { name: $ns }) { name } }', { ns });

    const acknowledged = new Map<string, Written>();
    const attempted = new Set<string>();
    let killed = false;
    const writer = async (w: number) => {
      for (let i = 0; !killed; i++) {
        const key = `w${w}-${i}`;
        const value = { w, i, text: `value of ${key}` };
        attempted.add(key);
        let result: GraphQLResponse<any>;
        try {
          result = await first.gql(ADMIN_TOKEN, SET, { ns, key, value });
        } catch {
          return; // the process is gone: this write was in flight
        }
        if (result.errors?.length || !result.data) throw new Error(`write ${key} failed: ${JSON.stringify(result)}`);
        acknowledged.set(key, result.data.setEntry as Written);
        if (acknowledged.size >= 200 && !killed) {
          killed = true;
          first.child.kill('SIGKILL');
        }
      }
    };
    await within(Promise.all([0, 1, 2, 3, 4, 5].map(writer)), 30_000, 'the write loop');
    expect((await first.exited).signal).toBe('SIGKILL');
    expect(acknowledged.size).toBeGreaterThanOrEqual(200);

    const second = await startProcess(env);
    const entries = new Map<string, { key: string; version: number; value: unknown; revision: string }>();
    let after: string | null = null;
    for (;;) {
      const page: any = await ok(second.gql, ADMIN_TOKEN, ENTRIES, { ns, after });
      for (const node of page.entries.nodes) entries.set(node.key, node);
      if (!page.entries.pageInfo.hasNextPage) break;
      after = page.entries.pageInfo.endCursor;
    }
    const changes = await allChanges(second.gql, ns, '0');
    const changeOf = new Map(changes.map((change) => [change.key, change]));

    const missing: string[] = [];
    for (const [key, write] of acknowledged) {
      const entry = entries.get(key);
      const change = changeOf.get(key);
      if (
        !entry ||
        entry.version !== write.version ||
        entry.revision !== write.revision ||
        JSON.stringify(entry.value) !== JSON.stringify(write.value)
      ) {
        missing.push(`entry ${key}: acknowledged ${JSON.stringify(write)}, found ${JSON.stringify(entry)}`);
      }
      if (
        !change ||
        change.op !== 'SET' ||
        change.version !== write.version ||
        change.revision !== write.revision ||
        JSON.stringify(change.value) !== JSON.stringify(write.value)
      ) {
        missing.push(`change ${key}: acknowledged ${JSON.stringify(write)}, found ${JSON.stringify(change)}`);
      }
    }
    expect(missing, `${missing.length} of ${acknowledged.size} acknowledged writes lost`).toEqual([]);
    // Nothing else: only writes that were sent (the in-flight ones may or may not be there).
    expect([...entries.keys()].filter((key) => !attempted.has(key))).toEqual([]);
    expect(changes.filter((change) => !attempted.has(change.key))).toEqual([]);
    expect(changes).toHaveLength(entries.size);

    second.child.kill('SIGTERM');
    expect(await within(second.exited, 20_000, 'SIGTERM')).toEqual({ code: 0, signal: null });
  }, 120_000);
});

describe(`revision order (${backend})`, () => {
  it('never shows a reader an older revision after a newer one, and misses none, while 8 writers write', async () => {
    const ns = unique('ordered');
    await a.createNamespace(ns);
    const start = (await a.ok(ADMIN_TOKEN, SET, { ns, key: 'start', value: 0 })).setEntry.revision as string;
    // On PostgreSQL the writers are spread over both gateways (two pools, two processes' worth of transactions).
    const gateways = [a, b ?? a];

    // Four writers of single setEntry calls and four of 40-operation commits: a commit holds its
    // revision (transaction id) longer, so shorter writes with newer revisions commit before it.
    const acknowledged: string[] = [];
    let writing = true;
    const writer = async (w: number) => {
      const gateway = gateways[w % gateways.length] as Gateway;
      for (let i = 0; i < (w < 4 ? 60 : 15); i++) {
        if (w < 4) {
          acknowledged.push((await gateway.ok(ADMIN_TOKEN, SET, { ns, key: `w${w}-${i}`, value: i })).setEntry.revision);
        } else {
          const operations = Array.from({ length: 40 }, (_, k) => ({ set: { namespace: ns, key: `c${w}-${i}-${k}`, value: k } }));
          acknowledged.push((await gateway.ok(ADMIN_TOKEN, COMMIT, { operations })).commit.revision);
        }
      }
    };

    // The reader asks for what follows the last revision it saw, paging on with the cursor within one read.
    const seen: Change[] = [];
    let reads = 0;
    const reader = async () => {
      let last = start;
      for (;;) {
        const done = !writing;
        let after: string | null = null;
        let read = 0;
        for (;;) {
          const { changes }: Page = await ok<Page>(a.gql, ADMIN_TOKEN, CHANGES, { ns, afterRevision: last, after });
          seen.push(...changes.nodes);
          read += changes.nodes.length;
          if (!changes.pageInfo.hasNextPage) break;
          after = changes.pageInfo.endCursor;
        }
        reads++;
        last = seen.at(-1)?.revision ?? last;
        if (done && read === 0 && acknowledged.every((revision) => BigInt(revision) <= BigInt(last))) return;
      }
    };

    const reading = within(reader(), 30_000, 'the reader catching up');
    await Promise.all([0, 1, 2, 3, 4, 5, 6, 7].map(writer)).finally(() => {
      writing = false;
    });
    await reading;

    expect(reads, 'the reader read while the writers wrote').toBeGreaterThan(3);
    // The changes of one commit share a revision; across them revisions only go up.
    const revisions = seen.map((change) => change.revision).filter((revision, i, all) => i === 0 || all[i - 1] !== revision);
    expect(notIncreasing(revisions)).toEqual([]);
    const full = await allChanges(a.gql, ns, start);
    expect(full).toHaveLength(4 * 60 + 4 * 15 * 40);
    expect(seen.map(tuple)).toEqual(full.map(tuple));
    expect(new Set(full.map((change) => change.revision))).toEqual(new Set(acknowledged));
  });
});

// Known limitation (README, Architecture): the watermark is server-wide, so a long transaction in
// another database holds the feed back until it ends. Kept as the test a better watermark must pass:
// it.fails turns green the day that limitation is gone, and is then made an ordinary test.
describe.runIf(backend === 'postgres')('a long transaction elsewhere on the server', () => {
  it.fails('does not hold back the change feed', async () => {
    const gw = await startGateway();
    const other = postgres(process.env.TEST_DATABASE_URL ?? '', { max: 1, onnotice: () => {} });
    try {
      await gw.createNamespace('elsewhere');
      // A transaction with an id, left open in another database of the same server while we write.
      let release = () => {};
      const holding = new Promise<void>((resolve) => {
        const held = other.begin(async (tx) => {
          await tx`SELECT pg_current_xact_id()`;
          resolve();
          await new Promise<void>((done) => (release = done));
        });
        void held.catch(() => {});
      });
      await holding;
      try {
        const { setEntry } = await gw.ok(
          ADMIN_TOKEN,
          'mutation { setEntry(input: { namespace: "elsewhere", key: "k", value: 1 }) { revision } }',
        );
        const { changes } = await gw.ok(ADMIN_TOKEN, '{ changes(namespace: "elsewhere") { nodes { revision } } }');
        expect(changes.nodes).toEqual([{ revision: setEntry.revision }]);
      } finally {
        release();
      }
    } finally {
      await other.end();
      await gw.close();
    }
  });
});
