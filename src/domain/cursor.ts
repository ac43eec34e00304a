import { badInput } from './errors.js';
import { isStorableText } from './names.js';

/** Opaque page cursors: the sort key of the last row, as base64url JSON. */
export function encodeCursor(parts: readonly string[]): string {
  return Buffer.from(JSON.stringify(parts)).toString('base64url');
}

export function decodeCursor(cursor: string, field: string, length: number): string[] {
  try {
    if (cursor.length > 4096) throw new Error('too long');
    const parts: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    // A part the database cannot hold (U+0000, a lone surrogate) was never written by encodeCursor: a forgery.
    if (Array.isArray(parts) && parts.length === length && parts.every((part) => typeof part === 'string' && isStorableText(part))) {
      return parts;
    }
  } catch {
    // reported below, the same as a cursor of the wrong shape
  }
  throw badInput(field, `${field} is not a cursor of this list`);
}

/** A decimal string that fits PostgreSQL's bigint, as revisions (transaction ids) do. */
export const isRevision = (text: string) => /^\d{1,19}$/.test(text) && BigInt(text) <= 9223372036854775807n;
