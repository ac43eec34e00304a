import type { InputFieldBuilder, ObjectFieldBuilder } from '@pothos/core';
import type { Context } from '../../context.js';
import { checkKey, checkNamespace, checkScope, GLOBAL_SCOPE } from '../../domain/names.js';
import { isSealed } from '../../domain/value-cipher.js';
import { builder, type SchemaTypes } from '../../graphql/builder.js';
import { principalOf } from '../../graphql/principal.js';
import { auditSensitiveRead } from '../audit/audit.graphql.js';
import { CommitService, type CommitResult as CommitResultShape } from './entries.commit.js';
import type { WatchEvent } from './entries.watch.js';
import type { Entry, EntryChange, EntryVersion, Page } from './entries.model.js';

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

const ChangeOp = builder.enumType('ChangeOp', {
  description: 'What a change did to its entry',
  values: {
    SET: { description: 'Wrote a value: setEntry, patchEntry, incrementEntry, restoreEntry, a commit or an import' },
    DELETE: { description: 'Removed the entry: deleteEntry, a commit, or an import in REPLACE mode' },
    EXPIRE: {
      description: 'The entry reached its expiresAt (it reads as absent from that moment); recorded soon after by a background sweep',
    },
  } as const,
});

/** Descriptions shared by the arguments and input fields that address an entry. */
const ADDRESS = {
  namespace: 'The namespace: 1 to 63 characters of a-z, 0-9, ".", "_" and "-", starting with a letter or digit',
  key: 'The key: 1 to 512 characters, no control characters',
  scope:
    'The scope: "global", or 1 to 200 characters of A-Z, a-z, 0-9 and "._:/@-" (by convention thread:<id>, agent:<id>, agent_type:<name>)',
  expectedVersion: 'Succeed only if the entry is at this version (0: it must not exist), else VERSION_CONFLICT with currentVersion',
} as const;

/** The input fields that address an entry. */
const addressFields = (t: InputFieldBuilder<SchemaTypes, 'InputObject'>) => ({
  namespace: t.string({ required: true, description: ADDRESS.namespace }),
  key: t.string({ required: true, description: ADDRESS.key }),
  scope: t.string({ defaultValue: GLOBAL_SCOPE, description: ADDRESS.scope }),
});

export const EntryRef = builder.objectRef<Entry>('Entry').implement({
  description: 'A value stored under (namespace, scope, key), with its version and change-log position',
  fields: (t) => ({
    namespace: t.exposeString('namespace', { description: 'The namespace it is in' }),
    scope: t.exposeString('scope', { description: 'Its scope; "global" unless one was given' }),
    key: t.exposeString('key', { description: 'Its key, unique within the namespace and scope' }),
    value: t.field({
      type: 'JSON',
      nullable: true,
      description: 'The stored JSON; null for a READER when the namespace is sensitive',
      resolve: (entry, _args, context) => revealed(context, entry),
    }),
    version: t.exposeInt('version', {
      description: '+1 on every change of this (namespace, scope, key), deletes included; never repeats',
    }),
    revision: t.expose('revision', { type: 'Revision', description: 'The change-log position of its last change' }),
    createdAt: t.expose('createdAt', {
      type: 'DateTime',
      description: 'When it was created: its first write, or the first after a delete or expiry',
    }),
    updatedAt: t.expose('updatedAt', { type: 'DateTime', description: 'When it was last written' }),
    updatedBy: t.exposeString('updatedBy', {
      nullable: true,
      description: 'Who last wrote it: an agent id, or admin:<token name>; null for a namespace defaultValue',
    }),
    expiresAt: t.expose('expiresAt', {
      type: 'DateTime',
      nullable: true,
      description: 'When it expires (from ttlSeconds or the namespace defaultTtlSeconds); null: never',
    }),
  }),
});

/** The fields a change and a version share: the write itself, where it is in the log, when and by whom. */
const changeFields = (t: ObjectFieldBuilder<SchemaTypes, EntryChange>) => ({
  version: t.exposeInt('version', { description: "The entry's version this change made (its first write is 1)" }),
  revision: t.expose('revision', { type: 'Revision', description: 'Its position in the change log' }),
  op: t.expose('op', { type: ChangeOp, description: 'What it did' }),
  value: t.field({
    type: 'JSON',
    nullable: true,
    description: 'The value written; null for DELETE and EXPIRE, and for a READER when the namespace is sensitive',
    resolve: (change, _args, context) => revealed(context, change),
  }),
  at: t.expose('at', { type: 'DateTime', description: 'When it happened' }),
  actor: t.exposeString('actor', {
    nullable: true,
    description: 'Who made it: an agent id, or admin:<token name>; null for EXPIRE',
  }),
});

export const EntryChangeRef = builder.objectRef<EntryChange>('EntryChange').implement({
  description:
    "One change of one entry in the tenant's change log. The changes of one write or commit share a revision and differ in namespace, scope and key",
  fields: (t) => ({
    ...changeFields(t),
    namespace: t.exposeString('namespace', { description: 'The namespace of the entry' }),
    scope: t.exposeString('scope', { description: 'The scope of the entry' }),
    key: t.exposeString('key', { description: 'The key of the entry' }),
  }),
});

const EntryVersionRef = builder.objectRef<EntryVersion>('EntryVersion').implement({
  description: 'One version of an entry, as entryHistory lists it',
  fields: changeFields,
});

const PageInfo = builder.objectRef<Page<unknown>['pageInfo']>('PageInfo').implement({
  description: 'Where a page ends, and whether more follow',
  fields: (t) => ({
    hasNextPage: t.exposeBoolean('hasNextPage', { description: 'Whether another page follows this one' }),
    endCursor: t.exposeString('endCursor', {
      nullable: true,
      description: 'Pass it as `after` for the next page; null when the page is empty. Opaque: a cursor of one list is refused by another',
    }),
  }),
});

const EntryConnection = builder.objectRef<Page<Entry>>('EntryConnection').implement({
  description: 'A page of entries',
  fields: (t) => ({
    nodes: t.expose('nodes', { type: [EntryRef], description: 'The entries of this page, by scope and key' }),
    pageInfo: t.expose('pageInfo', { type: PageInfo, description: 'How to ask for the next page' }),
  }),
});

const ChangeConnection = builder.objectRef<Page<EntryChange>>('ChangeConnection').implement({
  description: 'A page of the change log',
  fields: (t) => ({
    nodes: t.expose('nodes', { type: [EntryChangeRef], description: 'The changes of this page, oldest first' }),
    pageInfo: t.expose('pageInfo', { type: PageInfo, description: 'How to ask for the next page' }),
  }),
});

const SetEntryInput = builder.inputType('SetEntryInput', {
  description: 'A value to write under (namespace, scope, key)',
  fields: (t) => ({
    ...addressFields(t),
    value: t.field({
      type: 'JSON',
      required: true,
      description:
        "The value; at most the tenant's limits.maxValueBytes as JSON (1 MiB by default, else PAYLOAD_TOO_LARGE) and valid against the namespace schema (else VALIDATION_FAILED)",
    }),
    expectedVersion: t.int({ description: ADDRESS.expectedVersion }),
    ttlSeconds: t.int({
      description:
        "Seconds until the entry expires, 1 to 315360000 (10 years). Unset: the namespace's defaultTtlSeconds, or never — an earlier TTL does not carry over",
    }),
  }),
});

const PatchEntryInput = builder.inputType('PatchEntryInput', {
  description: 'A JSON merge patch (RFC 7396) to apply to an entry',
  fields: (t) => ({
    ...addressFields(t),
    patch: t.field({
      type: 'JSON',
      required: true,
      description:
        'An RFC 7396 JSON merge patch: its members replace those of the value, null members remove them, a non-object replaces the value whole. An absent entry is patched from the namespace defaultValue, or {}; the result must fit the size limit and the namespace schema',
    }),
    expectedVersion: t.int({ description: ADDRESS.expectedVersion }),
  }),
});

const IncrementEntryInput = builder.inputType('IncrementEntryInput', {
  description: 'An atomic addition to a numeric entry',
  fields: (t) => ({
    ...addressFields(t),
    by: t.float({
      defaultValue: 1,
      description:
        'What to add (negative subtracts), computed exactly in decimal (0.1 + 0.2 is 0.3). A value that is not a number, or a sum beyond the range of JSON numbers, is BAD_USER_INPUT',
    }),
  }),
});

const RestoreEntryInput = builder.inputType('RestoreEntryInput', {
  description: 'An old version of an entry to write again as its newest',
  fields: (t) => ({
    ...addressFields(t),
    version: t.int({
      required: true,
      description:
        'The version whose value becomes the new version: a SET version (a DELETE or EXPIRE is BAD_USER_INPUT); a compacted one is REVISION_COMPACTED',
    }),
  }),
});

const DeleteEntryInput = builder.inputType('DeleteEntryInput', {
  description: 'An entry to delete',
  fields: (t) => ({
    ...addressFields(t),
    expectedVersion: t.int({ description: ADDRESS.expectedVersion }),
  }),
});

const ConditionInput = builder.inputType('ConditionInput', {
  description: "A commit's precondition: an entry must be at a version (needs READ on its namespace)",
  fields: (t) => ({
    ...addressFields(t),
    version: t.int({ required: true, description: 'The version the entry must be at; 0: it must not exist. Otherwise VERSION_CONFLICT' }),
  }),
});

const OperationInput = builder.inputType('OperationInput', {
  description: 'One write of a commit: exactly one of its fields (else BAD_USER_INPUT). A key may appear in one operation of a commit only',
  fields: (t) => ({
    set: t.field({ type: SetEntryInput, description: 'As setEntry' }),
    patch: t.field({ type: PatchEntryInput, description: 'As patchEntry' }),
    increment: t.field({ type: IncrementEntryInput, description: 'As incrementEntry' }),
    delete: t.field({ type: DeleteEntryInput, description: 'As deleteEntry; deleting an absent entry is no change' }),
  }),
});

const CommitInput = builder.inputType('CommitInput', {
  description: 'Conditions and writes applied together, or not at all',
  fields: (t) => ({
    conditions: t.field({
      type: [ConditionInput],
      description: "Checked first, all in the commit's transaction; at most limits.maxCommitOperations",
    }),
    operations: t.field({
      type: [OperationInput],
      required: true,
      description: "1 to the tenant's limits.maxCommitOperations (500 by default) writes, applied in order",
    }),
  }),
});

const CommitResult = builder.objectRef<CommitResultShape>('CommitResult').implement({
  description: 'What a commit wrote',
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
      'One entry: its live value, or with atRevision or asOf the value it had then. null when there is none (never written, deleted or expired), unless the namespace has a defaultValue, which answers at version 0. Needs READ on the namespace',
    args: {
      namespace: t.arg.string({ required: true, description: ADDRESS.namespace }),
      key: t.arg.string({ required: true, description: ADDRESS.key }),
      scope: t.arg.string({ defaultValue: GLOBAL_SCOPE, description: ADDRESS.scope }),
      atRevision: t.arg({
        type: 'Revision',
        description: 'Read the entry as it was at this revision; a future revision is BAD_USER_INPUT, a compacted one REVISION_COMPACTED',
      }),
      asOf: t.arg({ type: 'DateTime', description: 'Read the entry as it was at this time; not together with atRevision' }),
    },
    authScopes: (_root, args) => ({ namespaceRead: args.namespace }),
    resolve: (_root, args, context) => context.services.entries.get(principalOf(context).tenantId, args),
  }),
  entries: t.field({
    type: EntryConnection,
    description: 'A page of the live entries of a namespace, ordered by scope and key. Needs READ on the namespace',
    args: {
      namespace: t.arg.string({ required: true, description: ADDRESS.namespace }),
      scope: t.arg.string({ description: 'Only this scope; unset: every scope' }),
      prefix: t.arg.string({ description: 'Only keys that start with it, compared literally (% and _ are ordinary characters)' }),
      match: t.arg({
        type: 'JSON',
        description:
          'Only values that contain it, as PostgreSQL JSONB containment (@>): {"status": "new"} matches every object with that member. Refused on sensitive namespaces',
      }),
      first: t.arg.int({ defaultValue: 100, description: 'Page size, 1 to 1000' }),
      after: t.arg.string({ description: "The previous page's pageInfo.endCursor" }),
    },
    authScopes: (_root, args) => ({ namespaceRead: args.namespace }),
    resolve: (_root, args, context) => context.services.entries.list(principalOf(context).tenantId, args),
  }),
  entryHistory: t.field({
    type: [EntryVersionRef],
    description:
      "An entry's versions, newest first: sets, deletes and expiries, back to the namespace's historyLimit. Needs READ on the namespace",
    args: {
      namespace: t.arg.string({ required: true, description: ADDRESS.namespace }),
      key: t.arg.string({ required: true, description: ADDRESS.key }),
      scope: t.arg.string({ defaultValue: GLOBAL_SCOPE, description: ADDRESS.scope }),
      first: t.arg.int({ defaultValue: 50, description: 'How many versions, 1 to 1000' }),
    },
    authScopes: (_root, args) => ({ namespaceRead: args.namespace }),
    resolve: (_root, args, context) => context.services.entries.history(principalOf(context).tenantId, args),
  }),
  resolveEntry: t.field({
    type: EntryRef,
    nullable: true,
    description:
      'The live entry of the first scope, in the order given, that holds the key (say thread:42, then agent_type:planner, then global); null when none does, unless the namespace has a defaultValue. Needs READ on the namespace',
    args: {
      namespace: t.arg.string({ required: true, description: ADDRESS.namespace }),
      key: t.arg.string({ required: true, description: ADDRESS.key }),
      scopes: t.arg.stringList({ required: true, description: '1 to 50 scopes, most specific first' }),
    },
    authScopes: (_root, args) => ({ namespaceRead: args.namespace }),
    resolve: (_root, args, context) => context.services.entries.resolve(principalOf(context).tenantId, args),
  }),
  changes: t.field({
    type: ChangeConnection,
    description:
      'The change log: every change the caller may read, in revision order, oldest first, with no gap. Page on with after (a page may end inside a commit, so page by cursor, not by revision). A write this gateway has acknowledged appears in it (it waits up to 2 s for that)',
    args: {
      namespace: t.arg.string({ description: 'Only this namespace (needs READ); unset: every namespace the caller can read' }),
      afterRevision: t.arg({
        type: 'Revision',
        description: 'Start after this revision ("0": from the beginning); a compacted one is REVISION_COMPACTED',
      }),
      first: t.arg.int({ defaultValue: 100, description: 'Page size, 1 to 1000' }),
      after: t.arg.string({ description: "The previous page's pageInfo.endCursor; takes precedence over afterRevision" }),
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
      namespace: t.arg.string({ description: 'Only this namespace (needs READ); unset: every namespace the caller can read' }),
      first: t.arg.int({ defaultValue: 100, description: 'How many of the newest changes, 1 to 1000' }),
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
    description:
      'Writes a value, creating the entry or adding a version; with expectedVersion, only at that version (compare-and-set). Needs WRITE on the namespace',
    args: { input: t.arg({ type: SetEntryInput, required: true, description: 'Where, what, and the conditions' }) },
    authScopes: (_root, args) => ({ namespaceWrite: args.input.namespace }),
    resolve: (_root, { input }, context) => context.services.entries.set(principalOf(context), input),
  }),
  patchEntry: t.field({
    type: EntryRef,
    description:
      'Applies an RFC 7396 JSON merge patch atomically; creates the entry from {} (or the namespace defaultValue) when absent. Refused on sensitive namespaces. Needs WRITE on the namespace',
    args: { input: t.arg({ type: PatchEntryInput, required: true, description: 'Where, the patch, and the conditions' }) },
    authScopes: (_root, args) => ({ namespaceWrite: args.input.namespace }),
    resolve: (_root, { input }, context) => context.services.entries.patch(principalOf(context), input),
  }),
  incrementEntry: t.field({
    type: EntryRef,
    description:
      "Adds to a numeric value atomically; an absent entry counts as 0 (or the namespace's numeric defaultValue). Refused on sensitive namespaces. Needs WRITE on the namespace",
    args: { input: t.arg({ type: IncrementEntryInput, required: true, description: 'Where, and how much' }) },
    authScopes: (_root, args) => ({ namespaceWrite: args.input.namespace }),
    resolve: (_root, { input }, context) => context.services.entries.increment(principalOf(context), input),
  }),
  restoreEntry: t.field({
    type: EntryRef,
    description: "Writes an old version's value as a new version (history is never rewritten). Needs WRITE on the namespace",
    args: { input: t.arg({ type: RestoreEntryInput, required: true, description: 'The entry and the version to bring back' }) },
    authScopes: (_root, args) => ({ namespaceWrite: args.input.namespace }),
    resolve: (_root, { input }, context) => context.services.entries.restore(principalOf(context), input),
  }),
  deleteEntry: t.boolean({
    description:
      'Deletes an entry: a new version with op DELETE (versions never repeat). false when there was nothing to delete. Needs WRITE on the namespace',
    args: { input: t.arg({ type: DeleteEntryInput, required: true, description: 'The entry, and the conditions' }) },
    authScopes: (_root, args) => ({ namespaceWrite: args.input.namespace }),
    resolve: (_root, { input }, context) => context.services.entries.delete(principalOf(context), input),
  }),
}));

builder.mutationFields((t) => ({
  commit: t.field({
    type: CommitResult,
    description:
      'Checks every condition and applies every operation in one transaction: a failed condition (VERSION_CONFLICT), a forbidden namespace, a schema violation or a non-numeric increment aborts all of it. All its changes share one revision. Needs WRITE on every namespace written and READ on every namespace of a condition',
    args: { input: t.arg({ type: CommitInput, required: true, description: 'The conditions and the operations' }) },
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
      'Changes the caller may read, in revision order. With afterRevision, first replays every change after it, then goes live: no gap, no duplicate, across reconnects and gateway processes. Ends with FORBIDDEN when the caller loses access to the namespace',
    args: {
      namespace: t.arg.string({ description: 'Only this namespace (needs READ); unset: every namespace the caller can read' }),
      scope: t.arg.string({ description: 'Only this scope' }),
      keyPrefix: t.arg.string({ description: 'Only keys that start with it' }),
      afterRevision: t.arg({
        type: 'Revision',
        description:
          'Replay from after this revision (the last one received, when resuming) before going live; a future revision is BAD_USER_INPUT, a compacted one REVISION_COMPACTED',
      }),
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
