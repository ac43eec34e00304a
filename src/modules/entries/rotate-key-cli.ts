import { loadConfig } from '../../config.js';
import { openDatabase } from '../../db/client.js';
import { ValueCipher } from '../../domain/value-cipher.js';
import { createLogger } from '../../logger.js';
import { resealValues } from './entries.rekey.js';

/**
 * `npm run rotate-key`: with STATEHOUSE_ENCRYPTION_KEY set to the new key and
 * STATEHOUSE_ENCRYPTION_KEY_PREVIOUS to the old one(s), re-seals every sensitive value with the new key.
 */
const config = loadConfig();
const logger = createLogger(config.logLevel);
if (!config.encryptionKey) {
  process.stderr.write('Set STATEHOUSE_ENCRYPTION_KEY to the new key and STATEHOUSE_ENCRYPTION_KEY_PREVIOUS to the old one\n');
  process.exit(1);
}
const database = await openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir });
const cipher = new ValueCipher(config.encryptionKey, config.previousEncryptionKeys);
const count = await resealValues(database, cipher, (done) => logger.info({ done }, 'values re-sealed so far'));
await database.close();
logger.info({ count }, 'every sensitive value is sealed with the current key; STATEHOUSE_ENCRYPTION_KEY_PREVIOUS can be removed');
