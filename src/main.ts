import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { buildApp } from './app.js';
import { announceListening, isWorker, joinCluster, runPrimary, workerMetrics } from './cluster.js';
import { type Config, ConfigError, loadConfig } from './config.js';
import { type DatabaseHandle, openDatabase, workerPoolSize } from './db/client.js';
import { migrate } from './db/migrate.js';
import { EventBus } from './events/bus.js';
import { createLogger, type Logger } from './logger.js';
import { TokensService } from './modules/tokens/tokens.service.js';

async function main(): Promise<void> {
  const config = loadConfig();
  const logger = createLogger(config.logLevel);
  if (isWorker()) {
    // The gateway's pool is shared among its workers, so more workers do not mean more connections.
    return serve(
      config,
      logger.child({ worker: process.pid }),
      await openDatabase({ ...config, maxConnections: workerPoolSize(config.workers) }),
    );
  }

  const embedded = config.databaseUrl === undefined;
  const creating = embedded && !existsSync(join(config.dataDir, 'PG_VERSION'));
  logger.info(
    { database: embedded ? 'pglite' : 'postgres', dataDir: embedded ? config.dataDir : undefined },
    creating ? 'creating the embedded database (first start only; this takes a while)' : 'opening the database',
  );
  const database = await withProgress(
    logger,
    'still opening the database',
    openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir }),
  );
  logger.info('database opened; applying migrations');
  await withProgress(logger, 'still applying migrations', migrate(database));
  logger.info('migrations applied');

  const generated = await new TokensService(database, new EventBus(database.broadcast, logger)).ensureBootstrap(config.adminToken);
  if (generated) {
    // Shown once on purpose, outside the structured log: only its hash is stored.
    process.stdout.write(
      `\n  Statehouse bootstrap admin token (tenant "default"); it is shown only this once:\n\n    ${generated}\n\n` +
        `  Keep it safe, or set STATEHOUSE_ADMIN_TOKEN to choose your own.\n\n`,
    );
  }
  if (config.workers === 1) return serve(config, logger, database);
  // The workers open their own connections; this process only supervises them.
  await database.close();
  logger.info({ workers: config.workers }, `starting ${config.workers} worker processes`);
  runPrimary(config.workers, logger);
}

/** One gateway process: the app on the database, until SIGTERM or SIGINT stops it gracefully. */
async function serve(config: Config, logger: Logger, database: DatabaseHandle): Promise<void> {
  const app = await buildApp({
    database,
    logger,
    activeWindowSeconds: config.activeWindowSeconds,
    shutdownGraceMs: config.shutdownGraceMs,
    maintenance: { compactIntervalMs: config.compactIntervalMs },
    corsOrigins: config.corsOrigins,
    introspection: config.introspection,
    graphiql: config.graphiql,
    metrics: config.metrics && {
      operationNames: config.metricsOperationNames,
      cluster: isWorker() ? workerMetrics() : undefined,
    },
    encryptionKey: config.encryptionKey,
    previousEncryptionKeys: config.previousEncryptionKeys,
    cluster: isWorker() ? joinCluster(logger) : undefined,
  });
  const { url } = await app.start(config.port, config.host);
  if (isWorker()) {
    logger.info('worker listening');
    announceListening(url);
  } else {
    logger.info({ url }, `Statehouse is listening on ${url}`);
  }

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down: finishing in-flight requests');
    try {
      await app.stop();
      await database.close();
      logger.info('stopped');
      process.exit(0);
    } catch (error) {
      logger.error({ err: error }, 'unclean shutdown');
      process.exit(1);
    }
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}

/** Long start-up steps say they are still running, so a first start is never silent for long. */
async function withProgress<T>(logger: Logger, message: string, work: Promise<T>): Promise<T> {
  const startedAt = Date.now();
  const timer = setInterval(
    () => logger.info({ elapsedSeconds: Math.round((Date.now() - startedAt) / 1000) }, message),
    PROGRESS_INTERVAL_MS,
  );
  try {
    return await work;
  } finally {
    clearInterval(timer);
  }
}

const PROGRESS_INTERVAL_MS = 3000;

main().catch((error: unknown) => {
  if (error instanceof ConfigError) {
    process.stderr.write(`Configuration error: ${error.message}\n`);
  } else {
    process.stderr.write(`Statehouse failed to start: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  }
  process.exit(1);
});
