import { DEFAULT_ACTIVE_WINDOW_SECONDS } from './domain/values.js';
/** The one place that reads process.env: a typed, validated configuration. */
import { availableParallelism } from 'node:os';

export interface Config {
  port: number;
  host: string;
  /** `postgres://` URL; undefined runs the embedded PGlite in `dataDir`. */
  databaseUrl: string | undefined;
  dataDir: string;
  adminToken: string | undefined;
  encryptionKey: string | undefined;
  /** Keys that sealed older values, accepted for opening them during a key rotation. */
  previousEncryptionKeys: string[];
  activeWindowSeconds: number;
  logLevel: string;
  /** How long SIGTERM waits for in-flight requests before closing sockets anyway. */
  shutdownGraceMs: number;
  /** Gateway processes on one port (node:cluster): the available cores on PostgreSQL; 1 on the embedded database, which one process owns. */
  workers: number;
  /** How often history beyond a namespace's historyLimit is removed (reads honour the limit at once). */
  compactIntervalMs: number;
  /** Browser origins allowed to call the API (CORS); empty: none, the default. */
  corsOrigins: string[];
  /** Schema introspection; STATEHOUSE_INTROSPECTION=false turns it off. */
  introspection: boolean;
  /** GraphiQL in browsers; STATEHOUSE_GRAPHIQL=false turns it off. */
  graphiql: boolean;
  /** Prometheus metrics at GET /metrics; STATEHOUSE_METRICS=false turns them off. */
  metrics: boolean;
  /** Operation names as a metrics label (client-chosen, so off by default); STATEHOUSE_METRICS_OPERATION_NAMES. */
  metricsOperationNames: boolean;
}

export class ConfigError extends Error {}

function integer(env: NodeJS.ProcessEnv, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(`${name} must be an integer from ${min} to ${max}, got "${raw}"`);
  }
  return value;
}

function flag(env: NodeJS.ProcessEnv, name: string, fallback: boolean): boolean {
  const raw = env[name]?.trim().toLowerCase();
  if (raw === undefined || raw === '') return fallback;
  if (raw === 'true' || raw === '1') return true;
  if (raw === 'false' || raw === '0') return false;
  throw new ConfigError(`${name} must be true or false, got "${env[name]}"`);
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const databaseUrl = env.DATABASE_URL || undefined;
  if (databaseUrl && !/^postgres(ql)?:\/\//.test(databaseUrl)) {
    throw new ConfigError('DATABASE_URL must be a postgres:// URL');
  }
  const encryptionKey = env.STATEHOUSE_ENCRYPTION_KEY || undefined;
  if (encryptionKey && !/^[0-9a-fA-F]{64}$/.test(encryptionKey)) {
    throw new ConfigError('STATEHOUSE_ENCRYPTION_KEY must be 32 bytes written as 64 hex characters');
  }
  const previousEncryptionKeys = (env.STATEHOUSE_ENCRYPTION_KEY_PREVIOUS ?? '')
    .split(',')
    .map((key) => key.trim())
    .filter(Boolean);
  if (previousEncryptionKeys.some((key) => !/^[0-9a-fA-F]{64}$/.test(key))) {
    throw new ConfigError('STATEHOUSE_ENCRYPTION_KEY_PREVIOUS must be keys of 64 hex characters, separated by commas');
  }
  if (previousEncryptionKeys.length > 0 && !encryptionKey) {
    throw new ConfigError('STATEHOUSE_ENCRYPTION_KEY_PREVIOUS needs STATEHOUSE_ENCRYPTION_KEY (the new key)');
  }
  const adminToken = env.STATEHOUSE_ADMIN_TOKEN || undefined;
  if (adminToken !== undefined && adminToken.length < 16) {
    throw new ConfigError('STATEHOUSE_ADMIN_TOKEN must be at least 16 characters');
  }
  // Every core by default on PostgreSQL: workers share MCP sessions and rate limits (see cluster.ts).
  const workers = integer(env, 'STATEHOUSE_WORKERS', databaseUrl ? availableParallelism() : 1, 1, Math.max(64, availableParallelism()));
  if (!databaseUrl && workers > 1) {
    throw new ConfigError('STATEHOUSE_WORKERS must be 1 on the embedded database (one process owns it); set DATABASE_URL for more');
  }
  return {
    port: integer(env, 'PORT', 4000, 0, 65535),
    workers,
    host: env.HOST || '127.0.0.1',
    databaseUrl,
    dataDir: env.STATEHOUSE_DATA_DIR || './.statehouse/data',
    adminToken,
    encryptionKey,
    previousEncryptionKeys,
    activeWindowSeconds: integer(env, 'STATEHOUSE_ACTIVE_WINDOW_SECONDS', DEFAULT_ACTIVE_WINDOW_SECONDS, 1, 31_536_000),
    logLevel: env.LOG_LEVEL || 'info',
    shutdownGraceMs: integer(env, 'STATEHOUSE_SHUTDOWN_GRACE_MS', 10_000, 0, 600_000),
    compactIntervalMs: integer(env, 'STATEHOUSE_COMPACT_INTERVAL_MS', 30_000, 100, 86_400_000),
    corsOrigins: (env.STATEHOUSE_CORS_ORIGINS ?? '')
      .split(',')
      .map((origin) => origin.trim())
      .filter(Boolean),
    introspection: flag(env, 'STATEHOUSE_INTROSPECTION', true),
    graphiql: flag(env, 'STATEHOUSE_GRAPHIQL', true),
    metrics: flag(env, 'STATEHOUSE_METRICS', true),
    metricsOperationNames: flag(env, 'STATEHOUSE_METRICS_OPERATION_NAMES', false),
  };
}
