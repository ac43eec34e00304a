import { defineConfig } from 'drizzle-kit';

// Migrations are generated from the table definitions and applied by both backends (PostgreSQL and PGlite).
export default defineConfig({
  dialect: 'postgresql',
  schema: './src/db/schema.ts',
  out: './drizzle',
});
