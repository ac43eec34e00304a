import { builder } from '../../graphql/builder.js';
import { live, untilRevoked } from '../../graphql/live.js';
import { DEFAULT_ERROR_WINDOW_HOURS, type ErrorPattern, MAX_PATTERNS, revivePattern } from './errors.service.js';
import { refusedTo } from '../../graphql/refusals.js';

const ErrorPatternRef = builder.objectRef<ErrorPattern>('ErrorPattern').implement({
  description:
    'Errors of one type whose messages differ only in numbers, ids, hex, UUIDs and quoted strings; count and agentIds are those of a window',
  fields: (t) => ({
    id: t.exposeID('id', { description: 'The pattern; stable across reports' }),
    type: t.exposeString('type', { description: 'The error type it was reported with, such as timeout' }),
    fingerprint: t.exposeString('fingerprint', { description: 'The message with its variable parts as <num>, <id>, <hex>, <uuid>, <str>' }),
    sampleMessage: t.exposeString('sampleMessage', { description: 'The latest message of this pattern' }),
    count: t.exposeInt('count', { description: 'Occurrences inside the window' }),
    firstSeenAt: t.expose('firstSeenAt', { type: 'DateTime', description: 'Its first report ever' }),
    lastSeenAt: t.expose('lastSeenAt', { type: 'DateTime', description: 'Its latest report' }),
    agentIds: t.exposeIDList('agentIds', { description: 'The agents that reported it inside the window' }),
  }),
});

const ReportErrorInput = builder.inputType('ReportErrorInput', {
  description: 'One error, as an agent saw it',
  fields: (t) => ({
    type: t.string({ required: true, description: 'Its kind, 1 to 100 characters, such as timeout' }),
    message: t.string({ required: true, description: 'The message, 1 to 10000 characters (several lines allowed, such as a stack trace)' }),
    context: t.field({ type: 'JSON', description: 'Any JSON, at most 64 KiB' }),
  }),
});

builder.queryFields((t) => ({
  errorPatterns: t.withAuth({ authenticated: true }).field({
    type: [ErrorPatternRef],
    description: `Patterns with at least minFrequency occurrences since \`since\` (default: the last ${DEFAULT_ERROR_WINDOW_HOURS} hours), most frequent first; at most ${MAX_PATTERNS}. Any valid token`,
    args: {
      type: t.arg.string({ description: 'Only patterns of this type' }),
      minFrequency: t.arg.int({
        defaultValue: 1,
        description: 'Only patterns with at least this many occurrences in the window (1 or more)',
      }),
      since: t.arg({ type: 'DateTime', description: 'Start of the window' }),
    },
    resolve: (_root, args, context) => context.services.errors.patterns(context.principal.tenantId, args),
  }),
}));

builder.mutationFields((t) => ({
  reportError: t.withAuth({ agent: true }).field({
    type: ErrorPatternRef,
    description: `Records an error of the calling agent under its pattern and returns the pattern, with count and agentIds of the last ${DEFAULT_ERROR_WINDOW_HOURS} hours. AGENT tokens only, as themselves`,
    args: { input: t.arg({ type: ReportErrorInput, required: true, description: 'The error' }) },
    unauthorizedError: refusedTo('report errors'),
    resolve: (_root, { input }, context) => context.services.errors.report(context.principal.tenantId, context.principal.agentId, input),
  }),
}));

builder.subscriptionFields((t) => ({
  errorReported: t.withAuth({ authenticated: true }).field({
    type: ErrorPatternRef,
    description:
      'Each error as it is reported, as its pattern (count and agentIds of the last 24 hours; from now on: nothing is replayed). Any valid token',
    args: { type: t.arg.string({ description: 'Only errors of this type' }) },
    subscribe: (_root, args, context) => untilRevoked(context, context.services.errors.watch(context.principal.tenantId, args.type)),
    resolve: live(revivePattern),
  }),
}));
