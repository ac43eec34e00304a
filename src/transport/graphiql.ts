import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import type { FetchAPI, GraphiQLOptions, Plugin } from 'graphql-yoga';
import { fileResponse, largeStaticFile, type StaticFile, staticFile } from './static-files.js';

/** Where GraphiQL's scripts, styles and workers are served; the page itself answers at the GraphQL endpoint. */
const ASSETS = '/graphiql/';

/**
 * The page holds no inline script and talks only to its own origin. Fonts and a few images are
 * `data:` URLs inside GraphiQL's stylesheet; Monaco's language workers are files of the page's origin.
 * Monaco's editor positions its lines with style attributes, which no nonce or hash can allow:
 * `style-src-attr` is the one inline allowance (style only, and with nothing to load from elsewhere).
 * The `<style>` elements it creates carry the page's nonce.
 */
const contentSecurityPolicy = (nonce: string) =>
  [
    "default-src 'none'",
    "script-src 'self'",
    `style-src 'self' 'nonce-${nonce}'`,
    "style-src-attr 'unsafe-inline'",
    "img-src 'self' data:",
    'font-src data:',
    "connect-src 'self'",
    "worker-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');

/** The first tab of a browser with no saved tabs: how to authenticate, and a query to run. */
const DEFAULT_QUERY = `# Welcome to Statehouse.
#
# Every request needs a token. Open the Headers
# tab below and enter
#
#   {"Authorization": "Bearer <token>"}
#
# with the admin token printed on the gateway's
# first start, or one from createToken or
# registerAgent. Then run this query (Ctrl-Enter):

query Viewer {
  viewer {
    tenant
    role
    namespaces {
      namespace
      permission
    }
  }
}

# Subscriptions run here too, with the same header
# (over Server-Sent Events), for example:
#   subscription {
#     entryChanged(namespace: "common") {
#       revision op key value
#     }
#   }
# The Docs pane (the book icon) describes every
# type, field and argument.
`;

const JS = 'text/javascript; charset=utf-8';

/** The parts of the bundle, by the name they are served under and the type they are served with. */
const BUNDLE = new Map([
  ['graphiql.js', { part: 'js', type: JS }],
  ['graphiql.css', { part: 'css', type: 'text/css; charset=utf-8' }],
  ['editor.worker.js', { part: 'editorWorkerService', type: JS }],
  ['json.worker.js', { part: 'jsonWorker', type: JS }],
  ['graphql.worker.js', { part: 'graphqlWorker', type: JS }],
]);
/** The bundle holds it as a data: URL. */
const FAVICON = 'favicon.ico';
/** Statehouse's own script, which starts GraphiQL. */
const START = 'start.js';

/** The Monaco workers GraphiQL asks for, by the label it asks with. */
const WORKERS = { editorWorkerService: 'editor.worker.js', json: 'json.worker.js', graphql: 'graphql.worker.js' };

const BUNDLE_VERSION: string = createRequire(import.meta.url)('@graphql-yoga/render-graphiql/package.json').version;

/**
 * GraphiQL as @graphql-yoga/render-graphiql builds it, taken apart: its renderGraphiQL inlines some 9 MB
 * of script and style into the page (which a strict CSP could not allow without hashes of megabytes,
 * and no browser could cache) and starts Monaco's workers from blob: URLs. Here each part is a file of
 * its own, versioned by the package's version.
 */
async function loadBundle(): Promise<Map<string, StaticFile>> {
  const worker = new Worker(new URL('./graphiql-bundle.worker.mjs', import.meta.url));
  worker.unref();
  const [parts] = (await once(worker, 'message')) as [Record<string, Uint8Array>];
  const part = (name: string) => {
    const bytes = parts[name];
    if (!bytes) throw new Error(`@graphql-yoga/render-graphiql ${BUNDLE_VERSION} has no ${name}`);
    return bytes;
  };
  const favicon = new TextDecoder().decode(part('favicon'));
  const files = [...BUNDLE].map(
    async ([name, { part: from, type }]) => [name, await largeStaticFile(part(from), type, BUNDLE_VERSION)] as const,
  );
  const icon = Buffer.from(favicon.slice(favicon.indexOf(',') + 1), 'base64');
  files.push(largeStaticFile(icon, 'image/x-icon', BUNDLE_VERSION).then((file) => [FAVICON, file] as const));
  return new Map(await Promise.all(files));
}

/** Loaded once per process, on first use: most gateways never serve GraphiQL. */
let loading: Promise<Map<string, StaticFile>> | undefined;
function bundleFiles(): Promise<Map<string, StaticFile>> {
  loading ??= loadBundle().catch((error: unknown) => {
    loading = undefined;
    throw error;
  });
  return loading;
}

/** `<script type="application/json">` content: `<` escaped so that no `</script>` or `<!--` can end it early. */
const scriptData = (value: unknown) => JSON.stringify(value).replaceAll('<', '\\u003c');

/**
 * The page for one response (its nonce is that response's own). It names every file with its version,
 * so it needs none of them loaded: it answers at once, and the browser's requests for the files wait.
 */
function renderPage(endpoint: string, start: StaticFile, nonce: string): string {
  const src = (name: string) => `${ASSETS}${name}?v=${name === START ? start.version : BUNDLE_VERSION}`;
  const options: GraphiQLOptions & { shouldPersistHeaders: boolean } = {
    title: 'Statehouse',
    endpoint,
    defaultQuery: DEFAULT_QUERY,
    // SSE carries the Authorization header of the Headers tab; graphql-ws would need connectionParams instead.
    subscriptionsProtocol: 'SSE',
    // Tokens typed into the Headers tab are not written to localStorage unless the user turns that on.
    shouldPersistHeaders: false,
  };
  const workers = Object.fromEntries(Object.entries(WORKERS).map(([label, name]) => [label, src(name)]));
  return `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <meta name="viewport" content="width=device-width, initial-scale=1" />
    <title>${options.title}</title>
    <link rel="icon" href="${src(FAVICON)}" />
    <link rel="stylesheet" href="${src('graphiql.css')}" />
    <script type="application/json" id="graphiql-config">${scriptData({ options, workers })}</script>
    <script src="${src(START)}" nonce="${nonce}" defer></script>
    <script src="${src('graphiql.js')}" defer></script>
  </head>
  <body id="body" class="no-focus-outline">
    <noscript>GraphiQL needs JavaScript.</noscript>
    <div id="root"></div>
  </body>
</html>
`;
}

function securityHeaders(fetchAPI: FetchAPI, nonce: string): Headers {
  return new fetchAPI.Headers({
    'content-security-policy': contentSecurityPolicy(nonce),
    'x-frame-options': 'DENY',
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
    'cross-origin-opener-policy': 'same-origin',
  });
}

/**
 * Serves GraphiQL to a browser that asks for `endpoint` (GET, Accept: text/html), with everything it
 * loads from the gateway itself (below `/graphiql/`): it works without internet and sends nothing to
 * another origin.
 */
export function useGraphiQL({ endpoint }: { endpoint: string }): Plugin {
  const start = staticFile(readFileSync(new URL('./graphiql-start.js', import.meta.url)), JS);
  return {
    async onRequest({ request, url, endResponse, fetchAPI }) {
      const isPage =
        request.method === 'GET' &&
        (url.pathname === endpoint || url.pathname === `${endpoint}/`) &&
        (request.headers.get('accept') ?? '').includes('text/html');
      if (!isPage && !url.pathname.startsWith(ASSETS)) return;
      const nonce = randomBytes(18).toString('base64');
      const headers = securityHeaders(fetchAPI, nonce);
      if (isPage) {
        headers.set('content-type', 'text/html; charset=utf-8');
        // A nonce is good for one response only.
        headers.set('cache-control', 'no-store');
        endResponse(new fetchAPI.Response(renderPage(endpoint, start, nonce), { status: 200, headers }));
        return;
      }
      if (request.method !== 'GET' && request.method !== 'HEAD') {
        headers.set('allow', 'GET, HEAD');
        endResponse(new fetchAPI.Response('Method Not Allowed\n', { status: 405, headers }));
        return;
      }
      const name = url.pathname.slice(ASSETS.length);
      const file = name === START ? start : BUNDLE.has(name) || name === FAVICON ? (await bundleFiles()).get(name) : undefined;
      if (!file) {
        headers.set('content-type', 'text/plain; charset=utf-8');
        endResponse(new fetchAPI.Response('Not Found\n', { status: 404, headers }));
        return;
      }
      endResponse(fileResponse(file, request, url, headers, fetchAPI));
    },
  };
}
