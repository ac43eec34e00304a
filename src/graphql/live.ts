import { Repeater } from '@repeaterjs/repeater';
import type { Principal } from '../auth/principal.js';
import type { Context } from '../context.js';
import { mayRevoke, revocation } from '../auth/revocation.js';

const ENDED = Symbol('ended');

/** What a live subscription yields last when its token stops working. */
export interface Ended {
  [ENDED]: Error;
}

/**
 * Forwards a subscription's events until the caller's token is revoked (or its agent deregistered),
 * then yields an `Ended`, which `live` turns into the subscription's final UNAUTHENTICATED error.
 */
export function untilRevoked<T>(context: Context & { principal: Principal }, source: AsyncIterable<T>): AsyncIterable<T | Ended> {
  const { tenantId } = context.principal;
  return new Repeater<T | Ended>(async (push, stop) => {
    const off = context.services.bus.on((event) => {
      if (!mayRevoke(event, tenantId, 'token')) return;
      void revocation(context.reauthenticate).then(async ({ reason }) => {
        if (!reason) return;
        await push({ [ENDED]: reason });
        stop();
      });
    });
    const iterator = source[Symbol.asyncIterator]();
    const stopped = stop.then(() => ({ done: true as const, value: undefined }));
    void (async () => {
      try {
        for (;;) {
          const next = await Promise.race([iterator.next(), stopped]);
          if (next.done) break;
          await push(next.value);
        }
      } catch (error) {
        stop(error);
      }
      stop();
    })();
    await stop;
    off();
    await iterator.return?.();
  });
}

/** A subscription resolver that ends the subscription with the error of an `Ended`. */
export function live<T, R>(resolve: (item: T) => R): (item: T | Ended) => R {
  return (item) => {
    if (typeof item === 'object' && item !== null && ENDED in item) throw item[ENDED];
    return resolve(item as T);
  };
}
