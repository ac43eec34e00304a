import { type McpServer, ResourceTemplate } from '@modelcontextprotocol/sdk/server/mcp.js';
import {
  ErrorCode,
  ListResourcesRequestSchema,
  McpError,
  ReadResourceRequestSchema,
  type Resource,
  SubscribeRequestSchema,
  UnsubscribeRequestSchema,
} from '@modelcontextprotocol/sdk/types.js';
import { codeOf, describeError } from './errors.js';
import type { GraphQLResult } from './graphql.js';
import type { Run } from './tools.js';

const SCHEME = 'statehouse://';
/** Resources of one resources/list page (a namespace's own resource may add one). */
export const RESOURCES_PAGE_SIZE = 100;
/** MCP's "resource not found" (the specification's -32002). */
const RESOURCE_NOT_FOUND = -32002;

/** A namespace (`statehouse://ns`) or one entry of it (`statehouse://ns/scope/key`). */
export interface Target {
  namespace: string;
  entry?: { scope: string; key: string };
}

/**
 * The URI of a namespace or an entry. Scope and key are percent-encoded (a key may hold `/`), so
 * each of the three parts is one path segment.
 */
export function resourceUri(namespace: string, entry?: { scope: string; key: string }): string {
  const base = `${SCHEME}${encodeURIComponent(namespace)}`;
  return entry ? `${base}/${encodeURIComponent(entry.scope)}/${encodeURIComponent(entry.key)}` : base;
}

/** The target of a URI, read as written (not normalised: a key may be `..`); null when it is not one of ours. */
export function parseUri(uri: string): Target | null {
  if (!uri.startsWith(SCHEME)) return null;
  const parts = uri.slice(SCHEME.length).split('/');
  try {
    const [namespace, scope, key] = parts.map((part) => decodeURIComponent(part));
    if (!namespace) return null;
    if (parts.length === 1) return { namespace };
    if (parts.length === 3 && scope && key) return { namespace, entry: { scope, key } };
  } catch {
    // Malformed percent-encoding: not a resource of ours.
  }
  return null;
}

const targetOf = (uri: string): Target => {
  const target = parseUri(uri);
  if (!target) {
    throw new McpError(
      ErrorCode.InvalidParams,
      `Not a Statehouse resource: ${uri} (statehouse://NAMESPACE or statehouse://NAMESPACE/SCOPE/KEY)`,
    );
  }
  return target;
};

/** A refused read, list or subscribe: the contract's code and what to do, as for tools. */
const refusal = (result: GraphQLResult<unknown>) =>
  new McpError(ErrorCode.InvalidRequest, describeError(result.errors?.[0]), { code: codeOf(result.errors?.[0]) });

interface Cursor {
  namespace: string;
  /** The entries cursor inside `namespace`; absent: start with the namespace's own resource. */
  after?: string;
}

const encodeCursor = (cursor: Cursor) => Buffer.from(JSON.stringify(cursor)).toString('base64url');

function decodeCursor(text: string): Cursor {
  try {
    const cursor = JSON.parse(Buffer.from(text, 'base64url').toString()) as Cursor;
    if (typeof cursor.namespace === 'string' && (cursor.after === undefined || typeof cursor.after === 'string')) return cursor;
  } catch {
    // Falls through to the error below.
  }
  throw new McpError(ErrorCode.InvalidParams, 'Invalid cursor: pass nextCursor of the previous resources/list page as it was');
}

const ENTRY_META = 'namespace scope key version updatedAt';
const ENTRY = 'namespace scope key value version revision createdAt updatedAt updatedBy expiresAt';
const ENTRY_CHANGED = `subscription($namespace: String!, $scope: String, $keyPrefix: String, $afterRevision: Revision) {
  entryChanged(namespace: $namespace, scope: $scope, keyPrefix: $keyPrefix, afterRevision: $afterRevision) { revision op scope key }
}`;

/** What a session gives its resources: its GraphQL calls, and how to end it when its token stops working. */
export interface ResourceSession {
  run: Run;
  subscribe: (query: string, variables: Record<string, unknown>, signal: AbortSignal) => AsyncGenerator<GraphQLResult<Record<string, any>>>;
  /** The token no longer authenticates: end the whole session. */
  end: () => void;
  /** How many subscriptions the session may hold at once: the tenant's maxSubscriptionsPerSocket, as for a WebSocket. */
  maxSubscriptions: () => Promise<number>;
}

/**
 * Entries and namespaces as resources: templates, a paged resources/list over what the caller can
 * read, reads, and subscriptions fed by the entryChanged subscription of the same caller.
 */
export class Resources {
  private readonly subscriptions = new Map<string, AbortController>();

  constructor(
    private readonly server: McpServer,
    private readonly session: ResourceSession,
  ) {
    server.registerResource(
      'entry',
      new ResourceTemplate(`${SCHEME}{namespace}/{scope}/{key}`, { list: undefined }),
      {
        title: 'An entry',
        description: 'One entry as JSON (value, version, metadata). Scope and key are percent-encoded. Subscribe to hear of its changes.',
        mimeType: 'application/json',
      },
      () => ({ contents: [] }),
    );
    server.registerResource(
      'namespace',
      new ResourceTemplate(`${SCHEME}{namespace}`, { list: undefined }),
      {
        title: 'A namespace',
        description: "A namespace's first entries (keys, versions). Subscribe to hear of every change in it.",
        mimeType: 'application/json',
      },
      () => ({ contents: [] }),
    );
    // The SDK's own list and read would not page, and would normalise URIs (a key may be `..`).
    server.server.setRequestHandler(ListResourcesRequestSchema, (request) => this.list(request.params?.cursor));
    server.server.setRequestHandler(ReadResourceRequestSchema, (request) => this.read(request.params.uri));
    server.server.registerCapabilities({ resources: { subscribe: true } });
    server.server.setRequestHandler(SubscribeRequestSchema, async (request) => {
      await this.subscribe(request.params.uri);
      return {};
    });
    server.server.setRequestHandler(UnsubscribeRequestSchema, (request) => {
      this.unsubscribe(request.params.uri);
      return {};
    });
  }

  /** How many subscriptions are open. */
  get open(): number {
    return this.subscriptions.size;
  }

  async list(cursorText: string | undefined): Promise<{ resources: Resource[]; nextCursor?: string }> {
    const cursor = cursorText === undefined ? undefined : decodeCursor(cursorText);
    const answer = await this.session.run('{ namespaces { name description } }', {});
    if (answer.errors?.length || !answer.data) throw refusal(answer);
    const namespaces = (answer.data.namespaces as { name: string; description: string | null }[]).sort((a, b) =>
      a.name < b.name ? -1 : 1,
    );
    const resources: Resource[] = [];
    let index = cursor ? namespaces.findIndex((n) => n.name >= cursor.namespace) : 0;
    if (index < 0) index = namespaces.length;
    let after = cursor && namespaces[index]?.name === cursor.namespace ? cursor.after : undefined;
    for (; index < namespaces.length && resources.length < RESOURCES_PAGE_SIZE; index++, after = undefined) {
      const { name, description } = namespaces[index] as { name: string; description: string | null };
      if (after === undefined) {
        resources.push({
          uri: resourceUri(name),
          name,
          description: description ?? `Every entry of namespace ${name}`,
          mimeType: 'application/json',
        });
      }
      const page = await this.session.run(
        `query($namespace: String!, $first: Int!, $after: String) { entries(namespace: $namespace, first: $first, after: $after) {
          nodes { ${ENTRY_META} } pageInfo { hasNextPage endCursor } } }`,
        { namespace: name, first: Math.max(1, RESOURCES_PAGE_SIZE - resources.length), after },
      );
      // A namespace deleted (or its access revoked) since the list above is left out.
      if (page.errors?.length || !page.data) continue;
      for (const entry of page.data.entries.nodes as {
        namespace: string;
        scope: string;
        key: string;
        version: number;
        updatedAt: string;
      }[]) {
        resources.push({
          uri: resourceUri(entry.namespace, entry),
          name: `${entry.namespace}/${entry.scope}/${entry.key}`,
          description: `Version ${entry.version}, updated ${entry.updatedAt}`,
          mimeType: 'application/json',
        });
      }
      if (page.data.entries.pageInfo.hasNextPage) {
        return { resources, nextCursor: encodeCursor({ namespace: name, after: page.data.entries.pageInfo.endCursor }) };
      }
    }
    const next = namespaces[index];
    return next ? { resources, nextCursor: encodeCursor({ namespace: next.name }) } : { resources };
  }

  async read(uri: string): Promise<{ contents: { uri: string; mimeType: string; text: string }[] }> {
    const target = targetOf(uri);
    if (target.entry) {
      const answer = await this.session.run(
        `query($namespace: String!, $scope: String!, $key: String!) { entry(namespace: $namespace, scope: $scope, key: $key) { ${ENTRY} } }`,
        { namespace: target.namespace, ...target.entry },
      );
      if (answer.errors?.length || !answer.data) throw refusal(answer);
      if (!answer.data.entry)
        throw new McpError(RESOURCE_NOT_FOUND, `No entry at ${uri} (it does not exist, was deleted, or expired)`, { uri });
      return { contents: [{ uri, mimeType: 'application/json', text: JSON.stringify(answer.data.entry) }] };
    }
    const answer = await this.session.run(
      `query($namespace: String!) { entries(namespace: $namespace, first: ${RESOURCES_PAGE_SIZE}) { nodes { ${ENTRY_META} } pageInfo { hasNextPage } } }`,
      { namespace: target.namespace },
    );
    if (answer.errors?.length || !answer.data) throw refusal(answer);
    const { nodes, pageInfo } = answer.data.entries as { nodes: { scope: string; key: string }[]; pageInfo: { hasNextPage: boolean } };
    const entries = nodes.map((entry) => ({ uri: resourceUri(target.namespace, entry), ...entry }));
    const text = JSON.stringify({ namespace: target.namespace, entries, more: pageInfo.hasNextPage });
    return { contents: [{ uri, mimeType: 'application/json', text }] };
  }

  /**
   * Starts hearing of changes to `uri`. Access is checked, and the head of its changes taken, before
   * this returns; the subscription then replays from that head, so a change made after subscribe
   * returned is never missed, whichever gateway process made it.
   */
  async subscribe(uri: string): Promise<void> {
    const target = targetOf(uri);
    const limit = await this.session.maxSubscriptions();
    if (this.subscriptions.has(uri)) return;
    if (this.subscriptions.size >= limit) {
      const message = `RATE_LIMITED: At most ${limit} subscriptions may run in one session: unsubscribe from some first.`;
      throw new McpError(ErrorCode.InvalidRequest, message, { code: 'RATE_LIMITED', limit });
    }
    // Held from here, so that subscribes sent together count each other.
    const controller = new AbortController();
    this.subscriptions.set(uri, controller);
    const head = await this.session.run('query($namespace: String!) { latestChanges(namespace: $namespace, first: 1) { revision } }', {
      namespace: target.namespace,
    });
    if (head.errors?.length || !head.data) {
      if (this.subscriptions.get(uri) === controller) this.subscriptions.delete(uri);
      throw refusal(head);
    }
    const afterRevision = (head.data.latestChanges as { revision: string }[])[0]?.revision ?? '0';
    if (!controller.signal.aborted) void this.follow(uri, target, afterRevision, controller);
  }

  unsubscribe(uri: string): void {
    this.subscriptions.get(uri)?.abort();
    this.subscriptions.delete(uri);
  }

  closeAll(): void {
    for (const controller of this.subscriptions.values()) controller.abort();
    this.subscriptions.clear();
  }

  private async follow(uri: string, target: Target, afterRevision: string, controller: AbortController): Promise<void> {
    const variables = { namespace: target.namespace, scope: target.entry?.scope, keyPrefix: target.entry?.key, afterRevision };
    let ended: GraphQLResult<unknown> | undefined;
    try {
      for await (const result of this.session.subscribe(ENTRY_CHANGED, variables, controller.signal)) {
        if (result.errors?.length || !result.data) {
          ended = result;
          break;
        }
        const change = result.data.entryChanged as { scope: string; key: string };
        if (target.entry && change.key !== target.entry.key) continue;
        await this.server.server.sendResourceUpdated({ uri });
      }
    } catch {
      // The session closed under it, or the gateway is stopping: nothing left to tell.
    }
    if (controller.signal.aborted) return;
    this.subscriptions.delete(uri);
    if (codeOf(ended?.errors?.[0]) === 'UNAUTHENTICATED') return this.session.end();
    // Access was lost (or the feed ended): one last notice, so a client that reads again hears why.
    await this.server.server.sendResourceUpdated({ uri }).catch(() => {});
  }
}
