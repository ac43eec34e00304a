import { fileURLToPath } from 'node:url';
import type { PgliteDatabase } from 'drizzle-orm/pglite';
import { migrate as migratePglite } from 'drizzle-orm/pglite/migrator';
import { drizzle as drizzlePostgres } from 'drizzle-orm/postgres-js';
import { migrate as migratePostgres } from 'drizzle-orm/postgres-js/migrator';
import postgres from 'postgres';
import type { DatabaseHandle } from './client.js';
import type * as schema from './schema.js';

const migrationsFolder = fileURLToPath(new URL('../../drizzle', import.meta.url));

/** Any constant: the advisory lock that lets only one gateway process migrate at a time. */
export const MIGRATION_LOCK = 7_461_536_571;

/** Applies drizzle-kit's migrations; already-applied ones are skipped, so a second run is a no-op. */
export async function migrate(handle: DatabaseHandle): Promise<void> {
  if (handle.kind === 'pglite') {
    await migratePglite(handle.db as PgliteDatabase<typeof schema>, { migrationsFolder });
    return;
  }
  // One connection holds the lock and runs the migrations, so processes starting together wait in turn.
  const connection = postgres(handle.url ?? '', { max: 1, onnotice: () => {} });
  try {
    await connection`SELECT pg_advisory_lock(${MIGRATION_LOCK})`;
    await migratePostgres(drizzlePostgres(connection), { migrationsFolder });
  } finally {
    await connection.end();
  }
}
