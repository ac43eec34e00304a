import { builder } from '../../graphql/builder.js';
import { live, untilRevoked } from '../../graphql/live.js';
import { principalOf } from '../../graphql/principal.js';
import { type Insight, PRIORITIES, reviveInsight } from './insights.service.js';

export const PriorityEnum = builder.enumType('Priority', { values: PRIORITIES, description: 'LOW < MEDIUM < HIGH < CRITICAL' });

const InsightRef = builder.objectRef<Insight>('Insight').implement({
  fields: (t) => ({
    id: t.exposeID('id'),
    type: t.exposeString('type'),
    content: t.expose('content', { type: 'JSON' }),
    priority: t.expose('priority', { type: PriorityEnum }),
    sourceAgentId: t.exposeID('sourceAgentId', { nullable: true, description: 'The agent that added it; null when an admin did' }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    actedUpon: t.boolean({ resolve: (insight) => insight.actedUponAt !== null }),
    actedUponAt: t.expose('actedUponAt', { type: 'DateTime', nullable: true }),
  }),
});

const AddInsightInput = builder.inputType('AddInsightInput', {
  fields: (t) => ({
    type: t.string({ required: true }),
    content: t.field({ type: 'JSON', required: true, description: 'Any JSON but null, at most 64 KiB' }),
    priority: t.field({ type: PriorityEnum, defaultValue: 'MEDIUM' }),
  }),
});

builder.queryFields((t) => ({
  insights: t.field({
    type: [InsightRef],
    description: 'Newest first; first ≤ 1000',
    args: {
      type: t.arg.string(),
      minPriority: t.arg({ type: PriorityEnum }),
      actedUpon: t.arg.boolean(),
      first: t.arg.int({ defaultValue: 100 }),
    },
    authScopes: { authenticated: true },
    resolve: (_root, args, context) => context.services.insights.list(principalOf(context).tenantId, args),
  }),
}));

builder.mutationFields((t) => ({
  addInsight: t.field({
    type: InsightRef,
    description: 'sourceAgentId is the calling agent (null for an admin)',
    args: { input: t.arg({ type: AddInsightInput, required: true }) },
    authScopes: { agent: true, admin: true },
    resolve: (_root, { input }, context) => {
      const principal = principalOf(context);
      return context.services.insights.add(principal.tenantId, principal.agentId, input);
    },
  }),
  markInsightActedUpon: t.field({
    type: InsightRef,
    description: 'Marking it again keeps the first actedUponAt; an unknown id is NOT_FOUND',
    args: { id: t.arg.id({ required: true }) },
    authScopes: { agent: true, admin: true },
    resolve: (_root, args, context) => context.services.insights.markActedUpon(principalOf(context).tenantId, String(args.id)),
  }),
}));

builder.subscriptionFields((t) => ({
  insightAdded: t.field({
    type: InsightRef,
    description: 'Insights as they are added, at or above minPriority',
    args: { minPriority: t.arg({ type: PriorityEnum }) },
    authScopes: { authenticated: true },
    subscribe: (_root, args, context) =>
      untilRevoked(context, context.services.insights.watch(principalOf(context).tenantId, args.minPriority)),
    resolve: live(reviveInsight),
  }),
}));
