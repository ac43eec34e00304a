/**
 * Token buckets per token id: `perSecond` operations a second on average, bursts up to one second's
 * worth. In memory, per process: with N gateway processes behind a balancer a token may reach N×.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  /** Takes one operation from the bucket; returns how many ms to wait when it is empty (0: allowed). */
  take(id: string, perSecond: number, now = performance.now()): number {
    let bucket = this.buckets.get(id);
    if (!bucket) {
      if (this.buckets.size >= 100_000) this.sweep(now);
      bucket = { tokens: perSecond, at: now };
      this.buckets.set(id, bucket);
    }
    bucket.tokens = Math.min(perSecond, bucket.tokens + ((now - bucket.at) / 1000) * perSecond);
    bucket.at = now;
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return 0;
    }
    return Math.ceil(((1 - bucket.tokens) / perSecond) * 1000);
  }

  /** Forgets buckets idle long enough to be full again, so the map stays bounded. */
  private sweep(now: number): void {
    for (const [id, bucket] of this.buckets) if (now - bucket.at > 60_000) this.buckets.delete(id);
  }
}
