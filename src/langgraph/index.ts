/**
 * statehouse/langgraph — LangGraph.js's long-term memory store (`BaseStore`) on a Statehouse gateway,
 * through statehouse/client. Needs `@langchain/langgraph-checkpoint` (a peer dependency); imports nothing
 * of the server.
 */
export {
  compareItems,
  decodeItemKey,
  encodeItemKey,
  namespacePrefix,
  SemanticSearchUnsupportedError,
  type StatehousePutOperation,
  StatehouseStore,
  type StatehouseStoreOptions,
} from './store.js';
