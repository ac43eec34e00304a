import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from './support/database.js';

/** `npm start` as a new user runs it: a real process, its stdout, its token, SIGTERM. */
interface Started {
  child: ChildProcessWithoutNullStreams;
  output: () => string;
  url: string;
}

const root = new URL('..', import.meta.url).pathname;

function start(env: Record<string, string>): Promise<Started> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: root,
    env: { ...process.env, PORT: '0', LOG_LEVEL: 'info', ...env },
  });
  let output = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no listening line within 60 s:\n${output}`)), 60_000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      const match = /http:\/\/127\.0\.0\.1:\d+\/graphql/.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve({ child, output: () => output, url: match[0] });
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('exit', (code) => reject(new Error(`exited with ${code} before listening:\n${output}`)));
  });
}

function stop(started: Started): Promise<number | null> {
  return new Promise((resolve) => {
    // 'close', not 'exit': by then all its output is read, for the message of a failed expectation.
    started.child.once('close', (code) => resolve(code));
    started.child.kill('SIGTERM');
  });
}

/** `{ viewer }` over a connection of its own (no keep-alive), so that a cluster may hand it to any worker. */
function viewerRole(url: string, token: string, headers: Record<string, string> = {}): Promise<unknown> {
  const body = JSON.stringify({ query: 'query WhoAmI { viewer { role tenant } }' });
  return new Promise((resolve, reject) => {
    const request = http.request(
      url,
      { method: 'POST', agent: false, headers: { 'content-type': 'application/json', authorization: `Bearer ${token}`, ...headers } },
      (response) => {
        let text = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => (text += chunk));
        response.on('end', () => resolve(JSON.parse(text)));
        response.on('error', reject);
      },
    );
    request.on('error', reject);
    request.end(body);
  });
}

// Each start of a fresh embedded database runs initdb: slow on a busy machine.
describe('npm start', { timeout: 120_000 }, () => {
  let dataDir: string;
  let db: TestDatabase | undefined;
  let env: Record<string, string>;

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'statehouse-start-'));
    env = { STATEHOUSE_DATA_DIR: dataDir };
    if (process.env.TEST_DATABASE_URL) {
      db = await createTestDatabase();
      env.DATABASE_URL = db.url ?? '';
    }
  });
  afterAll(async () => {
    await db?.drop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('prints a working admin token once, restarts as a no-op, and stops cleanly on SIGTERM', async () => {
    const first = await start(env);
    // A first start says what takes its time before it is ready.
    const opening = process.env.TEST_DATABASE_URL ? /opening the database/ : /creating the embedded database \(first start only/;
    expect(first.output().search(opening), first.output()).toBeGreaterThanOrEqual(0);
    expect(first.output().search(opening)).toBeLessThan(first.output().search(/applying migrations/));
    const token = /sh_[A-Za-z0-9_-]{43}/.exec(first.output())?.[0];
    expect(token, first.output()).toBeDefined();
    expect(await viewerRole(first.url, token ?? '')).toEqual({ data: { viewer: { role: 'ADMIN', tenant: 'default' } } });
    expect(await stop(first), first.output()).toBe(0);
    expect(first.output()).toMatch(/shutting down/);

    const second = await start(env);
    expect(second.output()).not.toMatch(/sh_[A-Za-z0-9_-]{43}/);
    expect(second.output()).toMatch(/opening the database/);
    expect(await viewerRole(second.url, token ?? '')).toEqual({ data: { viewer: { role: 'ADMIN', tenant: 'default' } } });
    expect(await stop(second), second.output()).toBe(0);
  });

  it('uses STATEHOUSE_ADMIN_TOKEN when it is set and prints no token', async () => {
    const chosen = 'my-own-admin-token-for-tests';
    const started = await start({ ...env, STATEHOUSE_ADMIN_TOKEN: chosen });
    expect(started.output()).not.toMatch(/sh_[A-Za-z0-9_-]{43}/);
    expect(await viewerRole(started.url, chosen)).toEqual({ data: { viewer: { role: 'ADMIN', tenant: 'default' } } });
    expect(await stop(started), started.output()).toBe(0);
  });

  it('serves /metrics, with operation names when STATEHOUSE_METRICS_OPERATION_NAMES=true, and none when STATEHOUSE_METRICS=false', async () => {
    const token = 'metrics-admin-token-for-tests';
    const named = await start({ ...env, STATEHOUSE_ADMIN_TOKEN: token, STATEHOUSE_METRICS_OPERATION_NAMES: 'true' });
    const metricsUrl = named.url.replace(/\/graphql$/, '/metrics');
    await fetch(named.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify({ query: 'query StartupCheck { viewer { role } }' }),
    });
    const scraped = await fetch(metricsUrl);
    expect(scraped.status).toBe(200);
    expect(await scraped.text()).toContain('operationName="StartupCheck"');
    expect(await stop(named), named.output()).toBe(0);

    const off = await start({ ...env, STATEHOUSE_ADMIN_TOKEN: token, STATEHOUSE_METRICS: 'false' });
    expect((await fetch(off.url.replace(/\/graphql$/, '/metrics'))).status).toBe(404);
    expect(await stop(off), off.output()).toBe(0);
  });

  it('compacts history as often as STATEHOUSE_COMPACT_INTERVAL_MS says', async () => {
    const token = 'compaction-admin-token-for-tests';
    const started = await start({ ...env, STATEHOUSE_ADMIN_TOKEN: token, STATEHOUSE_COMPACT_INTERVAL_MS: '200' });
    const gql = async (query: string) =>
      (await (
        await fetch(started.url, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
          body: JSON.stringify({ query }),
        })
      ).json()) as { data?: any; errors?: { extensions?: { code?: string } }[] };
    await gql('mutation { createNamespace(input: { name: "brief", historyLimit: 1 }) { name } }');
    const first = await gql('mutation { setEntry(input: { namespace: "brief", key: "k", value: 1 }) { revision } }');
    await gql('mutation { setEntry(input: { namespace: "brief", key: "k", value: 2 }) { revision } }');
    const before = String(BigInt(first.data.setEntry.revision) - 1n);
    // Replaying the feed from before the removed change is refused only once compaction has run.
    const deadline = Date.now() + 10_000;
    let answer = await gql(`{ changes(namespace: "brief", afterRevision: "${before}") { nodes { revision } } }`);
    while (!answer.errors && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      answer = await gql(`{ changes(namespace: "brief", afterRevision: "${before}") { nodes { revision } } }`);
    }
    expect(answer.errors?.[0]?.extensions?.code).toBe('REVISION_COMPACTED');
    expect(await stop(started), started.output()).toBe(0);
  });

  it.runIf(process.env.TEST_DATABASE_URL)(
    'runs STATEHOUSE_WORKERS processes on one port: metrics summed, a dead one replaced, all stopped on SIGTERM',
    async () => {
      const token = 'workers-admin-token-for-tests';
      const started = await start({
        ...env,
        STATEHOUSE_ADMIN_TOKEN: token,
        STATEHOUSE_WORKERS: '2',
        STATEHOUSE_METRICS_OPERATION_NAMES: 'true',
      });
      expect(started.output()).toMatch(/listening on http:\/\/127\.0\.0\.1:\d+\/graphql \(2 worker processes\)/);
      const workers = () => [...started.output().matchAll(/"worker":(\d+),"msg":"worker listening"/g)].map((match) => Number(match[1]));
      // Each worker logs from its own process: its line may reach the pipe after the primary's.
      const listening = async (count: number) => {
        const deadline = Date.now() + 30_000;
        while (workers().length < count && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
        expect(workers()).toHaveLength(count);
      };
      await listening(2);
      expect(new Set(workers()).size).toBe(2);
      // A new connection for each request: the primary hands connections to the workers in turn.
      for (let i = 0; i < 10; i++) expect(await viewerRole(started.url, token, { connection: 'close' })).toMatchObject({ data: {} });
      const scraped = await (await fetch(started.url.replace(/\/graphql$/, '/metrics'))).text();
      expect(scraped).toMatch(/graphql_envelop_request\{operationType="query",operationName="WhoAmI",outcome="success"\} 10\n/);
      // The workers share one gateway's pool of PostgreSQL connections: 10 each, not 20.
      expect(scraped).toMatch(/\nstatehouse_db_pool_max_connections 20\n/);

      const [victim] = workers();
      process.kill(victim ?? 0, 'SIGKILL');
      await listening(3);
      expect(started.output()).toMatch(/a worker process exited; starting another/);
      for (let i = 0; i < 4; i++) expect(await viewerRole(started.url, token, { connection: 'close' })).toMatchObject({ data: {} });

      expect(await stop(started), started.output()).toBe(0);
      expect(started.output().match(/"msg":"stopped"/g)).toHaveLength(3);
    },
  );

  it('runs a worker per core by default on PostgreSQL, and one process on the embedded database', async () => {
    const started = await start({ ...env, STATEHOUSE_ADMIN_TOKEN: 'default-workers-admin-token' });
    const cores = availableParallelism();
    if (process.env.TEST_DATABASE_URL && cores > 1) {
      expect(started.output()).toMatch(new RegExp(`listening on http://127\\.0\\.0\\.1:\\d+/graphql \\(${cores} worker processes\\)`));
    } else {
      expect(started.output()).toMatch(/Statehouse is listening on http:\/\/127\.0\.0\.1:\d+\/graphql"/);
      expect(started.output()).not.toMatch(/worker/);
    }
    expect(await viewerRole(started.url, 'default-workers-admin-token')).toMatchObject({ data: { viewer: { role: 'ADMIN' } } });
    expect(await stop(started), started.output()).toBe(0);
  });

  it('refuses a bad configuration with a clear message', async () => {
    if (!process.env.TEST_DATABASE_URL) {
      await expect(start({ ...env, STATEHOUSE_WORKERS: '2' })).rejects.toThrow(/STATEHOUSE_WORKERS must be 1 on the embedded database/);
    }
    await expect(start({ ...env, STATEHOUSE_COMPACT_INTERVAL_MS: '5' })).rejects.toThrow(
      /STATEHOUSE_COMPACT_INTERVAL_MS must be an integer from 100/,
    );
    await expect(start({ ...env, PORT: 'eighty' })).rejects.toThrow(/PORT must be an integer/);
    await expect(start({ ...env, STATEHOUSE_METRICS: 'sometimes' })).rejects.toThrow(/STATEHOUSE_METRICS must be true or false/);
  });
});
