import { sql } from 'drizzle-orm';
import type { DatabaseHandle } from '../../db/client.js';
import type { EventBus } from '../../events/bus.js';
import { CURRENT_REVISION, KEY_LOCK_NAME, TENANT_LOCK_NAME } from './entries.sql.js';

const SWEEP_BATCH = 500;
const COMPACT_BATCH = 5_000;

/**
 * Background work on entries, run by PeriodicJobs in every gateway process (each step is safe to
 * run concurrently): the TTL sweeper, which records each expiry as an EXPIRE change so subscribers hear of it (reads
 * treat an expired entry as absent at once, before the sweep), and history compaction.
 */
export class EntryMaintenance {
  constructor(
    private readonly database: DatabaseHandle,
    private readonly bus: EventBus,
  ) {}

  /** Records expired entries as EXPIRE changes, in batches; returns how many. */
  async sweep(): Promise<number> {
    let total = 0;
    for (;;) {
      // Every key's lock is taken (in one order) before the transaction has an id, as for any write.
      const rows = await this.database.rows<{ tenant_id: string; revision: string; count: number }>(sql`
        WITH due AS (
          SELECT tenant_id, namespace, scope, key, ${KEY_LOCK_NAME} AS name, ${TENANT_LOCK_NAME} AS tenant_lock FROM entries
          WHERE expires_at <= now() AND NOT deleted
          ORDER BY expires_at LIMIT ${SWEEP_BATCH}
        ), locked AS (
          SELECT tenant_id, namespace, scope, key,
                 pg_advisory_xact_lock_shared(hashtextextended(tenant_lock, 0)) AS tenant, pg_advisory_xact_lock(hashtextextended(name, 0)) AS lock
          FROM (SELECT * FROM due ORDER BY name COLLATE "C") AS ordered
        ), clock AS (
          SELECT clock_timestamp() AS at FROM (SELECT count(*) FROM locked) AS all_locked
        ), up AS (
          UPDATE entries e SET deleted = true, value = NULL, version = e.version + 1, revision = ${CURRENT_REVISION},
                 updated_at = clock.at, updated_by = NULL, expires_at = NULL
          FROM locked l, clock
          WHERE e.tenant_id = l.tenant_id AND e.namespace = l.namespace AND e.scope = l.scope AND e.key = l.key
            AND NOT e.deleted AND e.expires_at <= now()
          RETURNING e.*
        ), log AS (
          INSERT INTO changes (tenant_id, revision, namespace, scope, key, op, version, value, actor, at)
          SELECT tenant_id, revision, namespace, scope, key, 'EXPIRE', version, NULL, NULL, updated_at FROM up
        )
        SELECT tenant_id, max(revision)::text AS revision, count(*)::int AS count FROM up GROUP BY tenant_id`);
      let swept = 0;
      for (const row of rows) {
        swept += Number(row.count);
        this.bus.publish({ type: 'changes', tenantId: row.tenant_id, revision: row.revision });
      }
      total += swept;
      if (swept < SWEEP_BATCH) return total;
    }
  }

  /**
   * Removes each key's changes beyond its namespace's historyLimit (newest versions kept) and marks
   * the namespace, so that resuming or time travel from before the cut answers REVISION_COMPACTED.
   */
  async compact(): Promise<number> {
    let total = 0;
    for (;;) {
      const rows = await this.database.rows<{ tenant_id: string; count: number }>(sql`
        WITH doomed AS (
          SELECT c.tenant_id, c.revision, c.namespace, c.scope, c.key FROM changes c
          JOIN namespaces n ON n.tenant_id = c.tenant_id AND n.name = c.namespace
          JOIN entries e ON e.tenant_id = c.tenant_id AND e.namespace = c.namespace AND e.scope = c.scope AND e.key = c.key
          WHERE n.history_limit IS NOT NULL AND c.version <= e.version - n.history_limit
          LIMIT ${COMPACT_BATCH}
        ), gone AS (
          DELETE FROM changes c USING doomed d
          WHERE c.tenant_id = d.tenant_id AND c.revision = d.revision AND c.namespace = d.namespace AND c.scope = d.scope AND c.key = d.key
          RETURNING c.tenant_id, c.namespace, c.revision
        ), marked AS (
          UPDATE namespaces n SET compacted_revision = greatest(coalesce(n.compacted_revision, 0), g.revision)
          FROM (SELECT tenant_id, namespace, max(revision) AS revision, count(*) AS count FROM gone GROUP BY 1, 2) AS g
          WHERE n.tenant_id = g.tenant_id AND n.name = g.namespace
          RETURNING n.tenant_id, g.count
        )
        SELECT tenant_id, sum(count)::int AS count FROM marked GROUP BY tenant_id`);
      let removed = 0;
      for (const row of rows) {
        removed += Number(row.count);
        // Namespace settings carry compactedRevision: every process reloads them.
        await this.bus.invalidate({ type: 'access', tenantId: row.tenant_id });
      }
      total += removed;
      if (removed < COMPACT_BATCH) return total;
    }
  }
}
