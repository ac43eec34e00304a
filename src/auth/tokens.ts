import { hash, randomBytes } from 'node:crypto';

/** 256 random bits, URL-safe, with a prefix that secret scanners and humans recognise. */
export function generateToken(): string {
  return `sh_${randomBytes(32).toString('base64url')}`;
}

export function hashToken(token: string): string {
  return hash('sha256', token, 'hex');
}

/**
 * Why credentials name no one, in words that say what to send: none, a value that is not
 * `Bearer <token>` (a bare token, another scheme), or a token that is unknown or revoked.
 */
export function credentialsProblem(token: string | undefined, transport: 'http' | 'socket'): string {
  const expected = transport === 'http' ? 'Authorization: Bearer <token>' : 'connectionParams: { authorization: "Bearer <token>" }';
  if (token === undefined) return `A token is required: send ${expected}`;
  if (token === '') return `Malformed ${transport === 'http' ? 'Authorization header' : 'authorization'}: send ${expected}`;
  return 'The token is unknown or revoked';
}

/** Extracts the token from an `Authorization: Bearer <token>` value; undefined when absent, '' when malformed. */
export function bearerToken(authorization: unknown): string | undefined {
  if (typeof authorization !== 'string') return undefined;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
  return match?.[1] ?? (authorization.trim() === '' ? undefined : '');
}

/** The authorization value of a socket's connectionParams (`authorization`, or `Authorization` as headers are often written). */
export function authorizationOf(connectionParams: Record<string, unknown> | undefined): unknown {
  return connectionParams?.authorization ?? connectionParams?.Authorization;
}
