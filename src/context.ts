import DataLoader from 'dataloader';
import type { AccessService } from './auth/access.js';
import type { EventBus } from './events/bus.js';
import type { Authenticator } from './auth/authenticator.js';
import type { Principal } from './auth/principal.js';
import { authorizationOf, bearerToken } from './auth/tokens.js';
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
}

/** Per-request batching, so lists never query per row. */
export interface Loaders {
  entryCount: DataLoader<string, number>;
  grants: DataLoader<string, AccessGrant[]>;
  agent: DataLoader<string, Agent | null>;
}

export interface Context {
  principal: Principal | null;
  /** A token was given but is unknown or revoked. */
  tokenRejected: boolean;
  services: Services;
  loaders: Loaders;
  /** The caller's principal now (null once its token is revoked): long subscriptions re-check it. */
  reauthenticate: () => Promise<Principal | null>;
}

function createLoaders(services: Services, principal: Principal | null): Loaders {
  const tenantId = principal?.tenantId ?? '';
  return {
    entryCount: new DataLoader(async (names) => {
      const counts = await services.entries.count(tenantId, names);
      return names.map((name) => counts.get(name) ?? 0);
    }),
    grants: new DataLoader(async (names) => {
      const grants = await services.namespaces.grantsOf(tenantId, names);
      return names.map((name) => grants.get(name) ?? []);
    }),
    agent: new DataLoader(async (ids) => {
      const agents = await services.agents.byIds(tenantId, ids);
      return ids.map((id) => agents.get(id) ?? null);
    }),
  };
}

/**
 * The one context factory for HTTP, SSE and WebSocket: the token comes from the Authorization
 * header, or from `connectionParams.authorization` on a socket.
 */
export async function createContext(
  services: Services,
  source: { request?: Request; connectionParams?: Record<string, unknown> },
): Promise<Context> {
  const header = source.connectionParams
    ? authorizationOf(source.connectionParams)
    : (source.request?.headers.get('authorization') ?? undefined);
  const token = bearerToken(header);
  const principal = token === undefined ? null : await services.authenticator.authenticate(token);
  let loaders: Loaders | undefined;
  return {
    principal,
    tokenRejected: token !== undefined && principal === null,
    services,
    // Most operations need none: made on first use.
    get loaders() {
      return (loaders ??= createLoaders(services, principal));
    },
    reauthenticate: async () => (token === undefined ? null : services.authenticator.authenticate(token)),
  };
}
