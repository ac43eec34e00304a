/**
 * The bare server: a minimal graphql-yoga server with Statehouse's operation shapes for the measured
 * workloads — no auth, no access rule, no validation, no change feed — whose resolvers run exactly the
 * SQL Statehouse runs (bench/sql.ts). It tells what the HTTP/GraphQL layer alone costs on this machine.
 * `entryChanged` is fed by an in-process pubsub from this server's own mutations (and replays from
 * the change log with Statehouse's replay SQL when given `afterRevision`).
 *
 *   BARE_DATABASE_URL=postgres://…  or  BARE_DATA_DIR=<PGlite directory>   PORT=0 HOST=127.0.0.1
 *   node --import tsx bench/bare-server.ts
 *
 * Prints one line "bare server listening on http://HOST:PORT/graphql"; stops on SIGTERM, SIGINT or
 * when its stdin closes (so it never outlives the bench).
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Repeater } from '@repeaterjs/repeater';
import { type ExecutionArgs, GraphQLScalarType } from 'graphql';
import { DateTimeResolver, JSONResolver } from 'graphql-scalars';
import { useServer } from 'graphql-ws/use/ws';
import { createSchema, createYoga } from 'graphql-yoga';
import { WebSocketServer } from 'ws';
import { openDatabase } from '../src/db/client.js';
import { migrate } from '../src/db/migrate.js';
import {
  type BenchDb,
  type ChangeRow,
  changesPage,
  commitSets,
  type EntryRow,
  getEntry,
  headRevision,
  incrementEntry,
  type LogPosition,
  listEntries,
  type MetricPoint,
  metricTotals,
  NAMESPACE,
  openPglite,
  openPostgres,
  REPLAY_PAGE,
  recordMetrics,
  setEntry,
} from './sql.js';

/** The actor Statehouse records for the bench's agent; the bare server writes the same. */
const ACTOR = 'bench-agent';

const typeDefs = /* GraphQL */ `
  scalar JSON
  scalar DateTime
  scalar Revision
  enum ChangeOp {
    SET
    DELETE
    EXPIRE
  }
  type Entry {
    namespace: String!
    scope: String!
    key: String!
    value: JSON
    version: Int!
    revision: Revision!
    createdAt: DateTime!
    updatedAt: DateTime!
    updatedBy: String
    expiresAt: DateTime
  }
  type EntryChange {
    revision: Revision!
    op: ChangeOp!
    namespace: String!
    scope: String!
    key: String!
    version: Int!
    value: JSON
    at: DateTime!
    actor: String
  }
  type PageInfo {
    hasNextPage: Boolean!
    endCursor: String
  }
  type EntryConnection {
    nodes: [Entry!]!
    pageInfo: PageInfo!
  }
  type CommitResult {
    revision: Revision!
    entries: [Entry!]!
  }
  type MetricSummary {
    name: String!
    count: Int!
    min: Float!
    max: Float!
  }
  input SetEntryInput {
    namespace: String!
    key: String!
    scope: String = "global"
    value: JSON!
  }
  input IncrementEntryInput {
    namespace: String!
    key: String!
    scope: String = "global"
    by: Float = 1
  }
  input OperationInput {
    set: SetEntryInput
  }
  input CommitInput {
    operations: [OperationInput!]!
  }
  input MetricInput {
    name: String!
    value: Float!
    unit: String
    tags: JSON
    at: DateTime
  }
  type Query {
    entry(namespace: String!, key: String!, scope: String = "global"): Entry
    entries(namespace: String!, prefix: String, first: Int = 100): EntryConnection!
    metricSummary(name: String!): [MetricSummary!]!
  }
  type Mutation {
    setEntry(input: SetEntryInput!): Entry!
    incrementEntry(input: IncrementEntryInput!): Entry!
    commit(input: CommitInput!): CommitResult!
    recordMetrics(metrics: [MetricInput!]!): Int!
  }
  type Subscription {
    entryChanged(namespace: String, keyPrefix: String, afterRevision: Revision): EntryChange!
  }
`;

interface Entry {
  namespace: string;
  scope: string;
  key: string;
  value: unknown;
  version: number;
  revision: string;
  createdAt: Date;
  updatedAt: Date;
  updatedBy: string | null;
  expiresAt: Date | null;
}

const toDate = (value: Date | string) => (value instanceof Date ? value : new Date(value));
const toEntry = (row: EntryRow): Entry => ({
  namespace: row.namespace,
  scope: row.scope,
  key: row.key,
  value: row.value,
  version: row.version,
  revision: row.revision,
  createdAt: toDate(row.created_at),
  updatedAt: toDate(row.updated_at),
  updatedBy: row.updated_by,
  expiresAt: row.expires_at === null ? null : toDate(row.expires_at),
});
const toChange = (entry: Entry): ChangeRow => ({
  revision: entry.revision,
  op: 'SET',
  namespace: entry.namespace,
  scope: entry.scope,
  key: entry.key,
  version: entry.version,
  value: entry.value,
  at: entry.updatedAt,
  actor: entry.updatedBy,
});

async function openDb(): Promise<BenchDb> {
  const url = process.env.BARE_DATABASE_URL;
  const dataDir = process.env.BARE_DATA_DIR;
  if (!url && !dataDir) throw new Error('set BARE_DATABASE_URL or BARE_DATA_DIR');
  // Migrated with Statehouse's own migrations (a no-op when they are applied already).
  const handle = await openDatabase({ databaseUrl: url, dataDir: dataDir ?? '' });
  await migrate(handle);
  if (handle.kind === 'pglite') return openPglite((handle.db as unknown as { $client: never }).$client);
  await handle.close();
  return openPostgres(url ?? '');
}

function fail(message: string): never {
  throw new Error(message);
}

const RevisionScalar = new GraphQLScalarType<string, string>({
  name: 'Revision',
  serialize: (value) => String(value),
  parseValue: (value) => String(value),
  parseLiteral: (ast) => ('value' in ast && typeof ast.value === 'string' ? ast.value : fail('a Revision is a decimal string')),
});

async function main(): Promise<void> {
  const db = await openDb();
  /** The in-process pubsub: every change this server writes goes to each live subscription. */
  const listeners = new Set<(change: ChangeRow) => void>();
  const publish = (change: ChangeRow) => {
    for (const listener of listeners) listener(change);
  };

  const checkNamespace = (namespace: string) => {
    if (namespace !== NAMESPACE) fail(`the bare server only serves namespace ${NAMESPACE}`);
  };

  const resolvers = {
    JSON: JSONResolver,
    DateTime: DateTimeResolver,
    Revision: RevisionScalar,
    Query: {
      entry: async (_: unknown, args: { namespace: string; key: string }) => {
        checkNamespace(args.namespace);
        const row = await getEntry(db, args.key);
        return row ? toEntry(row) : null;
      },
      entries: async (_: unknown, args: { namespace: string; prefix?: string | null; first?: number | null }) => {
        checkNamespace(args.namespace);
        if (!args.prefix) fail('the bare server needs a prefix');
        const { rows, hasNextPage } = await listEntries(db, args.prefix, args.first ?? 100);
        return { nodes: rows.map(toEntry), pageInfo: { hasNextPage, endCursor: null } };
      },
      // Only for the bench's check after workload 7 (count, min, max), not Statehouse's summary SQL.
      metricSummary: async (_: unknown, args: { name: string }) => {
        const totals = await metricTotals(db, args.name);
        return totals ? [{ name: args.name, ...totals }] : [];
      },
    },
    Mutation: {
      setEntry: async (_: unknown, { input }: { input: { namespace: string; key: string; value: unknown } }) => {
        checkNamespace(input.namespace);
        const row = await setEntry(db, input.key, JSON.stringify(input.value), ACTOR);
        if (!row) fail('nothing written');
        const entry = toEntry(row);
        publish(toChange(entry));
        return entry;
      },
      incrementEntry: async (_: unknown, { input }: { input: { namespace: string; key: string; by?: number | null } }) => {
        checkNamespace(input.namespace);
        const row = await incrementEntry(db, input.key, input.by ?? 1, ACTOR);
        if (!row) fail('not a number');
        const entry = toEntry(row);
        publish(toChange(entry));
        return entry;
      },
      commit: async (
        _: unknown,
        { input }: { input: { operations: { set?: { namespace: string; key: string; value: unknown } | null }[] } },
      ) => {
        const sets = input.operations.map(({ set }) => {
          if (!set) fail('the bare server only commits sets');
          checkNamespace(set.namespace);
          return { key: set.key, valueJson: JSON.stringify(set.value) };
        });
        const { revision, rows } = await commitSets(db, sets, ACTOR);
        if (revision === null) fail('nothing written');
        const entries = rows.map(toEntry);
        for (const entry of entries) publish(toChange(entry));
        return { revision, entries };
      },
      recordMetrics: async (_: unknown, args: { metrics: MetricPoint[] }) => recordMetrics(db, ACTOR, args.metrics),
    },
    Subscription: {
      entryChanged: {
        subscribe: (_: unknown, args: { namespace?: string | null; keyPrefix?: string | null; afterRevision?: string | null }) =>
          changes(args),
        resolve: (change: ChangeRow) => change,
      },
    },
  };

  /**
   * Replays from the log when asked (Statehouse's replay SQL, pages of 500), then live changes. A
   * Repeater, not an async generator: a generator waiting for a change that its filter drops would
   * not see its subscriber leave, and would go on receiving every change for nothing.
   */
  function changes(args: { namespace?: string | null; keyPrefix?: string | null; afterRevision?: string | null }) {
    if (args.namespace) checkNamespace(args.namespace);
    const matches = (change: ChangeRow) => !args.keyPrefix || change.key.startsWith(args.keyPrefix);
    return new Repeater<ChangeRow>(async (push, stop) => {
      let live = false;
      const buffered: ChangeRow[] = [];
      const listener = (change: ChangeRow) => {
        if (!matches(change)) return;
        if (live) void push(change);
        else buffered.push(change);
      };
      listeners.add(listener);
      let stopped = false;
      void stop.then(() => {
        stopped = true;
        listeners.delete(listener);
      });
      if (args.afterRevision !== null && args.afterRevision !== undefined) {
        const head = await headRevision(db);
        let after: LogPosition = { revision: args.afterRevision };
        while (!stopped) {
          const page = await changesPage(db, after, head, REPLAY_PAGE);
          for (const change of page) if (matches(change)) await push(change);
          const last = page.at(-1);
          if (!last || page.length < REPLAY_PAGE) break;
          after = { revision: last.revision, namespace: last.namespace, scope: last.scope, key: last.key };
        }
      }
      for (const change of buffered) await push(change);
      live = true;
      await stop;
    });
  }

  const schema = createSchema({ typeDefs, resolvers });

  const yoga = createYoga({ schema, graphqlEndpoint: '/graphql', landingPage: false, logging: false, graphiql: false });
  const server = createServer(yoga);
  const sockets = new WebSocketServer({ server, path: '/graphql' });
  const socketServer = useServer(
    {
      execute: (args) => (args.rootValue as { execute: (a: ExecutionArgs) => unknown }).execute(args) as never,
      subscribe: (args) => (args.rootValue as { subscribe: (a: ExecutionArgs) => unknown }).subscribe(args) as never,
      onSubscribe: async (ctx, _id, payload) => {
        const { schema, execute, subscribe, contextFactory, parse, validate } = yoga.getEnveloped({ ...ctx, params: payload });
        const args = {
          schema,
          operationName: payload.operationName,
          document: parse(payload.query),
          variableValues: payload.variables,
          contextValue: await contextFactory(),
          rootValue: { execute, subscribe },
        };
        const errors = validate(args.schema, args.document);
        return errors.length > 0 ? errors : args;
      },
    },
    sockets,
  );

  const host = process.env.HOST || '127.0.0.1';
  await new Promise<void>((resolve) => server.listen(Number(process.env.PORT ?? 0), host, resolve));
  const { port } = server.address() as AddressInfo;
  process.stdout.write(`bare server listening on http://${host}:${port}/graphql\n`);

  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    server.close();
    await socketServer.dispose();
    server.closeAllConnections();
    await db.close();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop());
  process.on('SIGINT', () => void stop());
  process.stdin.on('end', () => void stop());
  process.stdin.resume();
}

main().catch((error: unknown) => {
  process.stderr.write(`bare server failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
