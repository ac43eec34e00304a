import type { Principal } from '../auth/principal.js';
import type { Services } from '../context.js';
import { StatehouseError } from '../domain/errors.js';

/** A socket that sends no connection_init within this is closed (4408), so idle sockets cannot pile up. */
export const CONNECTION_INIT_TIMEOUT_MS = 3_000;

/** Close code for a socket over its token's connection limit (graphql-ws uses 4429 for "too many"). */
export const TOO_MANY_CONNECTIONS = 4429;

/**
 * The WebSocket limits of a tenant's settings: open sockets per token (`maxConnectionsPerToken`)
 * and active subscriptions per socket (`maxSubscriptionsPerSocket`). Counted in this process.
 */
export class SocketLimits {
  private readonly open = new Map<string, number>();
  private readonly tokenOf = new WeakMap<object, string>();
  /** Per socket (by its graphql-ws subscription list): the ids this check let through. */
  private readonly admitted = new WeakMap<object, Set<string>>();

  constructor(private readonly services: Services) {}

  /** Counts `socket` against its token; false when the token already holds its maximum. */
  async admit(socket: object, principal: Principal): Promise<boolean> {
    const { limits } = await this.services.config.get(principal.tenantId);
    const count = this.open.get(principal.tokenId) ?? 0;
    if (count >= limits.maxConnectionsPerToken) return false;
    this.open.set(principal.tokenId, count + 1);
    this.tokenOf.set(socket, principal.tokenId);
    return true;
  }

  release(socket: object): void {
    const tokenId = this.tokenOf.get(socket);
    if (tokenId === undefined) return;
    this.tokenOf.delete(socket);
    const count = (this.open.get(tokenId) ?? 1) - 1;
    if (count > 0) this.open.set(tokenId, count);
    else this.open.delete(tokenId);
  }

  /**
   * An error when the socket may not start subscription `id`. `subscriptions` is graphql-ws's own
   * list for the socket: it holds `id` itself and every operation still being set up (as null), so
   * counting it would refuse a burst of subscribe messages wholesale. What counts is what runs and
   * what this check has admitted; the count and the admission happen in one step, so concurrent
   * checks see each other.
   */
  async checkSubscriptions(principal: Principal, subscriptions: Record<string, unknown>, id: string): Promise<StatehouseError | null> {
    const { limits } = await this.services.config.get(principal.tenantId);
    let admitted = this.admitted.get(subscriptions);
    if (!admitted) this.admitted.set(subscriptions, (admitted = new Set()));
    let active = 0;
    for (const other of admitted) if (!(other in subscriptions)) admitted.delete(other);
    for (const [other, running] of Object.entries(subscriptions)) if (other !== id && (running !== null || admitted.has(other))) active++;
    if (active < limits.maxSubscriptionsPerSocket) {
      admitted.add(id);
      return null;
    }
    return new StatehouseError('RATE_LIMITED', `At most ${limits.maxSubscriptionsPerSocket} subscriptions may run on one socket`, {
      limit: limits.maxSubscriptionsPerSocket,
    });
  }
}
