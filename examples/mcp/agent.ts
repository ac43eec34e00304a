/**
 * An agent that uses Statehouse through MCP, with the official SDK's client: what any MCP host does
 * for its model. Run it against a gateway with an agent's token:
 *
 *   STATEHOUSE_TOKEN=sh_… npx tsx examples/mcp/agent.ts [http://127.0.0.1:4000/mcp]
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { type CallToolResult, ResourceUpdatedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';

const url = new URL(process.argv[2] ?? process.env.STATEHOUSE_URL ?? 'http://127.0.0.1:4000/mcp');
const token = process.env.STATEHOUSE_TOKEN;
if (!token) throw new Error('Set STATEHOUSE_TOKEN to an agent token');

const client = new Client({ name: 'example-agent', version: '1.0.0' });
await client.connect(new StreamableHTTPClientTransport(url, { requestInit: { headers: { authorization: `Bearer ${token}` } } }));

const { tools } = await client.listTools();
console.log(`tools: ${tools.map((tool) => tool.name).join(', ')}`);

/** A tool call's text, as a model would read it. */
const call = async (name: string, args: Record<string, unknown>) => {
  const result = (await client.callTool({ name, arguments: args })) as CallToolResult;
  const text = result.content[0]?.type === 'text' ? result.content[0].text.split('\n')[0] : '';
  console.log(`${name} → ${result.isError ? 'error: ' : ''}${text}`);
  return result;
};

await call('list_namespaces', {});

// Hear of changes to the entry, as a host subscribed to a resource does.
const uri = 'statehouse://common/global/example-plan';
let told!: () => void;
const updated = new Promise<void>((resolve) => (told = resolve));
client.setNotificationHandler(ResourceUpdatedNotificationSchema, ({ params }) => {
  console.log(`updated: ${params.uri}`);
  told();
});
await client.subscribeResource({ uri });

// Compare-and-set: read, write with the version read; a stale version is refused, then retried.
const read = await call('get_entry', { namespace: 'common', key: 'example-plan' });
const version = (read.structuredContent as { entry: { version: number } | null }).entry?.version ?? 0;
await call('set_entry', { namespace: 'common', key: 'example-plan', value: { step: 'draft' }, expectedVersion: version });
await call('set_entry', { namespace: 'common', key: 'example-plan', value: { step: 'stale' }, expectedVersion: version });
await call('set_entry', { namespace: 'common', key: 'example-plan', value: { step: 'final' }, expectedVersion: version + 1 });
await updated;

const { contents } = await client.readResource({ uri });
console.log(`resource: ${(contents[0] as { text: string }).text}`);
await client.close();
