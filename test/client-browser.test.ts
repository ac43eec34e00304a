/**
 * statehouse/client in a browser (headless Chromium): the built JavaScript, loaded as ES modules from
 * another origin with graphql-ws mapped by an import map, with the browser's own WebSocket and fetch.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { extname, join, normalize } from 'node:path';
import { promisify } from 'node:util';
import { type Browser, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backend } from './support/database.js';
import { ADMIN_TOKEN, type Gateway, startGateway } from './support/gateway.js';

const root = new URL('..', import.meta.url).pathname;
const PAGE = `<!doctype html><meta charset="utf-8">
<script type="importmap">{ "imports": { "graphql-ws": "/graphql-ws/client.js" } }</script>
<title>statehouse/client</title>`;

let gateway: Gateway;
let browser: Browser;
let site: Server;
let siteUrl: string;
let built: string;

/** Serves the page, the built client and graphql-ws's browser build. */
function serve(): Promise<Server> {
  const folders: Record<string, string> = { client: built, 'graphql-ws': join(root, 'node_modules/graphql-ws/dist') };
  const server = createServer((request, response) => {
    const [, folder = '', ...rest] = (request.url ?? '/').split('?')[0]?.split('/') ?? [];
    const base = folders[folder];
    const file = base && normalize(join(base, ...rest));
    if (!file || !file.startsWith(base)) {
      response.writeHead(200, { 'content-type': 'text/html' }).end(PAGE);
      return;
    }
    try {
      const body = readFileSync(file);
      response.writeHead(200, { 'content-type': extname(file) === '.js' ? 'text/javascript' : 'application/octet-stream' }).end(body);
    } catch {
      response.writeHead(404).end();
    }
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

beforeAll(async () => {
  // Built on its own, so the package test's build of dist/client can run at the same time.
  built = mkdtempSync(join(tmpdir(), 'statehouse-client-browser-'));
  await promisify(execFile)(
    join(root, 'node_modules/.bin/tsc'),
    ['-p', 'src/client/tsconfig.json', '--outDir', built, '--sourceMap', 'false'],
    {
      cwd: root,
    },
  );
  site = await serve();
  siteUrl = `http://127.0.0.1:${(site.address() as AddressInfo).port}`;
  [gateway, browser] = await Promise.all([
    startGateway({ app: { corsOrigins: [siteUrl] } }),
    chromium.launch({ executablePath: '/usr/bin/chromium' }),
  ]);
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await gateway?.close();
  site?.close();
  if (built) rmSync(built, { recursive: true, force: true });
});

describe(`statehouse/client in a browser (${backend})`, () => {
  it('connects, writes, reads and watches over the browser`s WebSocket, and queries over its fetch', async () => {
    await gateway.createNamespace('numbers');
    const token = await gateway.registerAgent('browser', ['numbers']);
    const page = await browser.newPage();
    const pageErrors: string[] = [];
    page.on('pageerror', (error) => pageErrors.push(error.message));
    await page.goto(siteUrl);
    // A string, so the test runner's module transform leaves its import() alone.
    const result: any = await page.evaluate(`(async ({ url, token }) => {
      const { connect, VersionConflictError } = await import('/client/index.js');
      const client = connect({ url, token });
      const numbers = client.namespace('numbers');
      const changes = numbers.watch();
      await changes.ready;
      const written = await numbers.set('n', 1);
      const incremented = await numbers.increment('n', 2);
      const first = await changes.next();
      const second = await changes.next();
      const conflict = await numbers.set('n', 0, { expectedVersion: 0 }).catch((error) => error instanceof VersionConflictError);
      await client.close();
      const script = connect({ url, token, transport: 'http' });
      const read = await script.namespace('numbers').get('n');
      await script.close();
      return { written, incremented, changes: [first.value, second.value], conflict, read };
    })(${JSON.stringify({ url: gateway.url, token })})`);
    expect(result.written).toMatchObject({ key: 'n', value: 1, version: 1, updatedBy: 'browser' });
    expect(result.incremented).toMatchObject({ value: 3, version: 2 });
    expect(result.changes.map((change: { op: string; value: unknown }) => [change.op, change.value])).toEqual([
      ['SET', 1],
      ['SET', 3],
    ]);
    expect(result.conflict).toBe(true);
    expect(result.read).toMatchObject({ value: 3, version: 2 });
    expect(pageErrors).toEqual([]);
    const { entry } = await gateway.ok(ADMIN_TOKEN, '{ entry(namespace: "numbers", key: "n") { value updatedBy } }');
    expect(entry).toEqual({ value: 3, updatedBy: 'browser' });
  });
});
