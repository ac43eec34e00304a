/**
 * The request/response workloads (1–7). Each one is a GraphQL operation sent unchanged to Statehouse
 * and to the bare server, plus the same work as SQL for the limit, and the checks that every answer must
 * pass. The limit's rows are shaped like the GraphQL answer, so one `check` serves all three targets.
 *
 * Adding a workload is one more entry in WORKLOADS: its query, how to make each request, how to check
 * each answer, and its SQL for the limit.
 */
import type { RequestPlan } from './measure.js';
import {
  type BenchDb,
  commitSets,
  type EntryRow,
  getEntry,
  growKey,
  incrementEntry,
  listEntries,
  type MetricPoint,
  type MetricTotals,
  NAMESPACE,
  recordMetrics,
  SEED_PREFIX,
  seedKey,
  setEntry,
} from './sql.js';

export type TargetName = 'statehouse' | 'bare' | 'limit';

/** The actor of the bench's agent in Statehouse; the limit writes the same. */
export const AGENT_ID = 'bench-agent';

export interface StoredEntry {
  value: unknown;
  version: number;
}

export interface RunContext {
  target: TargetName;
  connections: number;
  /** Unique for this run (target, connections, phase): keeps keys of different runs apart. */
  tag: string;
  /** Which seeded keys reads pick from: `seed-…` (the 10,000) or `grow-…` (the growth entries). */
  reads: { kind: 'seed' | 'grow'; count: number };
  /** Reads one entry of namespace bench through the target (GraphQL, or SQL for the limit). */
  read(key: string): Promise<StoredEntry | null>;
  /** Count, min and max of one metric's points through the target (metricSummary, or SQL for the limit). */
  metricTotals(name: string): Promise<MetricTotals | null>;
}

export interface OpRun<E = any> {
  next(): RequestPlan<E>;
  /** Checks the `data` of one answer; returns a problem or null. */
  check(data: any, expect: E): string | null;
  /** The limit: the same work as SQL, answered in the shape of the GraphQL `data`. */
  sql(db: BenchDb, plan: RequestPlan<E>): Promise<unknown>;
  /**
   * Checks after the load. `maxUnanswered`: how many writes may have been committed without their
   * answer being counted (autocannon drops the requests in flight when its time is up).
   */
  finish?(maxUnanswered: number): Promise<string | null>;
}

export interface HttpWorkload {
  id: string;
  title: string;
  query: string;
  /** Unit of the figure (default ops/s) and how many of it one request is (e.g. 50 for a commit of 50). */
  unit?: string;
  perRequest?: number;
  /**
   * The shortest run that counts, whatever --seconds says: a request of hundreds of writes takes
   * long enough that a 1-second run (--quick) may end before a cold server has answered any.
   */
  minSeconds?: number;
  start(context: RunContext): Promise<OpRun>;
}

export interface PendingWorkload {
  id: string;
  title: string;
  pending: string;
}

const entryShape = (row: EntryRow | null) =>
  row === null ? null : { key: row.key, value: row.value, version: row.version, revision: row.revision };
const describe = (value: unknown) => JSON.stringify(value)?.slice(0, 200);
const randomInt = (below: number) => Math.floor(Math.random() * below);

/** 1. setEntry on keys never written before: every answer is version 1 of the key it wrote. */
const setDistinct: HttpWorkload = {
  id: '1',
  title: 'setEntry, distinct keys',
  query: 'mutation($input: SetEntryInput!) { setEntry(input: $input) { key version revision } }',
  start: async (context) => {
    const prefix = `d-${context.tag}-`;
    let counter = 0;
    const written: number[] = [];
    return {
      next: () => {
        const i = counter++;
        return { variables: { input: { namespace: NAMESPACE, key: prefix + i, value: { i, by: 'bench' } } }, expect: i };
      },
      check: (data, i: number) => {
        const entry = data?.setEntry;
        if (entry?.key !== prefix + i || entry.version !== 1 || !/^\d+$/.test(String(entry.revision))) {
          return `setEntry of ${prefix + i} answered ${describe(entry)} (expected version 1 of that key)`;
        }
        written.push(i);
        return null;
      },
      sql: async (db, plan) => ({
        setEntry: entryShape(await setEntry(db, prefix + plan.expect, JSON.stringify({ i: plan.expect, by: 'bench' }), AGENT_ID)),
      }),
      finish: async () => {
        // Read a sample of the answered writes back: they must hold what was written.
        for (let n = 0; n < Math.min(20, written.length); n++) {
          const i = written[randomInt(written.length)] ?? 0;
          const stored = await context.read(prefix + i);
          const value = stored?.value as { i?: unknown } | undefined;
          if (stored?.version !== 1 || value?.i !== i) return `${prefix + i} reads back as ${describe(stored)} after an answered setEntry`;
        }
        return null;
      },
    };
  },
};

/** 2. setEntry on one hot key: every answer a new version, the versions add up to the writes. */
const setHot: HttpWorkload = {
  id: '2',
  title: 'setEntry, one hot key',
  query: 'mutation($input: SetEntryInput!) { setEntry(input: $input) { key version value } }',
  start: async (context) => {
    const key = `hot-set-${context.target}`;
    const before = await context.read(key);
    const version0 = before?.version ?? 0;
    let counter = 0;
    const answered = new Map<number, number>();
    return {
      next: () => {
        const w = counter++;
        return { variables: { input: { namespace: NAMESPACE, key, value: { w } } }, expect: w };
      },
      check: (data, w: number) => {
        const entry = data?.setEntry;
        if (entry?.key !== key || (entry.value as { w?: unknown } | null)?.w !== w || !(entry.version > version0)) {
          return `setEntry of ${key} = {w: ${w}} answered ${describe(entry)}`;
        }
        if (answered.has(entry.version)) return `two setEntry answers on ${key} have version ${entry.version}`;
        answered.set(entry.version, w);
        return null;
      },
      sql: async (db, plan) => ({ setEntry: entryShape(await setEntry(db, key, JSON.stringify({ w: plan.expect }), AGENT_ID)) }),
      finish: async (maxUnanswered) => {
        const after = await context.read(key);
        if (!after) return `${key} is missing after ${answered.size} answered writes`;
        const committed = after.version - version0;
        if (committed < answered.size || committed > answered.size + maxUnanswered) {
          return `${key} went from version ${version0} to ${after.version} (${committed} writes) but ${answered.size} writes were answered`;
        }
        const last = answered.get(after.version);
        if (last !== undefined && (after.value as { w?: unknown } | null)?.w !== last) {
          return `${key} holds ${describe(after.value)} but the write answered with version ${after.version} wrote {w: ${last}}`;
        }
        return null;
      },
    };
  },
};

/** 3. incrementEntry on one hot key: value and version move in step; the total is the number of increments. */
const incrementHot: HttpWorkload = {
  id: '3',
  title: 'incrementEntry, one hot key',
  query: 'mutation($input: IncrementEntryInput!) { incrementEntry(input: $input) { key value version } }',
  start: async (context) => {
    const key = `hot-inc-${context.target}`;
    const before = await context.read(key);
    const version0 = before?.version ?? 0;
    const value0 = before === null ? 0 : before.value;
    if (typeof value0 !== 'number') throw new Error(`${key} holds ${describe(value0)}, not a number`);
    const seen = new Set<number>();
    return {
      next: () => ({ variables: { input: { namespace: NAMESPACE, key, by: 1 } }, expect: null }),
      check: (data) => {
        const entry = data?.incrementEntry;
        if (
          entry?.key !== key ||
          typeof entry.value !== 'number' ||
          entry.value - value0 !== entry.version - version0 ||
          entry.version <= version0
        ) {
          return `incrementEntry of ${key} (from ${value0} at version ${version0}) answered ${describe(entry)}`;
        }
        if (seen.has(entry.version)) return `two increments of ${key} answered version ${entry.version}`;
        seen.add(entry.version);
        return null;
      },
      sql: async (db) => ({ incrementEntry: entryShape(await incrementEntry(db, key, 1, AGENT_ID)) }),
      finish: async (maxUnanswered) => {
        const after = await context.read(key);
        if (!after || typeof after.value !== 'number') return `${key} reads as ${describe(after)} after ${seen.size} increments`;
        const total = after.value - value0;
        const committed = after.version - version0;
        if (total !== committed) return `${key} grew by ${total} in ${committed} increments of 1`;
        if (committed < seen.size || committed > seen.size + maxUnanswered) {
          return `${key} grew by ${total} but ${seen.size} increments were answered`;
        }
        return null;
      },
    };
  },
};

function readKey(context: RunContext): { key: string; n: number; tag: string } {
  const n = randomInt(context.reads.count);
  return context.reads.kind === 'seed' ? { key: seedKey(n), n, tag: 'seed' } : { key: growKey(n), n, tag: 'grow' };
}

/** 4. entry: a random seeded key; the answer must be that key's value. */
const pointRead: HttpWorkload = {
  id: '4',
  title: 'entry, point read',
  query: 'query($namespace: String!, $key: String!) { entry(namespace: $namespace, key: $key) { key value version } }',
  start: async (context) => ({
    next: () => {
      const expect = readKey(context);
      return { variables: { namespace: NAMESPACE, key: expect.key }, expect };
    },
    check: (data, expect: { key: string; n: number; tag: string }) => {
      const entry = data?.entry;
      const value = entry?.value as { n?: unknown; tag?: unknown } | undefined;
      if (entry?.key !== expect.key || value?.n !== expect.n || value?.tag !== expect.tag) {
        return `entry ${expect.key} answered ${describe(entry)}`;
      }
      return null;
    },
    sql: async (db, plan) => ({ entry: entryShape(await getEntry(db, (plan.expect as { key: string }).key)) }),
  }),
};

/** 5. entries: a page of 100 (`seed-0XY00` … `seed-0XY99` for a random XY), in key order. */
const page: HttpWorkload = {
  id: '5',
  title: 'entries, page of 100',
  query:
    'query($namespace: String!, $prefix: String!) { entries(namespace: $namespace, prefix: $prefix, first: 100) { nodes { key value version } pageInfo { hasNextPage } } }',
  start: async () => ({
    next: () => {
      const block = randomInt(100);
      return { variables: { namespace: NAMESPACE, prefix: `${SEED_PREFIX}0${String(block).padStart(2, '0')}` }, expect: block };
    },
    check: (data, block: number) => {
      const nodes = data?.entries?.nodes as { key: string; value: { n?: unknown } }[] | undefined;
      if (!Array.isArray(nodes) || nodes.length !== 100 || data.entries.pageInfo?.hasNextPage !== false) {
        return `entries of block ${block} answered ${nodes?.length ?? 'no'} nodes (expected exactly 100, no next page)`;
      }
      for (let j = 0; j < 100; j++) {
        const n = block * 100 + j;
        if (nodes[j]?.key !== seedKey(n) || nodes[j]?.value?.n !== n)
          return `entries of block ${block}: node ${j} is ${describe(nodes[j])}`;
      }
      return null;
    },
    sql: async (db, plan) => {
      const { rows, hasNextPage } = await listEntries(db, String(plan.variables.prefix), 100);
      return { entries: { nodes: rows.map(entryShape), pageInfo: { hasNextPage } } };
    },
  }),
};

const COMMIT_SIZE = 50;

/**
 * 6. commit of 50 sets on keys never written before: every answer holds the 50 entries in operation
 * order, each at version 1 and at the commit's one revision.
 */
const commit: HttpWorkload = {
  id: '6',
  title: `commit of ${COMMIT_SIZE} sets, distinct keys`,
  query: 'mutation($input: CommitInput!) { commit(input: $input) { revision entries { key version revision } } }',
  unit: 'entry-writes/s',
  perRequest: COMMIT_SIZE,
  minSeconds: 2,
  start: async (context) => {
    const prefix = `c-${context.tag}-`;
    const key = (i: number, j: number) => `${prefix}${i}-${j}`;
    const value = (i: number, j: number) => ({ i, j, by: 'bench' });
    let counter = 0;
    const committed: number[] = [];
    return {
      next: () => {
        const i = counter++;
        const operations = Array.from({ length: COMMIT_SIZE }, (_, j) => ({
          set: { namespace: NAMESPACE, key: key(i, j), value: value(i, j) },
        }));
        return { variables: { input: { operations } }, expect: i };
      },
      check: (data, i: number) => {
        const result = data?.commit;
        const entries = result?.entries as { key?: unknown; version?: unknown; revision?: unknown }[] | undefined;
        if (!/^\d+$/.test(String(result?.revision)) || !Array.isArray(entries) || entries.length !== COMMIT_SIZE) {
          return `commit ${i} answered ${describe(result)} (expected ${COMMIT_SIZE} entries and a revision)`;
        }
        for (let j = 0; j < COMMIT_SIZE; j++) {
          const entry = entries[j];
          if (entry?.key !== key(i, j) || entry.version !== 1 || String(entry.revision) !== String(result.revision)) {
            return `commit ${i} (revision ${result.revision}): entry ${j} is ${describe(entry)} (expected version 1 of ${key(i, j)} at the commit's revision)`;
          }
        }
        committed.push(i);
        return null;
      },
      sql: async (db, plan) => {
        const i = plan.expect as number;
        const sets = Array.from({ length: COMMIT_SIZE }, (_, j) => ({ key: key(i, j), valueJson: JSON.stringify(value(i, j)) }));
        const { revision, rows } = await commitSets(db, sets, AGENT_ID);
        return { commit: { revision, entries: rows.map(entryShape) } };
      },
      finish: async () => {
        // Read a sample of the answered commits' keys back: they must hold what was written.
        for (let n = 0; n < Math.min(20, committed.length * COMMIT_SIZE); n++) {
          const i = committed[randomInt(committed.length)] ?? 0;
          const j = randomInt(COMMIT_SIZE);
          const stored = await context.read(key(i, j));
          const held = stored?.value as { i?: unknown; j?: unknown } | undefined;
          if (stored?.version !== 1 || held?.i !== i || held?.j !== j) {
            return `${key(i, j)} reads back as ${describe(stored)} after an answered commit`;
          }
        }
        return null;
      },
    };
  },
};

const METRIC_POINTS = 1_000;
/** Points spread over a few metric names, as an agent reports several measures at once. */
const METRIC_NAMES = 4;

/**
 * 7. recordMetrics of 1,000 points as the bench's agent (names unique to the run, a unit and tags on
 * each): every answer is 1,000, and afterwards each name holds 250 points per answered call with
 * the values sent.
 */
const metrics: HttpWorkload = {
  id: '7',
  title: `recordMetrics of ${METRIC_POINTS.toLocaleString('en-US')} points`,
  query: 'mutation($metrics: [MetricInput!]!) { recordMetrics(metrics: $metrics) }',
  unit: 'points/s',
  perRequest: METRIC_POINTS,
  minSeconds: 2,
  start: async (context) => {
    const names = Array.from({ length: METRIC_NAMES }, (_, k) => `bench.${context.tag}.m${k}`);
    // The same batch every call: the values are checked by their extremes, per name.
    const points: MetricPoint[] = Array.from({ length: METRIC_POINTS }, (_, j) => ({
      name: names[j % METRIC_NAMES] ?? '',
      value: j + 0.25,
      unit: 'ms',
      tags: { worker: `w${j % 8}`, region: 'bench' },
    }));
    let answered = 0;
    return {
      next: () => ({ variables: { metrics: points }, expect: METRIC_POINTS }),
      check: (data, expect: number) => {
        if (data?.recordMetrics !== expect) return `recordMetrics of ${expect} points answered ${describe(data?.recordMetrics)}`;
        answered++;
        return null;
      },
      sql: async (db, plan) => ({ recordMetrics: await recordMetrics(db, AGENT_ID, plan.variables.metrics as MetricPoint[]) }),
      finish: async (maxUnanswered) => {
        const perName = METRIC_POINTS / METRIC_NAMES;
        for (const [k, name] of names.entries()) {
          const totals = await context.metricTotals(name);
          const calls = (totals?.count ?? 0) / perName;
          if (!totals || calls < answered || calls > answered + maxUnanswered || !Number.isInteger(calls)) {
            return `${name} holds ${totals?.count ?? 0} points after ${answered} answered calls of ${perName} points each`;
          }
          const min = k + 0.25;
          const max = METRIC_POINTS - METRIC_NAMES + k + 0.25;
          if (totals.min !== min || totals.max !== max) {
            return `${name}'s points range from ${totals.min} to ${totals.max}, but the values sent range from ${min} to ${max}`;
          }
        }
        return null;
      },
    };
  },
};

/** The request/response workloads in table order; a pending one is listed so that the gap is obvious. */
export const WORKLOADS: (HttpWorkload | PendingWorkload)[] = [setDistinct, setHot, incrementHot, pointRead, page, commit, metrics];

/** The workloads rerun by 11 (growth). */
export const GROWTH_WORKLOADS = [setDistinct, pointRead];

export const isPending = (workload: HttpWorkload | PendingWorkload): workload is PendingWorkload => 'pending' in workload;
