import { buildApp } from './app.js';
import { ConfigError, loadConfig } from './config.js';
import { openDatabase } from './db/client.js';
import { migrate } from './db/migrate.js';
import { EventBus } from './events/bus.js';
import { createLogger } from './logger.js';
import { TokensService } from './modules/tokens/tokens.service.js';

async function main(): Promise<void> {
  const config = loadConfig();
  const logger = createLogger(config.logLevel);
  const database = await openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir });
  logger.info({ database: database.kind, dataDir: database.kind === 'pglite' ? config.dataDir : undefined }, 'database opened');
  await migrate(database);
  logger.info('migrations applied');

  const generated = await new TokensService(database, new EventBus(database.broadcast, logger)).ensureBootstrap(config.adminToken);
  if (generated) {
    // Shown once on purpose, outside the structured log: only its hash is stored.
    process.stdout.write(
      `\n  Statehouse bootstrap admin token (tenant "default"); it is shown only this once:\n\n    ${generated}\n\n` +
        `  Keep it safe, or set STATEHOUSE_ADMIN_TOKEN to choose your own.\n\n`,
    );
  }

  const app = await buildApp({
    database,
    logger,
    activeWindowSeconds: config.activeWindowSeconds,
    shutdownGraceMs: config.shutdownGraceMs,
    corsOrigins: config.corsOrigins,
    introspection: config.introspection,
    graphiql: config.graphiql,
    metrics: config.metrics && { operationNames: config.metricsOperationNames },
    encryptionKey: config.encryptionKey,
    previousEncryptionKeys: config.previousEncryptionKeys,
  });
  const { url } = await app.start(config.port, config.host);
  logger.info({ url }, `Statehouse is listening on ${url}`);

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

main().catch((error: unknown) => {
  if (error instanceof ConfigError) {
    process.stderr.write(`Configuration error: ${error.message}\n`);
  } else {
    process.stderr.write(`Statehouse failed to start: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  }
  process.exit(1);
});
