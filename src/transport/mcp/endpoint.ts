import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { WebStandardStreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js';
import type { Plugin } from 'graphql-yoga';
import type { Principal } from '../../auth/principal.js';
import { bearerToken, credentialsProblem, hashToken } from '../../auth/tokens.js';
import type { Services } from '../../context.js';
import { originPolicy } from '../../guards/socket-limits.js';
import { MAX_VALUE_BYTES_SETTING } from '../../modules/tenants/config.service.js';
import type { McpRouting } from './forwarding.js';
import { type GraphQLFetch, GraphQLRunner } from './graphql.js';
import { Resources } from './resources.js';
import { registerTools } from './tools.js';

/** Where the endpoint is served. */
export const MCP_PATH = '/mcp';
/** A session with no request and no subscription for this long is closed. */
export const MCP_IDLE_SESSION_MS = 30 * 60_000;
/**
 * The largest JSON-RPC body read: as for GraphQL, twice the largest value any tenant may allow, so
 * that the tenant's own limit answers an over-large value with PAYLOAD_TOO_LARGE, not a bare 413.
 */
const MAX_BODY_BYTES = 2 * MAX_VALUE_BYTES_SETTING;

const INSTRUCTIONS = `Statehouse is a shared, versioned JSON store for a fleet of agents, with access per namespace.
Start with list_namespaces (what this token can read and write; \`common\` is shared by all agents).
Entries are (namespace, scope, key) → JSON value with a version. To change an entry others may change too: get_entry, then set_entry or patch_entry with expectedVersion = the version read; on VERSION_CONFLICT read again and retry. increment_entry needs no version. commit writes several entries all or nothing.
Resources statehouse://NAMESPACE and statehouse://NAMESPACE/SCOPE/KEY (scope and key percent-encoded) can be read and subscribed to for live changes.
Errors start with a code (FORBIDDEN, VERSION_CONFLICT, …) followed by what to do.`;

export interface McpEndpointOptions {
  /** The gateway's GraphQL Fetch handler (its Yoga instance): every tool and resource goes through it. */
  graphql: GraphQLFetch;
  services: Pick<Services, 'authenticator' | 'bus' | 'config'>;
  /** Browser origins allowed besides the gateway's own (as for CORS and WebSocket). */
  corsOrigins?: string[];
  /** @default MCP_IDLE_SESSION_MS */
  idleSessionMs?: number;
  /** Workers of one port: session ids name their worker, and a sibling's sessions are forwarded to it. */
  routing?: McpRouting;
}

interface Session {
  id: string;
  /** The token that opened it (kept in memory only, to run its operations) and its hash: every later request must carry the same token. */
  token: string;
  tokenHash: string;
  principal: Principal;
  transport: WebStandardStreamableHTTPServerTransport;
  server: McpServer;
  resources: Resources;
  idle: NodeJS.Timeout | undefined;
  ended: boolean;
}

/** A JSON-RPC error answered over HTTP before any session handles the request. */
function refuse(status: number, message: string, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify({ jsonrpc: '2.0', error: { code: -32000, message }, id: null }), {
    status,
    headers: { 'content-type': 'application/json', ...headers },
  });
}

/**
 * MCP over Streamable HTTP at /mcp, with the official SDK. The bearer token of each request is the
 * principal; a session is opened by one token and answers no other (to any other it does not
 * exist). Tools and resources run fixed GraphQL operations through the gateway's own pipeline.
 */
export class McpEndpoint {
  private readonly sessions = new Map<string, Session>();
  private readonly runner: GraphQLRunner;
  private readonly originAllowed: (origin: string, host: string | null) => boolean;
  private readonly offBus: () => void;
  private closed = false;

  constructor(private readonly options: McpEndpointOptions) {
    this.runner = new GraphQLRunner(options.graphql);
    const policy = originPolicy(options.corsOrigins);
    // The WebSocket origin policy, asked for an HTTP request: the gateway's own origin and corsOrigins.
    this.originAllowed = (origin, host) => {
      let accepted = false;
      policy({ origin, req: { headers: { host: host ?? undefined } } as IncomingMessage }, (ok) => (accepted = ok));
      return accepted;
    };
    // A revoked token (or deregistered agent) ends its sessions at once, not at their next request.
    this.offBus = options.services.bus.on((event) => {
      if (event.type !== 'tokens' && event.type !== 'reset') return;
      for (const session of this.sessions.values()) {
        if (event.type === 'tokens' && event.tenantId !== session.principal.tenantId) continue;
        void this.stillValid(session).then(async (valid) => {
          if (!valid) await this.end(session);
        });
      }
    });
  }

  /** The number of open sessions. */
  get size(): number {
    return this.sessions.size;
  }

  /**
   * Answers one request. `forwarded`: a sibling worker sent it (from its private port) after checking
   * its origin against the gateway's public host; it is answered here or not at all.
   */
  async handle(request: Request, { forwarded = false } = {}): Promise<Response> {
    if (this.closed) return refuse(503, 'The gateway is stopping');
    // MCP requires Origin to be checked (DNS rebinding): a page of another origin is refused.
    const origin = request.headers.get('origin');
    if (!forwarded && origin !== null && !this.originAllowed(origin, request.headers.get('host'))) return refuse(403, 'Origin not allowed');

    const token = bearerToken(request.headers.get('authorization') ?? undefined);
    const principal = token ? await this.options.services.authenticator.authenticate(token) : null;
    if (!token || !principal) {
      return refuse(401, credentialsProblem(token, 'http'), { 'www-authenticate': 'Bearer realm="statehouse"' });
    }
    const sessionId = request.headers.get('mcp-session-id');
    if (sessionId !== null) {
      const session = this.sessions.get(sessionId);
      // A sibling's session: its worker answers (the token is checked there against the session's).
      const answer = session || forwarded ? null : this.options.routing?.forward(sessionId, request);
      if (answer) return (await answer) ?? refuse(404, 'Session not found');
      // Another token's session answers as one that does not exist.
      if (!session || session.tokenHash !== hashToken(token)) return refuse(404, 'Session not found');
      this.touch(session);
      return session.transport.handleRequest(request);
    }
    if (request.method !== 'POST' || forwarded) return refuse(400, 'Mcp-Session-Id header is required (initialize first with a POST)');

    const { limits } = await this.options.services.config.get(principal.tenantId);
    const open = [...this.sessions.values()].filter((session) => session.principal.tokenId === principal.tokenId).length;
    if (open >= limits.maxConnectionsPerToken) {
      return refuse(429, `Too many MCP sessions for this token (at most ${limits.maxConnectionsPerToken}): close some (HTTP DELETE) first`);
    }
    // Counted from here, so that initializes sent together count each other.
    const session = this.open(token, principal);
    this.sessions.set(session.id, session);
    const response = await session.transport.handleRequest(request);
    // Anything but an initialize leaves the transport without a session: it was answered (400) and is dropped.
    if (session.transport.sessionId === undefined) await this.end(session);
    return response;
  }

  /** Ends every session (the gateway is stopping). */
  async close(): Promise<void> {
    this.closed = true;
    this.offBus();
    await Promise.allSettled([...this.sessions.values()].map((session) => this.end(session)));
  }

  private open(token: string, principal: Principal): Session {
    const authorization = `Bearer ${token}`;
    const id = (this.options.routing?.sessionPrefix ?? '') + randomBytes(32).toString('base64url');
    const server = new McpServer({ name: 'statehouse', version: '0.1.0' }, { instructions: INSTRUCTIONS });
    const transport = new WebStandardStreamableHTTPServerTransport({
      sessionIdGenerator: () => id,
      maxRequestBodySize: MAX_BODY_BYTES,
      onsessioninitialized: () => this.touch(session),
    });
    const run = (query: string, variables: Record<string, unknown>) =>
      this.runner.run<Record<string, any>>(authorization, query, variables).then((result) => {
        if (result.errors?.some((error) => error.extensions?.code === 'UNAUTHENTICATED')) void this.end(session);
        return result;
      });
    registerTools(server, run);
    const resources = new Resources(server, {
      run,
      subscribe: (query, variables, signal) => this.runner.subscribe(authorization, query, variables, signal),
      end: () => void this.end(session),
      maxSubscriptions: async () => (await this.options.services.config.get(principal.tenantId)).limits.maxSubscriptionsPerSocket,
    });
    const session: Session = {
      id,
      token,
      tokenHash: hashToken(token),
      principal,
      transport,
      server,
      resources,
      idle: undefined,
      ended: false,
    };
    server.server.onclose = () => void this.end(session);
    void server.connect(transport);
    return session;
  }

  private async stillValid(session: Session): Promise<boolean> {
    const principal = await this.options.services.authenticator.authenticate(session.token);
    return principal !== null && principal.tokenId === session.principal.tokenId;
  }

  private touch(session: Session): void {
    clearTimeout(session.idle);
    const idleMs = this.options.idleSessionMs ?? MCP_IDLE_SESSION_MS;
    session.idle = setTimeout(() => {
      if (session.resources.open > 0) return this.touch(session);
      void this.end(session);
    }, idleMs);
    session.idle.unref();
  }

  private async end(session: Session): Promise<void> {
    if (session.ended) return;
    session.ended = true;
    clearTimeout(session.idle);
    this.sessions.delete(session.id);
    session.resources.closeAll();
    await session.server.close().catch(() => {});
  }
}

/** Serves MCP_PATH from the gateway's Yoga instance, before any GraphQL handling. */
export function useMcp(endpoint: McpEndpoint): Plugin {
  return {
    onRequest: async ({ url, request, endResponse }) => {
      if (url.pathname !== MCP_PATH) return;
      const response = await endpoint.handle(request);
      // CORS (Yoga's, for the allowed origins) hides response headers a page has not been told it may read.
      if (request.headers.has('origin')) response.headers.set('access-control-expose-headers', 'mcp-session-id');
      endResponse(response);
    },
  };
}
