import { builder } from '../../graphql/builder.js';
import { principalOf } from '../../graphql/principal.js';
import { TokenIssueRef } from '../tokens/tokens.graphql.js';
import { refusedTo } from '../../graphql/refusals.js';

builder.queryFields((t) => ({
  config: t.field({
    type: 'JSON',
    description: "The tenant's settings (limits, quotas, activeWindowSeconds), defaults filled in",
    authScopes: { authenticated: true },
    resolve: (_root, _args, context) => context.services.config.get(principalOf(context).tenantId),
  }),
}));

builder.mutationFields((t) => ({
  createTenant: t.field({
    type: TokenIssueRef,
    description: "The bootstrap admin only; returns the new tenant's admin token (shown once)",
    args: { name: t.arg.string({ required: true }) },
    authScopes: { bootstrap: true },
    unauthorizedError: refusedTo('create tenants'),
    resolve: (_root, args, context) => context.services.tokens.createTenant(args.name),
  }),
  updateConfig: t.field({
    type: 'JSON',
    description: "Merge patch on the tenant's settings; an unknown setting or a wrong type is BAD_USER_INPUT",
    args: { patch: t.arg({ type: 'JSON', required: true }) },
    authScopes: { admin: true },
    unauthorizedError: refusedTo("change the tenant's config"),
    resolve: (_root, args, context) => context.services.config.update(principalOf(context).tenantId, args.patch),
  }),
}));
