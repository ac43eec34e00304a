/**
 * The subscription workloads over real graphql-ws sockets: 8 fan-out, 9 resume, 10 memory. Every
 * delivery is checked: a subscriber that misses a change, gets one twice or errs fails the run.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { type Client, createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { BenchFailure, type Measurement, Samples } from './measure.js';
import type { ServerProcess } from './processes.js';
import { type BenchDb, changesPage, headRevision, type LogPosition, NAMESPACE } from './sql.js';

/** A server under test as the subscription workloads see it. */
export interface SubscriptionTarget {
  name: string;
  server: ServerProcess;
  /** graphql-ws connectionParams (the agent's token for Statehouse). */
  connectionParams: Record<string, unknown>;
  /** Writes one entry of namespace bench through the server (setEntry); throws on any error. */
  write(key: string, value: unknown): Promise<void>;
  /** Statehouse promises revision order per subscriber; the bare server's pubsub does not. */
  ordered: boolean;
}

const open = new Set<Client>();

/** Closes every socket still open (used by the bench's cleanup). */
export async function closeAllSockets(): Promise<void> {
  await Promise.allSettled([...open].map((client) => client.dispose()));
  open.clear();
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface Subscriber {
  client: Client;
  unsubscribe: () => void;
}

/**
 * `count` sockets, one subscription each, opened 100 at a time; resolves once every socket is
 * connected (acknowledged). `onNext(index, data)` gets each result's data; errors go to `onError`.
 */
async function subscribeMany(
  target: SubscriptionTarget,
  count: number,
  query: string,
  variables: Record<string, unknown>,
  onNext: (index: number, data: any) => void,
  onError: (problem: string) => void,
): Promise<Subscriber[]> {
  const subscribers: Subscriber[] = [];
  const openOne = (index: number) =>
    new Promise<void>((resolve, reject) => {
      const client = createClient({
        url: target.server.wsUrl,
        webSocketImpl: WebSocket,
        connectionParams: target.connectionParams,
        lazy: true,
        retryAttempts: 0,
        on: {
          connected: () => resolve(),
          closed: (event) =>
            reject(new BenchFailure(`${target.name}: socket ${index} closed before it connected (${describeClose(event)})`)),
        },
      });
      open.add(client);
      const unsubscribe = client.subscribe(
        { query, variables },
        {
          next: (result) => {
            if (result.errors?.length) onError(`${target.name}: subscriber ${index} got an error: ${JSON.stringify(result.errors[0])}`);
            else onNext(index, result.data);
          },
          error: (error) => onError(`${target.name}: subscriber ${index} failed: ${describeClose(error)}`),
          complete: () => {},
        },
      );
      subscribers.push({ client, unsubscribe });
    });
  for (let from = 0; from < count; from += 100) {
    await Promise.all(Array.from({ length: Math.min(100, count - from) }, (_, k) => openOne(from + k)));
  }
  return subscribers;
}

function describeClose(event: unknown): string {
  if (event && typeof event === 'object' && 'code' in event) return `close code ${(event as { code: unknown }).code}`;
  if (event instanceof Error) return event.message;
  if (Array.isArray(event)) return JSON.stringify(event[0]);
  return String(event);
}

async function closeAll(subscribers: Subscriber[]): Promise<void> {
  for (const { unsubscribe } of subscribers) unsubscribe();
  await Promise.allSettled(
    subscribers.map(async ({ client }) => {
      await client.dispose();
      open.delete(client);
    }),
  );
}

/**
 * Writes probe changes (keys `<prefix>probe`) every 200 ms until every subscriber has seen one: from
 * then on every subscription is live. Returns how many probes were written.
 */
async function probeUntilAllLive(
  target: SubscriptionTarget,
  prefix: string,
  live: () => number,
  count: number,
  failure: () => string | undefined,
) {
  let probes = 0;
  const deadline = performance.now() + 60_000;
  while (live() < count) {
    const problem = failure();
    if (problem) throw new BenchFailure(problem);
    if (performance.now() > deadline)
      throw new BenchFailure(`${target.name}: only ${live()} of ${count} subscriptions received a change within 60 s`);
    await target.write(`${prefix}probe`, { probe: probes });
    probes++;
    await sleep(200);
  }
  return probes;
}

export interface FanoutOptions {
  subscribers: number;
  /** Paced phase: changes per second the writer makes, for `seconds`. */
  rate: number;
  seconds: number;
  /** Burst phase: this many changes written at once. */
  burst: number;
  /** How long, after the last write of a phase, subscribers may take to receive everything. */
  drainSeconds: number;
}

export interface FanoutResult {
  /** Deliveries per second at the paced rate, and the delivery latency then. */
  paced: Measurement;
  /** Deliveries per second of a burst written at once: what the server can push. */
  burst: Measurement;
  probes: number;
}

function errorText(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = error.cause instanceof Error ? ` (${error.cause.message})` : '';
  return `${error.message}${cause}`;
}

/**
 * 8. Fan-out: `subscribers` sockets subscribed to namespace bench. First one writer makes `rate`
 * changes per second for `seconds` (delivery latency at a steady rate), then writes `burst` changes
 * at once (how many deliveries per second the server can push). Each value carries its send time;
 * latency is write sent → change received. Fails unless every subscriber gets every change, once.
 */
export async function fanout(target: SubscriptionTarget, options: FanoutOptions): Promise<FanoutResult> {
  const paced = Math.max(1, Math.round(options.rate * options.seconds));
  const total = paced + options.burst;
  const received = Array.from({ length: options.subscribers }, () => new Uint8Array(total));
  const lastPosition = new Array<[bigint, string] | undefined>(options.subscribers);
  const probed = new Uint8Array(options.subscribers);
  let probedCount = 0;
  /** Deliveries of the current phase, its latencies and the time of its last delivery. */
  let phase = { from: 0, to: paced, delivered: 0, last: 0, latencies: new Samples() };
  let failure: string | undefined;
  const fail = (problem: string) => {
    failure ??= problem;
  };

  const subscribers = await subscribeMany(
    target,
    options.subscribers,
    'subscription($namespace: String!) { entryChanged(namespace: $namespace) { revision key value } }',
    { namespace: NAMESPACE },
    (index, data) => {
      const now = performance.now();
      const change = data?.entryChanged as { revision: string; key: string; value: { seq?: number; t?: number } | null } | undefined;
      if (!change) return fail(`${target.name}: subscriber ${index} got ${JSON.stringify(data)}`);
      if (target.ordered) {
        // In log order: writes that arrive together share a revision and come in key order.
        const revision = BigInt(change.revision);
        const [lastRev, lastKey] = lastPosition[index] ?? [-1n, ''];
        if (revision < lastRev || (revision === lastRev && change.key <= lastKey)) {
          return fail(`${target.name}: subscriber ${index} got ${change.revision}/${change.key} after ${lastRev}/${lastKey}`);
        }
        lastPosition[index] = [revision, change.key];
      }
      if (change.key === 'fan-probe') {
        if (!probed[index]) {
          probed[index] = 1;
          probedCount++;
        }
        return;
      }
      const seq = change.value?.seq;
      const sent = change.value?.t;
      if (typeof seq !== 'number' || typeof sent !== 'number' || seq < phase.from || seq >= phase.to || change.key !== `fan-${seq}`) {
        return fail(`${target.name}: subscriber ${index} got an unexpected change ${JSON.stringify(change)}`);
      }
      const flags = received[index] as Uint8Array;
      if (flags[seq]) return fail(`${target.name}: subscriber ${index} got change ${seq} twice`);
      flags[seq] = 1;
      phase.delivered++;
      phase.last = now;
      phase.latencies.add(now - sent);
    },
    fail,
  );

  const write = (seq: number) =>
    target.write(`fan-${seq}`, { seq, t: performance.now() }).catch((error: unknown) => {
      fail(`${target.name}: fan-out write ${seq} failed: ${errorText(error)}`);
    });

  /** Waits until every subscriber has every change of the phase, then measures it. */
  const lag = monitorEventLoopDelay({ resolution: 10 });
  const finish = async (start: number, changes: number): Promise<Measurement> => {
    const expected = changes * options.subscribers;
    const deadline = performance.now() + options.drainSeconds * 1000;
    while (phase.delivered < expected && failure === undefined && performance.now() < deadline) await sleep(20);
    if (failure !== undefined) throw new BenchFailure(failure);
    if (phase.delivered < expected) {
      let short = 0;
      for (const flags of received) if (flags.subarray(phase.from, phase.to).some((flag) => flag === 0)) short++;
      throw new BenchFailure(
        `${target.name}: ${expected - phase.delivered} of ${expected} deliveries missing ${options.drainSeconds} s after the last write (${short} of ${options.subscribers} subscribers short)`,
      );
    }
    const seconds = (phase.last - start) / 1000;
    const { p50, p99, max } = phase.latencies.summary();
    return {
      value: phase.delivered / seconds,
      unit: 'deliveries/s',
      p50,
      p99,
      count: phase.delivered,
      seconds,
      extra: {
        changes,
        subscribers: options.subscribers,
        maxLatencyMs: max,
        lost: 0,
        // This process's own event-loop delay: when it is large, the bench was the bottleneck.
        benchLoopDelayP99Ms: lag.percentile(99) / 1e6,
      },
    };
  };

  try {
    const probes = await probeUntilAllLive(
      target,
      'fan-',
      () => probedCount,
      options.subscribers,
      () => failure,
    );

    // Paced: change `seq` is due at start + seq / rate; writes overlap when one takes longer.
    lag.enable();
    const interval = 1000 / options.rate;
    let start = performance.now();
    const writes: Promise<void>[] = [];
    for (let seq = 0; seq < paced && failure === undefined; seq++) {
      const wait = start + seq * interval - performance.now();
      if (wait > 1) await sleep(wait);
      writes.push(write(seq));
    }
    await Promise.all(writes);
    const writeSeconds = (performance.now() - start) / 1000;
    const pacedResult = await finish(start, paced);
    pacedResult.extra = { ...pacedResult.extra, rate: options.rate, writeRate: paced / writeSeconds };

    // Burst: every change at once.
    lag.reset();
    phase = { from: paced, to: total, delivered: 0, last: 0, latencies: new Samples() };
    start = performance.now();
    await Promise.all(Array.from({ length: options.burst }, (_, k) => write(paced + k)));
    const burstResult = await finish(start, options.burst);
    return { paced: pacedResult, burst: burstResult, probes };
  } finally {
    lag.disable();
    await closeAll(subscribers);
  }
}

/**
 * 9. Resume: one subscriber with afterRevision "0" on namespace bench, counted until it has all
 * `expected` changes, each once and in log order. Changes per second.
 */
export async function resume(target: SubscriptionTarget, expected: number, timeoutSeconds: number): Promise<Measurement> {
  let count = 0;
  let failure: string | undefined;
  let last: [bigint, string] = [-1n, ''];
  let done: () => void = () => {};
  const finished = new Promise<void>((resolve) => {
    done = resolve;
  });
  const start = performance.now();
  let end = start;
  const subscribers = await subscribeMany(
    target,
    1,
    'subscription($namespace: String!) { entryChanged(namespace: $namespace, afterRevision: "0") { revision op key version value } }',
    { namespace: NAMESPACE },
    (_index, data) => {
      const change = data?.entryChanged as { revision: string; key: string; version: number } | undefined;
      if (!change) failure ??= `${target.name}: resume got ${JSON.stringify(data)}`;
      else {
        const position: [bigint, string] = [BigInt(change.revision), change.key];
        if (position[0] < last[0] || (position[0] === last[0] && position[1] <= last[1])) {
          failure ??= `${target.name}: resume got ${change.revision}/${change.key} after ${last[0]}/${last[1]} (out of order or twice)`;
        }
        last = position;
        count++;
        if (count === expected) end = performance.now();
      }
      if (failure !== undefined || count >= expected) done();
    },
    (problem) => {
      failure ??= problem;
      done();
    },
  );
  try {
    const timer = setTimeout(done, timeoutSeconds * 1000);
    await finished;
    clearTimeout(timer);
    // Anything more than expected would be a duplicate: give it a moment to show up.
    if (failure === undefined) await sleep(200);
    if (failure !== undefined) throw new BenchFailure(failure);
    if (count !== expected)
      throw new BenchFailure(`${target.name}: resume delivered ${count} of ${expected} changes within ${timeoutSeconds} s`);
    const seconds = (end - start) / 1000;
    return { value: count / seconds, unit: 'changes/s', count, seconds };
  } finally {
    await closeAll(subscribers);
  }
}

/** 9, the limit: the replay's SQL pages (500 at a time) from this process. */
export async function resumeLimit(db: BenchDb, expected: number): Promise<Measurement> {
  const start = performance.now();
  const head = await headRevision(db);
  let after: LogPosition = { revision: '0' };
  let count = 0;
  let last: [bigint, string] = [-1n, ''];
  for (;;) {
    const page = await changesPage(db, after, head);
    for (const change of page) {
      const position: [bigint, string] = [BigInt(change.revision), change.key];
      if (position[0] < last[0] || (position[0] === last[0] && position[1] <= last[1])) {
        throw new BenchFailure(`limit: replay read ${change.revision}/${change.key} after ${last[0]}/${last[1]}`);
      }
      last = position;
      count++;
    }
    const final = page.at(-1);
    if (!final || page.length < 500) break;
    after = { revision: final.revision, namespace: final.namespace, scope: final.scope, key: final.key };
  }
  const seconds = (performance.now() - start) / 1000;
  if (count !== expected) throw new BenchFailure(`limit: replay read ${count} of ${expected} changes`);
  return { value: count / seconds, unit: 'changes/s', count, seconds };
}

/** RSS once it stops moving (two readings 250 ms apart within 512 KB), or after `maxMs`. */
async function settledRss(server: ServerProcess, maxMs: number): Promise<number> {
  let previous = server.rss();
  const deadline = performance.now() + maxMs;
  while (performance.now() < deadline) {
    await sleep(250);
    const current = server.rss();
    if (Math.abs(current - previous) < 512 * 1024) return current;
    previous = current;
  }
  return previous;
}

/**
 * 10. Memory: the server's RSS before and after opening `count` idle subscribed sockets (each with
 * one entryChanged subscription, all confirmed live by a probe change), per socket.
 */
export async function memory(target: SubscriptionTarget, count: number, settleMs: number): Promise<Measurement & { probes: number }> {
  const before = await settledRss(target.server, settleMs);
  const live = new Uint8Array(count);
  let liveCount = 0;
  let failure: string | undefined;
  const subscribers = await subscribeMany(
    target,
    count,
    'subscription($namespace: String!) { entryChanged(namespace: $namespace, keyPrefix: "idle-") { revision key } }',
    { namespace: NAMESPACE },
    (index) => {
      if (!live[index]) {
        live[index] = 1;
        liveCount++;
      }
    },
    (problem) => {
      failure ??= problem;
    },
  );
  try {
    const probes = await probeUntilAllLive(
      target,
      'idle-',
      () => liveCount,
      count,
      () => failure,
    );
    const after = await settledRss(target.server, settleMs);
    if (failure !== undefined) throw new BenchFailure(failure);
    return {
      value: (after - before) / count,
      unit: 'bytes/socket',
      count,
      probes,
      extra: { rssBeforeBytes: before, rssAfterBytes: after, sockets: count },
    };
  } finally {
    await closeAll(subscribers);
  }
}
