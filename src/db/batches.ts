/** What an item of a batch is answered through: the promise its caller awaits. */
export interface Settles<T> {
  resolve: (answer: T) => void;
  reject: (error: unknown) => void;
}

/** Statements of one group in flight at once; what arrives meanwhile waits and goes together. */
const MAX_IN_FLIGHT = 2;

/**
 * Work that shares a statement: items of one group (a tenant's writes, say) that arrive in the same
 * step of the event loop, or while the group's statements are in the database, are handed to
 * `send` together. Under load that is one round trip for many; an item alone goes at once.
 */
export class Batches<T> {
  private readonly groups = new Map<string, { pending: T[]; inFlight: number }>();

  constructor(
    /** Sends one batch; it settles each item's own promise and must not reject. */
    private readonly send: (batch: T[]) => Promise<void>,
    /** Takes the next batch out of the waiting items (in arrival order). */
    private readonly take: (pending: T[]) => T[],
  ) {}

  add(group: string, item: T): void {
    let queue = this.groups.get(group);
    if (!queue) this.groups.set(group, (queue = { pending: [], inFlight: 0 }));
    queue.pending.push(item);
    // Sent once the running code yields, with what came in the same step; not later (a timer could
    // starve behind a busy loop of promises, and would add latency to an item alone).
    if (queue.pending.length === 1 && queue.inFlight < MAX_IN_FLIGHT) queueMicrotask(() => this.flush(group));
  }

  private flush(group: string): void {
    const queue = this.groups.get(group);
    if (!queue) return;
    while (queue.pending.length > 0 && queue.inFlight < MAX_IN_FLIGHT) {
      const batch = this.take(queue.pending);
      queue.inFlight++;
      void this.send(batch).finally(() => {
        queue.inFlight--;
        if (queue.pending.length > 0) this.flush(group);
        else if (queue.inFlight === 0) this.groups.delete(group);
      });
    }
  }
}
