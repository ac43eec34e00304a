import { FixedBuffer, Repeater } from '@repeaterjs/repeater';
import type { EventBus } from './bus.js';

/** A fleet event topic whose items are `T`: made once by the module that publishes it, so subscribers need no cast. */
export interface Topic<T> {
  readonly name: string;
  /** Never set: carries the item type. */
  readonly items?: T;
}

export const topic = <T>(name: string): Topic<T> => ({ name });

/** NOTIFY payloads must stay under 8000 bytes; items are sent in chunks below this. */
const MAX_CHUNK_BYTES = 6_000;

/**
 * Fleet events by topic (`agentChanged`, `metricRecorded`, …): published to this process's
 * subscribers at once and to other gateway processes through the bus, split into chunks that fit
 * a NOTIFY. Unlike the change log these are not replayable: a subscriber hears what happens while
 * it is subscribed.
 */
export function publishTopic<T>(bus: Pick<EventBus, 'publish'>, tenantId: string, { name }: Topic<T>, items: readonly T[]): void {
  let chunk: T[] = [];
  let size = 0;
  for (const item of items) {
    const itemSize = JSON.stringify(item)?.length ?? 0;
    if (chunk.length > 0 && size + itemSize > MAX_CHUNK_BYTES) {
      bus.publish({ type: 'topic', tenantId, topic: name, items: chunk });
      chunk = [];
      size = 0;
    }
    chunk.push(item);
    size += itemSize;
  }
  if (chunk.length > 0) bus.publish({ type: 'topic', tenantId, topic: name, items: chunk });
}

/** The items of one tenant's topic that pass `filter`, as they are published, until the consumer stops. */
export function subscribeTopic<T>(
  bus: Pick<EventBus, 'on'>,
  tenantId: string,
  { name }: Topic<T>,
  filter: (item: T) => boolean = () => true,
): AsyncIterable<T> {
  return new Repeater<T>(async (push, stop) => {
    const off = bus.on((event) => {
      if (event.type !== 'topic' || event.tenantId !== tenantId || event.topic !== name) return;
      try {
        // Items of this topic's name are published only through publishTopic with this Topic<T>.
        for (const item of event.items as T[]) if (filter(item)) void push(item);
      } catch (error) {
        // A consumer this far behind (buffer and pending pushes full) is ended rather than left to grow.
        stop(error);
      }
    });
    await stop;
    off();
  }, new FixedBuffer(10_000));
}
