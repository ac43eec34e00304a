/**
 * GraphiQL at GET /graphql (issues 13 and 14): served whole by the gateway, so that it works on a machine
 * without internet, under a strict Content-Security-Policy. Driven in headless Chromium with every request
 * to another origin refused: the editor renders, the first tab says how to send a token, a query runs with
 * it and a subscription started from GraphiQL receives a change written over HTTP.
 */
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { collectPageErrors, launchChromium } from './support/browser.js';
import { ADMIN_TOKEN, type Gateway, startGateway } from './support/gateway.js';

/** Loading GraphiQL's 9 MB bundle, in the gateway and in Chromium, is slow on a busy 2-core machine. */
const GRAPHIQL_TEST_MS = 90_000;
const ASK_FOR_HTML = { accept: 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8' };

let gateway: Gateway;
let browser: Browser;
let context: BrowserContext;
let page: Page;
/** Requests the page tried to send to any other origin (all refused). */
const offOrigin: string[] = [];
/** Errors the page logged or threw, and CSP violations it reported. */
let pageErrors: string[];

/** The directives of a Content-Security-Policy header, by name. */
function directives(policy: string): Map<string, string[]> {
  const entries = policy.split(';').map((directive) => directive.trim().split(/\s+/));
  return new Map(entries.map(([name, ...values]) => [name ?? '', values]));
}

/** What a Monaco editor in `section` shows, as plain text. */
const editorText = async (section: string) => (await page.innerText(`${section} .view-lines`)).replaceAll('\u00a0', ' ');

/** Replaces the operation in the editor of the active tab. */
/**
 * Replaces the operation in the editor, and waits until GraphiQL itself holds it (it keeps the tabs'
 * state in the page's storage, a moment after the editor changed): Execute would otherwise still run
 * the previous operation on a busy machine.
 */
async function typeOperation(operation: string): Promise<void> {
  await page.click('section[aria-label="Operation Editor"] .monaco-editor');
  await page.keyboard.press('Control+A');
  await page.keyboard.insertText(operation);
  await page.waitForFunction(
    (text) => Object.values({ ...localStorage, ...sessionStorage }).some((value) => String(value).includes(text)),
    JSON.stringify(operation).slice(1, -1),
  );
}

beforeAll(async () => {
  [gateway, browser] = await Promise.all([startGateway(), launchChromium()]);
  await gateway.createNamespace('orders');
  const origin = new URL(gateway.url).origin;
  context = await browser.newContext({ viewport: { width: 1440, height: 900 }, serviceWorkers: 'block' });
  // As on a machine without internet: nothing but the gateway answers.
  await context.route('**/*', async (route) => {
    const url = route.request().url();
    if (new URL(url).origin === origin) return route.continue();
    offOrigin.push(url);
    return route.abort('internetdisconnected');
  });
  page = await context.newPage();
  // Below the tests' own timeout, so that a wait that fails says what it waited for.
  page.setDefaultTimeout(GRAPHIQL_TEST_MS / 2);
  pageErrors = await collectPageErrors(page);
}, GRAPHIQL_TEST_MS);

afterAll(async () => {
  await browser?.close();
  await gateway?.close();
});

describe('GET /graphql with Accept: text/html', { timeout: GRAPHIQL_TEST_MS }, () => {
  it('answers with headers as strict as the dashboard’s: no inline script, no framing, no sniffing, not stored', async () => {
    const response = await fetch(gateway.url, { headers: ASK_FOR_HTML });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('text/html; charset=utf-8');
    const policy = directives(response.headers.get('content-security-policy') ?? '');
    expect(policy.get('default-src')).toEqual(["'none'"]);
    expect(policy.get('script-src')).toEqual(["'self'"]);
    expect(policy.get('connect-src')).toEqual(["'self'"]);
    expect(policy.get('worker-src')).toEqual(["'self'"]);
    expect(policy.get('frame-ancestors')).toEqual(["'none'"]);
    expect(policy.get('base-uri')).toEqual(["'none'"]);
    // Monaco's style attributes are the one inline allowance; its <style> elements need the page's nonce.
    const unsafe = [...policy].filter(([, values]) => values.some((value) => value.includes('unsafe')));
    expect(unsafe).toEqual([['style-src-attr', ["'unsafe-inline'"]]]);
    expect(response.headers.get('x-frame-options')).toBe('DENY');
    expect(response.headers.get('x-content-type-options')).toBe('nosniff');
    expect(response.headers.get('referrer-policy')).toBe('no-referrer');
    expect(response.headers.get('cache-control')).toBe('no-store');

    const html = await response.text();
    const nonce = /<script [^>]*nonce="([^"]+)"/.exec(html)?.[1];
    expect(policy.get('style-src')).toEqual(["'self'", `'nonce-${nonce}'`]);
    const scripts = [...html.matchAll(/<script\b[^>]*>/g)].map((match) => match[0]);
    expect(scripts.filter((tag) => !/\bsrc="\/graphiql\//.test(tag) && !/type="application\/json"/.test(tag))).toEqual([]);
    expect(html).not.toMatch(/\sstyle=|\son[a-z]+=/i);
    expect(html).not.toMatch(/(?:src|href)="(?!\/graphiql\/)/);

    const again = await fetch(gateway.url, { headers: ASK_FOR_HTML });
    expect(again.headers.get('content-security-policy')).not.toContain(`'nonce-${nonce}'`);
    await again.body?.cancel();
  });

  it('serves every file the page names from the gateway, cached for good under its version', async () => {
    const html = await (await fetch(gateway.url, { headers: ASK_FOR_HTML })).text();
    const config = JSON.parse(/<script type="application\/json" id="graphiql-config">(.*?)<\/script>/s.exec(html)?.[1] ?? '{}');
    const files = [...html.matchAll(/(?:src|href)="(\/graphiql\/[^"]+)"/g)].map((match) => match[1] as string);
    files.push(...(Object.values(config.workers) as string[]));
    expect(files.map((file) => file.replace(/\?v=.*/, '')).sort()).toEqual([
      '/graphiql/editor.worker.js',
      '/graphiql/favicon.ico',
      '/graphiql/graphiql.css',
      '/graphiql/graphiql.js',
      '/graphiql/graphql.worker.js',
      '/graphiql/json.worker.js',
      '/graphiql/start.js',
    ]);
    for (const file of files) {
      const response = await fetch(new URL(file, gateway.url));
      expect(response.status, file).toBe(200);
      expect(response.headers.get('cache-control'), file).toBe('public, max-age=31536000, immutable');
      expect(response.headers.get('x-content-type-options'), file).toBe('nosniff');
      const type = file.includes('.js') ? 'text/javascript' : file.includes('.css') ? 'text/css' : 'image/x-icon';
      expect(response.headers.get('content-type'), file).toContain(type);
      await response.arrayBuffer();
    }
    const start = await fetch(new URL('/graphiql/start.js', gateway.url));
    const etag = start.headers.get('etag') ?? '';
    await start.body?.cancel();
    expect((await fetch(new URL('/graphiql/start.js', gateway.url), { headers: { 'if-none-match': etag } })).status).toBe(304);
    expect((await fetch(new URL('/graphiql/nothing.js', gateway.url))).status).toBe(404);
    expect((await fetch(new URL('/graphiql/start.js', gateway.url), { method: 'POST' })).status).toBe(405);
  });
});

describe('GraphiQL in Chromium, with every other origin unreachable', { timeout: GRAPHIQL_TEST_MS }, () => {
  it('renders the editor, whose first tab says how to send the Authorization header', async () => {
    await page.goto(gateway.url);
    expect(offOrigin).toEqual([]);
    await page.waitForSelector('section[aria-label="Operation Editor"] .view-lines:has-text("Authorization")');
    const firstTab = await editorText('section[aria-label="Operation Editor"]');
    expect(firstTab).toContain('Open the Headers');
    expect(firstTab).toContain('{"Authorization": "Bearer <token>"}');
    expect(firstTab).toMatch(/query Viewer \{\s+viewer \{/);
    expect(await page.textContent('body')).not.toContain('Loading');
    expect(pageErrors).toEqual([]);
  });

  it('runs the first tab’s query with the token set in the Headers tab, and does not store the token', async () => {
    await page.click('button:has-text("Headers")');
    await page.click('section[aria-label="Headers"] .graphiql-editor:not(.hidden) .monaco-editor');
    await page.keyboard.insertText(JSON.stringify({ Authorization: `Bearer ${ADMIN_TOKEN}` }));
    await page.click('button[aria-label^="Execute query"]');
    await page.waitForSelector('section[aria-label="Result Window"] .view-lines:has-text("role")');
    const result = JSON.parse(await editorText('section[aria-label="Result Window"]'));
    expect(result.data.viewer).toMatchObject({ tenant: 'default', role: 'ADMIN' });
    const stored = await page.evaluate(() => JSON.stringify({ ...localStorage, ...sessionStorage }));
    expect(stored).not.toContain(ADMIN_TOKEN);
    expect(offOrigin).toEqual([]);
  });

  it('receives a change written over HTTP in a subscription started from GraphiQL', async () => {
    const { setEntry } = await gateway.ok(
      ADMIN_TOKEN,
      'mutation { setEntry(input: { namespace: "orders", key: "first", value: 1 }) { revision } }',
    );
    // Resuming after that write, the subscription gets the next one whether it is replayed or live.
    await typeOperation(`subscription { entryChanged(namespace: "orders", afterRevision: "${setEntry.revision}") { op key value } }`);
    const stream = page.waitForResponse((response) => response.request().headers().accept === 'text/event-stream');
    await page.click('button[aria-label^="Execute query"]');
    expect((await stream).status()).toBe(200);
    await gateway.ok(
      ADMIN_TOKEN,
      'mutation { setEntry(input: { namespace: "orders", key: "order-7", value: { note: "from-http" } }) { revision } }',
    );
    await page.waitForSelector('section[aria-label="Result Window"] .view-lines:has-text("from-http")');
    const event = JSON.parse(await editorText('section[aria-label="Result Window"]'));
    expect(event.data.entryChanged).toEqual({ op: 'SET', key: 'order-7', value: { note: 'from-http' } });
    expect(offOrigin).toEqual([]);
    expect(pageErrors).toEqual([]);
  });
});
