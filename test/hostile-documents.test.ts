/**
 * Issue 14: a document's parsing and validation happen before its caller is known, so their work is
 * bounded for everyone by fixed ceilings (README, Security limits). A document over one is refused
 * with QUERY_TOO_COMPLEX while it is parsed: the answer is that one error, never validation's errors
 * about its unknown fields, directives or fragments — on every transport, with a token or without.
 */
import { getIntrospectionQuery } from 'graphql';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, type Gateway, type GraphQLResponse, startGateway } from './support/gateway.js';
import { COSTLIEST_ACCEPTED, HOSTILE_DOCUMENTS } from './support/hostile-documents.js';
import { openRawSocket } from './support/raw-socket.js';
import { openSse } from './support/sse.js';

let gw: Gateway;
beforeAll(async () => {
  gw = await startGateway();
});
afterAll(() => gw?.close());

type Errors = GraphQLResponse['errors'];

const codesOf = (errors: Errors) => (errors ?? []).map((error) => error.extensions?.code);

/** The answer is the ceiling's one error (not validation's), with the ceiling it passed. */
function expectRefused(errors: Errors, message?: RegExp): void {
  expect(codesOf(errors), JSON.stringify(errors)?.slice(0, 500)).toEqual(['QUERY_TOO_COMPLEX']);
  if (message) expect(errors?.[0]?.message).toMatch(message);
}

const headersFor = (token: string | null): Record<string, string> => ({
  'content-type': 'application/json',
  accept: 'application/graphql-response+json',
  ...(token === null ? {} : { authorization: `Bearer ${token}` }),
});

async function post(token: string | null, body: unknown): Promise<{ status: number; body: any }> {
  const response = await gw.app.fetch('http://localhost/graphql', {
    method: 'POST',
    headers: headersFor(token),
    body: JSON.stringify(body),
  });
  return { status: response.status, body: await response.json() };
}

/** GET in-process: a real socket would refuse a URL this long (HTTP 431) before Statehouse sees it. */
async function get(token: string | null, query: string): Promise<{ status: number; body: any }> {
  const url = `http://localhost/graphql?${new URLSearchParams({ query })}`;
  const response = await gw.app.fetch(url, { headers: headersFor(token) });
  return { status: response.status, body: await response.json() };
}

/** A subscribe on a raw socket; its `error` frame's errors, or the socket's close code when it closed instead. */
async function subscribeRaw(token: string | null, query: string): Promise<{ errors?: Errors; closed?: number; stillServes: boolean }> {
  const socket = await openRawSocket(gw.wsUrl);
  try {
    socket.send({ type: 'connection_init', payload: token === null ? {} : { authorization: `Bearer ${token}` } });
    await socket.waitFor((frame) => frame.type === 'connection_ack');
    socket.send({ type: 'subscribe', id: 'hostile', payload: { query } });
    const answer = await socket.waitFor((frame) => frame.id === 'hostile');
    if (!answer) return { closed: (await socket.closed).code, stillServes: false };
    socket.send({ type: 'subscribe', id: 'after', payload: { query: '{ __typename }' } });
    const after = await socket.waitFor((frame) => frame.id === 'after' && frame.type === 'next');
    return { errors: answer.type === 'error' ? answer.payload : undefined, stillServes: after?.payload?.data?.__typename === 'Query' };
  } finally {
    socket.close();
  }
}

const CALLERS: [string, string | null][] = [
  ['without a token', null],
  ['with a token', ADMIN_TOKEN],
];

describe.each(Object.entries(HOSTILE_DOCUMENTS))('%s', (_name, hostile) => {
  it.each(CALLERS)('is refused %s over POST, GET and in a batch, before validation', async (_who, token) => {
    const document = hostile();
    const posted = await post(token, { query: document });
    expectRefused(posted.body.errors);
    expect(posted.status).toBe(400);
    expectRefused((await get(token, document)).body.errors);

    const batch = await post(token, [{ query: document }, { query: '{ __typename }' }]);
    expect(batch.body).toHaveLength(2);
    expectRefused(batch.body[0].errors);
    expect(batch.body[1]).toEqual({ data: { __typename: 'Query' } });
  });

  it.each(CALLERS)('is refused %s over SSE, before validation', async (_who, token) => {
    const stream = openSse(gw.url, token, hostile());
    await stream.ended;
    expect(stream.results).toHaveLength(1);
    expectRefused(stream.results[0]?.errors);
  });

  it('is refused on a socket with a token, which keeps serving', async () => {
    const { errors, stillServes } = await subscribeRaw(ADMIN_TOKEN, hostile());
    expectRefused(errors);
    expect(stillServes).toBe(true);
  });

  it('is never parsed on a socket without a token: the subscribe closes it with 4401', async () => {
    expect(await subscribeRaw(null, hostile())).toMatchObject({ closed: 4401 });
  });
});

/** For each ceiling: a document at it, and one just over it that passes no other. */
const numbered = (count: number, item: (i: number) => string) => Array.from({ length: count }, (_, i) => item(i)).join(' ');
const CEILINGS: [string, number, (n: number) => string][] = [
  ['tokens', 15_000, (n) => `{ __typename(a: [${'1 '.repeat(n - 9)}]) }`],
  ['operations and fragments', 100, (n) => `{ __typename } ${numbered(n - 1, (i) => `fragment F${i} on Query { __typename }`)}`],
  ['directives', 100, (n) => `{ __typename ${'@skip(if: false) '.repeat(n)}}`],
  ['selections in one selection set', 1_000, (n) => `{ ${numbered(n, (i) => `x${i}`)} }`],
  // One selection fewer than aliases at the top: the last alias is nested.
  ['aliases', 1_000, (n) => `{ ${numbered(n - 2, (i) => `a${i}: x`)} v: viewer { r: role } }`],
  ['levels of nested selections', 100, (n) => `${'{ a '.repeat(n - 1)}{ x }${' }'.repeat(n - 1)}`],
];

describe('the ceilings', () => {
  it.each(CEILINGS)('refuses more than the ceiling of %s (%i) with QUERY_TOO_COMPLEX naming it', async (what, ceiling, document) => {
    const refused = await gw.gql(null, document(ceiling + 1));
    expectRefused(refused.errors, new RegExp(`more than ${ceiling} ${what}`));
    expect(refused.errors?.[0]?.extensions?.limit).toBe(ceiling);
  });

  it.each(CEILINGS)('validates a document at the ceiling of %s (%i)', async (_what, ceiling, document) => {
    // Every such document has a mistake that only validation finds.
    const validated = await gw.gql(ADMIN_TOKEN, document(ceiling));
    expect(codesOf(validated.errors).length).toBeGreaterThan(0);
    expect(new Set(codesOf(validated.errors))).toEqual(new Set(['BAD_USER_INPUT']));
  });

  it('answers 100 copies of one field (4,950 merged pairs) and refuses 101 (5,050) with QUERY_TOO_COMPLEX naming the ceiling', async () => {
    expect(await gw.ok(ADMIN_TOKEN, `{ ${'__typename '.repeat(100)}}`)).toEqual({ __typename: 'Query' });
    const refused = await gw.gql(ADMIN_TOKEN, `{ ${'__typename '.repeat(101)}}`);
    expectRefused(refused.errors, /more than 5000 pairs of fields merged into one response key/);
    expect(refused.errors?.[0]?.extensions?.limit).toBe(5_000);
  });

  it('refuses a document whose fragments expand to more than 10,000 selections, however few it writes', async () => {
    // Each fragment spreads the one before it twice, in two differently named fields: 2^14 fields.
    const levels = Array.from({ length: 12 }, (_, i) => `fragment F${i + 1} on Query { a: viewer { ...F${i} } b: viewer { ...F${i} } }`);
    const document = `{ ...F12 } fragment F0 on Query { x y } ${levels.join(' ')}`;
    const refused = await gw.gql(ADMIN_TOKEN, document);
    expectRefused(refused.errors, /more than 10000 selections once its fragments are expanded/);
  });

  it('refuses a document nested deeper than the parser can go, on HTTP and on a socket', async () => {
    const document = `${'{ a '.repeat(7_000)}${'}'.repeat(7_000)}`;
    expectRefused((await gw.gql(null, document)).errors, /nested too deeply/);
    const { errors, stillServes } = await subscribeRaw(ADMIN_TOKEN, document);
    expectRefused(errors, /nested too deeply/);
    expect(stillServes).toBe(true);
  });

  it('lets a tenant allowed 1,000 aliases use them all', async () => {
    const { token } = (await gw.ok(ADMIN_TOKEN, 'mutation { createTenant(name: "many-aliases") { token } }')).createTenant;
    await gw.ok(token, 'mutation($patch: JSON!) { updateConfig(patch: $patch) }', { patch: { limits: { maxAliases: 1_000 } } });
    const data = await gw.ok(token, `{ ${numbered(1_000, (i) => `a${i}: __typename`)} }`);
    expect(Object.keys(data)).toHaveLength(1_000);
  });

  it("answers GraphiQL's full introspection query", async () => {
    const options = {
      descriptions: true,
      specifiedByUrl: true,
      directiveIsRepeatable: true,
      schemaDescription: true,
      inputValueDeprecation: true,
    };
    const { __schema } = await gw.ok(ADMIN_TOKEN, getIntrospectionQuery(options));
    expect(__schema.queryType.name).toBe('Query');
  });
});

describe('the work of one request', () => {
  it('refuses the documents of a batch once together they pass a ceiling, and answers each of them alone', async () => {
    const list = (argument: string) => `{ __typename(${argument}: [${'1 '.repeat(6_000)}]) }`;
    const batch = await post(ADMIN_TOKEN, [{ query: list('a') }, { query: list('b') }, { query: list('c') }, { query: list('d') }]);
    expect(codesOf(batch.body[0].errors)).toEqual(['BAD_USER_INPUT']);
    expect(codesOf(batch.body[1].errors)).toEqual(['BAD_USER_INPUT']);
    for (const refused of batch.body.slice(2)) {
      expectRefused(refused.errors, /documents of this request together have more than 15000 tokens/);
    }
    // The refusals were the batch's, not the documents': alone, each is validated.
    for (const argument of ['c', 'd']) {
      expect(codesOf((await post(ADMIN_TOKEN, { query: list(argument) })).body.errors)).toEqual(['BAD_USER_INPUT']);
    }
  });

  it('answers at most 25 validation errors for one document', async () => {
    const { errors } = await gw.gql(ADMIN_TOKEN, `{ ${numbered(40, (i) => `x${i}`)} }`);
    expect(errors).toHaveLength(26);
    expect(errors?.at(-1)?.message).toMatch(/Too many validation errors/);
  });

  it.each(Object.entries(COSTLIEST_ACCEPTED))(
    'still validates the costliest documents within the ceilings: %s',
    async (_name, document) => {
      const { errors } = await gw.gql(ADMIN_TOKEN, document());
      expect(codesOf(errors)).not.toContain('QUERY_TOO_COMPLEX');
    },
  );
});
