import { badInput } from './errors.js';

/** The naming rules of the API contract (§5); each failure names the offending field. */
const NAMESPACE = /^[a-z0-9][a-z0-9._-]{0,62}$/;
const SCOPE = /^[A-Za-z0-9._:/@-]{1,200}$/;
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
/**
 * Characters that change how a key looks without showing themselves: bidirectional controls
 * (a key "report\u202Etxt.exe" displays as "reportexe.txt") and zero-width characters (two keys
 * that print alike). Refused in keys, as control characters are.
 */
const INVISIBLE = /[\u061c\u200b-\u200f\u202a-\u202e\u2060\u2066-\u2069\ufeff]/;
/** A lone UTF-16 surrogate: not a character, and PostgreSQL would store it as U+FFFD. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const IDENTIFIER = /^[A-Za-z0-9._:@-]{1,128}$/;

/**
 * Whether PostgreSQL's text and jsonb can hold `text` as it is: no U+0000, and no lone surrogate
 * (stored as U+FFFD). isWellFormed (ES2024, Node 20) is many times faster than a regular expression
 * on long values; the ES2023 lib does not declare it.
 */
export const isStorableText = (text: string) => !text.includes('\u0000') && (text as string & { isWellFormed(): boolean }).isWellFormed();

export const GLOBAL_SCOPE = 'global';

export function checkNamespace(name: string, field = 'namespace'): string {
  if (!NAMESPACE.test(name)) throw badInput(field, `${field} must match ${NAMESPACE.source}`);
  return name;
}

export function checkScope(scope: string, field = 'scope'): string {
  if (!SCOPE.test(scope)) throw badInput(field, `${field} must be "global" or match ${SCOPE.source}`);
  return scope;
}

export function checkKey(key: string, field = 'key'): string {
  // Length in characters (code points), as a client counts them.
  const length = [...key].length;
  if (length < 1 || length > 512 || CONTROL.test(key) || INVISIBLE.test(key) || LONE_SURROGATE.test(key)) {
    throw badInput(field, `${field} must be 1 to 512 characters with no control, bidirectional or zero-width characters`);
  }
  return key;
}

/** Agent ids: short, printable and safe in logs and actor strings. */
export function checkAgentId(id: string, field = 'id'): string {
  if (!IDENTIFIER.test(id)) throw badInput(field, `${field} must match ${IDENTIFIER.source}`);
  return id;
}

/** Free text labels (names, types, descriptions): bounded and free of control characters. */
export function checkLabel(value: string, field: string, max = 200): string {
  if (value.length < 1 || value.length > max || CONTROL.test(value) || LONE_SURROGATE.test(value)) {
    throw badInput(field, `${field} must be 1 to ${max} characters with no control characters`);
  }
  return value;
}

/** A page size: 1 to `max`. */
export function checkFirst(first: number, max = 1000, field = 'first'): number {
  if (!Number.isInteger(first) || first < 1 || first > max) throw badInput(field, `${field} must be from 1 to ${max}`);
  return first;
}
