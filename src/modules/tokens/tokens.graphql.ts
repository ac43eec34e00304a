import { builder } from '../../graphql/builder.js';
import { principalOf } from '../../graphql/principal.js';
import type { TokenIssue } from './tokens.service.js';
import { refusedTo } from '../../graphql/refusals.js';

export const Role = builder.enumType('Role', { values: ['ADMIN', 'AGENT', 'READER'] as const });

export const TokenIssueRef = builder.objectRef<TokenIssue>('TokenIssue').implement({
  fields: (t) => ({
    id: t.exposeID('id'),
    token: t.exposeString('token', { description: 'Shown once; only its hash is stored' }),
    role: t.expose('role', { type: Role }),
  }),
});

const CreateTokenInput = builder.inputType('CreateTokenInput', {
  fields: (t) => ({
    name: t.string({ required: true }),
    role: t.field({ type: Role, required: true, description: 'ADMIN or READER; agent tokens come from registerAgent' }),
  }),
});

builder.mutationFields((t) => ({
  createToken: t.field({
    type: TokenIssueRef,
    args: { input: t.arg({ type: CreateTokenInput, required: true }) },
    authScopes: { admin: true },
    unauthorizedError: refusedTo('create tokens'),
    resolve: (_root, { input }, context) => context.services.tokens.create(principalOf(context).tenantId, input),
  }),
  revokeToken: t.boolean({
    description: 'Stops the token at once, open subscriptions included; false when there was no such live token',
    args: { id: t.arg.id({ required: true }) },
    authScopes: { admin: true },
    unauthorizedError: refusedTo('revoke tokens'),
    resolve: (_root, args, context) => context.services.tokens.revoke(principalOf(context).tenantId, String(args.id)),
  }),
}));
