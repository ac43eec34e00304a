import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type DocumentNode, type ExecutionArgs, type ExecutionResult, GraphQLError } from 'graphql';
import { CloseCode } from 'graphql-ws';
import { useServer } from 'graphql-ws/use/ws';
import { createYoga, type Plugin } from 'graphql-yoga';
import { WebSocketServer } from 'ws';
import { sql } from 'drizzle-orm';
import { AccessService } from './auth/access.js';
import { Authenticator } from './auth/authenticator.js';
import { authorizationOf, bearerToken, credentialsProblem } from './auth/tokens.js';
import { type Context, createContext, type Services } from './context.js';
import { useDashboard } from './dashboard/dashboard.plugin.js';
import type { DatabaseHandle } from './db/client.js';
import { EventBus } from './events/bus.js';
import { ProcessRegistry } from './events/processes.js';
import { PeriodicJobs } from './jobs.js';
import { ChangeFeeds } from './events/change-feed.js';
import { createMaskError, toGraphQLError, useRequestErrorCodes } from './graphql/errors.js';
import { useDocumentLimits } from './guards/document-limits.js';
import { useInputCheck } from './guards/input-check.js';
import { useOperationLimits, withoutIntrospection } from './guards/operation-limits.js';
import { MAX_BATCH_OPERATIONS, useRequestLimits } from './guards/request-limits.js';
import { CONNECTION_INIT_TIMEOUT_MS, originPolicy, SocketLimits, TOO_MANY_CONNECTIONS } from './guards/socket-limits.js';
import { useStreamLimits } from './guards/stream-limits.js';
import { schema } from './graphql/schema.js';
import type { Logger } from './logger.js';
import { ValueCipher } from './domain/value-cipher.js';
import { AgentsService } from './modules/agents/agents.service.js';
import { useAuditTrail } from './modules/audit/audit.graphql.js';
import { AuditLog } from './modules/audit/audit.service.js';
import { CommitService } from './modules/entries/entries.commit.js';
import { EntryFanout, type SubscriberSocket } from './modules/entries/entries.fanout.js';
import { EntryMaintenance } from './modules/entries/entries.maintenance.js';
import { ValuePolicy } from './modules/entries/entries.policy.js';
import { EntriesService, type EntryChange } from './modules/entries/entries.service.js';
import { EntryWatcher } from './modules/entries/entries.watch.js';
import { ErrorsService } from './modules/errors/errors.service.js';
import { InsightsService } from './modules/insights/insights.service.js';
import { MetricsService } from './modules/metrics/metrics.service.js';
import { NamespacesService } from './modules/namespaces/namespaces.service.js';
import { OptimizationsService } from './modules/optimizations/optimizations.service.js';
import { PortabilityService } from './modules/portability/portability.service.js';
import { SystemService } from './modules/system/system.service.js';
import { ConfigService, MAX_VALUE_BYTES_SETTING } from './modules/tenants/config.service.js';
import { TokensService } from './modules/tokens/tokens.service.js';
import { useGraphiQL } from './transport/graphiql.js';
import { McpEndpoint, useMcp } from './transport/mcp/endpoint.js';
import { createMetrics, type MetricsOptions } from './observability/metrics.js';

export interface AppOptions {
  database: DatabaseHandle;
  logger: Logger;
  activeWindowSeconds?: number;
  /** How long `stop` waits for in-flight requests before closing connections anyway. */
  shutdownGraceMs?: number;
  /** Browser origins allowed by CORS; none by default. */
  corsOrigins?: string[];
  /** 64 hex characters: seals the values of sensitive namespaces (STATEHOUSE_ENCRYPTION_KEY). */
  encryptionKey?: string;
  /** Keys that sealed older values, still accepted for opening them while a rotation is under way. */
  previousEncryptionKeys?: string[];
  /** Schema introspection (`__schema`, `__type`); on by default. */
  introspection?: boolean;
  /** GraphiQL for browsers at /graphql; on by default. */
  graphiql?: boolean;
  /** Background jobs (TTL sweeper, history compaction); false turns them off. */
  maintenance?: MaintenanceOptions | false;
  /** Prometheus metrics at GET /metrics (no token; no tenant data); false turns them off. */
  metrics?: MetricsOptions | false;
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
  /** The shared (multiplexed) entryChanged subscriptions of WebSocket clients. */
  fanout: EntryFanout;
  /** The Fetch API handler: tests call it in-process. */
  fetch: (input: string | URL | Request, init?: RequestInit) => Promise<Response>;
  start(port: number, host: string): Promise<{ url: string; port: number }>;
  stop(): Promise<void>;
}

function createServices(database: DatabaseHandle, bus: EventBus, logger: Logger, activeWindowSeconds: number, cipher: ValueCipher | null) {
  const access = new AccessService(database, bus);
  const config = new ConfigService(database, bus, activeWindowSeconds);
  const policy = new ValuePolicy(database, config, cipher);
  const entries = new EntriesService(database, access, bus, policy);
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
    commits: new CommitService(database, access, bus, policy),
    watcher: new EntryWatcher(entries, access, feeds, bus),
    namespaces: new NamespacesService(database, access, bus, cipher !== null),
    agents: new AgentsService(database, bus, config),
    tokens: new TokensService(database, bus),
    config,
    system: new SystemService(database, config),
    portability: new PortabilityService(database, access, bus, policy),
    metrics: new MetricsService(database, access, config, bus),
    errors: new ErrorsService(database, bus, config),
    insights: new InsightsService(database, bus),
    optimizations: new OptimizationsService(database),
    audit: new AuditLog(database, logger),
  };
  return { services, feeds };
}

/** What a WebSocket operation carries as its root value: its engine and, for fan-out, its socket and id. */
interface SocketRoot {
  execute: (args: ExecutionArgs) => unknown;
  subscribe: (args: ExecutionArgs) => Promise<ExecutionResult | AsyncGenerator<ExecutionResult>>;
  socket: SubscriberSocket;
  id: string;
}

const isAsyncIterable = (value: unknown): value is AsyncGenerator<ExecutionResult> =>
  typeof value === 'object' && value !== null && Symbol.asyncIterator in value;

/** Values of sensitive namespaces cannot be read or written without the key: say so at start, not at the first read. */
async function refuseSensitiveWithoutKey(database: DatabaseHandle): Promise<void> {
  const [row] = await database.rows<{ name: string }>(sql`SELECT tenant_id || '/' || name AS name FROM namespaces WHERE sensitive LIMIT 1`);
  if (row) {
    throw new Error(
      `Namespace ${row.name} is sensitive and STATEHOUSE_ENCRYPTION_KEY is not set: set the key its values were encrypted with (64 hex characters)`,
    );
  }
}

/**
 * GET /ready: 200 once the database answers, 503 otherwise. Yoga's useReadinessCheck would also
 * match every other request's URL against a URLPattern, which costs more than the check itself.
 */
function useReadiness(database: DatabaseHandle): Plugin {
  return {
    onRequest: async ({ url, endResponse, fetchAPI }) => {
      if (url.pathname !== '/ready') return;
      const ready = await database.ping().then(
        () => true,
        () => false,
      );
      endResponse(new fetchAPI.Response(null, { status: ready ? 200 : 503 }));
    },
  };
}

/** The gateway: GraphQL over HTTP, SSE and WebSocket on one port, with health and readiness. */
export async function buildApp(options: AppOptions): Promise<App> {
  const { database, logger } = options;
  // Checked before joining the process registry, so a refused start leaves no peer behind.
  const cipher = options.encryptionKey ? new ValueCipher(options.encryptionKey, options.previousEncryptionKeys) : null;
  if (!cipher) await refuseSensitiveWithoutKey(database);
  const processes = database.broadcast ? new ProcessRegistry(database, logger) : undefined;
  await processes?.join();
  const bus = new EventBus(database.broadcast, logger, processes);
  const { services, feeds } = createServices(database, bus, logger, options.activeWindowSeconds ?? 300, cipher);
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

  const maskError = createMaskError(logger);
  const fanout = new EntryFanout({ feeds, entries: services.entries, access: services.access, bus }, maskError);
  const metrics =
    options.metrics === false
      ? undefined
      : createMetrics({ database, feeds, fanout, audit: services.audit, openSockets: () => sockets.clients.size }, options.metrics);
  // MCP at /mcp: its tools and resources run GraphQL operations through this Yoga instance.
  const mcp = new McpEndpoint({ graphql: (request) => yoga.fetch(request), services, corsOrigins: options.corsOrigins });
  const yoga = createYoga<{ connectionParams?: Record<string, unknown> }, Context>({
    schema,
    graphqlEndpoint: '/graphql',
    healthCheckEndpoint: '/health',
    landingPage: false,
    // Closed unless origins are configured: a token-bearing API should not answer any web page.
    cors: options.corsOrigins?.length ? { origin: options.corsOrigins, credentials: false } : false,
    logging: false,
    maskedErrors: { maskError },
    batching: { limit: MAX_BATCH_OPERATIONS },
    // useRequestLimits enforces the body limit per tenant. Yoga's own would pipe every body through a
    // TransformStream even when Content-Length already says its size: a fifth of a request's CPU.
    maxRequestBodySize: false,
    // Served by useGraphiQL from the gateway itself: Yoga's own page loads GraphiQL from a CDN.
    graphiql: false,
    context: ({ request, connectionParams }) => createContext(services, connectionParams ? { connectionParams } : { request }),
    plugins: [
      ...(metrics ? [metrics.plugin] : []),
      useMcp(mcp),
      useDashboard(),
      ...(options.graphiql === false ? [] : [useGraphiQL({ endpoint: '/graphql' })]),
      useRequestErrorCodes(),
      useAuditTrail(),
      useRequestLimits(services),
      useDocumentLimits(),
      useOperationLimits(),
      useInputCheck(),
      ...(options.introspection === false ? [withoutIntrospection()] : []),
      useReadiness(database),
      useStreamLimits(),
    ],
  });

  const server: Server = createServer(yoga);
  // Frames up to twice the largest value a tenant may allow; each tenant's own limit applies to the value itself.
  // One message a turn of the event loop: a client's pipelined frames are answered in turn with everyone else's I/O.
  const sockets = new WebSocketServer({
    server,
    path: '/graphql',
    maxPayload: 2 * MAX_VALUE_BYTES_SETTING,
    verifyClient: originPolicy(options.corsOrigins),
    allowSynchronousEvents: false,
  });
  const socketLimits = new SocketLimits(services);
  const socketServer = useServer<Record<string, unknown> | undefined>(
    {
      execute: (args) => (args.rootValue as SocketRoot).execute(args) as never,
      // Every subscription is checked by the ordinary path; those that can be shared then join a fan-out group.
      subscribe: async (args) => {
        const root = args.rootValue as SocketRoot;
        const result = await root.subscribe(args);
        if (!isAsyncIterable(result)) return result;
        const shared = await fanout.join(args, root.socket, root.id);
        if (!shared) return result;
        await result.return(undefined);
        return shared;
      },
      connectionInitWaitTimeout: CONNECTION_INIT_TIMEOUT_MS,
      // A token that is given but bad closes the socket with 4403; one too many for its token, with 4429.
      onConnect: async ({ connectionParams, extra }) => {
        const token = bearerToken(authorizationOf(connectionParams));
        if (token === undefined) return socketLimits.admitWithoutToken(extra.socket, extra.request.socket.remoteAddress);
        const principal = await services.authenticator.authenticate(token);
        if (principal === null) {
          extra.socket.close(CloseCode.Forbidden, credentialsProblem(token, 'socket'));
          return false;
        }
        if (await socketLimits.admit(extra.socket, principal)) return true;
        extra.socket.close(TOO_MANY_CONNECTIONS, 'Too many connections for this token');
        return false;
      },
      onClose: ({ extra }) => socketLimits.release(extra.socket),
      onSubscribe: async (ctx, id, payload) => {
        const token = bearerToken(authorizationOf(ctx.connectionParams));
        if (token === undefined) {
          ctx.extra.socket.close(CloseCode.Unauthorized, credentialsProblem(token, 'socket'));
          return [new GraphQLError('Unauthorized')];
        }
        const principal = await services.authenticator.authenticate(token);
        const refused = principal && (await socketLimits.checkSubscriptions(principal, ctx.subscriptions, id));
        if (refused) return [toGraphQLError(refused)];
        const { schema, execute, subscribe, contextFactory, parse, validate } = yoga.getEnveloped({
          ...ctx,
          connectionParams: ctx.connectionParams ?? {},
          params: payload,
        });
        let document: DocumentNode;
        try {
          document = parse(payload.query);
        } catch (error) {
          // A document that does not parse is the caller's mistake: an error for this subscription, not a closed socket.
          // One over a ceiling of document-limits keeps its QUERY_TOO_COMPLEX and limit.
          if (!(error instanceof GraphQLError)) throw error;
          const { code, limit } = error.extensions;
          return [
            new GraphQLError(error.message, { extensions: code === 'QUERY_TOO_COMPLEX' ? { code, limit } : { code: 'BAD_USER_INPUT' } }),
          ];
        }
        const args = {
          schema,
          operationName: payload.operationName,
          document,
          variableValues: payload.variables,
          contextValue: await contextFactory(),
          rootValue: { execute, subscribe, socket: ctx.extra.socket, id } satisfies SocketRoot,
        };
        try {
          const errors = validate(args.schema, args.document);
          return errors.length > 0 ? errors : args;
        } catch (error) {
          // graphql-js 16 throws from some rules (a subscription's variable @include): the caller's mistake too.
          if (!(error instanceof GraphQLError)) throw error;
          return [new GraphQLError(error.message, { extensions: { code: 'BAD_USER_INPUT' } })];
        }
      },
    },
    sockets,
  );

  let stopping: Promise<void> | undefined;
  // Requests still being answered, which a graceful stop waits for.
  let inFlight = 0;
  let drained: (() => void) | undefined;
  server.on('request', (_request, response) => {
    inFlight++;
    response.once('close', () => {
      if (--inFlight === 0) drained?.();
    });
  });

  return {
    services,
    maintenance,
    fanout,
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
        fanout.closeAll();
        await mcp.close();
        await socketServer.dispose();
        server.closeIdleConnections();
        const grace = new Promise((resolve) => setTimeout(resolve, options.shutdownGraceMs ?? 10_000).unref());
        const idle = inFlight === 0 ? Promise.resolve() : new Promise<void>((resolve) => (drained = resolve));
        await Promise.race([idle, grace]);
        server.closeAllConnections();
        feeds.close();
        await jobs.stop();
        await services.audit.flush();
        metrics?.close();
        await processes?.leave().catch((error: unknown) => logger.warn({ err: error }, 'could not leave the process registry'));
      })();
      return stopping;
    },
  };
}
