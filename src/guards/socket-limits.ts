import type { IncomingMessage } from 'node:http';
import type { Principal } from '../auth/principal.js';
import type { Services } from '../context.js';
import { StatehouseError } from '../domain/errors.js';

/** A socket that sends no connection_init within this is closed (4408), so idle sockets cannot pile up. */
export const CONNECTION_INIT_TIMEOUT_MS = 3_000;

/** Close code for a socket over its token's connection limit (graphql-ws uses 4429 for "too many"). */
export const TOO_MANY_CONNECTIONS = 4429;

/**
 * A socket whose connection_init gave no token can do nothing but be refused (a subscribe closes
 * it with 4401, as API.md says), so it is closed with 4401 this long after it was acknowledged.
 */
export const TOKENLESS_SOCKET_TIMEOUT_MS = 3_000;

/**
 * Acknowledged sockets without a token that one remote address may hold at once; one more is closed
 * with 4429. Clients that send a token never count here, so an address shared by many clients (a
 * proxy) loses nothing it needs.
 */
export const MAX_TOKENLESS_SOCKETS_PER_ADDRESS = 10;

const UNAUTHORIZED = 4401;

/** What the limits need of a socket (ws's WebSocket). */
interface ClosableSocket {
  close(code: number, reason: string): void;
}

/** An origin as browsers send it (scheme, host, port if not the default), or null when it is not a URL. */
function originOf(text: string): string | null {
  try {
    const { origin } = new URL(text);
    return origin === 'null' ? null : origin;
  } catch {
    return null;
  }
}

/**
 * ws's verifyClient: for WebSocket upgrades, which CORS does not cover, the origin policy CORS
 * applies to HTTP. A handshake without Origin (not a browser: agents, CLIs) is accepted; a browser
 * page is accepted from the gateway's own origin (its dashboard) or one of `corsOrigins`
 * (STATEHOUSE_CORS_ORIGINS), and any other page is answered 403 before the upgrade.
 */
export function originPolicy(corsOrigins: readonly string[] = []) {
  const allowed = new Set(corsOrigins.map((origin) => originOf(origin) ?? origin));
  return (
    { origin, req }: { origin: string | undefined; req: IncomingMessage },
    answer: (accepted: boolean, code?: number, message?: string) => void,
  ): void => {
    if (origin === undefined) return answer(true);
    const page = originOf(origin);
    const sameOrigin = page !== null && new URL(page).host === req.headers.host?.toLowerCase();
    if (sameOrigin || (page !== null && allowed.has(page))) return answer(true);
    answer(false, 403, 'Origin not allowed');
  };
}

/**
 * The WebSocket limits of a tenant's settings: open sockets per token (`maxConnectionsPerToken`)
 * and active subscriptions per socket (`maxSubscriptionsPerSocket`). Counted in this process.
 */
export class SocketLimits {
  private readonly open = new Map<string, number>();
  private readonly tokenOf = new WeakMap<object, string>();
  /** Per socket (by its graphql-ws subscription list): the ids this check let through. */
  private readonly admitted = new WeakMap<object, Set<string>>();
  /** Acknowledged sockets without a token, by remote address, and each one's address and closing timer. */
  private readonly tokenless = new Map<string, number>();
  private readonly tokenlessOf = new WeakMap<object, { address: string; timer: NodeJS.Timeout }>();

  constructor(private readonly services: Services) {}

  /**
   * Admits a socket whose connection_init gave no token, to be closed with 4401 unless it is gone
   * within TOKENLESS_SOCKET_TIMEOUT_MS; false (the socket closed with 4429) when its address
   * already holds MAX_TOKENLESS_SOCKETS_PER_ADDRESS of them.
   */
  admitWithoutToken(socket: ClosableSocket, address = 'unknown'): boolean {
    const count = this.tokenless.get(address) ?? 0;
    if (count >= MAX_TOKENLESS_SOCKETS_PER_ADDRESS) {
      socket.close(TOO_MANY_CONNECTIONS, 'Too many sockets without a token from this address');
      return false;
    }
    this.tokenless.set(address, count + 1);
    const timer = setTimeout(() => socket.close(UNAUTHORIZED, 'Unauthorized: no token was given'), TOKENLESS_SOCKET_TIMEOUT_MS);
    timer.unref();
    this.tokenlessOf.set(socket, { address, timer });
    return true;
  }

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
    this.releaseTokenless(socket);
    const tokenId = this.tokenOf.get(socket);
    if (tokenId === undefined) return;
    this.tokenOf.delete(socket);
    countDown(this.open, tokenId);
  }

  private releaseTokenless(socket: object): void {
    const tokenless = this.tokenlessOf.get(socket);
    if (!tokenless) return;
    this.tokenlessOf.delete(socket);
    clearTimeout(tokenless.timer);
    countDown(this.tokenless, tokenless.address);
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

/** One less for `key`; a count that reaches 0 leaves the map, so it holds only what is open. */
function countDown(counts: Map<string, number>, key: string): void {
  const count = (counts.get(key) ?? 1) - 1;
  if (count > 0) counts.set(key, count);
  else counts.delete(key);
}
