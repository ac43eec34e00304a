import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import { type CallToolResult, ResourceUpdatedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { backend } from './database.js';
import { type Gateway, startGateway } from './gateway.js';

/** The /mcp URL of a started gateway. */
export const mcpUrl = (gateway: Gateway) => new URL('/mcp', gateway.url);

/** An MCP client (the SDK's own) with what the tests look at: notifications, errors, the end of its GET stream. */
export interface McpClient {
  client: Client;
  transport: Transport;
  /** Every notifications/resources/updated URI, in order. */
  updates: string[];
  /** Resolves at the next update of `uri` (counting from now), fails after `timeoutMs`. */
  nextUpdate(uri: string, timeoutMs?: number): Promise<void>;
  /** Errors the transport reported (a refused reconnection, for one). */
  errors: Error[];
  /** Calls a tool; the result as sent (tool errors included). */
  call(name: string, args?: Record<string, unknown>): Promise<CallToolResult>;
  close(): Promise<void>;
}

/** Wraps a connected client with the helpers above. */
export function track(client: Client, transport: Transport): McpClient {
  const updates: string[] = [];
  const waiters = new Set<(uri: string) => void>();
  const errors: Error[] = [];
  client.setNotificationHandler(ResourceUpdatedNotificationSchema, (notification) => {
    updates.push(notification.params.uri);
    for (const waiter of waiters) waiter(notification.params.uri);
  });
  client.onerror = (error) => errors.push(error);
  return {
    client,
    transport,
    updates,
    errors,
    nextUpdate: (uri, timeoutMs = 15_000) =>
      new Promise((resolve, reject) => {
        const waiter = (updated: string) => {
          if (updated !== uri) return;
          waiters.delete(waiter);
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(() => {
          waiters.delete(waiter);
          reject(new Error(`no update of ${uri} within ${timeoutMs} ms; got ${JSON.stringify(updates)}`));
        }, timeoutMs);
        waiters.add(waiter);
      }),
    call: async (name, args = {}) => (await client.callTool({ name, arguments: args })) as CallToolResult,
    close: () => client.close(),
  };
}

/**
 * The SDK's Client over Streamable HTTP with `token`. `streamEnded` resolves when the session's GET
 * stream (server to client) ends; `fetchFn` sees every request.
 */
export async function connectHttp(
  gateway: Gateway,
  token: string,
): Promise<McpClient & { sessionId: () => string | undefined; streamEnded: Promise<void> }> {
  let ended!: () => void;
  const streamEnded = new Promise<void>((resolve) => (ended = resolve));
  let watched = false;
  const transport = new StreamableHTTPClientTransport(mcpUrl(gateway), {
    requestInit: { headers: { authorization: `Bearer ${token}` } },
    reconnectionOptions: { maxRetries: 1, initialReconnectionDelay: 100, maxReconnectionDelay: 100, reconnectionDelayGrowFactor: 1 },
    fetch: async (input, init) => {
      const response = await fetch(input, init);
      const isStream = init?.method === 'GET' && response.ok && response.body;
      if (!isStream || watched) return response;
      // The first GET stream: pass it through, and tell when it ends.
      watched = true;
      const body = response.body!.pipeThrough(new TransformStream({ flush: () => ended() }));
      return new Response(body, { status: response.status, headers: response.headers });
    },
  });
  const client = new Client({ name: 'statehouse-test', version: '1.0.0' });
  await client.connect(transport);
  // As a host does: the tools' output schemas, which the client then checks every result against.
  await client.listTools();
  return { ...track(client, transport), sessionId: () => transport.sessionId, streamEnded };
}

/** A raw JSON-RPC POST to /mcp: status and body, for what the SDK's client would not send. */
export async function rawMcp(
  gateway: Gateway,
  headers: Record<string, string>,
  body: unknown = { jsonrpc: '2.0', id: 1, method: 'tools/list' },
  method = 'POST',
): Promise<{ status: number; text: string; headers: Headers }> {
  const response = await fetch(mcpUrl(gateway), {
    method,
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers },
    body: method === 'POST' ? JSON.stringify(body) : undefined,
  });
  return { status: response.status, text: await response.text(), headers: response.headers };
}

export const INITIALIZE = {
  jsonrpc: '2.0',
  id: 0,
  method: 'initialize',
  params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
};

/** The text of a tool result's first content item. */
export const textOf = (result: CallToolResult) => (result.content[0]?.type === 'text' ? result.content[0].text : '');

/** Fails with the whole result when a tool call did not succeed. */
export function structured<T = Record<string, any>>(result: CallToolResult): T {
  if (result.isError || !result.structuredContent) throw new Error(`tool failed: ${JSON.stringify(result)}`);
  return result.structuredContent as T;
}

/**
 * Another gateway process on `gateway`'s database: on PostgreSQL a second gateway with its own pool
 * and LISTEN connection (they meet only in the database, like two processes; pushed on `started` to
 * be closed); PGlite has one process, so `gateway` itself.
 */
export async function anotherProcess(gateway: Gateway, started: Gateway[]): Promise<Gateway> {
  if (backend !== 'postgres') return gateway;
  const other = await startGateway({ db: gateway.db, database: await gateway.db.open() });
  started.push(other);
  return other;
}
