import type { Readable, Writable } from 'node:stream';
import { StreamableHTTPClientTransport, StreamableHTTPError } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { isJSONRPCRequest, isJSONRPCResultResponse, type JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';

export interface BridgeOptions {
  /** The gateway's MCP endpoint, e.g. http://127.0.0.1:4000/mcp. */
  url: URL;
  token: string;
  input?: Readable;
  output?: Writable;
  /** Where to say why the bridge ended (stderr: stdout carries the protocol). */
  log?: (line: string) => void;
}

/** HTTP answers after which the session cannot go on: the token stopped working, or the session is gone. */
const FATAL = new Set([401, 403, 404]);

/**
 * Relays MCP messages between a host that launched this process (stdio) and the gateway's
 * Streamable HTTP endpoint, unchanged, with the token as a bearer header. Resolves when either side
 * ends: the host closed stdin, or the gateway ended the session (token revoked, session expired).
 */
export function bridge(options: BridgeOptions): Promise<{ reason: string }> {
  const log = options.log ?? (() => {});
  const input = options.input ?? process.stdin;
  const local = new StdioServerTransport(input, options.output);
  const remote = new StreamableHTTPClientTransport(options.url, {
    requestInit: { headers: { authorization: `Bearer ${options.token}` } },
    reconnectionOptions: { maxRetries: 2, initialReconnectionDelay: 500, maxReconnectionDelay: 5_000, reconnectionDelayGrowFactor: 2 },
  });
  const initializeIds = new Set<string | number>();

  return new Promise((resolve) => {
    let ended = false;
    const end = async (reason: string, fromHost: boolean) => {
      if (ended) return;
      ended = true;
      log(`statehouse mcp: ${reason}`);
      if (fromHost) await remote.terminateSession().catch(() => {});
      await Promise.allSettled([remote.close(), local.close()]);
      resolve({ reason });
    };
    const fatal = (error: unknown) =>
      error instanceof StreamableHTTPError && error.code !== undefined && FATAL.has(error.code)
        ? `the gateway ended the session (HTTP ${error.code}: ${error.message})`
        : undefined;

    local.onmessage = (message: JSONRPCMessage) => {
      if (isJSONRPCRequest(message) && message.method === 'initialize') initializeIds.add(message.id);
      remote.send(message).catch(async (error: unknown) => {
        if (isJSONRPCRequest(message)) {
          const text = error instanceof Error ? error.message : String(error);
          await local.send({ jsonrpc: '2.0', id: message.id, error: { code: -32000, message: text } }).catch(() => {});
        }
        const reason = fatal(error);
        if (reason) await end(reason, false);
      });
    };
    remote.onmessage = (message: JSONRPCMessage) => {
      if (isJSONRPCResultResponse(message) && initializeIds.delete(message.id) && typeof message.result.protocolVersion === 'string') {
        remote.setProtocolVersion(message.result.protocolVersion);
      }
      void local.send(message).catch(() => {});
    };
    remote.onerror = (error: Error) => {
      const reason = fatal(error);
      if (reason) void end(reason, false);
    };
    // The SDK's stdio transport does not watch for the end of its input: the host closing stdin ends the bridge.
    input.once('end', () => void end('the host closed stdin', true));
    void remote.start().then(() => local.start());
  });
}
