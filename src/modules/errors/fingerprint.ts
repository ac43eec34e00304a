/** Fingerprints longer than this are cut: they are keys of a unique index. */
export const MAX_FINGERPRINT_LENGTH = 500;

/**
 * The variable parts of an error message, in the order they are replaced. Quoted strings come
 * first so nothing inside them is seen again; a single quote opens a string only where a word does
 * not continue, so apostrophes ("can't", "agent's") are left alone.
 */
const VARIABLE_PARTS: [RegExp, string][] = [
  [/"(?:[^"\\\n]|\\.)*"|`[^`\n]*`|(?<![\p{L}\p{N}_])'(?:[^'\\\n]|\\.)*'(?![\p{L}\p{N}_])/gu, '<str>'],
  [/\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b/gi, '<uuid>'],
  [/\b0x[0-9a-f]+\b/gi, '<hex>'],
  // A duration or size is a number whatever its unit (30s, 1.5s, 250ms, 2h, 10MB, 512KiB): a timeout
  // after 30s and one after 250ms are one error.
  [/(?<!\w)[-+]?\d+(?:\.\d+)?(?:ns|us|µs|μs|ms|s|secs?|m|mins?|h|hrs?|d|days?|b|[kmgtp]i?b)\b/giu, '<num>'],
  // A number, signed unless the sign joins it to a word (agent-42 keeps its hyphen); not one that
  // is part of a word (user123).
  [/(?<!\w)[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?\b/gi, '<num>'],
  // A word that mixes letters and digits: ids, hex digests, codes (req_8fQ2k, 9f86d081, user123,
  // E11000). One placeholder for all of them: whether a random id happens to be all hex digits
  // must not split a pattern.
  [/\b(?=\w*\d)(?=\w*[a-z])\w+\b/gi, '<id>'],
];

/**
 * The shape of an error message: numbers, ids, hex, UUIDs and quoted strings become placeholders
 * (`<num>`, `<id>`, `<hex>`, `<uuid>`, `<str>`) and whitespace runs one space, so messages that
 * differ only in those share a fingerprint.
 */
export function fingerprint(message: string): string {
  let shape = message;
  for (const [pattern, placeholder] of VARIABLE_PARTS) shape = shape.replace(pattern, placeholder);
  shape = shape.replace(/\s+/g, ' ').trim();
  return [...shape].slice(0, MAX_FINGERPRINT_LENGTH).join('');
}
