import type { IncomingMessage, Server } from 'node:http';
import { type DocumentNode, type ExecutionArgs, type ExecutionResult, GraphQLError } from 'graphql';
import { CloseCode, handleProtocols, makeServer, type ServerOptions } from 'graphql-ws';
import type { YogaServerInstance } from 'graphql-yoga';
import { type WebSocket, WebSocketServer } from 'ws';
import { authorizationOf, bearerToken, credentialsProblem } from '../auth/tokens.js';
import type { Principal } from '../auth/principal.js';
import type { Context, Services, SocketSource } from '../context.js';
import type { Logger } from '../logger.js';
import { toGraphQLError } from '../graphql/errors.js';
import { CONNECTION_INIT_TIMEOUT_MS, originPolicy, SocketLimits, TOO_MANY_CONNECTIONS } from '../guards/socket-limits.js';
import { MAX_VALUE_BYTES_SETTING } from '../modules/tenants/config.service.js';
import type { SharedSubscriptions, SubscriberSocket } from './fanout.js';

/** What a WebSocket operation carries as its root value: its engine and, for fan-out, its socket and id. */
interface SocketRoot {
  execute: (args: ExecutionArgs) => unknown;
  subscribe: (args: ExecutionArgs) => Promise<ExecutionResult | AsyncGenerator<ExecutionResult>>;
  socket: SubscriberSocket;
  id: string;
}

const isAsyncIterable = (value: unknown): value is AsyncGenerator<ExecutionResult> =>
  typeof value === 'object' && value !== null && Symbol.asyncIterator in value;

/** What graphql-ws's hooks get of a socket: as graphql-ws/use/ws gives them. */
interface Extra {
  socket: WebSocket;
  request: IncomingMessage;
  /** The socket as shared subscriptions write to it: their frames of one turn leave in one write too. */
  frames: SubscriberSocket;
}

/** A ping every this long; a socket that has not answered the previous one by the next is ended. */
const KEEP_ALIVE_MS = 12_000;

/**
 * Below this many unsent bytes a message is handed to the socket without waiting for it to be written:
 * graphql-ws then answers an operation's `next` and `complete` in one turn, and they leave in one
 * write. Past it each message waits until it is written, so a subscription that is not read stops
 * being pulled (as graphql-ws/use/ws does for every message).
 */
const SEND_HIGH_WATER_BYTES = 64 * 1024;

/**
 * graphql-ws on a ws server, as graphql-ws/use/ws does it, except that the messages sent in one turn
 * of the event loop go out in one write system call: an operation's `next` and `complete` cost one
 * socket write instead of two (a write is the largest single cost of a small operation).
 */
function serveGraphqlWs(options: ServerOptions<Record<string, unknown> | undefined, Extra>, sockets: WebSocketServer, logger: Logger) {
  const server = makeServer(options);
  sockets.options.handleProtocols = handleProtocols;
  sockets.once('error', () => {
    for (const client of sockets.clients) client.close(CloseCode.InternalServerError, 'Internal server error');
  });
  sockets.on('connection', (socket, request) => {
    const raw = request.socket;
    let held = false;
    const release = () => {
      held = false;
      raw.uncork();
    };
    /** What is sent until the running code yields leaves in one write; a long turn (a replayed page) sends every 64 KiB. */
    const holdWrites = () => {
      if (held && socket.bufferedAmount < SEND_HIGH_WATER_BYTES) return;
      if (held) raw.uncork();
      else {
        held = true;
        process.nextTick(release);
      }
      raw.cork();
    };
    const frames: SubscriberSocket = {
      send: (data, written) => {
        holdWrites();
        socket.send(data, written);
      },
      close: (code, reason) => socket.close(code, reason),
      get bufferedAmount() {
        return socket.bufferedAmount;
      },
    };
    socket.once('error', (error) => {
      logger.error({ err: error }, 'internal error on a WebSocket');
      socket.close(CloseCode.InternalServerError, 'Internal server error');
    });
    let pongWait: NodeJS.Timeout | null = null;
    const ping = setInterval(() => {
      if (socket.readyState !== socket.OPEN) return;
      pongWait = setTimeout(() => socket.terminate(), KEEP_ALIVE_MS);
      socket.once('pong', () => {
        if (pongWait) clearTimeout(pongWait);
        pongWait = null;
      });
      socket.ping();
    }, KEEP_ALIVE_MS);
    const closed = server.opened(
      {
        protocol: socket.protocol,
        send: (data) => {
          if (socket.readyState !== socket.OPEN) return;
          holdWrites();
          if (socket.bufferedAmount < SEND_HIGH_WATER_BYTES) {
            socket.send(data);
            return;
          }
          return new Promise<void>((resolve, reject) => socket.send(data, (error) => (error ? reject(error) : resolve())));
        },
        close: (code, reason) => socket.close(code, reason),
        onMessage: (handle) =>
          socket.on('message', async (message) => {
            try {
              await handle(String(message));
            } catch (error) {
              logger.error({ err: error }, 'internal error while handling a WebSocket message');
              socket.close(CloseCode.InternalServerError, 'Internal server error');
            }
          }),
      },
      { socket, request, frames },
    );
    socket.once('close', (code, reason) => {
      if (pongWait) clearTimeout(pongWait);
      clearInterval(ping);
      void closed(code, String(reason));
    });
  });
  return {
    dispose: async () => {
      for (const client of sockets.clients) client.close(1001, 'Going away');
      sockets.removeAllListeners();
      await new Promise<void>((resolve, reject) => sockets.close((error) => (error ? reject(error) : resolve())));
    },
  };
}

export interface WebSocketOptions {
  server: Server;
  yoga: YogaServerInstance<SocketSource, Context>;
  services: Services;
  shared: SharedSubscriptions;
  logger: Logger;
  /** Browser origins allowed to open a socket (as for CORS); none by default. */
  corsOrigins?: string[];
}

/**
 * GraphQL over WebSocket (graphql-ws) at /graphql on the HTTP server's port, through Yoga's envelop
 * (one context factory, the same plugins), with the socket limits; subscriptions that can be shared
 * join a fan-out group.
 */
export function serveWebSockets({ server, yoga, services, shared, logger, corsOrigins }: WebSocketOptions) {
  // Frames up to twice the largest value a tenant may allow; each tenant's own limit applies to the value itself.
  // One message a turn of the event loop: a client's pipelined frames are answered in turn with everyone else's I/O.
  const sockets = new WebSocketServer({
    server,
    path: '/graphql',
    maxPayload: 2 * MAX_VALUE_BYTES_SETTING,
    verifyClient: originPolicy(corsOrigins),
    allowSynchronousEvents: false,
  });
  const socketLimits = new SocketLimits(services);
  // Each socket's principal as last authenticated, reused while the authenticator's generation holds:
  // the same answer its cache would give, without hashing the token and looking it up for every message.
  const authenticated = new WeakMap<object, { token: string; generation: number; principal: Principal }>();
  const principalOf = async (socket: object, token: string): Promise<Principal | null> => {
    const { authenticator } = services;
    const known = authenticated.get(socket);
    if (known?.token === token && known.generation === authenticator.generation) return known.principal;
    const generation = authenticator.generation;
    const principal = await authenticator.authenticate(token);
    if (principal) authenticated.set(socket, { token, generation, principal });
    else authenticated.delete(socket);
    return principal;
  };
  const socketServer = serveGraphqlWs(
    {
      execute: (args) => (args.rootValue as SocketRoot).execute(args) as never,
      // Every subscription is checked by the ordinary path; those that can be shared then join a fan-out group.
      subscribe: async (args) => {
        const root = args.rootValue as SocketRoot;
        const result = await root.subscribe(args);
        if (!isAsyncIterable(result)) return result;
        const member = await shared.join(args, root.socket, root.id);
        if (!member) return result;
        await result.return(undefined);
        return member;
      },
      connectionInitWaitTimeout: CONNECTION_INIT_TIMEOUT_MS,
      // A token that is given but bad closes the socket with 4403; one too many for its token, with 4429.
      onConnect: async ({ connectionParams, extra }) => {
        const token = bearerToken(authorizationOf(connectionParams));
        if (token === undefined) return socketLimits.admitWithoutToken(extra.socket, extra.request.socket.remoteAddress);
        const principal = await principalOf(extra.socket, token);
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
        const principal = await principalOf(ctx.extra.socket, token);
        const refused = principal && (await socketLimits.checkSubscriptions(principal, ctx.subscriptions, id));
        if (refused) return [toGraphQLError(refused)];
        const { schema, execute, subscribe, contextFactory, parse, validate } = yoga.getEnveloped({
          ...ctx,
          connectionParams: ctx.connectionParams ?? {},
          // The context takes the principal just authenticated for this message rather than authenticating it again.
          authenticated: principal,
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
          rootValue: { execute, subscribe, socket: ctx.extra.frames, id } satisfies SocketRoot,
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
    logger,
  );
  return {
    /** Sockets open now. */
    open: () => sockets.clients.size,
    /** Closes every socket (their subscriptions complete). */
    dispose: () => socketServer.dispose(),
  };
}
