import type { Principal } from '../../auth/principal.js';
import { builder } from '../../graphql/builder.js';
import { AgentRef } from '../agents/agents.graphql.js';
import { NamespaceAccessRef } from '../namespaces/namespaces.graphql.js';
import { Role } from '../tokens/tokens.graphql.js';

const Viewer = builder.objectRef<Principal>('Viewer').implement({
  description: 'Who the token speaks for',
  fields: (t) => ({
    tenant: t.exposeString('tenantId', { description: "The token's tenant: everything the token reaches belongs to it" }),
    role: t.expose('role', { type: Role, description: "The token's role" }),
    agent: t.field({
      type: AgentRef,
      nullable: true,
      description: 'The registered agent an AGENT token is bound to; null for ADMIN and READER tokens',
      resolve: (principal, _args, context) => (principal.agentId ? context.loaders.agent.load(principal.agentId) : null),
    }),
    namespaces: t.field({
      type: [NamespaceAccessRef],
      description:
        "Every namespace the caller can reach, with its permission: all of the tenant's for ADMIN (WRITE) and READER (READ); for an agent, those the access rule gives it, `common` (WRITE) and `system` (READ at least) included",
      resolve: (principal, _args, context) => context.services.access.reachable(principal),
    }),
  }),
});

builder.queryFields((t) => ({
  viewer: t.withAuth({ authenticated: true }).field({
    type: Viewer,
    description: 'The caller: its tenant, role, agent and reachable namespaces. Any valid token',
    resolve: (_root, _args, context) => context.principal,
  }),
}));
