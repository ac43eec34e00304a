import type { ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import type { Plugin } from 'graphql-yoga';

/** Unsent bytes past which a streamed response whose reader does not read is ended (WebSocket: 1013). */
export const MAX_UNSENT_STREAM_BYTES = 16 * 1024 * 1024;

/** Responses that stream results as they come: SSE subscriptions, and multipart incremental delivery. */
const STREAMED = /^\s*(text\/event-stream|multipart\/mixed)/i;

/**
 * Ends a streamed response (SSE) once MAX_UNSENT_STREAM_BYTES wait unsent, as WebSocket subscribers
 * are closed with 1013. Yoga's stream is pulled only as fast as the socket drains, so the results of
 * a reader that never reads would pile up unmeasured in the subscription behind it; here they are
 * pulled at once into a buffer counted in bytes, and a reader that falls 16 MiB behind loses its
 * connection instead of holding the gateway's memory. A reader that keeps up never notices.
 */
export function useStreamLimits(): Plugin<Record<string, unknown>, { res?: ServerResponse }> {
  return {
    onResponse: ({ response, serverContext, setResponse, fetchAPI }) => {
      const source = response.body;
      if (!source || !STREAMED.test(response.headers.get('content-type') ?? '')) return;
      const reader = source.getReader();
      const unsent = new Readable({
        read() {},
        destroy(error, callback) {
          reader.cancel(error ?? undefined).catch(() => {});
          callback(error);
        },
      });
      void (async () => {
        try {
          for (;;) {
            const { done, value } = await reader.read();
            if (unsent.destroyed) return;
            if (done) return void unsent.push(null);
            unsent.push(value);
            if (unsent.readableLength > MAX_UNSENT_STREAM_BYTES) {
              // Ending the response is all a reader that does not read can be told.
              serverContext.res?.destroy();
              unsent.destroy();
              return;
            }
          }
        } catch (error) {
          unsent.destroy(error as Error);
        }
      })();
      // whatwg-node's Response takes a Node.js Readable as its body and pipes it to the socket.
      setResponse(
        new fetchAPI.Response(unsent as unknown as BodyInit, {
          status: response.status,
          statusText: response.statusText,
          headers: response.headers,
        }),
      );
    },
  };
}
