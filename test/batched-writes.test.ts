import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Gateway, type GraphQLResponse, startGateway } from './support/gateway.js';
import { errorProblems, leakIn } from './support/leaks.js';

/**
 * Writes that share their work: `setEntry`s of one tenant that arrive together go to the database
 * as one statement. Seen from outside, they share a revision (one transaction); each still has its
 * own version check and answer, a key's versions stay in revision order, and one write the database
 * refuses fails only itself.
 */

interface EntryView {
  key: string;
  value: unknown;
  version: number;
  revision: string;
  expiresAt: string | null;
}

const SET = `mutation($input: SetEntryInput!) { setEntry(input: $input) { key value version revision expiresAt } }`;
const HISTORY = `query($key: String!) { entryHistory(namespace: "shared", key: $key, first: 100) { version revision op } }`;
const CHANGES = `query($after: String) { changes(namespace: "shared", first: 500, after: $after) {
  nodes { revision key version value } pageInfo { hasNextPage endCursor } } }`;

let gw: Gateway;
let agent: string;

beforeAll(async () => {
  gw = await startGateway();
  await gw.createNamespace('shared');
  agent = await gw.registerAgent('writer', ['shared']);
});

afterAll(async () => {
  await gw?.close();
});

const set = (input: Record<string, unknown>) =>
  gw.gql<{ setEntry: EntryView | null }>(agent, SET, { input: { namespace: 'shared', ...input } });

function entryOf(response: GraphQLResponse<{ setEntry: EntryView | null }>): EntryView {
  expect(response.errors, JSON.stringify(response.errors)).toBeUndefined();
  const entry = response.data?.setEntry;
  if (!entry) throw new Error(`no entry in ${JSON.stringify(response)}`);
  return entry;
}

/** Sends the writes at once, as many agents would. */
const together = (inputs: Record<string, unknown>[]) => Promise.all(inputs.map(set));

describe('writes that arrive together', () => {
  it('share one transaction (revision), each answered with its own key, value and version, all in the log once', async () => {
    const keys = Array.from({ length: 40 }, (_, i) => `together-${i}`);
    const answers = (await together(keys.map((key, i) => ({ key, value: { i } })))).map(entryOf);
    answers.forEach((entry, i) => {
      expect(entry).toMatchObject({ key: keys[i], value: { i }, version: 1 });
    });
    const revisions = new Set(answers.map((entry) => entry.revision));
    // One statement per write would give 40 revisions.
    expect(revisions.size).toBeLessThan(keys.length / 2);

    const logged: { revision: string; key: string; version: number; value: unknown }[] = [];
    let after: string | null = null;
    do {
      const data: { changes: { nodes: typeof logged; pageInfo: { hasNextPage: boolean; endCursor: string | null } } } = await gw.ok(
        agent,
        CHANGES,
        { after },
      );
      logged.push(...data.changes.nodes);
      after = data.changes.pageInfo.hasNextPage ? data.changes.pageInfo.endCursor : null;
    } while (after);
    const ours = logged.filter((change) => change.key.startsWith('together-'));
    expect(ours.map((change) => change.key).sort()).toEqual([...keys].sort());
    for (const change of ours) {
      const answer = answers[keys.indexOf(change.key)];
      expect(change).toMatchObject({ revision: answer?.revision, version: 1, value: answer?.value });
    }
  });

  it('checks each write’s expected version on its own: the refused ones get VERSION_CONFLICT, the others are written', async () => {
    for (const key of ['cas-a', 'cas-b', 'cas-c']) entryOf(await set({ key, value: 'v1' }));
    const inputs = [
      { key: 'cas-a', value: 'a2', expectedVersion: 1 },
      { key: 'cas-b', value: 'b2', expectedVersion: 5 },
      { key: 'cas-c', value: 'c2', expectedVersion: 0 },
      { key: 'cas-new', value: 'n1', expectedVersion: 0 },
      { key: 'cas-missing', value: 'm1', expectedVersion: 3 },
      { key: 'cas-ttl', value: 't1', ttlSeconds: 600 },
      ...Array.from({ length: 20 }, (_, i) => ({ key: `cas-fill-${i}`, value: i })),
    ];
    const answers = await together(inputs);
    expect(entryOf(answers[0] as never)).toMatchObject({ key: 'cas-a', value: 'a2', version: 2 });
    for (const [index, current] of [
      [1, 1],
      [2, 1],
      [4, 0],
    ] as const) {
      const response = answers[index];
      expect(response?.data?.setEntry ?? null).toBeNull();
      expect(response?.errors?.[0]?.extensions).toMatchObject({ code: 'VERSION_CONFLICT', currentVersion: current });
      expect(errorProblems(response?.errors as never)).toEqual([]);
    }
    expect(entryOf(answers[3] as never)).toMatchObject({ key: 'cas-new', value: 'n1', version: 1, expiresAt: null });
    const withTtl = entryOf(answers[5] as never);
    expect(withTtl).toMatchObject({ key: 'cas-ttl', version: 1 });
    expect(Date.parse(withTtl.expiresAt ?? '') - Date.now()).toBeGreaterThan(500_000);
    // The refused writes changed nothing.
    const read = await gw.ok<{ b: EntryView; c: EntryView; m: EntryView | null }>(
      agent,
      `{ b: entry(namespace: "shared", key: "cas-b") { value version } c: entry(namespace: "shared", key: "cas-c") { value version }
         m: entry(namespace: "shared", key: "cas-missing") { version } }`,
    );
    expect(read).toEqual({ b: { value: 'v1', version: 1 }, c: { value: 'v1', version: 1 }, m: null });
    const written = answers.flatMap((response) => (response.data?.setEntry ? [response.data.setEntry.revision] : []));
    expect(new Set(written).size).toBeLessThan(written.length);
  });

  it('keeps one key’s concurrent writes apart: every version once, later versions at later revisions', async () => {
    const answers = (await together(Array.from({ length: 25 }, (_, i) => ({ key: 'hot', value: i })))).map(entryOf);
    expect(answers.map((entry) => entry.version).sort((a, b) => a - b)).toEqual(Array.from({ length: 25 }, (_, i) => i + 1));
    const byVersion = [...answers].sort((a, b) => a.version - b.version);
    for (let i = 1; i < byVersion.length; i++) {
      expect(BigInt(byVersion[i]?.revision ?? 0)).toBeGreaterThan(BigInt(byVersion[i - 1]?.revision ?? 0));
    }
    const history = await gw.ok<{ entryHistory: { version: number; revision: string; op: string }[] }>(agent, HISTORY, { key: 'hot' });
    expect(history.entryHistory.map((version) => version.version)).toEqual(Array.from({ length: 25 }, (_, i) => 25 - i));
  });

  it('fails only the write the database refuses; the others that came with it are written', async () => {
    // A fault only the database knows of: a trigger that refuses one key.
    await gw.db.handle.rows(
      sql.raw(`CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN IF NEW.key = 'poison' THEN RAISE EXCEPTION 'poisoned'; END IF; RETURN NEW; END $$`),
    );
    await gw.db.handle.rows(
      sql.raw(`CREATE TRIGGER refuse_poison BEFORE INSERT OR UPDATE ON entries FOR EACH ROW EXECUTE FUNCTION refuse_poison()`),
    );
    try {
      const keys = Array.from({ length: 30 }, (_, i) => (i === 7 ? 'poison' : `beside-poison-${i}`));
      const answers = await together(keys.map((key, i) => ({ key, value: i })));
      answers.forEach((response, i) => {
        if (keys[i] === 'poison') {
          expect(response.data?.setEntry ?? null).toBeNull();
          // Masked as every internal error is: nothing of the database's message reaches the client.
          expect(response.errors?.[0]?.extensions?.code).toBe('INTERNAL_SERVER_ERROR');
          expect(leakIn(JSON.stringify(response.errors))).toBeNull();
          expect(JSON.stringify(response.errors)).not.toContain('poisoned');
        } else {
          expect(entryOf(response)).toMatchObject({ key: keys[i], value: i, version: 1 });
        }
      });
      const read = await gw.gql(agent, `{ entry(namespace: "shared", key: "poison") { version } }`);
      expect(read.data).toEqual({ entry: null });
    } finally {
      await gw.db.handle.rows(sql.raw('DROP TRIGGER refuse_poison ON entries'));
    }
  });
});
