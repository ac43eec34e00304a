import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { CallToolResult, ToolAnnotations } from '@modelcontextprotocol/sdk/types.js';
import * as z from 'zod';
import { toolError } from './errors.js';
import type { GraphQLResult } from './graphql.js';
import { GLOBAL_SCOPE } from '../../domain/names.js';

/** Runs one fixed GraphQL operation as the session's caller. */
export type Run = (query: string, variables: Record<string, unknown>) => Promise<GraphQLResult<Record<string, any>>>;

const ENTRY = 'namespace scope key value version revision createdAt updatedAt updatedBy expiresAt';
const CHANGE = 'revision op namespace scope key version value at actor';
const AGENT = 'id name type capabilities stateNamespaces status active lastHeartbeatAt heartbeat metadata registeredAt';

// Argument schemas, described for a model choosing what to send.
/** Any JSON value: unconstrained in the schema (a recursive one trips some hosts), checked by the gateway. */
const json = () => z.unknown();
const namespace = z
  .string()
  .describe('The namespace (list_namespaces shows those this token can reach; `common` is shared by every agent)');
const key = z.string().describe('The key within the namespace and scope, 1 to 512 characters');
const scope = z
  .string()
  .optional()
  .describe('The scope; default "global". By convention thread:<id>, agent:<id>, agent_type:<name>, parent_thread:<id>');
const expectedVersion = z
  .number()
  .int()
  .min(0)
  .optional()
  .describe(
    'Compare-and-set: write only if the current version is this (0: only if absent); otherwise VERSION_CONFLICT and nothing changes',
  );

const entryShape = z
  .object({
    namespace: z.string(),
    scope: z.string(),
    key: z.string(),
    value: json().nullable(),
    version: z.number().int().describe('+1 on every change of this entry; the value for expectedVersion'),
    revision: z.string().describe("The change-log position of the entry's last change"),
    createdAt: z.string(),
    updatedAt: z.string(),
    updatedBy: z.string().nullable(),
    expiresAt: z.string().nullable(),
  })
  .describe('A stored entry');
const changeShape = z.object({
  revision: z.string(),
  op: z.enum(['SET', 'DELETE', 'EXPIRE']),
  namespace: z.string(),
  scope: z.string(),
  key: z.string(),
  version: z.number().int(),
  value: json().nullable(),
  at: z.string(),
  actor: z.string().nullable(),
});
const agentShape = z.object({
  id: z.string(),
  name: z.string(),
  type: z.string(),
  capabilities: z.array(z.string()),
  stateNamespaces: z.array(z.string()),
  status: z.string(),
  active: z.boolean(),
  lastHeartbeatAt: z.string().nullable(),
  heartbeat: json().nullable(),
  metadata: json().nullable(),
  registeredAt: z.string(),
});
const pageInfo = z.object({ hasNextPage: z.boolean(), endCursor: z.string().nullable() });

const READ: ToolAnnotations = { readOnlyHint: true, openWorldHint: false };
const WRITE: ToolAnnotations = { readOnlyHint: false, destructiveHint: false, openWorldHint: false };

interface ToolSpec<I extends z.ZodRawShape, O extends z.ZodRawShape> {
  title: string;
  description: string;
  input: I;
  output: O;
  annotations: ToolAnnotations;
  /** The operation and its variables for the validated arguments. */
  operation: (args: z.infer<z.ZodObject<I>>) => { query: string; variables: Record<string, unknown> };
  /** The structured result from the operation's data. */
  result: (data: Record<string, any>) => z.infer<z.ZodObject<O>>;
  /** One short line for the model. */
  summary: (result: z.infer<z.ZodObject<O>>) => string;
}

function register<I extends z.ZodRawShape, O extends z.ZodRawShape>(server: McpServer, run: Run, name: string, spec: ToolSpec<I, O>): void {
  server.registerTool(
    name,
    {
      title: spec.title,
      description: spec.description,
      inputSchema: z.object(spec.input).strict(),
      outputSchema: z.object(spec.output),
      annotations: spec.annotations,
    },
    async (args: any): Promise<CallToolResult> => {
      const { query, variables } = spec.operation(args);
      const response = await run(query, variables);
      if (response.errors?.length || !response.data) return toolError(response.errors ?? []);
      const structured = spec.result(response.data) as Record<string, unknown>;
      return {
        structuredContent: structured,
        content: [{ type: 'text', text: `${spec.summary(structured as never)}\n${JSON.stringify(structured)}` }],
      };
    },
  );
}

const describeEntry = (entry: { namespace: string; scope: string; key: string; version: number } | null, absent: string) =>
  entry ? `${entry.namespace}/${entry.scope}/${entry.key} at version ${entry.version}` : absent;

/** Every tool: each runs one fixed GraphQL operation of the contract (API.md §4) and nothing else. */
export function registerTools(server: McpServer, run: Run): void {
  register(server, run, 'get_entry', {
    title: 'Read an entry',
    description:
      'Read one entry: its JSON value, version and metadata, or null when it does not exist. Read before a compare-and-set write and pass its version as expectedVersion. atRevision / asOf read the value as it was then.',
    input: {
      namespace,
      key,
      scope,
      atRevision: z.string().optional().describe('Read the value as it was at this change-log revision'),
      asOf: z.string().optional().describe('Read the value as it was at this ISO-8601 time'),
    },
    output: { entry: entryShape.nullable() },
    annotations: READ,
    operation: (a) => ({
      query: `query($namespace: String!, $key: String!, $scope: String, $atRevision: Revision, $asOf: DateTime) {
        entry(namespace: $namespace, key: $key, scope: $scope, atRevision: $atRevision, asOf: $asOf) { ${ENTRY} } }`,
      variables: { ...a, scope: a.scope ?? GLOBAL_SCOPE },
    }),
    result: (d) => ({ entry: d.entry }),
    summary: (r) => describeEntry(r.entry, 'No such entry (null).'),
  });

  register(server, run, 'set_entry', {
    title: 'Write an entry',
    description:
      'Write a JSON value to an entry, creating it or replacing its value. Give expectedVersion (the version you read; 0 for "only if absent") so that a concurrent change is not overwritten: on VERSION_CONFLICT read again and retry. ttlSeconds makes the entry expire.',
    input: {
      namespace,
      key,
      scope,
      value: json().describe('The new value: any JSON'),
      expectedVersion,
      ttlSeconds: z.number().int().positive().optional().describe('Expire the entry this many seconds after the write'),
    },
    output: { entry: entryShape },
    annotations: WRITE,
    operation: (a) => ({
      query: `mutation($input: SetEntryInput!) { setEntry(input: $input) { ${ENTRY} } }`,
      variables: { input: { ...a, scope: a.scope ?? GLOBAL_SCOPE } },
    }),
    result: (d) => ({ entry: d.setEntry }),
    summary: (r) => `Wrote ${describeEntry(r.entry, '')}.`,
  });

  register(server, run, 'patch_entry', {
    title: 'Merge-patch an entry',
    description:
      "Change part of an entry's JSON object with an RFC 7396 merge patch: members replace, null members remove, the rest is kept. An absent entry is patched from {}. expectedVersion makes it compare-and-set.",
    input: { namespace, key, scope, patch: json().describe('The merge patch'), expectedVersion },
    output: { entry: entryShape },
    annotations: WRITE,
    operation: (a) => ({
      query: `mutation($input: PatchEntryInput!) { patchEntry(input: $input) { ${ENTRY} } }`,
      variables: { input: { ...a, scope: a.scope ?? GLOBAL_SCOPE } },
    }),
    result: (d) => ({ entry: d.patchEntry }),
    summary: (r) => `Patched ${describeEntry(r.entry, '')}.`,
  });

  register(server, run, 'increment_entry', {
    title: 'Add to a counter',
    description:
      'Atomically add a number to a numeric entry (an absent entry counts as 0): a counter that concurrent agents can share without conflicts.',
    input: { namespace, key, scope, by: z.number().optional().describe('What to add; default 1, may be negative') },
    output: { entry: entryShape },
    annotations: WRITE,
    operation: (a) => ({
      query: `mutation($input: IncrementEntryInput!) { incrementEntry(input: $input) { ${ENTRY} } }`,
      variables: { input: { ...a, scope: a.scope ?? GLOBAL_SCOPE } },
    }),
    result: (d) => ({ entry: d.incrementEntry }),
    summary: (r) => `Now ${JSON.stringify(r.entry.value)} (${describeEntry(r.entry, '')}).`,
  });

  register(server, run, 'delete_entry', {
    title: 'Delete an entry',
    description: 'Delete an entry. Returns deleted: false when there was nothing to delete. expectedVersion makes it compare-and-set.',
    input: { namespace, key, scope, expectedVersion },
    output: { deleted: z.boolean() },
    annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false },
    operation: (a) => ({
      query: 'mutation($input: DeleteEntryInput!) { deleteEntry(input: $input) }',
      variables: { input: { ...a, scope: a.scope ?? GLOBAL_SCOPE } },
    }),
    result: (d) => ({ deleted: d.deleteEntry }),
    summary: (r) => (r.deleted ? 'Deleted.' : 'There was nothing to delete.'),
  });

  register(server, run, 'list_entries', {
    title: 'List entries',
    description:
      "List a namespace's entries, optionally only one scope, keys starting with a prefix, or values containing a JSON fragment (match). Pages: pass pageInfo.endCursor as `after` while pageInfo.hasNextPage.",
    input: {
      namespace,
      scope: z.string().optional().describe('Only this scope; default: every scope'),
      prefix: z.string().optional().describe('Only keys that start with this (literally)'),
      match: json().optional().describe('Only entries whose value contains this JSON (PostgreSQL @>)'),
      first: z.number().int().min(1).max(1000).optional().describe('Page size; default 100'),
      after: z.string().optional().describe("The previous page's pageInfo.endCursor"),
    },
    output: { entries: z.array(entryShape), pageInfo },
    annotations: READ,
    operation: (a) => ({
      query: `query($namespace: String!, $scope: String, $prefix: String, $match: JSON, $first: Int, $after: String) {
        entries(namespace: $namespace, scope: $scope, prefix: $prefix, match: $match, first: $first, after: $after) {
          nodes { ${ENTRY} } pageInfo { hasNextPage endCursor } } }`,
      variables: { ...a, first: a.first ?? 100 },
    }),
    result: (d) => ({ entries: d.entries.nodes, pageInfo: d.entries.pageInfo }),
    summary: (r) => `${r.entries.length} entries${r.pageInfo.hasNextPage ? '; more with after: pageInfo.endCursor' : ''}.`,
  });

  register(server, run, 'entry_history', {
    title: "An entry's history",
    description:
      "An entry's versions, newest first, with the operation (SET, DELETE, EXPIRE), value, time and actor of each: who changed what, and what to restore.",
    input: { namespace, key, scope, first: z.number().int().min(1).max(1000).optional().describe('How many versions; default 50') },
    output: {
      versions: z.array(
        z.object({
          version: z.number().int(),
          revision: z.string(),
          op: z.string(),
          value: json().nullable(),
          at: z.string(),
          actor: z.string().nullable(),
        }),
      ),
    },
    annotations: READ,
    operation: (a) => ({
      query: `query($namespace: String!, $key: String!, $scope: String, $first: Int) {
        entryHistory(namespace: $namespace, key: $key, scope: $scope, first: $first) { version revision op value at actor } }`,
      variables: { ...a, scope: a.scope ?? GLOBAL_SCOPE, first: a.first ?? 50 },
    }),
    result: (d) => ({ versions: d.entryHistory }),
    summary: (r) => `${r.versions.length} versions, newest first.`,
  });

  register(server, run, 'restore_entry', {
    title: 'Bring an old version back',
    description: "Write an old version's value (see entry_history) as the entry's new version: an undo that keeps the history.",
    input: { namespace, key, scope, version: z.number().int().min(1).describe('The version to bring back, from entry_history') },
    output: { entry: entryShape },
    annotations: WRITE,
    operation: (a) => ({
      query: `mutation($input: RestoreEntryInput!) { restoreEntry(input: $input) { ${ENTRY} } }`,
      variables: { input: { ...a, scope: a.scope ?? GLOBAL_SCOPE } },
    }),
    result: (d) => ({ entry: d.restoreEntry }),
    summary: (r) => `Restored: ${describeEntry(r.entry, '')}.`,
  });

  register(server, run, 'resolve_entry', {
    title: 'Read through a scope chain',
    description:
      'Read a key from the first scope of a list that holds it, e.g. ["thread:42", "agent_type:planner", "global"]: the most specific setting wins. Null when none holds it.',
    input: { namespace, key, scopes: z.array(z.string()).min(1).describe('Scopes to try, most specific first') },
    output: { entry: entryShape.nullable() },
    annotations: READ,
    operation: (a) => ({
      query: `query($namespace: String!, $key: String!, $scopes: [String!]!) { resolveEntry(namespace: $namespace, key: $key, scopes: $scopes) { ${ENTRY} } }`,
      variables: a,
    }),
    result: (d) => ({ entry: d.resolveEntry }),
    summary: (r) => describeEntry(r.entry, 'No scope of the chain holds the key (null).'),
  });

  const entryRef = { namespace, key, scope };
  register(server, run, 'commit', {
    title: 'Write several entries atomically',
    description:
      'Apply several writes all or nothing, in one revision: each operation sets exactly one of set, patch, increment or delete. conditions require entries to be at given versions (0: absent) first; a failed condition is VERSION_CONFLICT and nothing is written.',
    input: {
      conditions: z
        .array(z.object({ ...entryRef, version: z.number().int().min(0).describe('Required current version; 0: must not exist') }))
        .optional(),
      operations: z
        .array(
          z.object({
            set: z.object({ ...entryRef, value: json(), expectedVersion, ttlSeconds: z.number().int().positive().optional() }).optional(),
            patch: z.object({ ...entryRef, patch: json(), expectedVersion }).optional(),
            increment: z.object({ ...entryRef, by: z.number().optional() }).optional(),
            delete: z.object({ ...entryRef, expectedVersion }).optional(),
          }),
        )
        .min(1)
        .describe('The writes, each with exactly one of set, patch, increment, delete'),
    },
    output: { revision: z.string(), entries: z.array(entryShape) },
    annotations: WRITE,
    operation: (a) => ({
      query: `mutation($input: CommitInput!) { commit(input: $input) { revision entries { ${ENTRY} } } }`,
      variables: { input: a },
    }),
    result: (d) => d.commit,
    summary: (r) => `Committed at revision ${r.revision} (${r.entries.length} entries written).`,
  });

  register(server, run, 'list_namespaces', {
    title: 'Namespaces this token can reach',
    description:
      'Every namespace this token can read, with READ or WRITE permission, description and settings (a JSON Schema values must follow, default TTL). Start here to know where to read and write.',
    input: {},
    output: {
      role: z.string(),
      namespaces: z.array(
        z.object({
          name: z.string(),
          permission: z.string(),
          description: z.string().nullable(),
          schema: json().nullable(),
          defaultTtlSeconds: z.number().nullable(),
          sensitive: z.boolean(),
        }),
      ),
    },
    annotations: READ,
    operation: () => ({
      query: '{ viewer { role namespaces { namespace permission } } namespaces { name description schema defaultTtlSeconds sensitive } }',
      variables: {},
    }),
    result: (d) => {
      const settings = new Map<string, Record<string, any>>(d.namespaces.map((n: Record<string, any>) => [n.name, n]));
      return {
        role: d.viewer.role,
        namespaces: d.viewer.namespaces.map((access: { namespace: string; permission: string }) => {
          const n = settings.get(access.namespace);
          return {
            name: access.namespace,
            permission: access.permission,
            description: n?.description ?? null,
            schema: n?.schema ?? null,
            defaultTtlSeconds: n?.defaultTtlSeconds ?? null,
            sensitive: n?.sensitive ?? false,
          };
        }),
      };
    },
    summary: (r) => `${r.role} token; ${r.namespaces.map((n) => `${n.name} (${n.permission})`).join(', ')}.`,
  });

  register(server, run, 'recent_changes', {
    title: 'Recent changes',
    description:
      'What changed recently in the namespaces this token can read: newest first by default; with afterRevision, every change after it, oldest first, paged with `after`.',
    input: {
      namespace: namespace.optional(),
      first: z.number().int().min(1).max(1000).optional().describe('How many; default 100'),
      afterRevision: z.string().optional().describe('Every change after this revision, oldest first'),
      after: z.string().optional().describe("With afterRevision: the previous page's pageInfo.endCursor"),
    },
    output: { changes: z.array(changeShape), pageInfo: pageInfo.optional() },
    annotations: READ,
    operation: (a) =>
      a.afterRevision === undefined && a.after === undefined
        ? {
            query: `query($namespace: String, $first: Int) { latestChanges(namespace: $namespace, first: $first) { ${CHANGE} } }`,
            variables: { namespace: a.namespace, first: a.first ?? 100 },
          }
        : {
            query: `query($namespace: String, $afterRevision: Revision, $first: Int, $after: String) {
              changes(namespace: $namespace, afterRevision: $afterRevision, first: $first, after: $after) {
                nodes { ${CHANGE} } pageInfo { hasNextPage endCursor } } }`,
            variables: { ...a, first: a.first ?? 100 },
          },
    result: (d) => (d.changes ? { changes: d.changes.nodes, pageInfo: d.changes.pageInfo } : { changes: d.latestChanges }),
    summary: (r) => `${r.changes.length} changes.`,
  });

  register(server, run, 'heartbeat', {
    title: 'Report this agent is alive',
    description:
      "Report this agent's status (and any JSON about what it is doing); agents that stop calling it show as inactive. Agent tokens only.",
    input: {
      status: z.enum(['STARTING', 'IDLE', 'BUSY', 'ERROR', 'STOPPED']),
      data: json().optional().describe('What the agent is doing, e.g. {"task": "…"}'),
    },
    output: { agent: agentShape },
    annotations: WRITE,
    operation: (a) => ({ query: `mutation($input: HeartbeatInput!) { heartbeat(input: $input) { ${AGENT} } }`, variables: { input: a } }),
    result: (d) => ({ agent: d.heartbeat }),
    summary: (r) => `${r.agent.id} is ${r.agent.status}.`,
  });

  register(server, run, 'record_metrics', {
    title: 'Record metrics',
    description: 'Record numeric measurements of this agent (latency, tokens used, tasks done…), at most 1000 a call. Agent tokens only.',
    input: {
      metrics: z
        .array(
          z.object({
            name: z.string(),
            value: z.number(),
            unit: z.string().optional(),
            tags: json().optional(),
            at: z.string().optional().describe('ISO-8601; default now'),
          }),
        )
        .min(1),
    },
    output: { recorded: z.number().int() },
    annotations: WRITE,
    operation: (a) => ({ query: 'mutation($metrics: [MetricInput!]!) { recordMetrics(metrics: $metrics) }', variables: a }),
    result: (d) => ({ recorded: d.recordMetrics }),
    summary: (r) => `Recorded ${r.recorded} metrics.`,
  });

  register(server, run, 'report_error', {
    title: 'Report an error',
    description:
      'Report an error this agent met; errors that differ only in numbers and ids are grouped into one pattern with a count, so the fleet sees what keeps failing. Agent tokens only.',
    input: { type: z.string().describe('A category, e.g. "timeout"'), message: z.string(), context: json().optional() },
    output: {
      pattern: z.object({
        id: z.string(),
        type: z.string(),
        fingerprint: z.string(),
        sampleMessage: z.string(),
        count: z.number().int(),
        agentIds: z.array(z.string()),
      }),
    },
    annotations: WRITE,
    operation: (a) => ({
      query: 'mutation($input: ReportErrorInput!) { reportError(input: $input) { id type fingerprint sampleMessage count agentIds } }',
      variables: { input: a },
    }),
    result: (d) => ({ pattern: d.reportError }),
    summary: (r) => `Recorded; this pattern was seen ${r.pattern.count} times.`,
  });

  register(server, run, 'add_insight', {
    title: 'Share an insight',
    description: 'Share something the fleet should know or act on (a finding, a recommendation) as JSON with a priority.',
    input: {
      type: z.string().describe('A category, e.g. "recommendation"'),
      content: json(),
      priority: z.enum(['LOW', 'MEDIUM', 'HIGH', 'CRITICAL']).optional().describe('Default MEDIUM'),
    },
    output: {
      insight: z.object({
        id: z.string(),
        type: z.string(),
        content: json(),
        priority: z.string(),
        sourceAgentId: z.string().nullable(),
        createdAt: z.string(),
      }),
    },
    annotations: WRITE,
    operation: (a) => ({
      query: 'mutation($input: AddInsightInput!) { addInsight(input: $input) { id type content priority sourceAgentId createdAt } }',
      variables: { input: a },
    }),
    result: (d) => ({ insight: d.addInsight }),
    summary: (r) => `Insight ${r.insight.id} added.`,
  });

  register(server, run, 'list_agents', {
    title: 'The fleet',
    description:
      'The registered agents: type, capabilities, status, last heartbeat. Filter by type, status, or heartbeat within the last n seconds.',
    input: {
      activeWithinSeconds: z.number().int().positive().optional(),
      type: z.string().optional(),
      status: z.enum(['STARTING', 'IDLE', 'BUSY', 'ERROR', 'STOPPED']).optional(),
    },
    output: { agents: z.array(agentShape) },
    annotations: READ,
    operation: (a) => ({
      query: `query($activeWithinSeconds: Int, $type: String, $status: AgentStatus) {
        agents(activeWithinSeconds: $activeWithinSeconds, type: $type, status: $status) { ${AGENT} } }`,
      variables: a,
    }),
    result: (d) => ({ agents: d.agents }),
    summary: (r) => `${r.agents.length} agents.`,
  });

  register(server, run, 'metric_summary', {
    title: 'Metric statistics',
    description:
      'count, min, max, avg, p50, p95, p99 and last value of metrics, by name, optionally one agent, since a time, or per agent.',
    input: {
      name: z.string().optional(),
      agentId: z.string().optional(),
      since: z.string().optional().describe('ISO-8601; default the last 24 hours'),
      groupByAgent: z.boolean().optional(),
    },
    output: {
      summaries: z.array(
        z.object({
          name: z.string(),
          unit: z.string().nullable(),
          agentId: z.string().nullable(),
          count: z.number(),
          min: z.number(),
          max: z.number(),
          avg: z.number(),
          p50: z.number(),
          p95: z.number(),
          p99: z.number(),
          last: z.number(),
        }),
      ),
    },
    annotations: READ,
    operation: (a) => ({
      query: `query($name: String, $agentId: ID, $since: DateTime, $groupByAgent: Boolean) {
        metricSummary(name: $name, agentId: $agentId, since: $since, groupByAgent: $groupByAgent) { name unit agentId count min max avg p50 p95 p99 last } }`,
      variables: { ...a, groupByAgent: a.groupByAgent ?? false },
    }),
    result: (d) => ({ summaries: d.metricSummary }),
    summary: (r) => `${r.summaries.length} summaries.`,
  });
}
