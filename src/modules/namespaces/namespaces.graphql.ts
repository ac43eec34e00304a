import type { NamespaceAccess, NamespaceSettings } from '../../auth/access.js';
import { badInput, forbidden, unreachableNamespace } from '../../domain/errors.js';
import { checkAgentId, checkNamespace } from '../../domain/names.js';
import { builder } from '../../graphql/builder.js';
import { principalOf } from '../../graphql/principal.js';
import type { AccessGrant } from './namespaces.service.js';
import { refusedTo } from '../../graphql/refusals.js';

export const Permission = builder.enumType('Permission', { values: ['READ', 'WRITE'] as const });

export const NamespaceAccessRef = builder.objectRef<NamespaceAccess>('NamespaceAccess').implement({
  fields: (t) => ({
    namespace: t.exposeString('namespace'),
    permission: t.expose('permission', { type: Permission }),
  }),
});

const AccessGrantRef = builder.objectRef<AccessGrant>('AccessGrant').implement({
  fields: (t) => ({
    namespace: t.exposeString('namespace'),
    agentId: t.exposeID('agentId'),
    permission: t.expose('permission', { type: Permission }),
    grantedAt: t.expose('grantedAt', { type: 'DateTime' }),
  }),
});

const NamespaceRef = builder.objectRef<NamespaceSettings>('Namespace').implement({
  fields: (t) => ({
    name: t.exposeString('name'),
    description: t.exposeString('description', { nullable: true }),
    openAccess: t.exposeBoolean('openAccess'),
    sensitive: t.exposeBoolean('sensitive'),
    schema: t.expose('schema', { type: 'JSON', nullable: true, description: 'JSON Schema (draft 2020-12) every written value must match' }),
    defaultValue: t.field({
      type: 'JSON',
      nullable: true,
      description: 'null for a READER when the namespace is sensitive',
      resolve: (ns, _args, context) => (ns.sensitive && context.principal?.role === 'READER' ? null : ns.defaultValue),
    }),
    defaultTtlSeconds: t.exposeInt('defaultTtlSeconds', { nullable: true }),
    historyLimit: t.exposeInt('historyLimit', { nullable: true }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    entryCount: t.int({ resolve: (namespace, _args, context) => context.loaders.entryCount.load(namespace.name) }),
    grants: t.field({
      type: [AccessGrantRef],
      description: 'Admins only',
      authScopes: { admin: true },
      unauthorizedError: refusedTo('read grants'),
      resolve: (namespace, _args, context) => context.loaders.grants.load(namespace.name),
    }),
  }),
});

const CreateNamespaceInput = builder.inputType('CreateNamespaceInput', {
  fields: (t) => ({
    name: t.string({ required: true }),
    description: t.string(),
    openAccess: t.boolean({ defaultValue: true }),
    sensitive: t.boolean({ defaultValue: false }),
    schema: t.field({ type: 'JSON' }),
    defaultValue: t.field({ type: 'JSON' }),
    defaultTtlSeconds: t.int(),
    historyLimit: t.int(),
  }),
});

const UpdateNamespaceInput = builder.inputType('UpdateNamespaceInput', {
  description: 'Fields left out stay as they are; null clears a setting',
  fields: (t) => ({
    name: t.string({ required: true }),
    description: t.string(),
    openAccess: t.boolean(),
    schema: t.field({ type: 'JSON' }),
    defaultValue: t.field({ type: 'JSON' }),
    defaultTtlSeconds: t.int(),
    historyLimit: t.int(),
  }),
});

const GrantAccessInput = builder.inputType('GrantAccessInput', {
  fields: (t) => ({
    namespace: t.string({ required: true }),
    agentId: t.id({ required: true }),
    permission: t.field({ type: Permission, defaultValue: 'WRITE' }),
  }),
});

const RevokeAccessInput = builder.inputType('RevokeAccessInput', {
  fields: (t) => ({
    namespace: t.string({ required: true }),
    agentId: t.id({ required: true }),
  }),
});

builder.queryFields((t) => ({
  namespaces: t.field({
    type: [NamespaceRef],
    description: 'Those the caller can read',
    authScopes: { authenticated: true },
    resolve: async (_root, _args, context) => {
      const principal = principalOf(context);
      const [reachable, settings] = await Promise.all([
        context.services.access.reachable(principal),
        context.services.access.namespaces(principal.tenantId),
      ]);
      return reachable.flatMap(({ namespace }) => settings.get(namespace) ?? []);
    },
  }),
  namespace: t.field({
    type: NamespaceRef,
    nullable: true,
    args: { name: t.arg.string({ required: true }) },
    authScopes: { authenticated: true },
    // Not the namespaceRead scope: a missing namespace is null here, not an error — except for an
    // agent, to whom missing and forbidden answer alike.
    resolve: async (_root, args, context) => {
      const principal = principalOf(context);
      const name = checkNamespace(args.name, 'name');
      const { access } = context.services;
      if (!(await access.canRead(principal, name))) {
        if (principal.role === 'AGENT') throw unreachableNamespace();
        return null;
      }
      return (await access.namespace(principal.tenantId, name)) ?? null;
    },
  }),
  namespacesForAgent: t.field({
    type: [NamespaceAccessRef],
    description: 'Every namespace the agent can reach; an agent may ask only for itself',
    args: { agentId: t.arg.id({ required: true }) },
    authScopes: { authenticated: true },
    resolve: async (_root, args, context) => {
      const principal = principalOf(context);
      const agentId = checkAgentId(String(args.agentId), 'agentId');
      if (principal.role === 'AGENT' && principal.agentId !== agentId) throw forbidden('An agent may ask only about its own namespaces');
      const { access } = context.services;
      if (!(await access.agentExists(principal.tenantId, agentId))) throw badInput('agentId', `Agent ${agentId} is not registered`);
      return access.reachableByAgent(principal.tenantId, agentId);
    },
  }),
}));

builder.mutationFields((t) => ({
  createNamespace: t.field({
    type: NamespaceRef,
    args: { input: t.arg({ type: CreateNamespaceInput, required: true }) },
    authScopes: { admin: true },
    unauthorizedError: refusedTo('create namespaces'),
    resolve: (_root, { input }, context) => context.services.namespaces.create(principalOf(context).tenantId, input),
  }),
  updateNamespace: t.field({
    type: NamespaceRef,
    args: { input: t.arg({ type: UpdateNamespaceInput, required: true }) },
    authScopes: { admin: true },
    unauthorizedError: refusedTo('change namespaces'),
    resolve: (_root, { input }, context) => context.services.namespaces.update(principalOf(context).tenantId, input),
  }),
  deleteNamespace: t.boolean({
    description: 'Deletes its entries, change log and grants too; false when there was no such namespace',
    args: { name: t.arg.string({ required: true }) },
    authScopes: { admin: true },
    unauthorizedError: refusedTo('delete namespaces'),
    resolve: (_root, args, context) => context.services.namespaces.delete(principalOf(context).tenantId, args.name),
  }),
  grantAccess: t.field({
    type: AccessGrantRef,
    args: { input: t.arg({ type: GrantAccessInput, required: true }) },
    authScopes: { admin: true },
    unauthorizedError: refusedTo('grant access'),
    resolve: (_root, { input }, context) =>
      context.services.namespaces.grant(principalOf(context).tenantId, { ...input, agentId: String(input.agentId) }),
  }),
  revokeAccess: t.boolean({
    args: { input: t.arg({ type: RevokeAccessInput, required: true }) },
    authScopes: { admin: true },
    unauthorizedError: refusedTo('revoke access'),
    resolve: (_root, { input }, context) =>
      context.services.namespaces.revoke(principalOf(context).tenantId, { ...input, agentId: String(input.agentId) }),
  }),
}));
