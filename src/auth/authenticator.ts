import { sql } from 'drizzle-orm';
import { LRUCache } from 'lru-cache';
import type { DatabaseHandle } from '../db/client.js';
import type { EventBus } from '../events/bus.js';
import type { Principal } from './principal.js';
import { hashToken } from './tokens.js';
import type { RawRow } from '../db/rows.js';
import type { tokens } from '../db/schema.js';

type TokenRow = Pick<RawRow<typeof tokens>, 'id' | 'tenant_id' | 'name' | 'role' | 'agent_id' | 'bootstrap'>;

/**
 * Token → principal, cached so that authenticating is not a database round trip per request.
 * Revoking a token or deregistering its agent publishes a `tokens` event, which drops the
 * tenant's cached principals in every process before the mutation returns.
 */
export class Authenticator {
  private readonly cache = new LRUCache<string, { principal: Principal | null }>({ max: 50_000 });
  private generationNow = 0;

  constructor(
    private readonly database: DatabaseHandle,
    bus: EventBus,
  ) {
    bus.on((event) => {
      if (event.type !== 'tokens' && event.type !== 'reset') return;
      this.generationNow++;
      for (const [hash, cached] of this.cache.entries()) {
        if (event.type === 'reset' || !cached.principal || cached.principal.tenantId === event.tenantId) this.cache.delete(hash);
      }
    });
  }

  /**
   * Moves on whenever cached principals may have been dropped (a token revoked, an agent deregistered,
   * a reset): a principal authenticated at one generation holds as long as the generation does.
   */
  get generation(): number {
    return this.generationNow;
  }

  /** The principal of a token; null when it is unknown or revoked. */
  async authenticate(token: string): Promise<Principal | null> {
    if (token.length < 8 || token.length > 512) return null;
    const hash = hashToken(token);
    const cached = this.cache.get(hash);
    if (cached) return cached.principal;
    const generation = this.generationNow;
    const [row] = await this.database.rows<TokenRow>(sql`
      SELECT id, tenant_id, name, role, agent_id, bootstrap FROM tokens WHERE hash = ${hash} AND revoked_at IS NULL`);
    const principal: Principal | null = row
      ? { tenantId: row.tenant_id, tokenId: row.id, tokenName: row.name, role: row.role, agentId: row.agent_id, bootstrap: row.bootstrap }
      : null;
    // An unknown token is remembered briefly only, so a token created meanwhile elsewhere starts working soon.
    if (generation === this.generationNow) this.cache.set(hash, { principal }, principal ? {} : { ttl: 5_000 });
    return principal;
  }
}
