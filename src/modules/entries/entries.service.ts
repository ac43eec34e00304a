import type { AccessService, NamespaceSettings } from '../../auth/access.js';
import { actorOf, type Principal } from '../../auth/principal.js';
import type { Statements } from '../../db/client.js';
import { decodeCursor, encodeCursor, isRevision } from '../../domain/cursor.js';
import { badInput, notFound, revisionCompacted, versionConflict } from '../../domain/errors.js';
import { validateValue } from '../../domain/json-schema.js';
import { checkFirst, checkKey, checkNamespace, checkScope, GLOBAL_SCOPE } from '../../domain/names.js';
import type { EventBus } from '../../events/bus.js';
import type { LogPosition } from '../../events/change-feed.js';
import { encodeValue, MAX_TTL_SECONDS } from '../../domain/values.js';
import type { Entry, EntryAddress, EntryChange, EntryVersion, Page } from './entries.model.js';
import type { ValuePolicy } from './entries.policy.js';
import type { EntryAt } from './entries.sql.js';
import { EntriesStore, keyRange, type ValueWrite, valueWrites } from './entries.store.js';

/**
 * Entries and their change log. Every write is one SQL statement (one round trip, one
 * transaction) that checks the version, writes the entry and appends its change.
 */
export class EntriesService {
  /** The newest revision each tenant is known to have committed (from change notices). */
  private readonly committed = new Map<string, bigint>();
  private readonly store: EntriesStore;

  constructor(
    database: Statements,
    private readonly access: Pick<AccessService, 'namespace' | 'namespaces'>,
    private readonly bus: Pick<EventBus, 'publish' | 'on'>,
    private readonly policy: ValuePolicy,
  ) {
    this.store = new EntriesStore(database);
    bus.on((event) => {
      if (event.type !== 'changes') return;
      const revision = BigInt(event.revision);
      if (revision > (this.committed.get(event.tenantId) ?? 0n)) this.committed.set(event.tenantId, revision);
    });
  }

  /**
   * Read-your-writes for `changes`: a write this process has acknowledged is below the watermark
   * within moments, unless an unrelated transaction on the server holds the watermark back. Wait
   * for it (bounded), so a client that just wrote sees its write in the log.
   */
  private async awaitCommitted(tenantId: string): Promise<void> {
    const wanted = this.committed.get(tenantId);
    if (wanted === undefined) return;
    const deadline = Date.now() + 2_000;
    for (let delay = 2; ; delay = Math.min(delay * 2, 50)) {
      if ((await this.store.watermark()) > wanted || Date.now() > deadline) return;
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }

  private async settings(tenantId: string, namespace: string): Promise<NamespaceSettings> {
    const settings = await this.access.namespace(tenantId, namespace);
    if (!settings) throw notFound(`Namespace ${namespace} does not exist`);
    return settings;
  }

  private address(input: EntryAddress) {
    return {
      namespace: checkNamespace(input.namespace),
      key: checkKey(input.key),
      scope: checkScope(input.scope ?? GLOBAL_SCOPE),
    };
  }

  /** How long a written entry lives, in seconds (null: for ever): as asked, else the namespace's default. */
  private ttl(ttlSeconds: number | null | undefined, settings: NamespaceSettings): number | null {
    if (ttlSeconds !== null && ttlSeconds !== undefined) {
      if (!Number.isInteger(ttlSeconds) || ttlSeconds < 1 || ttlSeconds > MAX_TTL_SECONDS) {
        throw badInput('ttlSeconds', `ttlSeconds must be from 1 to ${MAX_TTL_SECONDS}`);
      }
    }
    return ttlSeconds ?? settings.defaultTtlSeconds ?? null;
  }

  private checkExpectedVersion(expectedVersion: number | null | undefined): number | null {
    if (expectedVersion === null || expectedVersion === undefined) return null;
    if (!Number.isInteger(expectedVersion) || expectedVersion < 0) {
      throw badInput('expectedVersion', 'expectedVersion must be 0 or more');
    }
    return expectedVersion;
  }

  async get(tenantId: string, input: EntryAddress & { atRevision?: string | null; asOf?: Date | null }): Promise<Entry | null> {
    const { namespace, key, scope } = this.address(input);
    const settings = await this.settings(tenantId, namespace);
    if (input.atRevision !== null && input.atRevision !== undefined && input.asOf) {
      throw badInput('asOf', 'Give atRevision or asOf, not both');
    }
    if ((input.atRevision !== null && input.atRevision !== undefined) || input.asOf) {
      return this.getAt(tenantId, { namespace, scope, key }, settings, input.atRevision ?? null, input.asOf ?? null);
    }
    return (await this.store.live(tenantId, { namespace, scope, key })) ?? this.defaultEntry(tenantId, settings, scope, key);
  }

  /**
   * The entry as it was at a revision or a time, from the change log: its newest change at or before
   * then. REVISION_COMPACTED when older versions were compacted away and that moment is among them.
   */
  private async getAt(
    tenantId: string,
    at: { namespace: string; scope: string; key: string },
    settings: NamespaceSettings,
    atRevision: string | null,
    asOf: Date | null,
  ): Promise<Entry | null> {
    const { namespace, scope, key } = at;
    const when = atRevision !== null ? { atRevision } : { asOf: asOf ?? new Date(0) };
    const { change, oldest, nextRevision } = await this.store.versionAt(tenantId, at, when, settings.historyLimit);
    if (atRevision !== null && BigInt(atRevision) >= nextRevision) {
      throw badInput('atRevision', 'atRevision is in the future');
    }
    if (!change) {
      if (oldest && oldest.version > 1) throw revisionCompacted(oldest.revision);
      return this.defaultEntry(tenantId, settings, scope, key);
    }
    if (oldest !== null && change.version < oldest.version) throw revisionCompacted(oldest.revision);
    if (change.op !== 'SET') return this.defaultEntry(tenantId, settings, scope, key);
    return {
      namespace,
      scope,
      key,
      value: change.value,
      version: change.version,
      revision: change.revision,
      createdAt: change.createdAt,
      updatedAt: change.at,
      updatedBy: change.actor,
      expiresAt: null,
    };
  }

  /**
   * Every version of an entry, newest first: sets, deletes and expiries, at most the namespace's
   * historyLimit of them even before compaction has removed the older ones.
   */
  async history(tenantId: string, input: EntryAddress & { first?: number | null }): Promise<EntryVersion[]> {
    const { namespace, key, scope } = this.address(input);
    const first = checkFirst(input.first ?? 50);
    const { historyLimit } = await this.settings(tenantId, namespace);
    return this.store.history(tenantId, { namespace, scope, key }, historyLimit === null ? first : Math.min(first, historyLimit));
  }

  /** Writes an old version's value as a new version. */
  async restore(principal: Principal, input: EntryAddress & { version: number }): Promise<Entry> {
    const { namespace, key, scope } = this.address(input);
    if (!Number.isInteger(input.version) || input.version < 1) throw badInput('version', 'version must be 1 or more');
    const settings = await this.settings(principal.tenantId, namespace);
    const row = await this.store.version(principal.tenantId, { namespace, scope, key }, input.version, settings.historyLimit);
    if (row.oldest && input.version < row.oldest.version) throw revisionCompacted(row.oldest.revision);
    if (!row.op) {
      throw badInput('version', `${key} has no version ${input.version}`);
    }
    if (row.op !== 'SET') throw badInput('version', `Version ${input.version} of ${key} is a deletion, not a value`);
    // A sensitive value is opened and sealed again: set seals what it is given.
    const value = settings.sensitive ? this.policy.open(principal.tenantId, { namespace, scope, key, value: row.value }) : row.value;
    return this.set(principal, { namespace, scope, key, value });
  }

  /**
   * Checks a revision a client resumes from: a decimal string (the scalar saw to that), not in the
   * future, and not before changes that history compaction removed from `namespaces` (null: all).
   */
  async checkResumeRevision(tenantId: string, revision: string, field: string, namespaces: readonly string[] | null): Promise<void> {
    if (BigInt(revision) >= (await this.store.nextRevision())) throw badInput(field, `${field} is in the future`);
    const settings = await this.access.namespaces(tenantId);
    let compacted: bigint | null = null;
    for (const [name, namespace] of settings) {
      if (namespaces !== null && !namespaces.includes(name)) continue;
      if (namespace.compactedRevision !== null && (compacted === null || BigInt(namespace.compactedRevision) > compacted)) {
        compacted = BigInt(namespace.compactedRevision);
      }
    }
    if (compacted !== null && BigInt(revision) < compacted) throw revisionCompacted(String(compacted));
  }

  /** A namespace with a `defaultValue` answers reads of a missing entry with it, at version 0. */
  private defaultEntry(tenantId: string, settings: NamespaceSettings, scope: string, key: string): Entry | null {
    if (settings.defaultValue === null || settings.defaultValue === undefined) return null;
    return {
      namespace: settings.name,
      scope,
      key,
      // Sealed like a stored value, so that it reaches callers (and hides from readers) the same way.
      value: settings.sensitive
        ? JSON.parse(this.policy.stored(tenantId, settings, scope, key, JSON.stringify(settings.defaultValue)))
        : settings.defaultValue,
      version: 0,
      revision: '0',
      createdAt: settings.createdAt,
      updatedAt: settings.createdAt,
      updatedBy: null,
      expiresAt: null,
    };
  }

  async resolve(tenantId: string, input: { namespace: string; key: string; scopes: string[] }): Promise<Entry | null> {
    const namespace = checkNamespace(input.namespace);
    const key = checkKey(input.key);
    if (input.scopes.length < 1 || input.scopes.length > 50) throw badInput('scopes', 'scopes must hold 1 to 50 scopes');
    const scopes = input.scopes.map((scope) => checkScope(scope, 'scopes'));
    const settings = await this.settings(tenantId, namespace);
    const entry = await this.store.firstOf(tenantId, namespace, key, scopes);
    if (entry) return entry;
    return scopes[0] === undefined ? null : this.defaultEntry(tenantId, settings, scopes[0], key);
  }

  async list(
    tenantId: string,
    input: {
      namespace: string;
      scope?: string | null;
      prefix?: string | null;
      match?: unknown;
      first?: number | null;
      after?: string | null;
    },
  ): Promise<Page<Entry>> {
    const namespace = checkNamespace(input.namespace);
    const first = checkFirst(input.first ?? 100);
    const scope = input.scope !== null && input.scope !== undefined ? checkScope(input.scope) : null;
    let keys: { from: string; to: string | null } | null = null;
    if (input.prefix !== null && input.prefix !== undefined && input.prefix !== '') {
      checkKey(input.prefix, 'prefix');
      keys = keyRange(input.prefix);
    }
    const settings = await this.settings(tenantId, namespace);
    let contains: string | null = null;
    if (input.match !== null && input.match !== undefined) {
      this.policy.refuseSensitive(settings, 'match', 'A value filter');
      contains = encodeValue(input.match, 'match');
    }
    let after: { scope: string | undefined; key: string | undefined } | null = null;
    if (input.after) {
      const [afterScope, afterKey] = decodeCursor(input.after, 'after', 2);
      after = { scope: afterScope, key: afterKey };
    }
    const rows = await this.store.list(tenantId, { namespace, scope, keys, contains, after }, first + 1);
    const nodes = rows.slice(0, first);
    const last = nodes.at(-1);
    return {
      nodes,
      pageInfo: { hasNextPage: rows.length > first, endCursor: last ? encodeCursor([last.scope, last.key]) : null },
    };
  }

  /** The value inside a stored one: opens the sealed values of sensitive namespaces. */
  open(tenantId: string, row: { namespace: string; scope: string; key: string; value: unknown }): unknown {
    return this.policy.open(tenantId, row);
  }

  /** Live entry counts of the given namespaces (for `Namespace.entryCount`, batched). */
  async count(tenantId: string, namespaces: readonly string[]): Promise<Map<string, number>> {
    return this.store.count(tenantId, namespaces);
  }

  async set(
    principal: Principal,
    input: EntryAddress & { value?: unknown; expectedVersion?: number | null; ttlSeconds?: number | null },
  ): Promise<Entry> {
    const { namespace, key, scope } = this.address(input);
    const { tenantId } = principal;
    const text = encodeValue(input.value, 'value', (await this.policy.limits(tenantId)).maxValueBytes);
    const expected = this.checkExpectedVersion(input.expectedVersion);
    const settings = await this.settings(tenantId, namespace);
    if (settings.schema !== null && settings.schema !== undefined) validateValue(settings.schema, input.value);
    const ttl = this.ttl(input.ttlSeconds, settings);
    const value = this.policy.stored(tenantId, settings, scope, key, text);
    await this.policy.checkQuota(tenantId, [{ namespace, scope, key, value }]);
    return this.upsert(principal, { namespace, scope, key }, expected, valueWrites.set(value, ttl));
  }

  async patch(principal: Principal, input: EntryAddress & { patch?: unknown; expectedVersion?: number | null }): Promise<Entry> {
    const { namespace, key, scope } = this.address(input);
    const maxBytes = (await this.policy.limits(principal.tenantId)).maxValueBytes;
    const patch = encodeValue(input.patch, 'patch', maxBytes);
    const expected = this.checkExpectedVersion(input.expectedVersion);
    const settings = await this.settings(principal.tenantId, namespace);
    this.policy.refuseSensitive(settings, 'patch', 'A merge patch');
    await this.policy.checkQuota(principal.tenantId, [{ namespace, scope, key, value: patch }]);
    const base = JSON.stringify(settings.defaultValue ?? {});
    return this.upsert(
      principal,
      { namespace, scope, key },
      expected,
      valueWrites.mergePatch(base, patch, maxBytes, this.ttl(null, settings)),
      settings,
    );
  }

  async increment(principal: Principal, input: EntryAddress & { by?: number | null }): Promise<Entry> {
    const { namespace, key, scope } = this.address(input);
    const by = input.by ?? 1;
    if (!Number.isFinite(by)) throw badInput('by', 'by must be a finite number');
    const settings = await this.settings(principal.tenantId, namespace);
    this.policy.refuseSensitive(settings, 'by', 'An increment');
    await this.policy.checkQuota(principal.tenantId, [{ namespace, scope, key, value: '0' }]);
    const base = typeof settings.defaultValue === 'number' ? settings.defaultValue : 0;
    if (!Number.isFinite(base + by)) throw outOfRange();
    const entry = await this.upsert(
      principal,
      { namespace, scope, key },
      null,
      valueWrites.increment(base, by, this.ttl(null, settings)),
      settings,
    ).catch((error: unknown) => {
      if (error instanceof NotANumber) throw badInput('key', `The value of ${key} is not a number`);
      throw error;
    });
    return entry;
  }

  /**
   * Insert or update one entry and append its change, in one statement. `expected` is the CAS
   * version (0: must not exist). When `check` is given (typed namespaces), the resulting value is
   * validated before commit.
   */
  private async upsert(
    principal: Principal,
    at: EntryAt,
    expected: number | null,
    value: ValueWrite,
    check?: NamespaceSettings,
  ): Promise<Entry> {
    const { tenantId } = principal;
    const schema = check?.schema;
    const validate = schema !== null && schema !== undefined ? (written: unknown) => validateValue(schema, written) : undefined;
    for (let attempt = 1; ; attempt++) {
      const entry = await this.store.upsert(tenantId, at, actorOf(principal), expected, value, validate);
      if (entry) {
        this.bus.publish({ type: 'changes', tenantId, revision: entry.revision });
        return entry;
      }
      // Refused: the key's version (and whether its value is not a number) read again. The statement
      // could not tell: it reads from its snapshot, taken before it waited for the key's lock, so the
      // writer it waited for is not in it. A second read costs a round trip on the refusal only. If it
      // shows the very version the write expected, the statement judged the entry absent while it was
      // being created (its row is in no earlier snapshot): the write is tried once more — the row now
      // exists for every later snapshot.
      const current = await this.store.current(tenantId, at);
      if (value.conditional) throw current.notANumber ? new NotANumber() : outOfRange();
      if (current.version === expected && attempt === 1) continue;
      throw versionConflict(current.version);
    }
  }

  async delete(principal: Principal, input: EntryAddress & { expectedVersion?: number | null }): Promise<boolean> {
    const { namespace, key, scope } = this.address(input);
    const expected = this.checkExpectedVersion(input.expectedVersion);
    const { tenantId } = principal;
    await this.settings(tenantId, namespace);
    for (let attempt = 1; ; attempt++) {
      const revision = await this.store.delete(tenantId, { namespace, scope, key }, actorOf(principal), expected);
      if (revision) {
        this.bus.publish({ type: 'changes', tenantId, revision });
        return true;
      }
      if (expected === null) return false;
      // As in upsert: the version after the lock, and once more if the statement missed a new entry.
      const current = (await this.store.current(tenantId, { namespace, scope, key })).version;
      if (current === 0 && expected === 0) return false;
      if (current !== expected || attempt > 1) throw versionConflict(current);
    }
  }

  /**
   * A page of the change log after `after` (exclusive), oldest first, limited to `namespaces`
   * (null: all), to `upTo` (inclusive) and to revisions below the watermark, so that a later page
   * never shows an older revision.
   */
  async changesPage(
    tenantId: string,
    options: { after: LogPosition; namespaces: readonly string[] | null; upTo?: LogPosition; limit: number },
  ): Promise<{ changes: EntryChange[]; watermark: string }> {
    return this.store.changesPage(tenantId, options);
  }

  /** The newest final revision of a tenant: where a live feed starts. */
  async headRevision(tenantId: string): Promise<string> {
    return this.store.headRevision(tenantId);
  }

  /**
   * The newest `first` changes of `namespaces` (null: all), newest first. Read below the watermark as
   * `changes` is, so a feed that resumes after the newest of them (`entryChanged(afterRevision:)`)
   * continues the list with no gap and no duplicate.
   */
  async latestChanges(tenantId: string, input: { namespaces: readonly string[] | null; first?: number | null }): Promise<EntryChange[]> {
    const first = checkFirst(input.first ?? 100);
    await this.awaitCommitted(tenantId);
    return this.store.latestChanges(tenantId, input.namespaces, first);
  }

  async changes(
    tenantId: string,
    input: { namespaces: readonly string[] | null; afterRevision?: string | null; first?: number | null; after?: string | null },
  ): Promise<Page<EntryChange>> {
    const first = checkFirst(input.first ?? 100);
    await this.awaitCommitted(tenantId);
    if (input.afterRevision && !input.after)
      await this.checkResumeRevision(tenantId, input.afterRevision, 'afterRevision', input.namespaces);
    let after: LogPosition = { revision: input.afterRevision ?? '0' };
    if (input.after) {
      const [revision = '', namespace, scope, key] = decodeCursor(input.after, 'after', 4);
      if (!isRevision(revision)) throw badInput('after', 'after is not a cursor of this list');
      after = { revision, namespace, scope, key };
    }
    const { changes } = await this.changesPage(tenantId, { after, namespaces: input.namespaces, limit: first + 1 });
    const nodes = changes.slice(0, first);
    const last = nodes.at(-1);
    return {
      nodes,
      pageInfo: {
        hasNextPage: changes.length > first,
        endCursor: last ? encodeCursor([last.revision, last.namespace, last.scope, last.key]) : null,
      },
    };
  }
}

class NotANumber extends Error {}

const outOfRange = () => badInput('by', 'The result would be beyond the range of JSON numbers');
