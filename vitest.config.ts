import { defineConfig } from 'vitest/config';

export default defineConfig({
  // One copy of graphql: some dependencies load its CommonJS build, which must not meet the ESM one.
  resolve: { alias: { graphql: 'graphql/index.js' } },
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Each test file gets its own database; two at a time suits a 2-core machine.
    maxWorkers: 2,
  },
});
