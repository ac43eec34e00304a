import { type DocumentNode, type ExecutionArgs, getOperationAST, type OperationDefinitionNode } from 'graphql';

/**
 * `work` done once per parsed document and operation name, then remembered with the document:
 * Yoga reuses the parsed document of a repeated query, so a hot operation is worked out once.
 * `work` is given the operation the arguments run (null when the document names none).
 */
export function perOperation<T>(work: (args: ExecutionArgs, operation: OperationDefinitionNode | null) => T): (args: ExecutionArgs) => T {
  const done = new WeakMap<DocumentNode, Map<string, T>>();
  return (args) => {
    const name = args.operationName ?? '';
    let byName = done.get(args.document);
    if (!byName) done.set(args.document, (byName = new Map()));
    if (byName.has(name)) return byName.get(name) as T;
    const result = work(args, getOperationAST(args.document, args.operationName) ?? null);
    byName.set(name, result);
    return result;
  };
}
