import { defineConfig } from 'vitest/config';

export default defineConfig({
  // One copy of graphql: some dependencies load its CommonJS build, which must not meet the ESM one.
  // Only the bare name: its CommonJS modules (graphql/language/parser.js) are imported as they are.
  resolve: { alias: [{ find: /^graphql$/, replacement: 'graphql/index.js' }] },
  test: {
    include: ['test/**/*.test.ts'],
    // Closes every gateway, raw socket and SSE stream a test file left open (test/support/leftovers.ts).
    setupFiles: ['test/support/setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Each test file gets its own database; two at a time suits a 2-core machine.
    maxWorkers: 2,
  },
});
