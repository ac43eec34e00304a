import { badInput, payloadTooLarge } from './errors.js';

/** The largest value a tenant may allow (its `maxValueBytes` default): 1 MiB of JSON text. */
export const MAX_VALUE_BYTES = 1_048_576;
/** The small JSON fields (agent metadata and heartbeat data, error context, insight content, optimization states): 64 KiB of JSON text. */
export const MAX_SMALL_JSON_BYTES = 65_536;
/** How long an entry may live (ttlSeconds): ten years. */
export const MAX_TTL_SECONDS = 10 * 365 * 24 * 3600;
/** How recent an agent's last heartbeat must be for it to count as active, unless configured: 5 minutes. */
export const DEFAULT_ACTIVE_WINDOW_SECONDS = 300;

/** PostgreSQL's jsonb cannot hold U+0000 in a string or key. */
function holdsNul(value: unknown): boolean {
  if (typeof value === 'string') return value.includes('\u0000');
  if (Array.isArray(value)) return value.some(holdsNul);
  if (value !== null && typeof value === 'object')
    return Object.entries(value).some(([key, inner]) => key.includes('\u0000') || holdsNul(inner));
  return false;
}

/** A number JSON cannot write (beyond double range, e.g. the literal 1e309): JSON.stringify would make it null. */
function holdsNonFinite(value: unknown): boolean {
  if (typeof value === 'number') return !Number.isFinite(value);
  if (Array.isArray(value)) return value.some(holdsNonFinite);
  if (value !== null && typeof value === 'object') return Object.values(value).some(holdsNonFinite);
  return false;
}

/** The JSON text of a value, refused when over the size limit (the tenant's `maxValueBytes`) or not storable. */
export function encodeValue(value: unknown, field: string, limit = MAX_VALUE_BYTES): string {
  const text = JSON.stringify(value);
  if (text === undefined) throw badInput(field, `${field} must be a JSON value`);
  if (text.includes('null') && holdsNonFinite(value)) throw badInput(field, `${field} holds a number beyond the range of JSON numbers`);
  if (text.includes('\\u0000') && holdsNul(value)) throw badInput(field, `${field} may not contain the character U+0000`);
  if (Buffer.byteLength(text) > limit) throw payloadTooLarge(field, limit);
  return text;
}

/** The JSON text of a small field, refused past 64 KiB (BAD_USER_INPUT) as well as whatever `encodeValue` refuses. */
export function encodeSmallJson(value: unknown, field: string): string {
  const text = encodeValue(value, field);
  if (Buffer.byteLength(text) > MAX_SMALL_JSON_BYTES)
    throw badInput(field, `${field} must be at most ${MAX_SMALL_JSON_BYTES} bytes as JSON`);
  return text;
}
