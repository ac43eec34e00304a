import { builder } from '../../graphql/builder.js';
import type { TokenIssue } from './tokens.service.js';
import { refusedTo } from '../../graphql/refusals.js';

export const Role = builder.enumType('Role', {
  description: "A token's role in its tenant",
  values: {
    ADMIN: { description: 'Everything inside its tenant' },
    AGENT: {
      description:
        'Bound to one registered agent: entries as the access rule allows; reports heartbeats, metrics, errors, insights and optimizations as itself only; reads the fleet',
    },
    READER: { description: 'Reads everything in its tenant except the values of sensitive namespaces, and subscribes; writes nothing' },
  } as const,
});

export const TokenIssueRef = builder.objectRef<TokenIssue>('TokenIssue').implement({
  description: 'A new token',
  fields: (t) => ({
    id: t.exposeID('id', { description: 'What revokeToken takes; not a secret' }),
    token: t.exposeString('token', {
      description: 'The secret: shown this once (only its hash is stored); send it as `Authorization: Bearer <token>`',
    }),
    role: t.expose('role', { type: Role, description: "The token's role" }),
  }),
});

const CreateTokenInput = builder.inputType('CreateTokenInput', {
  description: 'A new ADMIN or READER token',
  fields: (t) => ({
    name: t.string({
      required: true,
      description: 'A name for people, 1 to 100 characters; the token acts as admin:<name> or reader:<name> in updatedBy and the audit log',
    }),
    role: t.field({
      type: Role,
      required: true,
      description: 'ADMIN or READER; AGENT is BAD_USER_INPUT (agent tokens come from registerAgent)',
    }),
  }),
});

builder.mutationFields((t) => ({
  createToken: t.withAuth({ admin: true }).field({
    type: TokenIssueRef,
    description: "Issues an ADMIN or READER token of the caller's tenant (shown once). ADMIN only",
    args: { input: t.arg({ type: CreateTokenInput, required: true, description: 'Its name and role' }) },
    unauthorizedError: refusedTo('create tokens'),
    resolve: (_root, { input }, context) => context.services.tokens.create(context.principal.tenantId, input),
  }),
  revokeToken: t.withAuth({ admin: true }).boolean({
    description:
      'Stops a token at once on every gateway process, ending its open subscriptions (UNAUTHENTICATED); false when there was no such live token. ADMIN only',
    args: { id: t.arg.id({ required: true, description: "The token's id, as createToken returned it" }) },
    unauthorizedError: refusedTo('revoke tokens'),
    resolve: (_root, args, context) => context.services.tokens.revoke(context.principal.tenantId, String(args.id)),
  }),
}));
