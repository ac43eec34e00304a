import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, attached, type Gateway, startGateway, subscribe } from './support/gateway.js';

describe('walkthrough', () => {
  let gw: Gateway;
  beforeAll(async () => {
    gw = await startGateway();
  });
  afterAll(() => gw.close());

  it('lets one agent write what another reads and subscribes to', async () => {
    await gw.createNamespace('numbers');
    const producer = await gw.registerAgent('producer', ['numbers']);
    const consumer = await gw.registerAgent('consumer', ['numbers']);
    const sub = subscribe(gw.ws(consumer), 'subscription { entryChanged(namespace: "numbers") { op key value version revision actor } }');
    await attached(
      sub,
      (kind) =>
        gw.ok(producer, 'mutation($key: String!) { setEntry(input: { namespace: "numbers", key: $key, value: 0 }) { version } }', {
          key: kind,
        }),
      (result) => result.data?.entryChanged.key === 'fence',
    );
    const written = await gw.ok(
      producer,
      'mutation { setEntry(input: { namespace: "numbers", key: "n", value: 42 }) { version revision } }',
    );
    expect(written.setEntry.version).toBe(1);
    const read = await gw.ok(consumer, '{ entry(namespace: "numbers", key: "n") { value version updatedBy } }');
    expect(read.entry).toEqual({ value: 42, version: 1, updatedBy: 'producer' });
    const [event] = await sub.waitFor(1);
    expect(event?.data?.entryChanged).toMatchObject({
      op: 'SET',
      key: 'n',
      value: 42,
      actor: 'producer',
      revision: written.setEntry.revision,
    });
  });

  it('accepts the token as Authorization in connectionParams, the way headers are usually written', async () => {
    const reader = await gw.createToken('capitalised', 'READER');
    const { setEntry } = await gw.ok(
      ADMIN_TOKEN,
      'mutation { setEntry(input: { namespace: "common", key: "cap", value: 1 }) { revision } }',
    );
    const client = gw.ws(null, { connectionParams: { Authorization: `Bearer ${reader.token}` } });
    const sub = subscribe(
      client,
      `subscription { entryChanged(namespace: "common", afterRevision: "${BigInt(setEntry.revision) - 1n}") { key } }`,
    );
    const [event] = await sub.waitFor(1);
    expect(event?.data?.entryChanged).toEqual({ key: 'cap' });
  });
});
