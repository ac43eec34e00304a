/**
 * `statehouse mcp`, the stdio bridge for hosts that only launch stdio servers: the SDK's own Client
 * over its StdioClientTransport runs `bin/statehouse.mjs mcp` as a host would, and reaches the
 * gateway's /mcp through it.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, type Gateway, startGateway } from './support/gateway.js';
import { anotherProcess, INITIALIZE, type McpClient, mcpUrl, structured, textOf, track } from './support/mcp.js';

const BIN = new URL('../bin/statehouse.mjs', import.meta.url).pathname;

let gw: Gateway;
const bridges: (McpClient & { stderr: () => string; closed: Promise<void> })[] = [];
const children = new Set<ChildProcess>();
const extraGateways: Gateway[] = [];

beforeAll(async () => {
  gw = await startGateway();
});
afterEach(async () => {
  await Promise.allSettled(bridges.splice(0).map((bridge) => bridge.close()));
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  children.clear();
});
afterAll(async () => {
  await Promise.allSettled(extraGateways.map((gateway) => gateway.close()));
  await gw?.close();
});

let counter = 0;
const unique = (label: string) => `${label}-${(++counter).toString(36)}-${randomBytes(3).toString('hex')}`;

/** The SDK's Client with the bridge as its stdio server; the token in the environment, as the README advises. */
async function launch(token: string, url = mcpUrl(gw).toString()) {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [BIN, 'mcp', '--url', url],
    env: { ...(process.env as Record<string, string>), STATEHOUSE_TOKEN: token },
    stderr: 'pipe',
  });
  let stderr = '';
  transport.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const client = new Client({ name: 'statehouse-stdio-test', version: '1.0.0' });
  const closed = new Promise<void>((resolve) => (client.onclose = resolve));
  await client.connect(transport);
  await client.listTools();
  const bridge = { ...track(client, transport), stderr: () => stderr, closed };
  bridges.push(bridge);
  return bridge;
}

/** Runs the bin directly: its exit code, stdout and stderr, after writing `input` (then closing stdin). */
function run(args: string[], env: Record<string, string>, input = ''): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, STATEHOUSE_TOKEN: '', ...env } });
  children.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  child.stdin.write(input);
  return new Promise((resolve) => child.once('close', (code) => resolve({ code, stdout, stderr })));
}

const SET =
  'mutation($ns: String!, $key: String!, $value: JSON!, $scope: String) { setEntry(input: { namespace: $ns, key: $key, value: $value, scope: $scope }) { version } }';

describe('statehouse mcp (stdio bridge)', () => {
  it('lists the tools, and lets an agent set, read, conflict and recover', async () => {
    const agent = await launch(await gw.registerAgent(unique('stdio')));
    const { tools } = await agent.client.listTools();
    expect(tools.map((tool) => tool.name)).toEqual(expect.arrayContaining(['get_entry', 'set_entry', 'commit', 'list_namespaces']));

    const key = unique('k');
    expect(structured(await agent.call('set_entry', { namespace: 'common', key, value: 'a', expectedVersion: 0 })).entry.version).toBe(1);
    await gw.ok(ADMIN_TOKEN, SET, { ns: 'common', key, value: 'b' });
    const conflict = await agent.call('set_entry', { namespace: 'common', key, value: 'c', expectedVersion: 1 });
    expect(textOf(conflict)).toMatch(/^VERSION_CONFLICT: .*current version 2/);
    const current = structured(await agent.call('get_entry', { namespace: 'common', key }));
    expect(current.entry).toMatchObject({ value: 'b', version: 2 });
    expect(structured(await agent.call('set_entry', { namespace: 'common', key, value: 'c', expectedVersion: 2 })).entry.version).toBe(3);
  });

  it("refuses a READER's write, and tells an agent without a grant nothing of a restricted namespace", async () => {
    const { token } = await gw.createToken(unique('reader'), 'READER');
    const reader = await launch(token);
    expect(textOf(await reader.call('set_entry', { namespace: 'common', key: 'x', value: 1 }))).toMatch(/^FORBIDDEN: /);

    const secret = unique('vault');
    await gw.createNamespace(secret, { openAccess: false });
    await gw.ok(ADMIN_TOKEN, SET, { ns: secret, key: 'plan', value: 'hidden' });
    const outsider = await launch(await gw.registerAgent(unique('outsider')));
    const answer = async (ns: string) => textOf(await outsider.call('get_entry', { namespace: ns, key: 'plan' })).replaceAll(ns, 'NS');
    expect(await answer(secret)).toBe(await answer(unique('missing')));
    const listed = await outsider.client.listResources();
    expect(JSON.stringify(listed)).not.toContain(secret);
  });

  it('passes on a notification of a change made through GraphQL on another gateway process', async () => {
    const writer = await anotherProcess(gw, extraGateways);
    const agent = await launch(await gw.registerAgent(unique('listener')));
    const key = unique('news');
    const uri = `statehouse://common/global/${key}`;
    await agent.client.subscribeResource({ uri });
    const updated = agent.nextUpdate(uri);
    await writer.ok(ADMIN_TOKEN, SET, { ns: 'common', key, value: 'fresh' });
    await updated;
    const { contents } = await agent.client.readResource({ uri });
    expect(JSON.parse((contents[0] as { text: string }).text)).toMatchObject({ value: 'fresh' });
  });

  it('ends when the token is revoked, saying why', async () => {
    const { id, token } = await gw.createToken(unique('revoked'), 'READER');
    const reader = await launch(token);
    expect(structured(await reader.call('list_namespaces')).role).toBe('READER');
    await gw.ok(ADMIN_TOKEN, 'mutation($id: ID!) { revokeToken(id: $id) }', { id });
    await reader.closed;
    expect(reader.stderr()).toMatch(/the gateway ended the session \(HTTP 40[14]/);
  });

  it('answers the host with the refusal of a bad token, and exits 1', async () => {
    const result = await run(
      ['mcp', '--url', mcpUrl(gw).toString()],
      { STATEHOUSE_TOKEN: 'sh_not-a-token-of-this-gateway' },
      `${JSON.stringify(INITIALIZE)}\n`,
    );
    expect(result.code).toBe(1);
    const answer = JSON.parse(result.stdout.trim().split('\n')[0] ?? '{}');
    expect(answer).toMatchObject({ jsonrpc: '2.0', id: 0, error: { message: expect.stringContaining('unknown or revoked') } });
    expect(result.stderr).toContain('HTTP 401');
  });

  it('takes the token from --token too, and the gateway base URL', async () => {
    const token = await gw.registerAgent(unique('flag'));
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: [BIN, 'mcp', '--url', new URL('/', gw.url).toString(), '--token', token],
      env: { ...(process.env as Record<string, string>), STATEHOUSE_TOKEN: '' },
    });
    const client = new Client({ name: 'flag', version: '1' });
    await client.connect(transport);
    bridges.push({ ...track(client, transport), stderr: () => '', closed: Promise.resolve() });
    expect(structured((await client.callTool({ name: 'list_namespaces', arguments: {} })) as never).role).toBe('AGENT');
  });

  it('refuses to start without a token, or with a bad URL or command', async () => {
    const noToken = await run(['mcp'], {});
    expect(noToken.code).toBe(2);
    expect(noToken.stderr).toContain('STATEHOUSE_TOKEN');
    const badUrl = await run(['mcp', '--url', 'not a url'], { STATEHOUSE_TOKEN: 'x' });
    expect(badUrl.code).toBe(2);
    expect(badUrl.stderr).toContain('Not a URL');
    const unknown = await run(['serve'], {});
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('Usage: statehouse mcp');
  });
});
