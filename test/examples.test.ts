/**
 * The examples in examples/ run as their npm scripts say, against a started gateway, and leave in it what
 * they claim to: the shared numbers, the worker's heartbeats, metrics and errors, the graph's memory.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backend } from './support/database.js';
import { ADMIN_TOKEN, type Gateway, startGateway } from './support/gateway.js';

const execFileAsync = promisify(execFile);
const root = new URL('..', import.meta.url).pathname;
// Node.js 22 has a global WebSocket; 20 has it behind a flag.
const nodeOptions =
  Number(process.versions.node.split('.')[0]) < 22
    ? `${process.env.NODE_OPTIONS ?? ''} --experimental-websocket`.trim()
    : process.env.NODE_OPTIONS;

let gw: Gateway;

beforeAll(async () => {
  gw = await startGateway();
});

afterAll(async () => {
  await gw?.close();
});

/** `npm run <script>` against the gateway; fails with the script's output. */
async function example(script: string, env: Record<string, string> = {}): Promise<string[]> {
  try {
    const { stdout } = await execFileAsync('npm', ['run', '--silent', script], {
      cwd: root,
      env: {
        ...process.env,
        ...(nodeOptions ? { NODE_OPTIONS: nodeOptions } : {}),
        STATEHOUSE_URL: gw.url,
        STATEHOUSE_ADMIN_TOKEN: ADMIN_TOKEN,
        NODE_NO_WARNINGS: '1',
        ...env,
      },
      timeout: 60_000,
      encoding: 'utf8',
    });
    return stdout.trim().split('\n');
  } catch (error) {
    const { stdout, stderr } = error as { stdout?: string; stderr?: string };
    throw new Error(`npm run ${script} failed:\n${stdout ?? ''}\n${stderr ?? ''}`, { cause: error });
  }
}

describe(`examples (${backend})`, () => {
  it('example:shared-state — the producer writes numbers, the consumer watches and reads every one', async () => {
    const lines = await example('example:shared-state', { COUNT: '6' });
    const squares = [1, 4, 9, 16, 25, 36];
    expect(lines.filter((line) => line.startsWith('consumer saw'))).toEqual(
      squares.map((value, i) => `consumer saw number:${i + 1} = ${value} (read back ${value}, version 1, by producer)`),
    );
    expect(lines.at(-1)).toBe('consumer: 6 numbers listed, sum of changes 91, total 91');
    const { total, entries } = await gw.ok(
      ADMIN_TOKEN,
      '{ total: entry(namespace: "numbers", key: "total") { value updatedBy } entries(namespace: "numbers", prefix: "number:") { nodes { key value updatedBy } } }',
    );
    expect(total).toEqual({ value: 91, updatedBy: 'producer' });
    expect(entries.nodes).toHaveLength(6);
    expect(entries.nodes.every((node: { updatedBy: string }) => node.updatedBy === 'producer')).toBe(true);
  }, 120_000);

  it('example:worker — heartbeats while busy, metrics in batches, errors grouped, then STOPPED', async () => {
    const lines = await example('example:worker', { JOBS: '10' });
    expect(lines).toEqual([
      expect.stringMatching(/^job 5 failed: pattern .+ seen 1 times$/),
      expect.stringMatching(/^job 10 failed: pattern .+ seen 2 times$/),
      'worker-1 is STOPPED: 10 jobs measured, 2 timeouts in one pattern',
    ]);
    const fleet = await gw.ok(
      ADMIN_TOKEN,
      `{ agent(id: "worker-1") { status type }
         metricSummary(name: "job_ms", agentId: "worker-1") { count }
         errorPatterns(type: "timeout") { count agentIds }
         insights(type: "capacity") { sourceAgentId content }
         auditLog(actor: "worker-1", action: "recordMetrics") { outcome } }`,
    );
    expect(fleet.agent).toEqual({ status: 'STOPPED', type: 'worker' });
    expect(fleet.metricSummary).toEqual([{ count: 10 }]);
    expect(fleet.errorPatterns).toEqual([{ count: 2, agentIds: ['worker-1'] }]);
    expect(fleet.insights).toEqual([{ sourceAgentId: 'worker-1', content: { hint: 'every fifth job times out' } }]);
    // Batches of 5: fewer calls than points.
    expect(fleet.auditLog.length).toBeGreaterThanOrEqual(2);
    expect(fleet.auditLog.length).toBeLessThan(10);
  }, 120_000);

  it('example:langgraph — two graph nodes share memory through Statehouse, across runs', async () => {
    const expected = [
      'after "I prefer tea": 1 facts remembered: I prefer tea',
      'after "My cat is called Turing": 2 facts remembered: I prefer tea | My cat is called Turing',
      'after "I work on compilers": 3 facts remembered: I prefer tea | My cat is called Turing | I work on compilers',
      'namespaces: [["users","ada","facts"]]',
    ];
    expect(await example('example:langgraph')).toEqual(expected);
    const { entries } = await gw.ok(ADMIN_TOKEN, '{ entries(namespace: "memory") { nodes { key value updatedBy } } }');
    expect(entries.nodes).toEqual([
      { key: 'users/ada/facts/fact-000', value: { text: 'I prefer tea' }, updatedBy: 'assistant' },
      { key: 'users/ada/facts/fact-001', value: { text: 'My cat is called Turing' }, updatedBy: 'assistant' },
      { key: 'users/ada/facts/fact-002', value: { text: 'I work on compilers' }, updatedBy: 'assistant' },
    ]);
    // Run again: it starts its user afresh and prints the same.
    expect(await example('example:langgraph')).toEqual(expected);
  }, 180_000);
});
