/**
 * Fuzzing the gateway: more than 10,000 random and mutated GraphQL requests, built from the
 * operations of schema/schema.graphql, thrown at it in-process (app.fetch), and a smaller share over a
 * real SSE connection and real WebSockets. Every case is generated from (seed, index) by a small PRNG
 * of this file: a failure names both, and `FUZZ_SEED=<seed>` replays the run (`FUZZ_CASES` sets how
 * many HTTP cases; the default seed is fixed, so a plain run is the same run every time).
 *
 * What the contract (API.md §3) allows, and so what every answer is held to:
 * - no HTTP status of 500 or above, and no hang: every request has a deadline;
 * - every error carries a code of §3 in `extensions.code`. Requests that are not valid GraphQL are
 *   no exception: the gateway answers a body that is not JSON, a document that does not parse or
 *   validate, a wrong variable, a wrong method as BAD_USER_INPUT (as test/request-errors.test.ts fixes),
 *   with a 4xx status or, where GraphQL over HTTP puts the error in the result, 200;
 * - the only answers without a GraphQL body are those that GraphQL over HTTP gives without one: 406
 *   (nothing the client accepts), 413 (a body beyond twice maxValueBytes), 415 (a content type that
 *   is not GraphQL's), HEAD, and GraphiQL's page for a browser;
 * - no stack frame, source path, SQL or PostgreSQL message in any error (test/support/leaks.ts);
 * - on a socket, no close for an internal error (4500, 1011): protocol violations close with the
 *   graphql-transport-ws codes 44xx;
 * - afterwards the gateway answers normal requests.
 */
import { readFileSync } from 'node:fs';
import { get as httpGet } from 'node:http';
import {
  buildSchema,
  getNamedType,
  type GraphQLArgument,
  GraphQLEnumType,
  type GraphQLField,
  GraphQLInputObjectType,
  type GraphQLInputType,
  GraphQLList,
  GraphQLNonNull,
  GraphQLObjectType,
  type GraphQLOutputType,
  GraphQLScalarType,
  Lexer,
  parse,
  Source,
  TokenKind,
} from 'graphql';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backend } from './support/database.js';
import { ADMIN_TOKEN, type Gateway, startGateway } from './support/gateway.js';
import { errorProblems, leakIn } from './support/leaks.js';
import { openRawSocket, type RawSocket } from './support/raw-socket.js';

const SEED = Number(process.env.FUZZ_SEED ?? 0x5eed_2026) >>> 0;
const HTTP_CASES = Number(process.env.FUZZ_CASES ?? 10_000);
const SSE_CASES = 300;
const SOCKETS = 40;
const MESSAGES_PER_SOCKET = 30;
const DEADLINE_MS = 10_000;

/** mulberry32: tiny, fast and good enough to pick fuzz cases; one generator per case, so cases replay alone. */
class Random {
  private state: number;
  /** How often a value is junk rather than plausible: low for the cases meant to reach the resolvers. */
  noise = 0.2;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(below: number): number {
    return Math.floor(this.next() * below);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)] as T;
  }
  /** Picks by weight: [[weight, value], …]. */
  weighted<T>(choices: readonly (readonly [number, T])[]): T {
    let roll = this.next() * choices.reduce((sum, [weight]) => sum + weight, 0);
    for (const [weight, value] of choices) {
      roll -= weight;
      if (roll < 0) return value;
    }
    return (choices.at(-1) as readonly [number, T])[1];
  }
}

/** The generator of case `index` of a run: the same (seed, index) always gives the same case. */
const randomFor = (stream: string, index: number) => {
  let hash = SEED ^ 0x9e3779b9;
  for (const char of `${stream}:${index}`) hash = Math.imul(hash ^ char.charCodeAt(0), 0x01000193);
  return new Random(hash);
};

// ---------------------------------------------------------------------------------------------
// Values

const NAMESPACES = ['fuzz', 'typed', 'common', 'system', 'nope', 'Bad Name', ''];
const KEYS = ['k', 'counter', 'a/b', 'lock:leader', 'x'.repeat(600), '🙂', "'; DROP TABLE entries; --"];
const SCOPES = ['global', 'thread:1', 'agent:fuzz-agent', 'bad scope', '../..'];
const AGENT_IDS = ['fuzz-agent', 'ghost', 'spaced id', '-1'];
const STRANGE = [
  '',
  ' ',
  "'; DROP TABLE entries; --",
  '%_%',
  '\\',
  '\u0000',
  '\ud800',
  '\u202e\u200b\ufeff',
  'ключ-鍵-🔑',
  '$1',
  '__proto__',
  '<script>',
  'y'.repeat(5_000),
];

function randomString(random: Random): string {
  const kind = random.int(4);
  if (kind === 0) return random.pick(STRANGE);
  if (kind === 1) return random.pick([...NAMESPACES, ...KEYS, ...SCOPES, ...AGENT_IDS]);
  const length = random.weighted([
    [8, random.int(12)],
    [1, random.int(300)],
  ] as const);
  let text = '';
  for (let i = 0; i < length; i++) {
    text += random.weighted([
      [6, String.fromCharCode(97 + random.int(26))],
      [1, String.fromCharCode(32 + random.int(95))],
      [1, String.fromCodePoint(random.int(0x2ffff))],
    ] as const);
  }
  return text;
}

/** A plausible string for an argument, by its name. */
function stringFor(random: Random, name: string): string {
  if (random.chance(random.noise)) return randomString(random);
  if (/namespace|^name$|^names$/.test(name)) return random.pick(NAMESPACES.slice(0, 5));
  if (/key|prefix/i.test(name)) return random.pick(KEYS.slice(0, 4));
  if (/scope/.test(name)) return random.pick(SCOPES.slice(0, 3));
  if (/agent|^id$/i.test(name)) return random.pick(AGENT_IDS.slice(0, 2));
  if (/after|cursor/.test(name)) return random.pick(['WyIxIl0', 'not-a-cursor', '']);
  return randomString(random);
}

const HUGE_NUMBERS = [2147483648, -2147483649, 9007199254740993, 1e308, -1e308, 1.7976931348623157e308, 5e-324, -0];

function randomJson(random: Random, depth = 0): unknown {
  const kind = random.int(depth > 3 ? 4 : 7);
  if (kind === 0) return null;
  if (kind === 1) return random.chance(0.3) ? random.pick(HUGE_NUMBERS) : random.int(1000) - 10;
  if (kind === 2) return random.chance(0.5);
  if (kind === 3) return randomString(random);
  if (kind === 4) return Array.from({ length: random.int(4) }, () => randomJson(random, depth + 1));
  const object: Record<string, unknown> = {};
  for (let i = random.int(4); i > 0; i--)
    object[random.chance(0.1) ? random.pick(['constructor', 'toString', '$where']) : stringFor(random, 'k')] = randomJson(
      random,
      depth + 1,
    );
  return object;
}

/** A JSON value as a GraphQL literal. */
function jsonLiteral(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(jsonLiteral).join(', ')}]`;
  if (value && typeof value === 'object') {
    const fields = Object.entries(value).filter(([name]) => /^[_A-Za-z][_0-9A-Za-z]*$/.test(name));
    return `{${fields.map(([name, inner]) => `${name}: ${jsonLiteral(inner)}`).join(', ')}}`;
  }
  if (typeof value === 'number') return Number.isFinite(value) ? String(value) : '0';
  return JSON.stringify(value);
}

/** A value for an input type, as JSON (for variables); mostly right, sometimes not. */
function inputValue(random: Random, type: GraphQLInputType, name: string, depth = 0): unknown {
  if (type instanceof GraphQLNonNull) return inputValue(random, type.ofType, name, depth);
  if (random.chance(random.noise / 6)) return random.pick([null, 'wrong', 42, [], {}, true]);
  if (type instanceof GraphQLList)
    return Array.from({ length: random.int(3) + (depth > 2 ? 0 : 1) }, () => inputValue(random, type.ofType, name, depth + 1));
  if (type instanceof GraphQLEnumType) return random.pick(type.getValues()).name;
  if (type instanceof GraphQLInputObjectType) {
    const fields = Object.values(type.getFields());
    // OperationInput wants exactly one of its fields.
    const chosen =
      type.name === 'OperationInput'
        ? [random.pick(fields)]
        : fields.filter((field) => field.type instanceof GraphQLNonNull || random.chance(0.4));
    return Object.fromEntries(depth > 4 ? [] : chosen.map((field) => [field.name, inputValue(random, field.type, field.name, depth + 1)]));
  }
  switch ((type as GraphQLScalarType).name) {
    case 'Int':
      return random.chance(random.noise / 2) ? random.pick(HUGE_NUMBERS) : random.pick([0, 1, 2, 5, 10, 100, -1, 1000]);
    case 'Float':
      return random.chance(random.noise / 2) ? random.pick(HUGE_NUMBERS) : random.int(1000) / 8 - 10;
    case 'Boolean':
      return random.chance(0.5);
    case 'JSON':
      return randomJson(random);
    case 'DateTime':
      return random.pick([new Date().toISOString(), '1970-01-01T00:00:00Z', '2999-12-31T23:59:59Z', 'yesterday', '2024-02-30T00:00:00Z']);
    case 'Revision':
      return random.pick(['0', '1', '100', String(2 ** 40), '9223372036854775807', '-1', 'x']);
    default:
      return stringFor(random, name);
  }
}

/** A value for an input type as a GraphQL literal: enum values as names, everything else as JSON would have it. */
function literalFor(type: GraphQLInputType, value: unknown): string {
  if (type instanceof GraphQLNonNull) return literalFor(type.ofType, value);
  if (type instanceof GraphQLList && Array.isArray(value)) return `[${value.map((item) => literalFor(type.ofType, item)).join(', ')}]`;
  if (type instanceof GraphQLEnumType && typeof value === 'string' && /^[_A-Za-z]\w*$/.test(value)) return value;
  if (type instanceof GraphQLInputObjectType && value && typeof value === 'object' && !Array.isArray(value)) {
    const fields = type.getFields();
    const parts = Object.entries(value).map(([name, inner]) => {
      const field = fields[name];
      return `${name}: ${field ? literalFor(field.type, inner) : jsonLiteral(inner)}`;
    });
    return `{${parts.join(', ')}}`;
  }
  return jsonLiteral(value);
}

// ---------------------------------------------------------------------------------------------
// Documents from the schema

const schema = buildSchema(readFileSync(new URL('../schema/schema.graphql', import.meta.url), 'utf8'));
const ROOTS = (['query', 'mutation', 'subscription'] as const).map((operation) => ({
  operation,
  fields: Object.values(
    (operation === 'query'
      ? schema.getQueryType()
      : operation === 'mutation'
        ? schema.getMutationType()
        : schema.getSubscriptionType()
    )?.getFields() ?? {},
  ),
}));

function selection(random: Random, type: GraphQLOutputType, depth: number): string {
  const named = getNamedType(type);
  if (!(named instanceof GraphQLObjectType)) return '';
  const fields = Object.values(named.getFields());
  const leaves = fields.filter((field) => !(getNamedType(field.type) instanceof GraphQLObjectType));
  const chosen = new Set<GraphQLField<unknown, unknown>>();
  for (let i = 1 + random.int(4); i > 0; i--)
    chosen.add(random.pick(depth > 2 || random.chance(0.6) ? (leaves.length ? leaves : fields) : fields));
  const parts = [...chosen].map(
    (field) => `${field.name}${argumentsOf(random, field.args, null)} ${selection(random, field.type, depth + 1)}`,
  );
  return `{ ${parts.join(' ')} }`;
}

/** `(a: 1, b: $v0)`; with `variables`, values go there as JSON and the document declares them. */
function argumentsOf(
  random: Random,
  args: readonly GraphQLArgument[],
  variables: { defs: string[]; values: Record<string, unknown> } | null,
): string {
  const given = args.filter((arg) => arg.type instanceof GraphQLNonNull || random.chance(0.35));
  if (given.length === 0) return '';
  const parts = given.map((arg) => {
    if (variables) {
      const name = `v${variables.defs.length}`;
      variables.defs.push(`$${name}: ${arg.type.toString()}`);
      variables.values[name] = inputValue(random, arg.type, arg.name);
      return `${arg.name}: $${name}`;
    }
    return `${arg.name}: ${literalFor(arg.type, inputValue(random, arg.type, arg.name))}`;
  });
  return `(${parts.join(', ')})`;
}

interface Operation {
  query: string;
  variables?: Record<string, unknown>;
  operationName?: string;
}

/** A well-formed operation of the schema: one to three root fields of one operation type, literals or variables. */

function operation(random: Random, kind?: 'query' | 'mutation' | 'subscription'): Operation {
  const root = kind
    ? (ROOTS.find((candidate) => candidate.operation === kind) as (typeof ROOTS)[number])
    : (random.weighted([
        [5, ROOTS[0]],
        [4, ROOTS[1]],
        [1, ROOTS[2]],
      ] as const) as (typeof ROOTS)[number]);
  const variables = random.chance(0.5) ? { defs: [] as string[], values: {} as Record<string, unknown> } : null;
  const count = root.operation === 'subscription' ? 1 : 1 + random.int(3);
  const fields: string[] = [];
  for (let i = 0; i < count; i++) {
    const field = random.pick(root.fields);
    const alias = i > 0 ? `f${i}: ` : '';
    fields.push(`${alias}${field.name}${argumentsOf(random, field.args, variables)} ${selection(random, field.type, 1)}`);
  }
  const name = random.chance(0.3) ? ` Op${random.int(100)}` : '';
  const defs = variables && variables.defs.length ? `(${variables.defs.join(', ')})` : '';
  const head = root.operation === 'query' && !name && !defs && random.chance(0.5) ? '' : `${root.operation}${name}${defs} `;
  return { query: `${head}{ ${fields.join(' ')} }`, ...(variables ? { variables: variables.values } : {}) };
}

// ---------------------------------------------------------------------------------------------
// Mutations of documents

const WRONG_LITERALS = [
  '"x"',
  '0',
  '-1',
  '99999999999999999999',
  '1e309',
  '-0.0',
  'null',
  'true',
  '[]',
  '{}',
  '[1, "a", null]',
  '{a: {b: [1]}}',
  '$nope',
  'SET',
  '"\\u0000"',
  '"\\uD800"',
  '"""block "" string"""',
  '"🙂"',
  `"${'z'.repeat(2_000)}"`,
];
const INSERTS = [
  '{',
  '}',
  '(',
  ')',
  '[',
  ']',
  ':',
  '$',
  '@',
  '!',
  '...',
  '=',
  '|',
  '&',
  'query',
  'mutation',
  'subscription',
  'fragment',
  'on',
  '__typename',
  '__schema',
  '@skip(if: true)',
  '#c\n',
  '"',
  '\\',
  ',',
];

function tokensOf(document: string): { start: number; end: number; kind: string }[] {
  const tokens: { start: number; end: number; kind: string }[] = [];
  try {
    const lexer = new Lexer(new Source(document));
    for (let token = lexer.advance(); token.kind !== TokenKind.EOF; token = lexer.advance()) tokens.push(token);
  } catch {
    // a document already broken by an earlier mutation: what was read is enough
  }
  return tokens;
}

function mutateDocument(random: Random, document: string): string {
  let text = document;
  for (let n = 1 + random.int(3); n > 0; n--) {
    const tokens = tokensOf(text);
    if (tokens.length === 0) break;
    const token = random.pick(tokens);
    const piece = text.slice(token.start, token.end);
    switch (random.int(9)) {
      case 0:
        text = text.slice(0, token.start) + text.slice(token.end);
        break;
      case 1:
        text = text.slice(0, token.end) + ` ${piece}` + text.slice(token.end);
        break;
      case 2: {
        const other = random.pick(tokens);
        const [first, second] = token.start < other.start ? [token, other] : [other, token];
        if (first.end <= second.start) {
          text =
            text.slice(0, first.start) +
            text.slice(second.start, second.end) +
            text.slice(first.end, second.start) +
            text.slice(first.start, first.end) +
            text.slice(second.end);
        }
        break;
      }
      case 3:
      case 4: {
        const literals = tokens.filter(
          (candidate) =>
            ['Int', 'Float', 'String', 'BlockString'].includes(candidate.kind) ||
            /^(true|false|null)$/.test(text.slice(candidate.start, candidate.end)),
        );
        const target = literals.length ? random.pick(literals) : token;
        text = text.slice(0, target.start) + random.pick(WRONG_LITERALS) + text.slice(target.end);
        break;
      }
      case 5:
        text = text.slice(0, token.start) + random.pick(INSERTS) + ' ' + text.slice(token.start);
        break;
      case 6: {
        const at = random.int(text.length + 1);
        text = text.slice(0, at) + randomString(random).slice(0, 20) + text.slice(at);
        break;
      }
      case 7:
        text = text.slice(0, random.int(text.length + 1));
        break;
      default: {
        const names = tokens.filter((candidate) => candidate.kind === 'Name');
        if (names.length) {
          const target = random.pick(names);
          const field = random.pick(random.pick(ROOTS).fields);
          text = text.slice(0, target.start) + (random.chance(0.7) ? field.name : `n${random.int(1e6)}`) + text.slice(target.end);
        }
      }
    }
  }
  return text;
}

function mutateVariables(random: Random, variables: Record<string, unknown> | undefined): unknown {
  if (random.chance(0.1)) return random.pick([null, 'variables', 42, [1, 2], true]);
  const result: Record<string, unknown> = { ...(variables ?? {}) };
  for (const name of Object.keys(result)) if (random.chance(0.5)) result[name] = randomJson(random);
  if (random.chance(0.2)) result[`extra${random.int(10)}`] = randomJson(random);
  return result;
}

/** Shapes that stress the server as a whole: aliases, depth, fragments, directives, size. */
function bomb(random: Random): Operation {
  const n = (max: number) => 1 + random.int(max);
  switch (random.int(10)) {
    case 0:
      return { query: `{ ${Array.from({ length: n(120) }, (_, i) => `a${i}: viewer { role }`).join(' ')} }` };
    case 1: {
      const depth = n(40);
      return { query: `{ __schema { types { ${'fields { type { ofType { '.repeat(depth)}name${' } } }'.repeat(depth)} } } }` };
    }
    case 2: {
      const depth = n(30);
      return { query: `{ viewer { ${'agent { '.repeat(depth)}id${' }'.repeat(depth)} } }` };
    }
    case 3: {
      const count = n(30);
      const fragments = Array.from(
        { length: count },
        (_, i) => `fragment F${i} on Query { viewer { role } ...F${random.chance(0.2) ? random.int(count) : i + 1} }`,
      );
      return { query: `{ ...F0 } ${fragments.join(' ')} fragment F${count} on Query { __typename }` };
    }
    case 4:
      return { query: `{ viewer ${'@include(if: true) '.repeat(n(60))}{ role } }` };
    case 5:
      return { query: `{ ${'viewer { role } '.repeat(n(800))} }` };
    case 6: {
      const count = n(20);
      const operations = Array.from({ length: count }, (_, i) => `query Q${i} { viewer { role } }`);
      return { query: operations.join(' '), operationName: `Q${random.int(count)}` };
    }
    case 7: {
      const depth = n(200);
      return { query: `{ entries(namespace: "fuzz", match: ${'['.repeat(depth)}1${']'.repeat(depth)}) { nodes { key } } }` };
    }
    case 8: {
      // Deeper than the parser's or the database's recursion would go.
      const depth = 3_000 + random.int(20_000);
      return random.chance(0.5)
        ? { query: `{ entries(namespace: "fuzz", match: ${'['.repeat(depth)}1${']'.repeat(depth)}) { nodes { key } } }` }
        : {
            query: 'mutation($v: JSON!) { setEntry(input: { namespace: "fuzz", key: "deep", value: $v }) { version } }',
            variables: { v: new RawJson(`${'['.repeat(depth)}1${']'.repeat(depth)}`) },
          };
    }
    default:
      // An operationName that names no operation of the document.
      return { query: '{ viewer { role } }', operationName: random.pick(['Nope', '', ' ', 'Q0']) };
  }
}

/** JSON text to send as it is: nested deeper than this process's own JSON.stringify could write. */
class RawJson {
  constructor(readonly text: string) {}
}

/** JSON.stringify, with RawJson values written as their text. */
function toJson(value: unknown): string {
  const raw: string[] = [];
  const text = JSON.stringify(value, (_key, inner) => (inner instanceof RawJson ? `\u0000raw${raw.push(inner.text) - 1}` : inner));
  return text.replace(/"\\u0000raw(\d+)"/g, (_match, index: string) => raw[Number(index)] as string);
}

// ---------------------------------------------------------------------------------------------
// Requests

interface Tokens {
  admin: string;
  agent: string;
  reader: string;
}

interface FuzzRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: string;
}

function authorization(random: Random, tokens: Tokens): string | undefined {
  return random.weighted([
    [60, `Bearer ${tokens.admin}`],
    [15, `Bearer ${tokens.agent}`],
    [10, `Bearer ${tokens.reader}`],
    [5, undefined],
    [2, `Bearer sh_${'A'.repeat(43)}`],
    [1, 'Bearer'],
    [1, `bearer ${tokens.admin}`],
    [1, `Basic ${Buffer.from('admin:admin').toString('base64')}`],
    [1, `Bearer ${tokens.admin} extra`],
    [1, `Bearer ${'x'.repeat(2_000)}`],
    [1, `Bearer ${tokens.admin.slice(0, -1)}`],
  ] as const);
}

/** A document: from the schema, mutated or not, or a bomb. */
function document(random: Random): Operation {
  const kind = random.weighted([
    [20, 'valid'],
    [55, 'mutated'],
    [15, 'variables'],
    [10, 'bomb'],
  ] as const);
  if (kind === 'bomb') return bomb(random);
  random.noise = kind === 'valid' ? 0.01 : 0.2;
  const op = operation(random);
  random.noise = 0.2;
  if (kind === 'mutated') {
    const query = mutateDocument(random, op.query);
    return { ...op, query };
  }
  if (kind === 'variables') return { ...op, variables: mutateVariables(random, op.variables) as Record<string, unknown> };
  return op;
}

/** Whether a document parses (the socket test below sends only documents that do not). */
function parses(query: string): boolean {
  try {
    parse(query);
    return true;
  } catch {
    return false;
  }
}

function httpRequest(random: Random, tokens: Tokens): FuzzRequest {
  const headers: Record<string, string> = {};
  const auth = authorization(random, tokens);
  if (auth !== undefined) headers.authorization = auth;
  const op = document(random);
  const json = toJson;
  const shape = random.weighted([
    [70, 'post'],
    [8, 'body'],
    [6, 'batch'],
    [6, 'content-type'],
    [7, 'get'],
    [3, 'method'],
  ] as const);
  headers.accept = random.weighted([
    [80, 'application/json'],
    [5, 'application/graphql-response+json'],
    [5, '*/*'],
    [3, 'multipart/mixed'],
    [2, 'image/png'],
    [2, 'text/html'],
    [3, 'application/json, text/event-stream;q=0.1'],
  ] as const);
  if (shape === 'get') {
    const params = new URLSearchParams({ query: op.query });
    if (op.variables && random.chance(0.7)) params.set('variables', json(op.variables));
    if (random.chance(0.2)) params.append('query', '{ viewer { role } }');
    if (op.operationName) params.set('operationName', op.operationName);
    if (random.chance(0.05)) params.set('operationName', 'NoSuchOperation');
    if (random.chance(0.1)) params.set(random.pick(['variables', 'extensions']), random.pick(['notjson', '{', '%7B']));
    let query = params.toString();
    if (random.chance(0.1)) query += random.pick(['&%ZZ=1', '&query', '&=', `&q=${'a'.repeat(20_000)}`]);
    return { method: 'GET', path: `/graphql?${random.chance(0.05) ? '' : query}`, headers };
  }
  if (shape === 'method') {
    const method = random.pick(['PUT', 'PATCH', 'DELETE', 'OPTIONS', 'HEAD']);
    return { method, path: '/graphql', headers, ...(method === 'HEAD' ? {} : { body: json(op) }) };
  }
  headers['content-type'] = 'application/json';
  if (shape === 'post') return { method: 'POST', path: '/graphql', headers, body: json(op) };
  if (shape === 'batch') {
    const items = Array.from({ length: random.int(25) }, () => document(random));
    return { method: 'POST', path: '/graphql', headers, body: json(items) };
  }
  if (shape === 'content-type') {
    const type = random.pick([
      'application/graphql',
      'text/plain',
      '',
      'application/x-www-form-urlencoded',
      'multipart/form-data; boundary=fuzz',
      'application/json; charset=latin1',
      'APPLICATION/JSON',
      'application/json; charset=utf-8',
    ]);
    if (type) headers['content-type'] = type;
    else delete headers['content-type'];
    const body =
      type === 'application/graphql'
        ? op.query
        : type === 'application/x-www-form-urlencoded'
          ? new URLSearchParams({ query: op.query }).toString()
          : type.startsWith('multipart')
            ? `--fuzz\r\nContent-Disposition: form-data; name="operations"\r\n\r\n${json(op)}\r\n--fuzz--\r\n`.slice(
                0,
                random.chance(0.3) ? random.int(60) : undefined,
              )
            : json(op);
    return { method: 'POST', path: '/graphql', headers, body };
  }
  // Bodies that are not a GraphQL request.
  const valid = json(op);
  const body = random.pick([
    () => valid.slice(0, random.int(valid.length)),
    () => random.pick(['null', '42', '"query"', 'true', '[]', '[[]]', '[null]', '{}', '']),
    () => json({ query: random.pick([42, null, ['{ viewer { role } }'], { query: '{}' }, true]) }),
    () => json({ ...op, variables: random.pick(['x', 42, [1], true]) }),
    () => json({ ...op, operationName: random.pick([42, ['a'], {}]) }),
    () => json({ ...op, extensions: random.pick(['x', 42, { persistedQuery: { version: 1, sha256Hash: 'abc' } }]) }),
    () => `{"__proto__": {"query": "{ viewer { role } }"}, "query": ${JSON.stringify(op.query)}}`,
    () => `{"query": "{ viewer { role } }", "query": ${JSON.stringify(op.query)}}`,
    () => Array.from({ length: random.int(200) }, () => String.fromCharCode(random.int(128))).join(''),
    () => `${valid}${valid}`,
    () => `\ufeff${valid}`,
  ])();
  return { method: 'POST', path: '/graphql', headers, body };
}

// ---------------------------------------------------------------------------------------------
// Judging answers

const BARE_STATUSES = new Set([406, 413, 415]);

/** GraphQL results carried by a body of `contentType`: JSON, an SSE stream or a multipart/mixed stream. */
function resultsOf(contentType: string, text: string): { results: { errors?: any[] }[]; unreadable?: string } {
  const parseJson = (part: string) => JSON.parse(part) as unknown;
  try {
    if (contentType.includes('json')) {
      const body = parseJson(text);
      return { results: (Array.isArray(body) ? body : [body]) as { errors?: any[] }[] };
    }
    if (contentType.includes('text/event-stream')) {
      const results = text
        .split(/\n\n/)
        .map((block) =>
          block
            .split('\n')
            .filter((line) => line.startsWith('data:'))
            .map((line) => line.slice(5).trim())
            .join('\n'),
        )
        .filter((data) => data.startsWith('{'))
        .map(parseJson);
      return { results: results as { errors?: any[] }[] };
    }
    if (contentType.includes('multipart/mixed')) {
      const results = text
        .split(/\r\n---?-?/)
        .map((part) => part.slice(part.indexOf('\r\n\r\n') + 4).trim())
        .filter((part) => part.startsWith('{') || part.startsWith('['))
        .flatMap((part) => parseJson(part) as unknown[]);
      return { results: results as { errors?: any[] }[] };
    }
  } catch {
    return { results: [], unreadable: `a ${contentType} body that does not parse: ${text.slice(0, 200)}` };
  }
  return { results: [] };
}

function judgeHttp(request: FuzzRequest, status: number, contentType: string, text: string): string[] {
  const problems: string[] = [];
  const echo = `${request.path} ${request.body ?? ''}`;
  if (status >= 500) problems.push(`HTTP ${status}`);
  if (contentType === 'thrown') return [`the in-process fetch threw: ${text.slice(0, 200)}`];
  if (contentType.startsWith('text/html')) {
    const leak = leakIn(text.replace(/<script[\s\S]*?<\/script>/g, ''), echo);
    if (status !== 200 || request.method !== 'GET') problems.push(`an HTML answer to ${request.method} with ${status}`);
    else if (/\bat \S+:\d+:\d+/.test(text) || leak?.startsWith('a stack')) problems.push(`HTML with ${leak}`);
    return problems;
  }
  if (!text) {
    if (!BARE_STATUSES.has(status) && request.method !== 'HEAD')
      problems.push(`HTTP ${status} with no GraphQL body (content type ${contentType || 'none'})`);
    return problems;
  }
  const { results, unreadable } = resultsOf(contentType, text);
  if (unreadable) problems.push(unreadable);
  // An empty batch answers [] (in JSON or as one multipart part), and a live subscription may have sent nothing yet.
  else if (results.length === 0 && request.body?.trim() !== '[]' && !(status === 200 && contentType.includes('event-stream'))) {
    const leak = leakIn(text, echo);
    problems.push(
      `HTTP ${status} ${contentType || 'without a content type'} with no GraphQL result${leak ? ` (${leak})` : ''}: ${text.slice(0, 120)}`,
    );
  }
  for (const result of results) {
    if (result === null || typeof result !== 'object') {
      problems.push(`a result that is not an object: ${JSON.stringify(result)?.slice(0, 80)}`);
      continue;
    }
    problems.push(...errorProblems(result.errors, echo));
    if (status >= 400 && !result.errors?.length && !BARE_STATUSES.has(status)) problems.push(`HTTP ${status} without errors`);
  }
  return problems;
}

/** The body text, or what arrived of a stream before `streamMs`; null when not even the headers came by the deadline. */
async function exchange(
  gw: Gateway,
  request: FuzzRequest,
  streamMs = 150,
): Promise<{ status: number; contentType: string; text: string } | null> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<null>((resolve) => {
    timer = setTimeout(() => resolve(null), DEADLINE_MS);
  });
  const answer = (async () => {
    const response = await gw.app.fetch(`http://localhost${request.path}`, {
      method: request.method,
      headers: request.headers,
      body: request.body,
    });
    const contentType = response.headers.get('content-type') ?? '';
    if (!/event-stream|multipart\/mixed/.test(contentType)) return { status: response.status, contentType, text: await response.text() };
    // A stream (a subscription, or incremental delivery) stays open: judge what came within streamMs.
    const reader = response.body?.getReader();
    const decoder = new TextDecoder();
    let text = '';
    const until = Date.now() + streamMs;
    while (reader && Date.now() < until) {
      const chunk = await Promise.race([
        reader.read(),
        new Promise<null>((resolve) => setTimeout(() => resolve(null), until - Date.now())),
      ]);
      if (chunk === null || chunk.done) break;
      text += decoder.decode(chunk.value, { stream: true });
    }
    // Not awaited: cancelling may wait for the subscription's next event.
    void reader?.cancel().catch(() => {});
    return { status: response.status, contentType, text };
  })();
  try {
    return await Promise.race([answer, deadline]);
  } catch (error) {
    return { status: 0, contentType: 'thrown', text: String(error) };
  } finally {
    clearTimeout(timer);
  }
}

const describeRequest = (request: FuzzRequest) =>
  `${request.method} ${request.path.slice(0, 200)} ${JSON.stringify(request.headers)} ${(request.body ?? '').slice(0, 300)}`;

/** Problems per kind, each with its first few cases, so a failure reads as a bug list. */
class Findings {
  private readonly byKind = new Map<string, string[]>();
  count = 0;
  /** How the cases were answered (data, or the first error code, or the status): a fuzzer that only ever hits the parser tests little. */
  readonly outcomes = new Map<string, number>();
  tally(status: number, text: string): void {
    const code = /"code":"([A-Z_]+)"/.exec(text)?.[1];
    const outcome = code ?? (/"data":\{/.test(text) ? 'data' : `HTTP ${status}`);
    this.outcomes.set(outcome, (this.outcomes.get(outcome) ?? 0) + 1);
  }
  add(kind: string, example: string): void {
    this.count++;
    const key = kind.replace(/\d{4,}/g, 'N').slice(0, 160);
    const examples = this.byKind.get(key) ?? [];
    if (examples.length < 3) examples.push(example);
    this.byKind.set(key, examples);
  }
  report(): Record<string, string[]> {
    return Object.fromEntries(this.byKind);
  }
}

/**
 * The status of a GET over a connection of its own (`agent: false`: a new socket, `Connection: close`).
 * Not fetch: its pool keeps the socket of the last check alive, and client and server share this event
 * loop. When a long stretch without a turn of the loop (a run of in-process cases) outlasts both
 * keep-alive timers (undici's 3 s, the server's 5 s), fetch writes on the pooled socket before either
 * fires; then the server's timer fires before the server reads the request and closes the socket with it
 * unread: ECONNRESET (seen on PGlite in CI). `Connection: close` on fetch would still pick the pooled
 * socket. A fresh connection checks the same (accepts, answers 200) and still fails on a dead server.
 */
function statusOverFreshConnection(url: URL): Promise<number> {
  return new Promise((resolve, reject) => {
    const request = httpGet(url, { agent: false, timeout: DEADLINE_MS }, (response) => {
      response.resume();
      resolve(response.statusCode ?? 0);
    });
    request.on('timeout', () => request.destroy(new Error(`no answer from ${url} within ${DEADLINE_MS} ms`)));
    request.on('error', reject);
  });
}

async function pool<T>(items: readonly T[], concurrency: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < items.length) await work(items[next++] as T);
    }),
  );
}

// ---------------------------------------------------------------------------------------------
// Sockets

const SOCKET_CLOSE_OK = new Set([1000, 1001, 1005, 1006, 4400, 4401, 4403, 4406, 4408, 4409, 4413, 4429]);

function judgeFrames(socket: RawSocket, sent: string): string[] {
  const problems: string[] = [];
  for (const frame of socket.frames) {
    if (frame.type === 'error') problems.push(...errorProblems(frame.payload, sent));
    else if (frame.type === 'next') problems.push(...errorProblems(frame.payload?.errors, sent));
  }
  if (socket.garbage.length) problems.push(`frames that are not JSON: ${socket.garbage[0]?.slice(0, 80)}`);
  return problems;
}

async function judgeClose(socket: RawSocket, sent: string): Promise<string[]> {
  if (socket.isOpen()) return [];
  const { code, reason } = await socket.closed;
  const problems: string[] = [];
  if (!SOCKET_CLOSE_OK.has(code)) problems.push(`closed with ${code} (${reason.slice(0, 100)})`);
  const leak = leakIn(reason, sent);
  if (leak) problems.push(`close reason with ${leak}`);
  return problems;
}

// ---------------------------------------------------------------------------------------------

describe(`fuzz (seed ${SEED}; replay with FUZZ_SEED=${SEED}, ${backend})`, () => {
  let gw: Gateway;
  const tokens: Tokens = { admin: '', agent: '', reader: '' };

  beforeAll(async () => {
    gw = await startGateway();
    // Everything happens in a tenant of its own: what the fuzzer writes or configures stays there.
    tokens.admin = (await gw.ok(ADMIN_TOKEN, 'mutation { createTenant(name: "fuzz") { token } }')).createTenant.token;
    const admin = (query: string, variables?: Record<string, unknown>) => gw.ok(tokens.admin, query, variables);
    await admin('mutation { createNamespace(input: { name: "fuzz" }) { name } }');
    await admin('mutation($schema: JSON) { createNamespace(input: { name: "typed", schema: $schema, historyLimit: 3 }) { name } }', {
      schema: { type: 'object', properties: { n: { type: 'number' } }, required: ['n'] },
    });
    tokens.agent = (
      await admin(
        'mutation { registerAgent(input: { id: "fuzz-agent", name: "fuzz", type: "worker", stateNamespaces: ["fuzz"] }) { token } }',
      )
    ).registerAgent.token;
    tokens.reader = (await admin('mutation { createToken(input: { name: "fuzz-reader", role: READER }) { token } }')).createToken.token;
    await admin('mutation { setEntry(input: { namespace: "fuzz", key: "k", value: { n: 1 } }) { version } }');
  });

  afterAll(async () => {
    await gw?.close();
  });

  /** Runs `count` HTTP cases in-process; returns the findings. */
  async function fuzzHttp(count: number): Promise<Findings> {
    const findings = new Findings();
    const indexes = Array.from({ length: count }, (_, i) => i);
    await pool(indexes, 8, async (index) => {
      // A turn of the event loop per case. In-process on PGlite nothing waits for I/O: without it the cases
      // run as one chain of microtasks, and no timer (each case's deadline, the server's own) fires for
      // the whole run (89 s seen), then all fire at once, and a deadline can end a case whose answer had
      // begun (a stream waiting for its own 150 ms timer).
      await new Promise((resolve) => setImmediate(resolve));
      const request = httpRequest(randomFor('http', index), tokens);
      const answer = await exchange(gw, request);
      const label = `#${index} ${describeRequest(request)}`;
      if (answer === null) findings.add(`no answer within ${DEADLINE_MS} ms`, label);
      else findings.tally(answer.status, answer.text);
      if (answer)
        for (const problem of judgeHttp(request, answer.status, answer.contentType, answer.text))
          findings.add(problem, `${label} → ${answer.status} ${answer.text.slice(0, 300)}`);
    });
    return findings;
  }

  /** The gateway still answers as it should: HTTP, health, readiness and a socket. */
  async function expectHealthy(): Promise<void> {
    expect((await gw.ok(ADMIN_TOKEN, '{ viewer { tenant role } }')).viewer).toEqual({ tenant: 'default', role: 'ADMIN' });
    const written = await gw.ok(
      ADMIN_TOKEN,
      'mutation { setEntry(input: { namespace: "common", key: "after-fuzz", value: 1 }) { version } }',
    );
    expect(written.setEntry.version).toBeGreaterThan(0);
    expect((await gw.ok(ADMIN_TOKEN, '{ entry(namespace: "common", key: "after-fuzz") { value } }')).entry).toEqual({ value: 1 });
    for (const path of ['/health', '/ready']) expect(await statusOverFreshConnection(new URL(path, gw.url)), path).toBe(200);
    const socket = await openRawSocket(gw.wsUrl);
    socket.send({ type: 'connection_init', payload: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(await socket.waitFor((frame) => frame.type === 'connection_ack')).not.toBeNull();
    socket.send({ id: 'q', type: 'subscribe', payload: { query: '{ viewer { role } }' } });
    expect(await socket.waitFor((frame) => frame.type === 'next')).toMatchObject({ payload: { data: { viewer: { role: 'ADMIN' } } } });
    socket.close();
  }

  it(
    `answers ${HTTP_CASES} random and mutated requests in-process with no 5xx, foreign code, stack, SQL or hang`,
    { timeout: 300_000 },
    async () => {
      const findings = await fuzzHttp(HTTP_CASES);
      expect(findings.report(), `${findings.count} problems in ${HTTP_CASES} cases (seed ${SEED})`).toEqual({});
      // The cases reach the resolvers, not just the parser: answers with data, and the domain's own refusals.
      const outcomes = Object.fromEntries(findings.outcomes);
      expect(outcomes.data ?? 0, JSON.stringify(outcomes)).toBeGreaterThan(HTTP_CASES * 0.03);
      for (const code of ['BAD_USER_INPUT', 'FORBIDDEN', 'NOT_FOUND', 'UNAUTHENTICATED'])
        expect(outcomes[code] ?? 0, code).toBeGreaterThan(0);
      await expectHealthy();
    },
  );

  it(`answers ${SSE_CASES} mutated subscriptions and queries over a real SSE connection in kind`, { timeout: 120_000 }, async () => {
    const findings = new Findings();
    const indexes = Array.from({ length: SSE_CASES }, (_, i) => i);
    await pool(indexes, 8, async (index) => {
      const random = randomFor('sse', index);
      const op = random.chance(0.7) ? operation(random, 'subscription') : operation(random);
      const mutated = random.chance(0.6) ? { ...op, query: mutateDocument(random, op.query) } : op;
      const auth = authorization(random, tokens);
      const get = random.chance(0.3);
      const headers: Record<string, string> = { accept: 'text/event-stream', ...(auth ? { authorization: auth } : {}) };
      if (!get) headers['content-type'] = 'application/json';
      const params = new URLSearchParams({
        query: mutated.query,
        ...(mutated.variables ? { variables: JSON.stringify(mutated.variables) } : {}),
      });
      const request: FuzzRequest = get
        ? { method: 'GET', path: `/graphql?${params}`, headers }
        : { method: 'POST', path: '/graphql', headers, body: JSON.stringify(mutated) };
      // The answer must start within the deadline; a stream is then read for 800 ms (a live subscription never ends).
      const abort = new AbortController();
      let timer = setTimeout(() => abort.abort(), DEADLINE_MS);
      let status = 0;
      let contentType = '';
      let text = '';
      try {
        const response = await fetch(new URL(request.path, gw.url), {
          method: request.method,
          headers,
          body: request.body,
          signal: abort.signal,
        });
        status = response.status;
        contentType = response.headers.get('content-type') ?? '';
        clearTimeout(timer);
        timer = setTimeout(() => abort.abort(), 800);
        for await (const chunk of response.body ?? []) text += Buffer.from(chunk).toString('utf8');
      } catch (error) {
        if (!abort.signal.aborted) findings.add(`the SSE request failed: ${String(error).slice(0, 100)}`, describeRequest(request));
      } finally {
        clearTimeout(timer);
      }
      if (status === 0) {
        findings.add(`no SSE answer within ${DEADLINE_MS} ms`, `#${index} ${describeRequest(request)}`);
        return;
      }
      // A stream cut at the deadline may end inside an event: judge only whole ones.
      const whole = text.slice(0, text.lastIndexOf('\n\n') + 2);
      for (const problem of judgeHttp(request, status, contentType, whole || text)) {
        findings.add(problem, `#${index} ${describeRequest(request)} → ${status} ${text.slice(0, 300)}`);
      }
    });
    expect(findings.report(), `${findings.count} problems (seed ${SEED})`).toEqual({});
    await expectHealthy();
  });

  it(
    `answers ${SOCKETS * MESSAGES_PER_SOCKET} mutated subscribe messages on real sockets without an internal close`,
    { timeout: 120_000 },
    async () => {
      const findings = new Findings();
      await pool(
        Array.from({ length: SOCKETS }, (_, i) => i),
        8,
        async (index) => {
          const random = randomFor('ws', index);
          const socket = await openRawSocket(gw.wsUrl);
          const sent: string[] = [];
          try {
            // Not the agent's token: the HTTP fuzz may have deregistered it.
            socket.send({ type: 'connection_init', payload: { authorization: `Bearer ${random.pick([tokens.admin, tokens.reader])}` } });
            if (!(await socket.waitFor((frame) => frame.type === 'connection_ack'))) {
              findings.add('no connection_ack', `socket #${index}`);
              return;
            }
            for (let m = 0; m < MESSAGES_PER_SOCKET; m++) {
              let op = random.chance(0.6) ? operation(random, 'subscription') : operation(random);
              if (random.chance(0.6)) op = { ...op, query: mutateDocument(random, op.query) };
              if (random.chance(0.2)) {
                // Variables that are not an object break the protocol (4400): the garbage test sends those.
                const variables = mutateVariables(random, op.variables);
                const isObject = variables !== null && typeof variables === 'object' && !Array.isArray(variables);
                op = { ...op, variables: isObject ? (variables as Record<string, unknown>) : {} };
              }
              const payload = { query: op.query, ...(op.variables ? { variables: op.variables } : {}) };
              sent.push(JSON.stringify(payload));
              socket.send({ id: `s${m}`, type: 'subscribe', payload });
            }
            await new Promise((resolve) => setTimeout(resolve, 500));
            const echo = sent.join('\n');
            const label = `socket #${index}: ${echo.slice(0, 600)}`;
            for (const problem of judgeFrames(socket, echo)) findings.add(problem, label);
            for (const problem of await judgeClose(socket, echo)) findings.add(problem, label);
            if (!socket.isOpen())
              findings.add('the socket closed on well-formed subscribe messages', `${label} ${JSON.stringify(await socket.closed)}`);
          } finally {
            socket.close();
          }
        },
      );
      expect(findings.report(), `${findings.count} problems (seed ${SEED})`).toEqual({});
      await expectHealthy();
    },
  );

  it(
    'answers protocol garbage on real sockets with a protocol close (44xx) or an error, never an internal one',
    { timeout: 120_000 },
    async () => {
      const findings = new Findings();
      await pool(
        Array.from({ length: 120 }, (_, i) => i),
        6,
        async (index) => {
          const random = randomFor('ws-frames', index);
          const protocol = random.chance(0.9) ? 'graphql-transport-ws' : random.pick(['graphql-ws', 'nope']);
          const socket = await openRawSocket(gw.wsUrl, protocol).catch(() => null);
          // Refusing the handshake of another subprotocol is fine.
          if (!socket) return;
          const sent: string[] = [];
          const frame = (value: unknown) => {
            const text = typeof value === 'string' ? value : JSON.stringify(value);
            sent.push(text);
            socket.sendText(text);
          };
          try {
            if (random.chance(0.8)) {
              frame({
                type: 'connection_init',
                payload: random.pick([
                  { authorization: `Bearer ${tokens.admin}` },
                  { authorization: `Bearer ${tokens.agent}` },
                  { Authorization: `Bearer ${tokens.reader}` },
                  { authorization: 42 },
                  { authorization: ['Bearer', tokens.admin] },
                  null,
                  'token',
                  {},
                ]),
              });
            }
            for (let m = 1 + random.int(6); m > 0; m--) {
              const op = operation(random, random.chance(0.5) ? 'subscription' : undefined);
              frame(
                random.pick([
                  () => ({ type: 'subscribe', id: `x${random.int(3)}`, payload: op }),
                  () => ({ type: 'subscribe', payload: op }),
                  () => ({ type: 'subscribe', id: 42, payload: op }),
                  () => ({ type: 'subscribe', id: 'p', payload: { query: random.pick([42, null, {}, ['q']]) } }),
                  () => ({ type: 'subscribe', id: 'v', payload: { query: op.query, variables: random.pick(['x', 42, [1]]) } }),
                  () => ({ type: 'complete', id: random.pick(['x0', 'never', 42]) }),
                  () => ({ type: random.pick(['ping', 'pong']), payload: randomJson(random) }),
                  () => ({ type: random.pick(['start', 'stop', 'connection_terminate', 'next', 'error', '', 'CONNECTION_INIT']) }),
                  () => ({ type: 'connection_init', payload: {} }),
                  () => random.pick(['{', 'null', '42', '"subscribe"', '[]', '', '{"type": null}', '\u0000']),
                  () =>
                    `{"type":"subscribe","id":"big","payload":{"query":"{ viewer { role } }","variables":{"v":"${'b'.repeat(200_000)}"}}}`,
                ])(),
              );
            }
            await socket.waitFor(() => false, 600);
            const echo = sent.join('\n');
            const label = `socket #${index}: ${echo.slice(0, 600)}`;
            for (const problem of judgeFrames(socket, echo)) findings.add(problem, label);
            for (const problem of await judgeClose(socket, echo)) findings.add(problem, label);
          } finally {
            socket.close();
          }
        },
      );
      expect(findings.report(), `${findings.count} problems (seed ${SEED})`).toEqual({});
      await expectHealthy();
    },
  );

  it('answers subscribe messages whose documents do not parse with BAD_USER_INPUT, and keeps the socket', async () => {
    const socket = await openRawSocket(gw.wsUrl);
    socket.send({ type: 'connection_init', payload: { authorization: `Bearer ${tokens.admin}` } });
    await socket.waitFor((frame) => frame.type === 'connection_ack');
    for (let index = 0; index < 50; index++) {
      const random = randomFor('ws-unparsable', index);
      const op = operation(random, 'subscription');
      let query = op.query;
      while (parses(query)) query = mutateDocument(random, query);
      socket.send({ id: `u${index}`, type: 'subscribe', payload: { query } });
    }
    await socket.waitFor(() => false, 1_000);
    expect(await judgeClose(socket, '')).toEqual([]);
    expect(socket.isOpen()).toBe(true);
    const errors = socket.frames.filter((frame) => frame.type === 'error');
    expect(errors).toHaveLength(50);
    for (const frame of errors) expect(frame.payload[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    socket.close();
  });
});
