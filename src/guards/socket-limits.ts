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

  /** An error when a socket that already runs `active` subscriptions may not start another. */
  async checkSubscriptions(principal: Principal, active: number): Promise<StatehouseError | null> {
    const { limits } = await this.services.config.get(principal.tenantId);
    if (active < limits.maxSubscriptionsPerSocket) return null;
    return new StatehouseError('RATE_LIMITED', `At most ${limits.maxSubscriptionsPerSocket} subscriptions may run on one socket`, {
      limit: limits.maxSubscriptionsPerSocket,
    });
  }
}
