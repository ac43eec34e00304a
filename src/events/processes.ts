import { randomUUID } from 'node:crypto';
import { sql } from 'drizzle-orm';
import type { DatabaseHandle } from '../db/client.js';
import type { Logger } from '../logger.js';

const HEARTBEAT_MS = 3_000;
/** A process silent this long is taken for dead and not waited for. */
const ALIVE_SECONDS = 10;

/**
 * The gateway processes on one database. A change of access (a revoked grant or token) must stop
 * the next request on every process, so its mutation waits until each live process has applied
 * the invalidation and said so (`seen`), bounded by a timeout for a process that hangs.
 */
export class ProcessRegistry {
  readonly id = randomUUID();
  private heartbeat: NodeJS.Timeout | undefined;
  /**
   * Other live processes, as last counted: with none, change notices need no NOTIFY (each costs a
   * durable commit serialized on the notification queue). Recounted on every heartbeat and when a
   * process says hello; a newcomer's subscribers are covered meanwhile by the feed's safety poll.
   */
  peers = 0;

  constructor(
    private readonly database: DatabaseHandle,
    private readonly logger: Logger,
  ) {}

  async join(): Promise<void> {
    await this.database.rows(sql`
      INSERT INTO gateway_processes (id, seen) VALUES (${this.id}, (SELECT last_value FROM bus_sequence))
      ON CONFLICT (id) DO UPDATE SET heartbeat_at = now()`);
    await this.countPeers();
    this.heartbeat = setInterval(() => {
      this.database
        .rows(sql`UPDATE gateway_processes SET heartbeat_at = now() WHERE id = ${this.id}`)
        .then(() => this.countPeers())
        .catch((error: unknown) => this.logger.warn({ err: error }, 'process heartbeat failed'));
    }, HEARTBEAT_MS);
    this.heartbeat.unref();
  }

  async countPeers(): Promise<void> {
    const [row] = await this.database.rows<{ peers: number }>(sql`
      SELECT count(*)::int AS peers FROM gateway_processes
      WHERE id <> ${this.id} AND heartbeat_at > now() - make_interval(secs => ${ALIVE_SECONDS})`);
    this.peers = Number(row?.peers ?? 0);
  }

  async leave(): Promise<void> {
    clearInterval(this.heartbeat);
    await this.database.rows(sql`
      DELETE FROM gateway_processes WHERE id = ${this.id} OR heartbeat_at < now() - make_interval(secs => ${ALIVE_SECONDS * 6})`);
  }

  async nextSequence(): Promise<string> {
    const [row] = await this.database.rows<{ seq: string }>(sql`SELECT nextval('bus_sequence')::text AS seq`);
    return row?.seq ?? '0';
  }

  async acknowledge(seq: string): Promise<void> {
    await this.database.rows(
      sql`UPDATE gateway_processes SET seen = greatest(seen, ${seq}::bigint), heartbeat_at = now() WHERE id = ${this.id}`,
    );
  }

  /** Resolves once every other live process has applied `seq`, or after `timeoutMs`. */
  async waitForOthers(seq: string, timeoutMs = 2_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (let delay = 1; ; delay = Math.min(delay * 2, 20)) {
      const [row] = await this.database.rows<{ behind: number }>(sql`
        SELECT count(*)::int AS behind FROM gateway_processes
        WHERE id <> ${this.id} AND seen < ${seq}::bigint AND heartbeat_at > now() - make_interval(secs => ${ALIVE_SECONDS})`);
      if (!row || Number(row.behind) === 0) return;
      if (Date.now() > deadline) {
        this.logger.warn({ seq, behind: row.behind }, 'gateway processes did not confirm a cache invalidation in time');
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}
