import { SYSTEM } from '../../auth/access.js';
import { builder } from '../../graphql/builder.js';
import type { SystemOverview } from './system.service.js';
import { GLOBAL_SCOPE } from '../../domain/names.js';

/** The system state lives in an ordinary entry, so the access rule and the change feed apply to it. */
const STATE = { namespace: SYSTEM, key: 'state', scope: GLOBAL_SCOPE };

const SystemOverviewRef = builder.objectRef<SystemOverview>('SystemOverview').implement({
  description: "The fleet's vital signs in one query",
  fields: (t) => ({
    agentsByStatus: t.expose('agentsByStatus', {
      type: 'JSON',
      description: 'Every status with its count of agents, such as { "STARTING": 0, "IDLE": 3, "BUSY": 2, "ERROR": 0, "STOPPED": 1 }',
    }),
    activeAgents: t.exposeInt('activeAgents', { description: "Agents with a heartbeat within the tenant's activeWindowSeconds" }),
    namespaces: t.exposeInt('namespaces', { description: 'Namespaces the caller can read' }),
    entries: t.exposeInt('entries', { description: 'Live entries in the namespaces the caller can read' }),
    revision: t.expose('revision', { type: 'Revision', description: 'The newest revision of the change log ("0": none yet)' }),
    errorsLastHour: t.exposeInt('errorsLastHour', { description: 'Errors reported in the last hour' }),
    openInsights: t.exposeInt('openInsights', { description: 'Insights not yet acted upon' }),
  }),
});

builder.queryFields((t) => ({
  systemState: t.withAuth({ namespaceRead: SYSTEM }).field({
    type: 'JSON',
    description:
      'The value of the entry system/global/state: shared state of the whole fleet; {} when unset. Needs READ on `system` (every token has it)',
    resolve: async (_root, _args, context) => (await context.services.entries.get(context.principal.tenantId, STATE))?.value ?? {},
  }),
  systemOverview: t.withAuth({ authenticated: true }).field({
    type: SystemOverviewRef,
    description: 'One cheap query a dashboard can poll every second. Any valid token; counts only what the caller can read',
    resolve: async (_root, _args, context) => {
      const { principal } = context;
      // ADMIN and READER read every namespace of their tenant; an agent, those the access rule lets it.
      const namespaces =
        principal.role === 'AGENT' ? (await context.services.access.reachable(principal)).map((access) => access.namespace) : null;
      return context.services.system.overview(principal.tenantId, namespaces);
    },
  }),
}));

builder.mutationFields((t) => ({
  updateSystemState: t.withAuth({ namespaceWrite: SYSTEM }).field({
    type: 'JSON',
    description:
      'Applies an RFC 7396 merge patch to system/global/state, as patchEntry does (a change in the log, seen by entryChanged), and returns the new value. ADMIN, or an agent with a WRITE grant on `system`',
    args: { patch: t.arg({ type: 'JSON', required: true, description: 'The merge patch: members replace, null members remove' }) },
    resolve: async (_root, args, context) =>
      (await context.services.entries.patch(context.principal, { ...STATE, patch: args.patch })).value,
  }),
}));
