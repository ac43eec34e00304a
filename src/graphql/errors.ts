import { GraphQLError } from 'graphql';
import { StatehouseError } from '../domain/errors.js';
import type { Logger } from '../logger.js';

/**
 * Turns domain errors into GraphQL errors with the contract's `extensions.code`, keeps GraphQL's
 * own errors (syntax, validation), and masks everything else: no stack, SQL or secret reaches a client.
 */
export function createMaskError(logger: Logger) {
  return (error: unknown, message: string): Error => {
    const graphQLError = error instanceof GraphQLError ? error : undefined;
    const original = graphQLError ? graphQLError.originalError : error;
    const location = graphQLError
      ? { nodes: graphQLError.nodes, source: graphQLError.source, positions: graphQLError.positions, path: graphQLError.path }
      : {};
    if (original instanceof StatehouseError) {
      return new GraphQLError(original.message, { ...location, extensions: { code: original.code, ...original.details } });
    }
    if (graphQLError && (!original || original instanceof GraphQLError)) {
      const inner = original instanceof GraphQLError ? original : graphQLError;
      // Errors of the request itself (syntax, validation, variables) are the caller's to fix.
      if (!inner.extensions?.code && !graphQLError.path) {
        return new GraphQLError(graphQLError.message, { ...location, extensions: { ...graphQLError.extensions, code: 'BAD_USER_INPUT' } });
      }
      return graphQLError;
    }
    logger.error({ err: original, path: graphQLError?.path }, 'unexpected error');
    return new GraphQLError(message, { ...location, extensions: { code: 'INTERNAL_SERVER_ERROR' } });
  };
}
