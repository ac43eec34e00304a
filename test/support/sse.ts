import { tracked } from './leftovers.js';

/**
 * A GraphQL subscription over Server-Sent Events on a real socket (global fetch): the events as
 * they arrive, parsed, until the server ends the stream or the test closes it.
 */
export interface SseStream {
  /** The HTTP status and content type, once the response has started. */
  response: Promise<{ status: number; contentType: string | null }>;
  /** `event: next` payloads (GraphQL results) in order; other events are left out. */
  results: { data?: any; errors?: { message: string; extensions?: Record<string, unknown> }[] }[];
  /** The whole text received, for checks that no internal detail went out. */
  text(): string;
  /** Resolves when the server ends the stream (or the test closes it). */
  ended: Promise<void>;
  close(): void;
}

export function openSse(
  url: string,
  token: string | null,
  query: string,
  variables?: Record<string, unknown>,
  options: { method?: 'GET' | 'POST' } = {},
): SseStream {
  const abort = new AbortController();
  const results: SseStream['results'] = [];
  let received = '';
  let answered: (value: { status: number; contentType: string | null }) => void = () => {};
  const response = new Promise<{ status: number; contentType: string | null }>((resolve) => {
    answered = resolve;
  });
  const headers: Record<string, string> = { accept: 'text/event-stream' };
  if (token !== null) headers.authorization = `Bearer ${token}`;
  const get = options.method === 'GET';
  if (!get) headers['content-type'] = 'application/json';
  const target = get ? `${url}?${new URLSearchParams({ query, ...(variables ? { variables: JSON.stringify(variables) } : {}) })}` : url;

  const ended = (async () => {
    try {
      const reply = await fetch(target, {
        method: get ? 'GET' : 'POST',
        headers,
        body: get ? undefined : JSON.stringify({ query, variables }),
        signal: abort.signal,
      });
      answered({ status: reply.status, contentType: reply.headers.get('content-type') });
      if (!reply.body) return;
      const decoder = new TextDecoder();
      let pending = '';
      for await (const chunk of reply.body) {
        const text = decoder.decode(chunk, { stream: true });
        received += text;
        pending += text.replace(/\r\n/g, '\n');
        for (let end = pending.indexOf('\n\n'); end >= 0; end = pending.indexOf('\n\n')) {
          const lines = pending.slice(0, end).split('\n');
          pending = pending.slice(end + 2);
          const event =
            lines
              .find((line) => line.startsWith('event:'))
              ?.slice(6)
              .trim() ?? 'message';
          const data = lines
            .filter((line) => line.startsWith('data:'))
            .map((line) => line.slice(5).replace(/^ /, ''))
            .join('\n');
          if ((event === 'next' || event === 'message') && data !== '') results.push(JSON.parse(data));
        }
      }
    } catch (error) {
      if (!abort.signal.aborted) throw error;
    } finally {
      answered({ status: 0, contentType: null });
    }
  })();
  ended.catch(() => {});
  return tracked({ response, results, text: () => received, ended, close: () => abort.abort() });
}
