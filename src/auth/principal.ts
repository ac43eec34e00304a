export type Role = 'ADMIN' | 'AGENT' | 'READER';
export type Permission = 'READ' | 'WRITE';

/** Who is calling: resolved from a token, the same for HTTP, SSE and WebSocket. */
export interface Principal {
  tenantId: string;
  tokenId: string;
  tokenName: string;
  role: Role;
  /** Set for AGENT tokens: the registered agent the token speaks for. */
  agentId: string | null;
  /** The bootstrap admin token of tenant `default`, the only one that may create tenants. */
  bootstrap: boolean;
}

/** How a principal appears in `updatedBy`, `actor` and the audit log (API contract §2). */
export function actorOf(principal: Principal): string {
  if (principal.role === 'AGENT' && principal.agentId) return principal.agentId;
  return `${principal.role === 'ADMIN' ? 'admin' : 'reader'}:${principal.tokenName}`;
}
