import { type SQL, sql } from 'drizzle-orm';
import type { Role } from '../../auth/principal.js';
import type { DatabaseHandle } from '../../db/client.js';
import type { RawRow } from '../../db/rows.js';
import type { auditEvents } from '../../db/schema.js';
import { checkFirst } from '../../domain/names.js';
import type { Logger } from '../../logger.js';

export type AuditOutcome = 'ALLOWED' | 'DENIED';

/** What happened, by whom, to what; never a token or a value. */
export interface AuditRecord {
  tenantId: string;
  actor: string | null;
  role: Role | null;
  action: string;
  target: string | null;
  outcome: AuditOutcome;
  detail: Record<string, unknown> | null;
}

export interface AuditEvent extends Omit<AuditRecord, 'tenantId'> {
  id: string;
  at: Date;
}

/** U+0000 and lone surrogates, which PostgreSQL's text cannot hold. */
const UNSTORABLE_TEXT = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

const FLUSH_AFTER_MS = 20;
const FLUSH_AT = 500;

/** Refused operations recorded per token and window; past it, one record says the rest were dropped. */
export const REFUSALS_PER_TOKEN = 60;
export const REFUSAL_WINDOW_MS = 60_000;

interface RefusalWindow {
  actor: string | null;
  startedAt: number;
  recorded: number;
  dropped: number;
}

/**
 * The audit log. Records are buffered and written in one statement per batch (every 20 ms or 500
 * records), so auditing adds no round trip to a write. A record can be lost only if the process
 * dies within that window; `stop` writes what is buffered.
 */
export class AuditLog {
  private buffer: (AuditRecord & { at: string })[] = [];
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> = Promise.resolve();
  private unwritten = 0;
  /** Per token: its refusals in the current window (counted in this process, as rate limits are). */
  private readonly refusals = new Map<string, RefusalWindow>();
  private refusalsSweptAt = Date.now();

  constructor(
    private readonly database: DatabaseHandle,
    private readonly logger: Logger,
  ) {}

  /** Records not stored yet: buffered, or in a write still under way (what a crash now would lose). */
  get pending(): number {
    return this.unwritten;
  }

  record(record: AuditRecord): void {
    // A target is caller input: text PostgreSQL cannot store (U+0000, lone surrogates) must not sink the whole batch.
    const target = record.target === null ? null : record.target.replace(UNSTORABLE_TEXT, '\uFFFD');
    this.buffer.push({ ...record, target, at: new Date().toISOString() });
    this.unwritten++;
    if (this.buffer.length >= FLUSH_AT) void this.flush();
    else this.timer ??= setTimeout(() => void this.flush(), FLUSH_AFTER_MS);
  }

  /**
   * Records a refused operation of `tokenId`, at most REFUSALS_PER_TOKEN a window: a client that
   * floods the gateway with refused requests would otherwise bury the real events under its own.
   * The first refusal past the limit records, once per window, that the rest are dropped.
   */
  recordRefusal(tokenId: string, record: AuditRecord): void {
    const now = Date.now();
    this.sweepRefusals(now);
    let window = this.refusals.get(tokenId);
    if (!window || now - window.startedAt >= REFUSAL_WINDOW_MS) {
      if (window) this.closeWindow(window);
      window = { actor: record.actor, startedAt: now, recorded: 0, dropped: 0 };
      this.refusals.set(tokenId, window);
    }
    if (window.recorded < REFUSALS_PER_TOKEN) {
      window.recorded++;
      this.record(record);
      return;
    }
    if (window.dropped++ > 0) return;
    const until = new Date(window.startedAt + REFUSAL_WINDOW_MS).toISOString();
    this.record({
      ...record,
      action: 'auditDropped',
      target: null,
      detail: {
        code: 'RATE_LIMITED',
        reason: `More than ${REFUSALS_PER_TOKEN} refused operations of this token in ${REFUSAL_WINDOW_MS / 1000} s: its further refusals until ${until} are not recorded`,
        limit: REFUSALS_PER_TOKEN,
        until,
      },
    });
  }

  /** Forgets the windows that have ended, once a window, so the map holds only tokens refused lately. */
  private sweepRefusals(now: number): void {
    if (now - this.refusalsSweptAt < REFUSAL_WINDOW_MS) return;
    this.refusalsSweptAt = now;
    for (const [tokenId, window] of this.refusals) {
      if (now - window.startedAt < REFUSAL_WINDOW_MS) continue;
      this.closeWindow(window);
      this.refusals.delete(tokenId);
    }
  }

  /** The audit log says that refusals were dropped; the gateway's log says how many. */
  private closeWindow(window: RefusalWindow): void {
    if (window.dropped > 0) this.logger.warn({ actor: window.actor, dropped: window.dropped }, 'refused operations not audited');
  }

  /** Writes what is buffered; resolves once everything recorded before the call is stored. */
  flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    const batch = this.buffer;
    this.buffer = [];
    this.writing = this.writing.then(async () => {
      if (batch.length === 0) return;
      await this.database
        .rows(
          sql`
          INSERT INTO audit_events (tenant_id, at, actor, role, action, target, outcome, detail)
          SELECT "tenantId", at, actor, role, action, target, outcome, detail
          FROM jsonb_to_recordset(${JSON.stringify(batch)}::jsonb)
            AS r("tenantId" text, at timestamptz, actor text, role role, action text, target text, outcome audit_outcome, detail jsonb)`,
        )
        .catch((error: unknown) => this.logger.error({ err: error, records: batch.length }, 'audit records could not be written'))
        .finally(() => (this.unwritten -= batch.length));
    });
    return this.writing;
  }

  /** Newest first. */
  async list(
    tenantId: string,
    filter: { actor?: string | null; action?: string | null; outcome?: AuditOutcome | null; since?: Date | null; first?: number | null },
  ): Promise<AuditEvent[]> {
    await this.flush();
    const conditions: SQL[] = [sql`tenant_id = ${tenantId}`];
    if (filter.actor) conditions.push(sql`actor = ${filter.actor}`);
    if (filter.action) conditions.push(sql`action = ${filter.action}`);
    if (filter.outcome) conditions.push(sql`outcome = ${filter.outcome}`);
    if (filter.since) conditions.push(sql`at >= ${filter.since.toISOString()}::timestamptz`);
    const rows = await this.database.rows<
      Pick<RawRow<typeof auditEvents>, 'id' | 'at' | 'actor' | 'role' | 'action' | 'target' | 'outcome' | 'detail'>
    >(sql`
      SELECT id::text AS id, at, actor, role, action, target, outcome, detail FROM audit_events
      WHERE ${sql.join(conditions, sql` AND `)} ORDER BY audit_events.id DESC LIMIT ${checkFirst(filter.first ?? 100)}`);
    return rows.map((row) => ({ ...row, at: new Date(row.at) }));
  }
}
