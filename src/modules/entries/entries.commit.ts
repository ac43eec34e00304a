import { type SQL, sql } from 'drizzle-orm';
import type { AccessService, NamespaceSettings } from '../../auth/access.js';
import { actorOf, type Principal } from '../../auth/principal.js';
import type { Statements } from '../../db/client.js';
import { badInput, notFound, payloadTooLarge, StatehouseError } from '../../domain/errors.js';
import { validateValue } from '../../domain/json-schema.js';
import { checkKey, checkNamespace, checkScope, GLOBAL_SCOPE } from '../../domain/names.js';
import type { EventBus } from '../../events/bus.js';
import type { ValuePolicy } from './entries.policy.js';
import {
  CURRENT_REVISION,
  ENTRY_COLUMNS,
  type EntryRow,
  lockName,
  locksOfKeys,
  NEXT_VERSION,
  tenantLockName,
  toEntry,
} from './entries.sql.js';
import { encodeValue, MAX_TTL_SECONDS } from '../../domain/values.js';
import type { Entry, EntryAddress } from './entries.model.js';

export interface CommitOperation {
  set?: (EntryAddress & { value?: unknown; expectedVersion?: number | null; ttlSeconds?: number | null }) | null;
  patch?: (EntryAddress & { patch?: unknown; expectedVersion?: number | null }) | null;
  increment?: (EntryAddress & { by?: number | null }) | null;
  delete?: (EntryAddress & { expectedVersion?: number | null }) | null;
}

export interface CommitCondition extends EntryAddress {
  version: number;
}

export interface CommitResult {
  revision: string;
  entries: Entry[];
}

type Kind = 'set' | 'patch' | 'increment' | 'delete';

/** One key the commit touches: an operation, or a condition only (`kind` null). */
interface Step {
  field: string;
  kind: Kind | null;
  namespace: string;
  scope: string;
  key: string;
  /** set: the value; patch: the patch (JSON text). */
  argument: string | null;
  by: number | null;
  expectedVersion: number | null;
  ttlSeconds: number | null;
  settings: NamespaceSettings;
}

interface CurrentRow {
  i: string | number;
  version: number | null;
  gone: boolean | null;
  computed: unknown;
  not_a_number: boolean;
}

/**
 * `commit`: conditions and operations on many keys, all or nothing, sharing one revision. The keys
 * are locked (in one order, so commits cannot deadlock), their current state read and the new
 * values computed in one query; conditions, types, sizes and schemas are checked; then one
 * statement writes every entry and its change. Five round trips, whatever the size.
 */
export class CommitService {
  constructor(
    private readonly database: Statements,
    private readonly access: Pick<AccessService, 'namespaces'>,
    private readonly bus: Pick<EventBus, 'publish'>,
    private readonly policy: ValuePolicy,
  ) {}

  /** The namespaces a commit writes and those it only reads (conditions), for the access check. */
  static namespacesOf(input: { conditions?: readonly EntryAddress[] | null; operations: readonly CommitOperation[] }) {
    const writes = new Set<string>();
    for (const operation of input.operations) {
      for (const part of [operation.set, operation.patch, operation.increment, operation.delete]) if (part) writes.add(part.namespace);
    }
    const reads = new Set((input.conditions ?? []).map((condition) => condition.namespace));
    return { writes: [...writes], reads: [...reads] };
  }

  async commit(
    principal: Principal,
    input: { conditions?: readonly CommitCondition[] | null; operations: readonly CommitOperation[] },
  ): Promise<CommitResult> {
    const steps = await this.plan(principal.tenantId, input);
    const { tenantId } = principal;
    // Read before the transaction: on PGlite's single connection a query outside an open transaction would wait for it forever.
    const { maxValueBytes } = await this.policy.limits(tenantId);
    await this.policy.checkQuota(
      tenantId,
      steps.flatMap((step) =>
        step.kind === null ? [] : [{ ...step, value: step.kind === 'delete' ? null : step.kind === 'increment' ? '0' : step.argument }],
      ),
    );
    const result = await this.database.transaction(async (rows) => {
      // Lock every key in one order before this transaction has an id (see keyLock).
      const names = [...new Set(steps.map((s) => lockName(tenantId, s.namespace, s.scope, s.key)))];
      await rows(locksOfKeys(tenantLockName(tenantId), sql`unnest(${sql.param(names)}::text[]) AS name`));
      const current = await this.current(rows, tenantId, steps);
      const writes = this.apply(steps, current, maxValueBytes);
      if (writes.length === 0) return { revision: null, rows: [] as EntryRow[] };
      const written = await rows<EntryRow & { deleted: boolean }>(sql`
        WITH input AS (
          SELECT * FROM unnest(${sql.param(writes.map((w) => w.namespace))}::text[], ${sql.param(writes.map((w) => w.scope))}::text[],
                               ${sql.param(writes.map((w) => w.key))}::text[], ${sql.param(writes.map((w) => w.value))}::text[]::jsonb[],
                               ${sql.param(writes.map((w) => String(w.deleted)))}::text[]::boolean[],
                               ${sql.param(writes.map((w) => (w.ttlSeconds === null ? null : String(w.ttlSeconds))))}::text[]::int[])
            AS i(namespace, scope, key, value, deleted, ttl)
        ), up AS (
          INSERT INTO entries AS e (tenant_id, namespace, scope, key, value, version, revision, deleted, created_at, updated_at, updated_by, expires_at)
          SELECT ${tenantId}, namespace, scope, key, value, 1, ${CURRENT_REVISION}, deleted, clock.at, clock.at, ${actorOf(principal)},
                 CASE WHEN ttl IS NULL THEN NULL ELSE now() + make_interval(secs => ttl) END
          FROM input, (SELECT clock_timestamp() AS at) AS clock
          ON CONFLICT (tenant_id, namespace, scope, key) DO UPDATE SET
            value = excluded.value,
            deleted = excluded.deleted,
            ${NEXT_VERSION}
          RETURNING e.*
        ), log AS (
          INSERT INTO changes (tenant_id, revision, namespace, scope, key, op, version, value, actor, at)
          SELECT tenant_id, revision, namespace, scope, key, CASE WHEN deleted THEN 'DELETE' ELSE 'SET' END::change_op,
                 version, value, updated_by, updated_at FROM up
        )
        SELECT ${ENTRY_COLUMNS}, deleted FROM up`);
      return { revision: written[0]?.revision ?? null, rows: written };
    });
    if (result.revision === null) return { revision: await this.head(tenantId), entries: [] };
    this.bus.publish({ type: 'changes', tenantId, revision: result.revision });
    const byKey = new Map(result.rows.map((row) => [lockName(tenantId, row.namespace, row.scope, row.key), row]));
    const entries = steps.flatMap((step) => {
      const row = step.kind && step.kind !== 'delete' ? byKey.get(lockName(tenantId, step.namespace, step.scope, step.key)) : undefined;
      return row ? [toEntry(row)] : [];
    });
    return { revision: result.revision, entries };
  }

  private async head(tenantId: string): Promise<string> {
    const [row] = await this.database.rows<{ revision: string | null }>(sql`
      SELECT max(revision)::text AS revision FROM changes WHERE tenant_id = ${tenantId}`);
    return row?.revision ?? '0';
  }

  /** Validates the input and resolves each key's namespace settings; throws before any database work. */
  private async plan(
    tenantId: string,
    input: { conditions?: readonly CommitCondition[] | null; operations: readonly CommitOperation[] },
  ): Promise<Step[]> {
    const { operations } = input;
    const conditions = input.conditions ?? [];
    const limits = await this.policy.limits(tenantId);
    const maxOperations = limits.maxCommitOperations;
    if (operations.length < 1 || operations.length > maxOperations) {
      throw badInput('operations', `operations must hold 1 to ${maxOperations} operations`);
    }
    if (conditions.length > maxOperations) throw badInput('conditions', `conditions may hold at most ${maxOperations}`);
    const namespaces = await this.access.namespaces(tenantId);
    const settingsOf = (namespace: string) => {
      const settings = namespaces.get(namespace);
      if (!settings) throw notFound(`Namespace ${namespace} does not exist`);
      return settings;
    };
    const address = (at: EntryAddress) => {
      const namespace = checkNamespace(at.namespace);
      return { namespace, scope: checkScope(at.scope ?? GLOBAL_SCOPE), key: checkKey(at.key), settings: settingsOf(namespace) };
    };
    const version = (value: number | null | undefined, field: string) => {
      if (value === null || value === undefined) return null;
      if (!Number.isInteger(value) || value < 0) throw badInput(field, `${field} must be 0 or more`);
      return value;
    };

    const steps: Step[] = [];
    const seen = new Set<string>();
    operations.forEach((operation, index) => {
      const field = `operations[${index}]`;
      const given = (['set', 'patch', 'increment', 'delete'] as const).filter((kind) => operation[kind]);
      const kind = given[0];
      if (given.length !== 1 || kind === undefined) throw badInput(field, `${field} must set exactly one of set, patch, increment, delete`);
      const part = operation[kind] as NonNullable<CommitOperation[typeof kind]> & {
        value?: unknown;
        patch?: unknown;
        by?: number | null;
        expectedVersion?: number | null;
        ttlSeconds?: number | null;
      };
      const at = address(part);
      const name = `${at.namespace}\u001f${at.scope}\u001f${at.key}`;
      if (seen.has(name)) throw badInput(field, `${field} touches a key that another operation of this commit touches`);
      seen.add(name);
      const ttl = part.ttlSeconds ?? null;
      if (ttl !== null && (!Number.isInteger(ttl) || ttl < 1 || ttl > MAX_TTL_SECONDS)) {
        throw badInput('ttlSeconds', `ttlSeconds must be from 1 to ${MAX_TTL_SECONDS}`);
      }
      const by = kind === 'increment' ? (part.by ?? 1) : null;
      if (by !== null && !Number.isFinite(by)) throw badInput('by', 'by must be a finite number');
      if (kind === 'patch' || kind === 'increment') this.policy.refuseSensitive(at.settings, field, `${field} (${kind})`);
      const text =
        kind === 'set'
          ? encodeValue(part.value, 'value', limits.maxValueBytes)
          : kind === 'patch'
            ? encodeValue(part.patch, 'patch', limits.maxValueBytes)
            : null;
      if (kind === 'set' && at.settings.schema !== null && at.settings.schema !== undefined) validateValue(at.settings.schema, part.value);
      const argument = kind === 'set' && text !== null ? this.policy.stored(tenantId, at.settings, at.scope, at.key, text) : text;
      steps.push({
        field,
        kind,
        ...at,
        argument,
        by,
        expectedVersion: version(part.expectedVersion, 'expectedVersion'),
        ttlSeconds: kind === 'delete' ? null : (ttl ?? at.settings.defaultTtlSeconds),
      });
    });
    conditions.forEach((condition, index) => {
      const at = address(condition);
      const expected = version(condition.version, 'version') ?? 0;
      steps.push({
        field: `conditions[${index}]`,
        kind: null,
        ...at,
        argument: null,
        by: null,
        expectedVersion: expected,
        ttlSeconds: null,
      });
    });
    return steps;
  }

  /** Each step's current version (0 when absent) and, for patch and increment, the value it computes. */
  private async current(rows: <R>(query: SQL) => Promise<R[]>, tenantId: string, steps: Step[]) {
    const base = (step: Step) => {
      const fallback = step.settings.defaultValue;
      if (step.kind === 'increment') return JSON.stringify(typeof fallback === 'number' ? fallback : 0);
      return JSON.stringify(fallback ?? {});
    };
    const found = await rows<CurrentRow>(sql`
      SELECT k.i, e.version, (e.deleted OR coalesce(e.expires_at <= now(), false)) AS gone,
             CASE k.kind
               WHEN 'patch' THEN statehouse_merge_patch(CASE WHEN e.version IS NULL OR e.deleted OR e.expires_at <= now() THEN k.base ELSE e.value END, k.argument)
               WHEN 'increment' THEN CASE
                 WHEN e.version IS NULL OR e.deleted OR e.expires_at <= now() THEN to_jsonb((k.base #>> '{}')::numeric + k.by)
                 WHEN jsonb_typeof(e.value) = 'number' THEN to_jsonb((e.value #>> '{}')::numeric + k.by)
               END
             END AS computed,
             (k.kind = 'increment' AND e.version IS NOT NULL AND NOT e.deleted AND coalesce(e.expires_at > now(), true)
               AND jsonb_typeof(e.value) <> 'number') AS not_a_number
      FROM unnest(${sql.param(steps.map((s) => s.namespace))}::text[], ${sql.param(steps.map((s) => s.scope))}::text[],
                  ${sql.param(steps.map((s) => s.key))}::text[], ${sql.param(steps.map((s) => s.kind ?? ''))}::text[],
                  ${sql.param(steps.map((s) => s.argument))}::text[]::jsonb[], ${sql.param(steps.map(base))}::text[]::jsonb[],
                  ${sql.param(steps.map((s) => (s.by === null ? null : String(s.by))))}::text[]::numeric[])
           WITH ORDINALITY AS k(namespace, scope, key, kind, argument, base, by, i)
      LEFT JOIN entries e ON e.tenant_id = ${tenantId} AND e.namespace = k.namespace AND e.scope = k.scope AND e.key = k.key
      ORDER BY k.i`);
    return found;
  }

  /** Checks conditions, types, sizes and schemas against the current state; returns the writes. */
  private apply(steps: Step[], current: CurrentRow[], maxValueBytes: number) {
    const writes: { namespace: string; scope: string; key: string; value: string | null; deleted: boolean; ttlSeconds: number | null }[] =
      [];
    steps.forEach((step, index) => {
      const row = current[index];
      const version = row && row.version !== null && !row.gone ? row.version : 0;
      if (step.expectedVersion !== null && step.expectedVersion !== version) {
        throw new StatehouseError('VERSION_CONFLICT', `${step.field}: the current version is ${version}`, {
          currentVersion: version,
          field: step.field,
        });
      }
      if (step.kind === null) return;
      const target = { namespace: step.namespace, scope: step.scope, key: step.key, ttlSeconds: step.ttlSeconds };
      if (step.kind === 'delete') {
        if (version > 0) writes.push({ ...target, value: null, deleted: true, ttlSeconds: null });
        return;
      }
      if (step.kind === 'increment' && row?.not_a_number) throw badInput(step.field, `The value of ${step.key} is not a number`);
      // A sum beyond double range reaches us as Infinity, which JSON would store as null.
      if (step.kind === 'increment' && typeof row?.computed === 'number' && !Number.isFinite(row.computed)) {
        throw badInput(step.field, 'The result would be beyond the range of JSON numbers');
      }
      // A set's value was measured (before sealing) when planned; patches and increments are measured here.
      const value = step.kind === 'set' ? step.argument : JSON.stringify(row?.computed ?? null);
      if (step.kind !== 'set' && value !== null && Buffer.byteLength(value) > maxValueBytes)
        throw payloadTooLarge(step.field, maxValueBytes);
      if (step.kind !== 'set' && step.settings.schema !== null && step.settings.schema !== undefined) {
        validateValue(step.settings.schema, row?.computed);
      }
      writes.push({ ...target, value, deleted: false });
    });
    return writes;
  }
}
