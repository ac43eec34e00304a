/**
 * Workload 14: setEntry through statehouse/client — `agents` clients, each with its own token's socket
 * (the client's default transport), each writing distinct keys one after another as an agent's loop
 * does. Beside workload 1 (the same mutation over HTTP from autocannon) it shows what the client's path
 * costs or saves: one long-lived socket per agent instead of a request each, and the client's own work.
 * The bare server speaks graphql-ws too, so the client runs against it unchanged.
 */
import { performance } from 'node:perf_hooks';
import WebSocket from 'ws';
import { connect, type StatehouseClient } from '../src/client/index.js';
import { BenchFailure, type Measurement, Samples } from './measure.js';
import { NAMESPACE } from './sql.js';

/** Agents of workload 14, each with its own client and socket. */
export const CLIENT_AGENTS = 64;

export interface ClientTarget {
  url: string;
  /** The agent token (the bare server takes any). */
  token: string;
  /** Reads one entry of namespace bench back, as the other workloads do (the bare server has no `entry(atRevision:)`). */
  read(key: string): Promise<{ value: unknown; version: number } | null>;
}

export async function clientSetEntry(
  target: ClientTarget,
  options: { agents: number; seconds: number; tag: string },
): Promise<Measurement> {
  const clients: StatehouseClient[] = Array.from({ length: options.agents }, () =>
    // No retries: a failed write is a failed run here, not something to wait out.
    connect({ url: target.url, token: target.token, webSocket: WebSocket, retry: { attempts: 0 }, onError: () => {} }),
  );
  const samples = new Samples();
  const written: { key: string; i: number }[] = [];
  try {
    // Every socket open and acknowledged before the clock starts.
    await Promise.all(clients.map((client, a) => client.namespace(NAMESPACE).set(`cw-${options.tag}-${a}`, { warm: true })));
    const started = performance.now();
    const deadline = started + options.seconds * 1000;
    await Promise.all(
      clients.map(async (client, a) => {
        const numbers = client.namespace<{ i: number; by: string }>(NAMESPACE);
        for (let i = 0; performance.now() < deadline; i++) {
          const key = `c-${options.tag}-${a}-${i}`;
          const sent = performance.now();
          const entry = await numbers.set(key, { i, by: 'bench' });
          samples.add(performance.now() - sent);
          if (entry.key !== key || entry.version !== 1 || !/^\d+$/.test(entry.revision)) {
            throw new BenchFailure(`setEntry of ${key} through the client answered ${JSON.stringify(entry).slice(0, 200)}`);
          }
          if (written.length < 10_000) written.push({ key, i });
        }
      }),
    );
    const seconds = (performance.now() - started) / 1000;
    // A sample of the answered writes, read back: they hold what was written.
    for (let n = 0; n < Math.min(20, written.length); n++) {
      const { key, i } = written[Math.floor(Math.random() * written.length)] as (typeof written)[number];
      const stored = await target.read(key);
      if (stored?.version !== 1 || (stored.value as { i?: unknown }).i !== i) {
        throw new BenchFailure(`${key} reads back as ${JSON.stringify(stored)} after an answered setEntry through the client`);
      }
    }
    const { p50, p99 } = samples.summary();
    return { value: samples.length / seconds, unit: 'ops/s', p50, p99, count: samples.length, seconds, extra: { agents: options.agents } };
  } finally {
    await Promise.allSettled(clients.map((client) => client.close()));
  }
}
