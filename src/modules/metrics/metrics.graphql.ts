import { builder } from '../../graphql/builder.js';
import { live, untilRevoked } from '../../graphql/live.js';
import { principalOf } from '../../graphql/principal.js';
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
  fields: (t) => ({
    name: t.exposeString('name'),
    value: t.exposeFloat('value'),
    unit: t.exposeString('unit', { nullable: true }),
    tags: t.expose('tags', { type: 'JSON', nullable: true }),
    agentId: t.exposeID('agentId', { nullable: true }),
    at: t.expose('at', { type: 'DateTime' }),
  }),
});

const MetricSummaryRef = builder.objectRef<MetricSummary>('MetricSummary').implement({
  description:
    'Aggregates over a window. Percentiles interpolate linearly between the nearest ranks at position p × (n − 1) (PostgreSQL percentile_cont)',
  fields: (t) => ({
    name: t.exposeString('name'),
    unit: t.exposeString('unit', { nullable: true, description: 'The unit of the latest point' }),
    agentId: t.exposeID('agentId', { nullable: true, description: 'Null when summed over agents' }),
    count: t.exposeInt('count'),
    min: t.exposeFloat('min'),
    max: t.exposeFloat('max'),
    avg: t.exposeFloat('avg'),
    p50: t.exposeFloat('p50'),
    p95: t.exposeFloat('p95'),
    p99: t.exposeFloat('p99'),
    last: t.exposeFloat('last', { description: 'The value of the latest point' }),
  }),
});

const MetricPointRef = builder.objectRef<MetricPoint>('MetricPoint').implement({
  fields: (t) => ({
    at: t.expose('at', { type: 'DateTime', description: "The bucket's start; buckets are aligned to the Unix epoch" }),
    count: t.exposeInt('count'),
    avg: t.exposeFloat('avg'),
    min: t.exposeFloat('min'),
    max: t.exposeFloat('max'),
  }),
});

const MetricInput = builder.inputType('MetricInput', {
  fields: (t) => ({
    name: t.string({ required: true }),
    value: t.float({ required: true }),
    unit: t.string(),
    tags: t.field({ type: 'JSON', description: 'A JSON object, at most 4 KiB' }),
    at: t.field({ type: 'DateTime', description: 'Default: now; at most 5 minutes ahead, and within the retention' }),
  }),
});

const id = (value: string | number | null | undefined) => (value === null || value === undefined ? value : String(value));

builder.queryFields((t) => ({
  metricSummary: t.field({
    type: [MetricSummaryRef],
    description: `Per metric name (and agent, with groupByAgent) over the points since \`since\` (default: the last ${DEFAULT_WINDOW_HOURS} hours)`,
    args: {
      name: t.arg.string(),
      agentId: t.arg.id(),
      since: t.arg({ type: 'DateTime' }),
      groupByAgent: t.arg.boolean({ defaultValue: false }),
    },
    authScopes: { authenticated: true },
    resolve: (_root, args, context) =>
      context.services.metrics.summary(principalOf(context).tenantId, { ...args, agentId: id(args.agentId) }),
  }),
  metricSeries: t.field({
    type: [MetricPointRef],
    description: `Non-empty buckets of bucketSeconds since \`since\` (default: the last ${DEFAULT_WINDOW_HOURS} hours), oldest first; at most ${MAX_SERIES_BUCKETS} buckets`,
    args: {
      name: t.arg.string({ required: true }),
      agentId: t.arg.id(),
      since: t.arg({ type: 'DateTime' }),
      bucketSeconds: t.arg.int({ defaultValue: 60 }),
    },
    authScopes: { authenticated: true },
    resolve: (_root, args, context) =>
      context.services.metrics.series(principalOf(context).tenantId, { ...args, agentId: id(args.agentId) }),
  }),
}));

builder.mutationFields((t) => ({
  recordMetrics: t.withAuth({ agent: true }).int({
    description: "The calling agent's points, in one statement; returns how many were stored (at most limits.maxMetricsPerCall)",
    args: { metrics: t.arg({ type: [MetricInput], required: true }) },
    unauthorizedError: refusedTo('record metrics'),
    resolve: (_root, args, context) => context.services.metrics.record(context.principal.tenantId, context.principal.agentId, args.metrics),
  }),
}));

builder.subscriptionFields((t) => ({
  metricRecorded: t.field({
    type: MetricRef,
    description: 'Points as they are recorded',
    args: { name: t.arg.string(), agentId: t.arg.id() },
    authScopes: { authenticated: true },
    subscribe: async (_root, args, context) =>
      untilRevoked(
        context,
        await context.services.metrics.watch(principalOf(context).tenantId, { name: args.name, agentId: id(args.agentId) }),
      ),
    resolve: live(reviveMetric),
  }),
}));
