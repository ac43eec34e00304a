/** Where a token's operations are counted: returns how many ms to wait when it is out of budget (0: allowed). */
export interface RateBudget {
  take(id: string, perSecond: number): number | Promise<number>;
}

/**
 * Token buckets per token id: `perSecond` operations a second on average, bursts up to one second's
 * worth. In memory: one process's, or (workers of one port) the primary's, which workers draw
 * leases from. Gateways behind a balancer each keep their own: a token may reach N× there.
 */
export class RateLimiter implements RateBudget {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  /** Takes one operation from the bucket; returns how many ms to wait when it is empty (0: allowed). */
  take(id: string, perSecond: number, now = performance.now()): number {
    const bucket = this.refill(id, perSecond, now);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return 0;
    }
    return Math.ceil(((1 - bucket.tokens) / perSecond) * 1000);
  }

  /** Takes up to `most` whole operations at once (a worker's lease); `waitMs` says when one is next available if none was. */
  draw(id: string, perSecond: number, most: number, now = performance.now()): { granted: number; waitMs: number } {
    const bucket = this.refill(id, perSecond, now);
    const granted = Math.max(0, Math.min(most, Math.floor(bucket.tokens)));
    bucket.tokens -= granted;
    return { granted, waitMs: granted > 0 ? 0 : Math.ceil(((1 - bucket.tokens) / perSecond) * 1000) };
  }

  private refill(id: string, perSecond: number, now: number) {
    let bucket = this.buckets.get(id);
    if (!bucket) {
      if (this.buckets.size >= 100_000) this.sweep(now);
      bucket = { tokens: perSecond, at: now };
      this.buckets.set(id, bucket);
    }
    bucket.tokens = Math.min(perSecond, bucket.tokens + ((now - bucket.at) / 1000) * perSecond);
    bucket.at = now;
    return bucket;
  }

  /** Forgets buckets idle long enough to be full again, so the map stays bounded. */
  private sweep(now: number): void {
    for (const [id, bucket] of this.buckets) if (now - bucket.at > 60_000) this.buckets.delete(id);
  }
}

/** Asks the owner of the buckets (the primary process) for up to `most` operations of a token. */
export type DrawLease = (id: string, perSecond: number, most: number) => Promise<{ granted: number; waitMs: number }>;

/**
 * The operations a worker draws at once: a tenth of a second's worth (1 to 100). It bounds the slack:
 * operations drawn but not yet spent, at most one lease per worker, may be spent after the bucket
 * refilled, so a token may pass its limit by at most `workers × leaseSize` operations.
 */
export const leaseSize = (perSecond: number): number => Math.max(1, Math.min(100, Math.floor(perSecond / 10)));
/** An unspent lease is dropped after this long, so old budget cannot be saved up for a burst. */
export const LEASE_MS = 1_000;

interface Lease {
  perSecond: number;
  left: number;
  until: number;
  /** The primary said the bucket is empty: refused locally until then, without asking again. */
  refusedUntil: number;
  drawing: Promise<void> | undefined;
}

/**
 * A worker's side of a rate limit shared by the workers of one port: operations are taken from a
 * small lease drawn from the primary's bucket, so a request costs no IPC round trip while its
 * token's lease lasts, and a refusal is answered locally until the bucket has refilled.
 */
export class LeasedRateLimiter implements RateBudget {
  private readonly leases = new Map<string, Lease>();

  constructor(private readonly drawLease: DrawLease) {}

  take(id: string, perSecond: number): number | Promise<number> {
    const now = performance.now();
    const lease = this.leases.get(id);
    if (lease && lease.perSecond === perSecond) {
      if (lease.left >= 1 && now < lease.until) {
        lease.left--;
        return 0;
      }
      if (now < lease.refusedUntil) return Math.ceil(lease.refusedUntil - now);
    }
    return this.takeDrawing(id, perSecond);
  }

  private async takeDrawing(id: string, perSecond: number): Promise<number> {
    // A few rounds at most: operations waiting on one draw may spend it before this one does.
    for (let round = 0; round < 4; round++) {
      let lease = this.leases.get(id);
      if (!lease || lease.perSecond !== perSecond) {
        if (this.leases.size >= 100_000) this.sweep();
        lease = { perSecond, left: 0, until: 0, refusedUntil: 0, drawing: undefined };
        this.leases.set(id, lease);
      }
      lease.drawing ??= this.refill(id, lease);
      await lease.drawing;
      const now = performance.now();
      if (lease.left >= 1 && now < lease.until) {
        lease.left--;
        return 0;
      }
      if (now < lease.refusedUntil) return Math.ceil(lease.refusedUntil - now);
    }
    return Math.ceil(1000 / perSecond);
  }

  private async refill(id: string, lease: Lease): Promise<void> {
    try {
      const { granted, waitMs } = await this.drawLease(id, lease.perSecond, leaseSize(lease.perSecond));
      const now = performance.now();
      lease.left = granted;
      lease.until = now + LEASE_MS;
      lease.refusedUntil = granted > 0 ? 0 : now + waitMs;
    } finally {
      lease.drawing = undefined;
    }
  }

  private sweep(): void {
    const now = performance.now();
    for (const [id, lease] of this.leases)
      if (lease.drawing === undefined && now > lease.until && now > lease.refusedUntil) this.leases.delete(id);
  }
}
