/** Load generators and their numbers: autocannon for the servers, concurrent loops for the limit. */
import autocannon from 'autocannon';

/** A wrong answer, an error or a lost change: fails the run. */
export class BenchFailure extends Error {}

export interface Measurement {
  /** Operations (or deliveries, changes, bytes…) per second; for memory, bytes per socket. */
  value: number;
  unit: string;
  /** Latency percentiles in milliseconds, where they apply. */
  p50?: number;
  p99?: number;
  /** How many operations were counted and over how long. */
  count?: number;
  seconds?: number;
  extra?: Record<string, unknown>;
}

/** The p-th percentile (0–100) of ascending `sorted`. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index] ?? Number.NaN;
}

/** Latencies in a growing Float64Array (millions of samples without boxing). */
export class Samples {
  private data = new Float64Array(1 << 16);
  length = 0;

  add(value: number): void {
    if (this.length === this.data.length) {
      const bigger = new Float64Array(this.data.length * 2);
      bigger.set(this.data);
      this.data = bigger;
    }
    this.data[this.length++] = value;
  }

  sorted(): Float64Array {
    return this.data.slice(0, this.length).sort();
  }

  summary(): { p50: number; p99: number; max: number } {
    const sorted = this.sorted();
    return { p50: percentile(sorted, 50), p99: percentile(sorted, 99), max: sorted[sorted.length - 1] ?? Number.NaN };
  }
}

/** What one request sends and how its answer is checked. */
export interface RequestPlan<E = unknown> {
  variables: Record<string, unknown>;
  expect: E;
}

export interface HttpLoadOptions<E> {
  url: string;
  headers: Record<string, string>;
  query: string;
  connections: number;
  seconds: number;
  next(): RequestPlan<E>;
  /** Checks one answer's `data`; returns a problem or null. */
  check(data: any, expect: E): string | null;
}

/**
 * autocannon against a GraphQL endpoint for `seconds`, every answer checked: a non-200 status, a
 * GraphQL error or a failed check stops the load and fails the run. Returns the checked answers per
 * second and autocannon's latency percentiles.
 */
export function httpLoad<E>(options: HttpLoadOptions<E>): Promise<Measurement & { count: number }> {
  return new Promise((resolve, reject) => {
    let failure: string | undefined;
    let checked = 0;
    const body = (variables: Record<string, unknown>) => JSON.stringify({ query: options.query, variables });
    const instance = autocannon(
      {
        url: options.url,
        connections: options.connections,
        duration: options.seconds,
        timeout: 30,
        pipelining: 1,
        method: 'POST',
        headers: { 'content-type': 'application/json', ...options.headers },
        requests: [
          {
            setupRequest: (request, context) => {
              const plan = options.next();
              (context as { expect?: E }).expect = plan.expect;
              return { ...request, body: body(plan.variables) };
            },
            onResponse: (status, text, context) => {
              if (failure !== undefined) return;
              let problem: string | null = null;
              if (status !== 200) problem = `HTTP ${status}: ${text.slice(0, 300)}`;
              else {
                try {
                  const parsed = JSON.parse(text) as { data?: unknown; errors?: unknown[] };
                  if (parsed.errors?.length) problem = `GraphQL error: ${JSON.stringify(parsed.errors[0]).slice(0, 300)}`;
                  else problem = options.check(parsed.data, (context as { expect: E }).expect);
                } catch (error) {
                  problem = `unreadable answer (${error instanceof Error ? error.message : String(error)}): ${text.slice(0, 200)}`;
                }
              }
              if (problem === null) checked++;
              else {
                failure = problem;
                instance.stop();
              }
            },
          },
        ],
      },
      (error, result) => {
        if (error) return reject(error);
        if (failure !== undefined) return reject(new BenchFailure(failure));
        if (result.errors > 0 || result.timeouts > 0 || result.non2xx > 0) {
          return reject(
            new BenchFailure(`${result.errors} connection errors, ${result.timeouts} timeouts, ${result.non2xx} non-2xx answers`),
          );
        }
        if (checked === 0) return reject(new BenchFailure('no request was answered'));
        resolve({
          value: checked / result.duration,
          unit: 'ops/s',
          p50: result.latency.p50,
          p99: result.latency.p99,
          count: checked,
          seconds: result.duration,
        });
      },
    );
  });
}

/**
 * `concurrency` async loops calling `op` for `seconds` (the limit: SQL straight from this process).
 * `op` returns a problem or null; the first problem stops all loops and fails the run.
 */
export async function loops(
  concurrency: number,
  seconds: number,
  op: () => Promise<string | null>,
): Promise<Measurement & { count: number }> {
  const samples = new Samples();
  let failure: string | undefined;
  const start = performance.now();
  const end = start + seconds * 1000;
  const loop = async () => {
    while (failure === undefined && performance.now() < end) {
      const begun = performance.now();
      let problem: string | null;
      try {
        problem = await op();
      } catch (error) {
        problem = `database error: ${error instanceof Error ? error.message : String(error)}`;
      }
      if (problem !== null) failure ??= problem;
      else samples.add(performance.now() - begun);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, loop));
  if (failure !== undefined) throw new BenchFailure(failure);
  const elapsed = (performance.now() - start) / 1000;
  const { p50, p99 } = samples.summary();
  return { value: samples.length / elapsed, unit: 'ops/s', p50, p99, count: samples.length, seconds: elapsed };
}
