import { checkAgentId } from '../../domain/names.js';
import { builder } from '../../graphql/builder.js';
import { live, untilRevoked } from '../../graphql/live.js';
import { principalOf } from '../../graphql/principal.js';
import { type Agent, reviveAgent } from './agents.service.js';

const AgentStatus = builder.enumType('AgentStatus', { values: ['STARTING', 'IDLE', 'BUSY', 'ERROR', 'STOPPED'] as const });

export const AgentRef = builder.objectRef<Agent>('Agent').implement({
  fields: (t) => ({
    id: t.exposeID('id'),
    name: t.exposeString('name'),
    type: t.exposeString('type'),
    capabilities: t.exposeStringList('capabilities'),
    stateNamespaces: t.stringList({
      description: 'To an agent, only the namespaces it can reach itself: no agent learns names the access rule hides from it',
      resolve: async (agent, _args, context) => {
        const principal = principalOf(context);
        if (principal.role !== 'AGENT') return agent.stateNamespaces;
        const { access } = context.services;
        const reachable = await Promise.all(agent.stateNamespaces.map((name) => access.canRead(principal, name)));
        return agent.stateNamespaces.filter((_name, index) => reachable[index]);
      },
    }),
    status: t.expose('status', { type: AgentStatus }),
    active: t.boolean({
      description: "The last heartbeat is within the tenant's activeWindowSeconds (STATEHOUSE_ACTIVE_WINDOW_SECONDS by default)",
      resolve: (agent, _args, context) => context.services.agents.isActive(principalOf(context).tenantId, agent),
    }),
    lastHeartbeatAt: t.expose('lastHeartbeatAt', { type: 'DateTime', nullable: true }),
    heartbeat: t.expose('heartbeat', { type: 'JSON', nullable: true }),
    metadata: t.expose('metadata', { type: 'JSON', nullable: true }),
    registeredAt: t.expose('registeredAt', { type: 'DateTime' }),
  }),
});

const AgentRegistration = builder.objectRef<{ agent: Agent; token: string }>('AgentRegistration').implement({
  fields: (t) => ({
    agent: t.expose('agent', { type: AgentRef }),
    token: t.exposeString('token', { description: 'The agent token; shown once' }),
  }),
});

const RegisterAgentInput = builder.inputType('RegisterAgentInput', {
  fields: (t) => ({
    id: t.id({ description: 'Chosen by the caller, or generated' }),
    name: t.string({ required: true }),
    type: t.string({ required: true }),
    capabilities: t.stringList(),
    stateNamespaces: t.stringList({ description: 'Open namespaces this agent may read and write (access rule step 4)' }),
    metadata: t.field({ type: 'JSON' }),
  }),
});

builder.queryFields((t) => ({
  agents: t.field({
    type: [AgentRef],
    args: {
      activeWithinSeconds: t.arg.int(),
      type: t.arg.string(),
      status: t.arg({ type: AgentStatus }),
    },
    authScopes: { authenticated: true },
    resolve: (_root, args, context) => context.services.agents.list(principalOf(context).tenantId, args),
  }),
  agent: t.field({
    type: AgentRef,
    nullable: true,
    args: { id: t.arg.id({ required: true }) },
    authScopes: { authenticated: true },
    resolve: (_root, args, context) => context.loaders.agent.load(checkAgentId(String(args.id))),
  }),
}));

const HeartbeatInput = builder.inputType('HeartbeatInput', {
  fields: (t) => ({
    status: t.field({ type: AgentStatus, required: true }),
    data: t.field({ type: 'JSON', description: 'What the agent wants the fleet to see (up to 64 KiB)' }),
  }),
});

builder.subscriptionFields((t) => ({
  agentChanged: t.field({
    type: AgentRef,
    description: 'Registrations, heartbeats and status changes',
    args: { type: t.arg.string() },
    authScopes: { authenticated: true },
    subscribe: (_root, args, context) => untilRevoked(context, context.services.agents.watch(principalOf(context).tenantId, args.type)),
    resolve: live(reviveAgent),
  }),
}));

builder.mutationFields((t) => ({
  heartbeat: t.withAuth({ agent: true }).field({
    type: AgentRef,
    description: 'An agent reports for itself only',
    args: { input: t.arg({ type: HeartbeatInput, required: true }) },
    resolve: (_root, { input }, context) => context.services.agents.heartbeat(context.principal.tenantId, context.principal.agentId, input),
  }),
  registerAgent: t.field({
    type: AgentRegistration,
    args: { input: t.arg({ type: RegisterAgentInput, required: true }) },
    authScopes: { admin: true },
    resolve: (_root, { input }, context) =>
      context.services.agents.register(principalOf(context).tenantId, {
        ...input,
        id: input.id === null || input.id === undefined ? input.id : String(input.id),
      }),
  }),
  deregisterAgent: t.boolean({
    description: 'Its tokens stop working at once; false when there was no such agent',
    args: { id: t.arg.id({ required: true }) },
    authScopes: { admin: true },
    resolve: (_root, args, context) => context.services.agents.deregister(principalOf(context).tenantId, String(args.id)),
  }),
}));
