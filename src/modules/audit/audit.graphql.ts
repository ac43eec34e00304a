import {
  type ExecutionArgs,
  type ExecutionResult,
  type FieldNode,
  getArgumentValues,
  type GraphQLError,
  type GraphQLField,
  Kind,
} from 'graphql';
import type { Plugin } from 'graphql-yoga';
import type { Context } from '../../context.js';
import { actorOf } from '../../auth/principal.js';
import { builder } from '../../graphql/builder.js';
import { contractError } from '../../graphql/errors.js';
import { perOperation } from '../../graphql/per-operation.js';
import { Role } from '../tokens/tokens.graphql.js';
import type { AuditEvent } from './audit.service.js';
import { refusedTo } from '../../graphql/refusals.js';
import { GLOBAL_SCOPE } from '../../domain/names.js';

const AuditOutcomeEnum = builder.enumType('AuditOutcome', {
  description: 'How an audited operation ended',
  values: {
    ALLOWED: { description: 'It ran: it succeeded, or failed for a reason other than a refusal (detail.code says which)' },
    DENIED: { description: 'The caller was refused: FORBIDDEN, UNAUTHENTICATED, RATE_LIMITED, QUOTA_EXCEEDED or QUERY_TOO_COMPLEX' },
  } as const,
});

const AuditEventRef = builder.objectRef<AuditEvent>('AuditEvent').implement({
  description: 'One record of the audit log: who did what to what, and how it ended. Never holds a token or a value',
  fields: (t) => ({
    id: t.exposeID('id', { description: 'Increasing: a later record has a larger id' }),
    at: t.expose('at', { type: 'DateTime', description: 'When it happened' }),
    actor: t.exposeString('actor', { nullable: true, description: 'An agent id, or admin:<token name> / reader:<token name>' }),
    role: t.field({ type: Role, nullable: true, description: "The actor's role", resolve: (event) => event.role }),
    action: t.exposeString('action', {
      description: 'The root field: a mutation, read for a read of sensitive values, or auditDropped when refusals went unrecorded',
    }),
    target: t.exposeString('target', { nullable: true, description: 'namespace/scope/key, a namespace, or an id' }),
    outcome: t.expose('outcome', { type: AuditOutcomeEnum, description: 'Whether it ran or was refused' }),
    detail: t.expose('detail', { type: 'JSON', nullable: true, description: 'The error code and, when denied, the reason' }),
  }),
});

builder.queryFields((t) => ({
  auditLog: t.withAuth({ admin: true }).field({
    type: [AuditEventRef],
    description:
      "The tenant's audit log, newest first: every mutation, every refused operation with its reason, and every read of a sensitive namespace's values (once per operation and namespace). Records are written within about 20 ms. ADMIN only",
    args: {
      actor: t.arg.string({ description: 'Only records of this actor' }),
      action: t.arg.string({ description: 'Only records of this action (a root field, or read)' }),
      outcome: t.arg({ type: AuditOutcomeEnum, description: 'Only ALLOWED or only DENIED records' }),
      since: t.arg({ type: 'DateTime', description: 'Only records from this time on' }),
      first: t.arg.int({ defaultValue: 100, description: 'How many, 1 to 1000' }),
    },
    unauthorizedError: refusedTo('read the audit log'),
    resolve: (_root, args, context) => context.services.audit.list(context.principal.tenantId, args),
  }),
}));

/** A root field of an operation: its selection, what the audit log calls it, its response key and its definition. */
interface RootField {
  selection: FieldNode;
  action: string;
  key: string;
  definition: GraphQLField<unknown, unknown> | undefined;
}

interface AuditPlan {
  mutation: boolean;
  fields: RootField[];
}

/** Codes that mean the caller was refused, rather than that the operation failed. */
const DENIALS = new Set(['FORBIDDEN', 'UNAUTHENTICATED', 'RATE_LIMITED', 'QUOTA_EXCEEDED', 'QUERY_TOO_COMPLEX']);

/** The error as its caller was answered: an error nested too deeply, say, is QUERY_TOO_COMPLEX, not internal. */
function answerOf(error: GraphQLError): { code: string; message: string } {
  const answer = contractError(error);
  return answer ? { code: String(answer.extensions.code), message: answer.message } : { code: 'INTERNAL_SERVER_ERROR', message: '' };
}

/** Names the thing a root field acts on from its arguments — ids and names only, never values. */
function targetOfArguments(args: Record<string, unknown>): string | null {
  const input = (typeof args.input === 'object' && args.input !== null ? args.input : args) as Record<string, unknown>;
  if (Array.isArray(input.operations)) {
    const namespaces = new Set<string>();
    for (const operation of input.operations as Record<string, { namespace?: unknown } | null>[]) {
      for (const part of Object.values(operation ?? {})) if (typeof part?.namespace === 'string') namespaces.add(part.namespace);
    }
    return [...namespaces].join(',') || null;
  }
  const place = [
    input.namespace ?? input.name,
    input.key === undefined ? undefined : (input.scope ?? GLOBAL_SCOPE),
    input.key,
    input.agentId,
    input.id,
  ];
  const parts = place.filter((part): part is string => typeof part === 'string' && part.length > 0);
  return parts.length > 0 ? parts.join('/').slice(0, 1_000) : null;
}

/**
 * Records every mutation, and every operation refused (FORBIDDEN, UNAUTHENTICATED, limits), with
 * the caller, the root field, its target and the outcome. A refused operation is one record however
 * many fields it asked for (the first refused field names it; `refusedFields` counts them), and a
 * token's refusals are bounded per minute (see AuditLog.recordRefusal): a hostile client cannot bury
 * the log under its own refusals. Callers without a valid token belong to no tenant, so their
 * refusals are not in any tenant's log.
 */
export function useAuditTrail(): Plugin<Context> {
  /** What recording needs of an operation, worked out once per parsed document. */
  const planOf = perOperation((args, operation): AuditPlan | null => {
    if (!operation) return null;
    const rootType = args.schema.getRootType(operation.operation);
    return {
      mutation: operation.operation === 'mutation',
      fields: operation.selectionSet.selections
        .filter((selection): selection is FieldNode => selection.kind === Kind.FIELD && !selection.name.value.startsWith('__'))
        .map((selection) => ({
          selection,
          action: selection.name.value,
          key: selection.alias?.value ?? selection.name.value,
          definition: rootType?.getFields()[selection.name.value],
        })),
    };
  });

  function recordResult(args: ExecutionArgs, result: ExecutionResult): void {
    const { principal, services } = args.contextValue as Context;
    if (!principal) return;
    const plan = planOf(args);
    // A query or subscription is recorded only when refused.
    if (!plan || (!plan.mutation && !result.errors?.length)) return;
    const errors = new Map<string, GraphQLError>();
    let operationError: GraphQLError | undefined;
    for (const error of result.errors ?? []) {
      const root = error.path?.[0];
      if (typeof root === 'string') errors.set(root, error);
      else operationError ??= error;
    }
    const targetOf = ({ selection, definition }: RootField): string | null => {
      try {
        return definition ? targetOfArguments(getArgumentValues(definition, selection, args.variableValues ?? {})) : null;
      } catch {
        // arguments that do not coerce were refused before execution: no target to name
        return null;
      }
    };
    const event = { tenantId: principal.tenantId, actor: actorOf(principal), role: principal.role };
    let refused: { field: RootField; answer: { code: string; message: string } } | undefined;
    let refusedFields = 0;
    // A mutation's fields run one after another, and a failed non-null one ends the operation with
    // data null: the fields after it never ran, so they are neither allowed nor refused.
    let halted = false;
    for (const field of plan.fields) {
      const error = errors.get(field.key) ?? operationError;
      if (!error && halted) continue;
      if (error && !result.data) halted = true;
      const answer = error ? answerOf(error) : undefined;
      if (answer !== undefined && DENIALS.has(answer.code)) {
        refused ??= { field, answer };
        refusedFields++;
        continue;
      }
      if (!plan.mutation) continue;
      services.audit.record({
        ...event,
        action: field.action,
        target: targetOf(field),
        outcome: 'ALLOWED',
        detail: answer ? { code: answer.code } : null,
      });
    }
    if (!refused) return;
    services.audit.recordRefusal(principal.tokenId, {
      ...event,
      action: refused.field.action,
      target: targetOf(refused.field),
      outcome: 'DENIED',
      detail: { code: refused.answer.code, reason: refused.answer.message, refusedFields },
    });
  }

  return {
    onExecute: () => ({
      onExecuteDone: ({ args, result }) => {
        if (!(Symbol.asyncIterator in result)) recordResult(args, result);
      },
    }),
    onSubscribe: () => ({
      onSubscribeResult: ({ args, result }) => {
        if (!(Symbol.asyncIterator in result)) recordResult(args, result);
      },
    }),
  };
}

const audited = new WeakMap<Context, Set<string>>();

/** Records, once per operation and namespace, that the caller read values of a sensitive namespace. */
export function auditSensitiveRead(context: Context, namespace: string): void {
  const { principal } = context;
  if (!principal) return;
  let seen = audited.get(context);
  if (!seen) audited.set(context, (seen = new Set()));
  if (seen.has(namespace)) return;
  seen.add(namespace);
  context.services.audit.record({
    tenantId: principal.tenantId,
    actor: actorOf(principal),
    role: principal.role,
    action: 'read',
    target: namespace,
    outcome: 'ALLOWED',
    detail: { sensitive: true },
  });
}
