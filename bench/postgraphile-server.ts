/**
 * The second reference of `npm run bench` (workload 13): PostGraphile 5 with its recommended preset
 * (Amber) over the tables of bench/postgraphile-schema.sql — an entry table whose updates bump the
 * version and append the same change-log row Statehouse writes, by a trigger. A peer a user would
 * compare with: a GraphQL API generated from PostgreSQL. Needs Node.js 22 or later (PostGraphile's
 * own requirement); the bench runs it with .node/'s Node when the machine's is older.
 *
 * PGL_DATABASE_URL: the bench database. Prints its URL once it listens; exits when stdin closes.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { postgraphile } from 'postgraphile';
import { makePgService } from 'postgraphile/adaptors/pg';
import { grafserv } from 'postgraphile/grafserv/node';
import { PostGraphileAmberPreset } from 'postgraphile/presets/amber';

/** As many connections as a Statehouse process's pool. */
const POOL_SIZE = 20;

const connectionString = process.env.PGL_DATABASE_URL;
if (!connectionString) throw new Error('PGL_DATABASE_URL is not set');

const pgl = postgraphile({
  extends: [PostGraphileAmberPreset],
  pgServices: [makePgService({ connectionString, schemas: ['pgl_bench'], poolConfig: { max: POOL_SIZE } })],
  grafserv: { graphqlPath: '/graphql', graphiql: false },
  grafast: { explain: false },
});
const serv = pgl.createServ(grafserv);
const server = createServer();
serv.addTo(server).catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address() as AddressInfo;
  console.log(`PostGraphile listening on http://127.0.0.1:${port}/graphql`);
});

const stop = () => {
  server.close();
  void Promise.resolve(pgl.release()).finally(() => process.exit(0));
};
process.stdin.on('end', stop);
process.stdin.resume();
process.on('SIGTERM', stop);
