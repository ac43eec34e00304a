import type { Logger } from '../../logger.js';
import type { MetricsService } from './metrics.service.js';

/**
 * The metrics retention job, in every gateway process (runs may overlap across processes; each
 * deletes in short batches): removes points older than each tenant's `metricsRetentionHours`. Reads
 * never count such points even before the job has run.
 */
export class MetricsRetention {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;

  constructor(
    private readonly metrics: MetricsService,
    private readonly logger: Logger,
  ) {}

  /** @param intervalMs how often expired points are deleted. @default 60000 */
  start(intervalMs = 60_000): void {
    if (this.timer) return;
    this.timer = setInterval(() => {
      // A run still going (a large backlog) makes the next tick a no-op.
      if (this.running) return;
      this.running = this.metrics
        .removeExpired()
        .then((count) => {
          if (count > 0) this.logger.debug({ job: 'metricsRetention', count }, 'maintenance');
        })
        .catch((error: unknown) => this.logger.error({ err: error, job: 'metricsRetention' }, 'maintenance job failed'))
        .finally(() => {
          this.running = undefined;
        });
    }, intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }
}
