/**
 * A worker as the fleet sees it: it heartbeats while it works (BUSY, with its queue), records a metric
 * per job (sent in batches), reports the jobs that fail (similar messages group into one pattern), leaves
 * an insight, and stops with a last STOPPED heartbeat. Open the dashboard (`/dashboard`) while it runs.
 *
 *     STATEHOUSE_ADMIN_TOKEN=… npm run example:worker
 */
import { connect } from 'statehouse/client';
import { registerAgent, url } from './setup.js';

const JOBS = Number(process.env.JOBS ?? 12);

const token = await registerAgent('worker-1', 'worker', []);
const client = connect({ url, token, metrics: { batchSize: 5, flushIntervalMs: 500 } });

let queue = JOBS;
const heartbeats = client.agent.startHeartbeats({ every: 1_000, status: 'BUSY', data: () => ({ queue }) });

for (let job = 1; job <= JOBS; job++) {
  const started = performance.now();
  await new Promise((resolve) => setTimeout(resolve, 20 + (job % 4) * 10)); // the work
  queue--;
  client.metrics.record('job_ms', Math.round(performance.now() - started), { kind: job % 2 ? 'odd' : 'even' });
  if (job % 5 === 0) {
    const pattern = await client.agent.reportError({
      type: 'timeout',
      message: `job ${job} timed out after ${job * 3}s`,
      context: { job },
    });
    console.log(`job ${job} failed: pattern ${pattern.fingerprint} seen ${pattern.count} times`);
  }
}

await client.agent.addInsight({ type: 'capacity', content: { hint: 'every fifth job times out' }, priority: 'MEDIUM' });
await heartbeats.stop({ status: 'STOPPED' });
await client.metrics.flush();

// What a dashboard reads about this worker now.
const [agent, [summary], patterns] = await Promise.all([
  client.fleet.agent('worker-1'),
  client.fleet.metricSummary({ name: 'job_ms', agentId: 'worker-1' }),
  client.fleet.errorPatterns({ type: 'timeout' }),
]);
console.log(`worker-1 is ${agent?.status}: ${summary?.count} jobs measured, ${patterns[0]?.count} timeouts in one pattern`);
await client.close();
