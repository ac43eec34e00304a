/**
 * A LangGraph graph whose two nodes share memory through Statehouse (no model needed): `remember` stores
 * what the user said under the user's namespace, `recall` searches everything remembered about the user.
 * The memory outlives the run and the process, and any agent with a grant on `memory` can read it.
 *
 *     STATEHOUSE_ADMIN_TOKEN=… npm run example:langgraph
 */
import { Annotation, END, type LangGraphRunnableConfig, START, StateGraph } from '@langchain/langgraph';
import { connect } from 'statehouse/client';
import { StatehouseStore } from 'statehouse/langgraph';
import { ensureNamespace, registerAgent, url } from './setup.js';

await ensureNamespace('memory', 'Long-term memory of LangGraph agents');
const token = await registerAgent('assistant', 'langgraph', ['memory']);
await using client = connect({ url, token });
const store = new StatehouseStore({ client, namespace: 'memory' });

const State = Annotation.Root({
  userId: Annotation<string>,
  message: Annotation<string>,
  recalled: Annotation<string[]>,
});

async function remember(state: typeof State.State, config: LangGraphRunnableConfig) {
  const facts = await config.store?.search(['users', state.userId, 'facts'], { limit: 100 });
  await config.store?.put(['users', state.userId, 'facts'], `fact-${String(facts?.length ?? 0).padStart(3, '0')}`, { text: state.message });
  return {};
}

async function recall(state: typeof State.State, config: LangGraphRunnableConfig) {
  const facts = (await config.store?.search(['users', state.userId, 'facts'], { limit: 100 })) ?? [];
  return { recalled: facts.map((item) => String(item.value.text)) };
}

const graph = new StateGraph(State)
  .addNode('remember', remember)
  .addNode('recall', recall)
  .addEdge(START, 'remember')
  .addEdge('remember', 'recall')
  .addEdge('recall', END)
  .compile({ store });

// A fresh start for the example's user, so each run prints the same.
for (const item of await store.search(['users', 'ada'], { limit: 100 })) await store.delete(item.namespace, item.key);

for (const message of ['I prefer tea', 'My cat is called Turing', 'I work on compilers']) {
  const { recalled } = await graph.invoke({ userId: 'ada', message });
  console.log(`after "${message}": ${recalled.length} facts remembered: ${recalled.join(' | ')}`);
}
console.log(`namespaces: ${JSON.stringify(await store.listNamespaces({ prefix: ['users'] }))}`);
