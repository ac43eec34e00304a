import { tmpdir } from 'node:os';
import { join } from 'node:path';
/**
 * The fleet dashboard at GET /dashboard (issue 8; API.md §1), driven in headless Chromium against a running
 * gateway: it signs in with a READER token and must show what that token may see, live, and nothing more.
 */
import { mkdirSync } from 'node:fs';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, type Gateway, startGateway } from './support/gateway.js';

const SET_ENTRY = 'mutation($input: SetEntryInput!) { setEntry(input: $input) { revision } }';
const HEARTBEAT = 'mutation($input: HeartbeatInput!) { heartbeat(input: $input) { status } }';
const RECORD_METRICS = 'mutation($metrics: [MetricInput!]!) { recordMetrics(metrics: $metrics) }';
const SECRET = 'vault-secret-Zq81xK';
// The README's screenshot; refreshed with UPDATE_SCREENSHOT=1 so that ordinary runs leave the checkout clean.
const SCREENSHOT = process.env.UPDATE_SCREENSHOT ? 'docs/dashboard.png' : join(tmpdir(), `statehouse-dashboard-${process.pid}.png`);

const NARROW_SCREENSHOT = join(tmpdir(), `statehouse-dashboard-420-${process.pid}.png`);

let gateway: Gateway;
let browser: Browser;
let page: Page;
let dashboardUrl: string;
let worker: string;
let planner: string;
let reader: string;
let orderRevision: string;
let vaultRevision: string;
/** A page of `context` (a browser profile of its own: its own sessionStorage), signed in with `token`. */
async function signIn(context: BrowserContext, token: string): Promise<Page> {
  const signedIn = await context.newPage();
  await signedIn.goto(dashboardUrl);
  await signedIn.fill('#token', token);
  await signedIn.click('#signin-form button[type=submit]');
  return signedIn;
}
/** Errors the page logged or threw (a CSP violation is one). */
const pageErrors: string[] = [];

const setEntry = (namespace: string, key: string, value: unknown) =>
  gateway.ok(ADMIN_TOKEN, SET_ENTRY, { input: { namespace, key, value } });
const heartbeat = (token: string, status: string, data?: unknown) => gateway.ok(token, HEARTBEAT, { input: { status, data } });
const chartPoints = () => page.$eval('#metric-chart', (chart) => Number((chart as HTMLElement).dataset.points));
const figure = (name: string) => page.textContent(`#metric-summary [data-figure="${name}"] dd`);
/**
 * The chart's plot area as drawn on its canvas: for each pixel column, the rows (from the top) where a
 * series is drawn: opaque pixels darker than the grid (the area fill is translucent, the canvas transparent).
 */
const chartPixels = () =>
  page.$eval('#metric-chart', (chart) => {
    const canvas = chart.querySelector('canvas');
    const over = chart.querySelector('.u-over');
    if (!canvas || !over) throw new Error('no chart');
    const scale = canvas.width / canvas.getBoundingClientRect().width;
    const left = Math.round((over.getBoundingClientRect().left - canvas.getBoundingClientRect().left) * scale);
    const top = Math.round((over.getBoundingClientRect().top - canvas.getBoundingClientRect().top) * scale);
    const width = Math.round(over.getBoundingClientRect().width * scale);
    const height = Math.round(over.getBoundingClientRect().height * scale);
    const pixels = canvas.getContext('2d')?.getImageData(left, top, width, height).data ?? new Uint8ClampedArray();
    const columns: number[][] = Array.from({ length: width }, () => []);
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const i = (y * width + x) * 4;
        if ((pixels[i + 3] ?? 0) > 100 && (pixels[i] ?? 255) < 200) columns[x]?.push(y);
      }
    }
    return { width, height, columns };
  });
/** The feed's rows, top to bottom, as "revision namespace/key". */
const feedRows = () =>
  page.$$eval('#feed li', (rows) =>
    rows.map(
      (row) => `${(row as HTMLElement).dataset.revision} ${(row as HTMLElement).dataset.namespace}/${(row as HTMLElement).dataset.key}`,
    ),
  );
/** Each change once, newest first. */
function expectNewestFirstOnce(rows: string[]) {
  expect(new Set(rows).size, rows.join('\n')).toBe(rows.length);
  const revisions = rows.map((row) => BigInt(row.split(' ')[0] ?? ''));
  expect(revisions, rows.join('\n')).toEqual([...revisions].sort((a, b) => (a < b ? 1 : a > b ? -1 : 0)));
}

beforeAll(async () => {
  // A sensitive namespace holds values only on a gateway with an encryption key.
  const options = { app: { encryptionKey: 'a1'.repeat(32) } };
  [gateway, browser] = await Promise.all([startGateway(options), chromium.launch({ executablePath: '/usr/bin/chromium' })]);
  dashboardUrl = new URL('/dashboard', gateway.url).toString();

  await gateway.createNamespace('orders');
  await gateway.createNamespace('vault', { sensitive: true });
  worker = await gateway.registerAgent('importer-1', ['orders'], { name: 'Importer', type: 'importer', capabilities: ['csv', 'retry'] });
  planner = await gateway.registerAgent('planner-1', [], { name: 'Planner', type: 'planner', capabilities: ['plan'] });
  await heartbeat(worker, 'IDLE', { queue: 0 });
  await gateway.ok(worker, RECORD_METRICS, {
    metrics: [80, 95, 120, 140].map((value) => ({ name: 'latency_ms', value, unit: 'ms' })),
  });
  await gateway.ok(worker, 'mutation { reportError(input: { type: "timeout", message: "request 4711 timed out after 30s" }) { id } }');
  await gateway.ok(
    worker,
    'mutation { addInsight(input: { type: "capacity", content: { hint: "add a worker" }, priority: HIGH }) { id } }',
  );
  ({
    setEntry: { revision: orderRevision },
  } = await setEntry('orders', 'order-1', { status: 'new', total: 42 }));
  ({
    setEntry: { revision: vaultRevision },
  } = await setEntry('vault', 'api-key', SECRET));
  ({ token: reader } = await gateway.createToken('wallboard', 'READER'));

  page = await browser.newPage({ viewport: { width: 1440, height: 1200 } });
  page.on('console', (message) => {
    if (message.type() === 'error') pageErrors.push(message.text());
  });
  page.on('pageerror', (error) => pageErrors.push(String(error)));
});

afterAll(async () => {
  await browser?.close();
  await gateway?.close();
});

describe('GET /dashboard', () => {
  it('serves the page under a strict Content-Security-Policy, without inline script', async () => {
    const response = await fetch(dashboardUrl);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('text/html; charset=utf-8');
    const csp = response.headers.get('content-security-policy') ?? '';
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).not.toContain('unsafe');
    expect(response.headers.get('x-content-type-options')).toBe('nosniff');
    const html = await response.text();
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/);
    expect(html).not.toMatch(/\sstyle=|\son[a-z]+=/i);
  });

  it('serves its assets with their content types, cached for good when the URL names their hash', async () => {
    const html = await (await fetch(dashboardUrl)).text();
    const assets = [...html.matchAll(/(?:src|href)="(\/dashboard\/[^"]+)"/g)].map((match) => match[1] as string);
    expect(assets.map((asset) => asset.replace(/\?v=.*/, '')).sort()).toEqual([
      '/dashboard/app.js',
      '/dashboard/icon.svg',
      '/dashboard/icon.svg',
      '/dashboard/style.css',
      '/dashboard/vendor/graphql-ws.min.js',
      '/dashboard/vendor/uPlot.iife.min.js',
      '/dashboard/vendor/uPlot.min.css',
    ]);
    for (const asset of assets) {
      const response = await fetch(new URL(asset, dashboardUrl));
      expect(response.status, asset).toBe(200);
      expect(response.headers.get('cache-control'), asset).toBe('public, max-age=31536000, immutable');
      const type = asset.includes('.js') ? 'text/javascript' : asset.includes('.css') ? 'text/css' : 'image/svg+xml';
      expect(response.headers.get('content-type'), asset).toContain(type);
    }
    const module = await fetch(new URL('/dashboard/api.js', dashboardUrl));
    expect(module.headers.get('cache-control')).toBe('no-cache');
    const etag = module.headers.get('etag') ?? '';
    expect((await fetch(new URL('/dashboard/api.js', dashboardUrl), { headers: { 'if-none-match': etag } })).status).toBe(304);
    expect((await fetch(new URL('/dashboard/nothing.js', dashboardUrl))).status).toBe(404);
    expect((await fetch(dashboardUrl, { method: 'POST' })).status).toBe(405);
  });
});

describe('the dashboard, signed in with a READER token', () => {
  it('shows the sign-in form once loaded, turns away a bad token, signs in and shows the two registered agents', async () => {
    await page.goto(dashboardUrl);
    // Nothing to wait for after the load event: no request stands between the page and its form.
    expect(await page.isVisible('#signin-form')).toBe(true);
    await page.fill('#token', 'not-a-token-at-all');
    await page.click('#signin-form button[type=submit]');
    await page.waitForSelector('#signin-error:not([hidden])');
    expect(await page.textContent('#signin-error')).toContain('not valid');

    await page.fill('#token', reader);
    await page.click('#signin-form button[type=submit]');
    await page.waitForSelector('tr[data-agent-id="importer-1"]');
    await page.waitForSelector('tr[data-agent-id="planner-1"]');
    expect(await page.locator('#agents tbody tr').count()).toBe(2);
    expect(await page.textContent('tr[data-agent-id="importer-1"]')).toContain('csv');
    await page.waitForSelector('#overview [data-tile="activeAgents"]');
    expect(await page.textContent('#who')).toContain('READER');
    // The feed opens with the changes made before sign-in, the newest on top.
    await page.waitForSelector('#feed li[data-key="order-1"]');
    expect(await feedRows()).toEqual([`${vaultRevision} vault/api-key`, `${orderRevision} orders/order-1`]);
    // The token is kept in this tab's sessionStorage, never in the URL.
    expect(page.url()).not.toContain(reader);
    expect(await page.evaluate(() => Object.values(sessionStorage))).toContain(reader);
    expect(await page.evaluate(() => Object.values(localStorage))).not.toContain(reader);
    await page.waitForSelector('#connection[data-state="live"]');
  });

  it('shows a heartbeat within 2 s, and filters agents by type and status', async () => {
    await heartbeat(planner, 'BUSY', { step: 1 });
    await page.waitForSelector('tr[data-agent-id="planner-1"][data-status="BUSY"]', { timeout: 2_000 });
    expect(await page.textContent('tr[data-agent-id="planner-1"] td.heartbeat')).toMatch(/^[0-2] s ago$/);

    await page.selectOption('#agent-type', 'importer');
    await page.waitForSelector('tr[data-agent-id="planner-1"]', { state: 'detached' });
    expect(await page.locator('#agents tbody tr').count()).toBe(1);
    await page.selectOption('#agent-type', '');
    await page.selectOption('#agent-status', 'ERROR');
    await page.waitForSelector('#agents [data-state="empty"]');
    await page.selectOption('#agent-status', '');
    await page.waitForSelector('tr[data-agent-id="planner-1"]');
  });

  it('moves the chart and its percentiles when a metric point is recorded', async () => {
    await page.waitForFunction(() => Number(document.querySelector<HTMLElement>('#metric-chart')?.dataset.points) > 0);
    expect(await page.inputValue('#metric-name')).toBe('latency_ms');
    expect(await figure('count')).toBe('4');
    const points = await chartPoints();
    const p99 = await figure('p99');
    // Two minutes back: a bucket of its own in the 5-minute window of 5-second buckets.
    await gateway.ok(worker, RECORD_METRICS, {
      metrics: [{ name: 'latency_ms', value: 900, unit: 'ms', at: new Date(Date.now() - 120_000).toISOString() }],
    });
    await page.waitForFunction((before) => Number(document.querySelector<HTMLElement>('#metric-chart')?.dataset.points) > before, points);
    expect(await figure('count')).toBe('5');
    expect(await figure('p99')).not.toBe(p99);
    expect(await page.locator('#metric-chart canvas').count()).toBeGreaterThan(0);
  });

  it('lists a metric first recorded while the page is open at once, from metricRecorded', async () => {
    await page.waitForSelector('#metric-name option[value="latency_ms"]', { state: 'attached' });
    // From now on the page's reads of metric names only know latency_ms: the new name can come from the subscription alone.
    await page.route('**/graphql', (route) =>
      route.request().postData()?.includes('query MetricNames')
        ? route.fulfill({ json: { data: { metricSummary: [{ name: 'latency_ms' }] } } })
        : route.fallback(),
    );
    try {
      // A point of the chosen metric moves the chart: the page's subscription is listening.
      const count = Number(await figure('count'));
      await gateway.ok(worker, RECORD_METRICS, { metrics: [{ name: 'latency_ms', value: 99, unit: 'ms' }] });
      await page.waitForFunction(
        (before) => Number(document.querySelector('#metric-summary [data-figure="count"] dd')?.textContent) > before,
        count,
      );

      const now = Date.now();
      await gateway.ok(worker, RECORD_METRICS, {
        metrics: [
          { name: 'queue_depth', value: 3, unit: 'jobs', at: new Date(now - 240_000).toISOString() },
          { name: 'queue_depth', value: 7, unit: 'jobs', at: new Date(now - 240_000).toISOString() },
          { name: 'queue_depth', value: 8, unit: 'jobs', at: new Date(now - 20_000).toISOString() },
        ],
      });
      await page.waitForSelector('#metric-name option[value="queue_depth"]', { state: 'attached' });
      expect(await page.$$eval('#metric-name option', (options) => options.map((option) => option.textContent))).toEqual([
        'latency_ms',
        'queue_depth',
      ]);
    } finally {
      await page.unroute('**/graphql');
    }
  });

  it('charts the last 5 min by default, with gaps where no point fell, the max line inside the plot and values in the legend', async () => {
    expect(await page.$$eval('#metric-window option', (options) => options.map((option) => option.textContent?.trim()))).toEqual([
      '5 min',
      '1 h',
      '24 h',
    ]);
    expect(await page.inputValue('#metric-window')).toBe('300');
    await page.selectOption('#metric-name', 'queue_depth');
    // Two buckets hold points: 4 min ago (avg 5, max 7) and 20 s ago (8).
    await page.waitForSelector('#metric-chart[data-points="2"]');
    await page.mouse.move(0, 0);
    /** The legend's values: time, avg, max. */
    const legend = () => page.$$eval('#metric-chart .u-legend .u-value', (cells) => cells.map((cell) => cell.textContent));
    // At rest the legend shows the latest bucket with points, never "--".
    await page.waitForFunction(() => document.querySelector('#metric-chart .u-legend')?.textContent?.includes('8 jobs'));
    expect((await legend()).slice(1)).toEqual(['8 jobs', '8 jobs']);

    const plot = await chartPixels();
    const columnsAt = (from: number, to: number) => plot.columns.slice(Math.round(from * plot.width), Math.round(to * plot.width));
    // Between 4 min and 20 s ago no point fell: no line crosses there.
    expect(columnsAt(0.3, 0.85).flat(), 'series pixels in the empty stretch').toEqual([]);
    // The isolated bucket's max (7, above its avg 5) is drawn, and the highest value keeps a margin below the top edge.
    expect(columnsAt(0.15, 0.25).flat().length).toBeGreaterThan(0);
    const top = Math.min(...plot.columns.flat());
    expect(top, 'the highest series pixel, in rows from the top of the plot').toBeGreaterThan(plot.height / 10);

    // Hovering the older bucket shows its figures.
    const over = await page.locator('#metric-chart .u-over').boundingBox();
    if (!over) throw new Error('the chart has no plot area');
    await page.mouse.move(over.x + over.width * 0.2, over.y + over.height / 2);
    await page.waitForFunction(() => document.querySelector('#metric-chart .u-legend')?.textContent?.includes('5 jobs'));
    expect((await legend()).slice(1)).toEqual(['5 jobs', '7 jobs']);
    await page.mouse.move(0, 0);
  });

  it('shows error patterns and insights, with no way for a READER to act on them', async () => {
    await page.waitForSelector('#errors tr[data-pattern-id]');
    expect(await page.textContent('#errors tbody')).toContain('timed out');
    await page.waitForSelector('#insights li[data-priority="HIGH"]');
    expect(await page.locator('#insights button').count()).toBe(0);
    // A second heartbeat, long after the socket came up: only agentChanged can bring it.
    await heartbeat(worker, 'ERROR', { queue: 9 });
    await page.waitForSelector('tr[data-agent-id="importer-1"][data-status="ERROR"]', { timeout: 2_000 });
  });

  it('shows a change in the feed after the latest ones, and after a reload the latest again, each once', async () => {
    const before = await feedRows();
    const { setEntry: one } = await setEntry('orders', 'order-2', { status: 'shipped', note: 'feed-marker-one' });
    await page.waitForSelector('#feed li[data-key="order-2"]');
    expect(await page.textContent('#feed li[data-key="order-2"]')).toContain('feed-marker-one');
    expect(await feedRows()).toEqual([`${one.revision} orders/order-2`, ...before]);

    // Away from the page, two changes happen; back on it (same tab, no new sign-in), both are there.
    await page.goto('about:blank');
    const { setEntry: away } = await setEntry('orders', 'order-3', { status: 'new', note: 'while-away' });
    const { setEntry: two } = await setEntry('orders', 'order-2', { status: 'delivered', note: 'feed-marker-two' });
    await page.goto(dashboardUrl);
    await page.waitForSelector('#feed li[data-key="order-3"]');
    expect(await feedRows()).toEqual([
      `${two.revision} orders/order-2`,
      `${away.revision} orders/order-3`,
      `${one.revision} orders/order-2`,
      ...before,
    ]);
    expect(await page.textContent('#feed')).toContain('feed-marker-two');
    // …and live again after the newest of them.
    const { setEntry: three } = await setEntry('orders', 'order-3', { status: 'shipped' });
    await page.waitForSelector(`#feed li[data-revision="${three.revision}"]`);
    expectNewestFirstOnce(await feedRows());
    expect((await feedRows())[0]).toBe(`${three.revision} orders/order-3`);

    await page.click('#namespace-list button[data-namespace="orders"]');
    await page.click('#entry-list tr[data-key="order-2"]');
    await page.waitForSelector('#entry-history li[data-version="2"]');
    expect(await page.textContent('#entry-history')).toContain('feed-marker-one');

    await page.waitForSelector('#agents tr[data-agent-id]');
    // For the screenshot, a working fleet's latency: a point every 5 s for the last 4 minutes.
    const series = Array.from({ length: 48 }, (_, i) => ({
      name: 'latency_ms',
      value: Math.round(110 + 35 * Math.sin(i / 4) + (i % 7) * 6),
      unit: 'ms',
      at: new Date(Date.now() - (i + 1) * 5_000).toISOString(),
    }));
    await gateway.ok(worker, RECORD_METRICS, { metrics: series });
    await page.waitForFunction(() => Number(document.querySelector<HTMLElement>('#metric-chart')?.dataset.points) > 40);
    mkdirSync('docs', { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    expect(pageErrors).toEqual([]);
  });

  it("never shows a sensitive namespace's value (in the feed, the entries or their history)", async () => {
    await setEntry('vault', 'api-key', `${SECRET}-2`);
    await page.waitForSelector('#feed li[data-namespace="vault"]');
    await page.click('#namespace-list button[data-namespace="vault"]');
    await page.click('#entry-list tr[data-key="api-key"]');
    await page.waitForSelector('#entry-history li[data-version="2"]');
    const html = await page.content();
    expect(html.includes(SECRET), `the page shows the sensitive value ${SECRET}`).toBe(false);
    expect(await page.textContent('#feed li[data-namespace="vault"]')).toContain('hidden');
    expect(await page.textContent('#entry-history li[data-version="1"]')).toContain('hidden');
  });
});

describe('the dashboard at 420 px wide', () => {
  it('keeps the header on screen, and gives every feed row one height, a long value cut short and whole in its title', async () => {
    const long = { note: 'a long value '.repeat(40) };
    await setEntry('orders', 'order-long', long);
    const context = await browser.newContext({ viewport: { width: 420, height: 900 } });
    try {
      const narrow = await signIn(context, reader);
      await narrow.waitForSelector('#feed li[data-key="order-long"]');
      await narrow.waitForSelector('#agents tr[data-agent-id]');

      const signOut = await narrow.locator('#sign-out').boundingBox();
      expect(signOut?.x).toBeGreaterThanOrEqual(0);
      expect((signOut?.x ?? Infinity) + (signOut?.width ?? 0)).toBeLessThanOrEqual(420);
      expect(await narrow.evaluate(() => document.documentElement.scrollWidth), 'the page scrolls sideways').toBe(420);

      const heights = await narrow.$$eval('#feed li', (rows) => rows.map((row) => row.getBoundingClientRect().height));
      expect(heights.length).toBeGreaterThan(3);
      expect(new Set(heights), `row heights ${heights}`).toEqual(new Set([heights[0]]));
      const value = await narrow.$eval('#feed li[data-key="order-long"] .feed-value', (cell) => ({
        cut: cell.scrollWidth > cell.clientWidth,
        ending: getComputedStyle(cell).textOverflow,
        title: cell.querySelector('[title]')?.getAttribute('title'),
      }));
      expect(value).toEqual({ cut: true, ending: 'ellipsis', title: JSON.stringify(long) });
      await narrow.screenshot({ path: NARROW_SCREENSHOT, fullPage: true });
    } finally {
      await context.close();
    }
  });
});

describe('the dashboard of a tenant whose agents go quiet', () => {
  it("shows an agent whose last heartbeat is older than the tenant's activeWindowSeconds as inactive, in the table and the tiles", async () => {
    const { createTenant } = await gateway.ok(ADMIN_TOKEN, 'mutation { createTenant(name: "quiet") { token } }');
    const admin: string = createTenant.token;
    await gateway.ok(admin, 'mutation { updateConfig(patch: { activeWindowSeconds: 5 }) }');
    const { registerAgent } = await gateway.ok(
      admin,
      'mutation { registerAgent(input: { id: "crawler-1", name: "Crawler", type: "crawler" }) { token } }',
    );
    const { createToken } = await gateway.ok(admin, 'mutation { createToken(input: { name: "wall", role: READER }) { token } }');
    const context = await browser.newContext();
    try {
      const quiet = await signIn(context, createToken.token);
      // Registered, never heard from: inactive from the start.
      const row = 'tr[data-agent-id="crawler-1"]';
      await quiet.waitForSelector(`${row}[data-status="INACTIVE"]`);
      expect(await quiet.textContent(`${row} td.status`)).toBe('INACTIVE');
      // BUSY while its heartbeat is fresh, then, with no other, inactive: its last status is only a note.
      await heartbeat(registerAgent.token, 'BUSY', { step: 1 });
      await quiet.waitForSelector(`${row}[data-status="BUSY"]`);
      await quiet.waitForSelector(`${row}[data-status="INACTIVE"]`);
      expect(await quiet.textContent(`${row} td.status`)).toBe('INACTIVE last BUSY');
      const byStatus = '#overview [data-tile="agentsByStatus"]';
      await quiet.waitForSelector(`${byStatus} [data-status="INACTIVE"]`);
      expect(await quiet.textContent(byStatus)).not.toContain('BUSY');
      expect(await quiet.textContent('#overview [data-tile="activeAgents"] .value')).toBe('0');
      await quiet.selectOption('#agent-status', 'BUSY');
      await quiet.waitForSelector('#agents [data-state="empty"]');
      await quiet.selectOption('#agent-status', 'INACTIVE');
      await quiet.waitForSelector(row);

      // A heartbeat brings it back.
      await quiet.selectOption('#agent-status', '');
      await heartbeat(registerAgent.token, 'IDLE');
      await quiet.waitForSelector(`${row}[data-status="IDLE"]`);
    } finally {
      await context.close();
    }
  });
});

describe('the dashboard, signed in with an ADMIN token', () => {
  it('marks an insight acted upon', async () => {
    const context = await browser.newContext();
    try {
      const admin = await signIn(context, ADMIN_TOKEN);
      await admin.click('#insights li[data-priority="HIGH"] button');
      await admin.waitForSelector('#insights li[data-priority="HIGH"]', { state: 'detached' });
      const { insights } = await gateway.ok(reader, '{ insights { type actedUpon } }');
      expect(insights).toEqual([{ type: 'capacity', actedUpon: true }]);
      await admin.check('#insight-acted');
      await admin.waitForSelector('#insights li.acted[data-priority="HIGH"]');
    } finally {
      await context.close();
    }
  });
});
