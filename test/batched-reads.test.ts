import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DatabaseHandle } from '../src/db/client.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { ADMIN_TOKEN, type Gateway, startGateway } from './support/gateway.js';

/**
 * Reads that share their work: `entry` reads that arrive together go to the database as one
 * statement, whatever their tenants. Seen from outside, each read still gets exactly its own
 * tenant's, namespace's, scope's and key's live value — never a neighbour's, a deleted or an expired
 * one — and sees every write answered before it was asked.
 */

const ENTRY = `query($key: String!, $scope: String) { entry(namespace: "shared", key: $key, scope: $scope) { key scope value version } }`;
const SET = `mutation($key: String!, $value: JSON!, $scope: String, $ttl: Int) {
  setEntry(input: { namespace: "shared", key: $key, value: $value, scope: $scope, ttlSeconds: $ttl }) { version } }`;

let db: TestDatabase;
let gw: Gateway;
let rival: string;
/** Statements the gateway has run: a read that shares one is not counted on its own. */
let statements = 0;

/** The test database, counting every statement the gateway runs on it. */
function counting(handle: DatabaseHandle): DatabaseHandle {
  return {
    ...handle,
    rows: (query) => {
      statements++;
      return handle.rows(query);
    },
    prepare: (query) => {
      const run = handle.prepare(query);
      return (values) => {
        statements++;
        return run(values);
      };
    },
  } as DatabaseHandle;
}

beforeAll(async () => {
  db = await createTestDatabase();
  gw = await startGateway({ db, database: counting(db.handle) });
  rival = (await gw.ok(ADMIN_TOKEN, 'mutation { createTenant(name: "rival") { token } }')).createTenant.token;
  for (const [token, tenant] of [
    [ADMIN_TOKEN, 'default'],
    [rival, 'rival'],
  ] as const) {
    await gw.ok(token, 'mutation { createNamespace(input: { name: "shared" }) { name } }');
    for (let i = 0; i < 10; i++) await gw.ok(token, SET, { key: `k${i}`, value: { tenant, i } });
    await gw.ok(token, SET, { key: 'k0', value: { tenant, scoped: true }, scope: 'agent:a' });
  }
  // Default tenant only: a deleted key and one whose time is up.
  await gw.ok(ADMIN_TOKEN, SET, { key: 'gone', value: 1 });
  await gw.ok(ADMIN_TOKEN, 'mutation { deleteEntry(input: { namespace: "shared", key: "gone" }) }');
  await gw.ok(ADMIN_TOKEN, SET, { key: 'expired', value: 1, ttl: 1 });
  await new Promise((resolve) => setTimeout(resolve, 1_100));
});

afterAll(async () => {
  await gw?.close();
  await db?.drop();
});

interface Read {
  token: string;
  tenant: string;
  key: string;
  scope?: string;
}

const readAll = (reads: Read[]) =>
  Promise.all(reads.map((read) => gw.gql<{ entry: unknown }>(read.token, ENTRY, { key: read.key, scope: read.scope })));

describe('reads that arrive together', () => {
  it("share statements, and each gets its own tenant's, scope's and key's live value", async () => {
    const reads: Read[] = [];
    for (let i = 0; i < 10; i++) {
      reads.push({ token: ADMIN_TOKEN, tenant: 'default', key: `k${i}` }, { token: rival, tenant: 'rival', key: `k${9 - i}` });
    }
    reads.push(
      { token: ADMIN_TOKEN, tenant: 'default', key: 'k0', scope: 'agent:a' },
      { token: rival, tenant: 'rival', key: 'k0', scope: 'agent:a' },
      { token: ADMIN_TOKEN, tenant: 'default', key: 'never-written' },
      { token: ADMIN_TOKEN, tenant: 'default', key: 'gone' },
      { token: ADMIN_TOKEN, tenant: 'default', key: 'expired' },
      // The rival tenant has neither: the default tenant's live values must not show through.
      { token: rival, tenant: 'rival', key: 'gone' },
      { token: rival, tenant: 'rival', key: 'never-written' },
      // The same read twice in one go.
      { token: ADMIN_TOKEN, tenant: 'default', key: 'k3' },
    );
    const before = statements;
    const answers = await readAll(reads);
    const ran = statements - before;

    answers.forEach((answer, index) => {
      const read = reads[index];
      if (!read) throw new Error('no read');
      expect(answer.errors, JSON.stringify(answer.errors)).toBeUndefined();
      const i = /^k(\d)$/.exec(read.key)?.[1];
      if (i === undefined) expect(answer.data?.entry, `${read.tenant} ${read.key}`).toBeNull();
      else if (read.scope) {
        expect(answer.data?.entry).toEqual({ key: read.key, scope: read.scope, value: { tenant: read.tenant, scoped: true }, version: 1 });
      } else {
        expect(answer.data?.entry).toEqual({ key: read.key, scope: 'global', value: { tenant: read.tenant, i: Number(i) }, version: 1 });
      }
    });
    // One statement per read would be 28 (the tokens and namespaces are cached).
    expect(ran).toBeLessThan(reads.length / 2);
  });

  it('see every write answered before they were asked, in the same burst as other reads', async () => {
    for (let round = 1; round <= 5; round++) {
      await gw.ok(ADMIN_TOKEN, SET, { key: 'k5', value: { round } });
      const answers = await readAll(Array.from({ length: 20 }, () => ({ token: ADMIN_TOKEN, tenant: 'default', key: 'k5' })));
      for (const answer of answers) expect(answer.data?.entry).toMatchObject({ value: { round }, version: round + 1 });
    }
  });
});
