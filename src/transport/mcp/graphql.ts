/**
 * The one way MCP reaches the store: a fixed GraphQL operation sent to the gateway's own Yoga
 * instance in-process, with the caller's token, exactly as a POST (or an SSE subscription) on
 * /graphql would be. Authentication, the access rule, limits, rate limits, quotas and the audit log
 * therefore apply unchanged; nothing here decides who may do what.
 */

/** The gateway's Fetch handler (Yoga's `fetch`). */
export type GraphQLFetch = (request: Request) => Response | Promise<Response>;

export interface GraphQLErrorBody {
  message: string;
  path?: readonly (string | number)[];
  extensions?: Record<string, unknown>;
}

export interface GraphQLResult<T = Record<string, unknown>> {
  data?: T | null;
  errors?: GraphQLErrorBody[];
}

/** An in-process request to /graphql: the host never resolves, so nothing leaves the process. */
const ENDPOINT = 'http://statehouse.internal/graphql';

export class GraphQLRunner {
  constructor(private readonly fetch: GraphQLFetch) {}

  /** Runs a query or mutation with `authorization` (the MCP request's own header value). */
  async run<T = Record<string, unknown>>(
    authorization: string,
    query: string,
    variables: Record<string, unknown> = {},
  ): Promise<GraphQLResult<T>> {
    const response = await this.post(authorization, 'application/graphql-response+json', query, variables);
    return (await response.json()) as GraphQLResult<T>;
  }

  /**
   * A subscription over SSE, as `Accept: text/event-stream` on /graphql: each result as it comes, until
   * the server completes it, it ends with errors (its last result), or `signal` aborts.
   */
  async *subscribe<T = Record<string, unknown>>(
    authorization: string,
    query: string,
    variables: Record<string, unknown>,
    signal: AbortSignal,
  ): AsyncGenerator<GraphQLResult<T>> {
    const response = await this.post(authorization, 'text/event-stream', query, variables, signal);
    if (!response.body || !/^text\/event-stream/i.test(response.headers.get('content-type') ?? '')) {
      // Refused before it started (bad token, over a limit): one ordinary GraphQL answer.
      yield (await response.json()) as GraphQLResult<T>;
      return;
    }
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    const onAbort = () => void reader.cancel().catch(() => {});
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      let buffer = '';
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return;
        buffer += value;
        let end: number;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const event = parseEvent(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
          if (event.name === 'complete') return;
          if (event.data !== '') yield JSON.parse(event.data) as GraphQLResult<T>;
        }
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
      await reader.cancel().catch(() => {});
    }
  }

  private async post(authorization: string, accept: string, query: string, variables: Record<string, unknown>, signal?: AbortSignal) {
    const headers = { authorization, accept, 'content-type': 'application/json' };
    return this.fetch(new Request(ENDPOINT, { method: 'POST', headers, body: JSON.stringify({ query, variables }), signal }));
  }
}

/** One SSE event: its `event:` name and its `data:` lines joined; comments (keep-alives) are dropped. */
function parseEvent(text: string): { name: string; data: string } {
  let name = 'message';
  const data: string[] = [];
  for (const line of text.split('\n')) {
    if (line.startsWith('event:')) name = line.slice(6).trim();
    else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
  }
  return { name, data: data.join('\n') };
}
