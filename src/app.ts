import { AccessService } from './auth/access.js';
import { Authenticator } from './auth/authenticator.js';
import type { Services } from './context.js';
import type { DatabaseHandle } from './db/client.js';
import { ValueCipher } from './domain/value-cipher.js';
import { EventBus } from './events/bus.js';
import { ChangeFeeds } from './events/change-feed.js';
import { ProcessRegistry } from './events/processes.js';
import { createMaskError } from './graphql/errors.js';
import type { ClusterMember } from './cluster.js';
import { LeasedRateLimiter, RateLimiter } from './guards/rate-limiter.js';
import { PeriodicJobs } from './jobs.js';
import type { Logger } from './logger.js';
import { AgentsService } from './modules/agents/agents.service.js';
import { AuditLog } from './modules/audit/audit.service.js';
import { CommitService } from './modules/entries/entries.commit.js';
import { EntryMaintenance } from './modules/entries/entries.maintenance.js';
import { ValuePolicy } from './modules/entries/entries.policy.js';
import { EntriesService } from './modules/entries/entries.service.js';
import { entryChangedSharing } from './modules/entries/entries.sharing.js';
import { EntryWatcher } from './modules/entries/entries.watch.js';
import { ErrorsService } from './modules/errors/errors.service.js';
import { InsightsService } from './modules/insights/insights.service.js';
import { MetricsService } from './modules/metrics/metrics.service.js';
import { NamespacesService, refuseSensitiveWithoutKey } from './modules/namespaces/namespaces.service.js';
import { OptimizationsService } from './modules/optimizations/optimizations.service.js';
import { PortabilityService } from './modules/portability/portability.service.js';
import { SystemService } from './modules/system/system.service.js';
import { ConfigService } from './modules/tenants/config.service.js';
import { TokensService } from './modules/tokens/tokens.service.js';
import { createMetrics, type MetricsOptions } from './observability/metrics.js';
import { SharedSubscriptions } from './transport/fanout.js';
import { createGatewayYoga, createHttpServer } from './transport/http.js';
import { MCP_PATH, McpEndpoint, useMcp } from './transport/mcp/endpoint.js';
import { mcpRouting, servePrivateMcp } from './transport/mcp/forwarding.js';
import { serveWebSockets } from './transport/websocket.js';
import { DEFAULT_ACTIVE_WINDOW_SECONDS } from './domain/values.js';
import type { EntryChange } from './modules/entries/entries.model.js';

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
  /** A worker of several on one port (STATEHOUSE_WORKERS): MCP sessions and rate limits shared with its siblings. */
  cluster?: ClusterMember;
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
  /** The shared (multiplexed) subscriptions of WebSocket clients, entryChanged's among them. */
  fanout: SharedSubscriptions;
  /** The Fetch API handler: tests call it in-process. */
  fetch: (input: string | URL | Request, init?: RequestInit) => Promise<Response>;
  start(port: number, host: string): Promise<{ url: string; port: number }>;
  stop(): Promise<void>;
}

function createServices(
  database: DatabaseHandle,
  bus: EventBus,
  logger: Logger,
  activeWindowSeconds: number,
  cipher: ValueCipher | null,
  cluster: ClusterMember | undefined,
) {
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
    rateLimits: cluster ? new LeasedRateLimiter(cluster.drawLease) : new RateLimiter(),
  };
  return { services, feeds };
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
  const { services, feeds } = createServices(
    database,
    bus,
    logger,
    options.activeWindowSeconds ?? DEFAULT_ACTIVE_WINDOW_SECONDS,
    cipher,
    options.cluster,
  );
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
      bus.publish({ type: 'reset' });
      feeds.wakeAll();
    },
  );
  bus.publish({ type: 'hello' });

  const maskError = createMaskError(logger);
  const shared = new SharedSubscriptions(
    [entryChangedSharing({ feeds, entries: services.entries, access: services.access, bus })],
    maskError,
  );
  const metrics =
    options.metrics === false
      ? undefined
      : createMetrics({ database, feeds, fanout: shared, audit: services.audit, openSockets: () => sockets.open() }, options.metrics);
  // MCP at /mcp: its tools and resources run GraphQL operations through this Yoga instance.
  const { cluster } = options;
  const mcp = new McpEndpoint({
    graphql: (request) => yoga.fetch(request),
    services,
    corsOrigins: options.corsOrigins,
    routing: cluster && mcpRouting(cluster, logger),
  });
  // A worker's own port for its sessions' requests that reached a sibling.
  const privateMcp = cluster && servePrivateMcp(MCP_PATH, (request) => mcp.handle(request, { forwarded: true }), cluster.secret);
  const yoga = createGatewayYoga({
    services,
    database,
    maskError,
    corsOrigins: options.corsOrigins,
    introspection: options.introspection,
    graphiql: options.graphiql,
    plugins: [...(metrics ? [metrics.plugin] : []), useMcp(mcp)],
  });
  const http = createHttpServer(yoga);
  const sockets = serveWebSockets({ server: http.server, yoga, services, shared, logger, corsOrigins: options.corsOrigins });

  let stopping: Promise<void> | undefined;
  return {
    services,
    maintenance,
    fanout: shared,
    fetch: async (input, init) => yoga.fetch(input as URL, init ?? {}),
    start: async (port, host) => {
      if (cluster && privateMcp) {
        const privatePort = await privateMcp.listen();
        logger.info({ privatePort, clusterWorker: cluster.id }, 'taking MCP requests forwarded by sibling workers on 127.0.0.1');
        cluster.announcePrivatePort(privatePort);
      }
      return http.listen(port, host);
    },
    /** Stop accepting, end subscriptions, finish in-flight requests (up to the grace period), close. Idempotent. */
    stop: () => {
      stopping ??= (async () => {
        http.stopAccepting();
        services.watcher.closeAll();
        shared.closeAll();
        await mcp.close();
        await sockets.dispose();
        await http.drain(options.shutdownGraceMs ?? 10_000);
        // After the public port: a sibling's forwarded request in flight is answered, not cut.
        privateMcp?.close();
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
