import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type ExecutionArgs, GraphQLError } from 'graphql';
import { useServer } from 'graphql-ws/use/ws';
import { createYoga, useReadinessCheck } from 'graphql-yoga';
import { WebSocketServer } from 'ws';
import { AccessService } from './auth/access.js';
import { Authenticator } from './auth/authenticator.js';
import { authorizationOf, bearerToken } from './auth/tokens.js';
import { type Context, createContext, type Services } from './context.js';
import { useDashboard } from './dashboard/dashboard.plugin.js';
import type { DatabaseHandle } from './db/client.js';
import { EventBus } from './events/bus.js';
import { ProcessRegistry } from './events/processes.js';
import { PeriodicJobs } from './jobs.js';
import { ChangeFeeds } from './events/change-feed.js';
import { createMaskError, useRequestErrorCodes } from './graphql/errors.js';
import { schema } from './graphql/schema.js';
import type { Logger } from './logger.js';
import { AgentsService } from './modules/agents/agents.service.js';
import { CommitService } from './modules/entries/entries.commit.js';
import { EntryMaintenance } from './modules/entries/entries.maintenance.js';
import { EntriesService, type EntryChange } from './modules/entries/entries.service.js';
import { EntryWatcher } from './modules/entries/entries.watch.js';
import { ErrorsService } from './modules/errors/errors.service.js';
import { InsightsService } from './modules/insights/insights.service.js';
import { MetricsService } from './modules/metrics/metrics.service.js';
import { NamespacesService } from './modules/namespaces/namespaces.service.js';
import { OptimizationsService } from './modules/optimizations/optimizations.service.js';
import { PortabilityService } from './modules/portability/portability.service.js';
import { SystemService } from './modules/system/system.service.js';
import { ConfigService } from './modules/tenants/config.service.js';
import { TokensService } from './modules/tokens/tokens.service.js';

export interface AppOptions {
  database: DatabaseHandle;
  logger: Logger;
  activeWindowSeconds?: number;
  /** How long `stop` waits for in-flight requests before closing connections anyway. */
  shutdownGraceMs?: number;
  /** Browser origins allowed by CORS; none by default. */
  corsOrigins?: string[];
  /** Background jobs (TTL sweeper, history compaction); false turns them off. */
  maintenance?: MaintenanceOptions | false;
}

export interface MaintenanceOptions {
  /** How often expired entries are recorded as EXPIRE changes. @default 1000 */
  sweepIntervalMs?: number;
  /** How often history beyond a namespace's historyLimit is compacted. @default 30000 */
  compactIntervalMs?: number;
  /** How often metric points and error occurrences past the tenant's retention are deleted. @default 60000 */
  retentionIntervalMs?: number;
}

export interface App {
  services: Services;
  /** The background jobs; tests and operators may run a step at once. */
  maintenance: EntryMaintenance;
  /** The Fetch API handler: tests call it in-process. */
  fetch: (input: string | URL | Request, init?: RequestInit) => Promise<Response>;
  start(port: number, host: string): Promise<{ url: string; port: number }>;
  stop(): Promise<void>;
}

function createServices(database: DatabaseHandle, bus: EventBus, logger: Logger, activeWindowSeconds: number) {
  const access = new AccessService(database, bus);
  const entries = new EntriesService(database, access, bus);
  const config = new ConfigService(database, bus, activeWindowSeconds);
  const feeds = new ChangeFeeds<EntryChange>(
    {
      head: (tenantId) => entries.headRevision(tenantId),
      page: (tenantId, after, limit) => entries.changesPage(tenantId, { after, namespaces: null, limit }),
    },
    bus,
    logger,
  );
  const services: Services = {
    bus,
    authenticator: new Authenticator(database, bus),
    access,
    entries,
    commits: new CommitService(database, access, bus),
    watcher: new EntryWatcher(entries, access, feeds, bus),
    namespaces: new NamespacesService(database, access, bus),
    agents: new AgentsService(database, bus, config),
    tokens: new TokensService(database, bus),
    config,
    system: new SystemService(database, config),
    portability: new PortabilityService(database, access, bus),
    metrics: new MetricsService(database, access, config, bus),
    errors: new ErrorsService(database, bus, config),
    insights: new InsightsService(database, bus),
    optimizations: new OptimizationsService(database),
  };
  return { services, feeds };
}

/** The gateway: GraphQL over HTTP, SSE and WebSocket on one port, with health and readiness. */
export async function buildApp(options: AppOptions): Promise<App> {
  const { database, logger } = options;
  const processes = database.broadcast ? new ProcessRegistry(database, logger) : undefined;
  await processes?.join();
  const bus = new EventBus(database.broadcast, logger, processes);
  const { services, feeds } = createServices(database, bus, logger, options.activeWindowSeconds ?? 300);
  const maintenance = new EntryMaintenance(database, bus);
  const jobs = new PeriodicJobs(logger);
  if (options.maintenance !== false) {
    const every = options.maintenance ?? {};
    jobs.every(every.sweepIntervalMs ?? 1_000, 'ttlSweep', () => maintenance.sweep());
    jobs.every(every.compactIntervalMs ?? 30_000, 'historyCompaction', () => maintenance.compact());
    jobs.every(every.retentionIntervalMs ?? 60_000, 'retention', async () => {
      return (await services.metrics.removeExpired()) + (await services.errors.removeExpired());
    });
  }
  await database.listen?.(
    (payload) => bus.receive(payload),
    () => {
      // Messages may have been missed while the connection was down: trust no cache, read the log again.
      void bus.publish({ type: 'reset' });
      feeds.wakeAll();
    },
  );
  void bus.publish({ type: 'hello' });

  const yoga = createYoga<{ connectionParams?: Record<string, unknown> }, Context>({
    schema,
    graphqlEndpoint: '/graphql',
    healthCheckEndpoint: '/health',
    landingPage: false,
    // Closed unless origins are configured: a token-bearing API should not answer any web page.
    cors: options.corsOrigins?.length ? { origin: options.corsOrigins, credentials: false } : false,
    logging: false,
    maskedErrors: { maskError: createMaskError(logger) },
    graphiql: {
      title: 'Statehouse',
      // SSE carries the Authorization header set in GraphiQL's Headers tab; a socket would not.
      subscriptionsProtocol: 'SSE',
      defaultQuery:
        '# Set the header {"Authorization": "Bearer <token>"} below, then:\n{\n  viewer {\n    tenant\n    role\n    namespaces { namespace permission }\n  }\n}\n',
    },
    context: ({ request, connectionParams }) => createContext(services, connectionParams ? { connectionParams } : { request }),
    plugins: [
      useDashboard(),
      useRequestErrorCodes(),
      useReadinessCheck({
        endpoint: '/ready',
        check: async () => {
          await database.ping();
          return true;
        },
      }),
    ],
  });

  const server: Server = createServer(yoga);
  const sockets = new WebSocketServer({ server, path: '/graphql' });
  const socketServer = useServer<Record<string, unknown> | undefined>(
    {
      execute: (args) => (args.rootValue as { execute: (a: ExecutionArgs) => unknown }).execute(args) as never,
      subscribe: (args) => (args.rootValue as { subscribe: (a: ExecutionArgs) => unknown }).subscribe(args) as never,
      // A token that is given but bad closes the socket with 4403.
      onConnect: async ({ connectionParams }) => {
        const token = bearerToken(authorizationOf(connectionParams));
        if (token === undefined) return true;
        return (await services.authenticator.authenticate(token)) !== null;
      },
      onSubscribe: async (ctx, _id, payload) => {
        if (bearerToken(authorizationOf(ctx.connectionParams)) === undefined) {
          ctx.extra.socket.close(4401, 'Unauthorized');
          return [new GraphQLError('Unauthorized')];
        }
        const { schema, execute, subscribe, contextFactory, parse, validate } = yoga.getEnveloped({
          ...ctx,
          connectionParams: ctx.connectionParams ?? {},
          params: payload,
        });
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

  let stopping: Promise<void> | undefined;
  const inFlight = new Set<Promise<void>>();
  server.on('request', (_request, response) => {
    const done = new Promise<void>((resolve) => response.on('close', resolve));
    inFlight.add(done);
    void done.then(() => inFlight.delete(done));
  });

  return {
    services,
    maintenance,
    fetch: async (input, init) => yoga.fetch(input as URL, init ?? {}),
    start: (port, host) =>
      new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          const { port: bound } = server.address() as AddressInfo;
          resolve({ url: `http://${host}:${bound}/graphql`, port: bound });
        });
      }),
    /** Stop accepting, end subscriptions, finish in-flight requests (up to the grace period), close. Idempotent. */
    stop: () => {
      stopping ??= (async () => {
        server.close();
        services.watcher.closeAll();
        await socketServer.dispose();
        server.closeIdleConnections();
        const grace = new Promise((resolve) => setTimeout(resolve, options.shutdownGraceMs ?? 10_000).unref());
        await Promise.race([Promise.all(inFlight), grace]);
        server.closeAllConnections();
        feeds.close();
        await jobs.stop();
        await processes?.leave().catch((error: unknown) => logger.warn({ err: error }, 'could not leave the process registry'));
      })();
      return stopping;
    },
  };
}
