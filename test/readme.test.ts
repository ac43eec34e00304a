import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, type Gateway, startGateway } from './support/gateway.js';

/** The README as a new user follows it: its shell blocks run literally against a gateway on a random port. */
const root = new URL('..', import.meta.url).pathname;
const readme = readFileSync(join(root, 'README.md'), 'utf8');

/** The first ```sh block after `heading`. */
function shellBlock(heading: string): string {
  const section = readme.slice(readme.indexOf(heading));
  const block = /```sh\n([\s\S]*?)```/.exec(section)?.[1];
  if (!block) throw new Error(`no sh block after ${heading}`);
  return block;
}

function bash(script: string, env: Record<string, string>): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('bash', ['-c', script], { env: { ...process.env, ...env }, timeout: 60_000 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${error.message}\n${stdout}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

describe('README', () => {
  let gateway: Gateway;
  let port: string;

  beforeAll(async () => {
    gateway = await startGateway();
    port = new URL(gateway.url).port;
  });
  afterAll(() => gateway.close());

  it('links nothing outside the repository', () => {
    for (const file of ['README.md', 'bench/README.md']) {
      const text = readFileSync(join(root, file), 'utf8');
      for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
        expect(target, `${file} links ${target}`).not.toMatch(/^[a-z]+:/i);
        expect(existsSync(join(root, dirname(file), target ?? '')), `${file} links ${target}`).toBe(true);
      }
      const external = [...text.matchAll(/https?:\/\/[^\s)>`'"]+/g)]
        .map(([url]) => url)
        .filter((url) => !/^https?:\/\/(127\.0\.0\.1|localhost)\b/.test(url));
      expect(external, file).toEqual([]);
    }
  });

  it('walkthrough runs as written on any port: the producer writes, the consumer reads and its subscription prints both changes', async () => {
    const script = shellBlock('## Walkthrough').replace(/^ADMIN=.*$/m, `ADMIN=${ADMIN_TOKEN}`);
    // The subscription runs in the background until `kill %1`: wait until it has printed both changes.
    const out = join(mkdtempSync(join(tmpdir(), 'statehouse-readme-')), 'output');
    const waitForTwoEvents = `for _ in $(seq 300); do [ "$(grep -c '^data:' ${out})" -ge 2 ] && break; sleep 0.1; done; kill %1`;
    await bash(`exec > ${out}\nset -m\n${script.replace(/^kill %1$/m, waitForTwoEvents)}`, { PORT: port });
    const output = readFileSync(out, 'utf8');
    rmSync(dirname(out), { recursive: true });
    expect(output).toContain('"createNamespace":{"name":"numbers","openAccess":true}');
    expect(output).toMatch(/"entry":\{"value":43,"version":2,"updatedBy":"producer"\}/);
    const events = [...output.matchAll(/^data: (\{.*\})$/gm)].map(([, data]) => JSON.parse(data ?? '{}').data?.entryChanged);
    expect(events.map((change) => [change.op, change.value])).toEqual([
      ['SET', 42],
      ['SET', 43],
    ]);
  });

  it("a worker's day runs after the walkthrough with the same helper", async () => {
    // The walkthrough's first lines: URL, ADMIN and the gql() helper.
    const walkthrough = shellBlock('## Walkthrough');
    const helper = walkthrough.slice(0, walkthrough.indexOf('echo; }') + 'echo; }'.length).replace(/^ADMIN=.*$/m, `ADMIN=${ADMIN_TOKEN}`);
    const output = await bash(`${helper}\n${shellBlock("A worker's day")}`, { PORT: port });
    expect(output).not.toContain('"errors"');
    expect(output).toContain('"heartbeat":{"id":"importer-1","status":"BUSY","active":true}');
    expect(output).toMatch(/"metricSummary":\[\{"count":2,"avg":100,"p50":100/);
  });
});
