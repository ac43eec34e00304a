import { type AuthFailure, AuthScopeFailureType } from '@pothos/plugin-scope-auth';
import type { GraphQLResolveInfo } from 'graphql';
import type { Context } from '../context.js';
import { forbidden, type StatehouseError, unauthenticated, unreachableNamespace } from '../domain/errors.js';

/** The scopes that failed, through `$any` / `$all` groups. */
function failedScopes(failure: AuthFailure): string[] {
  switch (failure.kind) {
    case AuthScopeFailureType.AuthScope:
      return [failure.scope];
    case AuthScopeFailureType.AnyAuthScopes:
    case AuthScopeFailureType.AllAuthScopes:
      return failure.failures.flatMap(failedScopes);
    default:
      return [];
  }
}

/**
 * Why a field was refused, in words that teach the caller what it may do and reveal nothing it may
 * not learn. A namespace scope fails here only for a namespace the agent cannot see (one it can
 * read but not write is refused with its reason by the scope itself): that answer is the same
 * whether the namespace exists or not. `action` says what the field does ("create namespaces").
 */
export function refusal(context: Context, info: GraphQLResolveInfo, failure: AuthFailure, action?: string): StatehouseError {
  const { principal } = context;
  if (!principal) return unauthenticated(context.unauthenticatedReason);
  const scopes = failedScopes(failure);
  if (scopes.some((scope) => scope.startsWith('namespace'))) return unreachableNamespace();
  const what = action ?? `use ${info.fieldName}`;
  if (scopes.includes('bootstrap')) return forbidden(`Only the bootstrap admin token of tenant default may ${what}`);
  switch (principal.role) {
    case 'READER':
      return forbidden(info.operation.operation === 'mutation' ? 'READER tokens cannot write' : `READER tokens cannot ${what}`);
    case 'AGENT':
      return forbidden(`Agents cannot ${what}`);
    case 'ADMIN':
      // Only the reports an agent makes about itself are closed to admins.
      return forbidden(`Admin tokens do not ${what} (an agent reports as itself)`);
  }
}

/** A field's `unauthorizedError` that names what it does: `refusedTo('create namespaces')`. */
export const refusedTo =
  (action: string) => (_parent: unknown, _args: unknown, context: Context, info: GraphQLResolveInfo, result: { failure: AuthFailure }) =>
    refusal(context, info, result.failure, action);
