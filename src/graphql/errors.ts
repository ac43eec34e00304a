import { type DocumentNode, GraphQLError, type GraphQLErrorOptions, Kind, parse, visit } from 'graphql';
import type { Plugin } from 'graphql-yoga';
import { sqlState } from '../db/client.js';
import { StatehouseError } from '../domain/errors.js';
import type { Logger } from '../logger.js';

/** SQLSTATEs of text or JSON the database cannot store: untranslatable character, bad escape, invalid text. */
const UNSTORABLE_INPUT = new Set(['22P05', '22021', '22P02', '22025']);

/** Request-level failures of Yoga and graphql-js: the caller's to fix, so BAD_USER_INPUT in the contract's terms. */
const REQUEST_ERROR_CODES = new Set([
  undefined,
  'GRAPHQL_PARSE_FAILED',
  'GRAPHQL_VALIDATION_FAILED',
  'BAD_REQUEST',
  'BAD_USER_INPUT',
  'OPERATION_RESOLUTION_FAILURE',
]);

/** The argument or input field whose value starts at each position of a document (the innermost, where several do). */
function fieldsByPosition(document: DocumentNode): Map<number, string> {
  const fields = new Map<number, string>();
  visit(document, {
    enter(node) {
      if ((node.kind === Kind.ARGUMENT || node.kind === Kind.OBJECT_FIELD) && node.value.loc)
        fields.set(node.value.loc.start, node.name.value);
    },
  });
  return fields;
}

/** The fields of the document an error is about, parsed from its source: a document that does not parse has none. */
function fieldsOfSource(error: GraphQLError): Map<number, string> {
  try {
    return error.source ? fieldsByPosition(parse(error.source)) : new Map();
  } catch {
    return new Map();
  }
}

/**
 * The input field a request error is about. graphql-js names it in variable errors (`… at
 * "input.expectedVersion"`, `Field "value" of required type …`, `Variable "$first" …`); for a bad
 * literal, the field is the argument or input field whose value sits at the error's position.
 */
function fieldOf(error: GraphQLError, fieldsAt: () => Map<number, string> = () => fieldsOfSource(error)): string | undefined {
  const { message } = error;
  // Yoga's checks of the request's body and parameters.
  if (message.startsWith('POST body ') || message.startsWith('Expected params ')) return 'body';
  if (message === 'Must provide query string.') return 'query';
  const parameter = /^Expected "(\w+)" param|^Unexpected parameter "(\w+)"/.exec(message);
  if (parameter) return parameter[1] ?? parameter[2];
  const missing = /Field "([A-Za-z_]\w*)" of required type/.exec(message)?.[1];
  if (missing) return missing;
  const path = /\bat "([^"]+)"/.exec(message)?.[1];
  if (path)
    return path
      .replace(/\[\d+\]/g, '')
      .split('.')
      .at(-1);
  for (const pattern of [/^Argument "([A-Za-z_]\w*)"/, /^Variable "\$([A-Za-z_]\w*)"/]) {
    const named = pattern.exec(message)?.[1];
    if (named) return named;
  }
  const position = error.positions?.[0];
  return position === undefined ? undefined : fieldsAt().get(position);
}

/**
 * Validation errors never reach the masking step: name their code and field as they are produced.
 * The errors are copied, not changed: graphql-js shares some (its "Validation aborted." is one
 * object for every request), and Yoga caches validation results. An error that already has a code
 * of the contract (QUERY_TOO_COMPLEX from a cached result) keeps it.
 */
export function useRequestErrorCodes(): Plugin {
  return {
    onValidate:
      ({ params }) =>
      ({ valid, result, setResult }) => {
        if (valid) return;
        let fields: Map<number, string> | undefined;
        setResult(
          result.map((error) => {
            if (!REQUEST_ERROR_CODES.has(error.extensions.code as string | undefined)) return error;
            // From the validated document, once for all its errors, rather than parsing its text again for each.
            const field = fieldOf(error, () => (fields ??= fieldsByPosition(params.documentAST)));
            return new GraphQLError(error.message, {
              nodes: error.nodes,
              source: error.source,
              positions: error.positions,
              path: error.path,
              originalError: error.originalError,
              extensions: { ...error.extensions, code: 'BAD_USER_INPUT', ...(field ? { field } : {}) },
            });
          }),
        );
      },
  };
}

/** A domain error as the client sees it: its message and the contract's code with details. */
export const toGraphQLError = (error: StatehouseError, location: GraphQLErrorOptions = {}) =>
  new GraphQLError(error.message, { ...location, extensions: { code: error.code, ...error.details } });

const locationOf = (error: GraphQLError | undefined): GraphQLErrorOptions =>
  error ? { nodes: error.nodes, source: error.source, positions: error.positions, path: error.path } : {};

/**
 * An error as the client is answered (API.md §3): domain errors with the contract's
 * `extensions.code`, errors of the request itself (syntax, validation, variables) as BAD_USER_INPUT
 * naming the field, and the known failures of the input as their codes. Undefined for anything
 * else: an internal error, which the client sees masked.
 */
export function contractError(error: unknown): GraphQLError | undefined {
  const graphQLError = error instanceof GraphQLError ? error : undefined;
  const original = graphQLError ? graphQLError.originalError : error;
  const location = locationOf(graphQLError);
  if (original instanceof StatehouseError) {
    return toGraphQLError(original, location);
  }
  if (graphQLError && !graphQLError.path && REQUEST_ERROR_CODES.has(graphQLError.extensions?.code as string | undefined)) {
    const field = graphQLError.extensions?.field ?? fieldOf(graphQLError);
    // Yoga marks a body that is not JSON and missing parameters `spec`, and then answers them with 200
    // when the client accepts application/json; GraphQL over HTTP says 400 for both media types.
    const { spec: _, ...http } = (graphQLError.extensions?.http ?? {}) as { spec?: boolean };
    return new GraphQLError(graphQLError.message, {
      ...location,
      extensions: { code: 'BAD_USER_INPUT', ...(field ? { field } : {}), ...(Object.keys(http).length > 0 ? { http } : {}) },
    });
  }
  if (graphQLError && (!original || original instanceof GraphQLError)) return graphQLError;
  if (original instanceof RangeError && /call stack/i.test(original.message)) {
    // A document or JSON nested thousands deep exhausts the parser's recursion before any limit can count it.
    return new GraphQLError('The document or its variables are nested too deeply', {
      ...location,
      extensions: { code: 'QUERY_TOO_COMPLEX' },
    });
  }
  if (original instanceof SyntaxError && !graphQLError?.path) {
    // JSON.parse of a request parameter (GET variables or extensions).
    return new GraphQLError('A request parameter is not valid JSON', { ...location, extensions: { code: 'BAD_USER_INPUT' } });
  }
  if (sqlState(original) === '23503') {
    // A write raced the deletion of its namespace: the namespace is gone, as a later request would find.
    return new GraphQLError('The namespace does not exist', { ...location, extensions: { code: 'NOT_FOUND' } });
  }
  if (UNSTORABLE_INPUT.has(sqlState(original) ?? '')) {
    // Text PostgreSQL cannot hold (e.g. U+0000) that no specific check caught: still the caller's input.
    return new GraphQLError('The input holds characters that cannot be stored', { ...location, extensions: { code: 'BAD_USER_INPUT' } });
  }
  return undefined;
}

/** Answers with contractError, and masks everything else: no stack, SQL or secret reaches a client. */
export function createMaskError(logger: Logger) {
  return (error: unknown, message: string): Error => {
    const answer = contractError(error);
    if (answer) return answer;
    const graphQLError = error instanceof GraphQLError ? error : undefined;
    const original = graphQLError ? graphQLError.originalError : error;
    // The cause carries the database's own message (drizzle wraps it); logged, never sent.
    logger.error(
      { err: original, cause: original instanceof Error ? original.cause : undefined, path: graphQLError?.path },
      'unexpected error',
    );
    return new GraphQLError(message, { ...locationOf(graphQLError), extensions: { code: 'INTERNAL_SERVER_ERROR' } });
  };
}
