/**
 * `npm run bench [-- --seconds N] [--connections 16,64] [--quick]`: Statehouse against the bare
 * server and the database's own limit, side by side (issue 4). See bench/README.md.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { cp, rm } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import postgres from 'postgres';
import { hostileDocuments } from './hostile.js';
import { createRequests, nodeForPostGraphile, type PeerRequests, preparePostGraphileTables, readRequests } from './postgraphile.js';
import { BenchFailure, httpLoad, loops, type Measurement } from './measure.js';
import { ROOT, type ServerProcess, startServer } from './processes.js';
import { formatTable, type ResultRow, type Report, withRatios, writeReport } from './report.js';
import { checkSqlDrift } from './sql-check.js';
import {
  type BenchDb,
  countChanges,
  countEntries,
  getEntry,
  type MetricTotals,
  metricTotals,
  NAMESPACE,
  openPglite,
  openPostgres,
  POOL_SIZE,
  seedChanges,
  seedEntries,
  seedGrowth,
} from './sql.js';
import { CLIENT_AGENTS, clientSetEntry } from './client.js';
import { closeAllSockets, fanout, memory, resume, resumeLimit, type SubscriptionTarget } from './subscriptions.js';
import {
  AGENT_ID,
  GROWTH_WORKLOADS,
  type HttpWorkload,
  isPending,
  type RunContext,
  type StoredEntry,
  type TargetName,
  WORKLOADS,
} from './workloads.js';

// ---------------------------------------------------------------------------------------------
// Options

interface Options {
  seconds: number;
  connections: number[];
  quick: boolean;
  /** --quick: load Statehouse and the bare server of a request workload at the same time. */
  targetsAtOnce: boolean;
  /** Before the measured runs, workloads 1 and 4 on every target (0: none, as in --quick). */
  warmupSeconds: number;
  /** Entries read by workloads 4 and 5. */
  seedEntries: number;
  resumeChanges: number;
  /** Entries in namespace bench for workload 11. */
  growthEntries: number;
  fanoutSubscribers: number;
  /** Fan-out: changes per second of the paced phase, and the size of the burst after it. */
  fanoutRate: number;
  fanoutBurst: number;
  idleSockets: number;
  /** Workload numbers to run (--only 1,4,8); undefined: all. */
  only?: Set<string>;
  /** Statehouse's STATEHOUSE_WORKERS (--workers); CPU per operation then sums every worker. */
  workers: number;
}

const USAGE = `usage: npm run bench [-- [--seconds N] [--connections 16,64] [--quick]]

  --seconds N          seconds per workload run (default 10; --quick: 1)
  --connections LIST   concurrent connections, comma-separated (default 16,64 on PostgreSQL, 16 on
                       PGlite; --quick: 16)
  --quick              smoke test: 1 s runs, 16 connections, 100 fan-out subscribers, 10,000 resume
                       changes, 100,000 growth entries, 100 idle sockets, no warm-up, and Statehouse
                       and the bare server measured at the same time in 1-7, 9, 10, 11 (not comparable)
  --fanout-rate N      changes per second of the paced fan-out phase (default 10 for 1,000 subscribers;
                       --quick: 100 for 100 subscribers)
  --workers N          Statehouse's worker processes (STATEHOUSE_WORKERS; default 1, as the bare
                       server is one process; PostgreSQL only)
  --only LIST          only these workloads, e.g. --only 1,4 (for profiling; 11 compares with 1 and 4
                       only when they ran too)

Without DATABASE_URL it runs on PGlite; with DATABASE_URL=postgres://… it creates (and drops) its own
database statehouse_bench_<random> on that server.`;

function parseOptions(argv: string[], kind: 'postgres' | 'pglite'): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      seconds: { type: 'string' },
      connections: { type: 'string' },
      quick: { type: 'boolean', default: false },
      only: { type: 'string' },
      'fanout-rate': { type: 'string' },
      workers: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  const quick = values.quick ?? false;
  const seconds = values.seconds === undefined ? (quick ? 1 : 10) : Number(values.seconds);
  if (!Number.isFinite(seconds) || seconds <= 0 || seconds > 3600)
    throw new UsageError(`--seconds must be a number of seconds, got ${values.seconds}`);
  // PGlite runs one statement at a time, so at 64 connections it only queues longer: by default it
  // runs at 16, which keeps its run within issue 4's ten minutes.
  const connections = (values.connections ?? (quick || kind === 'pglite' ? '16' : '16,64')).split(',').map((part) => Number(part.trim()));
  if (connections.length === 0 || connections.some((n) => !Number.isInteger(n) || n < 1 || n > 1000)) {
    throw new UsageError(`--connections must be a comma-separated list of integers from 1 to 1000, got ${values.connections}`);
  }
  const fanoutRate = values['fanout-rate'] === undefined ? (quick ? 100 : 10) : Number(values['fanout-rate']);
  if (!Number.isFinite(fanoutRate) || fanoutRate <= 0 || fanoutRate > 10_000)
    throw new UsageError(`--fanout-rate must be a positive number, got ${values['fanout-rate']}`);
  const workers = values.workers === undefined ? 1 : Number(values.workers);
  if (!Number.isInteger(workers) || workers < 1 || workers > 64)
    throw new UsageError(`--workers must be an integer from 1 to 64, got ${values.workers}`);
  if (workers > 1 && kind === 'pglite') throw new UsageError('--workers above 1 needs DATABASE_URL (PGlite serves one process)');
  return {
    seconds,
    connections,
    quick,
    workers,
    targetsAtOnce: quick,
    warmupSeconds: quick ? 0 : 1,
    seedEntries: 10_000,
    resumeChanges: quick ? 10_000 : 100_000,
    growthEntries: quick ? 100_000 : 1_000_000,
    fanoutSubscribers: quick ? 100 : 1_000,
    fanoutRate,
    fanoutBurst: 50,
    idleSockets: quick ? 100 : 1_000,
    only: values.only === undefined ? undefined : new Set(values.only.split(',').map((id) => id.trim())),
  };
}

class UsageError extends Error {}

// ---------------------------------------------------------------------------------------------
// Progress (stderr) and cleanup

const began = performance.now();
let lineOpen = false;

/** Starts a progress line; `done` ends it with a result. */
function step(message: string): void {
  if (lineOpen) process.stderr.write('\n');
  process.stderr.write(`[${((performance.now() - began) / 1000).toFixed(1).padStart(6)} s] ${message}`);
  lineOpen = true;
}

function done(result = 'done'): void {
  process.stderr.write(` … ${result}\n`);
  lineOpen = false;
}

function note(message: string): void {
  step(message);
  process.stderr.write('\n');
  lineOpen = false;
}

const cleanups: { name: string; run: () => unknown }[] = [];
let cleaning: Promise<void> | undefined;

function onCleanup(name: string, run: () => unknown): void {
  cleanups.push({ name, run });
}

/** Runs every registered cleanup, newest first, once; a failing one does not stop the others. */
function cleanupAll(): Promise<void> {
  cleaning ??= (async () => {
    for (let item = cleanups.pop(); item; item = cleanups.pop()) {
      const { name, run } = item;
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          Promise.resolve().then(run),
          new Promise((_, reject) => {
            timer = setTimeout(() => reject(new Error('timed out')), 30_000);
          }),
        ]);
      } catch (error) {
        process.stderr.write(`\ncleanup: ${name} failed: ${error instanceof Error ? error.message : String(error)}\n`);
      } finally {
        clearTimeout(timer);
      }
    }
  })();
  return cleaning;
}

for (const [signal, code] of [
  ['SIGINT', 130],
  ['SIGTERM', 143],
] as const) {
  // A terminal's Ctrl-C reaches this process twice (directly, and relayed by the tsx launcher): the
  // first signal starts the cleanup, repeats wait for it.
  process.on(signal, () => {
    if (cleaning) return;
    process.stderr.write(`\n${signal}: stopping the servers and cleaning up\n`);
    void cleanupAll().finally(() => process.exit(code));
  });
}

// ---------------------------------------------------------------------------------------------
// GraphQL over HTTP (setup, checks, writers)

/**
 * One GraphQL request over HTTP, on a connection of its own: a reused keep-alive connection can be
 * closed by the server just as a request goes out on it (more likely while this process is busy with
 * a thousand subscriber sockets), which would fail a write that never reached the server.
 */
function post(url: string, headers: Record<string, string>, body: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const request = http.request(
      url,
      {
        method: 'POST',
        agent: false,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...headers },
      },
      (response) => {
        let text = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => {
          text += chunk;
        });
        response.on('end', () => resolve({ status: response.statusCode ?? 0, text }));
        response.on('error', reject);
      },
    );
    request.on('error', reject);
    request.end(body);
  });
}

async function graphql<T = any>(
  url: string,
  headers: Record<string, string>,
  query: string,
  variables: Record<string, unknown> = {},
): Promise<T> {
  const response = await post(url, headers, JSON.stringify({ query, variables }));
  const text = response.text;
  let body: { data?: T; errors?: unknown[] };
  try {
    body = JSON.parse(text) as typeof body;
  } catch {
    throw new BenchFailure(`HTTP ${response.status} from ${url}: ${text.slice(0, 300)}`);
  }
  if (response.status !== 200 || body.errors?.length || !body.data) {
    throw new BenchFailure(`HTTP ${response.status} from ${url}: ${JSON.stringify(body.errors ?? body).slice(0, 300)}`);
  }
  return body.data;
}

const READ_QUERY = 'query($namespace: String!, $key: String!) { entry(namespace: $namespace, key: $key) { value version } }';
const METRIC_QUERY = 'query($name: String!) { metricSummary(name: $name) { count min max } }';
const WRITE_QUERY = 'mutation($input: SetEntryInput!) { setEntry(input: $input) { key version } }';

// ---------------------------------------------------------------------------------------------
// The run

/**
 * Statehouse's log level. The line naming its URL ("Statehouse is listening on …") is logged at info,
 * so with LOG_LEVEL=warn it is not printed at all; Statehouse logs nothing per request at info, so
 * this costs nothing measurable.
 */
const GATEWAY_LOG_LEVEL = 'info';

interface State {
  options: Options;
  kind: 'postgres' | 'pglite';
  adminToken: string;
  agentToken: string;
  statehouse?: ServerProcess;
  bare?: ServerProcess;
  /** The limit's database: SQL from this process (on PostgreSQL also used for seeding). */
  limitDb?: BenchDb;
  /** PostgreSQL: the bench database's URL. PGlite: the data directories. */
  databaseUrl?: string;
  dirs?: { statehouse: string; bare: string; limit: string };
  /** Changes in namespace bench right after seeding, and writes each target made since (probes). */
  seededChanges: number;
  writesSinceSeed: Record<TargetName, number>;
  growCount: number;
  entriesAtBase: number;
  entriesAtGrowth: number;
  rows: ResultRow[];
  /** Remarks for the results file, and their one-line versions for the terminal. */
  notes: string[];
  warnings: string[];
}

const TARGETS: TargetName[] = ['statehouse', 'bare', 'limit'];

function server(state: State, target: 'statehouse' | 'bare'): ServerProcess {
  const process = state[target];
  if (!process) throw new Error(`${target} is not running`);
  if (!process.alive()) throw new BenchFailure(`${process.name} exited unexpectedly:\n${process.tail()}`);
  return process;
}

const headersOf = (state: State, target: TargetName): Record<string, string> =>
  target === 'statehouse' ? { authorization: `Bearer ${state.agentToken}` } : {};

function reader(state: State, target: TargetName): (key: string) => Promise<StoredEntry | null> {
  if (target === 'limit') {
    return async (key) => {
      const row = await getEntry(limitDb(state), key);
      return row === null ? null : { value: row.value, version: row.version };
    };
  }
  return async (key) => {
    const data = await graphql<{ entry: StoredEntry | null }>(server(state, target).url, headersOf(state, target), READ_QUERY, {
      namespace: NAMESPACE,
      key,
    });
    return data.entry;
  };
}

function metricReader(state: State, target: TargetName): (name: string) => Promise<MetricTotals | null> {
  if (target === 'limit') return (name) => metricTotals(limitDb(state), name);
  return async (name) => {
    const data = await graphql<{ metricSummary: MetricTotals[] }>(server(state, target).url, headersOf(state, target), METRIC_QUERY, {
      name,
    });
    if (data.metricSummary.length > 1) throw new BenchFailure(`metricSummary(name: ${name}) answered ${data.metricSummary.length} rows`);
    return data.metricSummary[0] ?? null;
  };
}

function limitDb(state: State): BenchDb {
  if (!state.limitDb) throw new Error('the limit database is not open');
  return state.limitDb;
}

function subscriptionTarget(state: State, target: 'statehouse' | 'bare'): SubscriptionTarget {
  const running = server(state, target);
  const headers = headersOf(state, target);
  return {
    name: running.name,
    server: running,
    connectionParams: target === 'statehouse' ? { authorization: `Bearer ${state.agentToken}` } : {},
    ordered: target === 'statehouse',
    write: async (key, value) => {
      const data = await graphql<{ setEntry: { key: string } }>(running.url, headers, WRITE_QUERY, {
        input: { namespace: NAMESPACE, key, value },
      });
      if (data.setEntry?.key !== key) throw new BenchFailure(`setEntry of ${key} answered ${JSON.stringify(data)}`);
    },
  };
}

async function startStatehouse(state: State): Promise<void> {
  const database = state.kind === 'postgres' ? { DATABASE_URL: state.databaseUrl } : { STATEHOUSE_DATA_DIR: state.dirs?.statehouse ?? '' };
  // Extra node flags for profiling, e.g. BENCH_STATEHOUSE_NODE_OPTIONS="--cpu-prof --cpu-prof-dir=/tmp/prof".
  const nodeArgs = (process.env.BENCH_STATEHOUSE_NODE_OPTIONS ?? '').split(/\s+/).filter(Boolean);
  const started = await startServer(
    'Statehouse',
    'src/main.ts',
    {
      PORT: '0',
      HOST: '127.0.0.1',
      LOG_LEVEL: GATEWAY_LOG_LEVEL,
      STATEHOUSE_ADMIN_TOKEN: state.adminToken,
      STATEHOUSE_SHUTDOWN_GRACE_MS: '2000',
      STATEHOUSE_WORKERS: String(state.options.workers),
      ...database,
    },
    nodeArgs,
  );
  state.statehouse = started;
  onCleanup('stop Statehouse', () => started.stop());
}

async function startBare(state: State): Promise<void> {
  const database = state.kind === 'postgres' ? { BARE_DATABASE_URL: state.databaseUrl } : { BARE_DATA_DIR: state.dirs?.bare ?? '' };
  const started = await startServer('bare server', 'bench/bare-server.ts', { PORT: '0', HOST: '127.0.0.1', ...database });
  state.bare = started;
  onCleanup('stop the bare server', () => started.stop());
}

async function stopServers(state: State): Promise<void> {
  await Promise.all([state.statehouse?.stop(), state.bare?.stop()]);
  state.statehouse = undefined;
  state.bare = undefined;
}

/** The namespace and the agent whose token carries the load (so auth and the access rule are measured). */
async function setUpStatehouse(state: State): Promise<void> {
  const url = server(state, 'statehouse').url;
  const admin = { authorization: `Bearer ${state.adminToken}` };
  await graphql(url, admin, 'mutation($input: CreateNamespaceInput!) { createNamespace(input: $input) { name } }', {
    input: { name: NAMESPACE, description: 'statehouse bench' },
  });
  const data = await graphql<{ registerAgent: { token: string } }>(
    url,
    admin,
    'mutation($input: RegisterAgentInput!) { registerAgent(input: $input) { token } }',
    { input: { id: AGENT_ID, name: 'bench agent', type: 'bench', stateNamespaces: [NAMESPACE] } },
  );
  state.agentToken = data.registerAgent.token;
  const viewer = await graphql<{ viewer: { role: string; namespaces: { namespace: string; permission: string }[] } }>(
    url,
    headersOf(state, 'statehouse'),
    '{ viewer { role namespaces { namespace permission } } }',
  );
  const access = viewer.viewer.namespaces.find((entry) => entry.namespace === NAMESPACE);
  if (viewer.viewer.role !== 'AGENT' || access?.permission !== 'WRITE') {
    throw new BenchFailure(`the bench agent cannot write ${NAMESPACE}: ${JSON.stringify(viewer)}`);
  }
}

/** 10,000 entries to read and the changes to resume from. */
async function seed(state: State, db: BenchDb): Promise<void> {
  const { options } = state;
  await seedEntries(db, options.seedEntries);
  await seedChanges(db, options.resumeChanges);
  await db.exec('ANALYZE entries; ANALYZE changes');
  state.seededChanges = await countChanges(db);
  state.entriesAtBase = await countEntries(db);
}

/** PostgreSQL: a fresh database on the server of DATABASE_URL, dropped at the end. */
async function preparePostgres(state: State, serverUrl: string): Promise<void> {
  const name = `statehouse_bench_${randomBytes(6).toString('hex')}`;
  const admin = postgres(serverUrl, { max: 1, onnotice: () => {}, connect_timeout: 10 });
  onCleanup('close the admin connection', () => admin.end({ timeout: 5 }));
  step(`creating database ${name}`);
  await admin.unsafe(`CREATE DATABASE ${name}`);
  onCleanup(`drop database ${name}`, async () => {
    await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  });
  done();
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  state.databaseUrl = url.toString();

  step('starting Statehouse (npm start: node --import tsx src/main.ts)');
  await startStatehouse(state);
  done(state.statehouse?.url);
  step('setting up namespace bench and agent bench-agent through GraphQL');
  await setUpStatehouse(state);
  done();
  step('starting the bare server (bench/bare-server.ts)');
  await startBare(state);
  done(state.bare?.url);

  const db = openPostgres(state.databaseUrl, POOL_SIZE);
  state.limitDb = db;
  onCleanup('close the limit connections', () => db.close());
  step(
    `seeding ${state.options.seedEntries.toLocaleString('en-US')} entries and ${state.options.resumeChanges.toLocaleString('en-US')} changes`,
  );
  await seed(state, db);
  done();
}

/**
 * PGlite is one process only: Statehouse, the bare server and the limit each get their own data
 * directory. Statehouse creates and migrates its own; it is stopped for seeding, and the seeded
 * directory is copied for the other two, so all three start from the same data.
 */
async function preparePglite(state: State): Promise<void> {
  const base = mkdtempSync(join(os.tmpdir(), 'statehouse-bench-'));
  onCleanup(`remove ${base}`, () => rmSync(base, { recursive: true, force: true }));
  state.dirs = { statehouse: join(base, 'statehouse'), bare: join(base, 'bare'), limit: join(base, 'limit') };
  state.notes.push(
    'PGlite: Statehouse, the bare server and the limit each run on their own copy of the same seeded data (PGlite serves one process only).',
  );

  step('starting Statehouse on a new PGlite directory (npm start: node --import tsx src/main.ts)');
  await startStatehouse(state);
  done(state.statehouse?.url);
  step('setting up namespace bench and agent bench-agent through GraphQL');
  await setUpStatehouse(state);
  done();
  step('stopping Statehouse: PGlite serves one process, and the bench seeds its database next');
  await stopServers(state);
  done();
  step(
    `seeding ${state.options.seedEntries.toLocaleString('en-US')} entries and ${state.options.resumeChanges.toLocaleString('en-US')} changes`,
  );
  const db = await openPglite(state.dirs.statehouse);
  await seed(state, db);
  await db.close();
  const from = state.dirs.statehouse;
  await Promise.all([state.dirs.bare, state.dirs.limit].map((copy) => cp(from, copy, { recursive: true })));
  done();
  await startAllPglite(state);
}

async function startAllPglite(state: State): Promise<void> {
  step('starting Statehouse and the bare server, opening the limit database');
  const [, , db] = await Promise.all([startStatehouse(state), startBare(state), openPglite(state.dirs?.limit ?? '')]);
  state.limitDb = db;
  onCleanup('close the limit database', () => db.close());
  done();
}

/** One run of an HTTP workload against one target: autocannon for servers, loops for the limit. */
async function runHttp(
  state: State,
  workload: HttpWorkload,
  target: TargetName,
  connections: number,
  phase: string,
  seconds: number,
): Promise<Measurement> {
  const context: RunContext = {
    target,
    connections,
    tag: `${target}-${phase}-c${connections}`,
    reads: phase === 'growth' ? { kind: 'grow', count: state.growCount } : { kind: 'seed', count: state.options.seedEntries },
    read: reader(state, target),
    metricTotals: metricReader(state, target),
  };
  const label = `${workload.id} ${workload.title} on ${target} at ${connections} connections`;
  try {
    const run = await workload.start(context);
    let measured: Measurement;
    let problem: string | null | undefined;
    if (target === 'limit') {
      const db = limitDb(state);
      measured = await loops(connections, seconds, async () => {
        const plan = run.next();
        return run.check(await run.sql(db, plan), plan.expect);
      });
      problem = await run.finish?.(0);
    } else {
      const cpuBefore = server(state, target).cpuSeconds();
      const loaded = await httpLoad({
        url: server(state, target).url,
        headers: headersOf(state, target),
        query: workload.query,
        connections,
        seconds,
        next: run.next,
        check: run.check,
      });
      const cpuMicrosPerOp = ((server(state, target).cpuSeconds() - cpuBefore) * 1e6) / loaded.count;
      measured = { ...loaded, extra: { ...loaded.extra, cpuMicrosPerOp } };
      problem = await run.finish?.(connections);
    }
    if (problem) throw new BenchFailure(problem);
    if (workload.perRequest) {
      measured.extra = { ...measured.extra, requestsPerSecond: measured.value };
      measured.value *= workload.perRequest;
    }
    if (workload.unit) measured.unit = workload.unit;
    return measured;
  } catch (error) {
    const running = target === 'limit' ? undefined : state[target];
    if (running && !running.alive()) throw new BenchFailure(`${label}: ${running.name} exited:\n${running.tail()}`);
    throw new BenchFailure(`${label}: ${error instanceof Error ? error.message : String(error)}`);
  }
}

const brief = (m: Measurement) =>
  `${m.unit === 'bytes/socket' ? `${(m.value / 1024).toFixed(1)} KB/socket` : `${Math.round(m.value).toLocaleString('en-US')} ${m.unit}`}` +
  (m.extra?.requestsPerSecond !== undefined ? ` (${requestRate(m)})` : '') +
  (m.p50 !== undefined ? `, p50 ${m.p50.toFixed(2)} ms, p99 ${(m.p99 ?? 0).toFixed(2)} ms` : '');

/** Requests (or, for the limit, transactions) per second of a workload whose figure counts several things per request. */
const requestRate = (m: Measurement | undefined) => {
  const rate = Number(m?.extra?.requestsPerSecond);
  return Number.isFinite(rate) ? `${rate >= 100 ? Math.round(rate).toLocaleString('en-US') : rate.toFixed(1)} req/s` : '—';
};

/**
 * Measures `targets` for one row, one after the other with a progress line each — or, with
 * `--quick`, Statehouse and the bare server at the same time (then the limit, which on PGlite runs in
 * this process's thread). The first failure marks the row and ends the run.
 */
async function measureRow(
  state: State,
  row: ResultRow,
  label: string,
  targets: TargetName[],
  measure: (target: TargetName) => Promise<Measurement>,
  describe: (measured: Measurement) => string = brief,
): Promise<void> {
  const servers = targets.filter((target) => target !== 'limit');
  const groups = state.options.targetsAtOnce
    ? [servers, targets.filter((target) => target === 'limit')].filter((group) => group.length > 0)
    : targets.map((target) => [target]);
  for (const group of groups) {
    step(`${label} · ${group.join(' and ')}${group.length > 1 ? ' at once (--quick)' : ''}`);
    const results = await Promise.allSettled(group.map((target) => measure(target)));
    results.forEach((result, index) => {
      if (result.status === 'fulfilled') row[group[index] as TargetName] = result.value;
    });
    const failed = results.findIndex((result) => result.status === 'rejected');
    if (failed >= 0) {
      row.note = `FAILED on ${group[failed]}`;
      throw (results[failed] as PromiseRejectedResult).reason;
    }
    done(group.map((target) => (group.length > 1 ? `${target}: ` : '') + describe(row[target] as Measurement)).join('; '));
  }
}

async function warmUp(state: State): Promise<void> {
  if (state.options.warmupSeconds <= 0) return;
  const warm = GROWTH_WORKLOADS;
  for (const target of TARGETS) {
    step(`warming up ${target} (${warm.map((w) => w.id).join(', ')}; ${state.options.warmupSeconds} s each)`);
    for (const workload of warm)
      await runHttp(state, workload, target, state.options.connections[0] ?? 16, `warm${state.growCount}`, state.options.warmupSeconds);
    done();
  }
}

/** Workloads 1–7 at each connection count: Statehouse, then the bare server, then the limit. */
async function requestWorkloads(
  state: State,
  workloads: (HttpWorkload | { id: string; title: string; pending: string })[],
  phase: 'base' | 'growth',
  connectionCounts: number[],
): Promise<ResultRow[]> {
  const rows: ResultRow[] = [];
  for (const workload of workloads) {
    if (isPending(workload)) {
      const row: ResultRow = {
        id: workload.id,
        workload: workload.title,
        connections: null,
        status: 'not implemented',
        note: workload.pending,
      };
      state.rows.push(row);
      continue;
    }
    for (const connections of connectionCounts) {
      const row: ResultRow = {
        id: phase === 'growth' ? '11' : workload.id,
        of: workload.id,
        workload: phase === 'growth' ? `growth: ${workload.id} ${workload.title}` : workload.title,
        connections,
        status: 'failed',
      };
      state.rows.push(row);
      await measureRow(state, row, `${row.id} ${row.workload} · ${connections} connections`, TARGETS, (target) =>
        runHttp(state, workload, target, connections, phase, Math.max(state.options.seconds, workload.minSeconds ?? 0)),
      );
      row.status = 'ok';
      if (workload.perRequest) {
        row.note = `${workload.perRequest.toLocaleString('en-US')} per request: SH ${requestRate(row.statehouse)}, bare ${requestRate(row.bare)}, limit ${requestRate(row.limit)}`;
      }
      withRatios(row);
      rows.push(row);
    }
  }
  return rows;
}

async function memoryWorkload(state: State): Promise<void> {
  const count = state.options.idleSockets;
  const row: ResultRow = {
    id: '10',
    workload: `memory: RSS per idle subscribed socket`,
    connections: count,
    status: 'failed',
    lowerIsBetter: true,
  };
  state.rows.push(row);
  await measureRow(
    state,
    row,
    `10 memory · ${count} idle subscriptions`,
    ['statehouse', 'bare'],
    async (target) => {
      const measured = await memory(subscriptionTarget(state, target as 'statehouse' | 'bare'), count, state.options.quick ? 1_000 : 3_000);
      state.writesSinceSeed[target] += measured.probes;
      return measured;
    },
    (measured) => `${brief(measured)} (RSS ${mb(measured.extra?.rssBeforeBytes)} → ${mb(measured.extra?.rssAfterBytes)})`,
  );
  row.status = 'ok';
  row.note = count < 1_000 ? 'lower is better; RSS noise dominates below 1,000 sockets' : 'lower is better';
  withRatios(row);
}

const mb = (bytes: unknown) => `${(Number(bytes) / 1048576).toFixed(1)} MB`;

async function resumeWorkload(state: State): Promise<void> {
  const expectedFor = async (target: TargetName) =>
    state.kind === 'postgres' ? countChanges(limitDb(state)) : state.seededChanges + state.writesSinceSeed[target];
  const row: ResultRow = { id: '9', workload: 'resume: replay from afterRevision "0"', connections: 1, status: 'failed' };
  state.rows.push(row);
  const expected = new Map<TargetName, number>();
  for (const target of TARGETS) expected.set(target, await expectedFor(target));
  await measureRow(state, row, `9 resume · ${(expected.get('statehouse') ?? 0).toLocaleString('en-US')} changes`, TARGETS, (target) => {
    const count = expected.get(target) ?? 0;
    return target === 'limit'
      ? resumeLimit(limitDb(state), count)
      : resume(subscriptionTarget(state, target), count, Math.max(60, count / 1_000));
  });
  row.status = 'ok';
  row.note = `${(row.statehouse?.count ?? 0).toLocaleString('en-US')} changes`;
  withRatios(row);
}

async function fanoutWorkload(state: State): Promise<void> {
  const { fanoutSubscribers: subscribers, fanoutRate: rate, fanoutBurst: burst, seconds } = state.options;
  const paced: ResultRow = {
    id: '8',
    workload: `fan-out: ${rate} changes/s to every subscriber`,
    connections: subscribers,
    status: 'failed',
  };
  const burstRow: ResultRow = {
    id: '8',
    workload: `fan-out: ${burst} changes at once to every subscriber`,
    connections: subscribers,
    status: 'failed',
  };
  state.rows.push(paced, burstRow);
  for (const target of ['statehouse', 'bare'] as const) {
    step(`8 fan-out · ${subscribers} subscribers, ${rate} changes/s for ${seconds} s, then ${burst} at once · ${target}`);
    const measured = await fanout(subscriptionTarget(state, target), {
      subscribers,
      rate,
      seconds,
      burst,
      drainSeconds: Math.max(20, 3 * seconds),
    });
    state.writesSinceSeed[target] += measured.probes;
    paced[target] = measured.paced;
    burstRow[target] = measured.burst;
    const delay = (m: Measurement) => Number(m.extra?.benchLoopDelayP99Ms ?? 0).toFixed(0);
    done(
      `paced: ${brief(measured.paced)}; burst: ${brief(measured.burst)}; 0 lost ` +
        `(the bench's own event-loop delay p99: ${delay(measured.paced)} / ${delay(measured.burst)} ms)`,
    );
  }
  for (const row of [paced, burstRow]) {
    row.status = 'ok';
    row.note = `${(row.statehouse?.count ?? 0).toLocaleString('en-US')} deliveries, 0 lost; p50/p99: write → delivery`;
    withRatios(row);
  }
}

/** 14: setEntry through statehouse/client, 64 agents with a socket each (bench/client.ts), beside workload 1's HTTP. */
async function clientWorkload(state: State, baseRows: ResultRow[]): Promise<void> {
  const agents = CLIENT_AGENTS;
  const row: ResultRow = {
    id: '14',
    workload: `setEntry through the client (${agents} agents, one socket each)`,
    connections: agents,
    status: 'failed',
  };
  state.rows.push(row);
  await measureRow(state, row, `14 client · ${agents} agents`, ['statehouse', 'bare'], async (target) => {
    const running = server(state, target as 'statehouse' | 'bare');
    // CPU per write includes opening the sockets and the one unmeasured write each (a few percent of a run).
    const cpuBefore = running.cpuSeconds();
    const measured = await clientSetEntry(
      { url: running.url, token: target === 'statehouse' ? state.agentToken : 'bare', read: reader(state, target) },
      { agents, seconds: state.options.seconds, tag: `client-${target}` },
    );
    const cpuMicrosPerOp = ((running.cpuSeconds() - cpuBefore) * 1e6) / (measured.count ?? 1);
    measured.extra = { ...measured.extra, cpuMicrosPerOp };
    state.writesSinceSeed[target] += (measured.count ?? 0) + agents;
    return measured;
  });
  row.status = 'ok';
  // Workload 1 at the nearest number of connections: the same mutation over HTTP.
  const http = baseRows
    .filter((base) => base.id === '1' && base.statehouse)
    .sort((a, b) => Math.abs((a.connections ?? 0) - agents) - Math.abs((b.connections ?? 0) - agents))[0];
  row.note = http?.statehouse
    ? `vs 1 (HTTP) at ${http.connections} connections: SH ${((row.statehouse?.value ?? 0) / http.statehouse.value).toFixed(2)}×` +
      (http.bare && row.bare ? `, bare ${(row.bare.value / http.bare.value).toFixed(2)}×` : '')
    : 'p50/p99: one setEntry as the agent awaits it';
  withRatios(row);
}

/** 12: the worst delay each hostile document causes, as a probe request waits it out (bench/hostile.ts). */
async function hostileWorkload(state: State): Promise<void> {
  const seconds = Math.min(state.options.seconds, 3);
  const PROBE_ALONE = '(the probe alone)';
  const worst = { refused: 0, accepted: 0, probeAlone: 0 };
  note(
    `12 hostile documents · ${seconds} s each, one request at a time (no token, token, batch of 10, 10 at once on a socket), and a probe`,
  );
  await hostileDocuments(server(state, 'statehouse'), state.agentToken, seconds, ({ document, delay }) => {
    const cpu = delay.extra?.serverCpuMsPerDocument as number | undefined;
    const row: ResultRow = {
      id: '12',
      workload: `hostile: ${document}`,
      connections: 1,
      status: 'ok',
      statehouse: delay,
      lowerIsBetter: true,
      note:
        document === PROBE_ALONE
          ? `${delay.extra?.probes} probes; p50/p99: the probe`
          : `${(delay.count ?? 0).toLocaleString('en-US')} documents, server CPU ${cpu?.toFixed(2)} ms each; p50/p99: the probe`,
    };
    state.rows.push(row);
    const kind = document === PROBE_ALONE ? 'probeAlone' : document.startsWith('within the ceilings') ? 'accepted' : 'refused';
    worst[kind] = Math.max(worst[kind], delay.value);
    note(`12 ${document}: worst probe ${delay.value.toFixed(1)} ms, p99 ${(delay.p99 ?? 0).toFixed(1)} ms (${row.note})`);
  });
  state.notes.push(
    `12: the worst delay of a probe request while a hostile document was sent: ${worst.refused.toFixed(1)} ms for those of issue 14 (goal: under 50 ms), ` +
      `${worst.accepted.toFixed(1)} ms for the costliest within the ceilings; the probe alone: ${worst.probeAlone.toFixed(1)} ms.`,
  );
}

/**
 * 13: Statehouse against a peer, PostGraphile 5 (bench/postgraphile.ts), in the same run: workloads 1
 * and 4 beside their PostGraphile equivalents, one target after the other, at each connection count.
 * The `bare` column of these rows holds PostGraphile.
 */
async function peerWorkload(state: State): Promise<void> {
  const skip = (why: string) => {
    state.rows.push({ id: '13', workload: 'vs PostGraphile 5', connections: null, status: 'not implemented', note: why });
    note(`13 PostGraphile 5: skipped (${why})`);
  };
  if (state.kind !== 'postgres') return skip('PostgreSQL only: PostGraphile needs a PostgreSQL server');
  const node = nodeForPostGraphile();
  if (!node) return skip('PostGraphile needs Node.js 22 or later: npm install --prefix .node --no-save node@24');
  step('starting PostGraphile 5 (bench/postgraphile-server.ts) on tables of its own in the bench database');
  await preparePostGraphileTables(limitDb(state));
  const peer = await startServer(
    'PostGraphile',
    'bench/postgraphile-server.ts',
    { PGL_DATABASE_URL: state.databaseUrl, GRAPHILE_ENV: 'production' },
    [],
    90_000,
    node,
  );
  onCleanup('stop PostGraphile', () => peer.stop());
  done(peer.url);
  const seconds = state.options.seconds;
  const pairs: [HttpWorkload, (tag: string) => PeerRequests<any>][] = [
    [GROWTH_WORKLOADS[0] as HttpWorkload, createRequests],
    [GROWTH_WORKLOADS[1] as HttpWorkload, () => readRequests()],
  ];
  const warmup = state.options.warmupSeconds;
  if (warmup > 0) {
    step(`warming up Statehouse and PostGraphile (1, 4 and their equivalents; ${warmup} s each)`);
    for (const [workload, requestsFor] of pairs) {
      await runHttp(state, workload, 'statehouse', state.options.connections[0] ?? 16, 'peer-warm', warmup);
      await httpLoad({
        url: peer.url,
        headers: {},
        connections: state.options.connections[0] ?? 16,
        seconds: warmup,
        ...requestsFor('pgl-warm'),
      });
    }
    done();
  }
  for (const [workload, requestsFor] of pairs) {
    for (const connections of state.options.connections) {
      const requests = requestsFor(`pgl-c${connections}`);
      const label = `13 ${workload.title} vs PostGraphile ${requests.title} · ${connections} connections`;
      step(label);
      const statehouse = await runHttp(state, workload, 'statehouse', connections, 'peer', seconds);
      const cpuBefore = peer.cpuSeconds();
      const loaded = await httpLoad({ url: peer.url, headers: {}, connections, seconds, ...requests }).catch((error: unknown) => {
        if (!peer.alive()) throw new BenchFailure(`${label}: PostGraphile exited:\n${peer.tail()}`);
        throw new BenchFailure(`${label}: PostGraphile: ${error instanceof Error ? error.message : String(error)}`);
      });
      const cpuMicrosPerOp = ((peer.cpuSeconds() - cpuBefore) * 1e6) / loaded.count;
      const row = withRatios({
        id: '13',
        workload: `${workload.title} vs PostGraphile`,
        connections,
        status: 'ok',
        statehouse,
        bare: { ...loaded, extra: { cpuMicrosPerOp } },
        note: `bare column: PostGraphile 5 ${requests.title} (Amber preset, change row by trigger)`,
      });
      state.rows.push(row);
      done(`Statehouse ${brief(statehouse)}; PostGraphile ${brief(row.bare as Measurement)}; ${row.ratioBare?.toFixed(2)}×`);
    }
  }
}

/**
 * How many `grow-…` entries to add to a namespace holding `count`: up to the growth total, but at
 * least a tenth of it, for workload 4's reads to pick from — commits (workload 6) may already have
 * brought the table near the total.
 */
const growthToSeed = (state: State, count: number) =>
  Math.max(state.options.growthEntries - count, Math.round(state.options.growthEntries / 10));

async function growth(state: State, baseRows: ResultRow[]): Promise<void> {
  const total = state.options.growthEntries;
  if (state.kind === 'postgres') {
    const db = limitDb(state);
    state.growCount = growthToSeed(state, await countEntries(db));
    step(
      `11 growth · seeding ${state.growCount.toLocaleString('en-US')} entries (generate_series), for at least ${total.toLocaleString('en-US')} in all`,
    );
    await seedGrowth(db, state.growCount);
    state.entriesAtGrowth = await countEntries(db);
    done();
  } else {
    // A server's database can only be written while it is stopped: the bench adds the entries to the
    // limit's database (which began as a copy of Statehouse's, agent and token included) while the
    // servers still run, then copies it over theirs and starts them again.
    const dirs = state.dirs;
    if (!dirs) throw new Error('no PGlite directories');
    state.growCount = growthToSeed(state, await countEntries(limitDb(state)));
    step(`11 growth · seeding ${state.growCount.toLocaleString('en-US')} entries (generate_series) into the limit's database`);
    await seedGrowth(limitDb(state), state.growCount);
    state.entriesAtGrowth = await countEntries(limitDb(state));
    done();
    step("11 growth · stopping the servers, copying the limit's database over theirs");
    await Promise.all([stopServers(state), state.limitDb?.close()]);
    state.limitDb = undefined;
    await Promise.all(
      [dirs.statehouse, dirs.bare].map(async (copy) => {
        await rm(copy, { recursive: true, force: true });
        await cp(dirs.limit, copy, { recursive: true });
      }),
    );
    done();
    await startAllPglite(state);
    await warmUp(state);
  }
  // At the first connection count only: growth asks what the table's size costs, which 1 and 4 at
  // every count then tell apart from concurrency; the other counts would add a minute to the run.
  const rows = await requestWorkloads(state, GROWTH_WORKLOADS, 'growth', state.options.connections.slice(0, 1));
  for (const row of rows) {
    const base = baseRows.find((candidate) => candidate.of === row.of && candidate.connections === row.connections);
    const change = (target: TargetName) => {
      const before = base?.[target]?.value;
      const after = row[target]?.value;
      if (!before || after === undefined) return '—';
      const percent = (after / before - 1) * 100;
      return `${percent >= 0 ? '+' : '−'}${Math.abs(percent).toFixed(0)}%`;
    };
    row.workload = `${row.workload} @ ${state.entriesAtGrowth.toLocaleString('en-US')} entries`;
    row.note = `vs ${state.entriesAtBase.toLocaleString('en-US')} entries: SH ${change('statehouse')}, bare ${change('bare')}, limit ${change('limit')}`;
  }
}

function machine(): Record<string, unknown> {
  const cpus = os.cpus();
  let commit: string | undefined;
  try {
    commit = execFileSync('git', ['describe', '--always', '--dirty'], {
      cwd: ROOT,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
  } catch {
    commit = undefined;
  }
  return {
    cpus: cpus.length,
    cpuModel: cpus[0]?.model,
    memoryBytes: os.totalmem(),
    platform: `${os.platform()} ${os.release()}`,
    node: process.version,
    commit,
  };
}

async function main(): Promise<number> {
  let options: Options;
  try {
    options = parseOptions(process.argv.slice(2), process.env.DATABASE_URL ? 'postgres' : 'pglite');
  } catch (error) {
    process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n\n${USAGE}\n`);
    return 2;
  }
  const startedAt = new Date();
  const serverUrl = process.env.DATABASE_URL || undefined;
  const state: State = {
    options,
    kind: serverUrl ? 'postgres' : 'pglite',
    adminToken: `bench-admin-${randomBytes(16).toString('hex')}`,
    agentToken: '',
    seededChanges: 0,
    writesSinceSeed: { statehouse: 0, bare: 0, limit: 0 },
    growCount: 0,
    entriesAtBase: 0,
    entriesAtGrowth: 0,
    rows: [],
    notes: [],
    warnings: [],
  };
  onCleanup('close sockets', () => closeAllSockets());
  const backend = serverUrl ? `PostgreSQL (${new URL(serverUrl).host})` : 'PGlite (embedded)';
  note(
    `Statehouse bench on ${backend}: ${options.seconds} s per run at ${options.connections.join(', ')} connections${options.quick ? ' (--quick)' : ''}${options.workers > 1 ? `, Statehouse in ${options.workers} worker processes` : ''}`,
  );

  let failure: string | undefined;
  try {
    // Meanwhile Statehouse starts: is bench/sql.ts still what Statehouse sends?
    const drift = checkSqlDrift();
    if (serverUrl) {
      await preparePostgres(state, serverUrl);
      const [version] = await limitDb(state).query<{ server_version: string }>('SHOW server_version');
      state.notes.push(`PostgreSQL ${version?.server_version}; the bench database is created for this run and dropped after it.`);
    } else {
      await preparePglite(state);
    }
    for (const problem of await drift) {
      state.notes.push(`WARNING: bench/sql.ts is not what Statehouse sends: ${problem}`);
      state.warnings.push(`WARNING: bench/sql.ts is not what Statehouse sends: ${problem.split('\n')[0]} (full text in the results file)`);
      note(state.warnings.at(-1) ?? '');
    }
    const wanted = (id: string) => options.only === undefined || options.only.has(id);
    if (wanted('10')) await memoryWorkload(state);
    if (wanted('9')) await resumeWorkload(state);
    const requests = WORKLOADS.filter((workload) => isPending(workload) || wanted(workload.id));
    if (requests.some((workload) => !isPending(workload))) await warmUp(state);
    const baseRows = await requestWorkloads(state, requests, 'base', options.connections);
    if (wanted('14')) await clientWorkload(state, baseRows);
    if (wanted('8')) await fanoutWorkload(state);
    if (wanted('12')) await hostileWorkload(state);
    if (wanted('13')) await peerWorkload(state);
    if (wanted('11')) await growth(state, baseRows);
  } catch (error) {
    const last = state.rows.at(-1);
    if (last?.status === 'failed') last.note ??= `FAILED on ${TARGETS.find((target) => !last[target]) ?? 'cleanup'}`;
    failure = error instanceof Error ? error.message : String(error);
    if (!(error instanceof BenchFailure) && error instanceof Error && error.stack) failure = error.stack;
    if (lineOpen) done('FAILED');
  }

  step('stopping servers and cleaning up');
  await cleanupAll();
  done();

  const rows = [...state.rows].sort((a, b) => Number(a.id) - Number(b.id));
  for (const pending of WORKLOADS.filter(isPending)) {
    if (!rows.some((row) => row.id === pending.id)) {
      rows.push({ id: pending.id, workload: pending.title, connections: null, status: 'not implemented', note: pending.pending });
    }
  }
  rows.sort((a, b) => Number(a.id) - Number(b.id));
  const finishedAt = new Date();
  const report: Report = {
    startedAt: startedAt.toISOString(),
    finishedAt: finishedAt.toISOString(),
    durationSeconds: (finishedAt.getTime() - startedAt.getTime()) / 1000,
    ok: failure === undefined,
    failure,
    backend: state.kind,
    options: { ...options, only: options.only && [...options.only] },
    machine: machine(),
    notes: state.notes,
    rows,
  };
  const file = writeReport(report);
  process.stdout.write(`\nStatehouse bench — ${backend}, ${options.seconds} s per run, ${report.durationSeconds.toFixed(0)} s in all\n\n`);
  process.stdout.write(`${formatTable(rows)}\n\n`);
  for (const line of state.notes) if (!line.startsWith('WARNING')) process.stdout.write(`${line}\n`);
  for (const line of state.warnings) process.stdout.write(`${line}\n`);
  process.stdout.write(
    "SH/bare and SH/limit: Statehouse's figure divided by the bare server's and the limit's (above 1: Statehouse is faster; for memory, lower is better).\n",
  );
  process.stdout.write(`Results: ${file}\n`);
  if (failure !== undefined) {
    process.stdout.write(`\nFAILED: ${failure}\n`);
    return 1;
  }
  return 0;
}

main().then(
  (code) => process.exit(code),
  async (error: unknown) => {
    process.stderr.write(`\nbench crashed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    await cleanupAll();
    process.exit(1);
  },
);
