import {
  type DocumentNode,
  type ExecutionArgs,
  type ExecutionResult,
  type GraphQLInputType,
  type GraphQLNamedType,
  type GraphQLScalarType,
  type GraphQLSchema,
  isEnumType,
  isInputObjectType,
  isInputType,
  isListType,
  isNonNullType,
  Kind,
  type OperationDefinitionNode,
  type SelectionSetNode,
  typeFromAST,
  type ValueNode,
  valueFromAST,
} from 'graphql';
import type { Plugin } from 'graphql-yoga';
import { StatehouseError } from '../domain/errors.js';
import { isStorableText } from '../domain/names.js';
import { toGraphQLError } from '../graphql/errors.js';
import { perOperation } from '../graphql/per-operation.js';

/** A variable used where text can go: in a root field's argument, an input field, a list or a JSON value. */
interface Site {
  variable: string;
  /** The type where it is used: its value is walked by it. */
  type: GraphQLInputType;
  /** The argument or input field it is the value of (or, inside a JSON value, that holds the JSON). */
  field: string;
  /** What to refuse when the request leaves the variable out and its default is unstorable. */
  byDefault: Finding | null;
}

/**
 * What an operation needs checked on each request: the sites of its variables, or, when a literal of
 * the document itself holds unstorable text, its refusal; null when there is nothing to check.
 */
type Verdict = Site[] | StatehouseError | null;

const SCALARS_WITHOUT_TEXT = new Set(['Int', 'Float', 'Boolean']);
const NO_VARIABLES: Readonly<Record<string, unknown>> = Object.freeze({});

const isPlainObject = (value: unknown): value is Record<string, unknown> => {
  if (typeof value !== 'object' || value === null) return false;
  const prototype = Object.getPrototypeOf(value);
  return prototype === Object.prototype || prototype === null;
};

const isContainer = (value: unknown): value is object => Array.isArray(value) || isPlainObject(value);

/**
 * JSON values nested deeper than this are refused: reading one back (serializing, sealing, replaying)
 * would recurse as deep, and past the call stack a stored value could no longer be read at all.
 */
export const MAX_JSON_DEPTH = 100;

type Problem = 'text' | 'depth';

/**
 * What makes a scalar's value unstorable: text the database cannot hold (the string itself, or any
 * key or string inside a JSON value), or JSON nested beyond MAX_JSON_DEPTH; null when nothing.
 * Iterative, as a JSON variable may be nested deeper than the call stack.
 */
function problemIn(value: unknown): Problem | null {
  if (typeof value === 'string') return isStorableText(value) ? null : 'text';
  if (!isContainer(value)) return null;
  const pending: [object, number][] = [[value, 1]];
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    const [container, depth] = next;
    if (depth > MAX_JSON_DEPTH) return 'depth';
    if (Array.isArray(container)) {
      for (const item of container as unknown[]) {
        if (typeof item === 'string') {
          if (!isStorableText(item)) return 'text';
        } else if (isContainer(item)) pending.push([item, depth + 1]);
      }
    } else {
      for (const key in container) {
        if (!isStorableText(key)) return 'text';
        const item = (container as Record<string, unknown>)[key];
        if (typeof item === 'string') {
          if (!isStorableText(item)) return 'text';
        } else if (isContainer(item)) pending.push([item, depth + 1]);
      }
    }
  }
  return null;
}

interface Finding {
  field: string;
  problem: Problem;
}

const refusal = ({ field, problem }: Finding) =>
  new StatehouseError(
    'BAD_USER_INPUT',
    problem === 'text'
      ? `${field} must not contain U+0000 or unpaired surrogates`
      : `${field} is nested deeper than ${MAX_JSON_DEPTH} levels`,
    { field, ...(problem === 'depth' ? { limit: MAX_JSON_DEPTH } : {}) },
  );

/**
 * Refuses text PostgreSQL cannot store — U+0000 and lone UTF-16 surrogates — in any argument, input
 * field or JSON value (keys included) of a root field, as BAD_USER_INPUT naming the innermost
 * argument or input field that holds it. Without this, such text reached the database, which
 * refused it with an error that names no field, or silently stored a lone surrogate as U+FFFD.
 * JSON nested deeper than MAX_JSON_DEPTH is refused the same way, naming its field.
 *
 * The document's own literals are checked once per parsed document and operation (Yoga reuses the
 * parsed document of a repeated query), which also finds where its variables can carry text; a
 * request then walks only the values of those variables.
 */
export function useInputCheck(): Plugin {
  const textual = new WeakMap<GraphQLNamedType, boolean>();

  function canHoldText(type: GraphQLInputType): boolean {
    while (isNonNullType(type) || isListType(type)) type = type.ofType;
    const known = textual.get(type);
    if (known !== undefined) return known;
    if (isEnumType(type)) return false;
    if (!isInputObjectType(type)) return !SCALARS_WITHOUT_TEXT.has(type.name);
    textual.set(type, false); // an input type that refers to itself adds nothing while it is being worked out
    const result = Object.values(type.getFields()).some((field) => canHoldText(field.type));
    textual.set(type, result);
    return result;
  }

  /** The innermost argument or input field whose value (a variable's, as sent) holds unstorable text or too deep JSON. */
  function unstorableIn(value: unknown, type: GraphQLInputType, field: string): Finding | null {
    if (value === null || value === undefined) return null;
    if (isNonNullType(type)) type = type.ofType;
    if (isListType(type)) {
      // A single value where a list is expected is coerced into a list of one.
      if (!Array.isArray(value)) return unstorableIn(value, type.ofType, field);
      for (const item of value) {
        const found = unstorableIn(item, type.ofType, field);
        if (found) return found;
      }
      return null;
    }
    if (isInputObjectType(type)) {
      if (!isPlainObject(value)) return null;
      const fields = type.getFields();
      // In the order the request gives them, so that the first offending field is named.
      for (const name in value) {
        const inner = Object.hasOwn(fields, name) ? fields[name] : undefined;
        if (!inner || !canHoldText(inner.type)) continue;
        const found = unstorableIn(value[name], inner.type, name);
        if (found) return found;
      }
      return null;
    }
    if (isEnumType(type)) return null;
    const problem = problemIn(value);
    return problem ? { field, problem } : null;
  }

  function plan(schema: GraphQLSchema, document: DocumentNode, operation: OperationDefinitionNode): Verdict {
    const rootType = schema.getRootType(operation.operation);
    if (!rootType) return null;
    const rootFields = rootType.getFields();
    const sites: Site[] = [];

    const defaultFound = (variable: string, type: GraphQLInputType, field: string): Finding | null => {
      const definition = operation.variableDefinitions?.find((candidate) => candidate.variable.name.value === variable);
      if (!definition?.defaultValue) return null;
      const declared = typeFromAST(schema, definition.type);
      return declared && isInputType(declared) ? unstorableIn(valueFromAST(definition.defaultValue, declared), type, field) : null;
    };
    const addSite = (variable: string, type: GraphQLInputType, field: string) =>
      sites.push({ variable, type, field, byDefault: defaultFound(variable, type, field) });

    /** A literal of a scalar that holds text (String, ID, JSON…): the first unstorable string or too deep a value; its variables become sites. */
    const scalarLiteral = (node: ValueNode, type: GraphQLScalarType, field: string, depth = 0): Finding | null => {
      if (depth > MAX_JSON_DEPTH) return { field, problem: 'depth' };
      switch (node.kind) {
        case Kind.VARIABLE:
          addSite(node.name.value, type, field);
          return null;
        case Kind.STRING:
          return isStorableText(node.value) ? null : { field, problem: 'text' };
        case Kind.LIST:
          for (const item of node.values) {
            const found = scalarLiteral(item, type, field, depth + 1);
            if (found) return found;
          }
          return null;
        case Kind.OBJECT:
          for (const inner of node.fields) {
            const found = scalarLiteral(inner.value, type, field, depth + 1);
            if (found) return found;
          }
          return null;
        default:
          return null;
      }
    };

    /** An argument's or input field's literal, walked by its type. */
    const literal = (node: ValueNode, type: GraphQLInputType, field: string): Finding | null => {
      if (node.kind === Kind.VARIABLE) {
        addSite(node.name.value, type, field);
        return null;
      }
      if (node.kind === Kind.NULL) return null;
      if (isNonNullType(type)) type = type.ofType;
      if (isListType(type)) {
        if (node.kind !== Kind.LIST) return literal(node, type.ofType, field);
        for (const item of node.values) {
          const found = literal(item, type.ofType, field);
          if (found) return found;
        }
        return null;
      }
      if (isInputObjectType(type)) {
        if (node.kind !== Kind.OBJECT) return null;
        const fields = type.getFields();
        for (const inner of node.fields) {
          const definition = Object.hasOwn(fields, inner.name.value) ? fields[inner.name.value] : undefined;
          const found = definition && canHoldText(definition.type) ? literal(inner.value, definition.type, definition.name) : null;
          if (found) return found;
        }
        return null;
      }
      if (isEnumType(type) || !canHoldText(type)) return null;
      return scalarLiteral(node, type, field);
    };

    const seenFragments = new Set<string>();
    const collect = (selectionSet: SelectionSetNode): Finding | null => {
      for (const selection of selectionSet.selections) {
        let found: Finding | null = null;
        if (selection.kind === Kind.FIELD) {
          const definition = Object.hasOwn(rootFields, selection.name.value) ? rootFields[selection.name.value] : undefined;
          for (const argument of selection.arguments ?? []) {
            const argumentDefinition = definition?.args.find((candidate) => candidate.name === argument.name.value);
            if (argumentDefinition && canHoldText(argumentDefinition.type)) {
              found = literal(argument.value, argumentDefinition.type, argumentDefinition.name);
              if (found) break;
            }
          }
        } else if (selection.kind === Kind.INLINE_FRAGMENT) {
          found = collect(selection.selectionSet);
        } else if (!seenFragments.has(selection.name.value)) {
          seenFragments.add(selection.name.value);
          const fragment = document.definitions.find(
            (definition) => definition.kind === Kind.FRAGMENT_DEFINITION && definition.name.value === selection.name.value,
          );
          if (fragment?.kind === Kind.FRAGMENT_DEFINITION) found = collect(fragment.selectionSet);
        }
        if (found) return found;
      }
      return null;
    };

    const found = collect(operation.selectionSet);
    if (found) return refusal(found);
    return sites.length > 0 ? sites : null;
  }

  const verdictOfOperation = perOperation((args, operation): Verdict => (operation ? plan(args.schema, args.document, operation) : null));

  function verdictOf(args: ExecutionArgs): StatehouseError | null {
    const verdict = verdictOfOperation(args);
    if (verdict === null || verdict instanceof StatehouseError) return verdict;
    const variables = args.variableValues ?? NO_VARIABLES;
    for (const site of verdict) {
      const found = Object.hasOwn(variables, site.variable)
        ? unstorableIn(variables[site.variable], site.type, site.field)
        : site.byDefault;
      if (found) return refusal(found);
    }
    return null;
  }

  const guard = ({
    args,
    setResultAndStopExecution,
  }: {
    args: ExecutionArgs;
    setResultAndStopExecution: (result: ExecutionResult) => void;
  }) => {
    const error = verdictOf(args);
    if (error) setResultAndStopExecution({ errors: [toGraphQLError(error)] });
  };

  return { onExecute: guard, onSubscribe: guard };
}
