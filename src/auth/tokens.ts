import { hash, randomBytes } from 'node:crypto';

/** 256 random bits, URL-safe, with a prefix that secret scanners and humans recognise. */
export function generateToken(): string {
  return `sh_${randomBytes(32).toString('base64url')}`;
}

export function hashToken(token: string): string {
  return hash('sha256', token, 'hex');
}

/** Extracts the token from an `Authorization: Bearer <token>` value; undefined when absent. */
export function bearerToken(authorization: unknown): string | undefined {
  if (typeof authorization !== 'string') return undefined;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
  return match?.[1] ?? (authorization.trim() === '' ? undefined : '');
}

/** The authorization value of a socket's connectionParams (`authorization`, or `Authorization` as headers are often written). */
export function authorizationOf(connectionParams: Record<string, unknown> | undefined): unknown {
  return connectionParams?.authorization ?? connectionParams?.Authorization;
}
