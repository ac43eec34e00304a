import { loadConfig } from '../config.js';
import { openDatabase } from './client.js';
import { migrate } from './migrate.js';

/** `npm run migrate`: apply pending migrations to DATABASE_URL (or the embedded database) and exit. */
const config = loadConfig();
const database = await openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir });
await migrate(database);
await database.close();
process.stdout.write(`migrations applied (${database.kind})\n`);
