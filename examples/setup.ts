/**
 * What an operator does once before agents run: create namespaces and register agents, with the admin
 * token. The examples do it themselves so that each runs with one command against a running gateway:
 *
 *     STATEHOUSE_ADMIN_TOKEN=… npm start            # the gateway, in another terminal
 *     STATEHOUSE_ADMIN_TOKEN=… npm run example:…
 *
 * Admin calls are plain GraphQL over HTTP; statehouse/client is the agents' side.
 */
export const url = process.env.STATEHOUSE_URL ?? 'http://127.0.0.1:4000/graphql';

async function admin<T>(query: string, variables: Record<string, unknown> = {}): Promise<T> {
  const token = process.env.STATEHOUSE_ADMIN_TOKEN;
  if (!token) throw new Error('Set STATEHOUSE_ADMIN_TOKEN to the gateway`s admin token (and STATEHOUSE_URL if it is not on :4000)');
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify({ query, variables }),
  });
  const body = (await response.json()) as { data?: T; errors?: { message: string }[] };
  if (body.errors?.length || !body.data) throw new Error(`${query.split('(')[0]}: ${JSON.stringify(body.errors)}`);
  return body.data;
}

/** Creates the namespace unless it exists. */
export async function ensureNamespace(name: string, description: string): Promise<void> {
  const { namespace } = await admin<{ namespace: { name: string } | null }>('query($name: String!) { namespace(name: $name) { name } }', {
    name,
  });
  if (!namespace) {
    await admin('mutation($input: CreateNamespaceInput!) { createNamespace(input: $input) { name } }', { input: { name, description } });
  }
}

/**
 * Registers the agent and returns its token; an agent of that id from an earlier run is deregistered first
 * (its token was printed nowhere, so a new one is needed).
 */
export async function registerAgent(id: string, type: string, stateNamespaces: string[]): Promise<string> {
  await admin('mutation($id: ID!) { deregisterAgent(id: $id) }', { id });
  const { registerAgent } = await admin<{ registerAgent: { token: string } }>(
    'mutation($input: RegisterAgentInput!) { registerAgent(input: $input) { token } }',
    { input: { id, name: id, type, stateNamespaces } },
  );
  return registerAgent.token;
}
