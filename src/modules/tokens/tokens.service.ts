import { randomUUID } from 'node:crypto';
import { sql } from 'drizzle-orm';
import type { Role } from '../../auth/principal.js';
import { generateToken, hashToken } from '../../auth/tokens.js';
import { type DatabaseHandle, sqlState } from '../../db/client.js';
import { badInput } from '../../domain/errors.js';
import { checkLabel, checkNamespace } from '../../domain/names.js';
import type { EventBus } from '../../events/bus.js';
import { BUILT_IN_NAMESPACES } from '../namespaces/namespaces.service.js';

export interface TokenIssue {
  id: string;
  token: string;
  role: Role;
}

export const DEFAULT_TENANT = 'default';
const BOOTSTRAP_TOKEN_ID = 'bootstrap';

/** Tokens and tenants: a token is shown once, only its hash is kept. */
export class TokensService {
  constructor(
    private readonly database: DatabaseHandle,
    private readonly bus: EventBus,
  ) {}

  async create(tenantId: string, input: { name: string; role: Role }): Promise<TokenIssue> {
    const name = checkLabel(input.name, 'name', 100);
    if (input.role === 'AGENT') throw badInput('role', 'Agent tokens come from registerAgent');
    const id = randomUUID();
    const token = generateToken();
    await this.database.rows(sql`
      INSERT INTO tokens (id, tenant_id, name, role, hash) VALUES (${id}, ${tenantId}, ${name}, ${input.role}, ${hashToken(token)})`);
    return { id, token, role: input.role };
  }

  /** Revokes at once, in every process; false when there was no such live token. */
  async revoke(tenantId: string, id: string): Promise<boolean> {
    const rows = await this.database.rows(sql`
      UPDATE tokens SET revoked_at = now() WHERE tenant_id = ${tenantId} AND id = ${id} AND revoked_at IS NULL RETURNING id`);
    if (rows.length > 0) await this.bus.invalidate({ type: 'tokens', tenantId });
    return rows.length > 0;
  }

  /** A new tenant with its built-in namespaces and a first admin token (named "admin"). */
  async createTenant(name: string): Promise<TokenIssue> {
    const tenantId = checkNamespace(name, 'name');
    const created = await this.database.rows(sql`INSERT INTO tenants (id) VALUES (${tenantId}) ON CONFLICT DO NOTHING RETURNING id`);
    if (created.length === 0) throw badInput('name', `Tenant ${tenantId} already exists`);
    await this.ensureTenant(tenantId);
    return this.create(tenantId, { name: 'admin', role: 'ADMIN' });
  }

  /** A tenant with its built-in namespaces; no-op when it exists. */
  async ensureTenant(tenantId: string): Promise<void> {
    await this.database.rows(sql`
      WITH t AS (INSERT INTO tenants (id) VALUES (${tenantId}) ON CONFLICT DO NOTHING)
      INSERT INTO namespaces (tenant_id, name, description)
      VALUES ${sql.join(
        BUILT_IN_NAMESPACES.map((ns) => sql`(${tenantId}, ${ns.name}, ${ns.description})`),
        sql`, `,
      )}
      ON CONFLICT DO NOTHING`);
  }

  /**
   * Makes sure tenant `default` has its bootstrap admin token: the configured one, or — on a first
   * start without one — a new token, returned so that it can be shown once.
   */
  async ensureBootstrap(configured: string | undefined): Promise<string | undefined> {
    await this.ensureTenant(DEFAULT_TENANT);
    if (configured) {
      const upsert = () =>
        this.database.rows(sql`
          INSERT INTO tokens (id, tenant_id, name, role, hash, bootstrap)
          VALUES (${BOOTSTRAP_TOKEN_ID}, ${DEFAULT_TENANT}, 'bootstrap', 'ADMIN', ${hashToken(configured)}, true)
          ON CONFLICT (id) DO UPDATE SET hash = excluded.hash, revoked_at = NULL`);
      // Two gateways starting at once on a fresh database insert the same token: the loser's insert
      // collides on the hash, not the id; once the winner has committed, the upsert finds its row.
      await upsert().catch((error: unknown) => {
        if (sqlState(error) === '23505') return upsert();
        throw error;
      });
      await this.bus.invalidate({ type: 'tokens', tenantId: DEFAULT_TENANT });
      return undefined;
    }
    const token = generateToken();
    const created = await this.database.rows(sql`
      INSERT INTO tokens (id, tenant_id, name, role, hash, bootstrap)
      VALUES (${BOOTSTRAP_TOKEN_ID}, ${DEFAULT_TENANT}, 'bootstrap', 'ADMIN', ${hashToken(token)}, true)
      ON CONFLICT (id) DO NOTHING RETURNING id`);
    return created.length > 0 ? token : undefined;
  }
}
