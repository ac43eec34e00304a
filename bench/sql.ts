/**
 * The SQL of the measured operations, exactly as Statehouse sends it (copied from the statements that
 * src/modules/entries/entries.service.ts, entries.commit.ts and src/modules/metrics/metrics.service.ts
 * render; bench/sql-check.ts compares them, text and parameters, at every run), as plain postgres.js
 * queries, or PGlite queries on the embedded backend. The limit (bench/run.ts) and the bare server
 * (bench/bare-server.ts) both run these functions, so all three targets do the same database work per
 * operation.
 */
import { PGlite } from '@electric-sql/pglite';
import postgres from 'postgres';

export const TENANT = 'default';
export const NAMESPACE = 'bench';
export const SCOPE = 'global';
/** Statehouse's PostgreSQL pool size (src/db/client.ts); the bare server and the limit use the same. */
export const POOL_SIZE = 20;
/** What Statehouse's replay reads per query (entries.watch.ts, REPLAY_PAGE). */
export const REPLAY_PAGE = 500;

export type Query = <T = Record<string, unknown>>(text: string, params?: unknown[]) => Promise<T[]>;

/** One database connection (pool) of a target, the same shape on postgres.js and PGlite. */
export interface BenchDb {
  kind: 'postgres' | 'pglite';
  query: Query;
  /** Statements without parameters, several separated by semicolons. */
  exec(text: string): Promise<void>;
  /** Runs `work` in one transaction (BEGIN … COMMIT, as Statehouse's commit does); rolls back when it throws. */
  transaction<T>(work: (query: Query) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

export function openPostgres(url: string, max = POOL_SIZE): BenchDb {
  const client = postgres(url, {
    max,
    idle_timeout: 5,
    onnotice: () => {},
    connection: { TimeZone: 'UTC', application_name: 'statehouse-bench' },
  });
  // As drizzle configures the client Statehouse uses (drizzle-orm/postgres-js): JSON parameters go
  // through as the text they already are, dates and times come back as text.
  const options = client.options as unknown as { parsers: Record<string, unknown>; serializers: Record<string, unknown> };
  const transparent = (value: unknown) => value;
  for (const type of ['1184', '1082', '1083', '1114', '1182', '1185', '1115', '1231']) {
    options.parsers[type] = transparent;
    options.serializers[type] = transparent;
  }
  options.serializers['114'] = transparent;
  options.serializers['3802'] = transparent;
  // Named prepared statements, as postgres.js does for its tagged templates.
  const on =
    (sql: postgres.Sql | postgres.TransactionSql): Query =>
    async <T>(text: string, params: unknown[] = []) =>
      (await sql.unsafe(text, params as never[], { prepare: true })) as unknown as T[];
  return {
    kind: 'postgres',
    query: on(client),
    exec: async (text) => {
      await client.unsafe(text);
    },
    transaction: <T>(work: (query: Query) => Promise<T>) => client.begin((tx) => work(on(tx))) as Promise<T>,
    close: once(() => client.end({ timeout: 5 })),
  };
}

/** `close` may be called by a workload and again by the cleanup. */
function once(close: () => Promise<void>): () => Promise<void> {
  let closing: Promise<void> | undefined;
  return () => {
    closing ??= close();
    return closing;
  };
}

/** A PGlite database in `dataDir` (one process only: each target has its own directory). */
export async function openPglite(dataDirOrClient: string | PGlite): Promise<BenchDb> {
  const client = typeof dataDirOrClient === 'string' ? await PGlite.create(dataDirOrClient) : dataDirOrClient;
  await client.exec(`SET TimeZone = 'UTC'`);
  return wrapPglite(client);
}

function wrapPglite(client: PGlite): BenchDb {
  return {
    kind: 'pglite',
    query: async <T>(text: string, params: unknown[] = []) => (await client.query<T>(text, params)).rows,
    exec: async (text) => {
      await client.exec(text);
    },
    transaction: (work) =>
      client.transaction((tx) => work(async <T>(text: string, params: unknown[] = []) => (await tx.query<T>(text, params)).rows)),
    close: once(() => client.close()),
  };
}

// ---------------------------------------------------------------------------------------------
// The statements. Whitespace aside, each is the text Statehouse sends, with its parameters in the
// same order. Keep them in step with entries.service.ts (the bench warns when they drift).

const ENTRY_COLUMNS = 'namespace, scope, key, value, version, revision::text AS revision, created_at, updated_at, updated_by, expires_at';
const LIVE = 'NOT deleted AND (expires_at IS NULL OR expires_at > now())';

/** setEntry without expectedVersion and ttlSeconds, in a namespace without schema or default TTL. */
export const SET_ENTRY = `
      WITH locked AS (SELECT pg_advisory_xact_lock_shared(hashtextextended($1, 0)),
             pg_advisory_xact_lock(hashtextextended($2, 0)), clock_timestamp() AS at),
      existing AS (
        SELECT 1 FROM entries WHERE tenant_id = $3 AND namespace = $4 AND scope = $5 AND key = $6
      ), up AS (
        INSERT INTO entries AS e (tenant_id, namespace, scope, key, value, version, revision, deleted, created_at, updated_at, updated_by, expires_at)
        SELECT $7, $8, $9, $10, $11::jsonb, 1, pg_current_xact_id()::text::bigint, false, locked.at, locked.at, $12, NULL::timestamptz
        FROM locked WHERE true
        ON CONFLICT (tenant_id, namespace, scope, key) DO UPDATE SET
          value = excluded.value,
          deleted = false,
          version = e.version + 1,
          revision = excluded.revision,
          created_at = CASE WHEN e.deleted OR e.expires_at <= now() THEN excluded.created_at ELSE e.created_at END,
          updated_at = excluded.updated_at,
          updated_by = excluded.updated_by,
          expires_at = excluded.expires_at
        WHERE true AND true
        RETURNING e.*
      ), log AS (
        INSERT INTO changes (tenant_id, revision, namespace, scope, key, op, version, value, actor, at)
        SELECT tenant_id, revision, namespace, scope, key, 'SET', version, value, updated_by, updated_at FROM up
      )
      SELECT up.namespace, up.scope, up.key, up.value, up.version, up.revision::text AS revision, up.created_at,
             up.updated_at, up.updated_by, up.expires_at
      FROM (SELECT 1) AS one LEFT JOIN up ON true`;

/** incrementEntry in a namespace without defaultValue (base 0). */
export const INCREMENT_ENTRY = `
      WITH locked AS (SELECT pg_advisory_xact_lock_shared(hashtextextended($1, 0)),
             pg_advisory_xact_lock(hashtextextended($2, 0)), clock_timestamp() AS at),
      existing AS (
        SELECT 1 FROM entries WHERE tenant_id = $3 AND namespace = $4 AND scope = $5 AND key = $6
      ), up AS (
        INSERT INTO entries AS e (tenant_id, namespace, scope, key, value, version, revision, deleted, created_at, updated_at, updated_by, expires_at)
        SELECT $7, $8, $9, $10, to_jsonb($11::numeric + $12::numeric), 1, pg_current_xact_id()::text::bigint, false, locked.at, locked.at, $13, NULL::timestamptz
        FROM locked WHERE true
        ON CONFLICT (tenant_id, namespace, scope, key) DO UPDATE SET
          value = CASE WHEN e.deleted OR e.expires_at <= now() THEN excluded.value
                          ELSE to_jsonb((e.value #>> '{}')::numeric + $14::numeric) END,
          deleted = false,
          version = e.version + 1,
          revision = excluded.revision,
          created_at = CASE WHEN e.deleted OR e.expires_at <= now() THEN excluded.created_at ELSE e.created_at END,
          updated_at = excluded.updated_at,
          updated_by = excluded.updated_by,
          expires_at = excluded.expires_at
        WHERE true AND (e.deleted OR e.expires_at <= now() OR (jsonb_typeof(e.value) = 'number' AND abs((e.value #>> '{}')::numeric + $15::numeric) <= '1.7976931348623157e+308'::numeric))
        RETURNING e.*
      ), log AS (
        INSERT INTO changes (tenant_id, revision, namespace, scope, key, op, version, value, actor, at)
        SELECT tenant_id, revision, namespace, scope, key, 'SET', version, value, updated_by, updated_at FROM up
      )
      SELECT up.namespace, up.scope, up.key, up.value, up.version, up.revision::text AS revision, up.created_at,
             up.updated_at, up.updated_by, up.expires_at
      FROM (SELECT 1) AS one LEFT JOIN up ON true`;

export const GET_ENTRY = `
      SELECT ${ENTRY_COLUMNS} FROM entries
      WHERE tenant_id = $1 AND namespace = $2 AND scope = $3 AND key = $4 AND ${LIVE}`;

/** entries(namespace, prefix, first): the key range of the prefix, one row more than asked. */
export const LIST_ENTRIES_PREFIX = `
      SELECT ${ENTRY_COLUMNS} FROM entries WHERE tenant_id = $1 AND namespace = $2 AND ${LIVE} AND key >= $3 AND key < $4
      ORDER BY scope, key LIMIT $5`;

const CHANGE_COLUMNS = 'revision::text AS revision, op, namespace, scope, key, version, value, at, actor';
/** Below the oldest running transaction every change is final (entries.sql.ts, WATERMARK). */
const WATERMARK = 'pg_snapshot_xmin(pg_current_snapshot())::text::bigint';

/** The replay's first page: after a bare revision, up to the feed's head revision. */
export const CHANGES_FIRST_PAGE = `
      WITH w AS (SELECT ${WATERMARK} AS watermark)
      SELECT c.*, w.watermark::text AS watermark FROM w LEFT JOIN LATERAL (
        SELECT ${CHANGE_COLUMNS} FROM changes
        WHERE tenant_id = $1 AND revision < w.watermark AND namespace = ANY($2::text[]) AND revision <= $3::bigint
          AND revision > $4::bigint
        ORDER BY changes.revision, changes.namespace, changes.scope, changes.key LIMIT $5
      ) c ON true`;

/** The replay's next pages: after the last change read (a page may end inside a revision). */
export const CHANGES_NEXT_PAGE = `
      WITH w AS (SELECT ${WATERMARK} AS watermark)
      SELECT c.*, w.watermark::text AS watermark FROM w LEFT JOIN LATERAL (
        SELECT ${CHANGE_COLUMNS} FROM changes
        WHERE tenant_id = $1 AND revision < w.watermark AND namespace = ANY($2::text[]) AND revision <= $3::bigint
          AND (revision, namespace, scope, key) > ($4::bigint, $5, $6, $7)
        ORDER BY changes.revision, changes.namespace, changes.scope, changes.key LIMIT $8
      ) c ON true`;

export const HEAD_REVISION = `
      SELECT max(revision)::text AS revision FROM changes WHERE tenant_id = $1 AND revision < ${WATERMARK}`;

/**
 * commit, first statement: the tenant's lock (shared) and every key's lock, in byte order so that
 * commits cannot deadlock, taken before the transaction has an id (entries.commit.ts).
 */
export const COMMIT_LOCK = `
        SELECT pg_advisory_xact_lock_shared(hashtextextended($1, 0)),
               (SELECT count(pg_advisory_xact_lock(hashtextextended(name, 0)))
                FROM (SELECT name FROM unnest($2::text[]) AS name ORDER BY name COLLATE "C") AS ordered),
               clock_timestamp() AS at`;

/** commit, second statement: each key's current version (for conditions) and the values of patches and increments. */
export const COMMIT_CURRENT = `
      SELECT k.i, e.version, (e.deleted OR coalesce(e.expires_at <= now(), false)) AS gone,
             CASE k.kind
               WHEN 'patch' THEN statehouse_merge_patch(CASE WHEN e.version IS NULL OR e.deleted OR e.expires_at <= now() THEN k.base ELSE e.value END, k.argument)
               WHEN 'increment' THEN CASE
                 WHEN e.version IS NULL OR e.deleted OR e.expires_at <= now() THEN to_jsonb((k.base #>> '{}')::numeric + k.by)
                 WHEN jsonb_typeof(e.value) = 'number' THEN to_jsonb((e.value #>> '{}')::numeric + k.by)
               END
             END AS computed,
             (k.kind = 'increment' AND e.version IS NOT NULL AND NOT e.deleted AND coalesce(e.expires_at > now(), true)
               AND jsonb_typeof(e.value) <> 'number') AS not_a_number
      FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]::jsonb[], $6::text[]::jsonb[], $7::text[]::numeric[])
           WITH ORDINALITY AS k(namespace, scope, key, kind, argument, base, by, i)
      LEFT JOIN entries e ON e.tenant_id = $8 AND e.namespace = k.namespace AND e.scope = k.scope AND e.key = k.key
      ORDER BY k.i`;

/** commit, third statement: every entry and its change in one statement, all at the transaction's revision. */
export const COMMIT_WRITE = `
        WITH input AS (
          SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]::jsonb[], $5::text[]::boolean[], $6::text[]::int[])
            AS i(namespace, scope, key, value, deleted, ttl)
        ), up AS (
          INSERT INTO entries AS e (tenant_id, namespace, scope, key, value, version, revision, deleted, created_at, updated_at, updated_by, expires_at)
          SELECT $7, namespace, scope, key, value, 1, pg_current_xact_id()::text::bigint, deleted, clock.at, clock.at, $8,
                 CASE WHEN ttl IS NULL THEN NULL ELSE now() + make_interval(secs => ttl) END
          FROM input, (SELECT clock_timestamp() AS at) AS clock
          ON CONFLICT (tenant_id, namespace, scope, key) DO UPDATE SET
            value = excluded.value,
            deleted = excluded.deleted,
            version = e.version + 1,
            revision = excluded.revision,
            created_at = CASE WHEN e.deleted OR e.expires_at <= now() THEN excluded.created_at ELSE e.created_at END,
            updated_at = excluded.updated_at,
            updated_by = excluded.updated_by,
            expires_at = excluded.expires_at
          RETURNING e.*
        ), log AS (
          INSERT INTO changes (tenant_id, revision, namespace, scope, key, op, version, value, actor, at)
          SELECT tenant_id, revision, namespace, scope, key, CASE WHEN deleted THEN 'DELETE' ELSE 'SET' END::change_op,
                 version, value, updated_by, updated_at FROM up
        )
        SELECT ${ENTRY_COLUMNS}, deleted FROM up`;

/** recordMetrics: the batch in one statement (metrics.service.ts). */
export const RECORD_METRICS = `
      INSERT INTO metrics (tenant_id, agent_id, name, value, unit, tags, at)
      SELECT $1, $2, p.name, p.value, p.unit, p.tags, coalesce(p.at, now())
      FROM unnest($3::text[], $4::text[]::float8[], $5::text[], $6::text[]::jsonb[], $7::text[]::timestamptz[]) AS p(name, value, unit, tags, at)
      RETURNING name, value, unit, tags, agent_id, at`;

// ---------------------------------------------------------------------------------------------
// The operations, one function per statement.

export interface EntryRow {
  namespace: string;
  scope: string;
  key: string;
  value: unknown;
  version: number;
  revision: string;
  created_at: Date | string;
  updated_at: Date | string;
  updated_by: string | null;
  expires_at: Date | string | null;
}

export interface ChangeRow {
  revision: string;
  op: 'SET' | 'DELETE' | 'EXPIRE';
  namespace: string;
  scope: string;
  key: string;
  version: number;
  value: unknown;
  at: Date | string;
  actor: string | null;
}

type WriteRow = { [K in keyof EntryRow]: EntryRow[K] | null };

/** The names of the tenant's (shared) and the key's advisory locks, as Statehouse builds them (entries.sql.ts). */
const TENANT_LOCK = `tenant\u001f${TENANT}`;
const lockKey = (key: string) => [TENANT, NAMESPACE, SCOPE, key].join('\u001f');

/** The row written, or null when the statement wrote nothing (cannot happen without a version check). */
export async function setEntry(db: BenchDb, key: string, valueJson: string, actor: string): Promise<EntryRow | null> {
  const [row] = await db.query<WriteRow>(SET_ENTRY, [
    TENANT_LOCK,
    lockKey(key),
    TENANT,
    NAMESPACE,
    SCOPE,
    key,
    TENANT,
    NAMESPACE,
    SCOPE,
    key,
    valueJson,
    actor,
  ]);
  return row?.version === null || row?.version === undefined ? null : (row as EntryRow);
}

/** The row written, or null when the current value is not a number. */
export async function incrementEntry(db: BenchDb, key: string, by: number, actor: string): Promise<EntryRow | null> {
  const [row] = await db.query<WriteRow>(INCREMENT_ENTRY, [
    TENANT_LOCK,
    lockKey(key),
    TENANT,
    NAMESPACE,
    SCOPE,
    key,
    TENANT,
    NAMESPACE,
    SCOPE,
    key,
    '0',
    String(by),
    actor,
    String(by),
    String(by),
  ]);
  return row?.version === null || row?.version === undefined ? null : (row as EntryRow);
}

export async function getEntry(db: BenchDb, key: string): Promise<EntryRow | null> {
  const [row] = await db.query<EntryRow>(GET_ENTRY, [TENANT, NAMESPACE, SCOPE, key]);
  return row ?? null;
}

/** The first `first` live entries whose key starts with `prefix` (an ASCII prefix), and whether there are more. */
export async function listEntries(db: BenchDb, prefix: string, first: number): Promise<{ rows: EntryRow[]; hasNextPage: boolean }> {
  const last = prefix.charCodeAt(prefix.length - 1);
  const to = prefix.slice(0, -1) + String.fromCharCode(last + 1);
  const rows = await db.query<EntryRow>(LIST_ENTRIES_PREFIX, [TENANT, NAMESPACE, prefix, to, first + 1]);
  return { rows: rows.slice(0, first), hasNextPage: rows.length > first };
}

export async function headRevision(db: BenchDb): Promise<string> {
  const [row] = await db.query<{ revision: string | null }>(HEAD_REVISION, [TENANT]);
  return row?.revision ?? '0';
}

/** One `set` of a commit: a key of namespace bench (scope global) and its value as JSON text. */
export interface CommitSet {
  key: string;
  valueJson: string;
}

/**
 * A commit of sets without conditions, as Statehouse runs it: in one transaction, the locks, the
 * current state of every key (which a set without expectedVersion does not use, but Statehouse reads
 * it for every commit), then every entry and change in one statement. The rows in operation order.
 */
export async function commitSets(
  db: BenchDb,
  sets: readonly CommitSet[],
  actor: string,
): Promise<{ revision: string | null; rows: EntryRow[] }> {
  const column = <T>(value: T) => sets.map(() => value);
  const keys = sets.map((set) => set.key);
  const values = sets.map((set) => set.valueJson);
  const written = await db.transaction(async (query) => {
    await query(COMMIT_LOCK, [TENANT_LOCK, [...new Set(keys.map(lockKey))]]);
    await query(COMMIT_CURRENT, [column(NAMESPACE), column(SCOPE), keys, column('set'), values, column('{}'), column(null), TENANT]);
    return query<EntryRow>(COMMIT_WRITE, [column(NAMESPACE), column(SCOPE), keys, values, column('false'), column(null), TENANT, actor]);
  });
  const byKey = new Map(written.map((row) => [row.key, row]));
  const rows = keys.flatMap((key) => byKey.get(key) ?? []);
  return { revision: written[0]?.revision ?? null, rows };
}

/** One point of recordMetrics, as the GraphQL input gives it. */
export interface MetricPoint {
  name: string;
  value: number;
  unit?: string | null;
  tags?: unknown;
  /** A DateTime (the bare server's scalar gives a Date, the limit has none). */
  at?: Date | string | null;
}

/** recordMetrics as `actor`: the points' columns as text arrays, as Statehouse sends them; how many were stored. */
export async function recordMetrics(db: BenchDb, actor: string, points: readonly MetricPoint[]): Promise<number> {
  const rows = await db.query(RECORD_METRICS, [
    TENANT,
    actor,
    points.map((p) => p.name),
    points.map((p) => String(p.value)),
    points.map((p) => p.unit ?? null),
    points.map((p) => (p.tags === null || p.tags === undefined ? null : JSON.stringify(p.tags))),
    points.map((p) => (p.at ? new Date(p.at).toISOString() : null)),
  ]);
  return rows.length;
}

export interface MetricTotals {
  count: number;
  min: number;
  max: number;
}

/** The count, min and max of a metric's points (the bench's check after workload 7; not measured). */
export async function metricTotals(db: BenchDb, name: string): Promise<MetricTotals | null> {
  const [row] = await db.query<{ count: number; min: number | string; max: number | string }>(
    `SELECT count(*)::int AS count, min(value) AS min, max(value) AS max FROM metrics WHERE tenant_id = $1 AND name = $2 HAVING count(*) > 0`,
    [TENANT, name],
  );
  return row ? { count: Number(row.count), min: Number(row.min), max: Number(row.max) } : null;
}

/** A position in the change log: after all of `revision`, or after that one change of it. */
export interface LogPosition {
  revision: string;
  namespace?: string;
  scope?: string;
  key?: string;
}

/** One page of the replay of namespace `bench`, as Statehouse's subscription replay reads it. */
export async function changesPage(db: BenchDb, after: LogPosition, upToRevision: string, limit = REPLAY_PAGE): Promise<ChangeRow[]> {
  const rows =
    after.namespace === undefined
      ? await db.query<ChangeRow & { watermark: string }>(CHANGES_FIRST_PAGE, [TENANT, [NAMESPACE], upToRevision, after.revision, limit])
      : await db.query<ChangeRow & { watermark: string }>(CHANGES_NEXT_PAGE, [
          TENANT,
          [NAMESPACE],
          upToRevision,
          after.revision,
          after.namespace,
          after.scope,
          after.key,
          limit,
        ]);
  return rows.filter((row) => row.revision !== null);
}

// ---------------------------------------------------------------------------------------------
// Seeding, straight into the real tables (drizzle/0000_core.sql), in the shape Statehouse writes.

/** Seeded entries are `seed-00000` … `seed-09999`, value {"n": i, "tag": "seed"}. */
export const SEED_PREFIX = 'seed-';
export const SEED_DIGITS = 5;
/** Growth entries are `grow-0000000` …, value {"n": i, "tag": "grow"}. */
export const GROW_PREFIX = 'grow-';
export const GROW_DIGITS = 7;
export const SEED_ACTOR = 'bench-seed';

export const seedKey = (i: number) => SEED_PREFIX + String(i).padStart(SEED_DIGITS, '0');
export const growKey = (i: number) => GROW_PREFIX + String(i).padStart(GROW_DIGITS, '0');

/**
 * `count` entries `seed-…` at version 1, in one statement. They get no change rows, so that the
 * resume workload replays exactly the changes seeded for it.
 */
export async function seedEntries(db: BenchDb, count: number): Promise<void> {
  await db.query(
    `INSERT INTO entries (tenant_id, namespace, scope, key, value, version, revision, updated_by)
     SELECT $1, $2, $3, $4 || lpad(i::text, ${SEED_DIGITS}, '0'), jsonb_build_object('n', i, 'tag', 'seed'), 1,
            pg_current_xact_id()::text::bigint, $5
     FROM generate_series(0, $6::int - 1) AS i`,
    [TENANT, NAMESPACE, SCOPE, SEED_PREFIX, SEED_ACTOR, count],
  );
}

/**
 * `count` changes for the resume workload: statements of (up to) 1,000 writes each, every statement
 * its own transaction and so its own revision, over the keys `resume-000` … `resume-999`.
 */
export async function seedChanges(db: BenchDb, count: number, perStatement = 1_000): Promise<void> {
  for (let done = 0, round = 1; done < count; done += perStatement, round++) {
    const rows = Math.min(perStatement, count - done);
    await db.query(
      `WITH up AS (
         INSERT INTO entries AS e (tenant_id, namespace, scope, key, value, version, revision, updated_by)
         SELECT $1, $2, $3, 'resume-' || lpad(j::text, 3, '0'), jsonb_build_object('round', $4::int, 'j', j), 1,
                pg_current_xact_id()::text::bigint, $5
         FROM generate_series(0, $6::int - 1) AS j
         ON CONFLICT (tenant_id, namespace, scope, key) DO UPDATE SET
           value = excluded.value, version = e.version + 1, revision = excluded.revision, updated_at = now()
         RETURNING e.*
       )
       INSERT INTO changes (tenant_id, revision, namespace, scope, key, op, version, value, actor, at)
       SELECT tenant_id, revision, namespace, scope, key, 'SET', version, value, updated_by, updated_at FROM up`,
      [TENANT, NAMESPACE, SCOPE, round, SEED_ACTOR, rows],
    );
  }
}

/**
 * `total` entries `grow-0000000` … (no change rows), in statements of 250,000. Called once per
 * database, so the keys are new: no ON CONFLICT clause, which would cost a third more.
 */
export async function seedGrowth(db: BenchDb, total: number): Promise<void> {
  const batch = 250_000;
  for (let from = 0; from < total; from += batch) {
    const to = Math.min(total, from + batch);
    await db.query(
      `INSERT INTO entries (tenant_id, namespace, scope, key, value, version, revision, updated_by)
       SELECT $1, $2, $3, $4 || lpad(i::text, ${GROW_DIGITS}, '0'), jsonb_build_object('n', i, 'tag', 'grow'), 1,
              pg_current_xact_id()::text::bigint, $5
       FROM generate_series($6::int, $7::int - 1) AS i`,
      [TENANT, NAMESPACE, SCOPE, GROW_PREFIX, SEED_ACTOR, from, to],
    );
  }
  await db.exec('ANALYZE entries');
}

export async function countChanges(db: BenchDb): Promise<number> {
  const [row] = await db.query<{ count: number | string }>(
    `SELECT count(*)::int AS count FROM changes WHERE tenant_id = $1 AND namespace = $2`,
    [TENANT, NAMESPACE],
  );
  return Number(row?.count ?? 0);
}

export async function countEntries(db: BenchDb): Promise<number> {
  const [row] = await db.query<{ count: number | string }>(
    `SELECT count(*)::int AS count FROM entries WHERE tenant_id = $1 AND namespace = $2`,
    [TENANT, NAMESPACE],
  );
  return Number(row?.count ?? 0);
}
