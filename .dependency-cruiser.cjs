// The architecture's layering, checked by `npm run check:architecture` (and by CI).
// The README's Architecture section draws these layers and names the rule that keeps each.

/** What belongs to GraphQL or to a transport: the graphql-js, Pothos, Yoga, graphql-ws and ws packages, src/graphql/, src/transport/. */
const GRAPHQL_OR_TRANSPORT = [
  '^node_modules/(graphql|graphql-yoga|graphql-ws|graphql-scalars|@pothos|@graphql-yoga|@escape\\.tech|ws)/',
  '^src/graphql/',
  '^src/transport/',
];

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment: 'An import cycle: one of its modules does two jobs; move the shared part down a layer (domain/, a model file).',
      from: { path: '^src/' },
      to: { circular: true },
    },
    {
      name: 'services-know-no-graphql',
      severity: 'error',
      comment:
        'Services, stores and the layers below them (domain/, db/, events/, auth/) are plain TypeScript: GraphQL types live in <domain>.graphql.ts, transports in src/transport/.',
      from: {
        path: ['^src/modules/', '^src/domain/', '^src/db/', '^src/events/', '^src/auth/'],
        pathNot: ['\\.graphql\\.ts$'],
      },
      to: { path: GRAPHQL_OR_TRANSPORT },
    },
    {
      name: 'modules-know-no-transport',
      severity: 'error',
      comment:
        'A module describes its fields; how they travel (HTTP, WebSocket, SSE, fan-out, MCP) is src/transport/, composed by src/app.ts.',
      from: { path: ['^src/modules/', '^src/graphql/', '^src/domain/', '^src/events/', '^src/db/', '^src/auth/'] },
      to: { path: ['^src/transport/', '^src/app\\.ts$', '^src/main\\.ts$'] },
    },
    {
      name: 'client-knows-no-server',
      severity: 'error',
      comment: "The agents' SDK ships on its own: it imports nothing outside src/client/.",
      from: { path: '^src/client/' },
      to: { path: '^src/', pathNot: '^src/client/' },
    },
    {
      name: 'not-to-unresolvable',
      severity: 'error',
      comment: 'An import that resolves to no file: a typo or a missing dependency.',
      from: { path: '^src/' },
      to: { couldNotResolve: true },
    },
  ],
  options: {
    // TypeScript 7 has no JavaScript API: SWC parses the sources.
    parser: 'swc',
    // SWC reports type-only imports too, so they count: a cycle of types is still a cycle, and a service
    // importing a GraphQL type still knows GraphQL. (tsPreCompilationDeps would ask for the TypeScript API.)
    tsPreCompilationDeps: false,
    doNotFollow: { path: '^node_modules' },
    exclude: { path: ['^src/dashboard/public/', '^src/.*\\.(mjs|js)$'] },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'node', 'default', 'types'],
      extensions: ['.ts', '.js', '.mjs', '.json', '.d.ts'],
      // 'typings': packages of types only (the client's typed documents import one).
      mainFields: ['module', 'main', 'types', 'typings'],
    },
  },
};
