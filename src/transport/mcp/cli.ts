import { parseArgs } from 'node:util';
import { bridge } from './stdio-bridge.js';

const USAGE = `Usage: statehouse mcp [--url URL] [--token TOKEN]

Bridges an MCP host that launches stdio servers to a Statehouse gateway's /mcp endpoint.
  --url    the gateway's MCP endpoint (env STATEHOUSE_URL; default http://127.0.0.1:4000/mcp)
  --token  the bearer token (env STATEHOUSE_TOKEN, preferred: arguments are visible to other users in ps)
`;

/** `statehouse <command>`: the exit code. */
export async function main(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: { url: { type: 'string' }, token: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    });
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n${USAGE}`);
    return 2;
  }
  const { positionals, values } = parsed;
  if (values.help || positionals[0] !== 'mcp' || positionals.length > 1) {
    process.stderr.write(USAGE);
    return values.help ? 0 : 2;
  }
  const token = values.token ?? env.STATEHOUSE_TOKEN;
  if (!token) {
    process.stderr.write(`A token is required: set STATEHOUSE_TOKEN (or pass --token)\n${USAGE}`);
    return 2;
  }
  let url: URL;
  try {
    url = new URL(values.url ?? env.STATEHOUSE_URL ?? 'http://127.0.0.1:4000/mcp');
  } catch {
    process.stderr.write(`Not a URL: ${values.url ?? env.STATEHOUSE_URL}\n`);
    return 2;
  }
  // A gateway's base URL (or its /graphql) means its /mcp.
  if (url.pathname === '/' || url.pathname === '/graphql') url.pathname = '/mcp';
  const { reason } = await bridge({ url, token, log: (line) => process.stderr.write(`${line}\n`) });
  return reason === 'the host closed stdin' ? 0 : 1;
}
