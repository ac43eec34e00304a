import { builder } from '../../graphql/builder.js';
import { live, untilRevoked } from '../../graphql/live.js';
import { type Insight, PRIORITIES, reviveInsight } from './insights.service.js';

export const PriorityEnum = builder.enumType('Priority', {
  description: 'How urgent an insight is: LOW < MEDIUM < HIGH < CRITICAL',
  values: {
    LOW: { description: 'Worth knowing' },
    MEDIUM: { description: 'Worth acting on (the default)' },
    HIGH: { description: 'Act soon' },
    CRITICAL: { description: 'Act now' },
  } satisfies Record<(typeof PRIORITIES)[number], { description: string }>,
});

const InsightRef = builder.objectRef<Insight>('Insight').implement({
  description: 'An observation shared with the fleet, until someone acts upon it',
  fields: (t) => ({
    id: t.exposeID('id', { description: 'What markInsightActedUpon takes' }),
    type: t.exposeString('type', { description: 'Its kind, such as capacity' }),
    content: t.expose('content', { type: 'JSON', description: 'What was observed, as given' }),
    priority: t.expose('priority', { type: PriorityEnum, description: 'How urgent it is' }),
    sourceAgentId: t.exposeID('sourceAgentId', { nullable: true, description: 'The agent that added it; null when an admin did' }),
    createdAt: t.expose('createdAt', { type: 'DateTime', description: 'When it was added' }),
    actedUpon: t.boolean({ description: 'Whether it was marked acted upon', resolve: (insight) => insight.actedUponAt !== null }),
    actedUponAt: t.expose('actedUponAt', {
      type: 'DateTime',
      nullable: true,
      description: 'When it was first marked acted upon; null: not yet',
    }),
  }),
});

const AddInsightInput = builder.inputType('AddInsightInput', {
  description: 'A new insight',
  fields: (t) => ({
    type: t.string({ required: true, description: 'Its kind, 1 to 100 characters' }),
    content: t.field({ type: 'JSON', required: true, description: 'Any JSON but null, at most 64 KiB' }),
    priority: t.field({ type: PriorityEnum, defaultValue: 'MEDIUM', description: 'How urgent it is' }),
  }),
});

builder.queryFields((t) => ({
  insights: t.withAuth({ authenticated: true }).field({
    type: [InsightRef],
    description: 'Insights, newest first. Any valid token',
    args: {
      type: t.arg.string({ description: 'Only insights of this type' }),
      minPriority: t.arg({ type: PriorityEnum, description: 'Only insights at or above this priority' }),
      actedUpon: t.arg.boolean({ description: 'true: only those acted upon; false: only open ones; unset: both' }),
      first: t.arg.int({ defaultValue: 100, description: 'How many, 1 to 1000' }),
    },
    resolve: (_root, args, context) => context.services.insights.list(context.principal.tenantId, args),
  }),
}));

builder.mutationFields((t) => ({
  addInsight: t.withAuth({ agent: true, admin: true }).field({
    type: InsightRef,
    description: 'Shares an insight with the fleet; sourceAgentId is the calling agent (null for an admin). AGENT or ADMIN',
    args: { input: t.arg({ type: AddInsightInput, required: true, description: 'The insight' }) },
    resolve: (_root, { input }, context) => {
      const { principal } = context;
      return context.services.insights.add(principal.tenantId, principal.agentId, input);
    },
  }),
  markInsightActedUpon: t.withAuth({ agent: true, admin: true }).field({
    type: InsightRef,
    description: 'Marks an insight acted upon; marking it again keeps the first actedUponAt. An unknown id is NOT_FOUND. AGENT or ADMIN',
    args: { id: t.arg.id({ required: true, description: "The insight's id" }) },
    resolve: (_root, args, context) => context.services.insights.markActedUpon(context.principal.tenantId, String(args.id)),
  }),
}));

builder.subscriptionFields((t) => ({
  insightAdded: t.withAuth({ authenticated: true }).field({
    type: InsightRef,
    description: 'Each insight as it is added (from now on: nothing is replayed). Any valid token',
    args: { minPriority: t.arg({ type: PriorityEnum, description: 'Only insights at or above this priority' }) },
    subscribe: (_root, args, context) =>
      untilRevoked(context, context.services.insights.watch(context.principal.tenantId, args.minPriority)),
    resolve: live(reviveInsight),
  }),
}));
