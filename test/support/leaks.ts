import { CONTRACT_CODES } from './contract.js';

/**
 * What must never reach a client (API.md §3): stack frames, source paths, SQL and the database's
 * own messages. Checked against error messages and extensions only — data holds whatever was stored.
 */
const INTERNALS: { what: string; pattern: RegExp }[] = [
  { what: 'a stack frame', pattern: /\bat (?:async )?[\w$.<>[\]]+ \(|\bat \S+:\d+:\d+|\n\s+at \S/g },
  { what: 'a source path', pattern: /node_modules|\/src\/|\/work\/|file:\/\/|\.[cm]?[jt]s:\d+/g },
  // "select " alone would flag graphql-js's own "must select only one top level field".
  {
    what: 'SQL text',
    pattern: /\bselect\b[^.;]{0,120}\bfrom\b|\binsert into\b|\bdelete from\b|\bupdate \w+ set\b|\bon conflict\b|\$\d+::|\bpg_[a-z_]+\(/gi,
  },
  {
    what: 'a PostgreSQL message',
    pattern:
      /syntax error at|relation "|violates|invalid input syntax|out of range for type|duplicate key|sqlstate|postgres|pglite|drizzle|unsupported unicode escape|invalid byte sequence/gi,
  },
];

/**
 * The first internal detail in `text`, as "what: match", unless the request itself holds the same
 * text (graphql-js quotes a caller's wrong literal back, which is not a leak); null when clean.
 */
export function leakIn(text: string, request = ''): string | null {
  const echoed = request.toLowerCase();
  for (const { what, pattern } of INTERNALS) {
    for (const match of text.matchAll(pattern)) {
      if (!echoed.includes(match[0].toLowerCase())) return `${what}: ${JSON.stringify(match[0])}`;
    }
  }
  return null;
}

export interface ErrorLike {
  message?: unknown;
  extensions?: Record<string, unknown>;
}

/** What is wrong with a list of GraphQL errors: a missing or foreign code, or an internal detail; [] when fine. */
export function errorProblems(errors: readonly ErrorLike[] | undefined, request = ''): string[] {
  const problems: string[] = [];
  for (const error of errors ?? []) {
    const code = error.extensions?.code;
    if (typeof code !== 'string' || !CONTRACT_CODES.includes(code)) problems.push(`code ${JSON.stringify(code)} is not one of API.md §3`);
    const leak = leakIn(JSON.stringify({ message: error.message, extensions: error.extensions }), request);
    if (leak) problems.push(leak);
  }
  return problems;
}
