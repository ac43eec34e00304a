/**
 * Workload 13's peer: PostGraphile 5 (bench/postgraphile-server.ts) on its own tables of the bench
 * database (bench/postgraphile-schema.sql), with the requests that match workloads 1 and 4 — an
 * insert of a new key and a point read — every answer checked as Statehouse's are.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './processes.js';
import type { BenchDb } from './sql.js';

/** Entries seeded for the point reads: `seed-0` … `seed-9999`, each `{ n }`. */
const SEEDED = 10_000;
const NAMESPACE = 'bench';

export interface PeerRequests<E> {
  title: string;
  query: string;
  next(): { variables: Record<string, unknown>; expect: E };
  check(data: any, expect: E): string | null;
}

/** Creates PostGraphile's tables in the bench database and seeds the entries its reads pick from. */
export async function preparePostGraphileTables(db: BenchDb): Promise<void> {
  await db.exec(readFileSync(join(ROOT, 'bench', 'postgraphile-schema.sql'), 'utf8'));
  await db.exec(
    `INSERT INTO pgl_bench.entry (namespace, key, value)
     SELECT '${NAMESPACE}', 'seed-' || i, jsonb_build_object('n', i) FROM generate_series(0, ${SEEDED - 1}) AS i`,
  );
}

/**
 * A Node.js that PostGraphile supports (22 or later): this one, or the one `npm install --prefix
 * .node node@24` put in .node/; undefined when there is neither.
 */
export function nodeForPostGraphile(): string | undefined {
  if (Number(process.versions.node.split('.')[0]) >= 22) return process.execPath;
  const installed = join(ROOT, '.node', 'node_modules', 'node', 'bin', 'node');
  return existsSync(installed) ? installed : undefined;
}

/** Like workload 1: `createEntry` of keys never written before; every answer is version 1 of its key. */
export function createRequests(tag: string): PeerRequests<string> {
  let counter = 0;
  return {
    title: 'createEntry, distinct keys',
    query:
      'mutation($namespace: String!, $key: String!, $value: JSON!) { createEntry(input: { entry: { namespace: $namespace, key: $key, value: $value } }) { entry { key version } } }',
    next: () => {
      const key = `d-${tag}-${counter++}`;
      return { variables: { namespace: NAMESPACE, key, value: { key, by: 'bench' } }, expect: key };
    },
    check: (data, key) => {
      const entry = data?.createEntry?.entry;
      return entry?.key === key && entry.version === 1 ? null : `createEntry of ${key} answered ${JSON.stringify(data).slice(0, 200)}`;
    },
  };
}

/** Like workload 4: a point read of a random seeded entry, its value checked. */
export function readRequests(): PeerRequests<number> {
  return {
    title: 'entryByNamespaceAndKey, point read',
    query: 'query($namespace: String!, $key: String!) { entryByNamespaceAndKey(namespace: $namespace, key: $key) { key value version } }',
    next: () => {
      const n = Math.floor(Math.random() * SEEDED);
      return { variables: { namespace: NAMESPACE, key: `seed-${n}` }, expect: n };
    },
    check: (data, n) => {
      const entry = data?.entryByNamespaceAndKey;
      return entry?.key === `seed-${n}` && entry.value?.n === n
        ? null
        : `entryByNamespaceAndKey of seed-${n} answered ${JSON.stringify(data).slice(0, 200)}`;
    },
  };
}
