/** Waiting, backoff and ids, with nothing but what browsers and Node.js both have. */

export interface BackoffOptions {
  /** The first delay. @default 200 */
  initialDelayMs?: number;
  /** No delay grows past this. @default 10000 */
  maxDelayMs?: number;
}

/**
 * Exponential backoff with "equal jitter": half the delay is fixed, half random, so a fleet that lost
 * the gateway at the same moment does not come back at the same moment.
 */
export function backoffDelay(attempt: number, options: BackoffOptions = {}): number {
  const initial = options.initialDelayMs ?? 200;
  const max = options.maxDelayMs ?? 10_000;
  const ceiling = Math.min(max, initial * 2 ** Math.min(attempt, 30));
  return ceiling / 2 + Math.random() * (ceiling / 2);
}

/** Resolves after `ms`, or rejects with the signal's reason once it aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** 128 random bits as hex (crypto.randomUUID is missing outside secure browser contexts). */
export function randomId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, '0')).join('');
}

/** A promise with its resolve and reject (Promise.withResolvers is newer than Node.js 22.0). */
export function deferred<T>(): { promise: Promise<T>; resolve: (value: T) => void; reject: (reason: unknown) => void } {
  let resolve!: (value: T) => void;
  let reject!: (reason: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Waits for `promise` at most `ms`: true if it resolved in time, false if not; rejects if it or the signal does. */
export function settlesWithin(promise: Promise<unknown>, ms: number, signal?: AbortSignal): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const done = (settle: () => void) => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      settle();
    };
    const onAbort = () => done(() => reject(signal?.reason));
    const timer = setTimeout(() => done(() => resolve(false)), ms);
    signal?.addEventListener('abort', onAbort, { once: true });
    if (signal?.aborted) onAbort();
    promise.then(
      () => done(() => resolve(true)),
      (error: unknown) => done(() => reject(error)),
    );
  });
}
