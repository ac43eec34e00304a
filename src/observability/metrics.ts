import { type DocumentNode, getOperationAST, GraphQLError } from 'graphql';
import { isAsyncIterable, type Plugin } from 'graphql-yoga';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { DatabaseHandle } from '../db/client.js';
import { ERROR_CODES } from '../domain/errors.js';
import { contractError } from '../graphql/errors.js';

export interface MetricsOptions {
  /**
   * Label GraphQL metrics with the operation's name too. Names are chosen by clients: at most
   * {@link MAX_OPERATION_NAMES} distinct ones are kept, later ones count as `other`.
   * @default false
   */
  operationNames?: boolean;
  /**
   * One of several worker processes on one port: `share` hands this worker's registries to the
   * primary, and /metrics answers with `gather`, the sum over every worker.
   */
  cluster?: { share(registries: Registry[]): void; gather(): Promise<string> };
}

/** What the gauges read when scraped; nothing is counted per request for them. */
export interface MetricsSources {
  database: DatabaseHandle;
  feeds: { stats(): { feeds: number; lag: bigint } };
  fanout: { stats(): { groups: number; members: number } };
  audit: { readonly pending: number };
  openSockets: () => number;
}

export interface GatewayMetrics {
  /** The GraphQL metrics and GET /metrics; first among the plugins, so refused operations count too. */
  plugin: Plugin;
  /** Stops observing the database (which may outlive the app). */
  close(): void;
}

const METRICS_ENDPOINT = '/metrics';
const MAX_OPERATION_NAMES = 200;
const MAX_OPERATION_NAME_LENGTH = 100;

const CONTRACT_CODES = new Set<string>(ERROR_CODES);
const SECONDS_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

type Transport = 'websocket' | 'http';

/** How long Node's process metrics, rendered once, answer every scrape. */
const PROCESS_METRICS_TTL_MS = 1_000;

let processMetrics: { registry: Registry; text: Promise<string> | null; renderedAt: number } | undefined;

/**
 * Node's default metrics, made once per process and shared by every app (they describe the process,
 * and each set would start its own event-loop monitor and GC observer). Reading them takes a few
 * milliseconds (/proc, heap statistics), more than a GraphQL request: so they are read at most once
 * a second however often /metrics is asked.
 */
function processMetricsOnce(): NonNullable<typeof processMetrics> {
  if (!processMetrics) {
    const registry = new Registry();
    collectDefaultMetrics({ register: registry });
    processMetrics = { registry, text: null, renderedAt: 0 };
  }
  return processMetrics;
}

function processMetricsText(): Promise<string> {
  const state = processMetricsOnce();
  const now = performance.now();
  if (state.text === null || now - state.renderedAt >= PROCESS_METRICS_TTL_MS) {
    state.renderedAt = now;
    state.text = state.registry.metrics();
  }
  return state.text;
}

/** An app's own metrics, rendered at each scrape, followed by the process's; in a worker, every worker's. */
class GatewayRegistry extends Registry {
  gather: (() => Promise<string>) | undefined;

  override async metrics(): Promise<string> {
    if (this.gather) return this.gather();
    const [own, process] = await Promise.all([super.metrics(), processMetricsText()]);
    return `${own}\n${process}`;
  }
}

type Phase = 'parse' | 'validate' | 'context' | 'execute' | 'subscribe';

/** The contract code of an error counted in `phase`, as its caller is answered; anything else was masked as internal. */
function codeOf(phase: Phase, error: unknown): string {
  // A document that does not parse (a syntax error) or validate is the caller's malformed request;
  // said here, so a junk document is not parsed a second time to name its field (contractError).
  if (phase === 'validate' || (phase === 'parse' && error instanceof GraphQLError)) return 'BAD_USER_INPUT';
  const code = error === undefined ? undefined : contractError(error)?.extensions.code;
  return typeof code === 'string' && CONTRACT_CODES.has(code) ? code : 'INTERNAL_SERVER_ERROR';
}

/** Client-chosen operation names, bounded: the first distinct ones are kept, the rest are `other`. */
class OperationNames {
  private readonly seen = new Set<string>();

  label(name: string | undefined): string {
    if (name === undefined) return 'anonymous';
    if (this.seen.has(name)) return name;
    if (this.seen.size >= MAX_OPERATION_NAMES || name.length > MAX_OPERATION_NAME_LENGTH) return 'other';
    this.seen.add(name);
    return name;
  }
}

interface GraphqlMetrics {
  requests: Counter;
  durations: Histogram;
  errors: Counter;
  names: OperationNames | null;
  /** Open subscriptions per transport. */
  open: Record<Transport, number>;
}

type Outcome = 'success' | 'error';

/**
 * The metric children of one operation type (and name), made on first use: counting an operation is
 * then a property read, rather than prom-client's hashing and checking of a label object per sample.
 */
class Line {
  private readonly ended: Partial<Record<Outcome, { requests: Counter.Internal; durations: Histogram.Internal<string> }>> = {};
  private readonly errors = new Map<string, Counter.Internal>();

  constructor(
    private readonly metrics: GraphqlMetrics,
    private readonly labels: string[],
  ) {}

  end(outcome: Outcome): { requests: Counter.Internal; durations: Histogram.Internal<string> } {
    return (this.ended[outcome] ??= {
      requests: this.metrics.requests.labels(...this.labels, outcome),
      durations: this.metrics.durations.labels(...this.labels, outcome),
    });
  }

  error(phase: Phase, code: string): Counter.Internal {
    const key = `${phase} ${code}`;
    let child = this.errors.get(key);
    if (!child) this.errors.set(key, (child = this.metrics.errors.labels(...this.labels, phase, code)));
    return child;
  }
}

/** One operation being counted: its line of metrics, found once, and whether any of its results held an error. */
class Counted {
  private found: Line | undefined;
  failed = false;

  constructor(
    private readonly metrics: GraphqlMetrics,
    private readonly lines: Map<string, Line>,
    private readonly document: DocumentNode | null,
    private readonly operationName: string | undefined,
  ) {}

  /** By operationType (and operationName when asked for). */
  private line(): Line {
    if (!this.found) {
      const operation = this.document ? getOperationAST(this.document, this.operationName) : null;
      const labels = [operation?.operation ?? 'unknown'];
      if (this.metrics.names) labels.push(this.metrics.names.label(operation?.name?.value));
      const key = labels.join(' ');
      this.found = this.lines.get(key);
      if (!this.found) this.lines.set(key, (this.found = new Line(this.metrics, labels)));
    }
    return this.found;
  }

  error(phase: Phase, error?: unknown): void {
    this.line().error(phase, codeOf(phase, error)).inc();
  }

  /** A result: each error it holds counts, in phase `execute` (a subscription's events too). */
  result(result: { errors?: readonly unknown[] }): void {
    if (!result.errors?.length) return;
    this.failed = true;
    for (const error of result.errors) this.error('execute', error);
  }

  /** The operation ended: counted, and for queries and mutations timed since `start` (Date.now()). */
  end(start: number | null): void {
    const { requests, durations } = this.line().end(this.failed ? 'error' : 'success');
    requests.inc();
    if (start !== null) durations.observe((Date.now() - start) / 1000);
  }
}

/**
 * The GraphQL metrics (as `@envelop/prometheus` defines them, which the gateway used before): operations by type and
 * outcome, their duration, and errors by phase and code. One plugin, labels worked out once per operation and
 * metric children cached (see Line). Only documents parsed through the gateway are counted.
 */
function useGraphqlMetrics(metrics: GraphqlMetrics): Plugin {
  const counted = new WeakMap<object, Counted>();
  // Bounded: operation types, times the operation names kept (at most MAX_OPERATION_NAMES and `other`).
  const lines = new Map<string, Line>();
  return {
    onPluginInit: ({ registerContextErrorHandler }) => {
      registerContextErrorHandler(({ context, error }) => counted.get(context)?.error('context', error));
    },
    onParse:
      ({ context }) =>
      ({ result }) => {
        if (result === null || result instanceof Error) {
          new Counted(metrics, lines, null, undefined).error('parse', result ?? undefined);
          return;
        }
        const { params } = context as { params?: { operationName?: string | null } };
        counted.set(context, new Counted(metrics, lines, result, params?.operationName ?? undefined));
      },
    onValidate: ({ context }) => {
      const operation = counted.get(context);
      if (!operation) return;
      return ({ valid }) => {
        if (!valid) operation.error('validate');
      };
    },
    onExecute: ({ args }) => {
      const operation = counted.get(args.contextValue as object);
      if (!operation) return;
      const start = Date.now();
      return {
        onExecuteDone: ({ result }) => {
          if (!isAsyncIterable(result)) {
            operation.result(result);
            return operation.end(start);
          }
          return { onNext: ({ result: next }) => operation.result(next), onEnd: () => operation.end(start) };
        },
      };
    },
    onSubscribe: ({ args }) => {
      const operation = counted.get(args.contextValue as object);
      const transport: Transport = (args.contextValue as { request?: Request }).request ? 'http' : 'websocket';
      let closed = false;
      const close = () => {
        if (closed) return;
        closed = true;
        metrics.open[transport]--;
      };
      return {
        onSubscribeResult: ({ result }) => {
          if (!isAsyncIterable(result)) {
            operation?.result(result);
            return operation?.end(null);
          }
          metrics.open[transport]++;
          return {
            onNext: ({ result: next }) => operation?.result(next),
            onEnd: () => {
              close();
              operation?.end(null);
            },
          };
        },
        // A stream that throws is not ended through onEnd: it counts as an error of phase subscribe, not as an operation.
        onSubscribeError: () => {
          if (operation) {
            operation.failed = true;
            operation.error('subscribe');
          }
          close();
        },
      };
    },
  };
}

/** GET /metrics: the registry's text. */
function useMetricsEndpoint(registry: Registry): Plugin {
  return {
    onRequest: ({ url, fetchAPI, endResponse }) => {
      if (url.pathname !== METRICS_ENDPOINT) return;
      return registry.metrics().then((text) => {
        endResponse(new fetchAPI.Response(text, { headers: { 'Content-Type': registry.contentType } }));
      });
    },
  };
}

/**
 * The gateway's Prometheus metrics, in a registry of its own (several apps may share a process):
 * GraphQL operations with bounded labels only — operation type, outcome, error code, phase, never a
 * tenant, namespace, key or value — and gauges of sockets, subscriptions, fan-out, change feeds, the
 * database and the audit buffer, read when scraped.
 */
export function createMetrics(sources: MetricsSources, options: MetricsOptions = {}): GatewayMetrics {
  const registry = new GatewayRegistry();
  if (options.cluster) {
    options.cluster.share([registry, processMetricsOnce().registry]);
    registry.gather = options.cluster.gather;
  }
  const open: Record<Transport, number> = { websocket: 0, http: 0 };
  const operationLabels = options.operationNames ? ['operationType', 'operationName'] : ['operationType'];
  const requests = new Counter({
    name: 'graphql_envelop_request',
    help: 'GraphQL operations executed, by type and outcome; a subscription counts when its stream ends (a shared WebSocket one, when it joins its fan-out group)',
    labelNames: [...operationLabels, 'outcome'],
    registers: [registry],
  });
  const durations = new Histogram({
    name: 'graphql_envelop_request_duration',
    help: 'Seconds from the start of execution to the result, of queries and mutations, by type and outcome',
    labelNames: [...operationLabels, 'outcome'],
    buckets: SECONDS_BUCKETS,
    registers: [registry],
  });
  const errors = new Counter({
    name: 'graphql_envelop_error_result',
    help: 'GraphQL errors answered, by the contract code (extensions.code), the phase that produced them and the operation type',
    labelNames: [...operationLabels, 'phase', 'code'],
    registers: [registry],
  });
  const graphql = useGraphqlMetrics({
    requests,
    durations,
    errors,
    names: options.operationNames ? new OperationNames() : null,
    open,
  });

  const gauge = (name: string, help: string, read: () => number | bigint) =>
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        this.set(Number(read()));
      },
    });
  gauge('statehouse_websocket_connections', 'Open WebSocket connections', sources.openSockets);
  new Gauge({
    name: 'statehouse_subscriptions',
    help: 'Open GraphQL subscriptions, by transport (websocket: graphql-ws; http: SSE or multipart)',
    labelNames: ['transport'],
    registers: [registry],
    collect() {
      this.set({ transport: 'websocket' }, open.websocket + sources.fanout.stats().members);
      this.set({ transport: 'http' }, open.http);
    },
  });
  gauge(
    'statehouse_fanout_groups',
    'Fan-out groups: WebSocket entryChanged subscriptions sharing one execution',
    () => sources.fanout.stats().groups,
  );
  gauge('statehouse_fanout_members', 'WebSocket subscriptions served by a fan-out group', () => sources.fanout.stats().members);
  gauge(
    'statehouse_change_feeds',
    'Tenant change feeds this process reads (one per tenant with live subscribers)',
    () => sources.feeds.stats().feeds,
  );
  gauge(
    'statehouse_change_feed_lag_revisions',
    'Largest gap over the open change feeds between the newest revision notified and the last delivered; 0 when caught up',
    () => sources.feeds.stats().lag,
  );

  const { database } = sources;
  gauge(
    'statehouse_db_pool_max_connections',
    'Connections the database pool may open (PGlite: 1, one statement at a time)',
    () => database.load.maxConnections,
  );
  gauge('statehouse_db_statements_in_flight', 'Statements outside transactions sent and not yet answered', () => database.load.statements);
  gauge(
    'statehouse_db_transactions_open',
    'Transactions begun and not yet ended; each holds a connection',
    () => database.load.transactions,
  );
  const queryDuration = new Histogram({
    name: 'statehouse_db_query_duration_seconds',
    help: 'Seconds from sending a statement, or beginning a transaction, to its answer (waiting for a connection included)',
    labelNames: ['kind'],
    buckets: SECONDS_BUCKETS,
    registers: [registry],
  });
  const statement = queryDuration.labels({ kind: 'statement' });
  const transaction = queryDuration.labels({ kind: 'transaction' });
  const stopObserving = database.observeQueries((kind, seconds) => (kind === 'statement' ? statement : transaction).observe(seconds));

  gauge('statehouse_audit_pending_records', 'Audit records not yet stored (buffered, or being written)', () => sources.audit.pending);

  return {
    plugin: {
      onPluginInit: ({ addPlugin }) => {
        addPlugin(graphql);
        addPlugin(useMetricsEndpoint(registry));
      },
    },
    close: stopObserving,
  };
}
