import type { FormattedExecutionResult as ExecutionResult } from 'graphql';
import { type Client, createClient } from 'graphql-ws';
import { pino } from 'pino';
import WebSocket from 'ws';
import { type App, type AppOptions, buildApp } from '../../src/app.js';
import type { DatabaseHandle } from '../../src/db/client.js';
import { EventBus } from '../../src/events/bus.js';
import { TokensService } from '../../src/modules/tokens/tokens.service.js';
import { createTestDatabase, type TestDatabase } from './database.js';
import { tracked } from './leftovers.js';

export const ADMIN_TOKEN = 'test-admin-token-0123456789';

export interface GraphQLResponse<T = Record<string, unknown>> {
  status: number;
  data?: T | null;
  errors?: { message: string; path?: string[]; extensions?: Record<string, unknown> }[];
}

export interface Gateway {
  app: App;
  db: TestDatabase;
  url: string;
  wsUrl: string;
  /** One GraphQL request over HTTP (in-process fetch); never throws on GraphQL errors. */
  gql<T = Record<string, any>>(token: string | null, query: string, variables?: Record<string, unknown>): Promise<GraphQLResponse<T>>;
  /** Like gql, but fails the test with the query and body when there are errors. */
  ok<T = Record<string, any>>(token: string | null, query: string, variables?: Record<string, unknown>): Promise<T>;
  /** A graphql-ws client on a real socket, closed with the gateway. */
  ws(token: string | null, options?: { connectionParams?: Record<string, unknown> }): Client;
  createNamespace(name: string, settings?: Record<string, unknown>): Promise<void>;
  /** Registers an agent and returns its token. */
  registerAgent(id: string, stateNamespaces?: string[], extra?: Record<string, unknown>): Promise<string>;
  createToken(name: string, role: 'ADMIN' | 'READER'): Promise<{ id: string; token: string }>;
  close(): Promise<void>;
}

const quietLogger = pino({ level: process.env.LOG_LEVEL ?? 'silent' });

/**
 * A gateway on a fresh database (or on `database`, to run a second process on the same one), on a free
 * port or on `port` (to stand in for a restarted gateway).
 */
export async function startGateway(
  options: { db?: TestDatabase; database?: DatabaseHandle; port?: number; app?: Partial<Omit<AppOptions, 'database' | 'logger'>> } = {},
): Promise<Gateway> {
  const db = options.db ?? (await createTestDatabase());
  const database = options.database ?? db.handle;
  await new TokensService(database, new EventBus(undefined, quietLogger)).ensureBootstrap(ADMIN_TOKEN);
  const app = await buildApp({ database, logger: quietLogger, shutdownGraceMs: 1_000, ...options.app });
  const { port } = await app.start(options.port ?? 0, '127.0.0.1');
  const url = `http://127.0.0.1:${port}/graphql`;
  const wsUrl = `ws://127.0.0.1:${port}/graphql`;
  const clients: Client[] = [];

  const gql: Gateway['gql'] = async (token, query, variables) => {
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (token !== null) headers.authorization = `Bearer ${token}`;
    const response = await app.fetch('http://localhost/graphql', { method: 'POST', headers, body: JSON.stringify({ query, variables }) });
    const body = (await response.json()) as GraphQLResponse<any>;
    return { ...body, status: response.status };
  };
  const ok: Gateway['ok'] = async (token, query, variables) => {
    const result = await gql(token, query, variables);
    if (result.errors?.length || !result.data) {
      throw new Error(`GraphQL errors for\n${query}\nvariables ${JSON.stringify(variables)}\n→ ${JSON.stringify(result, null, 2)}`);
    }
    return result.data as any;
  };

  const gateway: Gateway = {
    app,
    db,
    url,
    wsUrl,
    gql,
    ok,
    ws: (token, wsOptions = {}) => {
      const client = createClient({
        url: wsUrl,
        webSocketImpl: WebSocket,
        retryAttempts: 0,
        lazy: true,
        connectionParams: wsOptions.connectionParams ?? (token === null ? {} : { authorization: `Bearer ${token}` }),
      });
      clients.push(client);
      return client;
    },
    createNamespace: async (name, settings = {}) => {
      await ok(ADMIN_TOKEN, 'mutation($input: CreateNamespaceInput!) { createNamespace(input: $input) { name } }', {
        input: { name, ...settings },
      });
    },
    registerAgent: async (id, stateNamespaces = [], extra = {}) => {
      const data = await ok<{ registerAgent: { token: string } }>(
        ADMIN_TOKEN,
        'mutation($input: RegisterAgentInput!) { registerAgent(input: $input) { token } }',
        { input: { id, name: id, type: 'worker', stateNamespaces, ...extra } },
      );
      return data.registerAgent.token;
    },
    createToken: async (name, role) => {
      const data = await ok<{ createToken: { id: string; token: string } }>(
        ADMIN_TOKEN,
        'mutation($input: CreateTokenInput!) { createToken(input: $input) { id token } }',
        { input: { name, role } },
      );
      return data.createToken;
    },
    close: async () => {
      await Promise.allSettled(clients.map((client) => client.dispose()));
      await app.stop();
      if (!options.db) await db.drop();
    },
  };
  return tracked(gateway);
}

/** A subscription's results as they arrive, with waits that fail with what did arrive. */
export interface Subscription<T = any> {
  results: ExecutionResult<T>[];
  done: Promise<void>;
  error: unknown;
  /** Waits until `count` results have arrived (or the subscription ended). */
  waitFor(count: number, timeoutMs?: number): Promise<ExecutionResult<T>[]>;
  stop(): void;
}

export function subscribe<T = any>(client: Client, query: string, variables?: Record<string, unknown>): Subscription<T> {
  const results: ExecutionResult<T>[] = [];
  const waiters = new Set<() => void>();
  let stopFn: () => void = () => {};
  const subscription: Subscription<T> = {
    results,
    error: undefined,
    done: new Promise<void>((resolve) => {
      stopFn = client.subscribe<T>(
        { query, variables },
        {
          next: (result) => {
            results.push(result as ExecutionResult<T>);
            for (const waiter of waiters) waiter();
          },
          error: (error) => {
            subscription.error = error;
            resolve();
            for (const waiter of waiters) waiter();
          },
          complete: () => {
            resolve();
            for (const waiter of waiters) waiter();
          },
        },
      );
    }),
    waitFor: (count, timeoutMs = 10_000) =>
      new Promise((resolve, reject) => {
        let ended = false;
        void subscription.done.then(() => {
          ended = true;
        });
        const check = () => {
          if (results.length >= count || ended) {
            clearTimeout(timer);
            waiters.delete(check);
            resolve(results);
          }
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`waited for ${count} results, got ${results.length}: ${JSON.stringify(results)}`));
        }, timeoutMs);
        waiters.add(check);
        check();
      }),
    stop: () => stopFn(),
  };
  return subscription;
}

/**
 * Resolves once `sub` is attached, for feeds that replay nothing (a subscription is not acknowledged
 * by graphql-ws or SSE, and a fleet topic is joined only when the server first reads from it): sends
 * `probe('probe')` until one arrives, then `probe('fence')` and waits for that. The server delivers a
 * feed's events in the order they are published, so every probe has arrived before the fence; all of
 * them are dropped, and the test sees only what it sends afterwards.
 */
export async function attached<T>(
  sub: Pick<Subscription<T>, 'results'>,
  probe: (kind: 'probe' | 'fence') => Promise<unknown>,
  isFence: (result: ExecutionResult<T>) => boolean,
  timeoutMs = 10_000,
): Promise<void> {
  await eventually(
    async () => {
      await probe('probe');
      return sub.results.length > 0;
    },
    timeoutMs,
    'the subscription to attach',
  );
  await probe('fence');
  await eventually(() => sub.results.some(isFence), timeoutMs, 'the fence after the probes');
  sub.results.splice(0, sub.results.findIndex(isFence) + 1);
}

/** Resolves once `predicate` holds, polling; fails after `timeoutMs`. */
export async function eventually(predicate: () => boolean | Promise<boolean>, timeoutMs = 10_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
