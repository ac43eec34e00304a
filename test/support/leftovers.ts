/**
 * Everything a test file opens that must be closed (gateways, raw sockets, SSE streams), registered
 * when opened and closed after the file's own afterAll hooks (see setup.ts): a test that forgets to
 * close one, or fails before it could, leaves nothing running into the next file.
 */
const leftovers = new Set<{ close(): unknown }>();

/** Registers `resource`; its `close` then also unregisters it, and runs once however often it is called. */
export function tracked<T extends { close(): unknown }>(resource: T): T {
  const close = resource.close.bind(resource);
  let closing: unknown;
  let closed = false;
  resource.close = () => {
    if (!closed) {
      closed = true;
      leftovers.delete(resource);
      closing = close();
    }
    return closing;
  };
  leftovers.add(resource);
  return resource;
}

/** Closes whatever is still open. */
export async function closeLeftovers(): Promise<void> {
  await Promise.allSettled([...leftovers].map(async (resource) => resource.close()));
}
