import { createCounter, createHistogram, type FillLabelsFnParams, usePrometheus } from '@graphql-yoga/plugin-prometheus';
import { getOperationAST, GraphQLError } from 'graphql';
import type { Plugin } from 'graphql-yoga';
import { collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
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
  /** Yoga's Prometheus plugin, serving GET /metrics; first among the plugins, so refused operations count too. */
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
type Operation = { operationType: string; operationName?: string };

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

/** The contract code of an error the plugin counts, as its caller is answered; anything else was masked as internal. */
function codeOf({ error, errorPhase }: FillLabelsFnParams): string {
  // A document that does not parse (a syntax error) or validate is the caller's malformed request;
  // said here, so a junk document is not parsed a second time to name its field (contractError).
  // The plugin passes no error for a failed validation.
  if (errorPhase === 'validate' || (errorPhase === 'parse' && error instanceof GraphQLError)) return 'BAD_USER_INPUT';
  const code = error && contractError(error)?.extensions.code;
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

/**
 * What the Prometheus plugin's metrics cannot see by themselves: whether an operation failed (its
 * outcome label) and the subscriptions open per transport. Runs before the plugin's own hooks, so
 * each result is known when the plugin counts it.
 */
function useOutcomes(failed: WeakSet<object>, open: Record<Transport, number>): Plugin {
  const note = (context: object, result: { errors?: readonly unknown[] }) => {
    if (result.errors?.length) failed.add(context);
  };
  return {
    onExecute: ({ args }) => ({
      onExecuteDone: ({ result }) => {
        const context = args.contextValue as object;
        if (!(Symbol.asyncIterator in result)) return note(context, result);
        return { onNext: ({ result: next }) => note(context, next) };
      },
    }),
    onSubscribe: ({ args }) => {
      const context = args.contextValue as { request?: Request };
      const transport: Transport = context.request ? 'http' : 'websocket';
      let closed = false;
      const close = () => {
        if (closed) return;
        closed = true;
        open[transport]--;
      };
      return {
        onSubscribeResult: ({ result }) => {
          if (!(Symbol.asyncIterator in result)) return note(context, result);
          open[transport]++;
          return { onNext: ({ result: next }) => note(context, next), onEnd: close };
        },
        // A stream that throws is not ended through onEnd.
        onSubscribeError: () => {
          failed.add(context);
          close();
        },
      };
    },
  };
}

/**
 * The gateway's Prometheus metrics, in a registry of its own (several apps may share a process):
 * GraphQL operations through Yoga's Prometheus plugin, with bounded labels only — operation type,
 * outcome, error code, phase, never a tenant, namespace, key or value — and gauges of sockets,
 * subscriptions, fan-out, change feeds, the database and the audit buffer, read when scraped.
 */
export function createMetrics(sources: MetricsSources, options: MetricsOptions = {}): GatewayMetrics {
  const registry = new GatewayRegistry();
  if (options.cluster) {
    options.cluster.share([registry, processMetricsOnce().registry]);
    registry.gather = options.cluster.gather;
  }
  const failed = new WeakSet<object>();
  const open: Record<Transport, number> = { websocket: 0, http: 0 };
  const names = options.operationNames ? new OperationNames() : null;
  const operationLabels = names ? ['operationType', 'operationName'] : ['operationType'];

  function operationOf(params: FillLabelsFnParams, context: { params?: { operationName?: string } } | undefined): Operation {
    const operation = params.document ? getOperationAST(params.document, context?.params?.operationName) : null;
    const labels: Operation = { operationType: operation?.operation ?? 'unknown' };
    if (names) labels.operationName = names.label(operation?.name?.value);
    return labels;
  }
  const outcomeLabels = (params: FillLabelsFnParams, context: object) => ({
    ...operationOf(params, context),
    outcome: failed.has(context) ? 'error' : 'success',
  });

  const prometheus = usePrometheus({
    registry,
    endpoint: METRICS_ENDPOINT,
    metrics: {
      graphql_envelop_request: createCounter({
        registry,
        counter: {
          name: 'graphql_envelop_request',
          help: 'GraphQL operations executed, by type and outcome; a subscription counts when its stream ends (a shared WebSocket one, when it joins its fan-out group)',
          labelNames: [...operationLabels, 'outcome'],
        },
        fillLabelsFn: outcomeLabels,
        phases: ['execute', 'subscribe'],
      }),
      graphql_envelop_request_duration: createHistogram({
        registry,
        histogram: {
          name: 'graphql_envelop_request_duration',
          help: 'Seconds from the start of execution to the result, of queries and mutations, by type and outcome',
          labelNames: [...operationLabels, 'outcome'],
          buckets: SECONDS_BUCKETS,
        },
        fillLabelsFn: outcomeLabels,
        phases: ['execute'],
      }),
      graphql_envelop_error_result: createCounter({
        registry,
        counter: {
          name: 'graphql_envelop_error_result',
          help: 'GraphQL errors answered, by the contract code (extensions.code), the phase that produced them and the operation type',
          labelNames: [...operationLabels, 'phase', 'code'],
        },
        fillLabelsFn: (params, context) => ({
          ...operationOf(params, context),
          phase: params.errorPhase ?? 'subscribe',
          code: codeOf(params),
        }),
        phases: ['parse', 'validate', 'context', 'execute', 'subscribe'],
      }),
      // Off: per-phase timings and the summary cost every request more than they tell; the
      // deprecation counter walks every document; the HTTP histogram would label by URL, which
      // holds a GET request's query and variables.
      graphql_envelop_request_time_summary: false,
      graphql_envelop_phase_parse: false,
      graphql_envelop_phase_validate: false,
      graphql_envelop_phase_context: false,
      graphql_envelop_phase_execute: false,
      graphql_envelop_phase_subscribe: false,
      graphql_envelop_execute_resolver: false,
      graphql_envelop_deprecated_field: false,
      graphql_envelop_schema_change: false,
      graphql_yoga_http_duration: false,
    },
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
        addPlugin(useOutcomes(failed, open));
        addPlugin(prometheus);
      },
    },
    close: stopObserving,
  };
}
