import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Plugin } from 'graphql-yoga';
import { fileResponse, type StaticFile, staticFile } from '../transport/static-files.js';

/** Where the page lives; `/dashboard` and `/dashboard/` both answer with the page. */
const BASE = '/dashboard';

/**
 * The page holds no inline script or style and talks only to its own origin (HTTP and WebSocket:
 * `'self'` covers `ws:`/`wss:` on the same host in CSP Level 3).
 */
const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
};

function asset(path: string, body: Buffer = readFileSync(path)): StaticFile {
  const type = CONTENT_TYPES[extname(path)];
  if (!type) throw new Error(`dashboard: no content type for ${path}`);
  return staticFile(body, type);
}

/**
 * The browser builds of the chart and the WebSocket client, resolved through node_modules so they
 * follow the installed versions (graphql-ws does not export its UMD build, so it is found beside its package.json).
 */
function vendorFiles(): Record<string, string> {
  const require = createRequire(import.meta.url);
  const graphqlWs = dirname(require.resolve('graphql-ws/package.json'));
  return {
    'vendor/uPlot.iife.min.js': require.resolve('uplot/dist/uPlot.iife.min.js'),
    'vendor/uPlot.min.css': require.resolve('uplot/dist/uPlot.min.css'),
    'vendor/graphql-ws.min.js': join(graphqlWs, 'umd/graphql-ws.min.js'),
  };
}

/** Every file of the page by its path below `/dashboard/`, read once at start (they are small). */
function loadAssets(): { page: StaticFile; files: Map<string, StaticFile> } {
  const publicDir = fileURLToPath(new URL('./public/', import.meta.url));
  const files = new Map<string, StaticFile>();
  for (const name of readdirSync(publicDir)) {
    if (name !== 'index.html') files.set(name, asset(join(publicDir, name)));
  }
  for (const [name, path] of Object.entries(vendorFiles())) files.set(name, asset(path));
  // The page names its assets with their hashes, so a browser keeps them until they change.
  let html = readFileSync(join(publicDir, 'index.html'), 'utf8');
  for (const [name, file] of files) html = html.replaceAll(`"${BASE}/${name}"`, `"${BASE}/${name}?v=${file.version}"`);
  return { page: asset(join(publicDir, 'index.html'), Buffer.from(html)), files };
}

/**
 * Serves the fleet dashboard (`GET /dashboard`): a static page that talks to the gateway only through
 * the public GraphQL API with the token the user gives it, so it has no privileges of its own.
 */
export function useDashboard(): Plugin {
  const { page, files } = loadAssets();
  return {
    onRequest({ url, request, endResponse, fetchAPI }) {
      if (url.pathname !== BASE && !url.pathname.startsWith(`${BASE}/`)) return;
      const headers = new fetchAPI.Headers({
        'content-security-policy': CONTENT_SECURITY_POLICY,
        'x-content-type-options': 'nosniff',
        'referrer-policy': 'no-referrer',
        'cross-origin-opener-policy': 'same-origin',
      });
      if (request.method !== 'GET' && request.method !== 'HEAD') {
        headers.set('allow', 'GET, HEAD');
        endResponse(new fetchAPI.Response('Method Not Allowed\n', { status: 405, headers }));
        return;
      }
      const name = url.pathname.slice(BASE.length + 1);
      const file = name === '' || name === 'index.html' ? page : files.get(name);
      if (!file) {
        headers.set('content-type', 'text/plain; charset=utf-8');
        endResponse(new fetchAPI.Response('Not Found\n', { status: 404, headers }));
        return;
      }
      endResponse(fileResponse(file, request, url, headers, fetchAPI));
    },
  };
}
