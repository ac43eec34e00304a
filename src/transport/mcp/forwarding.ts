/**
 * MCP sessions across the workers of one port. A session lives in the worker that opened it, and the
 * operating system hands workers connections, not requests: so a session id names its worker
 * (`<worker id>.<random>`), and a worker that receives a request for a sibling's session streams it
 * to that sibling's private port (127.0.0.1 only, learnt from the primary) and streams the answer
 * back. The private port answers only requests carrying the port's secret, and only for /mcp.
 */
import { timingSafeEqual } from 'node:crypto';
import { Agent, createServer, type IncomingMessage, request as httpRequest, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Logger } from '../../logger.js';

/** The header a forwarded request carries the port's secret in. */
export const CLUSTER_SECRET_HEADER = 'x-statehouse-cluster-secret';
/** A session id opened by a worker: its worker id, a dot, 32 random bytes. */
const WORKER_SESSION = /^(\d{1,9})\.[A-Za-z0-9_-]{43}$/;
/** Statuses a Response may not have a body with. */
const NULL_BODY_STATUSES = new Set([204, 205, 304]);
/** Headers of one connection, not of the request or answer they carry. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'content-length', 'host', 'upgrade', CLUSTER_SECRET_HEADER]);

/** What forwarding needs to know of the worker's siblings (ClusterMember in cluster.ts). */
export interface Siblings {
  id: number;
  siblingPort(id: number): number | undefined;
  secret(): string | undefined;
}

/** What the MCP endpoint asks of the cluster. */
export interface McpRouting {
  /** Prefix of the session ids this worker opens. */
  sessionPrefix: string;
  /**
   * The answer of the sibling that owns `sessionId`; null when it names this worker or no live one,
   * and resolves to null when the owner could not be reached (it just died).
   */
  forward(sessionId: string, request: Request): Promise<Response | null> | null;
}

export function mcpRouting(siblings: Siblings, logger: Logger): McpRouting {
  // Kept-alive connections to the siblings; a long-lived GET stream holds one of its own.
  const agent = new Agent({ keepAlive: true });
  return {
    sessionPrefix: `${siblings.id}.`,
    forward(sessionId, request) {
      const worker = Number(WORKER_SESSION.exec(sessionId)?.[1] ?? Number.NaN);
      // Only ever a live sibling's private port on 127.0.0.1, whatever the id says.
      const port = worker === siblings.id ? undefined : siblings.siblingPort(worker);
      const secret = siblings.secret();
      if (port === undefined || secret === undefined) return null;
      logger.debug({ owner: worker, method: request.method }, 'forwarding an MCP request to the worker that owns its session');
      return forwardTo(agent, port, secret, request);
    },
  };
}

function forwardTo(agent: Agent, port: number, secret: string, request: Request): Promise<Response | null> {
  const headers: Record<string, string> = {};
  request.headers.forEach((value, name) => {
    if (!HOP_BY_HOP.has(name)) headers[name] = value;
  });
  headers[CLUSTER_SECRET_HEADER] = secret;
  return new Promise((resolve) => {
    const upstream = httpRequest({ host: '127.0.0.1', port, path: new URL(request.url).pathname, method: request.method, headers, agent });
    // The client went away: so does the request to the owner (which then drops the stream).
    const abort = () => upstream.destroy();
    if (request.signal.aborted) abort();
    request.signal.addEventListener('abort', abort, { once: true });
    upstream.once('response', (answer) => {
      const forwarded = new Headers();
      for (const [name, value] of Object.entries(answer.headers)) {
        if (value !== undefined && !HOP_BY_HOP.has(name)) forwarded.set(name, Array.isArray(value) ? value.join(', ') : value);
      }
      answer.once('close', () => request.signal.removeEventListener('abort', abort));
      const bodyless = NULL_BODY_STATUSES.has(answer.statusCode ?? 0);
      if (bodyless) answer.resume();
      const body = bodyless ? null : endingStream(answer);
      resolve(new Response(body, { status: answer.statusCode ?? 502, headers: forwarded }));
    });
    // The owner died between the primary's last word and now: its sessions are gone.
    upstream.on('error', () => resolve(null));
    if (request.body && request.method === 'POST') {
      // Yoga's request body may be its own stream class: any async iterable of bytes will do.
      pipeline(Readable.from(request.body as unknown as AsyncIterable<Uint8Array>, { objectMode: false }), upstream).catch(() =>
        upstream.destroy(),
      );
    } else {
      upstream.end();
    }
  });
}

/**
 * The owner's answer as a web stream, pulled only as the client reads (backpressure both ways);
 * cancelling it destroys the answer. If the owner goes away mid-answer the stream just ends, as the
 * session's would have: an errored body would bring down this worker's response writer.
 */
function endingStream(answer: IncomingMessage): ReadableStream<Uint8Array> {
  let done = false;
  return new ReadableStream<Uint8Array>(
    {
      start(controller) {
        const end = () => {
          if (done) return;
          done = true;
          controller.close();
        };
        answer.on('data', (chunk: Buffer) => {
          if (done) return;
          controller.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
          if ((controller.desiredSize ?? 0) <= 0) answer.pause();
        });
        answer.once('end', end);
        answer.once('close', end);
        answer.on('error', end);
      },
      pull: () => {
        answer.resume();
      },
      cancel: () => {
        done = true;
        answer.destroy();
      },
    },
    { highWaterMark: 64 * 1024, size: (chunk) => chunk.byteLength },
  );
}

function secretMatches(given: string | string[] | undefined, secret: string | undefined): boolean {
  if (typeof given !== 'string' || secret === undefined) return false;
  const a = Buffer.from(given);
  const b = Buffer.from(secret);
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * The private server of a worker: 127.0.0.1 only, its own port (not the cluster's shared one), and
 * only /mcp requests forwarded by a sibling, which carry the secret. `handle` answers them as the
 * session's owner; it is not a way around authentication (the request's own token is checked again).
 */
export function servePrivateMcp(path: string, handle: (request: Request) => Promise<Response>, secret: () => string | undefined) {
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    // A sibling that goes away mid-request ends this one; it is no error of this process.
    req.on('error', () => {});
    res.on('error', () => {});
    if (!secretMatches(req.headers[CLUSTER_SECRET_HEADER], secret())) {
      res.writeHead(403, { 'content-type': 'text/plain' }).end('Only sibling workers may call this port\n');
      req.resume();
      return;
    }
    if (req.url !== path) {
      res.writeHead(404).end();
      req.resume();
      return;
    }
    void answer(req, res);
  });
  const answer = async (req: IncomingMessage, res: ServerResponse) => {
    const controller = new AbortController();
    res.once('close', () => controller.abort());
    const headers = new Headers();
    for (const [name, value] of Object.entries(req.headers)) {
      if (value !== undefined && !HOP_BY_HOP.has(name)) headers.set(name, Array.isArray(value) ? value.join(', ') : value);
    }
    const post = req.method === 'POST';
    if (!post) req.resume();
    const request = new Request(`http://127.0.0.1${path}`, {
      method: req.method,
      headers,
      body: post ? (Readable.toWeb(req) as unknown as ReadableStream<Uint8Array>) : undefined,
      signal: controller.signal,
      ...(post ? { duplex: 'half' } : {}),
    } as RequestInit);
    try {
      const response = await handle(request);
      const out: Record<string, string> = {};
      response.headers.forEach((value, name) => (out[name] = value));
      res.writeHead(response.status, out);
      // An SSE answer may say nothing for a long time: the sibling needs its headers now.
      res.flushHeaders();
      if (response.body) await pipeline(Readable.fromWeb(response.body as import('node:stream/web').ReadableStream), res);
      else res.end();
    } catch {
      if (!res.headersSent) res.writeHead(500).end();
      else res.destroy();
    }
  };
  return {
    server,
    /** Listens on its own port (`exclusive`: a worker's listen(0) would otherwise share the cluster's). */
    listen: () =>
      new Promise<number>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ port: 0, host: '127.0.0.1', exclusive: true }, () => resolve((server.address() as AddressInfo).port));
      }),
    close: () => {
      server.close();
      server.closeAllConnections();
    },
  };
}
