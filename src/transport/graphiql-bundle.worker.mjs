// Compiles @graphql-yoga/render-graphiql's 9 MB bundle on a thread of its own: on the gateway's
// event loop that would stall every request for a second or more. Posts each part as UTF-8 bytes.
import { parentPort } from 'node:worker_threads';
import * as bundle from '@graphql-yoga/render-graphiql/graphiql';

const encoder = new TextEncoder();
const parts = Object.fromEntries(Object.entries(bundle).map(([name, text]) => [name, encoder.encode(text)]));
parentPort.postMessage(
  parts,
  Object.values(parts).map((part) => part.buffer),
);
