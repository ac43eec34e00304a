/**
 * StatehouseStore: LangGraph.js's long-term memory (`BaseStore`) kept in a Statehouse namespace, so the
 * agents of a graph, and agents outside it, share it with Statehouse's access control, history and
 * change feed.
 *
 * ## How items are stored
 * A store keeps all of its items in one Statehouse namespace (`namespace`, default `langgraph`) and scope
 * (`scope`, default `global`), so an agent's grants on that namespace are what its store may read and
 * write. An item (LangGraph namespace tuple `[l1, …, ln]`, key `k`) is the entry whose key is
 *
 *     enc(l1) "/" enc(l2) "/" … enc(ln) "/" enc(k)
 *
 * and whose value is the item's value. `enc` writes `%` as `%0025`, `/` as `%002F`, and every character a
 * Statehouse key may not hold (control, bidirectional and zero-width characters, lone surrogates) as `%`
 * and the four hex digits of its UTF-16 code unit; everything else stays as it is. So no encoded label
 * holds a `/`, every label ends at its own `/`, and the key is what follows the last one:
 * - the tuple prefix `[p1, …, pk]` is the key prefix `enc(p1)/…/enc(pk)/`, which the items of exactly the
 *   tuples that start with `p1, …, pk` have — `["a"]` does not match `["ab"]` (`a/` vs `ab/`), nor
 *   `["a/b"]` (`a%002Fb/`), and an item of `["a"]` keyed `b/c` is `a/b%002Fc`, not in `["a", "b"]`;
 * - any label or key, with any characters (`.`, `:`, `/`, `%`, the empty string, emoji), round-trips.
 * The encoded key must fit Statehouse's 512 characters; an entry of the namespace whose key has no `/`
 * was not written by a store and is left out.
 *
 * ## Differences from LangGraph's InMemoryStore
 * - `search` returns items ordered by namespace (label by label) then key, by UTF-16 code units; the
 *   InMemoryStore returns them in insertion order, which no shared store can keep.
 * - `listNamespaces` lists the namespaces that hold items now (a namespace whose items were all deleted
 *   is gone), ordered as the InMemoryStore orders them.
 * - A semantic `query` needs a vector index, which Statehouse does not have: it is an error, not ignored.
 * - `batch` applies its puts (deduplicated, the last one of a key wins) after its reads, as the
 *   InMemoryStore does, in one Statehouse transaction (in transactions of 500 when there are more).
 */
import { BaseStore, type Item, type Operation, type OperationResults, type SearchItem } from '@langchain/langgraph-checkpoint';
import { BadUserInputError, type Entry, type Namespace, type StatehouseClient } from '../client/index.js';

export interface StatehouseStoreOptions {
  /** The client the store reads and writes with; its token's grants are the store's. */
  client: StatehouseClient;
  /** The Statehouse namespace that holds the items. @default 'langgraph' */
  namespace?: string;
  /** The Statehouse scope that holds the items. @default 'global' */
  scope?: string;
  /** As LangGraph configures it: `defaultTtl` in minutes for puts without their own `ttl`. */
  ttl?: { defaultTtl?: number | null };
  /** Entries fetched per request when searching and listing. @default 500 */
  pageSize?: number;
}

/** LangGraph's PutOperation, with its TTL in minutes (null: none, even with a default). */
export type StatehousePutOperation = Extract<Operation, { value: unknown }> & { ttl?: number | null };

type GetOp = Extract<Operation, { key: string; namespace: string[] }>;
type SearchOp = Extract<Operation, { namespacePrefix: string[] }>;
type ListOp = Extract<Operation, { limit: number; offset: number }> & { matchConditions?: MatchCondition[] };
type MatchCondition = { matchType: 'prefix' | 'suffix'; path: string[] };

/** A semantic `query` was asked of a store without a vector index. */
export class SemanticSearchUnsupportedError extends Error {
  constructor() {
    super('StatehouseStore has no vector index: search with a `filter`, not a `query`');
    this.name = 'SemanticSearchUnsupportedError';
  }
}

/** What a Statehouse key may not hold, and the two characters the layout reserves. */
const ESCAPED =
  /[%/\u0000-\u001f\u007f-\u009f\u061c\u200b-\u200f\u202a-\u202e\u2060\u2066-\u2069\ufeff]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;
const ESCAPE = /%([0-9A-F]{4})/g;
const MAX_COMMIT = 500;

const encodeLabel = (label: string) =>
  label.replace(ESCAPED, (char) => `%${char.charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')}`);
const decodeLabel = (text: string) => text.replace(ESCAPE, (_, hex: string) => String.fromCharCode(Number.parseInt(hex, 16)));

/** The Statehouse key of an item. */
export function encodeItemKey(namespace: readonly string[], key: string): string {
  return `${namespacePrefix(namespace)}${encodeLabel(key)}`;
}

/** The key prefix of every item whose namespace starts with `prefix` (all items for `[]`). */
export function namespacePrefix(prefix: readonly string[]): string {
  return prefix.map((label) => `${encodeLabel(label)}/`).join('');
}

/** The namespace and key of a Statehouse key, or undefined when a store did not write it. */
export function decodeItemKey(stored: string): { namespace: string[]; key: string } | undefined {
  const parts = stored.split('/');
  const key = parts.pop();
  if (key === undefined || parts.length === 0) return undefined;
  return { namespace: parts.map(decodeLabel), key: decodeLabel(key) };
}

function checkNamespace(namespace: unknown, what: string): asserts namespace is string[] {
  if (!Array.isArray(namespace) || namespace.some((label) => typeof label !== 'string')) {
    throw new TypeError(`${what} must be an array of strings`);
  }
}

/** LangGraph's filter: each field equal, or satisfying its operators ($eq, $ne, $gt, $gte, $lt, $lte, $in, $nin). */
function matchesFilter(value: Record<string, unknown>, filter: Record<string, unknown>): boolean {
  return Object.entries(filter).every(([field, wanted]) => compareValue(value[field], wanted));
}

const OPERATORS = new Set(['$eq', '$ne', '$gt', '$gte', '$lt', '$lte', '$in', '$nin']);

function compareValue(actual: unknown, wanted: unknown): boolean {
  const operators = typeof wanted === 'object' && wanted !== null && Object.keys(wanted).every((name) => OPERATORS.has(name));
  if (!operators) return actual === wanted;
  return Object.entries(wanted as Record<string, unknown>).every(([operator, operand]) => {
    switch (operator) {
      case '$eq':
        return actual === operand;
      case '$ne':
        return actual !== operand;
      case '$gt':
        return Number(actual) > Number(operand);
      case '$gte':
        return Number(actual) >= Number(operand);
      case '$lt':
        return Number(actual) < Number(operand);
      case '$lte':
        return Number(actual) <= Number(operand);
      case '$in':
        return Array.isArray(operand) && operand.includes(actual);
      default: // $nin
        return !Array.isArray(operand) || !operand.includes(actual);
    }
  });
}

/** The filter's plain top-level equalities on strings, numbers and booleans, which the gateway can apply first (`@>`). */
function containedFilter(filter: Record<string, unknown> | undefined): Record<string, unknown> | undefined {
  const plain = Object.entries(filter ?? {}).filter(([, wanted]) => ['string', 'number', 'boolean'].includes(typeof wanted));
  return plain.length ? Object.fromEntries(plain) : undefined;
}

const compareText = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** Namespace label by label (a prefix first), then key, by UTF-16 code units. */
export function compareItems(a: Pick<Item, 'namespace' | 'key'>, b: Pick<Item, 'namespace' | 'key'>): number {
  for (let i = 0; i < Math.min(a.namespace.length, b.namespace.length); i++) {
    const order = compareText(a.namespace[i] ?? '', b.namespace[i] ?? '');
    if (order !== 0) return order;
  }
  return a.namespace.length - b.namespace.length || compareText(a.key, b.key);
}

function matchesCondition(namespace: readonly string[], { matchType, path }: MatchCondition): boolean {
  if (path.length > namespace.length) return false;
  const offset = matchType === 'prefix' ? 0 : namespace.length - path.length;
  return path.every((label, i) => label === '*' || namespace[offset + i] === label);
}

export class StatehouseStore extends BaseStore {
  private readonly entries: Namespace<Record<string, unknown>>;
  private readonly scope: string;
  private readonly defaultTtl: number | null;
  private readonly pageSize: number;
  /** Whether the gateway applies a filter's plain equalities first (not on a sensitive namespace). */
  private filterOnServer = true;

  constructor(options: StatehouseStoreOptions) {
    super();
    this.entries = options.client.namespace<Record<string, unknown>>(options.namespace ?? 'langgraph');
    this.scope = options.scope ?? 'global';
    this.defaultTtl = options.ttl?.defaultTtl ?? null;
    this.pageSize = options.pageSize ?? 500;
  }

  /** The Statehouse namespace the items are in. */
  get statehouseNamespace(): string {
    return this.entries.name;
  }

  /**
   * Stores the item; `options.ttl` (minutes, as LangGraph's) overrides the store's `defaultTtl`, and null
   * keeps it forever.
   */
  override async put(
    namespace: string[],
    key: string,
    value: Record<string, any>,
    index?: false | string[],
    options: { ttl?: number | null } = {},
  ): Promise<void> {
    await this.batch([{ namespace, key, value, ...(index === undefined ? {} : { index }), ...options }]);
  }

  override async batch<Op extends Operation[]>(operations: Op): Promise<OperationResults<Op>> {
    const puts = new Map<string, StatehousePutOperation>();
    const reads: Promise<unknown>[] = [];
    for (const operation of operations) {
      if ('value' in operation) {
        checkNamespace(operation.namespace, 'namespace');
        if (operation.namespace.length === 0) throw new TypeError('An item needs a namespace of at least one label');
        puts.set(encodeItemKey(operation.namespace, operation.key), operation);
        reads.push(Promise.resolve(undefined));
      } else if ('namespacePrefix' in operation) reads.push(this.search$(operation));
      else if ('key' in operation) reads.push(this.get$(operation));
      else reads.push(this.listNamespaces$(operation as ListOp));
    }
    // Reads see the store as it was before the batch, as they do in LangGraph's stores.
    const results = await Promise.all(reads);
    await this.write([...puts.entries()]);
    return results as OperationResults<Op>;
  }

  private async get$(operation: GetOp): Promise<Item | null> {
    checkNamespace(operation.namespace, 'namespace');
    if (operation.namespace.length === 0) return null;
    const entry = await this.entries.get(encodeItemKey(operation.namespace, operation.key), { scope: this.scope });
    return entry && entry.version > 0 ? this.item(entry) : null;
  }

  private async search$(operation: SearchOp): Promise<SearchItem[]> {
    checkNamespace(operation.namespacePrefix, 'namespacePrefix');
    if (operation.query) throw new SemanticSearchUnsupportedError();
    const filter = operation.filter as Record<string, unknown> | undefined;
    const match = this.filterOnServer ? containedFilter(filter) : undefined;
    const found: Item[] = [];
    try {
      for await (const item of this.items(namespacePrefix(operation.namespacePrefix), match)) {
        if (!filter || matchesFilter(item.value, filter)) found.push(item);
      }
    } catch (error) {
      // A sensitive namespace's values are encrypted: the gateway cannot filter them, the store can.
      if (!(match && error instanceof BadUserInputError && error.field === 'match')) throw error;
      this.filterOnServer = false;
      return this.search$(operation);
    }
    const offset = operation.offset ?? 0;
    return found
      .sort(compareItems)
      .slice(offset, offset + (operation.limit ?? 10))
      .map((item) => ({ ...item, score: undefined }));
  }

  private async listNamespaces$(operation: ListOp): Promise<string[][]> {
    const conditions = operation.matchConditions ?? [];
    for (const { path } of conditions) checkNamespace(path, 'a match condition`s path');
    // Only the literal start of a prefix condition narrows what is read.
    const prefix = conditions.find((condition) => condition.matchType === 'prefix')?.path ?? [];
    const wildcard = prefix.indexOf('*');
    const known = new Map<string, string[]>();
    for await (const item of this.items(namespacePrefix(wildcard < 0 ? prefix : prefix.slice(0, wildcard)))) {
      if (!conditions.every((condition) => matchesCondition(item.namespace, condition))) continue;
      const namespace = operation.maxDepth === undefined ? item.namespace : item.namespace.slice(0, operation.maxDepth);
      known.set(JSON.stringify(namespace), namespace);
    }
    const offset = operation.offset ?? 0;
    return [...known.values()]
      .sort((a, b) => a.join(':').localeCompare(b.join(':')) || compareText(JSON.stringify(a), JSON.stringify(b)))
      .slice(offset, offset + (operation.limit ?? known.size));
  }

  private async *items(prefix: string, match?: Record<string, unknown>): AsyncGenerator<Item> {
    for await (const entry of this.entries.list({ scope: this.scope, prefix, match, pageSize: this.pageSize })) {
      const item = this.item(entry);
      if (item) yield item;
    }
  }

  private item(entry: Entry<Record<string, unknown>>): Item | null {
    const address = decodeItemKey(entry.key);
    if (!address || typeof entry.value !== 'object' || entry.value === null || Array.isArray(entry.value)) return null;
    return { ...address, value: entry.value, createdAt: new Date(entry.createdAt), updatedAt: new Date(entry.updatedAt) };
  }

  private async write(puts: [string, StatehousePutOperation][]): Promise<void> {
    for (let start = 0; start < puts.length; start += MAX_COMMIT) {
      const commit = this.entries.commit();
      for (const [key, put] of puts.slice(start, start + MAX_COMMIT)) {
        if (put.value === null) commit.delete(key, { scope: this.scope });
        else {
          const ttl = put.ttl === undefined ? this.defaultTtl : put.ttl;
          commit.set(key, put.value, { scope: this.scope, ...(ttl === null ? {} : { ttlSeconds: Math.max(1, Math.ceil(ttl * 60)) }) });
        }
      }
      await commit.execute();
    }
  }
}
