import { builder } from '../../graphql/builder.js';
import { live, untilRevoked } from '../../graphql/live.js';
import {
  DEFAULT_WINDOW_HOURS,
  MAX_SERIES_BUCKETS,
  type Metric,
  type MetricPoint,
  type MetricSummary,
  reviveMetric,
} from './metrics.service.js';
import { refusedTo } from '../../graphql/refusals.js';

const MetricRef = builder.objectRef<Metric>('Metric').implement({
  description: 'One recorded metric point',
  fields: (t) => ({
    name: t.exposeString('name', { description: 'The metric, such as latency_ms' }),
    value: t.exposeFloat('value', { description: 'The measured value' }),
    unit: t.exposeString('unit', { nullable: true, description: 'Its unit as reported, such as ms; null when none was given' }),
    tags: t.expose('tags', { type: 'JSON', nullable: true, description: 'The JSON object given with the point' }),
    agentId: t.exposeID('agentId', { nullable: true, description: 'The agent that recorded it' }),
    at: t.expose('at', { type: 'DateTime', description: 'When it was measured' }),
  }),
});

const MetricSummaryRef = builder.objectRef<MetricSummary>('MetricSummary').implement({
  description:
    'Aggregates over a window. Percentiles interpolate linearly between the nearest ranks at position p × (n − 1) (PostgreSQL percentile_cont)',
  fields: (t) => ({
    name: t.exposeString('name', { description: 'The metric' }),
    unit: t.exposeString('unit', { nullable: true, description: 'The unit of the latest point' }),
    agentId: t.exposeID('agentId', { nullable: true, description: 'The agent, with groupByAgent; null when summed over agents' }),
    count: t.exposeInt('count', { description: 'Points in the window' }),
    min: t.exposeFloat('min', { description: 'The smallest value' }),
    max: t.exposeFloat('max', { description: 'The largest value' }),
    avg: t.exposeFloat('avg', { description: 'The arithmetic mean' }),
    p50: t.exposeFloat('p50', { description: 'The median' }),
    p95: t.exposeFloat('p95', { description: 'The 95th percentile' }),
    p99: t.exposeFloat('p99', { description: 'The 99th percentile' }),
    last: t.exposeFloat('last', { description: 'The value of the latest point' }),
  }),
});

const MetricPointRef = builder.objectRef<MetricPoint>('MetricPoint').implement({
  description: 'The points of one time bucket of a series',
  fields: (t) => ({
    at: t.expose('at', { type: 'DateTime', description: "The bucket's start; buckets are aligned to the Unix epoch" }),
    count: t.exposeInt('count', { description: 'Points in the bucket (1 or more: empty buckets are left out)' }),
    avg: t.exposeFloat('avg', { description: 'Their arithmetic mean' }),
    min: t.exposeFloat('min', { description: 'The smallest' }),
    max: t.exposeFloat('max', { description: 'The largest' }),
  }),
});

const MetricInput = builder.inputType('MetricInput', {
  description: 'One metric point',
  fields: (t) => ({
    name: t.string({ required: true, description: 'The metric, 1 to 200 characters, such as latency_ms' }),
    value: t.float({ required: true, description: 'A finite number' }),
    unit: t.string({ description: 'Its unit, 1 to 50 characters, such as ms' }),
    tags: t.field({ type: 'JSON', description: 'A JSON object, at most 4 KiB' }),
    at: t.field({
      type: 'DateTime',
      description: "When it was measured; default: now. At most 5 minutes ahead, and not older than the tenant's metricsRetentionHours",
    }),
  }),
});

const id = (value: string | number | null | undefined) => (value === null || value === undefined ? value : String(value));

builder.queryFields((t) => ({
  metricSummary: t.withAuth({ authenticated: true }).field({
    type: [MetricSummaryRef],
    description: `Count, min, max, mean, percentiles and last value per metric (and agent, with groupByAgent) over the points since \`since\` (default: the last ${DEFAULT_WINDOW_HOURS} hours), by name. Any valid token`,
    args: {
      name: t.arg.string({ description: 'Only this metric; unset: every metric' }),
      agentId: t.arg.id({ description: 'Only the points of this agent (registered, else BAD_USER_INPUT)' }),
      since: t.arg({ type: 'DateTime', description: 'Start of the window; never further back than metricsRetentionHours' }),
      groupByAgent: t.arg.boolean({ defaultValue: false, description: 'One summary per metric and agent instead of per metric' }),
    },
    resolve: (_root, args, context) => context.services.metrics.summary(context.principal.tenantId, { ...args, agentId: id(args.agentId) }),
  }),
  metricSeries: t.withAuth({ authenticated: true }).field({
    type: [MetricPointRef],
    description: `A metric over time: its non-empty buckets of bucketSeconds since \`since\` (default: the last ${DEFAULT_WINDOW_HOURS} hours), oldest first. A window of more than ${MAX_SERIES_BUCKETS} buckets is BAD_USER_INPUT. Any valid token`,
    args: {
      name: t.arg.string({ required: true, description: 'The metric' }),
      agentId: t.arg.id({ description: 'Only the points of this agent (registered, else BAD_USER_INPUT)' }),
      since: t.arg({ type: 'DateTime', description: 'Start of the window; never further back than metricsRetentionHours' }),
      bucketSeconds: t.arg.int({ defaultValue: 60, description: 'Bucket width in seconds, 1 to 31622400 (366 days)' }),
    },
    resolve: (_root, args, context) => context.services.metrics.series(context.principal.tenantId, { ...args, agentId: id(args.agentId) }),
  }),
}));

builder.mutationFields((t) => ({
  recordMetrics: t.withAuth({ agent: true }).int({
    description:
      "Stores the calling agent's points in one statement and returns how many were stored; one bad point refuses them all (BAD_USER_INPUT naming it). Points older than metricsRetentionHours are removed in the background. AGENT tokens only, as themselves",
    args: {
      metrics: t.arg({
        type: [MetricInput],
        required: true,
        description: "Up to the tenant's limits.maxMetricsPerCall (1000 by default) points",
      }),
    },
    unauthorizedError: refusedTo('record metrics'),
    resolve: (_root, args, context) => context.services.metrics.record(context.principal.tenantId, context.principal.agentId, args.metrics),
  }),
}));

builder.subscriptionFields((t) => ({
  metricRecorded: t.withAuth({ authenticated: true }).field({
    type: MetricRef,
    description: 'Each point as it is recorded (from now on: nothing is replayed). Any valid token',
    args: {
      name: t.arg.string({ description: 'Only this metric' }),
      agentId: t.arg.id({ description: 'Only the points of this agent (registered, else BAD_USER_INPUT)' }),
    },
    subscribe: async (_root, args, context) =>
      untilRevoked(
        context,
        await context.services.metrics.watch(context.principal.tenantId, { name: args.name, agentId: id(args.agentId) }),
      ),
    resolve: live(reviveMetric),
  }),
}));
