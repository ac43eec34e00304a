import { createServer, type RequestListener, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createYoga, type Plugin } from 'graphql-yoga';
import { type Context, createContext, type Services, type SocketSource } from '../context.js';
import { useDashboard } from '../dashboard/dashboard.plugin.js';
import type { DatabaseHandle } from '../db/client.js';
import { useRequestErrorCodes } from '../graphql/errors.js';
import { schema } from '../graphql/schema.js';
import { useDocumentLimits } from '../guards/document-limits.js';
import { useInputCheck } from '../guards/input-check.js';
import { useOperationLimits, withoutIntrospection } from '../guards/operation-limits.js';
import { MAX_BATCH_OPERATIONS, useRequestLimits } from '../guards/request-limits.js';
import { useStreamLimits } from '../guards/stream-limits.js';
import { useAuditTrail } from '../modules/audit/audit.graphql.js';
import { useGraphiQL } from './graphiql.js';

export interface YogaOptions {
  services: Services;
  database: DatabaseHandle;
  maskError: (error: unknown, message: string) => Error;
  /** Browser origins allowed by CORS; none by default. */
  corsOrigins?: string[] | undefined;
  /** Schema introspection; on by default. */
  introspection?: boolean | undefined;
  /** GraphiQL for browsers at /graphql; on by default. */
  graphiql?: boolean | undefined;
  /** Plugins that go first (metrics). */
  plugins?: Plugin[];
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

/** GraphQL over HTTP and SSE at /graphql (Yoga), with health, readiness, the dashboard and GraphiQL. */
export function createGatewayYoga(options: YogaOptions) {
  const { services, database } = options;
  return createYoga<SocketSource, Context>({
    schema,
    graphqlEndpoint: '/graphql',
    healthCheckEndpoint: '/health',
    landingPage: false,
    // Closed unless origins are configured: a token-bearing API should not answer any web page.
    cors: options.corsOrigins?.length ? { origin: options.corsOrigins, credentials: false } : false,
    logging: false,
    maskedErrors: { maskError: options.maskError },
    batching: { limit: MAX_BATCH_OPERATIONS },
    // useRequestLimits enforces the body limit per tenant. Yoga's own would pipe every body through a
    // TransformStream even when Content-Length already says its size: a fifth of a request's CPU.
    maxRequestBodySize: false,
    // Served by useGraphiQL from the gateway itself: Yoga's own page loads GraphiQL from a CDN.
    graphiql: false,
    context: ({ request, connectionParams, authenticated }) =>
      createContext(services, connectionParams ? { connectionParams, authenticated } : { request }),
    plugins: [
      ...(options.plugins ?? []),
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
}

/** An HTTP server that counts the requests being answered, so a graceful stop can wait for them. */
export function createHttpServer(handler: RequestListener) {
  const server: Server = createServer(handler);
  let inFlight = 0;
  let drained: (() => void) | undefined;
  server.on('request', (_request, response) => {
    inFlight++;
    response.once('close', () => {
      if (--inFlight === 0) drained?.();
    });
  });
  return {
    server,
    listen: (port: number, host: string) =>
      new Promise<{ url: string; port: number }>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          const { port: bound } = server.address() as AddressInfo;
          resolve({ url: `http://${host}:${bound}/graphql`, port: bound });
        });
      }),
    /** Stops accepting connections; idle ones close at once. */
    stopAccepting: () => {
      server.close();
    },
    /** Waits for in-flight requests (up to `graceMs`), then closes every connection. */
    drain: async (graceMs: number) => {
      server.closeIdleConnections();
      const grace = new Promise((resolve) => setTimeout(resolve, graceMs).unref());
      const idle = inFlight === 0 ? Promise.resolve() : new Promise<void>((resolve) => (drained = resolve));
      await Promise.race([idle, grace]);
      server.closeAllConnections();
    },
  };
}
