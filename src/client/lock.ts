/**
 * The contract's lock recipe (README, "a lock shared by agents"), done right once: acquire with a
 * create-only write that expires, renew before it expires while held, release with a delete at the
 * held version. Each holder writes a random id into the value, so when a connection drops in the middle
 * of a write, reading the entry tells for certain whether the write was ours.
 */
import { ConnectionError, LockHeldError, LockLostError, VersionConflictError } from './errors.js';
import { DeleteEntryDocument, EntryDocument, type EntryFieldsFragment, SetEntryDocument } from './generated/graphql.js';
import type { Runtime } from './runtime.js';
import { backoffDelay, randomId, settlesWithin, sleep } from './timing.js';
import { type ChangeStream, openChangeStream } from './watch.js';

export interface LockOptions {
  /** The lease: a holder that stops renewing loses the lock after this long. @default 30 */
  ttlSeconds?: number;
  /** Where the lock lives; every agent may write `common`. @default 'common' */
  namespace?: string;
  scope?: string;
  /** How long to wait while someone else holds it; then LockHeldError. 0: do not wait. @default Infinity */
  waitMs?: number;
  /** Renew this often while held. @default a third of the TTL */
  renewEveryMs?: number;
  /** Stored with the lock for whoever looks at it (an agent id, a host name). */
  owner?: unknown;
  /** Called once if the lock is lost while held. */
  onLost?: (error: LockLostError) => void;
  /** Stops waiting for the lock. */
  signal?: AbortSignal;
}

interface LockValue {
  holder: string;
  owner?: unknown;
}

/** The key a lock named `name` uses: `lock:<name>`, as in the recipe. */
export const lockKey = (name: string) => `lock:${name}`;

/**
 * A held lock. `signal` aborts when it is no longer held — released, or lost (its reason is then the
 * LockLostError): pass it to the work the lock protects. `release()` (or leaving an `await using`
 * block) deletes it; if it had been lost meanwhile, release rejects with the LockLostError, so a lost
 * lock is never silent.
 */
export class Lock {
  private readonly controller = new AbortController();
  private version: number;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private renewing: Promise<void> = Promise.resolve();
  /** The lease ends no earlier than this (client clock): TTL after the last renewal was sent. */
  private leaseEnd: number;
  private lostWith: LockLostError | undefined;
  private released = false;
  private readonly unregister: () => void;

  constructor(
    private readonly runtime: Runtime,
    readonly name: string,
    private readonly place: { namespace: string; key: string; scope?: string },
    private readonly value: LockValue,
    private readonly settings: { ttlSeconds: number; renewEveryMs: number; onLost?: (error: LockLostError) => void },
    entry: EntryFieldsFragment,
    sentAt: number,
  ) {
    this.version = entry.version;
    this.leaseEnd = sentAt + settings.ttlSeconds * 1_000;
    this.unregister = runtime.own({ stage: 0, close: () => this.release().catch(() => {}) });
    this.schedule(settings.renewEveryMs);
  }

  /** Aborted once the lock is no longer held. */
  get signal(): AbortSignal {
    return this.controller.signal;
  }

  get held(): boolean {
    return !this.released && this.lostWith === undefined;
  }

  /** Throws the LockLostError if the lock was lost. */
  assertHeld(): void {
    if (this.lostWith) throw this.lostWith;
  }

  private schedule(delayMs: number): void {
    this.timer = setTimeout(() => {
      this.renewing = this.renew();
    }, delayMs);
  }

  private async renew(): Promise<void> {
    for (let attempt = 0; this.held; attempt++) {
      const sentAt = Date.now();
      try {
        const { setEntry } = await this.runtime.mutate(SetEntryDocument, {
          input: { ...this.place, value: this.value, expectedVersion: this.version, ttlSeconds: this.settings.ttlSeconds },
        });
        this.version = setEntry.version;
        this.leaseEnd = sentAt + this.settings.ttlSeconds * 1_000;
        if (this.held) this.schedule(this.settings.renewEveryMs);
        return;
      } catch (error) {
        if (!this.held) return;
        // A refused renewal, or one lost on the way, may still have been ours: the entry says.
        if (error instanceof VersionConflictError || (error instanceof ConnectionError && error.maybeApplied)) {
          const mine = await this.readOwn().catch(() => undefined);
          if (mine) {
            this.version = mine.version;
            continue;
          }
          if (mine === null) return this.lose('someone else holds it now, or it expired', error);
        } else if (!(error instanceof ConnectionError) || !error.retryable) {
          return this.lose(error instanceof Error ? error.message : String(error), error);
        }
        const wait = backoffDelay(attempt, this.runtime.retry);
        if (Date.now() + wait >= this.leaseEnd) return this.lose('it could not be renewed before its lease ran out', error);
        await sleep(wait, this.controller.signal).catch(() => {});
      }
    }
  }

  /** The entry if it is still this holder's; null if not (absent, or someone else's); throws if unreadable. */
  private async readOwn(): Promise<EntryFieldsFragment | null> {
    const { entry } = await this.runtime.query(EntryDocument, this.place);
    return entry && (entry.value as LockValue | null)?.holder === this.value.holder ? entry : null;
  }

  private lose(reason: string, cause: unknown): void {
    if (!this.held) return;
    this.lostWith = new LockLostError(this.name, reason, { cause });
    clearTimeout(this.timer);
    this.unregister();
    this.controller.abort(this.lostWith);
    this.settings.onLost?.(this.lostWith);
  }

  /** Deletes the lock (at the version held). Rejects with the LockLostError if it had been lost. */
  async release(): Promise<void> {
    if (this.lostWith) throw this.lostWith;
    if (this.released) return;
    this.released = true;
    clearTimeout(this.timer);
    this.unregister();
    this.controller.abort(new Error(`Lock ${JSON.stringify(this.name)} was released`));
    await this.renewing;
    try {
      await this.runtime.mutate(DeleteEntryDocument, { input: { ...this.place, expectedVersion: this.version } });
    } catch (error) {
      // A delete lost on the way, or refused because a renewal we never heard of went through: look.
      if (!(error instanceof VersionConflictError) && !(error instanceof ConnectionError)) throw error;
      const mine = await this.readOwn().catch(() => null);
      if (mine) await this.runtime.mutate(DeleteEntryDocument, { input: { ...this.place, expectedVersion: mine.version } });
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.release();
  }
}

/** Acquires the lock, waiting while someone else holds it (see LockOptions.waitMs). */
export async function acquireLock(runtime: Runtime, name: string, options: LockOptions = {}): Promise<Lock> {
  const ttlSeconds = options.ttlSeconds ?? 30;
  if (!Number.isInteger(ttlSeconds) || ttlSeconds < 1) throw new TypeError('ttlSeconds must be a positive whole number');
  const place = {
    namespace: options.namespace ?? 'common',
    key: lockKey(name),
    ...(options.scope === undefined ? {} : { scope: options.scope }),
  };
  const value: LockValue = { holder: randomId(), ...(options.owner === undefined ? {} : { owner: options.owner }) };
  const settings = { ttlSeconds, renewEveryMs: options.renewEveryMs ?? (ttlSeconds * 1_000) / 3, onLost: options.onLost };
  const deadline = Date.now() + (options.waitMs ?? Number.POSITIVE_INFINITY);
  let changes: ChangeStream | undefined;
  let released: Promise<void> | undefined;
  try {
    for (;;) {
      options.signal?.throwIfAborted();
      const sentAt = Date.now();
      try {
        const { setEntry } = await runtime.mutate(SetEntryDocument, { input: { ...place, value, expectedVersion: 0, ttlSeconds } });
        return new Lock(runtime, name, place, value, settings, setEntry, sentAt);
      } catch (error) {
        if (!(error instanceof VersionConflictError) && !(error instanceof ConnectionError && error.maybeApplied)) throw error;
      }
      // Refused, or lost on the way: the entry says whether it is ours, someone else's, or gone.
      const { entry } = await runtime.query(EntryDocument, place);
      if (entry && (entry.value as LockValue | null)?.holder === value.holder)
        return new Lock(runtime, name, place, value, settings, entry, sentAt);
      if (!entry) continue;
      const remaining = deadline - Date.now();
      if (remaining <= 0) throw new LockHeldError(name);
      // Wait for its DELETE or EXPIRE — the feed starts at the revision just read, so none is missed —
      // or until its lease could have run out (an expired entry reads as absent before the EXPIRE is recorded).
      changes ??= openChangeStream(runtime, {
        namespace: place.namespace,
        scope: entry.scope,
        keyPrefix: place.key,
        afterRevision: entry.revision,
      });
      if (!released) {
        released = nextRelease(changes, place.key);
        released.catch(() => {});
      }
      const expiresIn = entry.expiresAt ? Date.parse(entry.expiresAt) - Date.now() + 50 : ttlSeconds * 1_000;
      const wait = Math.min(remaining, Math.max(50, Math.min(expiresIn, ttlSeconds * 1_000)));
      if (await settlesWithin(released, wait, options.signal)) released = undefined;
    }
  } finally {
    await changes?.close();
  }
}

/** Resolves at the next DELETE or EXPIRE of `key` in the stream; never, if the stream ends first. */
async function nextRelease(stream: ChangeStream, key: string): Promise<void> {
  for (;;) {
    const { value, done } = await stream.next();
    if (done) return new Promise(() => {});
    if (value.key === key && value.op !== 'SET') return;
  }
}
