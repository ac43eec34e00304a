import DataLoader from 'dataloader';
import type { AccessService } from './auth/access.js';
import type { EventBus } from './events/bus.js';
import type { Authenticator } from './auth/authenticator.js';
import type { Principal } from './auth/principal.js';
import { authorizationOf, bearerToken, credentialsProblem } from './auth/tokens.js';
import type { Agent, AgentsService } from './modules/agents/agents.service.js';
import type { AuditLog } from './modules/audit/audit.service.js';
import type { CommitService } from './modules/entries/entries.commit.js';
import type { EntriesService } from './modules/entries/entries.service.js';
import type { EntryWatcher } from './modules/entries/entries.watch.js';
import type { ErrorsService } from './modules/errors/errors.service.js';
import type { InsightsService } from './modules/insights/insights.service.js';
import type { MetricsService } from './modules/metrics/metrics.service.js';
import type { AccessGrant, NamespacesService } from './modules/namespaces/namespaces.service.js';
import type { OptimizationsService } from './modules/optimizations/optimizations.service.js';
import type { PortabilityService } from './modules/portability/portability.service.js';
import type { SystemService } from './modules/system/system.service.js';
import type { ConfigService } from './modules/tenants/config.service.js';
import type { TokensService } from './modules/tokens/tokens.service.js';
import type { RateBudget } from './guards/rate-limiter.js';

/** The domain services, built once per process. */
export interface Services {
  bus: EventBus;
  authenticator: Authenticator;
  access: AccessService;
  entries: EntriesService;
  commits: CommitService;
  watcher: EntryWatcher;
  namespaces: NamespacesService;
  agents: AgentsService;
  tokens: TokensService;
  config: ConfigService;
  system: SystemService;
  portability: PortabilityService;
  metrics: MetricsService;
  errors: ErrorsService;
  insights: InsightsService;
  optimizations: OptimizationsService;
  audit: AuditLog;
  /** Operations per token and second (tenant's rateLimit): this process's buckets, or the port's when it runs workers. */
  rateLimits: RateBudget;
}

/** Per-request batching, so lists never query per row. */
export interface Loaders {
  entryCount: DataLoader<string, number>;
  grants: DataLoader<string, AccessGrant[]>;
  agent: DataLoader<string, Agent | null>;
}

export interface Context {
  principal: Principal | null;
  /** Why there is no principal (see credentialsProblem); undefined when there is one. */
  unauthenticatedReason: string | undefined;
  services: Services;
  loaders: Loaders;
  /** The caller's principal now (null once its token is revoked): long subscriptions re-check it. */
  reauthenticate: () => Promise<Principal | null>;
}

/** The loaders of one request, each made on first use: most operations need none. */
class RequestLoaders implements Loaders {
  private made: Partial<Loaders> = {};

  constructor(
    private readonly services: Services,
    private readonly tenantId: string,
  ) {}

  get entryCount(): Loaders['entryCount'] {
    return (this.made.entryCount ??= new DataLoader(async (names) => {
      const counts = await this.services.entries.count(this.tenantId, names);
      return names.map((name) => counts.get(name) ?? 0);
    }));
  }

  get grants(): Loaders['grants'] {
    return (this.made.grants ??= new DataLoader(async (names) => {
      const grants = await this.services.namespaces.grantsOf(this.tenantId, names);
      return names.map((name) => grants.get(name) ?? []);
    }));
  }

  get agent(): Loaders['agent'] {
    return (this.made.agent ??= new DataLoader(async (ids) => {
      const agents = await this.services.agents.byIds(this.tenantId, ids);
      return ids.map((id) => agents.get(id) ?? null);
    }));
  }
}

/** What a socket's message brings to its context: the socket's parameters and, once authenticated, its principal. */
export interface SocketSource {
  connectionParams?: Record<string, unknown>;
  /** The principal of the message's token, authenticated by the transport for this very message (null: none). */
  authenticated?: Principal | null;
}

/**
 * The one context factory for HTTP, SSE and WebSocket: the token comes from the Authorization
 * header, or from `connectionParams.authorization` on a socket.
 */
export async function createContext(services: Services, source: { request?: Request } & SocketSource): Promise<Context> {
  const header = source.connectionParams
    ? authorizationOf(source.connectionParams)
    : (source.request?.headers.get('authorization') ?? undefined);
  const token = bearerToken(header);
  const principal =
    token === undefined
      ? null
      : source.authenticated !== undefined
        ? source.authenticated
        : await services.authenticator.authenticate(token);
  return {
    principal,
    unauthenticatedReason: principal ? undefined : credentialsProblem(token, source.connectionParams ? 'socket' : 'http'),
    services,
    loaders: new RequestLoaders(services, principal?.tenantId ?? ''),
    reauthenticate: async () => (token === undefined ? null : services.authenticator.authenticate(token)),
  };
}
