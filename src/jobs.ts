import type { Logger } from './logger.js';

/**
 * Background jobs on timers, in every gateway process. Each job must be safe to run in several
 * processes at once; a run still going makes the next tick of the same job a no-op.
 */
export class PeriodicJobs {
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly running = new Set<Promise<unknown>>();

  constructor(private readonly logger: Logger) {}

  /** Runs `job` every `intervalMs`; it returns how much it did, logged when not zero. */
  every(intervalMs: number, name: string, job: () => Promise<number>): void {
    let busy = false;
    const timer = setInterval(() => {
      if (busy) return;
      busy = true;
      const run = job()
        .then((count) => {
          if (count > 0) this.logger.debug({ job: name, count }, 'background job');
        })
        .catch((error: unknown) => this.logger.error({ err: error, job: name }, 'background job failed'))
        .finally(() => {
          busy = false;
          this.running.delete(run);
        });
      this.running.add(run);
    }, intervalMs);
    timer.unref();
    this.timers.push(timer);
  }

  /** Stops the timers and waits for runs in progress. */
  async stop(): Promise<void> {
    for (const timer of this.timers) clearInterval(timer);
    this.timers.length = 0;
    await Promise.allSettled(this.running);
  }
}
