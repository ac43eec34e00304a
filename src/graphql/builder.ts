import SchemaBuilder from '@pothos/core';
import ScopeAuthPlugin from '@pothos/plugin-scope-auth';
import type { Principal } from '../auth/principal.js';
import type { Context } from '../context.js';
import { badInput, forbidden, notFound } from '../domain/errors.js';
import { checkNamespace } from '../domain/names.js';
import { refusal } from './refusals.js';

export interface PothosTypes {
  Context: Context;
  AuthScopes: {
    authenticated: boolean;
    admin: boolean;
    agent: boolean;
    /** The bootstrap admin token of tenant `default`. */
    bootstrap: boolean;
    namespaceRead: string;
    namespaceWrite: string;
    /** Every one of these namespaces (a commit's). */
    namespacesRead: readonly string[];
    namespacesWrite: readonly string[];
  };
  AuthContexts: {
    authenticated: Context & { principal: Principal };
    admin: Context & { principal: Principal };
    agent: Context & { principal: Principal & { agentId: string } };
    bootstrap: Context & { principal: Principal };
    namespaceRead: Context & { principal: Principal };
    namespaceWrite: Context & { principal: Principal };
    namespacesRead: Context & { principal: Principal };
    namespacesWrite: Context & { principal: Principal };
  };
  Scalars: {
    JSON: { Input: unknown; Output: unknown };
    DateTime: { Input: Date; Output: Date };
    Revision: { Input: string; Output: string };
  };
  DefaultFieldNullability: false;
}

/** PothosTypes with Pothos's defaults filled in: what field builders are typed with (for shared field helpers). */
export type SchemaTypes = PothosSchemaTypes.ExtendDefaultTypes<PothosTypes>;

/**
 * The namespace scopes carry the access rule. A name that breaks the naming rule is the caller's
 * mistake (BAD_USER_INPUT); an admin or reader asking for a namespace that does not exist gets
 * NOT_FOUND; an agent gets FORBIDDEN for a missing namespace exactly as for a forbidden one.
 */
async function namespaceScope(context: Context, name: string, needed: 'READ' | 'WRITE'): Promise<boolean> {
  if (typeof name !== 'string') throw badInput('namespace', 'namespace is required');
  checkNamespace(name);
  const { principal } = context;
  if (!principal) return false;
  const permission = await context.services.access.permission(principal, name);
  if (permission === null && principal.role !== 'AGENT') throw notFound(`Namespace ${name} does not exist`);
  // A namespace the caller can read is no secret: say why it may not write there.
  if (permission === 'READ' && needed === 'WRITE') {
    throw forbidden(principal.role === 'READER' ? 'READER tokens cannot write' : `This agent may read ${name} but not write it`);
  }
  return permission !== null;
}

export const builder = new SchemaBuilder<PothosTypes>({
  plugins: [ScopeAuthPlugin],
  defaultFieldNullability: false,
  scopeAuth: {
    authorizeOnSubscribe: true,
    unauthorizedError: (_parent, context, info, result) => refusal(context, info, result.failure),
    authScopes: (context) => ({
      authenticated: context.principal !== null,
      admin: context.principal?.role === 'ADMIN',
      agent: context.principal?.role === 'AGENT' && context.principal.agentId !== null,
      bootstrap: context.principal?.bootstrap === true,
      namespaceRead: (name) => namespaceScope(context, name, 'READ'),
      namespaceWrite: (name) => namespaceScope(context, name, 'WRITE'),
      namespacesRead: async (names) => (await Promise.all(names.map((name) => namespaceScope(context, name, 'READ')))).every(Boolean),
      namespacesWrite: async (names) => (await Promise.all(names.map((name) => namespaceScope(context, name, 'WRITE')))).every(Boolean),
    }),
  },
});

builder.queryType({
  description:
    'Reads. Every field needs a token, sent as the header `Authorization: Bearer <token>` (on a WebSocket, as `connectionParams: { authorization: "Bearer <token>" }`); without a valid one it is UNAUTHENTICATED (schema introspection needs none). Nothing of another tenant is ever visible. A namespace the caller cannot reach is FORBIDDEN; to an agent, a namespace that does not exist answers the same (to ADMIN and READER tokens, NOT_FOUND)',
});
builder.mutationType({
  description: 'Writes. A mutation that fails changes nothing. Every mutation of a valid token is recorded in the audit log',
});
builder.subscriptionType({
  description:
    'Live events, over WebSocket (graphql-ws, subprotocol graphql-transport-ws) or Server-Sent Events (`Accept: text/event-stream` on /graphql). A subscription ends with FORBIDDEN when its caller loses access to what it watches, and with UNAUTHENTICATED when its token is revoked',
});
