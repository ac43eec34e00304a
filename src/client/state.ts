/** Shared state in one namespace: reads, writes, CAS updates, paging, and commits of several writes. */
import { VersionConflictError } from './errors.js';
import {
  CommitDocument,
  type CommitInput,
  DeleteEntryDocument,
  EntriesDocument,
  EntryDocument,
  type EntryFieldsFragment,
  EntryHistoryDocument,
  type EntryHistoryQuery,
  IncrementEntryDocument,
  type OperationInput,
  PatchEntryDocument,
  ResolveEntryDocument,
  RestoreEntryDocument,
  SetEntryDocument,
} from './generated/graphql.js';
import type { Runtime } from './runtime.js';
import { backoffDelay, sleep } from './timing.js';
import { type ChangeStream, openChangeStream, type WatchOptions } from './watch.js';

/** An entry as the gateway returns it; `value` is whatever JSON was written. */
export type Entry<T = unknown> = Omit<EntryFieldsFragment, 'value'> & { value: T };

/** One version of an entry, newest first in `history`; `value` is null for DELETE and EXPIRE. */
export type EntryVersion<T = unknown> = Omit<EntryHistoryQuery['entryHistory'][number], 'value'> & { value: T | null };

export interface ScopeOption {
  /** `global` when left out; by convention `thread:<id>`, `agent:<id>`, … */
  scope?: string;
}

export interface SetOptions extends ScopeOption {
  /** Write only if the entry is at this version (0: it must not exist), else VersionConflictError. */
  expectedVersion?: number;
  /** Expire after this many seconds; without it the namespace's default applies. */
  ttlSeconds?: number;
}

export interface GetOptions extends ScopeOption {
  /** The value as it was at this revision. */
  atRevision?: string;
  /** The value as it was at this moment (ISO-8601, or a Date). */
  asOf?: string | Date;
}

export interface ListOptions {
  scope?: string;
  /** Keys that start with this, literally. */
  prefix?: string;
  /** Values that contain this JSON (PostgreSQL's `@>`). */
  match?: unknown;
  /** Entries fetched per request. @default 100 */
  pageSize?: number;
}

export interface UpdateOptions extends ScopeOption {
  ttlSeconds?: number;
  /** Tries in all, when other writers keep changing the entry in between. @default 10 */
  maxAttempts?: number;
}

/**
 * One namespace, as an agent sees it. Every method takes `scope` (default `global`); values are JSON.
 * `T` types the values (unchecked: the namespace's JSON Schema is what the gateway enforces).
 */
export class Namespace<T = unknown> {
  constructor(
    private readonly runtime: Runtime,
    readonly name: string,
  ) {}

  /** The entry, or null when there is none (a namespace with a `defaultValue` answers with version 0). */
  async get(key: string, options: GetOptions = {}): Promise<Entry<T> | null> {
    const { entry } = await this.runtime.query(EntryDocument, {
      namespace: this.name,
      key,
      scope: options.scope,
      atRevision: options.atRevision,
      asOf: options.asOf instanceof Date ? options.asOf.toISOString() : options.asOf,
    });
    return entry as Entry<T> | null;
  }

  /** Writes the value; with `expectedVersion`, only at that version (compare-and-set). */
  async set(key: string, value: T, options: SetOptions = {}): Promise<Entry<T>> {
    const { setEntry } = await this.runtime.mutate(SetEntryDocument, { input: { namespace: this.name, key, value, ...options } });
    return setEntry as Entry<T>;
  }

  /** An RFC 7396 JSON merge patch (null removes a member); an absent entry is patched from {}. */
  async patch(key: string, patch: Partial<T> | Record<string, unknown>, options: Omit<SetOptions, 'ttlSeconds'> = {}): Promise<Entry<T>> {
    const { patchEntry } = await this.runtime.mutate(PatchEntryDocument, { input: { namespace: this.name, key, patch, ...options } });
    return patchEntry as Entry<T>;
  }

  /** Adds `by` (default 1) to a numeric value, atomically; an absent entry counts as 0. */
  async increment(key: string, by = 1, options: ScopeOption = {}): Promise<Entry<T>> {
    const { incrementEntry } = await this.runtime.mutate(IncrementEntryDocument, { input: { namespace: this.name, key, by, ...options } });
    return incrementEntry as Entry<T>;
  }

  /** True when there was something to delete. */
  async delete(key: string, options: Omit<SetOptions, 'ttlSeconds'> = {}): Promise<boolean> {
    const { deleteEntry } = await this.runtime.mutate(DeleteEntryDocument, { input: { namespace: this.name, key, ...options } });
    return deleteEntry;
  }

  /** Writes an old version's value as a new version. */
  async restore(key: string, version: number, options: ScopeOption = {}): Promise<Entry<T>> {
    const { restoreEntry } = await this.runtime.mutate(RestoreEntryDocument, { input: { namespace: this.name, key, version, ...options } });
    return restoreEntry as Entry<T>;
  }

  /** Every version of the key, newest first: sets, deletes and expiries. */
  async history(key: string, options: ScopeOption & { first?: number } = {}): Promise<EntryVersion<T>[]> {
    const { entryHistory } = await this.runtime.query(EntryHistoryDocument, { namespace: this.name, key, ...options });
    return entryHistory as EntryVersion<T>[];
  }

  /** The entry of the first scope, in the order given, that holds the key: `['thread:42', 'agent:7', 'global']`. */
  async resolve(key: string, scopes: readonly string[]): Promise<Entry<T> | null> {
    const { resolveEntry } = await this.runtime.query(ResolveEntryDocument, { namespace: this.name, key, scopes: [...scopes] });
    return resolveEntry as Entry<T> | null;
  }

  /** Every live entry (ordered by scope and key), fetched page by page as the loop goes on. */
  async *list(options: ListOptions = {}): AsyncGenerator<Entry<T>, void, undefined> {
    let after: string | null | undefined;
    do {
      const { entries } = await this.runtime.query(EntriesDocument, {
        namespace: this.name,
        scope: options.scope,
        prefix: options.prefix,
        match: options.match,
        first: options.pageSize ?? 100,
        after,
      });
      for (const entry of entries.nodes) yield entry as Entry<T>;
      after = entries.pageInfo.hasNextPage ? entries.pageInfo.endCursor : null;
    } while (after);
  }

  /**
   * Read → `fn` → write only if nobody wrote in between (compare-and-set). When someone did, reads
   * again and calls `fn` again, with backoff, up to `maxAttempts` times in all; then throws the last
   * VersionConflictError. `fn` gets the current value (undefined when absent) and must not have side
   * effects, since it may run more than once.
   */
  async update(
    key: string,
    fn: (current: T | undefined, entry: Entry<T> | null) => T | Promise<T>,
    options: UpdateOptions = {},
  ): Promise<Entry<T>> {
    const { maxAttempts = 10, ...writeOptions } = options;
    for (let attempt = 1; ; attempt++) {
      const entry = await this.get(key, { scope: options.scope });
      const value = await fn(entry?.value, entry);
      try {
        return await this.set(key, value, { ...writeOptions, expectedVersion: entry?.version ?? 0 });
      } catch (error) {
        if (!(error instanceof VersionConflictError) || attempt >= maxAttempts) throw error;
        await sleep(backoffDelay(attempt - 1, { initialDelayMs: 20, maxDelayMs: 1_000 }), this.runtime.closeSignal);
      }
    }
  }

  /** Several writes in one transaction, with conditions: all of them or none. */
  commit(): CommitBuilder {
    return new CommitBuilder(this.runtime, this.name);
  }

  /** The changes of this namespace, as they happen (see ChangeStream). */
  watch(options: Omit<WatchOptions, 'namespace'> = {}): ChangeStream<T> {
    return openChangeStream<T>(this.runtime, { ...options, namespace: this.name });
  }
}

interface Placement extends ScopeOption {
  /** Another namespace than the builder's. */
  namespace?: string;
}

export interface CommitResult<T = unknown> {
  /** Shared by every change of the commit. */
  revision: string;
  /** The entries as written, in operation order (deletes left out). */
  entries: Entry<T>[];
}

/**
 * Conditions and writes applied in one transaction (`commit`): a failed condition is a
 * VersionConflictError and nothing is written. A key may appear once per commit.
 *
 * ```ts
 * await numbers.commit().ifVersion('total', 3).set('total', 10).increment('writes').delete('draft').execute();
 * ```
 */
export class CommitBuilder<T = unknown> {
  private readonly conditions: NonNullable<CommitInput['conditions']> = [];
  private readonly operations: OperationInput[] = [];

  constructor(
    private readonly runtime: Runtime,
    private readonly namespace: string | undefined,
  ) {}

  private place(key: string, options: Placement): { namespace: string; key: string; scope?: string } {
    const namespace = options.namespace ?? this.namespace;
    if (namespace === undefined) throw new TypeError(`No namespace for key ${JSON.stringify(key)}: pass { namespace }`);
    return options.scope === undefined ? { namespace, key } : { namespace, key, scope: options.scope };
  }

  /** Only if the entry is at `version` (0: it must not exist). */
  ifVersion(key: string, version: number, options: Placement = {}): this {
    this.conditions.push({ ...this.place(key, options), version });
    return this;
  }

  /** Only if the entry does not exist. */
  ifAbsent(key: string, options: Placement = {}): this {
    return this.ifVersion(key, 0, options);
  }

  set(key: string, value: T, options: Placement & Omit<SetOptions, 'scope'> = {}): this {
    const { namespace: _namespace, scope: _scope, ...rest } = options;
    this.operations.push({ set: { ...this.place(key, options), value, ...rest } });
    return this;
  }

  patch(key: string, patch: unknown, options: Placement & { expectedVersion?: number } = {}): this {
    const { namespace: _namespace, scope: _scope, ...rest } = options;
    this.operations.push({ patch: { ...this.place(key, options), patch, ...rest } });
    return this;
  }

  increment(key: string, by = 1, options: Placement = {}): this {
    this.operations.push({ increment: { ...this.place(key, options), by } });
    return this;
  }

  delete(key: string, options: Placement & { expectedVersion?: number } = {}): this {
    const { namespace: _namespace, scope: _scope, ...rest } = options;
    this.operations.push({ delete: { ...this.place(key, options), ...rest } });
    return this;
  }

  /** Sends the commit. */
  async execute(): Promise<CommitResult<T>> {
    const { commit } = await this.runtime.mutate(CommitDocument, {
      input: { conditions: this.conditions, operations: this.operations },
    });
    return commit as CommitResult<T>;
  }
}
