#!/usr/bin/env node
// `statehouse mcp`: the stdio bridge to a gateway's MCP endpoint. The package runs from its TypeScript
// sources (as `npm start` does), so tsx loads them.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/transport/mcp/cli.ts');
// Exit at once: stdin, still open, would keep the process alive after the bridge ended.
process.exit(await main(process.argv.slice(2)));
