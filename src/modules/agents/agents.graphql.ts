import { checkAgentId } from '../../domain/names.js';
import { builder } from '../../graphql/builder.js';
import { live, untilRevoked } from '../../graphql/live.js';
import { type Agent, reviveAgent } from './agents.service.js';
import { refusedTo } from '../../graphql/refusals.js';

const AgentStatus = builder.enumType('AgentStatus', {
  description: 'What an agent last reported in its heartbeat',
  values: {
    STARTING: { description: 'Registered, or starting up: the status before the first heartbeat' },
    IDLE: { description: 'Running, waiting for work' },
    BUSY: { description: 'Running, working' },
    ERROR: { description: 'Running, but failing' },
    STOPPED: { description: 'Shut down on purpose' },
  } as const,
});

export const AgentRef = builder.objectRef<Agent>('Agent').implement({
  description: 'A registered agent of the fleet; its AGENT token acts as it',
  fields: (t) => ({
    id: t.exposeID('id', { description: 'Unique in the tenant; how the agent appears in updatedBy, actor and the audit log' }),
    name: t.exposeString('name', { description: 'A name for people' }),
    type: t.exposeString('type', { description: 'What kind of agent it is (planner, importer, …); agents and agentChanged filter by it' }),
    capabilities: t.exposeStringList('capabilities', { description: 'What it can do, as free labels' }),
    stateNamespaces: t.withAuth({ authenticated: true }).stringList({
      description:
        'Namespaces it declared: those that are open it may read and write (unless a grant says otherwise). To an agent, only the namespaces it can reach itself: no agent learns names the access rule hides from it',
      resolve: async (agent, _args, context) => {
        const { principal } = context;
        if (principal.role !== 'AGENT') return agent.stateNamespaces;
        const { access } = context.services;
        const reachable = await Promise.all(agent.stateNamespaces.map((name) => access.canRead(principal, name)));
        return agent.stateNamespaces.filter((_name, index) => reachable[index]);
      },
    }),
    status: t.expose('status', { type: AgentStatus, description: 'As of its last heartbeat; STARTING before the first' }),
    active: t.withAuth({ authenticated: true }).boolean({
      description: "The last heartbeat is within the tenant's activeWindowSeconds (STATEHOUSE_ACTIVE_WINDOW_SECONDS by default)",
      resolve: (agent, _args, context) => context.services.agents.isActive(context.principal.tenantId, agent),
    }),
    lastHeartbeatAt: t.expose('lastHeartbeatAt', { type: 'DateTime', nullable: true, description: 'null until its first heartbeat' }),
    heartbeat: t.expose('heartbeat', { type: 'JSON', nullable: true, description: 'The data of its last heartbeat' }),
    metadata: t.expose('metadata', { type: 'JSON', nullable: true, description: 'What was given at registration' }),
    registeredAt: t.expose('registeredAt', { type: 'DateTime', description: 'When it was registered' }),
  }),
});

const AgentRegistration = builder.objectRef<{ agent: Agent; token: string }>('AgentRegistration').implement({
  description: 'A new agent and its token',
  fields: (t) => ({
    agent: t.expose('agent', { type: AgentRef, description: 'The registered agent' }),
    token: t.exposeString('token', {
      description: "The agent's AGENT token: shown this once (only its hash is stored); send it as `Authorization: Bearer <token>`",
    }),
  }),
});

const RegisterAgentInput = builder.inputType('RegisterAgentInput', {
  description: 'A new agent',
  fields: (t) => ({
    id: t.id({
      description: 'Its id: 1 to 128 characters of A-Z, a-z, 0-9 and "._:@-"; taken: BAD_USER_INPUT. Unset: agent-<uuid> is generated',
    }),
    name: t.string({ required: true, description: 'A name for people, 1 to 200 characters' }),
    type: t.string({ required: true, description: 'Its kind, 1 to 100 characters' }),
    capabilities: t.stringList({ description: 'Up to 100 labels of 1 to 100 characters' }),
    stateNamespaces: t.stringList({
      description: 'Up to 100 namespaces; those that are open (openAccess) the agent may read and write. They need not exist yet',
    }),
    metadata: t.field({ type: 'JSON', description: 'Any JSON, up to 64 KiB' }),
  }),
});

builder.queryFields((t) => ({
  agents: t.withAuth({ authenticated: true }).field({
    type: [AgentRef],
    description: 'Registered agents, oldest registration first (at most 10000). Any valid token',
    args: {
      activeWithinSeconds: t.arg.int({ description: 'Only agents with a heartbeat within this many seconds (1 or more)' }),
      type: t.arg.string({ description: 'Only agents of this type' }),
      status: t.arg({ type: AgentStatus, description: 'Only agents with this status' }),
    },
    resolve: (_root, args, context) => context.services.agents.list(context.principal.tenantId, args),
  }),
  agent: t.withAuth({ authenticated: true }).field({
    type: AgentRef,
    nullable: true,
    description: 'One agent; null when none has this id. Any valid token',
    args: { id: t.arg.id({ required: true, description: "The agent's id" }) },
    resolve: (_root, args, context) => context.loaders.agent.load(checkAgentId(String(args.id))),
  }),
}));

const HeartbeatInput = builder.inputType('HeartbeatInput', {
  description: "An agent's report on itself",
  fields: (t) => ({
    status: t.field({ type: AgentStatus, required: true, description: 'Its status now' }),
    data: t.field({ type: 'JSON', description: 'What the agent wants the fleet to see (up to 64 KiB)' }),
  }),
});

builder.subscriptionFields((t) => ({
  agentChanged: t.withAuth({ authenticated: true }).field({
    type: AgentRef,
    description: 'Each agent as it is registered or sends a heartbeat (from now on: nothing is replayed). Any valid token',
    args: { type: t.arg.string({ description: 'Only agents of this type' }) },
    subscribe: (_root, args, context) => untilRevoked(context, context.services.agents.watch(context.principal.tenantId, args.type)),
    resolve: live(reviveAgent),
  }),
}));

builder.mutationFields((t) => ({
  heartbeat: t.withAuth({ agent: true }).field({
    type: AgentRef,
    description:
      "Records that the calling agent is alive, with its status and data; it counts as active for the tenant's activeWindowSeconds. AGENT tokens only, for their own agent",
    args: { input: t.arg({ type: HeartbeatInput, required: true, description: 'Its status and data' }) },
    unauthorizedError: refusedTo('send heartbeats'),
    resolve: (_root, { input }, context) => context.services.agents.heartbeat(context.principal.tenantId, context.principal.agentId, input),
  }),
  registerAgent: t.withAuth({ admin: true }).field({
    type: AgentRegistration,
    description: 'Registers an agent and issues its AGENT token (shown once). ADMIN only',
    args: { input: t.arg({ type: RegisterAgentInput, required: true, description: 'The agent' }) },
    unauthorizedError: refusedTo('register agents'),
    resolve: (_root, { input }, context) =>
      context.services.agents.register(context.principal.tenantId, {
        ...input,
        id: input.id === null || input.id === undefined ? input.id : String(input.id),
      }),
  }),
  deregisterAgent: t.withAuth({ admin: true }).boolean({
    description:
      'Removes an agent with its grants; its tokens stop working at once and its open subscriptions end. false when there was no such agent. ADMIN only',
    args: { id: t.arg.id({ required: true, description: "The agent's id" }) },
    unauthorizedError: refusedTo('deregister agents'),
    resolve: (_root, args, context) => context.services.agents.deregister(context.principal.tenantId, String(args.id)),
  }),
}));
