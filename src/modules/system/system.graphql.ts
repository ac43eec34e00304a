import { SYSTEM } from '../../auth/access.js';
import { builder } from '../../graphql/builder.js';
import { principalOf } from '../../graphql/principal.js';
import type { SystemOverview } from './system.service.js';

/** The system state lives in an ordinary entry, so the access rule and the change feed apply to it. */
const STATE = { namespace: SYSTEM, key: 'state', scope: 'global' };

const SystemOverviewRef = builder.objectRef<SystemOverview>('SystemOverview').implement({
  fields: (t) => ({
    agentsByStatus: t.expose('agentsByStatus', { type: 'JSON', description: 'Every status with its count of agents' }),
    activeAgents: t.exposeInt('activeAgents'),
    namespaces: t.exposeInt('namespaces'),
    entries: t.exposeInt('entries'),
    revision: t.expose('revision', { type: 'Revision' }),
    errorsLastHour: t.exposeInt('errorsLastHour'),
    openInsights: t.exposeInt('openInsights'),
  }),
});

builder.queryFields((t) => ({
  systemState: t.field({
    type: 'JSON',
    description: 'The entry system/global/state, {} if unset',
    authScopes: { namespaceRead: SYSTEM },
    resolve: async (_root, _args, context) => (await context.services.entries.get(principalOf(context).tenantId, STATE))?.value ?? {},
  }),
  systemOverview: t.field({
    type: SystemOverviewRef,
    description: 'One cheap query a dashboard can poll every second',
    authScopes: { authenticated: true },
    resolve: async (_root, _args, context) => {
      const principal = principalOf(context);
      // ADMIN and READER read every namespace of their tenant; an agent, those the access rule lets it.
      const namespaces =
        principal.role === 'AGENT' ? (await context.services.access.reachable(principal)).map((access) => access.namespace) : null;
      return context.services.system.overview(principal.tenantId, namespaces);
    },
  }),
}));

builder.mutationFields((t) => ({
  updateSystemState: t.field({
    type: 'JSON',
    description: 'Merge patch on system/global/state; agents need a WRITE grant on system',
    args: { patch: t.arg({ type: 'JSON', required: true }) },
    authScopes: { namespaceWrite: SYSTEM },
    resolve: async (_root, args, context) =>
      (await context.services.entries.patch(principalOf(context), { ...STATE, patch: args.patch })).value,
  }),
}));
