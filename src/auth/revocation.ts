import { forbidden, type StatehouseError, unauthenticated } from '../domain/errors.js';
import type { BusEvent } from '../events/bus.js';
import type { AccessService } from './access.js';
import type { Principal } from './principal.js';

/**
 * Whether `event` may have revoked what a long subscription of `tenantId` stands on: its token (a
 * `tokens` event) or, when `access` is watched too, its access to a namespace. A reset (missed
 * messages) may have revoked anything.
 */
export function mayRevoke(event: BusEvent, tenantId: string, watched: 'token' | 'access'): boolean {
  if (event.type === 'reset') return true;
  if (event.type === 'tokens') return event.tenantId === tenantId;
  return watched === 'access' && event.type === 'access' && event.tenantId === tenantId;
}

/**
 * The one check that ends a subscription on revocation: UNAUTHENTICATED when the caller's token no
 * longer works, FORBIDDEN when it may no longer read `namespace`; otherwise the caller as it is now.
 */
export async function revocation(
  reauthenticate: () => Promise<Principal | null>,
  access?: { service: AccessService; namespace: string | null },
): Promise<{ principal: Principal; reason: null } | { principal: null; reason: StatehouseError }> {
  const principal = await reauthenticate();
  if (!principal) return { principal: null, reason: unauthenticated('The token was revoked') };
  if (access?.namespace && !(await access.service.canRead(principal, access.namespace))) {
    return { principal: null, reason: forbidden(`Access to ${access.namespace} was revoked`) };
  }
  return { principal, reason: null };
}
