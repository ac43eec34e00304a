/**
 * statehouse/client as a package: its typed operations are current, it imports nothing of the server,
 * and the packed tarball works in an empty project — plain JavaScript and TypeScript — as a user's would.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { promisify } from 'node:util';
import { generate } from '@graphql-codegen/cli';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import codegenConfig from '../codegen.js';
import { backend } from './support/database.js';
import { type Gateway, startGateway } from './support/gateway.js';

const execFileAsync = promisify(execFile);

/** Runs a command; a failure carries its output. */
async function run(command: string, args: string[], options: Parameters<typeof execFileAsync>[2] & { cwd: string }) {
  try {
    return await execFileAsync(command, args, { maxBuffer: 16 << 20, ...options, encoding: 'utf8' });
  } catch (error) {
    const { stdout, stderr } = error as { stdout?: string; stderr?: string };
    throw new Error(`${command} ${args.join(' ')} failed:\n${stdout ?? ''}\n${stderr ?? ''}`, { cause: error });
  }
}
const root = resolve(new URL('..', import.meta.url).pathname);
const clientDir = join(root, 'src/client');
const langgraphDir = join(root, 'src/langgraph');
/** What each part may import from outside itself: the socket protocol and a types-only package; LangGraph's store base. */
const ALLOWED_PACKAGES = new Set(['graphql-ws', '@graphql-typed-document-node/core']);
const ALLOWED_IN_LANGGRAPH = new Set(['@langchain/langgraph-checkpoint']);

/** Imports of the .ts files under `dir` that leave `inside` and are not allowed packages. */
function foreignImports(dir: string, inside: string[], allowed: Set<string>): string[] {
  const offending: string[] = [];
  for (const file of sourceFiles(dir)) {
    const text = readFileSync(file, 'utf8');
    for (const [, specifier = ''] of text.matchAll(/(?:^|\n)\s*(?:import|export)\b[^'"]*?from\s+['"]([^'"]+)['"]/g)) {
      const target = resolve(dirname(file), specifier);
      const within = specifier.startsWith('.') && inside.some((folder) => !relative(folder, target).startsWith('..'));
      if (!within && !allowed.has(specifier)) offending.push(`${relative(root, file)}: ${specifier}`);
    }
  }
  return offending;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? sourceFiles(join(dir, entry.name)) : entry.name.endsWith('.ts') ? [join(dir, entry.name)] : [],
  );
}

describe('statehouse/client sources', () => {
  it('src/client/generated/graphql.ts is what `npm run generate:client` writes from the schema and the documents', async () => {
    const [output] = await generate({ ...codegenConfig, cwd: root }, false);
    expect(output?.filename).toBe('src/client/generated/graphql.ts');
    expect(readFileSync(join(root, 'src/client/generated/graphql.ts'), 'utf8')).toBe(output?.content);
  }, 60_000);

  it('imports nothing of the server and no node: module', () => {
    expect(foreignImports(clientDir, [clientDir], ALLOWED_PACKAGES)).toEqual([]);
    // statehouse/langgraph: the client, and LangGraph's store base.
    expect(foreignImports(langgraphDir, [langgraphDir, clientDir], new Set([...ALLOWED_PACKAGES, ...ALLOWED_IN_LANGGRAPH]))).toEqual([]);
  });
});

describe(`statehouse/client packed and installed (${backend})`, () => {
  let gw: Gateway;
  let project: string;

  beforeAll(async () => {
    gw = await startGateway();
    project = mkdtempSync(join(tmpdir(), 'statehouse-client-user-'));
  });

  afterAll(async () => {
    await gw?.close();
    if (project) rmSync(project, { recursive: true, force: true });
  });

  it('installs from `npm pack` into an empty project, where a plain .mjs script connects, writes, reads and watches', async () => {
    // `npm pack` builds dist/client first (prepack).
    const { stdout } = await run('npm', ['pack', '--json', '--pack-destination', project], { cwd: root });
    const [packed] = JSON.parse(stdout) as { filename: string; files: { path: string }[] }[];
    const files = packed?.files.map((file) => file.path) ?? [];
    expect(files).toEqual(
      expect.arrayContaining([
        'dist/client/index.js',
        'dist/client/index.d.ts',
        'dist/langgraph/index.js',
        'dist/langgraph/index.d.ts',
        'package.json',
      ]),
    );
    expect(files.filter((path) => path.startsWith('test/'))).toEqual([]);

    writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'agent', private: true, type: 'module' }));
    await run(
      'npm',
      ['install', '--no-audit', '--no-fund', '--prefer-offline', '--ignore-scripts', join(project, packed?.filename ?? '')],
      { cwd: project },
    );

    await gw.createNamespace('numbers');
    const token = await gw.registerAgent('script', ['numbers']);
    writeFileSync(
      join(project, 'agent.mjs'),
      `import { connect, VersionConflictError } from 'statehouse/client';

const client = connect({ url: process.env.STATEHOUSE_URL, token: process.env.STATEHOUSE_TOKEN });
const numbers = client.namespace('numbers');
const changes = numbers.watch();
await changes.ready;
const written = await numbers.set('n', 42);
const read = await numbers.get('n');
const { value: change } = await changes.next();
let conflict;
try {
  await numbers.set('n', 0, { expectedVersion: 0 });
} catch (error) {
  conflict = { typed: error instanceof VersionConflictError, currentVersion: error.currentVersion };
}
await client.close();
console.log(JSON.stringify({ written, read, change, conflict }));
`,
    );
    // Node.js 22 has a global WebSocket; 20 has it behind a flag.
    const flags = Number(process.versions.node.split('.')[0]) < 22 ? ['--experimental-websocket'] : [];
    const result = await run(process.execPath, [...flags, 'agent.mjs'], {
      cwd: project,
      env: { ...process.env, STATEHOUSE_URL: gw.url, STATEHOUSE_TOKEN: token, NODE_NO_WARNINGS: '1' },
      timeout: 30_000,
    });
    const { written, read, change, conflict } = JSON.parse(result.stdout);
    expect(written).toMatchObject({ key: 'n', value: 42, version: 1, updatedBy: 'script' });
    expect(read).toMatchObject({ key: 'n', value: 42, version: 1 });
    expect(change).toMatchObject({ op: 'SET', key: 'n', value: 42, version: 1, revision: written.revision, actor: 'script' });
    expect(conflict).toEqual({ typed: true, currentVersion: 1 });
    // What the script wrote is in the gateway.
    const { entry } = await gw.ok(token, '{ entry(namespace: "numbers", key: "n") { value updatedBy } }');
    expect(entry).toEqual({ value: 42, updatedBy: 'script' });

    // The README's example runs as written, as that agent.
    const readme = readFileSync(join(root, 'README.md'), 'utf8');
    const example = /```js\n([\s\S]*?)```/.exec(readme.slice(readme.indexOf('## Client')))?.[1] ?? '';
    writeFileSync(join(project, 'readme-example.mjs'), example);
    const printed = await run(process.execPath, [...flags, 'readme-example.mjs'], {
      cwd: project,
      env: { ...process.env, STATEHOUSE_URL: gw.url, STATEHOUSE_TOKEN: token, NODE_NO_WARNINGS: '1' },
      timeout: 30_000,
    });
    expect(printed.stdout).toBe('SET n 43\n');
    const after = await gw.ok(
      token,
      `{ n: entry(namespace: "numbers", key: "n") { value } total: entry(namespace: "numbers", key: "total") { value }
         lock: entry(namespace: "common", key: "lock:nightly-report") { value } agent(id: "script") { status }
         metricSummary(name: "latency_ms") { count } }`,
    );
    expect(after).toEqual({
      n: { value: 43 },
      total: { value: 42 },
      lock: null,
      agent: { status: 'STOPPED' },
      metricSummary: [{ count: 1 }],
    });

    // statehouse/langgraph with LangGraph's store package beside it, as a LangGraph user installs it.
    await run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', '--ignore-scripts', '@langchain/langgraph-checkpoint@1'], {
      cwd: project,
    });
    await gw.createNamespace('memory');
    const memoryToken = await gw.registerAgent('memory-user', ['memory']);
    writeFileSync(
      join(project, 'store.mjs'),
      `import { BaseStore } from '@langchain/langgraph-checkpoint';
import { connect } from 'statehouse/client';
import { StatehouseStore } from 'statehouse/langgraph';

const client = connect({ url: process.env.STATEHOUSE_URL, token: process.env.STATEHOUSE_TOKEN });
const store = new StatehouseStore({ client, namespace: 'memory' });
await store.put(['users', 'u1'], 'prefs', { theme: 'dark' });
const item = await store.get(['users', 'u1'], 'prefs');
const found = await store.search(['users']);
await client.close();
console.log(JSON.stringify({ isBaseStore: store instanceof BaseStore, value: item.value, found: found.map((i) => i.namespace) }));
`,
    );
    const stored = await run(process.execPath, [...flags, 'store.mjs'], {
      cwd: project,
      env: { ...process.env, STATEHOUSE_URL: gw.url, STATEHOUSE_TOKEN: memoryToken, NODE_NO_WARNINGS: '1' },
      timeout: 30_000,
    });
    expect(JSON.parse(stored.stdout)).toEqual({ isBaseStore: true, value: { theme: 'dark' }, found: [['users', 'u1']] });

    // Its type declarations resolve through the package's exports, for a TypeScript user.
    writeFileSync(
      join(project, 'check.ts'),
      `import { connect, type Entry, VersionConflictError } from 'statehouse/client';
const client = connect({ url: 'http://127.0.0.1:4000/graphql', token: 'sh_x' });
const entry: Entry<number> | null = await client.namespace<number>('numbers').get('n');
const version: number | undefined = entry?.version;
// @ts-expect-error a value must be a number in this namespace
await client.namespace<number>('numbers').set('n', 'text');
export const checked = [version, VersionConflictError];
// statehouse/langgraph is a BaseStore for LangGraph's types too.
import type { BaseStore } from '@langchain/langgraph-checkpoint';
import { StatehouseStore } from 'statehouse/langgraph';
export const store: BaseStore = new StatehouseStore({ client, namespace: 'memory' });
`,
    );
    writeFileSync(
      join(project, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          target: 'ES2022',
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          lib: ['ES2022', 'DOM', 'ESNext.Disposable'],
          types: [],
          strict: true,
          noEmit: true,
        },
        files: ['check.ts'],
      }),
    );
    await run(join(root, 'node_modules/.bin/tsc'), ['-p', project], { cwd: project });
  }, 240_000);
});
