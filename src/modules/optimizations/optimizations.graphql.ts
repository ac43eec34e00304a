import { builder } from '../../graphql/builder.js';
import { MAX_OPTIMIZATIONS, type OptimizationRecord } from './optimizations.service.js';

const OptimizationRecordRef = builder.objectRef<OptimizationRecord>('OptimizationRecord').implement({
  description: 'Something an agent (or admin) tried to improve, and whether it worked',
  fields: (t) => ({
    id: t.exposeID('id', { description: 'The record' }),
    type: t.exposeString('type', { description: 'Its kind, such as cache_size' }),
    description: t.exposeString('description', { nullable: true, description: 'What was done, for people' }),
    before: t.expose('before', { type: 'JSON', nullable: true, description: 'The state or measurements before' }),
    after: t.expose('after', { type: 'JSON', nullable: true, description: 'The state or measurements after' }),
    success: t.exposeBoolean('success', { description: 'Whether it worked' }),
    sourceAgentId: t.exposeID('sourceAgentId', { nullable: true, description: 'The agent that recorded it; null when an admin did' }),
    at: t.expose('at', { type: 'DateTime', description: 'When it was recorded' }),
  }),
});

const RecordOptimizationInput = builder.inputType('RecordOptimizationInput', {
  description: 'A new optimization record',
  fields: (t) => ({
    type: t.string({ required: true, description: 'Its kind, 1 to 100 characters' }),
    description: t.string({ description: 'What was done, up to 2000 characters' }),
    before: t.field({ type: 'JSON', description: 'The state or measurements before; any JSON up to 64 KiB' }),
    after: t.field({ type: 'JSON', description: 'The state or measurements after; any JSON up to 64 KiB' }),
    success: t.boolean({ required: true, description: 'Whether it worked' }),
  }),
});

builder.queryFields((t) => ({
  optimizations: t.withAuth({ authenticated: true }).field({
    type: [OptimizationRecordRef],
    description: `Optimization records, newest first, at most ${MAX_OPTIMIZATIONS}. Any valid token`,
    args: {
      type: t.arg.string({ description: 'Only records of this type' }),
      since: t.arg({ type: 'DateTime', description: 'Only records from this time on; unset: all' }),
      successOnly: t.arg.boolean({ defaultValue: false, description: 'Only those that worked' }),
    },
    resolve: (_root, args, context) => context.services.optimizations.list(context.principal.tenantId, args),
  }),
}));

builder.mutationFields((t) => ({
  recordOptimization: t.withAuth({ agent: true, admin: true }).field({
    type: OptimizationRecordRef,
    description: 'Records an optimization; sourceAgentId is the calling agent (null for an admin). AGENT or ADMIN',
    args: { input: t.arg({ type: RecordOptimizationInput, required: true, description: 'The record' }) },
    resolve: (_root, { input }, context) => {
      const { principal } = context;
      return context.services.optimizations.record(principal.tenantId, principal.agentId, input);
    },
  }),
}));
