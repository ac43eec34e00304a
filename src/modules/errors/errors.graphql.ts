import { builder } from '../../graphql/builder.js';
import { live, untilRevoked } from '../../graphql/live.js';
import { principalOf } from '../../graphql/principal.js';
import { DEFAULT_ERROR_WINDOW_HOURS, type ErrorPattern, MAX_PATTERNS, revivePattern } from './errors.service.js';
import { refusedTo } from '../../graphql/refusals.js';

const ErrorPatternRef = builder.objectRef<ErrorPattern>('ErrorPattern').implement({
  description:
    'Errors of one type whose messages differ only in numbers, ids, hex, UUIDs and quoted strings; count and agentIds are those of a window',
  fields: (t) => ({
    id: t.exposeID('id'),
    type: t.exposeString('type'),
    fingerprint: t.exposeString('fingerprint', { description: 'The message with its variable parts as <num>, <id>, <hex>, <uuid>, <str>' }),
    sampleMessage: t.exposeString('sampleMessage', { description: 'The latest message of this pattern' }),
    count: t.exposeInt('count', { description: 'Occurrences inside the window' }),
    firstSeenAt: t.expose('firstSeenAt', { type: 'DateTime' }),
    lastSeenAt: t.expose('lastSeenAt', { type: 'DateTime' }),
    agentIds: t.exposeIDList('agentIds', { description: 'The agents that reported it inside the window' }),
  }),
});

const ReportErrorInput = builder.inputType('ReportErrorInput', {
  fields: (t) => ({
    type: t.string({ required: true }),
    message: t.string({ required: true }),
    context: t.field({ type: 'JSON', description: 'Any JSON, at most 64 KiB' }),
  }),
});

builder.queryFields((t) => ({
  errorPatterns: t.field({
    type: [ErrorPatternRef],
    description: `Patterns with at least minFrequency occurrences since \`since\` (default: the last ${DEFAULT_ERROR_WINDOW_HOURS} hours), most frequent first; at most ${MAX_PATTERNS}`,
    args: {
      type: t.arg.string(),
      minFrequency: t.arg.int({ defaultValue: 1 }),
      since: t.arg({ type: 'DateTime' }),
    },
    authScopes: { authenticated: true },
    resolve: (_root, args, context) => context.services.errors.patterns(principalOf(context).tenantId, args),
  }),
}));

builder.mutationFields((t) => ({
  reportError: t.withAuth({ agent: true }).field({
    type: ErrorPatternRef,
    description: `An agent reports for itself; returns the pattern with count and agentIds of the last ${DEFAULT_ERROR_WINDOW_HOURS} hours`,
    args: { input: t.arg({ type: ReportErrorInput, required: true }) },
    unauthorizedError: refusedTo('report errors'),
    resolve: (_root, { input }, context) => context.services.errors.report(context.principal.tenantId, context.principal.agentId, input),
  }),
}));

builder.subscriptionFields((t) => ({
  errorReported: t.field({
    type: ErrorPatternRef,
    description: 'Every reported error, as its pattern',
    args: { type: t.arg.string() },
    authScopes: { authenticated: true },
    subscribe: (_root, args, context) => untilRevoked(context, context.services.errors.watch(principalOf(context).tenantId, args.type)),
    resolve: live(revivePattern),
  }),
}));
