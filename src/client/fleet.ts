/** The fleet: an agent reporting as itself (heartbeats, metrics, errors, insights), and the dashboard's reads. */
import { ClientClosedError, ConnectionError } from './errors.js';
import {
  type AddInsightInput,
  AddInsightDocument,
  AgentDocument,
  type AgentFieldsFragment,
  type AgentStatus,
  AgentsDocument,
  type AgentsQueryVariables,
  type ErrorPatternFieldsFragment,
  ErrorPatternsDocument,
  type ErrorPatternsQueryVariables,
  HeartbeatDocument,
  type InsightFieldsFragment,
  InsightsDocument,
  type InsightsQueryVariables,
  MarkInsightActedUponDocument,
  type MetricInput,
  type MetricSeriesQuery,
  MetricSeriesDocument,
  type MetricSeriesQueryVariables,
  type MetricSummaryQuery,
  MetricSummaryDocument,
  type MetricSummaryQueryVariables,
  type OptimizationFieldsFragment,
  OptimizationsDocument,
  type OptimizationsQueryVariables,
  RecordMetricsDocument,
  type RecordOptimizationInput,
  RecordOptimizationDocument,
  ReportErrorDocument,
  type SystemOverviewQuery,
  SystemOverviewDocument,
  SystemStateDocument,
  UpdateSystemStateDocument,
} from './generated/graphql.js';
import type { Runtime } from './runtime.js';

export type Agent = AgentFieldsFragment;
export type ErrorPattern = ErrorPatternFieldsFragment;
export type Insight = InsightFieldsFragment;
export type OptimizationRecord = OptimizationFieldsFragment;
export type MetricSummary = MetricSummaryQuery['metricSummary'][number];
export type MetricPoint = MetricSeriesQuery['metricSeries'][number];
export type SystemOverview = SystemOverviewQuery['systemOverview'];
export type { AgentStatus, Priority } from './generated/graphql.js';

const isoOf = (at: string | Date | undefined) => (at instanceof Date ? at.toISOString() : at);

export interface HeartbeatOptions {
  /** Milliseconds between heartbeats. @default 30000 */
  every?: number;
  /** The status to report, or a function asked before each heartbeat. @default 'IDLE' */
  status?: AgentStatus | (() => AgentStatus);
  /** What the fleet should see with each heartbeat (any JSON, up to 64 KiB). */
  data?: () => unknown;
  /** A failed heartbeat (the next one is still sent). @default the client's onError */
  onError?: (error: unknown) => void;
}

/** Heartbeats running in the background until `stop()` (or the client closes). */
export class Heartbeats {
  private timer: ReturnType<typeof setTimeout> | undefined;
  private inFlight: Promise<void> = Promise.resolve();
  private stopped = false;
  /** Heartbeats the gateway acknowledged. */
  sent = 0;
  /** The last failure, until a heartbeat succeeds again. */
  lastError: unknown;
  private readonly unregister: () => void;

  constructor(
    private readonly agent: AgentApi,
    private readonly runtime: Runtime,
    private readonly options: HeartbeatOptions,
  ) {
    this.unregister = runtime.own({ stage: 0, close: () => this.stop() });
    this.beat();
  }

  private beat(): void {
    if (this.stopped) return;
    const { status = 'IDLE', data } = this.options;
    this.inFlight = this.agent
      .heartbeat(typeof status === 'function' ? status() : status, data?.())
      .then(
        () => {
          this.sent++;
          this.lastError = undefined;
        },
        (error: unknown) => {
          this.lastError = error;
          (this.options.onError ?? this.runtime.reportError)(error);
        },
      )
      .finally(() => {
        if (!this.stopped) this.timer = setTimeout(() => this.beat(), this.options.every ?? 30_000);
      });
  }

  /** Stops; with `status`, sends one last heartbeat with it (say `STOPPED`). */
  async stop(options: { status?: AgentStatus; data?: unknown } = {}): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.timer);
    this.unregister();
    await this.inFlight;
    if (options.status) await this.agent.heartbeat(options.status, options.data);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}

/** The calling agent (an AGENT token reports as itself only). */
export class AgentApi {
  constructor(private readonly runtime: Runtime) {}

  /** One heartbeat: status and anything the fleet should see. */
  async heartbeat(status: AgentStatus, data?: unknown): Promise<Agent> {
    const { heartbeat } = await this.runtime.mutate(HeartbeatDocument, { input: data === undefined ? { status } : { status, data } });
    return heartbeat;
  }

  /** A heartbeat now and then every `every` ms, until stopped. */
  startHeartbeats(options: HeartbeatOptions = {}): Heartbeats {
    return new Heartbeats(this, this.runtime, options);
  }

  /** Messages that differ only in numbers, ids and quoted strings are grouped into one pattern. */
  async reportError(input: { type: string; message: string; context?: unknown }): Promise<ErrorPattern> {
    const { reportError } = await this.runtime.mutate(ReportErrorDocument, { input });
    return reportError;
  }

  async addInsight(input: AddInsightInput): Promise<Insight> {
    const { addInsight } = await this.runtime.mutate(AddInsightDocument, { input });
    return addInsight;
  }

  async recordOptimization(input: RecordOptimizationInput): Promise<OptimizationRecord> {
    const { recordOptimization } = await this.runtime.mutate(RecordOptimizationDocument, { input });
    return recordOptimization;
  }
}

export interface MetricsOptions {
  /** Points sent in one request at most (the gateway takes up to `limits.maxMetricsPerCall`, 1000 by default). @default 500 */
  batchSize?: number;
  /** A point waits at most this long before it is sent. @default 1000 */
  flushIntervalMs?: number;
  /** Points kept while the gateway cannot be reached; beyond this the oldest are dropped (and reported). @default 10000 */
  maxBuffered?: number;
}

/**
 * Metrics of the calling agent, buffered and sent in batches: a full batch as soon as `batchSize`
 * points wait; the rest `flushIntervalMs` after the first of them, at `flush()`, when the client closes,
 * and before the client closes an idle socket (so no point waits for a socket to reopen). Each point
 * keeps the time it was recorded. A batch the gateway refuses, or that may have arrived when a connection dropped, is
 * reported (onError) and not sent again, so no point is counted twice.
 */
export class MetricsApi {
  private buffer: MetricInput[] = [];
  private timer: ReturnType<typeof setTimeout> | undefined;
  private sending: Promise<void> = Promise.resolve();
  private readonly batchSize: number;
  private readonly flushIntervalMs: number;
  private readonly maxBuffered: number;
  /** Points dropped because the buffer was full. */
  dropped = 0;

  constructor(
    private readonly runtime: Runtime,
    options: MetricsOptions = {},
  ) {
    this.batchSize = Math.max(1, options.batchSize ?? 500);
    this.flushIntervalMs = options.flushIntervalMs ?? 1_000;
    this.maxBuffered = Math.max(this.batchSize, options.maxBuffered ?? 10_000);
    runtime.own({ stage: 0, close: () => this.flush() });
  }

  /** Buffers one point; throws at once for a value JSON cannot carry (NaN, Infinity), or once the client is closing. */
  record(name: string, value: number, tags?: Record<string, unknown>, options: { unit?: string; at?: string | Date } = {}): void {
    if (this.runtime.closing) throw new ClientClosedError();
    if (!Number.isFinite(value)) throw new TypeError(`metric ${JSON.stringify(name)}: value must be a finite number, got ${value}`);
    const point: MetricInput = { name, value, at: isoOf(options.at) ?? new Date().toISOString() };
    if (tags !== undefined) point.tags = tags;
    if (options.unit !== undefined) point.unit = options.unit;
    this.buffer.push(point);
    this.trim();
    // Full batches go now; what is left over waits for the interval (or flush, close, an idle socket).
    if (this.buffer.length >= this.batchSize) this.send(false);
    else this.timer ??= setTimeout(() => void this.flush(), this.flushIntervalMs);
  }

  /** Points recorded and not yet handed to the gateway. */
  get buffered(): number {
    return this.buffer.length;
  }

  private trim(): void {
    const excess = this.buffer.length - this.maxBuffered;
    if (excess <= 0) return;
    this.buffer.splice(0, excess);
    this.dropped += excess;
    this.runtime.reportError(new Error(`statehouse/client: ${excess} metric points dropped (more than ${this.maxBuffered} waiting)`));
  }

  /** Sends every buffered point; resolves when they are sent (or reported as failed). */
  flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    return this.send(true);
  }

  /** The flush the client runs before it closes an idle socket: none when nothing waits. */
  flushIfBuffered(): Promise<void> | undefined {
    return this.buffer.length > 0 ? this.flush() : undefined;
  }

  /** Queues a send after the one in flight: every point (`all`), or only full batches. */
  private send(all: boolean): Promise<void> {
    this.sending = this.sending.then(() => this.sendBatches(all));
    return this.sending;
  }

  private async sendBatches(all: boolean): Promise<void> {
    while (this.buffer.length >= (all ? 1 : this.batchSize)) {
      const batch = this.buffer.splice(0, this.batchSize);
      try {
        await this.runtime.mutate(RecordMetricsDocument, { metrics: batch });
      } catch (error) {
        if (error instanceof ConnectionError && !error.maybeApplied && error.retryable && !this.runtime.closing) {
          // Never arrived: keep the points for the next flush.
          this.buffer.unshift(...batch);
          this.trim();
          this.timer ??= setTimeout(() => void this.flush(), this.flushIntervalMs);
        } else {
          this.runtime.reportError(error);
        }
        return;
      }
    }
  }
}

/** What a coordinator or dashboard reads about the fleet. */
export class FleetApi {
  constructor(private readonly runtime: Runtime) {}

  async agents(filter: AgentsQueryVariables = {}): Promise<Agent[]> {
    return (await this.runtime.query(AgentsDocument, filter)).agents;
  }

  async agent(id: string): Promise<Agent | null> {
    return (await this.runtime.query(AgentDocument, { id })).agent;
  }

  async metricSummary(filter: MetricSummaryQueryVariables = {}): Promise<MetricSummary[]> {
    return (await this.runtime.query(MetricSummaryDocument, filter)).metricSummary;
  }

  async metricSeries(filter: MetricSeriesQueryVariables): Promise<MetricPoint[]> {
    return (await this.runtime.query(MetricSeriesDocument, filter)).metricSeries;
  }

  async errorPatterns(filter: ErrorPatternsQueryVariables = {}): Promise<ErrorPattern[]> {
    return (await this.runtime.query(ErrorPatternsDocument, filter)).errorPatterns;
  }

  async insights(filter: InsightsQueryVariables = {}): Promise<Insight[]> {
    return (await this.runtime.query(InsightsDocument, filter)).insights;
  }

  async markInsightActedUpon(id: string): Promise<Insight> {
    return (await this.runtime.mutate(MarkInsightActedUponDocument, { id })).markInsightActedUpon;
  }

  async optimizations(filter: OptimizationsQueryVariables = {}): Promise<OptimizationRecord[]> {
    return (await this.runtime.query(OptimizationsDocument, filter)).optimizations;
  }

  /** One cheap query for a dashboard to poll. */
  async overview(): Promise<SystemOverview> {
    return (await this.runtime.query(SystemOverviewDocument, {})).systemOverview;
  }

  /** The entry system/global/state ({} if unset). */
  async systemState(): Promise<unknown> {
    return (await this.runtime.query(SystemStateDocument, {})).systemState;
  }

  /** A merge patch on system/global/state (agents need a WRITE grant on `system`). */
  async updateSystemState(patch: unknown): Promise<unknown> {
    return (await this.runtime.mutate(UpdateSystemStateDocument, { patch })).updateSystemState;
  }
}
