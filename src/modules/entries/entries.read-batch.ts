import { sql } from 'drizzle-orm';
import { Batches, type Settles } from '../../db/batches.js';
import type { Statements } from '../../db/client.js';
import { ENTRY_COLUMNS, type EntryAt, type EntryRow, LIVE } from './entries.sql.js';

interface PendingRead extends Settles<EntryRow | undefined> {
  tenantId: string;
  at: EntryAt;
}

/** At most this many reads in one statement. */
const MAX_BATCH = 256;

/**
 * Point reads that share their work: the `entry` reads that arrive while earlier ones are in the
 * database (or in the same step of the event loop) go as one statement over arrays, whatever their
 * tenants — one round trip, one write to the database's socket, for all of them. The gateway's CPU
 * per read is what bounds reads, and a round trip is the largest part of it. A read's statement
 * starts after the read arrived, so it sees every write answered before the read was asked.
 */
export class ReadBatcher {
  private readonly batches = new Batches<PendingRead>(
    (batch) => this.send(batch),
    (pending) => pending.splice(0, MAX_BATCH),
  );
  private readonly statement: (values: Record<string, unknown>) => Promise<(EntryRow & { n: string | number })[]>;

  constructor(
    database: Statements,
    /** Reads one alone (the point-read statement): for a batch of one. */
    private readonly single: (tenantId: string, at: EntryAt) => Promise<EntryRow | undefined>,
  ) {
    this.statement = database.prepare(sql`
      SELECT i.n, ${ENTRY_COLUMNS}
      FROM unnest(${sql.placeholder('tenants')}::text[], ${sql.placeholder('namespaces')}::text[],
                  ${sql.placeholder('scopes')}::text[], ${sql.placeholder('keys')}::text[])
             WITH ORDINALITY AS i(in_tenant, in_namespace, in_scope, in_key, n)
      JOIN entries ON tenant_id = in_tenant AND namespace = in_namespace AND scope = in_scope AND key = in_key AND ${LIVE}`);
  }

  read(tenantId: string, at: EntryAt): Promise<EntryRow | undefined> {
    return new Promise((resolve, reject) => this.batches.add('', { tenantId, at, resolve, reject }));
  }

  private async send(batch: PendingRead[]): Promise<void> {
    const [first] = batch;
    if (batch.length === 1 && first) return this.single(first.tenantId, first.at).then(first.resolve, first.reject);
    try {
      const rows = await this.statement({
        tenants: batch.map((read) => read.tenantId),
        namespaces: batch.map((read) => read.at.namespace),
        scopes: batch.map((read) => read.at.scope),
        keys: batch.map((read) => read.at.key),
      });
      const byInput = new Map(rows.map((row) => [Number(row.n), row]));
      batch.forEach((read, index) => read.resolve(byInput.get(index + 1)));
    } catch (error) {
      // Nothing in a read's input can make the database refuse it (names are checked before), so what
      // fails the statement (a lost connection, a timeout) would have failed each read alone.
      for (const read of batch) read.reject(error);
    }
  }
}
