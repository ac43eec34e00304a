import { createHash } from 'node:crypto';
import { promisify } from 'node:util';
import { gzip, gzipSync } from 'node:zlib';
import type { FetchAPI } from 'graphql-yoga';

/** A file served from memory. */
export interface StaticFile {
  body: Uint8Array<ArrayBuffer>;
  gzip: Uint8Array<ArrayBuffer> | null;
  type: string;
  /** Names this content: the ETag, and the `?v=` of a URL under which it may be cached for good. */
  version: string;
}

/** An asset URL carrying its version (`?v=`) never changes, so it may be cached for a year. */
const IMMUTABLE = 'public, max-age=31536000, immutable';
/** Anything else is revalidated with its ETag on every use: an upgrade shows at once, an unchanged file costs a 304. */
const REVALIDATE = 'no-cache';

const compress = promisify(gzip);
/** Smaller files are sent as they are: gzip would save next to nothing. */
const MIN_GZIP_BYTES = 1024;

const bytes = (content: string | Uint8Array) =>
  typeof content === 'string' ? Buffer.from(content) : Buffer.from(content.buffer, content.byteOffset, content.byteLength);

const contentHash = (body: Buffer) => createHash('sha256').update(body).digest('base64url').slice(0, 16);

/** A file whose version is the hash of its bytes, compressed at once (for the small files read at start). */
export function staticFile(content: string | Uint8Array, type: string): StaticFile {
  const body = bytes(content);
  const zipped = body.byteLength > MIN_GZIP_BYTES ? gzipSync(body) : null;
  return { body: new Uint8Array(body), gzip: zipped && new Uint8Array(zipped), type, version: contentHash(body) };
}

/** A file of a given version (a package's, say), compressed on libuv's thread pool: off the event loop, for large files. */
export async function largeStaticFile(content: string | Uint8Array, type: string, version: string): Promise<StaticFile> {
  const body = bytes(content);
  const zipped = body.byteLength > MIN_GZIP_BYTES ? await compress(body) : null;
  return { body: new Uint8Array(body), gzip: zipped && new Uint8Array(zipped), type, version };
}

/**
 * Answers a GET or HEAD for `file`: 304 when the browser holds it (If-None-Match), gzip when accepted,
 * cached for good when the URL names its version. `headers` carries the caller's own (security) headers.
 */
export function fileResponse(file: StaticFile, request: Request, url: URL, headers: Headers, fetchAPI: FetchAPI): Response {
  const etag = `"${file.version}"`;
  headers.set('etag', etag);
  headers.set('cache-control', url.searchParams.get('v') === file.version ? IMMUTABLE : REVALIDATE);
  headers.set('vary', 'accept-encoding');
  if (request.headers.get('if-none-match') === etag) return new fetchAPI.Response(null, { status: 304, headers });
  headers.set('content-type', file.type);
  let body = file.body;
  if (file.gzip && /\bgzip\b/.test(request.headers.get('accept-encoding') ?? '')) {
    body = file.gzip;
    headers.set('content-encoding', 'gzip');
  }
  headers.set('content-length', String(body.byteLength));
  return new fetchAPI.Response(request.method === 'HEAD' ? null : body, { status: 200, headers });
}
