import { sql } from 'drizzle-orm';
import { afterAll, describe, expect, it } from 'vitest';
import { ValueCipher } from '../src/domain/value-cipher.js';
import { resealValues } from '../src/modules/entries/entries.rekey.js';
import { backend, createTestDatabase } from './support/database.js';
import { ADMIN_TOKEN, startGateway } from './support/gateway.js';

const OLD_KEY = '0f'.repeat(32);
const NEW_KEY = 'e1'.repeat(32);
const SET = 'mutation($v: JSON!) { setEntry(input: { namespace: "vault", key: "api", value: $v }) { version } }';
const READ = '{ entry(namespace: "vault", key: "api") { value } entryHistory(namespace: "vault", key: "api") { version value } }';

describe(`key rotation (${backend})`, () => {
  const opened = createTestDatabase();
  afterAll(async () => (await opened).drop());

  it('re-seals every sensitive value with the new key, after which the old key is not needed', async () => {
    const db = await opened;
    const before = await startGateway({ db, app: { encryptionKey: OLD_KEY } });
    await before.createNamespace('vault', { sensitive: true });
    await before.ok(ADMIN_TOKEN, SET, { v: { secret: 'first' } });
    await before.ok(ADMIN_TOKEN, SET, { v: { secret: 'second' } });
    await before.app.stop();

    // Without the key that sealed them, a start is refused outright rather than failing at the first read.
    await expect(startGateway({ db, app: {} })).rejects.toThrow(/STATEHOUSE_ENCRYPTION_KEY/);

    const progress: number[] = [];
    const count = await resealValues(db.handle, new ValueCipher(NEW_KEY, [OLD_KEY]), (done) => progress.push(done));
    expect(count).toBe(3); // the live entry and its two versions in the log
    expect(progress.at(-1)).toBe(3);
    expect(await resealValues(db.handle, new ValueCipher(NEW_KEY, [OLD_KEY]), () => {})).toBe(0);

    const stored = await db.handle.rows<{ value: string }>(
      sql`SELECT value::text AS value FROM entries WHERE namespace = 'vault' UNION ALL SELECT value::text FROM changes WHERE namespace = 'vault'`,
    );
    const prefix = new ValueCipher(NEW_KEY).currentPrefix;
    for (const row of stored) {
      expect(row.value).toContain(prefix);
      expect(row.value).not.toContain('second');
    }

    const after = await startGateway({ db, app: { encryptionKey: NEW_KEY } });
    try {
      const data = await after.ok(ADMIN_TOKEN, READ);
      expect(data.entry.value).toEqual({ secret: 'second' });
      expect(data.entryHistory.map((v: { value: unknown }) => v.value)).toEqual([{ secret: 'second' }, { secret: 'first' }]);
    } finally {
      await after.app.stop();
    }
  });
});
