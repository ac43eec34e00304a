import type { Principal } from '../auth/principal.js';
import type { Context } from '../context.js';
import { unauthenticated } from '../domain/errors.js';

/** The caller, in resolvers whose auth scopes already required one. */
export function principalOf(context: Context): Principal {
  if (!context.principal) throw unauthenticated(context.unauthenticatedReason);
  return context.principal;
}
