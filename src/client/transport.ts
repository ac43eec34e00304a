/**
 * How operations reach the gateway: one graphql-ws socket for queries, mutations and subscriptions, or
 * HTTP for one-shot scripts (whose subscriptions still open the socket, lazily). Nothing here retries:
 * the client decides what is safe to repeat, from what a failure says (client.ts).
 */
import { type Client as SocketClient, createClient } from 'graphql-ws';
import {
  ClientClosedError,
  ConnectionError,
  errorFromGraphQL,
  type GraphQLErrorBody,
  StatehouseError,
  UnauthenticatedError,
} from './errors.js';
import type { TypedDocumentString } from './generated/graphql.js';

/** What the socket is doing; `reconnecting` follows a lost connection until the next one is acknowledged. */
export type ConnectionState = 'idle' | 'connecting' | 'connected' | 'reconnecting' | 'closed';

export interface Sink<R> {
  next(data: R): void;
  /** A typed StatehouseError from the gateway, a ConnectionError, or ClientClosedError; nothing follows it. */
  error(error: Error): void;
  /** The gateway ended the subscription (it does so when it shuts down). */
  complete(): void;
}

export interface Transport {
  request<R, V>(document: TypedDocumentString<R, V>, variables: V): Promise<R>;
  subscribe<R, V>(document: TypedDocumentString<R, V>, variables: V, sink: Sink<R>): () => void;
  close(): Promise<void>;
}

export interface TransportOptions {
  httpUrl: string;
  wsUrl: string;
  token: string;
  /** A WebSocket class for runtimes without a global one (the `ws` package on Node.js < 22). */
  webSocket?: unknown;
  fetch?: typeof fetch;
  keepAliveMs: number;
  idleCloseMs: number;
  maxInFlight: number;
  onStateChange?: (state: ConnectionState) => void;
  /**
   * Asked before an idle socket is closed: work to do first (buffered metrics), or undefined. The
   * socket closes only once it has been idle for `idleCloseMs` with nothing left to do.
   */
  beforeIdleClose?: () => Promise<void> | undefined;
}

/**
 * Close codes after which the same socket request would be refused again: the gateway's "bad request",
 * "internal error", "subprotocol not acceptable" and "subscriber already exists" (graphql-ws), and
 * WebSocket protocol errors.
 */
const FATAL_CLOSE_CODES = new Set([1002, 1003, 1007, 4004, 4005, 4400, 4406, 4409, 4500]);

/** 4401: no token before a subscribe; 4403: the token was refused (API.md §1). */
const TOKEN_CLOSE_CODES = new Set([4401, 4403]);

interface CloseLike {
  code: number;
  reason?: string;
}

function closeOf(error: unknown): CloseLike | undefined {
  if (typeof error === 'object' && error !== null && 'code' in error && typeof (error as CloseLike).code === 'number') {
    return error as CloseLike;
  }
  return undefined;
}

/** A bounded number of operations in flight: the gateway caps the operations running on one socket. */
class Gate {
  private running = 0;
  private readonly waiting: (() => void)[] = [];
  constructor(private readonly limit: number) {}

  async enter(): Promise<void> {
    if (this.running < this.limit) {
      this.running++;
      return;
    }
    await new Promise<void>((resolve) => this.waiting.push(resolve));
  }

  leave(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.running--;
  }
}

export class SocketTransport implements Transport {
  /** The graphql-ws client of the current connection; made at the first operation, dropped when idle. */
  private socketClient: SocketClient | undefined;
  private readonly gate: Gate;
  /** Operations and subscriptions running; the socket closes after `idleCloseMs` at 0. */
  private active = 0;
  private idleTimer: ReturnType<typeof setTimeout> | undefined;
  private connected = false;
  /** +1 at every acknowledged connection: an operation that saw it change may have been sent. */
  private epoch = 0;
  private everConnected = false;
  private closing = false;
  private pongTimer: ReturnType<typeof setTimeout> | undefined;
  private state: ConnectionState = 'idle';

  constructor(private readonly options: TransportOptions) {
    this.gate = new Gate(options.maxInFlight);
  }

  /**
   * A graphql-ws client that holds its socket open (`lazy: false`) until disposed; it is made only when
   * the first operation needs it, so nothing connects before that. Its own idle close would leave a
   * timer running past `close()`, so the idle close is the transport's.
   */
  private createSocketClient(): SocketClient {
    const keepAlive = this.options.keepAliveMs;
    // Events of a client already replaced (idle, or closed) are not this transport's state any more.
    let made: SocketClient | undefined;
    const current = () => made === undefined || this.socketClient === made;
    made = createClient({
      url: this.options.wsUrl,
      connectionParams: { authorization: `Bearer ${this.options.token}` },
      lazy: false,
      // Failures reach the operations that were running; nothing else is waiting for them.
      onNonLazyError: () => {},
      keepAlive,
      // The library would send every pending operation again after a reconnect: a mutation twice, a feed
      // from a stale position. So it never retries, and the client repeats only what is safe.
      retryAttempts: 0,
      ...(this.options.webSocket === undefined ? {} : { webSocketImpl: this.options.webSocket }),
      on: {
        connecting: () => {
          if (current()) this.setState(this.everConnected ? 'reconnecting' : 'connecting');
        },
        connected: () => {
          if (!current()) return;
          this.connected = true;
          this.everConnected = true;
          this.epoch++;
          this.setState('connected');
        },
        // A ping with no pong in time is a dead connection that nobody closed: end it, so it is noticed.
        ping: (received) => {
          if (!received && keepAlive > 0 && current()) {
            clearTimeout(this.pongTimer);
            this.pongTimer = setTimeout(() => made?.terminate(), keepAlive);
          }
        },
        pong: (received) => {
          if (received && current()) clearTimeout(this.pongTimer);
        },
        closed: () => {
          if (!current()) return;
          clearTimeout(this.pongTimer);
          this.connected = false;
          this.setState(this.closing ? 'closed' : 'reconnecting');
        },
      },
    });
    return made;
  }

  /** The client for one more operation, which must call `settle` once it ends. */
  private take(): { client: SocketClient; settle: () => void } {
    clearTimeout(this.idleTimer);
    this.active++;
    this.socketClient ??= this.createSocketClient();
    let settled = false;
    const settle = () => {
      if (settled) return;
      settled = true;
      if (--this.active > 0 || this.closing) return;
      this.armIdleClose();
    };
    return { client: this.socketClient, settle };
  }

  private armIdleClose(): void {
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => {
      const pending = this.options.beforeIdleClose?.();
      if (pending) {
        // Its operations keep the socket busy; once done (or failed) the idle wait starts again.
        void pending
          .catch(() => {})
          .then(() => {
            if (this.active === 0 && !this.closing && this.socketClient) this.armIdleClose();
          });
        return;
      }
      const idle = this.socketClient;
      this.socketClient = undefined;
      this.connected = false;
      clearTimeout(this.pongTimer);
      this.setState('idle');
      void Promise.resolve(idle?.dispose()).catch(() => {});
    }, this.options.idleCloseMs);
  }

  private setState(state: ConnectionState): void {
    if (state === this.state) return;
    this.state = state;
    this.options.onStateChange?.(state);
  }

  async request<R, V>(document: TypedDocumentString<R, V>, variables: V): Promise<R> {
    if (this.closing) throw new ClientClosedError();
    await this.gate.enter();
    const { client, settle } = this.take();
    try {
      const sent = this.sentTracker();
      return await new Promise<R>((resolve, reject) => {
        let result: { data?: R | null; errors?: readonly unknown[] } | undefined;
        client.subscribe<R>(
          { query: document.toString(), variables: variables as Record<string, unknown> },
          {
            next: (answer) => {
              result = answer;
            },
            error: (error) => reject(this.failure(error, sent())),
            complete: () => {
              if (result?.errors?.length) reject(errorFromGraphQL(result.errors as GraphQLErrorBody[]));
              else if (result?.data != null) resolve(result.data);
              else if (this.closing) reject(new ClientClosedError());
              else reject(new ConnectionError('The gateway ended the operation without a result', { maybeApplied: true }));
            },
          },
        );
      });
    } finally {
      settle();
      this.gate.leave();
    }
  }

  subscribe<R, V>(document: TypedDocumentString<R, V>, variables: V, sink: Sink<R>): () => void {
    if (this.closing) {
      sink.error(new ClientClosedError());
      return () => {};
    }
    const { client, settle } = this.take();
    const sent = this.sentTracker();
    let ended = false;
    const end = () => {
      ended = true;
      settle();
    };
    const dispose = client.subscribe<R>(
      { query: document.toString(), variables: variables as Record<string, unknown> },
      {
        next: (result) => {
          if (ended) return;
          if (result.errors?.length) {
            end();
            dispose();
            sink.error(errorFromGraphQL(result.errors as readonly GraphQLErrorBody[]));
          } else if (result.data != null) sink.next(result.data);
        },
        error: (error) => {
          if (ended) return;
          end();
          sink.error(this.failure(error, sent()));
        },
        complete: () => {
          if (ended) return;
          end();
          if (this.closing) sink.error(new ClientClosedError());
          else sink.complete();
        },
      },
    );
    return () => {
      end();
      dispose();
    };
  }

  /**
   * Whether an operation started now may have reached the gateway by the time it fails: it was, if the
   * socket was connected when it started or a connection was acknowledged since. One that failed while
   * connecting was never sent, so repeating it is safe even for a mutation.
   */
  private sentTracker(): () => boolean {
    const startedConnected = this.connected;
    const startEpoch = this.epoch;
    return () => startedConnected || this.epoch !== startEpoch;
  }

  /** What a socket failure means for one operation; `sent`: it may have reached the gateway. */
  private failure(error: unknown, sent: boolean): Error {
    if (this.closing) return new ClientClosedError();
    if (Array.isArray(error)) return errorFromGraphQL(error as GraphQLErrorBody[]);
    const close = closeOf(error);
    if (close && TOKEN_CLOSE_CODES.has(close.code)) {
      return new UnauthenticatedError({
        message: close.reason || 'The gateway refused the token',
        extensions: { code: 'UNAUTHENTICATED', closeCode: close.code },
      });
    }
    const detail = close ? ` (close code ${close.code}${close.reason ? `: ${close.reason}` : ''})` : '';
    if (close && FATAL_CLOSE_CODES.has(close.code)) {
      return new ConnectionError(`The gateway closed the connection${detail}`, {
        maybeApplied: sent,
        retryable: false,
        closeCode: close.code,
        cause: error,
      });
    }
    if (error instanceof StatehouseError) return error;
    return new ConnectionError(sent ? `The connection to the gateway was lost${detail}` : `The gateway cannot be reached${detail}`, {
      maybeApplied: sent,
      ...(close ? { closeCode: close.code } : {}),
      cause: error,
    });
  }

  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    clearTimeout(this.pongTimer);
    clearTimeout(this.idleTimer);
    await Promise.resolve(this.socketClient?.dispose()).catch(() => {});
    this.setState('closed');
  }
}

/** Queries and mutations as plain HTTP requests; subscriptions open the socket when the first one starts. */
export class HttpTransport implements Transport {
  private socket: SocketTransport | undefined;
  private closing = false;
  private readonly fetch: typeof fetch;

  constructor(private readonly options: TransportOptions) {
    this.fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
  }

  async request<R, V>(document: TypedDocumentString<R, V>, variables: V): Promise<R> {
    if (this.closing) throw new ClientClosedError();
    let response: Response;
    try {
      response = await this.fetch(this.options.httpUrl, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          accept: 'application/graphql-response+json, application/json',
          authorization: `Bearer ${this.options.token}`,
        },
        body: JSON.stringify({ query: document.toString(), variables }),
      });
    } catch (error) {
      throw new ConnectionError('The gateway cannot be reached', { maybeApplied: !refusedBeforeSending(error), cause: error });
    }
    type Body = { data?: R | null; errors?: readonly GraphQLErrorBody[] } | null;
    let body: Body;
    try {
      body = (await response.json()) as Body;
    } catch (error) {
      throw new ConnectionError(`The gateway answered HTTP ${response.status} without GraphQL`, { maybeApplied: true, cause: error });
    }
    if (body?.errors?.length) throw errorFromGraphQL(body.errors);
    if (body?.data == null) throw new ConnectionError(`The gateway answered HTTP ${response.status} without data`, { maybeApplied: true });
    return body.data;
  }

  subscribe<R, V>(document: TypedDocumentString<R, V>, variables: V, sink: Sink<R>): () => void {
    if (this.closing) {
      sink.error(new ClientClosedError());
      return () => {};
    }
    this.socket ??= new SocketTransport(this.options);
    return this.socket.subscribe(document, variables, sink);
  }

  async close(): Promise<void> {
    this.closing = true;
    await this.socket?.close();
  }
}

/** A connection refused (or a name that does not resolve) means the request never left. */
function refusedBeforeSending(error: unknown): boolean {
  const cause = (error as { cause?: { code?: unknown } } | null)?.cause;
  return cause?.code === 'ECONNREFUSED' || cause?.code === 'ENOTFOUND' || cause?.code === 'EAI_AGAIN';
}
