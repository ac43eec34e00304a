import type { InputFieldBuilder } from '@pothos/core';
import type { NamespaceAccess, NamespaceSettings } from '../../auth/access.js';
import { badInput, forbidden, unreachableNamespace } from '../../domain/errors.js';
import { checkAgentId, checkNamespace } from '../../domain/names.js';
import { builder, type SchemaTypes } from '../../graphql/builder.js';
import type { AccessGrant } from './namespaces.service.js';
import { refusedTo } from '../../graphql/refusals.js';

export const Permission = builder.enumType('Permission', {
  description: 'What a caller may do in a namespace',
  values: {
    READ: { description: 'Read its entries, their history and changes, and subscribe to them' },
    WRITE: { description: 'READ, and write its entries (set, patch, increment, delete, restore, commit)' },
  } as const,
});

export const NamespaceAccessRef = builder.objectRef<NamespaceAccess>('NamespaceAccess').implement({
  description: 'A namespace that can be reached, and how',
  fields: (t) => ({
    namespace: t.exposeString('namespace', { description: "The namespace's name" }),
    permission: t.expose('permission', { type: Permission, description: 'READ, or WRITE (which includes reading)' }),
  }),
});

const AccessGrantRef = builder.objectRef<AccessGrant>('AccessGrant').implement({
  description:
    "An explicit permission of one agent on one namespace. It decides before the namespace's openAccess and the agent's stateNamespaces, and is the only way an agent reaches a restricted namespace or writes to `system`",
  fields: (t) => ({
    namespace: t.exposeString('namespace', { description: 'The namespace it applies to' }),
    agentId: t.exposeID('agentId', { description: 'The agent it is given to' }),
    permission: t.expose('permission', {
      type: Permission,
      description: 'READ (read-only, even in a namespace the agent could otherwise write), or WRITE',
    }),
    grantedAt: t.expose('grantedAt', { type: 'DateTime', description: 'When it was given, or last changed' }),
  }),
});

const NamespaceRef = builder.objectRef<NamespaceSettings>('Namespace').implement({
  description:
    'A named collection of entries with its own settings and access. Every tenant has `common` (every agent reads and writes) and `system` (every agent reads; writing needs a grant)',
  fields: (t) => ({
    name: t.exposeString('name', { description: 'Unique in the tenant; fixed at creation' }),
    description: t.exposeString('description', { nullable: true, description: 'Free text for people, up to 1000 characters' }),
    openAccess: t.exposeBoolean('openAccess', {
      description:
        'true: any agent that lists it in its stateNamespaces may read and write it. false (restricted): agents reach it only through a grant',
    }),
    sensitive: t.exposeBoolean('sensitive', {
      description:
        'Values are encrypted at rest (AES-256-GCM); a READER sees entries without their values. Fixed at creation; patch, increment and value filters are refused on it',
    }),
    schema: t.expose('schema', {
      type: 'JSON',
      nullable: true,
      description: 'JSON Schema (draft 2020-12) every written value must match, else VALIDATION_FAILED; null: any JSON',
    }),
    defaultValue: t.field({
      type: 'JSON',
      nullable: true,
      description:
        'What a read of a missing entry returns, as an entry at version 0; null: such reads return null. Null for a READER when the namespace is sensitive',
      resolve: (ns, _args, context) => (ns.sensitive && context.principal?.role === 'READER' ? null : ns.defaultValue),
    }),
    defaultTtlSeconds: t.exposeInt('defaultTtlSeconds', {
      nullable: true,
      description: 'Seconds until an entry written without ttlSeconds expires; null: such entries never expire',
    }),
    historyLimit: t.exposeInt('historyLimit', {
      nullable: true,
      description:
        'How many versions of each key are kept: history, time travel and restoreEntry show only the newest this many at once (asking for an older one is REVISION_COMPACTED), and the older ones are removed in the background. null: all are kept',
    }),
    createdAt: t.expose('createdAt', { type: 'DateTime', description: 'When it was created' }),
    entryCount: t.int({
      description: 'Its live entries: neither deleted nor expired',
      resolve: (namespace, _args, context) => context.loaders.entryCount.load(namespace.name),
    }),
    grants: t.withAuth({ admin: true }).field({
      type: [AccessGrantRef],
      description: "The agents' explicit grants on it, by agent id. ADMIN only (FORBIDDEN for others)",
      unauthorizedError: refusedTo('read grants'),
      resolve: (namespace, _args, context) => context.loaders.grants.load(namespace.name),
    }),
  }),
});

/** The settings that CreateNamespaceInput and UpdateNamespaceInput describe alike. */
const settingFields = (t: InputFieldBuilder<SchemaTypes, 'InputObject'>) => ({
  description: t.string({ description: 'Free text for people, up to 1000 characters' }),
  defaultValue: t.field({ type: 'JSON', description: 'What reads of a missing entry return (at version 0); must match the schema' }),
  defaultTtlSeconds: t.int({ description: 'Seconds, 1 to 315360000 (10 years): the TTL of writes that give no ttlSeconds' }),
});

const CreateNamespaceInput = builder.inputType('CreateNamespaceInput', {
  description: 'A new namespace and its settings',
  fields: (t) => ({
    name: t.string({
      required: true,
      description:
        '1 to 63 characters: lowercase letters, digits, ".", "_" and "-", starting with a letter or digit; taken: BAD_USER_INPUT',
    }),
    openAccess: t.boolean({
      defaultValue: true,
      description: 'false makes it restricted: agents reach it only through grantAccess',
    }),
    sensitive: t.boolean({
      defaultValue: false,
      description:
        'Encrypt its values at rest; needs STATEHOUSE_ENCRYPTION_KEY on the gateway (else BAD_USER_INPUT). Cannot be changed later',
    }),
    schema: t.field({
      type: 'JSON',
      description: 'A JSON Schema (draft 2020-12) every written value must match; an invalid schema is BAD_USER_INPUT',
    }),
    ...settingFields(t),
    historyLimit: t.int({ description: 'Versions kept per key, 1 or more; unset keeps all' }),
  }),
});

const UpdateNamespaceInput = builder.inputType('UpdateNamespaceInput', {
  description: 'Fields left out stay as they are; null clears a setting. `sensitive` cannot be changed',
  fields: (t) => ({
    name: t.string({ required: true, description: 'The namespace to change; missing: NOT_FOUND' }),
    openAccess: t.boolean({ description: 'false makes it restricted: agents reach it only through grants (null leaves it as it is)' }),
    schema: t.field({
      type: 'JSON',
      description: 'A JSON Schema (draft 2020-12) for values written from now on; stored values are not checked again',
    }),
    ...settingFields(t),
    historyLimit: t.int({
      description: 'Versions kept per key, 1 or more; reads honour a new limit at once, older versions are removed in the background',
    }),
  }),
});

const GrantAccessInput = builder.inputType('GrantAccessInput', {
  description: "An agent's explicit permission on a namespace",
  fields: (t) => ({
    namespace: t.string({ required: true, description: 'An existing namespace (else BAD_USER_INPUT)' }),
    agentId: t.id({ required: true, description: 'A registered agent (else BAD_USER_INPUT)' }),
    permission: t.field({ type: Permission, defaultValue: 'WRITE', description: 'Replaces the permission of an earlier grant' }),
  }),
});

const RevokeAccessInput = builder.inputType('RevokeAccessInput', {
  description: "The grant to take back: the agent's access falls back to the rest of the access rule",
  fields: (t) => ({
    namespace: t.string({ required: true, description: 'The namespace of the grant' }),
    agentId: t.id({ required: true, description: 'The agent of the grant' }),
  }),
});

builder.queryFields((t) => ({
  namespaces: t.withAuth({ authenticated: true }).field({
    type: [NamespaceRef],
    description: 'The namespaces the caller can read, with their settings. Any valid token',
    resolve: async (_root, _args, context) => {
      const { principal } = context;
      const [reachable, settings] = await Promise.all([
        context.services.access.reachable(principal),
        context.services.access.namespaces(principal.tenantId),
      ]);
      return reachable.flatMap(({ namespace }) => settings.get(namespace) ?? []);
    },
  }),
  namespace: t.withAuth({ authenticated: true }).field({
    type: NamespaceRef,
    nullable: true,
    description:
      'One namespace with its settings; null when it does not exist or the caller cannot read it (an agent gets FORBIDDEN in both cases)',
    args: { name: t.arg.string({ required: true, description: "The namespace's name" }) },
    // Not the namespaceRead scope: a missing namespace is null here, not an error — except for an
    // agent, to whom missing and forbidden answer alike.
    resolve: async (_root, args, context) => {
      const { principal } = context;
      const name = checkNamespace(args.name, 'name');
      const { access } = context.services;
      if (!(await access.canRead(principal, name))) {
        if (principal.role === 'AGENT') throw unreachableNamespace();
        return null;
      }
      return (await access.namespace(principal.tenantId, name)) ?? null;
    },
  }),
  namespacesForAgent: t.withAuth({ authenticated: true }).field({
    type: [NamespaceAccessRef],
    description:
      'Every namespace the agent can reach, with its permission, `common` and `system` included. ADMIN and READER for any agent; an AGENT only for itself (else FORBIDDEN). An unregistered agent is BAD_USER_INPUT',
    args: { agentId: t.arg.id({ required: true, description: 'A registered agent' }) },
    resolve: async (_root, args, context) => {
      const { principal } = context;
      const agentId = checkAgentId(String(args.agentId), 'agentId');
      if (principal.role === 'AGENT' && principal.agentId !== agentId) throw forbidden('An agent may ask only about its own namespaces');
      const { access } = context.services;
      if (!(await access.agentExists(principal.tenantId, agentId))) throw badInput('agentId', `Agent ${agentId} is not registered`);
      return access.reachableByAgent(principal.tenantId, agentId);
    },
  }),
}));

builder.mutationFields((t) => ({
  createNamespace: t.withAuth({ admin: true }).field({
    type: NamespaceRef,
    description: 'Creates a namespace. ADMIN only',
    args: { input: t.arg({ type: CreateNamespaceInput, required: true, description: 'Its name and settings' }) },
    unauthorizedError: refusedTo('create namespaces'),
    resolve: (_root, { input }, context) => context.services.namespaces.create(context.principal.tenantId, input),
  }),
  updateNamespace: t.withAuth({ admin: true }).field({
    type: NamespaceRef,
    description: "Changes a namespace's settings; access changes apply at once, to open subscriptions too. ADMIN only",
    args: { input: t.arg({ type: UpdateNamespaceInput, required: true, description: 'The namespace and the settings to change' }) },
    unauthorizedError: refusedTo('change namespaces'),
    resolve: (_root, { input }, context) => context.services.namespaces.update(context.principal.tenantId, input),
  }),
  deleteNamespace: t.withAuth({ admin: true }).boolean({
    description:
      'Deletes a namespace with its entries, change log and grants; false when there was no such namespace. `common` and `system` cannot be deleted (BAD_USER_INPUT). ADMIN only',
    args: { name: t.arg.string({ required: true, description: "The namespace's name" }) },
    unauthorizedError: refusedTo('delete namespaces'),
    resolve: (_root, args, context) => context.services.namespaces.delete(context.principal.tenantId, args.name),
  }),
  grantAccess: t.withAuth({ admin: true }).field({
    type: AccessGrantRef,
    description: 'Gives an agent an explicit permission on a namespace, or changes it; effective at once. ADMIN only',
    args: { input: t.arg({ type: GrantAccessInput, required: true, description: 'The namespace, the agent and the permission' }) },
    unauthorizedError: refusedTo('grant access'),
    resolve: (_root, { input }, context) =>
      context.services.namespaces.grant(context.principal.tenantId, { ...input, agentId: String(input.agentId) }),
  }),
  revokeAccess: t.withAuth({ admin: true }).boolean({
    description:
      "Removes an agent's grant; false when there was none. Effective at once: the agent's subscriptions that lose access end with FORBIDDEN. ADMIN only",
    args: { input: t.arg({ type: RevokeAccessInput, required: true, description: 'The namespace and the agent' }) },
    unauthorizedError: refusedTo('revoke access'),
    resolve: (_root, { input }, context) =>
      context.services.namespaces.revoke(context.principal.tenantId, { ...input, agentId: String(input.agentId) }),
  }),
}));
