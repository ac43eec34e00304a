import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import type { GraphQLErrorBody } from './graphql.js';

/**
 * What a model should do about each error code of the contract (API.md §3), so that a tool error
 * can be recovered from without a human: the code first, then the gateway's message, then this.
 */
const ADVICE: Record<string, (extensions: Record<string, unknown>) => string> = {
  UNAUTHENTICATED: () => 'The token is unknown or revoked: this session has ended; a new token is needed.',
  FORBIDDEN: () =>
    'This token may not do that here, or the namespace does not exist for it: call list_namespaces to see what it can read and write; retrying will not help.',
  NOT_FOUND: () => 'Nothing by that id exists: check the id (list_agents, list_namespaces) and call again.',
  BAD_USER_INPUT: (x) => `Fix the argument${typeof x.field === 'string' ? ` \`${x.field}\`` : ''} and call again.`,
  VERSION_CONFLICT: (x) =>
    `The entry changed since you read it (current version ${String(x.currentVersion)}): read it again with get_entry, re-apply your change to the value you read, and retry with expectedVersion ${String(x.currentVersion)}.`,
  VALIDATION_FAILED: (x) =>
    `The value breaks the namespace's JSON Schema${typeof x.path === 'string' ? ` at ${x.path || '/'}` : ''}${typeof x.reason === 'string' ? ` (${x.reason})` : ''}: fix the value and call again; nothing was written.`,
  PAYLOAD_TOO_LARGE: (x) =>
    `Too large${x.limit !== undefined ? ` (limit ${String(x.limit)})` : ''}: store less, or split it over several keys.`,
  QUOTA_EXCEEDED: () => "The tenant's storage quota is full: delete entries that are no longer needed, or ask an admin to raise the quota.",
  RATE_LIMITED: () => 'Too many requests for this token: wait a second and retry.',
  REVISION_COMPACTED: (x) =>
    `That history was compacted${x.oldestRevision !== undefined ? `; the oldest revision kept is ${String(x.oldestRevision)}` : ''}: ask for later revisions.`,
  QUERY_TOO_COMPLEX: () => 'The request is over a limit of the gateway: ask for less (a smaller `first`) and call again.',
};

/** The code of a GraphQL error, or INTERNAL_SERVER_ERROR for a masked one. */
export const codeOf = (error: GraphQLErrorBody | undefined): string =>
  typeof error?.extensions?.code === 'string' ? error.extensions.code : 'INTERNAL_SERVER_ERROR';

/** One line a model can act on: `CODE: message. advice`. */
export function describeError(error: GraphQLErrorBody | undefined): string {
  const code = codeOf(error);
  const message = error?.message ?? 'Unexpected error';
  const advice = ADVICE[code]?.(error?.extensions ?? {}) ?? 'The gateway failed unexpectedly: retry later.';
  return `${code}: ${message.replace(/\.?$/, '.')} ${advice}`;
}

/**
 * A tool error: the text above. No structured content: clients check it against the tool's output
 * schema, which describes success.
 */
export function toolError(errors: readonly GraphQLErrorBody[]): CallToolResult {
  return { isError: true, content: [{ type: 'text', text: describeError(errors[0]) }] };
}
