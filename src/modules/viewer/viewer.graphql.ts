import type { Principal } from '../../auth/principal.js';
import { builder } from '../../graphql/builder.js';
import { principalOf } from '../../graphql/principal.js';
import { AgentRef } from '../agents/agents.graphql.js';
import { NamespaceAccessRef } from '../namespaces/namespaces.graphql.js';
import { Role } from '../tokens/tokens.graphql.js';

const Viewer = builder.objectRef<Principal>('Viewer').implement({
  description: 'Who the token speaks for',
  fields: (t) => ({
    tenant: t.exposeString('tenantId'),
    role: t.expose('role', { type: Role }),
    agent: t.field({
      type: AgentRef,
      nullable: true,
      resolve: (principal, _args, context) => (principal.agentId ? context.loaders.agent.load(principal.agentId) : null),
    }),
    namespaces: t.field({
      type: [NamespaceAccessRef],
      description: 'Every namespace the caller can reach',
      resolve: (principal, _args, context) => context.services.access.reachable(principal),
    }),
  }),
});

builder.queryFields((t) => ({
  viewer: t.field({
    type: Viewer,
    authScopes: { authenticated: true },
    resolve: (_root, _args, context) => principalOf(context),
  }),
}));
