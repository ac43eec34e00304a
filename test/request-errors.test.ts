import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, type Gateway, startGateway, subscribe } from './support/gateway.js';

/** Errors of the request itself — wrong types, missing fields, bad syntax — in the contract's terms. */
describe('request errors', () => {
  let gw: Gateway;
  beforeAll(async () => {
    gw = await startGateway();
  });
  afterAll(() => gw.close());

  const SET = 'mutation($input: SetEntryInput!) { setEntry(input: $input) { version } }';

  it.each([
    [
      'a literal of the wrong type',
      'mutation { setEntry(input: { namespace: "common", key: "k", value: 1, expectedVersion: "x" }) { version } }',
      undefined,
      'expectedVersion',
    ],
    ['a literal argument of the wrong type', '{ entries(namespace: "common", first: "ten") { nodes { key } } }', undefined, 'first'],
    ['a variable of the wrong type', SET, { input: { namespace: 'common', key: 'k', value: 1, expectedVersion: 'x' } }, 'expectedVersion'],
    ['a missing required input field', SET, { input: { namespace: 'common', key: 'k' } }, 'value'],
    [
      'a missing field inside a list',
      'mutation($c: [ConditionInput!]) { commit(input: { conditions: $c, operations: [] }) { revision } }',
      { c: [{ namespace: 'common', key: 'k' }] },
      'version',
    ],
    ['a malformed revision literal', '{ changes(afterRevision: "12a") { nodes { revision } } }', undefined, 'afterRevision'],
    ['a negative revision variable', 'query($r: Revision) { changes(afterRevision: $r) { nodes { revision } } }', { r: '-1' }, 'r'],
  ])('answers %s with BAD_USER_INPUT naming the field, and writes nothing', async (_what, query, variables, field) => {
    const result = await gw.gql(ADMIN_TOKEN, query, variables);
    expect(result.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', field });
    expect(result.data ?? null).toBeNull();
    const { entry } = await gw.ok(ADMIN_TOKEN, '{ entry(namespace: "common", key: "k") { value } }');
    expect(entry).toBeNull();
  });

  const CONDITIONAL_SUBSCRIPTIONS: [string, string, Record<string, unknown>?][] = [
    ['@skip on the root field', 'subscription { agentChanged @skip(if: true) { id } }'],
    ['@include on the root field', 'subscription { agentChanged @include(if: false) { id } }'],
    ['@include with a variable', 'subscription($x: Boolean!) { agentChanged @include(if: $x) { id } }', { x: true }],
    ['@skip inside a root fragment', 'subscription { ...F } fragment F on Subscription { agentChanged @skip(if: true) { id } }'],
  ];

  it.each(CONDITIONAL_SUBSCRIPTIONS)('answers a subscription with %s with BAD_USER_INPUT over HTTP', async (_what, query, variables) => {
    const result = await gw.gql(ADMIN_TOKEN, query, variables);
    expect(result.errors?.map((error) => error.extensions?.code)).toEqual(['BAD_USER_INPUT']);
  });

  it('answers conditional subscription root fields on a socket with BAD_USER_INPUT, and keeps the socket and its other subscriptions', async () => {
    const client = gw.ws(ADMIN_TOKEN);
    for (const [what, query, variables] of CONDITIONAL_SUBSCRIPTIONS) {
      const refused = subscribe(client, query, variables);
      await refused.done;
      const errors = refused.error as { extensions?: Record<string, unknown> }[] | undefined;
      expect(Array.isArray(errors) ? errors.map((error) => error.extensions?.code) : refused.error, what).toEqual(['BAD_USER_INPUT']);
    }
    const query = subscribe(client, '{ viewer { role } }');
    await query.done;
    expect(query.results).toEqual([{ data: { viewer: { role: 'ADMIN' } } }]);
  });

  it('answers syntax errors and unknown fields with BAD_USER_INPUT', async () => {
    for (const query of ['{ entries(namespace: "common") { nodes { key } }', '{ nope }']) {
      const result = await gw.gql(ADMIN_TOKEN, query);
      expect(result.errors?.[0]?.extensions?.code, query).toBe('BAD_USER_INPUT');
    }
  });

  /** A POST over a real connection, answered as status, media type and parsed body. */
  async function post(headers: Record<string, string>, body?: string) {
    const response = await fetch(gw.url, { method: 'POST', headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...headers }, body });
    return {
      status: response.status,
      type: response.headers.get('content-type'),
      body: (await response.json()) as Record<string, unknown>,
    };
  }

  const JSON_BODY = { 'content-type': 'application/json' };

  describe.each([
    ['application/json', 'application/json'],
    ['application/graphql-response+json', 'application/graphql-response+json'],
    ['no Accept', 'application/json'],
  ])('for a client that accepts %s', (accept, answered) => {
    const headers = accept === 'no Accept' ? JSON_BODY : { ...JSON_BODY, accept };

    it('answers a body that is not JSON with 400 and BAD_USER_INPUT on the body, without internals', async () => {
      for (const body of ['{"query": ', 'NONSENSE']) {
        const answer = await post(headers, body);
        expect(answer, body).toEqual({
          status: 400,
          type: `${answered}; charset=utf-8`,
          body: { errors: [{ message: expect.any(String), extensions: { code: 'BAD_USER_INPUT', field: 'body' } }] },
        });
      }
    });

    it('answers a POST without a body with 400, saying what to send', async () => {
      const answer = await post(headers);
      expect(answer.status).toBe(400);
      expect(answer.body).toEqual({
        errors: [
          {
            message: 'The request has no body: send a JSON object such as {"query": "{ viewer { role } }"}',
            extensions: { code: 'BAD_USER_INPUT', field: 'body' },
          },
        ],
      });
    });

    it('answers a missing query or an unknown parameter with 400 naming it', async () => {
      for (const [body, field] of [
        [{}, 'query'],
        [{ qeury: '{ viewer { role } }' }, 'qeury'],
      ] as const) {
        const answer = await post(headers, JSON.stringify(body));
        expect(answer.status, JSON.stringify(body)).toBe(400);
        expect(answer.body.errors).toEqual([expect.objectContaining({ extensions: { code: 'BAD_USER_INPUT', field } })]);
      }
    });
  });

  it('answers a document that does not validate with 200 for application/json and 400 for application/graphql-response+json', async () => {
    const query = JSON.stringify({ query: '{ nope }' });
    const plain = await post({ ...JSON_BODY, accept: 'application/json' }, query);
    const strict = await post({ ...JSON_BODY, accept: 'application/graphql-response+json' }, query);
    expect([plain.status, strict.status]).toEqual([200, 400]);
    for (const answer of [plain, strict])
      expect(answer.body.errors).toEqual([expect.objectContaining({ extensions: { code: 'BAD_USER_INPUT' } })]);
  });

  it('answers a POST without Content-Type, or with one that is not JSON, with 415 naming application/json', async () => {
    for (const headers of [{}, { 'content-type': 'text/plain' }] as Record<string, string>[]) {
      const answer = await post(headers, JSON.stringify({ query: '{ viewer { role } }' }));
      expect(answer, JSON.stringify(headers)).toEqual({
        status: 415,
        type: 'application/json; charset=utf-8',
        body: {
          errors: [
            {
              message: 'Send the body as JSON with the header Content-Type: application/json, e.g. {"query": "{ viewer { role } }"}',
              extensions: { code: 'BAD_USER_INPUT', field: 'Content-Type' },
            },
          ],
        },
      });
    }
  });

  it('sends no CORS headers unless origins are configured', async () => {
    const response = await gw.app.fetch('http://localhost/graphql', {
      method: 'OPTIONS',
      headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' },
    });
    expect(response.headers.get('access-control-allow-origin')).toBeNull();
  });
});
