import { sql } from 'drizzle-orm';
import type { DatabaseHandle } from '../../db/client.js';
import type { RawRow } from '../../db/rows.js';
import type { entries } from '../../db/schema.js';
import { type SealedValue, ValueCipher } from '../../domain/value-cipher.js';

type SealedRow = Pick<RawRow<typeof entries>, 'tenant_id' | 'namespace' | 'scope' | 'key'> & {
  revision: string | null;
  /** The query reads only values sealed with another key. */
  value: SealedValue;
};

const BATCH = 500;

/**
 * Re-seals, with the current key, every value of a sensitive namespace (live entries and history)
 * that an older key sealed, so the older key can then be dropped. Safe beside running gateways:
 * each row is replaced only if it still holds the value that was read. Not a new version: the value
 * is the same, only its encryption changes. Returns how many values were re-sealed.
 */
export async function resealValues(database: DatabaseHandle, cipher: ValueCipher, progress: (done: number) => void): Promise<number> {
  let done = 0;
  for (const table of ['entries', 'changes'] as const) {
    const revision = table === 'changes' ? sql.raw('t.revision::text') : sql.raw('NULL::text');
    const same = table === 'changes' ? sql.raw('AND changes.revision = r.revision::bigint') : sql.raw('');
    for (;;) {
      const rows = await database.rows<SealedRow>(sql`
        SELECT t.tenant_id, t.namespace, t.scope, t.key, ${revision} AS revision, t.value FROM ${sql.raw(table)} t
        JOIN namespaces n ON n.tenant_id = t.tenant_id AND n.name = t.namespace AND n.sensitive
        WHERE t.value ? '$sealed' AND NOT starts_with(t.value->>'$sealed', ${cipher.currentPrefix})
        LIMIT ${BATCH}`);
      if (rows.length === 0) break;
      const resealed = rows.map((row) => {
        const place = ValueCipher.placeOf(row.tenant_id, row.namespace, row.scope, row.key);
        return {
          ...row,
          old: JSON.stringify(row.value),
          fresh: JSON.stringify(cipher.seal(JSON.stringify(cipher.open(row.value, place)), place)),
        };
      });
      await database.rows(sql`
        UPDATE ${sql.raw(table)} SET value = r.fresh::jsonb
        FROM jsonb_to_recordset(${JSON.stringify(resealed)}::jsonb)
          AS r(tenant_id text, namespace text, scope text, key text, revision text, old text, fresh text)
        WHERE ${sql.raw(table)}.tenant_id = r.tenant_id AND ${sql.raw(table)}.namespace = r.namespace
          AND ${sql.raw(table)}.scope = r.scope AND ${sql.raw(table)}.key = r.key ${same}
          AND ${sql.raw(table)}.value = r.old::jsonb`);
      done += rows.length;
      progress(done);
    }
  }
  return done;
}
