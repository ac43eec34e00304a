import { mkdirSync } from 'node:fs';
import { PGlite, types } from '@electric-sql/pglite';
import { fillPlaceholders, type SQL } from 'drizzle-orm';
import { type PgDatabase, PgDialect, type PgQueryResultHKT } from 'drizzle-orm/pg-core';
import { drizzle as drizzlePglite } from 'drizzle-orm/pglite';
import { drizzle as drizzlePostgres } from 'drizzle-orm/postgres-js';
import postgres from 'postgres';
import * as schema from './schema.js';

export type Database = PgDatabase<PgQueryResultHKT, typeof schema>;

/** A message between gateway processes sharing one database (PostgreSQL LISTEN/NOTIFY). */
export type Broadcast = (payload: string) => Promise<void>;

/** What the handle's queries are doing now, read by the metrics on demand. */
export interface DatabaseLoad {
  /** Statements outside a transaction, started and not yet answered. */
  statements: number;
  /** Transactions begun and not yet committed or rolled back (each holds a connection throughout). */
  transactions: number;
  /** Connections the pool may open; PGlite runs one statement at a time: 1. */
  readonly maxConnections: number;
}

/** What a service or store needs of the database to run its statements: a stand-in needs only these. */
export type Statements = Pick<DatabaseHandle, 'rows' | 'prepare' | 'transaction'>;

/** Told how long each statement or transaction took, from the call to its answer (waiting for a connection included). */
export type QueryObserver = (kind: 'statement' | 'transaction', seconds: number) => void;

export interface DatabaseHandle {
  db: Database;
  kind: 'postgres' | 'pglite';
  readonly load: DatabaseLoad;
  /** Adds an observer of query durations (the metrics); returns its removal. */
  observeQueries(observer: QueryObserver): () => void;
  /** The PostgreSQL URL; undefined on PGlite. */
  url?: string;
  /** Runs raw SQL and returns its rows, the same shape on both drivers. */
  rows<T>(query: SQL): Promise<T[]>;
  /**
   * Compiles a hot query once: each call then only fills its `sql.placeholder()`s, instead of
   * building the SQL text again (as `rows` does per call).
   */
  prepare<T>(query: SQL): (values: Record<string, unknown>) => Promise<T[]>;
  /** Runs `work` in one transaction; it commits when `work` resolves and rolls back when it throws. */
  transaction<T>(work: (rows: <R>(query: SQL) => Promise<R[]>) => Promise<T>): Promise<T>;
  /**
   * Subscribes to messages from other processes; `onConnect` runs on every (re)connection, when
   * messages may have been missed. Undefined on PGlite, which only ever has one process.
   */
  listen?: (onMessage: (payload: string) => void, onConnect: () => void) => Promise<void>;
  broadcast?: Broadcast;
  ping(): Promise<void>;
  close(): Promise<void>;
}

const CHANNEL = 'statehouse';
const dialect = new PgDialect();

export interface OpenDatabaseOptions {
  databaseUrl: string | undefined;
  /** PGlite data directory; `memory://` keeps it in memory (tests). */
  dataDir: string;
  /** Pool size for PostgreSQL. */
  maxConnections?: number;
}

/** Counts a handle's statements and transactions and times them; the clock is read only while someone observes. */
class QueryMeter {
  readonly load: DatabaseLoad;
  private readonly observers = new Set<QueryObserver>();

  constructor(maxConnections: number) {
    this.load = { statements: 0, transactions: 0, maxConnections };
  }

  observe(observer: QueryObserver): () => void {
    this.observers.add(observer);
    return () => this.observers.delete(observer);
  }

  /** A statement outside a transaction, counted in `load`. */
  statement<T>(run: () => Promise<T>): Promise<T> {
    return this.track('statement', 'statements', run);
  }

  /** A statement inside a transaction: timed, but its connection is already counted by the transaction. */
  inner<T>(run: () => Promise<T>): Promise<T> {
    return this.track('statement', null, run);
  }

  transaction<T>(run: () => Promise<T>): Promise<T> {
    return this.track('transaction', 'transactions', run);
  }

  private track<T>(kind: 'statement' | 'transaction', counted: 'statements' | 'transactions' | null, run: () => Promise<T>): Promise<T> {
    const start = this.observers.size > 0 ? performance.now() : -1;
    let answer: Promise<T>;
    try {
      answer = run();
    } catch (error) {
      answer = Promise.reject(error);
    }
    if (counted) this.load[counted]++;
    return answer.finally(() => {
      if (counted) this.load[counted]--;
      if (start < 0) return;
      const seconds = (performance.now() - start) / 1_000;
      for (const observer of this.observers) observer(kind, seconds);
    });
  }
}

/** PostgreSQL connections one gateway opens at most; its workers share them (see workerPoolSize). */
export const POOL_SIZE = 20;

/** Each of `workers` processes of one gateway: its share of POOL_SIZE, at least 2. */
export const workerPoolSize = (workers: number): number => Math.max(2, Math.ceil(POOL_SIZE / workers));

export async function openDatabase(options: OpenDatabaseOptions): Promise<DatabaseHandle> {
  return options.databaseUrl ? openPostgres(options.databaseUrl, options.maxConnections ?? POOL_SIZE) : openPglite(options.dataDir);
}

function openPostgres(url: string, max: number): DatabaseHandle {
  const client = postgres(url, {
    max,
    onnotice: () => {},
    connection: { TimeZone: 'UTC', application_name: 'statehouse' },
  });
  const db = drizzlePostgres(client, { schema });
  const meter = new QueryMeter(max);
  // drizzle's execute() sends unnamed statements, so PostgreSQL would parse and plan every write's
  // CTE again each time; as named prepared statements (cached per connection) they are planned once.
  const run = <T>(on: postgres.Sql | postgres.TransactionSql, query: SQL) => {
    const { sql: text, params } = dialect.sqlToQuery(query);
    return on.unsafe(text, params as postgres.ParameterOrJSON<never>[], { prepare: true }) as unknown as Promise<T[]>;
  };
  return {
    db,
    kind: 'postgres',
    url,
    load: meter.load,
    observeQueries: (observer) => meter.observe(observer),
    rows: <T>(query: SQL) => meter.statement(() => run<T>(client, query)),
    prepare: <T>(query: SQL) => {
      const { sql: text, params } = dialect.sqlToQuery(query);
      return (values) =>
        meter.statement(
          () =>
            client.unsafe(text, fillPlaceholders(params, values) as postgres.ParameterOrJSON<never>[], {
              prepare: true,
            }) as unknown as Promise<T[]>,
        );
    },
    transaction: (work) =>
      meter.transaction(() => client.begin((tx) => work(<R>(query: SQL) => meter.inner(() => run<R>(tx, query)))) as Promise<never>),
    listen: async (onMessage, onConnect) => {
      await client.listen(CHANNEL, onMessage, onConnect);
    },
    broadcast: async (payload) => {
      await client.notify(CHANNEL, payload);
    },
    ping: async () => {
      await client`select 1`;
    },
    close: () => client.end({ timeout: 5 }),
  };
}

/** Rows as drizzle's PGlite driver returns them (times as text), for prepared queries. */
const PGLITE_ROWS = {
  rowMode: 'object' as const,
  parsers: Object.fromEntries(
    [types.TIMESTAMP, types.TIMESTAMPTZ, types.INTERVAL, types.DATE].map((type) => [type, (value: string) => value]),
  ),
};

async function openPglite(dataDir: string): Promise<DatabaseHandle> {
  if (!dataDir.startsWith('memory://')) mkdirSync(dataDir, { recursive: true });
  const client = await PGlite.create(dataDir);
  await client.exec(`SET TimeZone = 'UTC'`);
  const db = drizzlePglite(client, { schema });
  const meter = new QueryMeter(1);
  return {
    db,
    kind: 'pglite',
    load: meter.load,
    observeQueries: (observer) => meter.observe(observer),
    rows: <T>(query: SQL) => meter.statement(async () => (await db.execute(query)).rows as T[]),
    prepare: <T>(query: SQL) => {
      const { sql: text, params } = dialect.sqlToQuery(query);
      return (values) => meter.statement(async () => (await client.query<T>(text, fillPlaceholders(params, values), PGLITE_ROWS)).rows);
    },
    transaction: (work) =>
      meter.transaction(() =>
        db.transaction((tx) => work(<R>(query: SQL) => meter.inner(async () => (await tx.execute(query)).rows as R[]))),
      ),
    ping: async () => {
      await client.query('select 1');
    },
    close: () => client.close(),
  };
}

/** The SQLSTATE of a database error, through drizzle's wrapping; undefined for other errors. */
export function sqlState(error: unknown): string | undefined {
  for (let cause = error; cause instanceof Error; cause = cause.cause) {
    const code = (cause as { code?: unknown }).code;
    if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) return code;
  }
  return undefined;
}
