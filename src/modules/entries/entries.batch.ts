import { sql } from 'drizzle-orm';
import { Batches, type Settles } from '../../db/batches.js';
import { type Statements, sqlState } from '../../db/client.js';
import { CURRENT_REVISION, type EntryAt, type EntryRow, KEY_LOCK_NAME, locksOfKeys, NEXT_VERSION, tenantLockName } from './entries.sql.js';

/** One `setEntry` waiting for its batch: what it writes, and who awaits its row (without a version: refused). */
export interface PendingSet extends Settles<EntryRow | undefined> {
  tenantId: string;
  at: EntryAt;
  actor: string;
  /** The CAS version (0: must not exist), null: any. */
  expected: number | null;
  /** JSON text. */
  value: string;
  ttlSeconds: number | null;
}

/** At most this many writes in one statement: a batch's locks and rows stay small. */
const MAX_BATCH = 128;

/**
 * Writes that share their work: the `setEntry`s of one tenant that arrive while that tenant's
 * batches are in flight (or in the same step of the event loop) go to the database as one
 * statement over arrays — one round trip, one transaction, one commit for all of them. Each write
 * keeps its own version check and its own answer; a refused one refuses only itself. Every key's
 * lock is taken (in one order, the order `commit` uses, so nothing deadlocks) before the
 * transaction has an id, so a key's later version still has the larger revision; a key appears at
 * most once per statement (a second write of it waits for the next). All writes of a statement
 * share its revision, as a commit's do. A statement the database refused (a namespace deleted
 * meanwhile, say) is retried one write at a time, so that one bad write never fails another;
 * an error without an answer from the database (a lost connection) fails them all, as it would
 * have failed each: whether they committed is unknown, and trying again could write twice.
 */
export class SetBatcher {
  private readonly batches = new Batches<PendingSet>(
    (batch) => this.send(batch),
    (pending) => this.take(pending),
  );
  private readonly statement: (values: Record<string, unknown>) => Promise<(EntryRow & { n: string | number })[]>;

  constructor(
    database: Statements,
    /** Writes one alone (the single-entry statement): for a batch of one and for the retry. */
    private readonly single: (write: PendingSet) => Promise<EntryRow | undefined>,
  ) {
    const array = (name: string, type: string) => sql`${sql.placeholder(name)}::text[]${sql.raw(type === 'text' ? '' : `::${type}[]`)}`;
    this.statement = database.prepare(sql`
      WITH input AS (
        SELECT * FROM unnest(${array('namespaces', 'text')}, ${array('scopes', 'text')}, ${array('keys', 'text')},
                             ${array('values', 'jsonb')}, ${array('ttls', 'int')}, ${array('expected', 'int')}, ${array('actors', 'text')})
          WITH ORDINALITY AS i(namespace, scope, key, value, ttl, expected, actor, n)
      ), locked AS (${locksOfKeys(
        sql.placeholder('tenantLock'),
        sql`(SELECT ${KEY_LOCK_NAME} AS name FROM (SELECT ${sql.placeholder('tenantId')}::text AS tenant_id, * FROM input) AS i) AS named`,
      )}
      ), up AS (
        INSERT INTO entries AS e (tenant_id, namespace, scope, key, value, version, revision, deleted, created_at, updated_at, updated_by, expires_at)
        SELECT ${sql.placeholder('tenantId')}, i.namespace, i.scope, i.key, i.value, 1, ${CURRENT_REVISION}, false, locked.at, locked.at, i.actor,
               CASE WHEN i.ttl IS NULL THEN NULL ELSE now() + make_interval(secs => i.ttl) END
        FROM input i, locked
        WHERE i.expected IS NULL OR i.expected = 0
           OR EXISTS (SELECT 1 FROM entries x WHERE x.tenant_id = ${sql.placeholder('tenantId')}
                        AND x.namespace = i.namespace AND x.scope = i.scope AND x.key = i.key)
        ON CONFLICT (tenant_id, namespace, scope, key) DO UPDATE SET
          value = excluded.value,
          deleted = false,
          ${NEXT_VERSION}
        WHERE (SELECT i.expected IS NULL OR (CASE WHEN e.deleted OR e.expires_at <= now() THEN 0 ELSE e.version END) = i.expected
               FROM input i WHERE i.namespace = excluded.namespace AND i.scope = excluded.scope AND i.key = excluded.key)
        RETURNING e.*
      ), log AS (
        INSERT INTO changes (tenant_id, revision, namespace, scope, key, op, version, value, actor, at)
        SELECT tenant_id, revision, namespace, scope, key, 'SET', version, value, updated_by, updated_at FROM up
      )
      SELECT i.n, up.namespace, up.scope, up.key, up.value, up.version, up.revision::text AS revision, up.created_at,
             up.updated_at, up.updated_by, up.expires_at
      FROM input i LEFT JOIN up ON up.namespace = i.namespace AND up.scope = i.scope AND up.key = i.key
      ORDER BY i.n`);
  }

  write(write: Omit<PendingSet, 'resolve' | 'reject'>): Promise<EntryRow | undefined> {
    return new Promise((resolve, reject) => this.batches.add(write.tenantId, { ...write, resolve, reject }));
  }

  /** The next batch: up to MAX_BATCH writes in arrival order, each key once (a repeat waits for the next). */
  private take(pending: PendingSet[]): PendingSet[] {
    const batch: PendingSet[] = [];
    const keys = new Set<string>();
    const rest: PendingSet[] = [];
    for (const write of pending) {
      const key = `${write.at.namespace}\u001f${write.at.scope}\u001f${write.at.key}`;
      if (batch.length < MAX_BATCH && !keys.has(key)) {
        keys.add(key);
        batch.push(write);
      } else rest.push(write);
    }
    pending.splice(0, pending.length, ...rest);
    return batch;
  }

  /** Sends one tenant's batch (the tenant is the batches' group). */
  private async send(batch: PendingSet[]): Promise<void> {
    const [first] = batch;
    if (!first) return;
    if (batch.length === 1) {
      await this.single(first).then(first.resolve, first.reject);
      return;
    }
    let rows: (EntryRow & { n: string | number })[];
    try {
      rows = await this.statement({
        tenantId: first.tenantId,
        tenantLock: tenantLockName(first.tenantId),
        namespaces: batch.map((w) => w.at.namespace),
        scopes: batch.map((w) => w.at.scope),
        keys: batch.map((w) => w.at.key),
        values: batch.map((w) => w.value),
        ttls: batch.map((w) => (w.ttlSeconds === null ? null : String(w.ttlSeconds))),
        expected: batch.map((w) => (w.expected === null ? null : String(w.expected))),
        actors: batch.map((w) => w.actor),
      });
    } catch (error) {
      if (sqlState(error) === undefined) {
        for (const write of batch) write.reject(error);
        return;
      }
      // Refused by the database, so nothing of it committed: each write alone, to fail only the bad one.
      await Promise.all(batch.map((write) => this.single(write).then(write.resolve, write.reject)));
      return;
    }
    batch.forEach((write, index) => write.resolve(rows[index]));
  }
}
