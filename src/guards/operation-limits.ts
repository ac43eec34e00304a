import { costLimitRule } from '@escape.tech/graphql-armor-cost-limit';
import { maxAliasesRule } from '@escape.tech/graphql-armor-max-aliases';
import { maxDepthRule } from '@escape.tech/graphql-armor-max-depth';
import {
  type DocumentNode,
  type ExecutionArgs,
  type ExecutionResult,
  GraphQLError,
  type GraphQLSchema,
  Kind,
  NoSchemaIntrospectionCustomRule,
  type SelectionSetNode,
  type ValidationContext,
  validate,
  visit,
} from 'graphql';
import type { Plugin } from 'graphql-yoga';
import type { Context } from '../context.js';
import { StatehouseError } from '../domain/errors.js';
import { toGraphQLError } from '../graphql/errors.js';
import { defaultConfig, type TenantConfig } from '../modules/tenants/config.service.js';
import { isBatched } from './request-limits.js';
import { DEFAULT_ACTIVE_WINDOW_SECONDS } from '../domain/values.js';

type Limits = TenantConfig['limits'];

/**
 * graphql-armor's depth, alias and cost rules with one tenant's limits; introspection is exempt.
 * They throw on the first limit exceeded.
 */
function complexityRules(limits: Limits) {
  const common = { propagateOnRejection: true, exposeLimits: true };
  return {
    shape: [
      maxDepthRule({ ...common, n: limits.maxDepth, ignoreIntrospection: true, flattenFragments: true }),
      maxAliasesRule({ ...common, n: limits.maxAliases }),
    ],
    cost: [costLimitRule({ ...common, maxCost: limits.maxCost, ignoreIntrospection: true })],
  };
}

/**
 * The document the cost rule sees: without `first`/`last`, which graphql-armor multiplies a field's
 * cost by. Every list here is already capped (pages at 1,000), and the multiplier would refuse the
 * contract's own `changes(first: 1000)` under the default cost of 5,000 (and only when written
 * literally, not as a variable).
 */
const withoutPageSizes = (document: DocumentNode): DocumentNode =>
  visit(document, { Argument: (node) => (node.name.value === 'first' || node.name.value === 'last' ? null : undefined) });

function firstViolation(schema: GraphQLSchema, document: DocumentNode, limits: Limits): GraphQLError | null {
  const rules = complexityRules(limits);
  try {
    validate(schema, document, rules.shape);
    validate(schema, withoutPageSizes(document), rules.cost);
    return null;
  } catch (error) {
    if (error instanceof GraphQLError) return error;
    throw error;
  }
}

/**
 * A subscription's root field may not be conditional (@skip, @include): graphql-js 16 either throws
 * inside validation (a variable condition) or leaves the subscription no field to run (an internal
 * error). graphql-js 17 refuses the same.
 */
function UnconditionalSubscriptionRule(context: ValidationContext) {
  const seen = new Set<string>();
  const check = (selectionSet: SelectionSetNode): void => {
    for (const selection of selectionSet.selections) {
      const conditional = selection.directives?.some((directive) => ['skip', 'include'].includes(directive.name.value));
      if (conditional) {
        context.reportError(
          new GraphQLError('The root field of a subscription cannot be conditional (@skip or @include)', {
            nodes: selection,
            extensions: { code: 'BAD_USER_INPUT' },
          }),
        );
      } else if (selection.kind === Kind.INLINE_FRAGMENT) check(selection.selectionSet);
      else if (selection.kind === Kind.FRAGMENT_SPREAD && !seen.has(selection.name.value)) {
        seen.add(selection.name.value);
        const fragment = context.getFragment(selection.name.value);
        if (fragment) check(fragment.selectionSet);
      }
    }
  };
  return {
    OperationDefinition(node: { operation: string; selectionSet: SelectionSetNode }) {
      if (node.operation === 'subscription') check(node.selectionSet);
    },
  };
}

const tooComplex = (error: GraphQLError) => new StatehouseError('QUERY_TOO_COMPLEX', error.message.replace(/^Syntax Error: /, ''));

/**
 * Per-operation guards that need the caller's tenant, so they run once the context exists (graphql-js
 * validation runs before it): the token's rate limit, then the tenant's depth, alias and cost limits.
 * Verdicts are cached per parsed document (Yoga reuses the parsed document of a repeated query) and
 * per limits, so a hot query is checked once.
 */
export function useOperationLimits(): Plugin<Context> {
  const verdicts = new WeakMap<DocumentNode, Map<string, StatehouseError | null>>();
  const anonymous = defaultConfig(DEFAULT_ACTIVE_WINDOW_SECONDS);

  function complexity(args: ExecutionArgs, limits: Limits): StatehouseError | null {
    const key = `${limits.maxDepth}/${limits.maxAliases}/${limits.maxCost}`;
    let byLimits = verdicts.get(args.document);
    if (!byLimits) verdicts.set(args.document, (byLimits = new Map()));
    let verdict = byLimits.get(key);
    if (verdict === undefined) {
      const violation = firstViolation(args.schema, args.document, limits);
      verdict = violation ? tooComplex(violation) : null;
      byLimits.set(key, verdict);
    }
    return verdict;
  }

  /** The first limit the operation passes, if any: a subscription also may not be part of a batch. */
  async function refusal(args: ExecutionArgs, subscription: boolean): Promise<StatehouseError | null> {
    if (subscription && isBatched((args.contextValue as { request?: Request }).request)) {
      return new StatehouseError('BAD_USER_INPUT', 'A subscription cannot be part of a batched request', { field: 'body' });
    }
    const { principal, services } = args.contextValue as Context;
    const config = principal ? await services.config.get(principal.tenantId) : anonymous;
    const perSecond = config.rateLimit.perTokenPerSecond;
    if (principal && perSecond !== null) {
      // The budget is the process's own, or the one the workers of a port share (see rate-limiter.ts).
      const taken = services.rateLimits.take(principal.tokenId, perSecond);
      const waitMs = typeof taken === 'number' ? taken : await taken;
      if (waitMs > 0) {
        return new StatehouseError('RATE_LIMITED', `More than ${perSecond} operations a second for this token`, {
          retryAfterMs: waitMs,
          limit: perSecond,
        });
      }
    }
    return complexity(args, config.limits);
  }

  const guard =
    (subscription: boolean) =>
    async ({ args, setResultAndStopExecution }: { args: ExecutionArgs; setResultAndStopExecution: (result: ExecutionResult) => void }) => {
      const error = await refusal(args, subscription);
      if (error) setResultAndStopExecution({ errors: [toGraphQLError(error)] });
    };

  return {
    // graphql-js gives up on a document whose field merging or fragments take too much work to
    // check ("Validation aborted."): a query too complex, not a malformed one.
    onValidate: ({ addValidationRule }) => {
      addValidationRule(UnconditionalSubscriptionRule);
      return ({ result, setResult }) => {
        if (result.some((error) => error.message === 'Validation aborted.')) {
          setResult([toGraphQLError(new StatehouseError('QUERY_TOO_COMPLEX', 'The query takes too much work to validate'))]);
        }
      };
    },
    onExecute: guard(false),
    onSubscribe: guard(true),
  };
}

/** Refuses `__schema` and `__type` (STATEHOUSE_INTROSPECTION=false): the schema stays private to the operator. */
export const withoutIntrospection = (): Plugin => ({
  onValidate: ({ addValidationRule }) => addValidationRule(NoSchemaIntrospectionCustomRule),
});
