/**
 * Several gateway processes on one port (STATEHOUSE_WORKERS, node:cluster). Each worker is a whole
 * gateway: the design for several processes on one database (caches invalidated across processes,
 * one change feed, the process registry) holds for workers as for separate machines. The primary
 * starts them, restarts one that dies, sums their metrics and stops them gracefully; it also tells
 * each worker where its siblings take forwarded MCP requests, and owns the port's rate-limit buckets.
 */
import cluster, { type Worker } from 'node:cluster';
import { randomBytes } from 'node:crypto';
import { AggregatorRegistry, type Registry } from 'prom-client';
import { type DrawLease, RateLimiter } from './guards/rate-limiter.js';
import type { Logger } from './logger.js';

/** A worker asks the primary for every worker's metrics; the primary answers with the sum. */
const GATHER_METRICS = 'statehouse:gather-metrics';
/** A worker tells the primary it listens. */
const LISTENING = 'statehouse:listening';
/** How long a worker waits for the summed metrics (prom-client's own limit is 5 s). */
const GATHER_TIMEOUT_MS = 6_000;
/** More crashes than this within CRASH_WINDOW_MS stop the gateway instead of restarting forever. */
const MAX_CRASHES = 5;
const CRASH_WINDOW_MS = 60_000;
const RESTART_DELAY_MS = 1_000;

interface GatherMessage {
  type: typeof GATHER_METRICS;
  id: number;
  text?: string;
  error?: string;
}

interface ListeningMessage {
  type: typeof LISTENING;
  url: string;
}

/** A worker tells the primary the private port where it takes its sessions' forwarded MCP requests. */
const PRIVATE_PORT = 'statehouse:private-port';
/** The primary tells every worker the live workers' private ports and the port's shared secret. */
const SIBLINGS = 'statehouse:siblings';
/** A worker draws a lease of a token's operations from the primary's bucket. */
const RATE_LEASE = 'statehouse:rate-lease';
/** A worker waits this long for a lease, then lets the operation through (the primary is busy or gone). */
const LEASE_TIMEOUT_MS = 2_000;

interface PrivatePortMessage {
  type: typeof PRIVATE_PORT;
  port: number;
}

interface SiblingsMessage {
  type: typeof SIBLINGS;
  secret: string;
  /** [cluster worker id, private port] of every worker that announced one and is alive. */
  ports: [number, number][];
}

interface RateLeaseMessage {
  type: typeof RATE_LEASE;
  id: number;
  token?: string;
  perSecond?: number;
  most?: number;
  granted?: number;
  waitMs?: number;
}

type WorkerMessage = GatherMessage | ListeningMessage | PrivatePortMessage | RateLeaseMessage;

export const isWorker = (): boolean => cluster.isWorker;

/**
 * Sends over an IPC channel that may be closing: a process that exits (stopping, or killed) must not
 * crash its peer with EPIPE. A message lost that way needs no answer, or its asker times out.
 */
function post(to: Worker | NodeJS.Process, message: WorkerMessage | SiblingsMessage): void {
  const dropped = () => {};
  if (to === process) process.send?.(message, undefined, undefined, dropped);
  else (to as Worker).send(message, dropped);
}

/**
 * Starts `count` workers and supervises them until SIGTERM or SIGINT, then stops them all (each
 * finishes its in-flight requests) and exits 0 when every one stopped cleanly.
 */
export function runPrimary(count: number, logger: Logger): void {
  const aggregator = new AggregatorRegistry();
  const crashes: number[] = [];
  let listening = 0;
  let stopping = false;
  // Sent with every forwarded request: a worker's private port answers nothing without it.
  const secret = randomBytes(32).toString('base64url');
  const privatePorts = new Map<number, number>();
  const rates = new RateLimiter();
  const tellSiblings = () => {
    const message: SiblingsMessage = { type: SIBLINGS, secret, ports: [...privatePorts] };
    for (const worker of Object.values(cluster.workers ?? {})) if (worker?.isConnected()) post(worker, message);
  };

  // A message to a worker that is exiting fails with EPIPE: that worker needs no answer any more
  // (prom-client's metrics requests send without a callback, so the error arrives here).
  cluster.on('fork', (worker) =>
    worker.on('error', (error) => logger.debug({ err: error, pid: worker.process.pid }, 'a message to an exiting worker was dropped')),
  );
  cluster.on('message', (worker: Worker, message: WorkerMessage | undefined) => {
    if (message?.type === RATE_LEASE) {
      const { granted, waitMs } = rates.draw(message.token ?? '', message.perSecond ?? 1, message.most ?? 1);
      post(worker, { type: RATE_LEASE, id: message.id, granted, waitMs });
    } else if (message?.type === PRIVATE_PORT) {
      privatePorts.set(worker.id, message.port);
      tellSiblings();
    } else if (message?.type === GATHER_METRICS) {
      aggregator.clusterMetrics().then(
        (text) => post(worker, { type: GATHER_METRICS, id: message.id, text }),
        (error: unknown) =>
          post(worker, { type: GATHER_METRICS, id: message.id, error: error instanceof Error ? error.message : String(error) }),
      );
    } else if (message?.type === LISTENING && ++listening === count) {
      logger.info({ url: message.url, workers: count }, `Statehouse is listening on ${message.url} (${count} worker processes)`);
    }
  });

  const stopAll = (exitCode: number) => {
    stopping = true;
    const workers = Object.values(cluster.workers ?? {}).filter((worker) => worker !== undefined);
    if (workers.length === 0) process.exit(exitCode);
    let clean = exitCode === 0;
    let left = workers.length;
    for (const worker of workers) {
      worker.once('exit', (code) => {
        if (code !== 0) clean = false;
        if (--left === 0) {
          logger.info('stopped');
          process.exit(clean ? 0 : 1);
        }
      });
      worker.process.kill('SIGTERM');
    }
  };

  cluster.on('exit', (worker, code, signal) => {
    if (stopping) return;
    // Its sessions are gone with it: their ids now name no live worker (404, as an unknown session).
    if (privatePorts.delete(worker.id)) tellSiblings();
    const now = Date.now();
    crashes.push(now);
    while (crashes.length > 0 && (crashes[0] ?? now) < now - CRASH_WINDOW_MS) crashes.shift();
    if (crashes.length > MAX_CRASHES) {
      logger.fatal({ crashes: crashes.length, windowSeconds: CRASH_WINDOW_MS / 1000 }, 'worker processes keep exiting; stopping');
      stopAll(1);
      return;
    }
    logger.error({ pid: worker.process.pid, code, signal }, 'a worker process exited; starting another');
    setTimeout(() => {
      if (!stopping) cluster.fork();
    }, RESTART_DELAY_MS);
  });

  const shutdown = (signal: string) => {
    if (stopping) return;
    logger.info({ signal }, 'shutting down: every worker finishes its in-flight requests');
    stopAll(0);
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  for (let i = 0; i < count; i++) cluster.fork();
}

/** What a worker knows of its port's other workers (see `joinCluster`). */
export interface ClusterMember {
  /** This worker's id among the port's workers (node:cluster's; a restarted worker gets a new one). */
  id: number;
  /** The private port of a live sibling (never this worker's own), or undefined. */
  siblingPort(id: number): number | undefined;
  /** The port's shared secret, once the primary has told it. */
  secret(): string | undefined;
  /** Tells the siblings, through the primary, where this worker takes forwarded requests. */
  announcePrivatePort(port: number): void;
  /** Draws a lease from the primary's rate-limit buckets. */
  drawLease: DrawLease;
}

/** A worker's link to the primary and, through it, to its siblings. */
export function joinCluster(logger: Logger): ClusterMember {
  const id = cluster.worker?.id ?? 0;
  let ports = new Map<number, number>();
  let secret: string | undefined;
  let nextLease = 0;
  const waiting = new Map<number, (message: RateLeaseMessage) => void>();
  process.on('message', (message: SiblingsMessage | RateLeaseMessage | undefined) => {
    if (message?.type === SIBLINGS) {
      secret = message.secret;
      ports = new Map(message.ports.filter(([worker]) => worker !== id));
    } else if (message?.type === RATE_LEASE) waiting.get(message.id)?.(message);
  });
  return {
    id,
    siblingPort: (worker) => ports.get(worker),
    secret: () => secret,
    announcePrivatePort: (port) => post(process, { type: PRIVATE_PORT, port }),
    drawLease: (token, perSecond, most) =>
      new Promise((resolve) => {
        const lease = nextLease++;
        const timer = setTimeout(() => {
          waiting.delete(lease);
          logger.warn('the primary process did not answer a rate-limit lease in time; the operation is let through');
          resolve({ granted: 1, waitMs: 0 });
        }, LEASE_TIMEOUT_MS);
        waiting.set(lease, (message) => {
          clearTimeout(timer);
          waiting.delete(lease);
          resolve({ granted: message.granted ?? 0, waitMs: message.waitMs ?? 0 });
        });
        logger.debug({ perSecond, most }, 'drawing a rate-limit lease from the primary');
        post(process, { type: RATE_LEASE, id: lease, token, perSecond, most });
      }),
  };
}

/** A worker tells the primary where it listens. */
export function announceListening(url: string): void {
  post(process, { type: LISTENING, url });
}

/**
 * A worker's side of the metrics: its registries are read by the primary for every scrape, and its
 * /metrics answers with the sum over all workers (whichever worker the scrape reached).
 */
export function workerMetrics(): { share(registries: Registry[]): void; gather(): Promise<string> } {
  let nextId = 0;
  const waiting = new Map<number, (message: GatherMessage) => void>();
  process.on('message', (message: GatherMessage | undefined) => {
    if (message?.type === GATHER_METRICS) waiting.get(message.id)?.(message);
  });
  return {
    share(registries) {
      // Constructing one installs prom-client's answer to the primary's requests in this worker.
      new AggregatorRegistry();
      AggregatorRegistry.setRegistries(registries);
    },
    gather: () =>
      new Promise((resolve, reject) => {
        const id = nextId++;
        const timer = setTimeout(() => {
          waiting.delete(id);
          reject(new Error('the primary process did not answer with the metrics in time'));
        }, GATHER_TIMEOUT_MS);
        waiting.set(id, (message) => {
          clearTimeout(timer);
          waiting.delete(id);
          if (message.text !== undefined) resolve(message.text);
          else reject(new Error(message.error ?? 'no metrics'));
        });
        post(process, { type: GATHER_METRICS, id });
      }),
  };
}
