import { builder } from '../../graphql/builder.js';
import { principalOf } from '../../graphql/principal.js';
import { MAX_OPTIMIZATIONS, type OptimizationRecord } from './optimizations.service.js';

const OptimizationRecordRef = builder.objectRef<OptimizationRecord>('OptimizationRecord').implement({
  fields: (t) => ({
    id: t.exposeID('id'),
    type: t.exposeString('type'),
    description: t.exposeString('description', { nullable: true }),
    before: t.expose('before', { type: 'JSON', nullable: true }),
    after: t.expose('after', { type: 'JSON', nullable: true }),
    success: t.exposeBoolean('success'),
    sourceAgentId: t.exposeID('sourceAgentId', { nullable: true, description: 'The agent that recorded it; null when an admin did' }),
    at: t.expose('at', { type: 'DateTime' }),
  }),
});

const RecordOptimizationInput = builder.inputType('RecordOptimizationInput', {
  fields: (t) => ({
    type: t.string({ required: true }),
    description: t.string(),
    before: t.field({ type: 'JSON', description: 'At most 64 KiB' }),
    after: t.field({ type: 'JSON', description: 'At most 64 KiB' }),
    success: t.boolean({ required: true }),
  }),
});

builder.queryFields((t) => ({
  optimizations: t.field({
    type: [OptimizationRecordRef],
    description: `Newest first, at most ${MAX_OPTIMIZATIONS}; since unset: all`,
    args: {
      type: t.arg.string(),
      since: t.arg({ type: 'DateTime' }),
      successOnly: t.arg.boolean({ defaultValue: false }),
    },
    authScopes: { authenticated: true },
    resolve: (_root, args, context) => context.services.optimizations.list(principalOf(context).tenantId, args),
  }),
}));

builder.mutationFields((t) => ({
  recordOptimization: t.field({
    type: OptimizationRecordRef,
    description: 'AGENT or ADMIN; sourceAgentId is the calling agent (null for an admin)',
    args: { input: t.arg({ type: RecordOptimizationInput, required: true }) },
    authScopes: { agent: true, admin: true },
    resolve: (_root, { input }, context) => {
      const principal = principalOf(context);
      return context.services.optimizations.record(principal.tenantId, principal.agentId, input);
    },
  }),
}));
