import {
  type DefinitionNode,
  type DirectiveNode,
  type DocumentNode,
  type FragmentDefinitionNode,
  type GraphQLSchema,
  Kind,
  type ParseOptions,
  type SelectionSetNode,
  type Source,
  validate,
} from 'graphql';
import { Parser } from 'graphql/language/parser.js';
import type { Plugin } from 'graphql-yoga';
import { StatehouseError } from '../domain/errors.js';
import { toGraphQLError } from '../graphql/errors.js';
import { isBatched } from './request-limits.js';

/**
 * The most any document may hold, whoever sends it. They bound the work of parsing and validating,
 * which happen before the caller is known; each tenant's own (tighter) depth, alias and cost limits
 * apply after that, as before. Sized so that no operation of the schema needs more (GraphiQL's
 * introspection query has 4 definitions and fewer than 200 tokens): large values belong in variables,
 * which do not count.
 */
export const DOCUMENT_CEILINGS = {
  /** Lexical tokens (names, punctuation, literals; a string is one). */
  tokens: 15_000,
  /** Operations and fragments. */
  definitions: 100,
  directives: 100,
  /** Selections in one selection set. */
  selections: 1_000,
  /** The largest `limits.maxAliases` a tenant may configure. */
  aliases: 1_000,
  /** Nested selection sets: the largest `limits.maxDepth` a tenant may configure. */
  depth: 100,
  /** Selections, with every fragment expanded where it is spread (as validation walks them). */
  expandedSelections: 10_000,
  /**
   * Pairs of fields answering one response key, which validation compares with each other
   * (`{ viewer { role } viewer { role } }` has 2: the viewers and their roles). graphql-js gives up
   * only after some 500,000 comparisons, hundreds of milliseconds of work.
   */
  mergedPairs: 5_000,
} as const;

type Ceiling = keyof typeof DOCUMENT_CEILINGS;

/** The most validation errors answered for one document: each costs work to locate and describe. */
export const MAX_VALIDATION_ERRORS = 25;

const WHAT: Record<Ceiling, string> = {
  tokens: 'tokens',
  definitions: 'operations and fragments',
  directives: 'directives',
  selections: 'selections in one selection set',
  aliases: 'aliases',
  depth: 'levels of nested selections',
  expandedSelections: 'selections once its fragments are expanded',
  mergedPairs: 'pairs of fields merged into one response key',
};

/** The measures of the work a document costs, which the documents of one request share. */
const WORK_MEASURES = ['tokens', 'expandedSelections', 'mergedPairs'] as const;
type Work = Record<(typeof WORK_MEASURES)[number], number>;

/** Like a validation error: HTTP 400, or 200 for a client that accepts only application/json. */
const tooComplex = (message: string, details: Record<string, unknown> = {}) =>
  toGraphQLError(new StatehouseError('QUERY_TOO_COMPLEX', message, { ...details, http: { status: 400, spec: true } }));

const refusal = (ceiling: Ceiling, subject: string) =>
  tooComplex(`${subject} more than ${DOCUMENT_CEILINGS[ceiling]} ${WHAT[ceiling]}`, { limit: DOCUMENT_CEILINGS[ceiling] });

class TooComplex extends Error {
  constructor(readonly ceiling: Ceiling) {
    super(ceiling);
  }
}

function atMost(ceiling: Ceiling, count: number, most: number = DOCUMENT_CEILINGS[ceiling]): void {
  if (count > most) throw new TooComplex(ceiling);
}

const isWork = (ceiling: Ceiling): ceiling is keyof Work => (WORK_MEASURES as readonly Ceiling[]).includes(ceiling);

/** Directives, aliases, widest and deepest selection set, as written (fragments not expanded). */
function checkWritten(document: DocumentNode): void {
  let directives = 0;
  let aliases = 0;
  const countDirectives = (nodes: readonly DirectiveNode[] | undefined) => {
    if (nodes) atMost('directives', (directives += nodes.length));
  };
  const walk = (selectionSet: SelectionSetNode, depth: number): void => {
    atMost('depth', depth);
    atMost('selections', selectionSet.selections.length);
    for (const selection of selectionSet.selections) {
      countDirectives(selection.directives);
      if (selection.kind === Kind.FIELD && selection.alias) atMost('aliases', ++aliases);
      if (selection.kind === Kind.INLINE_FRAGMENT) walk(selection.selectionSet, depth);
      else if (selection.kind === Kind.FIELD && selection.selectionSet) walk(selection.selectionSet, depth + 1);
    }
  };
  for (const definition of document.definitions) {
    if (definition.kind !== Kind.OPERATION_DEFINITION && definition.kind !== Kind.FRAGMENT_DEFINITION) continue;
    countDirectives(definition.directives);
    for (const variable of definition.variableDefinitions ?? []) countDirectives(variable.directives);
    walk(definition.selectionSet, 1);
  }
}

/**
 * The response's shape, as validation's field merging sees it: the fields answering one key, from
 * any selection set or fragment spread at that place, are one node; each pair of them is compared.
 * Walked breadth-first with fragments expanded where they are spread (each once per node, as
 * graphql-js does), counting every selection it passes, and stopping at the ceilings: a fragment
 * that expands exponentially costs no more than the ceiling.
 */
function checkMerged(document: DocumentNode, allowance: Work): Pick<Work, 'expandedSelections' | 'mergedPairs'> {
  const fragments = new Map<string, FragmentDefinitionNode>();
  for (const definition of document.definitions) {
    if (definition.kind === Kind.FRAGMENT_DEFINITION) fragments.set(definition.name.value, definition);
  }
  let expandedSelections = 0;
  let mergedPairs = 0;
  // Every operation and fragment is validated on its own too: each is a root of the walk.
  const pending: SelectionSetNode[][] = document.definitions
    .filter((definition: DefinitionNode) => definition.kind === Kind.OPERATION_DEFINITION || definition.kind === Kind.FRAGMENT_DEFINITION)
    .map((definition) => [definition.selectionSet]);
  for (let node = pending.pop(); node !== undefined; node = pending.pop()) {
    const byKey = new Map<string, { count: number; children: SelectionSetNode[] }>();
    const spread = new Set<string>();
    const collect = (selectionSet: SelectionSetNode): void => {
      for (const selection of selectionSet.selections) {
        atMost('expandedSelections', ++expandedSelections, allowance.expandedSelections);
        if (selection.kind === Kind.FIELD) {
          const key = selection.alias?.value ?? selection.name.value;
          let merged = byKey.get(key);
          if (!merged) byKey.set(key, (merged = { count: 0, children: [] }));
          atMost('mergedPairs', (mergedPairs += merged.count++), allowance.mergedPairs);
          if (selection.selectionSet) merged.children.push(selection.selectionSet);
        } else if (selection.kind === Kind.INLINE_FRAGMENT) {
          collect(selection.selectionSet);
        } else if (!spread.has(selection.name.value)) {
          spread.add(selection.name.value);
          const fragment = fragments.get(selection.name.value);
          if (fragment) collect(fragment.selectionSet);
        }
      }
    };
    for (const selectionSet of node) collect(selectionSet);
    for (const { children } of byKey.values()) if (children.length > 0) pending.push(children);
  }
  return { expandedSelections, mergedPairs };
}

/** A document that needs more than the earlier documents of its request have left: refused for its request, not on its own. */
class RequestSpent extends Error {
  constructor(readonly measure: keyof Work) {
    super(measure);
  }
}

/**
 * Parses with the ceilings: the parser stops at the token ceiling, then the document's shape is
 * measured in one pass over it. `allowance` is what the request's earlier documents have left of
 * the ceilings of work. A document nested deeper than the parser's stack is refused too.
 */
function parseWithin(source: string | Source, options: ParseOptions | undefined, allowance: Work): { document: DocumentNode; work: Work } {
  const parser = new Parser(source, { ...options, maxTokens: allowance.tokens });
  try {
    const document = parser.parseDocument();
    atMost('definitions', document.definitions.length);
    checkWritten(document);
    return { document, work: { tokens: parser.tokenCount, ...checkMerged(document, allowance) } };
  } catch (error) {
    const ceiling = error instanceof TooComplex ? error.ceiling : parser.tokenCount > allowance.tokens ? 'tokens' : undefined;
    if (ceiling === undefined) {
      if (error instanceof RangeError) throw tooComplex('The document is nested too deeply');
      throw error;
    }
    if (isWork(ceiling) && allowance[ceiling] < DOCUMENT_CEILINGS[ceiling]) throw new RequestSpent(ceiling);
    throw refusal(ceiling, 'The document has');
  }
}

const requestRefusal = (measure: keyof Work) => refusal(measure, 'The documents of this request together have');

const WHOLE_CEILINGS: Readonly<Work> = {
  tokens: DOCUMENT_CEILINGS.tokens,
  expandedSelections: DOCUMENT_CEILINGS.expandedSelections,
  mergedPairs: DOCUMENT_CEILINGS.mergedPairs,
};

/** Parses a document that is alone in its request: the ceilings are all its own. */
const parseAlone = (source: string | Source, options?: ParseOptions): DocumentNode => parseWithin(source, options, WHOLE_CEILINGS).document;

/**
 * Bounds the work of parsing and validating a document, for every caller and transport (HTTP,
 * batches, SSE, WebSocket): documents over a ceiling are refused with QUERY_TOO_COMPLEX while being
 * parsed, before any validation rule runs, and validation answers at most MAX_VALIDATION_ERRORS
 * errors. The documents of one batched request share the ceilings of work (tokens, expanded
 * selections, merged pairs): parsing stops at what the earlier ones have left.
 *
 * Refusals of a document on its own are thrown by the parse function, so Yoga caches them with its
 * text. Those of a batch are thrown from this plugin's hooks, which run before Yoga's cache would
 * record them: the same document sent alone is answered on its own merits.
 */
export function useDocumentLimits(): Plugin {
  const spentBy = new WeakMap<Request, Work>();
  return {
    onParse: ({ context, setParseFn }) => {
      const request = (context as { request?: Request }).request;
      // A document alone in its request (every socket message, most HTTP requests) has the whole ceilings.
      if (!isBatched(request)) return setParseFn(parseAlone);
      const spent = request && spentBy.get(request);
      const allowance: Work = { tokens: 0, expandedSelections: 0, mergedPairs: 0 };
      for (const measure of WORK_MEASURES) allowance[measure] = DOCUMENT_CEILINGS[measure] - (spent?.[measure] ?? 0);
      const used = WORK_MEASURES.find((measure) => allowance[measure] <= 0);
      if (used) throw requestRefusal(used);
      setParseFn((source, options) => {
        const { document, work } = parseWithin(source, options, allowance);
        if (request) {
          if (spent) for (const measure of WORK_MEASURES) spent[measure] += work[measure];
          else spentBy.set(request, work);
        }
        return document;
      });
      return ({ result }) => {
        if (!(result instanceof RequestSpent)) return;
        // Spent for good: the documents after it are refused unparsed.
        if (spent) spent[result.measure] = DOCUMENT_CEILINGS[result.measure];
        throw requestRefusal(result.measure);
      };
    },
    onValidate: ({ setValidationFn }) => {
      setValidationFn((schema: GraphQLSchema, document: DocumentNode, rules) =>
        validate(schema, document, rules, { maxErrors: MAX_VALIDATION_ERRORS }),
      );
    },
  };
}
