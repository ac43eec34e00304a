import type { Context } from '../../context.js';
import { checkKey, checkNamespace, checkScope } from '../../domain/names.js';
import { isSealed } from '../../domain/value-cipher.js';
import { builder } from '../../graphql/builder.js';
import { principalOf } from '../../graphql/principal.js';
import { auditSensitiveRead } from '../audit/audit.graphql.js';
import { CommitService, type CommitResult as CommitResultShape } from './entries.commit.js';
import type { Entry, EntryChange, EntryVersion, Page } from './entries.service.js';
import type { WatchEvent } from './entries.watch.js';

type StoredValue = { namespace: string; scope: string; key: string; value: unknown };

/**
 * A value as the caller may see it. Values of sensitive namespaces are stored sealed: a READER gets
 * null, anyone else the opened value, and the read is audited once per operation and namespace.
 * Plain values are returned synchronously, so that a page of entries completes without a promise per row.
 */
const revealed = (context: Context, row: StoredValue) => (isSealed(row.value) ? opened(context, row) : row.value);

async function opened(context: Context, row: StoredValue) {
  const principal = principalOf(context);
  const settings = await context.services.access.namespace(principal.tenantId, row.namespace);
  if (!settings?.sensitive) return row.value;
  if (principal.role === 'READER') return null;
  auditSensitiveRead(context, row.namespace);
  return context.services.entries.open(principal.tenantId, row);
}

/** What a read of the change log covers: the namespace asked for, else an agent's reachable ones, else (admins, readers) all. */
async function changeLogNamespaces(context: Context, args: { namespace?: string | null }): Promise<string[] | null> {
  if (args.namespace) return [args.namespace];
  const principal = principalOf(context);
  if (principal.role !== 'AGENT') return null;
  return (await context.services.access.reachable(principal)).map((access) => access.namespace);
}

const ChangeOp = builder.enumType('ChangeOp', { values: ['SET', 'DELETE', 'EXPIRE'] as const });

export const EntryRef = builder.objectRef<Entry>('Entry').implement({
  fields: (t) => ({
    namespace: t.exposeString('namespace'),
    scope: t.exposeString('scope'),
    key: t.exposeString('key'),
    value: t.field({ type: 'JSON', nullable: true, resolve: (entry, _args, context) => revealed(context, entry) }),
    version: t.exposeInt('version', {
      description: '+1 on every change of this (namespace, scope, key), deletes included; never repeats',
    }),
    revision: t.expose('revision', { type: 'Revision', description: 'The change-log position of its last change' }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    updatedAt: t.expose('updatedAt', { type: 'DateTime' }),
    updatedBy: t.exposeString('updatedBy', { nullable: true }),
    expiresAt: t.expose('expiresAt', { type: 'DateTime', nullable: true }),
  }),
});

export const EntryChangeRef = builder.objectRef<EntryChange>('EntryChange').implement({
  fields: (t) => ({
    revision: t.expose('revision', { type: 'Revision' }),
    op: t.expose('op', { type: ChangeOp }),
    namespace: t.exposeString('namespace'),
    scope: t.exposeString('scope'),
    key: t.exposeString('key'),
    version: t.exposeInt('version'),
    value: t.field({ type: 'JSON', nullable: true, resolve: (change, _args, context) => revealed(context, change) }),
    at: t.expose('at', { type: 'DateTime' }),
    actor: t.exposeString('actor', { nullable: true }),
  }),
});

const EntryVersionRef = builder.objectRef<EntryVersion>('EntryVersion').implement({
  fields: (t) => ({
    version: t.exposeInt('version'),
    revision: t.expose('revision', { type: 'Revision' }),
    op: t.expose('op', { type: ChangeOp }),
    value: t.field({ type: 'JSON', nullable: true, resolve: (version, _args, context) => revealed(context, version) }),
    at: t.expose('at', { type: 'DateTime' }),
    actor: t.exposeString('actor', { nullable: true }),
  }),
});

const PageInfo = builder.objectRef<Page<unknown>['pageInfo']>('PageInfo').implement({
  fields: (t) => ({
    hasNextPage: t.exposeBoolean('hasNextPage'),
    endCursor: t.exposeString('endCursor', { nullable: true }),
  }),
});

const EntryConnection = builder.objectRef<Page<Entry>>('EntryConnection').implement({
  fields: (t) => ({
    nodes: t.expose('nodes', { type: [EntryRef] }),
    pageInfo: t.expose('pageInfo', { type: PageInfo }),
  }),
});

const ChangeConnection = builder.objectRef<Page<EntryChange>>('ChangeConnection').implement({
  fields: (t) => ({
    nodes: t.expose('nodes', { type: [EntryChangeRef] }),
    pageInfo: t.expose('pageInfo', { type: PageInfo }),
  }),
});

const SetEntryInput = builder.inputType('SetEntryInput', {
  fields: (t) => ({
    namespace: t.string({ required: true }),
    key: t.string({ required: true }),
    scope: t.string({ defaultValue: 'global' }),
    value: t.field({ type: 'JSON', required: true }),
    expectedVersion: t.int({ description: 'Succeed only if the current version is this (0: the entry must not exist)' }),
    ttlSeconds: t.int({ description: 'Expire after this many seconds; without it the namespace default applies' }),
  }),
});

const PatchEntryInput = builder.inputType('PatchEntryInput', {
  fields: (t) => ({
    namespace: t.string({ required: true }),
    key: t.string({ required: true }),
    scope: t.string({ defaultValue: 'global' }),
    patch: t.field({ type: 'JSON', required: true, description: 'An RFC 7396 JSON merge patch' }),
    expectedVersion: t.int(),
  }),
});

const IncrementEntryInput = builder.inputType('IncrementEntryInput', {
  fields: (t) => ({
    namespace: t.string({ required: true }),
    key: t.string({ required: true }),
    scope: t.string({ defaultValue: 'global' }),
    by: t.float({ defaultValue: 1 }),
  }),
});

const RestoreEntryInput = builder.inputType('RestoreEntryInput', {
  fields: (t) => ({
    namespace: t.string({ required: true }),
    key: t.string({ required: true }),
    scope: t.string({ defaultValue: 'global' }),
    version: t.int({ required: true, description: 'The version whose value becomes the new version' }),
  }),
});

const DeleteEntryInput = builder.inputType('DeleteEntryInput', {
  fields: (t) => ({
    namespace: t.string({ required: true }),
    key: t.string({ required: true }),
    scope: t.string({ defaultValue: 'global' }),
    expectedVersion: t.int(),
  }),
});

const ConditionInput = builder.inputType('ConditionInput', {
  fields: (t) => ({
    namespace: t.string({ required: true }),
    key: t.string({ required: true }),
    scope: t.string({ defaultValue: 'global' }),
    version: t.int({ required: true, description: '0: the entry must not exist' }),
  }),
});

const OperationInput = builder.inputType('OperationInput', {
  description: 'Exactly one of its fields',
  fields: (t) => ({
    set: t.field({ type: SetEntryInput }),
    patch: t.field({ type: PatchEntryInput }),
    increment: t.field({ type: IncrementEntryInput }),
    delete: t.field({ type: DeleteEntryInput }),
  }),
});

const CommitInput = builder.inputType('CommitInput', {
  fields: (t) => ({
    conditions: t.field({ type: [ConditionInput] }),
    operations: t.field({ type: [OperationInput], required: true }),
  }),
});

const CommitResult = builder.objectRef<CommitResultShape>('CommitResult').implement({
  fields: (t) => ({
    revision: t.expose('revision', { type: 'Revision', description: 'Shared by all changes of the commit' }),
    entries: t.expose('entries', { type: [EntryRef], description: 'The entries as written, in operation order (deletes left out)' }),
  }),
});

builder.queryFields((t) => ({
  entry: t.field({
    type: EntryRef,
    nullable: true,
    description:
      'The live value, or with atRevision / asOf the value as it was then; null when absent (a namespace defaultValue answers with version 0)',
    args: {
      namespace: t.arg.string({ required: true }),
      key: t.arg.string({ required: true }),
      scope: t.arg.string({ defaultValue: 'global' }),
      atRevision: t.arg({ type: 'Revision' }),
      asOf: t.arg({ type: 'DateTime' }),
    },
    authScopes: (_root, args) => ({ namespaceRead: args.namespace }),
    resolve: (_root, args, context) => context.services.entries.get(principalOf(context).tenantId, args),
  }),
  entries: t.field({
    type: EntryConnection,
    description: 'Live entries ordered by scope and key. prefix matches keys literally; match keeps values that contain it (JSONB @>)',
    args: {
      namespace: t.arg.string({ required: true }),
      scope: t.arg.string(),
      prefix: t.arg.string(),
      match: t.arg({ type: 'JSON' }),
      first: t.arg.int({ defaultValue: 100 }),
      after: t.arg.string(),
    },
    authScopes: (_root, args) => ({ namespaceRead: args.namespace }),
    resolve: (_root, args, context) => context.services.entries.list(principalOf(context).tenantId, args),
  }),
  entryHistory: t.field({
    type: [EntryVersionRef],
    description: 'Every version, newest first: sets, deletes and expiries',
    args: {
      namespace: t.arg.string({ required: true }),
      key: t.arg.string({ required: true }),
      scope: t.arg.string({ defaultValue: 'global' }),
      first: t.arg.int({ defaultValue: 50 }),
    },
    authScopes: (_root, args) => ({ namespaceRead: args.namespace }),
    resolve: (_root, args, context) => context.services.entries.history(principalOf(context).tenantId, args),
  }),
  resolveEntry: t.field({
    type: EntryRef,
    nullable: true,
    description: 'The entry of the first scope, in order, that holds the key',
    args: {
      namespace: t.arg.string({ required: true }),
      key: t.arg.string({ required: true }),
      scopes: t.arg.stringList({ required: true }),
    },
    authScopes: (_root, args) => ({ namespaceRead: args.namespace }),
    resolve: (_root, args, context) => context.services.entries.resolve(principalOf(context).tenantId, args),
  }),
  changes: t.field({
    type: ChangeConnection,
    description: 'Changes the caller may read, oldest first; page on with after: pageInfo.endCursor (first ≤ 1000)',
    args: {
      namespace: t.arg.string(),
      afterRevision: t.arg({ type: 'Revision' }),
      first: t.arg.int({ defaultValue: 100 }),
      after: t.arg.string(),
    },
    authScopes: (_root, args) => (args.namespace ? { namespaceRead: args.namespace } : { authenticated: true }),
    resolve: async (_root, args, context) =>
      context.services.entries.changes(principalOf(context).tenantId, { ...args, namespaces: await changeLogNamespaces(context, args) }),
  }),
  latestChanges: t.field({
    type: [EntryChangeRef],
    description:
      'The newest changes the caller may read, newest first (first ≤ 1000). entryChanged(afterRevision: the revision of the first of them) continues them with no gap and no duplicate',
    args: {
      namespace: t.arg.string(),
      first: t.arg.int({ defaultValue: 100 }),
    },
    authScopes: (_root, args) => (args.namespace ? { namespaceRead: args.namespace } : { authenticated: true }),
    resolve: async (_root, args, context) =>
      context.services.entries.latestChanges(principalOf(context).tenantId, {
        first: args.first,
        namespaces: await changeLogNamespaces(context, args),
      }),
  }),
}));

builder.mutationFields((t) => ({
  setEntry: t.field({
    type: EntryRef,
    args: { input: t.arg({ type: SetEntryInput, required: true }) },
    authScopes: (_root, args) => ({ namespaceWrite: args.input.namespace }),
    resolve: (_root, { input }, context) => context.services.entries.set(principalOf(context), input),
  }),
  patchEntry: t.field({
    type: EntryRef,
    description: 'RFC 7396 JSON merge patch; creates from {} when absent',
    args: { input: t.arg({ type: PatchEntryInput, required: true }) },
    authScopes: (_root, args) => ({ namespaceWrite: args.input.namespace }),
    resolve: (_root, { input }, context) => context.services.entries.patch(principalOf(context), input),
  }),
  incrementEntry: t.field({
    type: EntryRef,
    description: 'Atomic add to a numeric value; absent counts as 0',
    args: { input: t.arg({ type: IncrementEntryInput, required: true }) },
    authScopes: (_root, args) => ({ namespaceWrite: args.input.namespace }),
    resolve: (_root, { input }, context) => context.services.entries.increment(principalOf(context), input),
  }),
  restoreEntry: t.field({
    type: EntryRef,
    description: "Writes an old version's value as a new version",
    args: { input: t.arg({ type: RestoreEntryInput, required: true }) },
    authScopes: (_root, args) => ({ namespaceWrite: args.input.namespace }),
    resolve: (_root, { input }, context) => context.services.entries.restore(principalOf(context), input),
  }),
  deleteEntry: t.boolean({
    description: 'false when there was nothing to delete',
    args: { input: t.arg({ type: DeleteEntryInput, required: true }) },
    authScopes: (_root, args) => ({ namespaceWrite: args.input.namespace }),
    resolve: (_root, { input }, context) => context.services.entries.delete(principalOf(context), input),
  }),
}));

builder.mutationFields((t) => ({
  commit: t.field({
    type: CommitResult,
    description: 'Conditions checked and operations applied in one transaction: all or nothing, one revision',
    args: { input: t.arg({ type: CommitInput, required: true }) },
    authScopes: (_root, { input }) => {
      const { writes, reads } = CommitService.namespacesOf(input);
      return { $all: { authenticated: true, namespacesWrite: writes, namespacesRead: reads } };
    },
    resolve: (_root, { input }, context) => context.services.commits.commit(principalOf(context), input),
  }),
}));

builder.subscriptionFields((t) => ({
  entryChanged: t.field({
    type: EntryChangeRef,
    description:
      'Changes the caller may read, in revision order. With afterRevision, first replays every change after it, then goes live: no gap, no duplicate',
    args: {
      namespace: t.arg.string(),
      scope: t.arg.string(),
      keyPrefix: t.arg.string(),
      afterRevision: t.arg({ type: 'Revision' }),
    },
    authScopes: (_root, args) => (args.namespace ? { namespaceRead: args.namespace } : { authenticated: true }),
    subscribe: async (_root, args, context) => {
      const principal = principalOf(context);
      if (args.namespace) checkNamespace(args.namespace);
      if (args.scope) checkScope(args.scope);
      if (args.keyPrefix) checkKey(args.keyPrefix, 'keyPrefix');
      if (args.afterRevision) {
        const namespaces = args.namespace ? [args.namespace] : null;
        await context.services.entries.checkResumeRevision(principal.tenantId, args.afterRevision, 'afterRevision', namespaces);
      }
      return context.services.watcher.watch(principal, args, context.reauthenticate);
    },
    resolve: (event: WatchEvent) => {
      if ('end' in event) throw event.end;
      return event.change;
    },
  }),
}));
