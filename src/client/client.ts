/**
 * `connect()`: one client per token, over one graphql-ws socket (or HTTP), with the retry rules every
 * agent would otherwise write itself. Reads are repeated after a lost connection; a write is repeated
 * only when it surely never reached the gateway; RATE_LIMITED is waited out (the gateway refuses those
 * before running anything). Closing the client ends everything it started.
 */
import { ClientClosedError, ConnectionError, LockHeldError, RateLimitedError } from './errors.js';
import { type TypedDocumentString, ViewerDocument, type ViewerQuery } from './generated/graphql.js';
import { AgentApi, FleetApi, MetricsApi, type MetricsOptions } from './fleet.js';
import { acquireLock, type Lock, type LockOptions } from './lock.js';
import type { Owned, RetryOptions, Runtime } from './runtime.js';
import { CommitBuilder, Namespace } from './state.js';
import { backoffDelay, sleep } from './timing.js';
import { type ConnectionState, HttpTransport, type Sink, SocketTransport, type Transport } from './transport.js';
import { type ChangeStream, openChangeStream, type WatchOptions } from './watch.js';

export interface ConnectOptions {
  /** The gateway's GraphQL endpoint: `http://host:4000/graphql` (or `ws://…`, `https://…`, `wss://…`; a bare origin gets `/graphql`). */
  url: string;
  /** An agent, admin or reader token. */
  token: string;
  /**
   * `websocket` (default): everything over one socket, opened at the first operation. `http`: queries
   * and mutations as HTTP requests (for one-shot scripts); subscriptions still use a socket.
   */
  transport?: 'websocket' | 'http';
  /** A WebSocket class where there is no global one (Node.js < 22: `import WebSocket from 'ws'`). */
  webSocket?: unknown;
  /** A fetch function for the HTTP transport. @default globalThis.fetch */
  fetch?: typeof fetch;
  retry?: RetryOptions;
  /** Ping the gateway this often; a ping without a pong in as long closes the socket so it reconnects. @default 10000 */
  keepAliveMs?: number;
  /** Close the socket after this long without operations (it reopens on the next). @default 30000 */
  idleCloseMs?: number;
  /** Operations in flight at once; more wait (the gateway runs at most 100 per socket). @default 50 */
  maxInFlight?: number;
  metrics?: MetricsOptions;
  /** The socket's state, for a status line. */
  onConnectionChange?: (state: ConnectionState) => void;
  /** Failures in the background that nobody awaits (heartbeats, metric batches). @default console.error */
  onError?: (error: unknown) => void;
}

export type Viewer = ViewerQuery['viewer'];

/**
 * The largest `revision` of an answer's records — root fields, and the `entries` or `nodes` lists in
 * them — or `floor` if none is larger. JSON values are not looked into: a `revision` there is the
 * caller's data.
 */
function newestRevision(record: unknown, floor: bigint, root = true): bigint {
  if (Array.isArray(record)) return record.reduce((newest: bigint, item) => newestRevision(item, newest, false), floor);
  if (typeof record !== 'object' || record === null) return floor;
  let newest = floor;
  for (const [name, field] of Object.entries(record)) {
    if (root || name === 'entries' || name === 'nodes') newest = newestRevision(field, newest, false);
    else if (name === 'revision' && typeof field === 'string' && /^\d+$/.test(field) && BigInt(field) > newest) newest = BigInt(field);
  }
  return newest;
}

/** `http(s)` and `ws(s)` URLs of the endpoint, whichever was given. */
function endpoints(url: string): { httpUrl: string; wsUrl: string } {
  const parsed = new URL(url);
  if (parsed.pathname === '/' || parsed.pathname === '') parsed.pathname = '/graphql';
  const secure = parsed.protocol === 'https:' || parsed.protocol === 'wss:';
  if (!['http:', 'https:', 'ws:', 'wss:'].includes(parsed.protocol)) throw new TypeError(`Not an http(s) or ws(s) URL: ${url}`);
  parsed.protocol = secure ? 'https:' : 'http:';
  const httpUrl = parsed.toString();
  parsed.protocol = secure ? 'wss:' : 'ws:';
  return { httpUrl, wsUrl: parsed.toString() };
}

export class StatehouseClient {
  /** The calling agent: heartbeats, errors, insights, optimizations. */
  readonly agent: AgentApi;
  /** Metrics of the calling agent, batched. */
  readonly metrics: MetricsApi;
  /** Reads about the fleet, as a dashboard makes them. */
  readonly fleet: FleetApi;

  private readonly transport: Transport;
  private readonly runtime: Runtime;
  private readonly owned = new Set<Owned>();
  private readonly closeController = new AbortController();
  private closing: Promise<void> | undefined;
  private seenRevision = 0n;

  constructor(options: ConnectOptions) {
    if (typeof options.token !== 'string' || options.token === '') throw new TypeError('connect: a token is required');
    const { httpUrl, wsUrl } = endpoints(options.url);
    const transportOptions = {
      httpUrl,
      wsUrl,
      token: options.token,
      webSocket: options.webSocket,
      ...(options.fetch ? { fetch: options.fetch } : {}),
      keepAliveMs: options.keepAliveMs ?? 10_000,
      idleCloseMs: options.idleCloseMs ?? 30_000,
      maxInFlight: options.maxInFlight ?? 50,
      ...(options.onConnectionChange ? { onStateChange: options.onConnectionChange } : {}),
      beforeIdleClose: () => this.metrics.flushIfBuffered(),
    };
    this.transport = options.transport === 'http' ? new HttpTransport(transportOptions) : new SocketTransport(transportOptions);
    const retry = { attempts: 8, initialDelayMs: 200, maxDelayMs: 5_000, ...options.retry };
    const onError = options.onError ?? ((error: unknown) => console.error('statehouse/client:', error));
    const client = this;
    this.runtime = {
      retry,
      closeSignal: this.closeController.signal,
      get closing() {
        return client.closing !== undefined;
      },
      get seenRevision() {
        return client.seenRevision;
      },
      query: (document, variables) => this.run(document, variables, false),
      mutate: (document, variables) => this.run(document, variables, true),
      subscribe: <R, V>(document: TypedDocumentString<R, V>, variables: V, sink: Sink<R>) =>
        this.transport.subscribe(document, variables, sink),
      own: (resource) => {
        this.owned.add(resource);
        return () => this.owned.delete(resource);
      },
      reportError: (error) => onError(error),
    };
    this.agent = new AgentApi(this.runtime);
    this.metrics = new MetricsApi(this.runtime, options.metrics);
    this.fleet = new FleetApi(this.runtime);
  }

  private async run<R, V>(document: TypedDocumentString<R, V>, variables: V, mutation: boolean): Promise<R> {
    for (let attempt = 0; ; attempt++) {
      if (this.closeController.signal.aborted) throw new ClientClosedError();
      try {
        const result = await this.transport.request(document, variables);
        this.seenRevision = newestRevision(result, this.seenRevision);
        return result;
      } catch (error) {
        const wait = attempt < this.runtime.retry.attempts ? this.retryDelay(error, attempt, mutation) : undefined;
        if (wait === undefined) throw error;
        await sleep(wait, this.closeController.signal);
      }
    }
  }

  /** How long to wait before repeating a failed operation, or undefined when it must not be repeated. */
  private retryDelay(error: unknown, attempt: number, mutation: boolean): number | undefined {
    if (error instanceof RateLimitedError) return error.retryAfterMs === undefined ? undefined : error.retryAfterMs + Math.random() * 50;
    if (error instanceof ConnectionError && error.retryable && !(mutation && error.maybeApplied))
      return backoffDelay(attempt, this.runtime.retry);
    return undefined;
  }

  /** One namespace's state. */
  namespace<T = unknown>(name: string): Namespace<T> {
    return new Namespace<T>(this.runtime, name);
  }

  /** A transaction over several namespaces: give each operation its `{ namespace }`. */
  commit(): CommitBuilder {
    return new CommitBuilder(this.runtime, undefined);
  }

  /** Changes in every namespace the token can read (or those of `namespace`), as a resuming stream. */
  watch<T = unknown>(options: WatchOptions = {}): ChangeStream<T> {
    return openChangeStream<T>(this.runtime, options);
  }

  /** Acquires the lock `name`, waiting while someone else holds it; renewed until released. */
  lock(name: string, options: LockOptions = {}): Promise<Lock> {
    return acquireLock(this.runtime, name, options);
  }

  /** The lock if it is free now, else null. */
  async tryLock(name: string, options: Omit<LockOptions, 'waitMs'> = {}): Promise<Lock | null> {
    try {
      return await acquireLock(this.runtime, name, { ...options, waitMs: 0 });
    } catch (error) {
      if (error instanceof LockHeldError) return null;
      throw error;
    }
  }

  /** Who the token speaks for: tenant, role, agent, and the namespaces it can reach. */
  async viewer(): Promise<Viewer> {
    return (await this.runtime.query(ViewerDocument, {})).viewer;
  }

  /**
   * Ends everything: stops heartbeats, sends buffered metrics, releases held locks, ends watches,
   * closes the socket. Operations after this throw ClientClosedError. Idempotent.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      for (const stage of [0, 1] as const) {
        const now = [...this.owned].filter((resource) => resource.stage === stage);
        await Promise.allSettled(now.map((resource) => resource.close()));
      }
      this.closeController.abort(new ClientClosedError());
      await this.transport.close();
    })();
    return this.closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/**
 * A client for one token. Nothing is sent until the first operation.
 *
 * ```ts
 * await using client = connect({ url: 'http://127.0.0.1:4000/graphql', token: process.env.STATEHOUSE_TOKEN });
 * const numbers = client.namespace('numbers');
 * await numbers.set('n', 42);
 * ```
 */
export function connect(options: ConnectOptions): StatehouseClient {
  return new StatehouseClient(options);
}
