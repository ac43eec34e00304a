/**
 * Workload 12, hostile documents (issue 14): how long one document holds up everyone else. Each
 * document of test/support/hostile-documents.ts is sent one request at a time, a fresh text every
 * time (no parse cache helps), in turn without a token, with the agent's token, as a batch of ten,
 * and ten at once on a graphql-ws socket with the token — while a probe sends `{ __typename }` back
 * to back on a connection of its own. Parsing and validating a document blocks the server's event loop, and
 * the probe waits as long: its worst latency is the worst delay one document caused. Every answer is
 * checked: a hostile document must be refused with QUERY_TOO_COMPLEX, and one within the ceilings
 * must not be (nor be an internal error).
 */
import http from 'node:http';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import WebSocket from 'ws';
import { COSTLIEST_ACCEPTED, HOSTILE_DOCUMENTS } from '../test/support/hostile-documents.js';
import { BenchFailure, type Measurement, Samples } from './measure.js';
import type { ServerProcess } from './processes.js';

/** Documents in one batched request. */
const BATCH = 10;

export interface HostileResult {
  document: string;
  /** The probe's latencies while the document was sent; value: the worst, in ms. */
  delay: Measurement;
}

type Document = (variant: number) => string;

interface Answer {
  data?: unknown;
  errors?: { message?: string; extensions?: { code?: string } }[];
}

const codesOf = (answer: Answer) => (answer.errors ?? []).map((error) => error.extensions?.code ?? 'no code');

/** The refusal of the documents of a batch after the one that used up the ceilings, whatever each is. */
const refusedForItsBatch = (answer: Answer) => answer.errors?.[0]?.message?.startsWith('The documents of this request together') === true;

/**
 * null when a hostile document was refused as it must be, or a document within the ceilings was
 * answered (with validation's errors or data), unless its batch had used up the ceilings.
 */
function problemWith(answer: Answer, hostile: boolean): string | null {
  const codes = codesOf(answer);
  const refused = codes.length === 1 && codes[0] === 'QUERY_TOO_COMPLEX';
  const right = hostile ? refused : refusedForItsBatch(answer) || !(refused || codes.includes('INTERNAL_SERVER_ERROR'));
  return right ? null : `answered ${JSON.stringify(answer).slice(0, 300)}`;
}

function post(agent: http.Agent, url: string, headers: Record<string, string>, body: string): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const request = http.request(
      url,
      { method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...headers } },
      (response) => {
        let text = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => {
          text += chunk;
        });
        response.on('end', () => {
          try {
            resolve(JSON.parse(text));
          } catch {
            reject(new BenchFailure(`HTTP ${response.statusCode}: ${text.slice(0, 300)}`));
          }
        });
        response.on('error', reject);
      },
    );
    request.on('error', reject);
    request.end(body);
  });
}

/**
 * A graphql-ws socket spoken by hand, so that every answer is what the server sent: each operation's
 * first `next` or its `error` (a `complete` before either is a failure).
 */
class RawSocket {
  private nextId = 0;
  private readonly waiting = new Map<string, (answer: Answer) => void>();

  private constructor(private readonly socket: WebSocket) {
    socket.on('message', (data) => {
      const message = JSON.parse(String(data)) as { id?: string; type: string; payload?: unknown };
      const answer = message.id === undefined ? undefined : this.waiting.get(message.id);
      if (!answer || message.id === undefined) return;
      this.waiting.delete(message.id);
      if (message.type === 'next') answer(message.payload as Answer);
      else if (message.type === 'error') answer({ errors: message.payload as Answer['errors'] });
      else answer({ errors: [{ message: `${message.type} before any answer`, extensions: { code: 'no answer' } }] });
    });
    socket.on('close', (code, reason) => {
      for (const answer of this.waiting.values()) answer({ errors: [{ message: `socket closed: ${code} ${reason}` }] });
      this.waiting.clear();
    });
  }

  static open(url: string, token: string): Promise<RawSocket> {
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(url, 'graphql-transport-ws');
      socket.once('error', reject);
      socket.once('open', () => socket.send(JSON.stringify({ type: 'connection_init', payload: { authorization: `Bearer ${token}` } })));
      socket.once('message', (data) => {
        const message = JSON.parse(String(data)) as { type: string };
        if (message.type === 'connection_ack') resolve(new RawSocket(socket));
        else reject(new BenchFailure(`the socket was answered ${String(data).slice(0, 200)}`));
      });
    });
  }

  /** One operation: its first result, or its errors. */
  request(query: string): Promise<Answer> {
    const id = String(this.nextId++);
    return new Promise((resolve) => {
      this.waiting.set(id, resolve);
      this.socket.send(JSON.stringify({ id, type: 'subscribe', payload: { query } }));
    });
  }

  close(): void {
    this.socket.close(1000);
  }
}

interface Senders {
  server: ServerProcess;
  token: string;
  socket: RawSocket;
  agent: http.Agent;
}

/** Sends `document` each way, in turn: without a token, with it, as a batch, pipelined on the socket. Returns the documents sent. */
async function sendEachWay(senders: Senders, document: Document, hostile: boolean, variant: () => number): Promise<number> {
  const { server, token, socket, agent } = senders;
  const check = (via: string, answer: Answer) => {
    const problem = problemWith(answer, hostile);
    if (problem) throw new BenchFailure(`${via}: ${problem}`);
  };
  check('HTTP without a token', (await post(agent, server.url, {}, JSON.stringify({ query: document(variant()) }))) as Answer);
  const withToken = { authorization: `Bearer ${token}` };
  check('HTTP with a token', (await post(agent, server.url, withToken, JSON.stringify({ query: document(variant()) }))) as Answer);
  const batch = Array.from({ length: BATCH }, () => ({ query: document(variant()) }));
  for (const answer of (await post(agent, server.url, {}, JSON.stringify(batch))) as Answer[]) check('a batch', answer);
  // Sent at once: frames that arrive together must still be answered in turn with other I/O.
  const pipelined = await Promise.all(Array.from({ length: BATCH }, () => socket.request(document(variant()))));
  for (const answer of pipelined) check('a socket', answer);
  return 2 + 2 * BATCH;
}

interface Phase {
  probes: Samples;
  documents: number;
  cpuSeconds: number;
}

/** The probe for `seconds`, meanwhile `document` (when given) sent again and again; the first wrong answer fails the run. */
async function phase(senders: Senders, document: Document | null, hostile: boolean, seconds: number): Promise<Phase> {
  const probeAgent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const end = performance.now() + seconds * 1000;
  let failure: unknown;
  let documents = 0;
  let variant = Math.floor(Math.random() * 1e9);
  const probes = new Samples();
  const probe = async () => {
    const body = JSON.stringify({ query: '{ __typename }' });
    while (failure === undefined && performance.now() < end) {
      const begun = performance.now();
      const answer = (await post(probeAgent, senders.server.url, {}, body)) as Answer;
      if ((answer.data as { __typename?: string } | undefined)?.__typename !== 'Query') {
        throw new BenchFailure(`the probe was answered ${JSON.stringify(answer).slice(0, 300)}`);
      }
      probes.add(performance.now() - begun);
    }
  };
  const send = async () => {
    while (document && failure === undefined && performance.now() < end) {
      documents += await sendEachWay(senders, document, hostile, () => variant++);
    }
  };
  const cpuBefore = senders.server.cpuSeconds();
  await Promise.all(
    [probe(), send()].map((run) =>
      run.catch((error: unknown) => {
        failure ??= error;
      }),
    ),
  );
  probeAgent.destroy();
  if (failure !== undefined) throw failure;
  return { probes, documents, cpuSeconds: senders.server.cpuSeconds() - cpuBefore };
}

/**
 * The probe alone, then each hostile document and each costliest document within the ceilings,
 * `seconds` each, after one unmeasured round of every document (so the server's code is warm).
 * `onPhase` reports each result as it is measured.
 */
export async function hostileDocuments(
  server: ServerProcess,
  token: string,
  seconds: number,
  onPhase: (result: HostileResult) => void,
): Promise<HostileResult[]> {
  const socket = await RawSocket.open(server.wsUrl, token);
  const senders: Senders = { server, token, socket, agent: new http.Agent({ keepAlive: true, maxSockets: 1 }) };
  const documents: [string, Document | null, boolean][] = [
    ['(the probe alone)', null, false],
    ...Object.entries(HOSTILE_DOCUMENTS).map(([name, document]): [string, Document, boolean] => [name, document, true]),
    ...Object.entries(COSTLIEST_ACCEPTED).map(([name, document]): [string, Document, boolean] => [
      `within the ceilings: ${name}`,
      document,
      false,
    ]),
  ];
  const results: HostileResult[] = [];
  // The bench's own event-loop delay: when large, the bench, not the server, delayed the probe.
  const benchDelay = monitorEventLoopDelay({ resolution: 10 });
  benchDelay.enable();
  try {
    let variant = 0;
    for (const [, document, hostile] of documents) if (document) await sendEachWay(senders, document, hostile, () => variant++);
    let cpuPerProbe = 0;
    for (const [name, document, hostile] of documents) {
      benchDelay.reset();
      const measured = await phase(senders, document, hostile, seconds);
      const { p50, p99, max } = measured.probes.summary();
      if (!document) cpuPerProbe = measured.cpuSeconds / measured.probes.length;
      const cpuOfDocuments = measured.cpuSeconds - cpuPerProbe * measured.probes.length;
      const result: HostileResult = {
        document: name,
        delay: {
          value: max,
          unit: 'ms worst',
          p50,
          p99,
          count: measured.documents,
          extra: {
            probes: measured.probes.length,
            // The server's CPU time while it was sent, less the probe's (as measured alone).
            serverCpuMsPerDocument: measured.documents > 0 ? (cpuOfDocuments * 1000) / measured.documents : undefined,
            benchLoopDelayMaxMs: benchDelay.max / 1e6,
          },
        },
      };
      results.push(result);
      onPhase(result);
    }
  } finally {
    benchDelay.disable();
    senders.agent.destroy();
    socket.close();
  }
  return results;
}
