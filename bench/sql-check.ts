/**
 * Guards bench/sql.ts against drift: renders the SQL that Statehouse's EntriesService, CommitService
 * and MetricsService send for the measured operations (with a recording stand-in for the database) and compares it, whitespace aside,
 * with the copies the bare server and the limit run. A mismatch does not fail the run, but every
 * reference number is then suspect, so it is printed and stored with the results.
 */
import { fillPlaceholders, type SQL } from 'drizzle-orm';
import { PgDialect } from 'drizzle-orm/pg-core';
import type { NamespaceSettings } from '../src/auth/access.js';
import type { Statements } from '../src/db/client.js';
import { DEFAULT_ACTIVE_WINDOW_SECONDS } from '../src/domain/values.js';
import { CommitService } from '../src/modules/entries/entries.commit.js';
import { ValuePolicy } from '../src/modules/entries/entries.policy.js';
import { EntriesService } from '../src/modules/entries/entries.service.js';
import { MetricsService } from '../src/modules/metrics/metrics.service.js';
import { defaultConfig } from '../src/modules/tenants/config.service.js';
import {
  type BenchDb,
  changesPage,
  commitSets,
  getEntry,
  headRevision,
  incrementEntry,
  listEntries,
  NAMESPACE,
  recordMetrics,
  SCOPE,
  setEntry,
  TENANT,
} from './sql.js';

const normalize = (text: string) => text.replace(/\s+/g, ' ').trim();

interface Statement {
  sql: string;
  params: unknown[];
}

const ROW = {
  namespace: NAMESPACE,
  scope: SCOPE,
  key: 'k',
  value: 1,
  version: 1,
  revision: '2',
  created_at: '2000-01-01T00:00:00Z',
  updated_at: '2000-01-01T00:00:00Z',
  updated_by: 'a',
  expires_at: null,
  watermark: '3',
};

/** Two sets for the commit (workload 6), two points for recordMetrics (workload 7): enough to show the arrays' shape. */
const COMMIT = [
  { key: 'a', value: { a: 1 } },
  { key: 'b', value: 2 },
];
const POINTS = [
  { name: 'latency', value: 1.5, unit: 'ms', tags: { worker: 'w1' } },
  { name: 'latency', value: 2 },
];

/** What Statehouse sends for the measured operations, in order, on PostgreSQL or PGlite. */
async function statehouseStatements(kind: BenchDb['kind']): Promise<Statement[]> {
  const dialect = new PgDialect();
  const sent: Statement[] = [];
  // Stand-ins with only what the services use: every statement answers the one row they all accept.
  const rows = async <T>(query: SQL): Promise<T[]> => {
    const { sql, params } = dialect.sqlToQuery(query);
    sent.push({ sql, params });
    return [ROW as T];
  };
  const prepare =
    <T>(query: SQL) =>
    async (values: Record<string, unknown>): Promise<T[]> => {
      const { sql, params } = dialect.sqlToQuery(query);
      sent.push({ sql, params: fillPlaceholders(params, values) });
      return [ROW as T];
    };
  const database: Statements = { rows, prepare, transaction: (work) => work(rows) };
  const settings: NamespaceSettings = {
    name: NAMESPACE,
    schema: null,
    defaultValue: null,
    defaultTtlSeconds: null,
    createdAt: new Date(),
    description: null,
    openAccess: true,
    sensitive: false,
    historyLimit: null,
    compactedRevision: null,
  };
  const access = {
    namespace: async () => settings,
    namespaces: async () => new Map([[NAMESPACE, settings]]),
    agentExists: async () => true,
  };
  const defaults = defaultConfig(DEFAULT_ACTIVE_WINDOW_SECONDS);
  const config = {
    get: async () => ({ ...defaults, limits: { ...defaults.limits, maxMetricsPerCall: 1_000 }, metricsRetentionHours: 24 }),
  };
  const bus = { publish: () => {}, on: () => () => {} };
  const policy = new ValuePolicy(database, config, null);
  const principal = { tenantId: TENANT, tokenId: 't', tokenName: 't', role: 'AGENT', agentId: 'bench-agent', bootstrap: false } as const;
  const service = new EntriesService(database, access, bus, policy);
  await service.set(principal, { namespace: NAMESPACE, key: 'k', value: { a: 1 } });
  await service.increment(principal, { namespace: NAMESPACE, key: 'k', by: 1 });
  await service.get(TENANT, { namespace: NAMESPACE, key: 'k' });
  await service.list(TENANT, { namespace: NAMESPACE, prefix: 'seed-012', first: 100 });
  await service.changesPage(TENANT, { after: { revision: '0' }, upTo: { revision: '9' }, namespaces: [NAMESPACE], limit: 500 });
  await service.changesPage(TENANT, {
    after: { revision: '1', namespace: NAMESPACE, scope: SCOPE, key: 'k' },
    upTo: { revision: '9' },
    namespaces: [NAMESPACE],
    limit: 500,
  });
  await service.headRevision(TENANT);
  await new CommitService(database, access, bus, policy).commit(principal, {
    operations: COMMIT.map(({ key, value }) => ({ set: { namespace: NAMESPACE, key, value } })),
  });
  await new MetricsService(database, access, config, bus).record(TENANT, principal.agentId, POINTS);
  return sent;
}

/** What bench/sql.ts sends for the same operations. */
async function benchStatements(kind: BenchDb['kind']): Promise<[string, Statement][]> {
  const sent: [string, Statement][] = [];
  let name = '';
  const db: BenchDb = {
    kind,
    query: async <T>(sql: string, params: unknown[] = []) => {
      sent.push([name, { sql, params }]);
      return [ROW] as T[];
    },
    exec: async () => {},
    transaction: (work) => work(db.query),
    close: async () => {},
  };
  const as = async (label: string, work: () => Promise<unknown>) => {
    name = label;
    await work();
  };
  await as('setEntry (SET_ENTRY)', () => setEntry(db, 'k', JSON.stringify({ a: 1 }), 'bench-agent'));
  await as('incrementEntry (INCREMENT_ENTRY)', () => incrementEntry(db, 'k', 1, 'bench-agent'));
  await as('entry (GET_ENTRY)', () => getEntry(db, 'k'));
  await as('entries (LIST_ENTRIES_PREFIX)', () => listEntries(db, 'seed-012', 100));
  await as('replay, first page (CHANGES_FIRST_PAGE)', () => changesPage(db, { revision: '0' }, '9', 500));
  await as('replay, next page (CHANGES_NEXT_PAGE)', () =>
    changesPage(db, { revision: '1', namespace: NAMESPACE, scope: SCOPE, key: 'k' }, '9', 500),
  );
  await as('feed head (HEAD_REVISION)', () => headRevision(db));
  const sets = COMMIT.map(({ key, value }) => ({ key, valueJson: JSON.stringify(value) }));
  await as('commit (COMMIT_LOCK, COMMIT_CURRENT, COMMIT_WRITE in turn)', () => commitSets(db, sets, 'bench-agent'));
  await as('recordMetrics (RECORD_METRICS)', () => recordMetrics(db, 'bench-agent', POINTS));
  return sent;
}

/** Problems found (empty: bench/sql.ts sends what Statehouse sends), on both backends. */
export async function checkSqlDrift(): Promise<string[]> {
  const problems: string[] = [];
  for (const kind of ['postgres', 'pglite'] as const) {
    let actual: Statement[];
    try {
      actual = await statehouseStatements(kind);
    } catch (error) {
      return [`could not render Statehouse's SQL to compare with bench/sql.ts: ${error instanceof Error ? error.message : String(error)}`];
    }
    const expected = await benchStatements(kind);
    expected.forEach(([name, mine], index) => {
      const theirs = actual[index];
      if (theirs === undefined) problems.push(`${name} (${kind}): Statehouse sent no statement here`);
      else if (normalize(theirs.sql) !== normalize(mine.sql)) {
        problems.push(`${name} (${kind}): the SQL differs; Statehouse now sends:\n    ${normalize(theirs.sql)}`);
      } else if (JSON.stringify(theirs.params) !== JSON.stringify(mine.params)) {
        problems.push(
          `${name} (${kind}): the parameters differ; Statehouse sends ${JSON.stringify(theirs.params)}, the bench ${JSON.stringify(mine.params)}`,
        );
      }
    });
    if (actual.length !== expected.length) {
      problems.push(`${kind}: Statehouse sent ${actual.length} statements where the bench expects ${expected.length}`);
    }
  }
  return problems;
}
