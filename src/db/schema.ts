import { sql } from 'drizzle-orm';
import {
  bigint,
  boolean,
  customType,
  doublePrecision,
  foreignKey,
  index,
  integer,
  jsonb,
  pgEnum,
  pgSequence,
  pgTable,
  primaryKey,
  text,
  timestamp,
  uniqueIndex,
} from 'drizzle-orm/pg-core';

/**
 * Names and keys compare byte-wise (collation "C") so that key order, keyset pagination and
 * literal prefix ranges are the same on every server, whatever its default locale.
 */
const name = customType<{ data: string }>({ dataType: () => 'text COLLATE "C"' });

const createdAt = <N extends string>(column: N) => timestamp(column, { withTimezone: true, mode: 'date' }).notNull().defaultNow();

export const roleEnum = pgEnum('role', ['ADMIN', 'AGENT', 'READER']);
export const permissionEnum = pgEnum('permission', ['READ', 'WRITE']);
export const changeOpEnum = pgEnum('change_op', ['SET', 'DELETE', 'EXPIRE']);
export const agentStatusEnum = pgEnum('agent_status', ['STARTING', 'IDLE', 'BUSY', 'ERROR', 'STOPPED']);

export const tenants = pgTable('tenants', {
  id: name('id').primaryKey(),
  settings: jsonb('settings').$type<Record<string, unknown>>().notNull().default({}),
  createdAt: createdAt('created_at'),
});

export const agents = pgTable(
  'agents',
  {
    tenantId: name('tenant_id')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    id: name('id').notNull(),
    name: text('name').notNull(),
    type: text('type').notNull(),
    capabilities: jsonb('capabilities').$type<string[]>().notNull().default([]),
    stateNamespaces: jsonb('state_namespaces').$type<string[]>().notNull().default([]),
    status: agentStatusEnum('status').notNull().default('STARTING'),
    lastHeartbeatAt: timestamp('last_heartbeat_at', { withTimezone: true, mode: 'date' }),
    heartbeat: jsonb('heartbeat'),
    metadata: jsonb('metadata'),
    registeredAt: createdAt('registered_at'),
  },
  (t) => [primaryKey({ name: 'agents_pk', columns: [t.tenantId, t.id] }), index('agents_type_idx').on(t.tenantId, t.type)],
);

export const tokens = pgTable(
  'tokens',
  {
    id: name('id').primaryKey(),
    tenantId: name('tenant_id')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    name: text('name').notNull(),
    role: roleEnum('role').notNull(),
    agentId: name('agent_id'),
    /** SHA-256 of the token: tokens are 256 random bits, so a fast hash is enough and lookups stay one index probe. */
    hash: text('hash').notNull(),
    /** The bootstrap admin token of tenant `default`; only it may create tenants. */
    bootstrap: boolean('bootstrap').notNull().default(false),
    createdAt: createdAt('created_at'),
    revokedAt: timestamp('revoked_at', { withTimezone: true, mode: 'date' }),
  },
  (t) => [
    uniqueIndex('tokens_hash_idx').on(t.hash),
    index('tokens_agent_idx').on(t.tenantId, t.agentId),
    foreignKey({ name: 'tokens_agent_fk', columns: [t.tenantId, t.agentId], foreignColumns: [agents.tenantId, agents.id] }).onDelete(
      'cascade',
    ),
  ],
);

export const namespaces = pgTable(
  'namespaces',
  {
    tenantId: name('tenant_id')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    name: name('name').notNull(),
    description: text('description'),
    openAccess: boolean('open_access').notNull().default(true),
    sensitive: boolean('sensitive').notNull().default(false),
    schema: jsonb('schema'),
    defaultValue: jsonb('default_value'),
    defaultTtlSeconds: integer('default_ttl_seconds'),
    historyLimit: integer('history_limit'),
    /** The newest revision whose changes compaction may have removed: resuming from before it is REVISION_COMPACTED. */
    compactedRevision: bigint('compacted_revision', { mode: 'bigint' }),
    createdAt: createdAt('created_at'),
  },
  (t) => [primaryKey({ name: 'namespaces_pk', columns: [t.tenantId, t.name] })],
);

export const grants = pgTable(
  'grants',
  {
    tenantId: name('tenant_id').notNull(),
    namespace: name('namespace').notNull(),
    agentId: name('agent_id').notNull(),
    permission: permissionEnum('permission').notNull(),
    grantedAt: createdAt('granted_at'),
  },
  (t) => [
    primaryKey({ name: 'grants_pk', columns: [t.tenantId, t.namespace, t.agentId] }),
    index('grants_agent_idx').on(t.tenantId, t.agentId),
    foreignKey({
      name: 'grants_namespace_fk',
      columns: [t.tenantId, t.namespace],
      foreignColumns: [namespaces.tenantId, namespaces.name],
    }).onDelete('cascade'),
    foreignKey({ name: 'grants_agent_fk', columns: [t.tenantId, t.agentId], foreignColumns: [agents.tenantId, agents.id] }).onDelete(
      'cascade',
    ),
  ],
);

/**
 * The live state: one row per (namespace, scope, key) ever written. A delete keeps the row as a
 * tombstone (`deleted`) so that `version` keeps counting and never repeats.
 */
export const entries = pgTable(
  'entries',
  {
    tenantId: name('tenant_id').notNull(),
    namespace: name('namespace').notNull(),
    scope: name('scope').notNull(),
    key: name('key').notNull(),
    value: jsonb('value'),
    version: integer('version').notNull(),
    revision: bigint('revision', { mode: 'bigint' }).notNull(),
    deleted: boolean('deleted').notNull().default(false),
    createdAt: createdAt('created_at'),
    updatedAt: createdAt('updated_at'),
    updatedBy: text('updated_by'),
    expiresAt: timestamp('expires_at', { withTimezone: true, mode: 'date' }),
  },
  (t) => [
    primaryKey({ name: 'entries_pk', columns: [t.tenantId, t.namespace, t.scope, t.key] }),
    index('entries_expiry_idx')
      .on(t.expiresAt)
      .where(sql`${t.expiresAt} IS NOT NULL AND NOT ${t.deleted}`),
    foreignKey({
      name: 'entries_namespace_fk',
      columns: [t.tenantId, t.namespace],
      foreignColumns: [namespaces.tenantId, namespaces.name],
    }).onDelete('cascade'),
  ],
);

/**
 * The change log: one row per change, written in the same statement as the entry. `revision` is the
 * writing transaction's id (see README, Architecture): all changes of one write share it, and readers
 * only look below the oldest transaction still running, so revisions become visible in order.
 */
export const changes = pgTable(
  'changes',
  {
    tenantId: name('tenant_id').notNull(),
    revision: bigint('revision', { mode: 'bigint' }).notNull(),
    namespace: name('namespace').notNull(),
    scope: name('scope').notNull(),
    key: name('key').notNull(),
    op: changeOpEnum('op').notNull(),
    version: integer('version').notNull(),
    value: jsonb('value'),
    actor: text('actor'),
    at: createdAt('at'),
  },
  (t) => [
    primaryKey({ name: 'changes_pk', columns: [t.tenantId, t.revision, t.namespace, t.scope, t.key] }),
    index('changes_entry_idx').on(t.tenantId, t.namespace, t.scope, t.key, t.version),
    foreignKey({
      name: 'changes_namespace_fk',
      columns: [t.tenantId, t.namespace],
      foreignColumns: [namespaces.tenantId, namespaces.name],
    }).onDelete('cascade'),
  ],
);

export const priorityEnum = pgEnum('priority', ['LOW', 'MEDIUM', 'HIGH', 'CRITICAL']);

/** Metric points, as agents report them; summaries are computed in SQL over a time window. */
export const metrics = pgTable(
  'metrics',
  {
    id: bigint('id', { mode: 'bigint' }).primaryKey().generatedAlwaysAsIdentity(),
    tenantId: name('tenant_id').notNull(),
    agentId: name('agent_id'),
    name: text('name').notNull(),
    value: doublePrecision('value').notNull(),
    unit: text('unit'),
    tags: jsonb('tags'),
    at: timestamp('at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
  },
  (t) => [index('metrics_name_idx').on(t.tenantId, t.name, t.at), index('metrics_at_idx').on(t.tenantId, t.at)],
);

/** One row per distinct error shape (type + fingerprint); occurrences are counted per window. */
export const errorPatterns = pgTable(
  'error_patterns',
  {
    id: bigint('id', { mode: 'bigint' }).primaryKey().generatedAlwaysAsIdentity(),
    tenantId: name('tenant_id').notNull(),
    type: text('type').notNull(),
    fingerprint: text('fingerprint').notNull(),
    sampleMessage: text('sample_message').notNull(),
    firstSeenAt: createdAt('first_seen_at'),
    lastSeenAt: createdAt('last_seen_at'),
  },
  (t) => [uniqueIndex('error_patterns_fingerprint_idx').on(t.tenantId, t.type, t.fingerprint)],
);

export const errorOccurrences = pgTable(
  'error_occurrences',
  {
    patternId: bigint('pattern_id', { mode: 'bigint' })
      .notNull()
      .references(() => errorPatterns.id, { onDelete: 'cascade' }),
    agentId: name('agent_id'),
    message: text('message').notNull(),
    context: jsonb('context'),
    at: createdAt('at'),
  },
  (t) => [index('error_occurrences_pattern_idx').on(t.patternId, t.at)],
);

export const insights = pgTable(
  'insights',
  {
    id: bigint('id', { mode: 'bigint' }).primaryKey().generatedAlwaysAsIdentity(),
    tenantId: name('tenant_id').notNull(),
    type: text('type').notNull(),
    content: jsonb('content').notNull(),
    priority: priorityEnum('priority').notNull(),
    sourceAgentId: name('source_agent_id'),
    createdAt: createdAt('created_at'),
    actedUponAt: timestamp('acted_upon_at', { withTimezone: true, mode: 'date' }),
  },
  (t) => [index('insights_tenant_idx').on(t.tenantId, t.createdAt)],
);

export const optimizations = pgTable(
  'optimizations',
  {
    id: bigint('id', { mode: 'bigint' }).primaryKey().generatedAlwaysAsIdentity(),
    tenantId: name('tenant_id').notNull(),
    type: text('type').notNull(),
    description: text('description'),
    before: jsonb('before'),
    after: jsonb('after'),
    success: boolean('success').notNull(),
    sourceAgentId: name('source_agent_id'),
    at: createdAt('at'),
  },
  (t) => [index('optimizations_tenant_idx').on(t.tenantId, t.at)],
);

/**
 * The gateway processes sharing this database, so that a change of access can wait until every
 * live one has dropped its caches (`seen`: the last bus sequence number it has applied).
 */
export const auditOutcomeEnum = pgEnum('audit_outcome', ['ALLOWED', 'DENIED']);

/** Append-only: written in batches by the gateway, never updated or deleted through the API. */
export const auditEvents = pgTable(
  'audit_events',
  {
    id: bigint('id', { mode: 'bigint' }).primaryKey().generatedAlwaysAsIdentity(),
    tenantId: name('tenant_id').notNull(),
    at: createdAt('at'),
    actor: text('actor'),
    role: roleEnum('role'),
    action: text('action').notNull(),
    target: text('target'),
    outcome: auditOutcomeEnum('outcome').notNull(),
    detail: jsonb('detail').$type<Record<string, unknown>>(),
  },
  (t) => [index('audit_events_tenant_idx').on(t.tenantId, t.id)],
);

export const gatewayProcesses = pgTable('gateway_processes', {
  id: text('id').primaryKey(),
  seen: bigint('seen', { mode: 'bigint' })
    .notNull()
    .default(sql`0`),
  heartbeatAt: timestamp('heartbeat_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
});

/** Numbers the cache invalidations that processes acknowledge. */
export const busSequence = pgSequence('bus_sequence');
