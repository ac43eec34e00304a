/**
 * Several gateway processes on one port (STATEHOUSE_WORKERS, node:cluster). Each worker is a whole
 * gateway: the design for several processes on one database (caches invalidated across processes,
 * one change feed, the process registry) holds for workers as for separate machines. The primary
 * only starts them, restarts one that dies, sums their metrics and stops them gracefully.
 */
import cluster, { type Worker } from 'node:cluster';
import { AggregatorRegistry, type Registry } from 'prom-client';
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

export const isWorker = (): boolean => cluster.isWorker;

/**
 * Starts `count` workers and supervises them until SIGTERM or SIGINT, then stops them all (each
 * finishes its in-flight requests) and exits 0 when every one stopped cleanly.
 */
export function runPrimary(count: number, logger: Logger): void {
  const aggregator = new AggregatorRegistry();
  const crashes: number[] = [];
  let listening = 0;
  let stopping = false;

  cluster.on('message', (worker: Worker, message: GatherMessage | ListeningMessage | undefined) => {
    if (message?.type === GATHER_METRICS) {
      aggregator.clusterMetrics().then(
        (text) => worker.send({ type: GATHER_METRICS, id: message.id, text } satisfies GatherMessage),
        (error: unknown) =>
          worker.send({ type: GATHER_METRICS, id: message.id, error: error instanceof Error ? error.message : String(error) }),
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

/** A worker tells the primary where it listens. */
export function announceListening(url: string): void {
  process.send?.({ type: LISTENING, url } satisfies ListeningMessage);
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
        process.send?.({ type: GATHER_METRICS, id } satisfies GatherMessage);
      }),
  };
}
