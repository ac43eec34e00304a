import { GraphQLError } from 'graphql';
import type { Plugin } from 'graphql-yoga';
import { bearerToken } from '../auth/tokens.js';
import type { Services } from '../context.js';
import { defaultConfig, type TenantConfig } from '../modules/tenants/config.service.js';
import { DEFAULT_ACTIVE_WINDOW_SECONDS } from '../domain/values.js';

const DEFAULTS = defaultConfig(DEFAULT_ACTIVE_WINDOW_SECONDS).limits;
/** The most a batched request may hold whatever a tenant configures (the config schema's maximum). */
export const MAX_BATCH_OPERATIONS = 1_000;

/** Requests that arrived as a batch: a subscription cannot be answered inside one. */
const batched = new WeakSet<Request>();
export const isBatched = (request: Request | undefined) => request !== undefined && batched.has(request);

const requestError = (code: string, message: string, status: number, details: Record<string, unknown>) =>
  new GraphQLError(message, { extensions: { code, ...details, http: { status } } });

/** Reads a body without a Content-Length, refusing it as soon as it passes `limit` bytes. */
async function readLimited(request: Request, limit: number): Promise<string> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  if (request.body) {
    for await (const chunk of request.body as unknown as AsyncIterable<Uint8Array>) {
      size += chunk.byteLength;
      if (size > limit) throw tooLarge(limit);
      chunks.push(chunk);
    }
  }
  return Buffer.concat(chunks).toString('utf8');
}

const tooLarge = (limit: number) =>
  requestError('PAYLOAD_TOO_LARGE', `The request body is larger than ${limit} bytes`, 413, { field: 'body', limit });

const EXAMPLE_BODY = '{"query": "{ viewer { role } }"}';

/** Yoga would answer a bare 415: say what it takes. */
const unsupportedMediaType = () =>
  requestError('BAD_USER_INPUT', `Send the body as JSON with the header Content-Type: application/json, e.g. ${EXAMPLE_BODY}`, 415, {
    field: 'Content-Type',
  });

/** Yoga would call it invalid JSON. */
const noBody = () =>
  requestError('BAD_USER_INPUT', `The request has no body: send a JSON object such as ${EXAMPLE_BODY}`, 400, { field: 'body' });

/**
 * Limits of a request before any GraphQL work: the body (twice the tenant's `maxValueBytes`, so
 * that an over-large value is answered with PAYLOAD_TOO_LARGE naming it rather than a bare 413) and
 * the number of operations in a batched request (`maxBatchOperations`). A POST that no parser takes
 * (no or another Content-Type) or that has no body is refused here, saying what to send.
 *
 * A body with a Content-Length within the default limit needs no lookup: a tenant with lower limits
 * still refuses the value itself. Only larger or unannounced (chunked) bodies are measured against
 * the caller's own tenant settings.
 */
export function useRequestLimits(services: Services): Plugin {
  async function limitsOf(request: Request): Promise<TenantConfig['limits']> {
    const token = bearerToken(request.headers.get('authorization'));
    const principal = token ? await services.authenticator.authenticate(token) : null;
    return principal ? (await services.config.get(principal.tenantId)).limits : DEFAULTS;
  }

  /** After parsing: a batch is refused past its tenant's `maxBatchOperations` (`known`: the limits already looked up). */
  const checkBatch =
    (request: Request, known: TenantConfig['limits'] | undefined) =>
    ({ requestParserResult: parsed }: { requestParserResult: unknown }) => {
      if (!Array.isArray(parsed)) return;
      batched.add(request);
      return (known ? Promise.resolve(known) : limitsOf(request)).then((limits) => {
        if (parsed.length > limits.maxBatchOperations) {
          throw requestError('QUERY_TOO_COMPLEX', `A batched request may hold at most ${limits.maxBatchOperations} operations`, 400, {
            field: 'body',
            limit: limits.maxBatchOperations,
          });
        }
      });
    };

  // Synchronous unless the tenant's limits must be looked up: most requests then cost Yoga no promise here.
  return {
    onRequestParse: ({ request, requestParser, setRequestParser }) => {
      if (request.method !== 'POST') return { onRequestParseDone: checkBatch(request, undefined) };
      // Yoga's parsers come first: none took a POST whose Content-Type is missing or not GraphQL's.
      if (!requestParser) return Promise.reject(unsupportedMediaType());
      const announced = request.headers.get('content-length');
      if (announced === '0') return Promise.reject(noBody());
      const length = announced === null ? null : Number(announced);
      if (length !== null && length <= 2 * DEFAULTS.maxValueBytes) return { onRequestParseDone: checkBatch(request, undefined) };
      return limitsOf(request).then((limits) => {
        const bodyLimit = 2 * limits.maxValueBytes;
        if (length !== null && length > bodyLimit) throw tooLarge(bodyLimit);
        if (length === null) {
          setRequestParser(async (original) => {
            const text = await readLimited(original, bodyLimit);
            if (text.trim() === '') throw noBody();
            return requestParser(new Request(original.url, { method: 'POST', headers: original.headers, body: text }));
          });
        }
        return { onRequestParseDone: checkBatch(request, limits) };
      });
    },
  };
}
