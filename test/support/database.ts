import { randomBytes } from 'node:crypto';
import postgres from 'postgres';
import { type DatabaseHandle, openDatabase } from '../../src/db/client.js';
import { migrate } from '../../src/db/migrate.js';

/**
 * A fresh, migrated database for one test file: a new database on the PostgreSQL server of
 * TEST_DATABASE_URL (dropped again by `drop`), or an in-memory PGlite when it is unset.
 */
export interface TestDatabase {
  handle: DatabaseHandle;
  /** The URL of the created database (PostgreSQL only), for a second gateway process. */
  url: string | undefined;
  /** Another connection to the same database (PostgreSQL only). */
  open(): Promise<DatabaseHandle>;
  drop(): Promise<void>;
}

export const backend = process.env.TEST_DATABASE_URL ? 'postgres' : 'pglite';

export async function createTestDatabase(): Promise<TestDatabase> {
  const serverUrl = process.env.TEST_DATABASE_URL;
  if (!serverUrl) {
    const handle = await openDatabase({ databaseUrl: undefined, dataDir: 'memory://' });
    await migrate(handle);
    return {
      handle,
      url: undefined,
      open: () => Promise.reject(new Error('PGlite has one process only')),
      drop: () => handle.close(),
    };
  }
  const name = `statehouse_test_${randomBytes(6).toString('hex')}`;
  const admin = postgres(serverUrl, { max: 1, onnotice: () => {} });
  await admin.unsafe(`CREATE DATABASE ${name}`);
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  const handle = await openDatabase({ databaseUrl: url.toString(), dataDir: '' });
  await migrate(handle);
  const extra: DatabaseHandle[] = [];
  return {
    handle,
    url: url.toString(),
    open: async () => {
      const another = await openDatabase({ databaseUrl: url.toString(), dataDir: '' });
      extra.push(another);
      return another;
    },
    drop: async () => {
      await Promise.allSettled([handle.close(), ...extra.map((h) => h.close())]);
      await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await admin.end();
    },
  };
}
